/*
 * tests/override/prog_usable.c - malloc_usable_size under the preload, with
 * another library defining malloc_usable_size after libpymalloc.so in
 * LD_PRELOAD (usable_decoy.c, which aborts if called). For blocks of every
 * origin (size 0, pool sizes, libc sizes, mmap'd sizes, aligned): the
 * requested size exactly in the debug modes; otherwise at least the request,
 * at most a page more, and every usable byte writable.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    const char *(*mode_name)(void);
    void *sym = dlsym(RTLD_DEFAULT, "pm_mode_name");
    memcpy(&mode_name, &sym, sizeof mode_name);
    if (mode_name == NULL) {
        fprintf(stderr, "prog_usable: libpymalloc.so is not preloaded\n");
        return 1;
    }
    int debug = strstr(mode_name(), "debug") != NULL;
    static const size_t sizes[] = {0, 1, 24, 512, 600, 5000, 200000};
    int bad = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *blocks[2] = {malloc(n), NULL};
        if (posix_memalign(&blocks[1], 64, n) != 0)
            blocks[1] = NULL;
        for (int k = 0; k < 2; k++) {
            if (blocks[k] == NULL) {
                fprintf(stderr, "prog_usable: allocation of %zu failed\n", n);
                return 1;
            }
            size_t u = malloc_usable_size(blocks[k]);
            if (debug ? u != n : (u < n || u > n + 8192)) {
                fprintf(stderr, "prog_usable: %s %zu bytes: usable size %zu\n",
                        k ? "aligned" : "malloc", n, u);
                bad = 1;
            }
            memset(blocks[k], 0x5a, u);
            free(blocks[k]);
        }
    }
    printf("prog_usable: mode %s: %s\n", mode_name(), bad ? "FAILED" : "ok");
    return bad;
}
