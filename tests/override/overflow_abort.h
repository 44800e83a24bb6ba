/*
 * tests/override/overflow_abort.h - a 40-byte block written 4 bytes past
 * its end (its trailer), then abort(): a debug mode's check at abort
 * reports it (check_heapbug.sh). Returns 3 if the block cannot be had.
 */
#ifndef PM_T_OVERFLOW_ABORT_H
#define PM_T_OVERFLOW_ABORT_H

#include <stdlib.h>

static int overflow_and_abort(void)
{
    volatile size_t n = 40; /* unknown to the compiler: no bounds warning */
    volatile unsigned char *p = malloc(n);
    if (p == NULL)
        return 3;
    for (size_t i = 0; i < n + 4; i++)
        p[i] = 1; /* 4 bytes past the end: the block's trailer */
    abort();
}

#endif
