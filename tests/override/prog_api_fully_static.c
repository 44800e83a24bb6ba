/*
 * tests/override/prog_api_fully_static.c - a program linked with -static
 * and the API-only library (libpymalloc_api.a): no dynamic loader, so the
 * C library's allocator (malloc and raw modes, blocks over 512 bytes) is
 * the one linked into the program itself, reached by name. Prints
 * "static api ok <mode>" after blocks of every size through every domain.
 */
#include <pymalloc.h>

#include <stdio.h>
#include <string.h>

int main(void)
{
    for (size_t n = 0; n <= 5000; n += 7) {
        void *r = pm_raw_malloc(n), *m = pm_mem_calloc(1, n), *o = pm_obj_malloc(n);
        if (r == NULL || m == NULL || o == NULL)
            return 1;
        memset(r, 1, n);
        memset(o, 2, n);
        for (size_t i = 0; i < n; i++)
            if (((unsigned char *)m)[i] != 0)
                return 2;
        r = pm_raw_realloc(r, n + 600);
        if (r == NULL || (n > 0 && ((unsigned char *)r)[n - 1] != 1))
            return 3;
        pm_raw_free(r);
        pm_mem_free(m);
        pm_obj_free(o);
    }
    printf("static api ok %s\n", pm_mode_name());
    return 0;
}
