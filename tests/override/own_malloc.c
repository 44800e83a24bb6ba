/*
 * tests/override/own_malloc.c - a program with a malloc family of its own
 * (a bump allocator), into which libpymalloc.so is preloaded: the
 * program's malloc comes first, so the preloaded copy serves nothing and,
 * with PYMALLOC_VERBOSE=1, says that it is idle. Prints how many calls its
 * own malloc served (libc's strdup and stdio reach it too).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Alignas(16) char heap[1 << 20];
static size_t top, calls;

void *malloc(size_t n)
{
    calls++;
    n = (n + 15) & ~(size_t)15;
    if (n > sizeof heap - top)
        return NULL;
    void *p = heap + top;
    top += n;
    return p;
}
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b)
{
    if (b != 0 && a > (size_t)-1 / b)
        return NULL;
    void *p = malloc(a * b);
    if (p != NULL)
        memset(p, 0, a * b);
    return p;
}
void *realloc(void *p, size_t n)
{
    void *q = malloc(n);
    if (q != NULL && p != NULL)
        memcpy(q, p, n); /* reads past the old block: within the static heap */
    return q;
}

int main(void)
{
    char *s = strdup("own");
    size_t before = calls;
    void *p = malloc(10);
    free(p);
    printf("%s malloc served %s\n", s, calls == before + 1 ? "this call" : "nothing");
    return 0;
}
