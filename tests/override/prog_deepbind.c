/*
 * tests/override/prog_deepbind.c - a library opened with
 * dlopen(..., RTLD_DEEPBIND) binds its malloc and free to the C library's,
 * past any preloaded allocator (README: Limits).
 *
 *   prog_deepbind cross PLUGIN    the library allocates 24 bytes (the C
 *       library's block); the program frees it. Under glibc alone, and in
 *       the malloc and pymalloc modes (which hand a block that is not
 *       theirs to the C library), it prints "deepbind ok"; the debug modes
 *       report an invalid pointer whose dump names the library. Opened
 *       with RTLD_LAZY: a library built for lazy binding has only the
 *       functions it called bound (malloc, not free).
 *   prog_deepbind resize PLUGIN   the same, the program growing the block
 *       with realloc before its free (the report names realloc).
 *   prog_deepbind own PLUGIN      the library allocates and frees its own
 *       blocks: "deepbind ok" in every mode.
 *   prog_deepbind race PLUGIN     (PYMALLOC_ON_ERROR=report) two invalid
 *       frees reported at once, one from a dl_iterate_phdr callback, whose
 *       thread holds the loader's lock: the other report's look-up of the
 *       library waits for that lock, so it must not hold the report lock
 *       meanwhile (both would wait for ever). "deepbind ok" after both.
 *   prog_deepbind stack PLUGIN... each library opened (with RTLD_DEEPBIND
 *       if its path is prefixed with "deep:"), one call of each, then a
 *       free of a stack address: an invalid-pointer report that names no
 *       library (none binds malloc to the C library's).
 */
#define _GNU_SOURCE 1 /* RTLD_DEEPBIND */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef char *(*make_fn)(size_t);
typedef void (*release_fn)(void *);

/* arg: a path, opened with RTLD_DEEPBIND if prefixed with "deep:" or if
 * deep is set. */
static void *open_plugin(const char *arg, int deep, make_fn *make, release_fn *release)
{
    if (strncmp(arg, "deep:", 5) == 0) {
        deep = 1;
        arg += 5;
    }
    const char *path = arg;
    void *h = dlopen(path, RTLD_LAZY | (deep ? RTLD_DEEPBIND : 0));
    if (h == NULL) {
        fprintf(stderr, "prog_deepbind: %s\n", dlerror());
        exit(2);
    }
    void *m = dlsym(h, "deep_make"), *r = dlsym(h, "deep_release");
    if (m == NULL || r == NULL) {
        fprintf(stderr, "prog_deepbind: %s: no deep_make or deep_release\n", path);
        exit(2);
    }
    memcpy(make, &m, sizeof m); /* POSIX: dlsym results are callable */
    memcpy(release, &r, sizeof r);
    return h;
}

static _Atomic int in_callback;

/* The first object's callback (returning 1 ends the walk). */
static int hold_loader_lock(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    (void)data;
    in_callback = 1;
    usleep(200 * 1000); /* the main thread's report starts meanwhile */
    char local[32];
    void *volatile wild = local + 8;
    free(wild); /* reported here, the loader's lock held */
    return 1;
}

static void *callback_thread(void *arg)
{
    (void)arg;
    dl_iterate_phdr(hold_loader_lock, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: prog_deepbind cross|resize|own|race|stack PLUGIN...\n");
        return 2;
    }
    make_fn make;
    release_fn release;
    if (strcmp(argv[1], "cross") == 0 || strcmp(argv[1], "resize") == 0 ||
        strcmp(argv[1], "own") == 0) {
        open_plugin(argv[2], 1, &make, &release);
        if (strcmp(argv[1], "cross") == 0 || strcmp(argv[1], "resize") == 0) {
            char *p = make(24);
            if (p == NULL || p[23] != 'a')
                return 1;
            if (argv[1][0] == 'r') {
                p = realloc(p, 4000);
                if (p == NULL || p[23] != 'a')
                    return 1;
            }
            free(p);
        } else {
            for (int i = 0; i < 100; i++) {
                char *p = make((size_t)(1 + i * 37));
                if (p == NULL || p[i * 37] != 'a')
                    return 1;
                release(p);
            }
        }
    } else if (strcmp(argv[1], "race") == 0) {
        open_plugin(argv[2], 1, &make, &release);
        char *p = make(24);
        pthread_t t;
        if (pthread_create(&t, NULL, callback_thread, NULL) != 0)
            return 1;
        while (!in_callback)
            usleep(1000);
        free(p); /* reported (the library's block), while the thread sleeps */
        pthread_join(t, NULL);
    } else if (strcmp(argv[1], "stack") == 0) {
        for (int i = 2; i < argc; i++) {
            open_plugin(argv[i], 0, &make, &release);
            release(make(16));
        }
        char local[32];
        void *volatile wild = local + 16;
        free(wild);
    } else {
        return 2;
    }
    puts("deepbind ok");
    return 0;
}
