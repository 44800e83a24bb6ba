/* tests/pool_class.h - the pools' size class of a request, as modes/pool.c
 * picks it: CPython's (n - 1) / 16, and under memcheck that of n + 40
 * (vg_malloc: 40 to 55 bytes of slack after every block, its redzone). For
 * requests of 1 byte up to the pools' threshold less that slack. */
#ifndef PM_TEST_POOL_CLASS_H
#define PM_TEST_POOL_CLASS_H

#include "pm_internal.h"

#include <stddef.h>

/* The class's index (0: 16 bytes). */
static inline size_t pm_t_pool_class(size_t n)
{
    return pm_i_pool_valgrind(NULL) ? (n + 39) / 16 : (n - 1) / 16;
}

/* The class's block size. */
static inline size_t pm_t_pool_class_size(size_t n) { return (pm_t_pool_class(n) + 1) * 16; }

/* The largest request of the pools with threshold t (512; 544 under the
 * debug hooks). */
static inline size_t pm_t_pool_largest(size_t t) { return t - (pm_i_pool_valgrind(NULL) ? 40 : 0); }

#endif
