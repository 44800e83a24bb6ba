/*
 * tests/override/prog_uaf.c - a write after free in a preloaded program: a
 * node is freed, then its count is decremented through the stale pointer,
 * then a malloc of the same size takes the block again (debug and
 * pymalloc_debug report it there: check_heapbug.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct node *next;
    int refs;
    char name[20];
};

int main(void)
{
    struct node *volatile n = malloc(sizeof *n);
    if (n == NULL)
        return 1;
    memset(n, 0, sizeof *n);
    free(n);
    n->refs--; /* the bug */
    char *s = malloc(sizeof *n);
    if (s == NULL)
        return 1;
    strcpy(s, "not reported");
    puts(s);
    free(s);
    return 0;
}
