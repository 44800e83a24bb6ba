/*
 * tests/debug_layout.h - reading the fields of a debug block (README, "the
 * layout"): the big-endian size at p-16 and serial at p+N+8.
 */
#ifndef PM_TEST_DEBUG_LAYOUT_H
#define PM_TEST_DEBUG_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "pymalloc.h"

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(a, n) ((void)0)
#endif

/* The bytes of the n at p that are not c. Under memcheck the debug hooks
 * mark the CLEANBYTE fill of a new block undefined (as libc's malloc's
 * bytes are): it is compared through a copy made defined. */
static inline size_t count_not(const unsigned char *p, size_t n, unsigned char c)
{
    size_t bad = 0;
    unsigned char copy[256];
    for (size_t at = 0; at < n; at += sizeof copy) {
        size_t k = n - at < sizeof copy ? n - at : sizeof copy;
        for (size_t i = 0; i < k; i++)
            copy[i] = p[at + i];
        (void)VALGRIND_MAKE_MEM_DEFINED(copy, k);
        for (size_t i = 0; i < k; i++)
            bad += copy[i] != c;
    }
    return bad;
}

/* The big-endian 64-bit number at p. */
static inline uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* The serial number stored in the trailer of an n-byte block. */
static inline uint64_t trailer_serial(const unsigned char *p, size_t n)
{
    return be64(p + n + 8);
}

/* `run` live mem-domain blocks of n bytes, each `step` bytes after the one
 * before, from 200 fresh ones (the others are freed): the first, or NULL
 * (all freed). */
static inline unsigned char *block_run(size_t n, ptrdiff_t step, int run)
{
    enum { COUNT = 200 };
    unsigned char *q[COUNT], *first = NULL;
    for (int i = 0; i < COUNT; i++)
        q[i] = pm_mem_malloc(n);
    for (int i = 0; i < COUNT && first == NULL; i++) {
        int k = 1;
        for (; k < run; k++) {
            int found = 0;
            for (int j = 0; j < COUNT && !found; j++)
                found = q[j] == q[i] + k * step;
            if (!found)
                break;
        }
        if (k == run)
            first = q[i];
    }
    for (int i = 0; i < COUNT; i++)
        if (first == NULL || q[i] < first || q[i] >= first + run * step)
            pm_mem_free(q[i]);
    return first;
}

#endif
