/*
 * tests/override/prog_libc_names.c - a program that calls glibc's other
 * names of its allocator (__libc_malloc, __libc_free, ...) and mixes them
 * with the plain names, as glibc allows: run under the preload in every
 * mode, under valgrind with the preload, and under glibc alone.
 *   prog_libc_names          the mix; prints "libc names ok"
 *   prog_libc_names overflow one byte past a __libc_malloc block, then
 *                            __libc_free (a debug mode reports it)
 *   prog_libc_names first_libc_free | first_realloc0
 *                            the process's first call of the malloc
 *                            family is __libc_free or realloc(p, 0)
 *                            of a global's address (a debug mode reports an
 *                            invalid pointer, naming that function)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

/* Through volatile pointers: the compiler may not pair or remove them. */
static void *(*volatile l_malloc)(size_t) = __libc_malloc;
static void *(*volatile l_calloc)(size_t, size_t) = __libc_calloc;
static void *(*volatile l_realloc)(void *, size_t) = __libc_realloc;
static void (*volatile l_free)(void *) = __libc_free;
static void *(*volatile l_memalign)(size_t, size_t) = __libc_memalign;
static void *(*volatile p_malloc)(size_t) = malloc;
static void *(*volatile p_realloc)(void *, size_t) = realloc;
static void (*volatile p_free)(void *) = free;

static int fail(const char *what, size_t n)
{
    printf("FAIL: %s (size %zu)\n", what, n);
    return 1;
}

static char global_buf[64];

int main(int argc, char **argv)
{
    /* (before any output: stdio's buffer would be the first malloc) */
    if (argc > 1 && strcmp(argv[1], "first_libc_free") == 0)
        l_free(global_buf + 16);
    if (argc > 1 && strcmp(argv[1], "first_realloc0") == 0)
        (void)p_realloc(global_buf + 16, 0);
    if (argc > 1 && strncmp(argv[1], "first_", 6) == 0) {
        puts("not reported");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "overflow") == 0) {
        unsigned char *p = l_malloc(24);
        memset(p, 0, 25); /* one byte too many */
        l_free(p);
        puts("not reported");
        return 0;
    }
    for (size_t n = 1; n <= 5000; n += 13) {
        unsigned char *a = l_malloc(n), *b = p_malloc(n), *c = l_calloc(n, 1);
        unsigned char *d = l_memalign(64, n);
        if (a == NULL || b == NULL || c == NULL || d == NULL)
            return fail("allocation", n);
        for (size_t i = 0; i < n; i++)
            if (c[i] != 0)
                return fail("__libc_calloc not zeroed", n);
        if ((size_t)d % 64 != 0)
            return fail("__libc_memalign not aligned", n);
        memset(a, 'a', n);
        memset(b, 'b', n);
        memset(d, 'd', n);
        a = p_realloc(a, n * 2);       /* __libc_malloc's, by realloc */
        b = l_realloc(b, n + 1000);    /* malloc's, by __libc_realloc */
        if (a == NULL || b == NULL || a[n - 1] != 'a' || b[n - 1] != 'b')
            return fail("realloc across the names", n);
        p_free(a);
        l_free(b);
        p_free(c);
        l_free(d);
    }
    char *s = strdup("the C library's own malloc"); /* glibc's call: malloc */
    if (s == NULL || strcmp(s, "the C library's own malloc") != 0)
        return fail("strdup", 0);
    l_free(s);
    puts("libc names ok");
    return 0;
}
