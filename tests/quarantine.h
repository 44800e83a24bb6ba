/*
 * tests/quarantine.h - helpers of the quarantine's tests
 * (test_debug_quarantine, test_debug_pool_quarantine): the blocks held,
 * a start with it empty, blocks kept reachable, and two churning threads
 * run while a third trims. Needs recorder.h and harness.h first.
 */
#ifndef PM_TEST_QUARANTINE_H
#define PM_TEST_QUARANTINE_H

#include "pm_debug.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static inline size_t held_blocks(void)
{
    size_t n, bytes;
    pm_i_debug_quarantine_held(&n, &bytes);
    return n;
}

static inline size_t held_bytes(void)
{
    size_t n, bytes;
    pm_i_debug_quarantine_held(&n, &bytes);
    return bytes;
}

/* Blocks reported and leaked by the hooks, kept reachable here so that a
 * leak checker (LeakSanitizer, in the ASan build) does not count them. */
static void *volatile kept[64];
static int nkept;
static inline void keep(void *p)
{
    if (nkept < 64)
        kept[nkept++] = p;
}

/* Empty the quarantine, expecting no report (the recorder watching). */
static inline void start(void)
{
    watch();
    pm_trim();
    PM_CHECK_EQ(S.calls, 0);
    PM_CHECK_EQ(held_blocks(), 0);
}

static atomic_int stop_trim;

static void *trimmer(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_trim)) {
        pm_trim();
        usleep(200);
    }
    return NULL;
}

/* churn((void *)1) and churn((void *)2) in two threads while a third
 * trims: 1 if both returned NULL. */
static inline int churn_while_trimming(void *(*churn)(void *))
{
    pthread_t a, b, t;
    atomic_store(&stop_trim, 0);
    if (pthread_create(&t, NULL, trimmer, NULL) != 0)
        return 0;
    void *ra = (void *)1, *rb = (void *)1;
    int ok_a = pthread_create(&a, NULL, churn, (void *)1) == 0;
    int ok_b = pthread_create(&b, NULL, churn, (void *)2) == 0;
    if (ok_a)
        pthread_join(a, &ra);
    if (ok_b)
        pthread_join(b, &rb);
    atomic_store(&stop_trim, 1);
    pthread_join(t, NULL);
    return ra == NULL && rb == NULL;
}

#endif
