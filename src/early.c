/*
 * src/early.c - the early arena: blocks for allocations made during set-up.
 *
 * A bump allocator over a static array (it lives in .bss, so untouched pages
 * cost nothing). Each block is preceded by a 16-byte header:
 *
 *     start ............ header (16 bytes) ........ data (aligned)
 *     ^ reservation     [size_t n][size_t start]    ^ returned pointer
 *
 * `start` is the offset where the block's reservation began, so freeing the
 * most recent block rolls the top back to it (a compare-and-swap: only the
 * thread running the set-up allocates here, but nothing relies on that).
 */
#include "pm_override.h"

#include <string.h>

unsigned char pm_i_early_arena[PM_I_EARLY_SIZE] __attribute__((aligned(64)));
static _Atomic size_t early_top;

#define HDR 16

void *pm_i_early_alloc(size_t n, size_t alignment)
{
    if (alignment < 16)
        alignment = 16;
    if (n > PM_I_EARLY_SIZE || alignment > PM_I_EARLY_SIZE)
        return NULL;
    uintptr_t base = (uintptr_t)pm_i_early_arena;
    size_t top = atomic_load_explicit(&early_top, memory_order_relaxed);
    for (;;) {
        uintptr_t data = (base + top + HDR + alignment - 1) & ~(uintptr_t)(alignment - 1);
        size_t end = (size_t)(data - base) + ((n + 15) & ~(size_t)15);
        if (end > PM_I_EARLY_SIZE)
            return NULL;
        if (atomic_compare_exchange_weak_explicit(&early_top, &top, end, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            size_t hdr[2] = {n, top};
            memcpy((void *)(data - HDR), hdr, sizeof hdr);
            memset((void *)data, 0, n); /* a reclaimed block may be dirty */
            return (void *)data;
        }
    }
}

size_t pm_i_early_size(const void *p)
{
    size_t n;
    memcpy(&n, (const unsigned char *)p - HDR, sizeof n);
    return n;
}

void pm_i_early_free(void *p)
{
    size_t hdr[2];
    memcpy(hdr, (unsigned char *)p - HDR, sizeof hdr);
    size_t end = (size_t)((unsigned char *)p - pm_i_early_arena) + ((hdr[0] + 15) & ~(size_t)15);
    /* Reclaim only the most recent block; others stay (set-up keeps them). */
    atomic_compare_exchange_strong_explicit(&early_top, &end, hdr[1], memory_order_relaxed,
                                            memory_order_relaxed);
}

size_t pm_i_early_used(void) { return atomic_load_explicit(&early_top, memory_order_relaxed); }
