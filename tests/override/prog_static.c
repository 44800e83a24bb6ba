/*
 * tests/override/prog_static.c - a program linked statically (with -static,
 * and with -static-pie): ld.so never runs for it, so LD_PRELOAD cannot
 * reach its malloc, and pymalloc-run must refuse to run it under pymalloc
 * rather than let it pass for a checked run (test_run.sh).
 */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    char *p = malloc(16);
    if (p == NULL)
        return 1;
    snprintf(p, 16, "static");
    puts(p);
    free(p);
    return 0;
}
