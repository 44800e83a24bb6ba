/*
 * tests/override/vg_reallocarray.c - a correct program that grows blocks
 * with reallocarray (and makes blocks with pvalloc and __libc_pvalloc), for check_valgrind_reallocarray.sh: run under valgrind
 * with libpymalloc.so preloaded, with and without valgrind's replacement
 * of the library's malloc. Prints "ok" if every byte written was kept.
 */
#define _GNU_SOURCE 1 /* reallocarray */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_pvalloc(size_t n); /* glibc's other name of pvalloc */

/* A block of a page-rounded allocator (pvalloc, which valgrind does not
 * replace in the library either), 100 bytes written, its usable size the
 * page, grown by realloc, freed by free. */
static int paged(void *(*alloc)(size_t))
{
    char *p = alloc(100);
    if (p == NULL)
        return 0;
    memset(p, 'p', 100);
    if (malloc_usable_size(p) < 100)
        return 0;
    char *q = realloc(p, 5000);
    if (q == NULL)
        return 0;
    int ok = q[0] == 'p' && q[99] == 'p';
    free(q);
    return ok;
}

int main(void)
{
    /* A block from malloc grown by reallocarray, one from reallocarray
     * grown by realloc, both freed by free. */
    char *a = malloc(10);
    if (a == NULL)
        return 2;
    memset(a, 'a', 10);
    char *b = reallocarray(a, 4, 10);
    if (b == NULL)
        return 3;
    memset(b + 10, 'b', 30);
    char *c = reallocarray(NULL, 5, 8);
    if (c == NULL)
        return 4;
    memset(c, 'c', 40);
    char *d = realloc(c, 100);
    if (d == NULL)
        return 5;
    int ok = b[9] == 'a' && b[39] == 'b' && d[0] == 'c' && d[39] == 'c' && paged(pvalloc) &&
             paged(__libc_pvalloc);
    free(b);
    free(d);
    puts(ok ? "ok" : "wrong");
    return ok ? 0 : 1;
}
