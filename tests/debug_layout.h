/*
 * tests/debug_layout.h - reading the fields of a debug block (README, "the
 * layout"): the big-endian size at p-16 and serial at p+N+8.
 */
#ifndef PM_TEST_DEBUG_LAYOUT_H
#define PM_TEST_DEBUG_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

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

#endif
