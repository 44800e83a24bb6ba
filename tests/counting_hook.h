/*
 * tests/counting_hook.h - a hook that counts calls and passes them down.
 *
 * The way every hook is installed: get the current allocator into the hook's
 * ctx, set the hook; the hook calls down through the saved allocator.
 */
#ifndef PM_TEST_COUNTING_HOOK_H
#define PM_TEST_COUNTING_HOOK_H

#include "pymalloc.h"

#include <stdatomic.h>

typedef struct counting_hook {
    pm_allocator below;
    atomic_long mallocs, callocs, reallocs, frees;
} counting_hook;

static void *ch_malloc(void *ctx, size_t n)
{
    counting_hook *h = ctx;
    atomic_fetch_add(&h->mallocs, 1);
    return h->below.malloc(h->below.ctx, n);
}

static void *ch_calloc(void *ctx, size_t nelem, size_t elsize)
{
    counting_hook *h = ctx;
    atomic_fetch_add(&h->callocs, 1);
    return h->below.calloc(h->below.ctx, nelem, elsize);
}

static void *ch_realloc(void *ctx, void *p, size_t n)
{
    counting_hook *h = ctx;
    atomic_fetch_add(&h->reallocs, 1);
    return h->below.realloc(h->below.ctx, p, n);
}

static void ch_free(void *ctx, void *p)
{
    counting_hook *h = ctx;
    atomic_fetch_add(&h->frees, 1);
    h->below.free(h->below.ctx, p);
}

/* Wrap the domain's current allocator with h; returns pm_set_allocator's rc. */
static inline int counting_hook_install(counting_hook *h, pm_domain d)
{
    atomic_store(&h->mallocs, 0);
    atomic_store(&h->callocs, 0);
    atomic_store(&h->reallocs, 0);
    atomic_store(&h->frees, 0);
    if (pm_get_allocator(d, &h->below) != 0)
        return -1;
    pm_allocator me = {h, ch_malloc, ch_calloc, ch_realloc, ch_free};
    return pm_set_allocator(d, &me);
}

static inline int counting_hook_remove(counting_hook *h, pm_domain d)
{
    return pm_set_allocator(d, &h->below);
}

#endif
