/*
 * tests/override/vg_leaky.c - a program with a leaked cycle of two blocks
 * and a one-byte overflow, for check_valgrind_preload.sh: run under
 * valgrind with libpymalloc.so preloaded (pymalloc mode), memcheck must
 * see the pool's blocks (not its own malloc's) and report both bugs.
 */
#include <stdlib.h>
#include <string.h>

void leak_cycle(void);
void overflow_one(void);

__attribute__((noinline)) void leak_cycle(void)
{
    void **a = malloc(64), **b = malloc(64);
    memset(a, 0, 64);
    memset(b, 0, 64);
    a[0] = b;
    b[0] = a;
}

__attribute__((noinline)) void overflow_one(void)
{
    char *p = malloc(32);
    memset(p, 0, 32);
    ((volatile char *)p)[32] = 1;
    free(p);
}

int main(void)
{
    leak_cycle();
    overflow_one();
    return 0;
}
