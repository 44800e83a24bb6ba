/*
 * tests/override/vg_reallocarray.c - a correct program that grows blocks
 * with reallocarray, for check_valgrind_reallocarray.sh: run under valgrind
 * with libpymalloc.so preloaded, with and without valgrind's replacement
 * of the library's malloc. Prints "ok" if every byte written was kept.
 */
#define _GNU_SOURCE 1 /* reallocarray */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int ok = b[9] == 'a' && b[39] == 'b' && d[0] == 'c' && d[39] == 'c';
    free(b);
    free(d);
    puts(ok ? "ok" : "wrong");
    return ok ? 0 : 1;
}
