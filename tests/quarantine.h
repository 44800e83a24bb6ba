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
enum { KEPT_MAX = 256 };
static void *volatile kept[KEPT_MAX];
static int nkept;
static inline void keep(void *p)
{
    PM_CHECK(nkept < KEPT_MAX); /* (else a leak checker counts the rest) */
    if (nkept < KEPT_MAX)
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

/* Block A (n bytes; the block after it `step` bytes above, B) written past
 * its end into B's header and first 8 bytes after B was freed and held
 * (A's trailer, for C library blocks the chunk's size field, B's header):
 * A, with the two serials, or NULL if no two blocks lie so. Needs
 * debug_layout.h first. */
static inline unsigned char *held_after_overflow(size_t n, size_t step, uint64_t *sa,
                                                 uint64_t *sb)
{
    unsigned char *a = block_run(n, (ptrdiff_t)step, 2);
    if (a == NULL)
        return NULL;
    pm_trim(); /* the blocks block_run freed */
    unsigned char *b = a + step;
    *sa = trailer_serial(a, n);
    *sb = trailer_serial(b, n);
    pm_mem_free(b);
    memset(a + n, 'A', step - n + 8);
    return a;
}

/* held_after_overflow, then pm_trim: B's damage is reported once, as A's
 * overflow (not a use after free of B), and B stays freed (its free is a
 * double free). 0, or -1 if no two blocks lie so (a skip). */
static inline int overflow_into_held_found(size_t n, size_t step)
{
    start();
    uint64_t sa, sb;
    unsigned char *a = held_after_overflow(n, step, &sa, &sb);
    if (a == NULL) {
        pm_set_error_handler(NULL, NULL); /* (start's) */
        return -1;
    }
    PM_CHECK_EQ(held_blocks(), 1);
    int saved = quiet_begin();
    PM_CHECK_EQ(pm_trim(), 1);
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_OVERFLOW);
    PM_CHECK(S.r.address == a);
    PM_CHECK_EQ(S.r.size, n);
    PM_CHECK_EQ(S.r.serial, sa);
    PM_CHECK_EQ(S.r.offset, (ptrdiff_t)n);
    char line[200];
    /* ("at least 16 bytes": fewer if A's serial ends in 'A') */
    snprintf(line, sizeof line, "bytes written past the end of a %zu-byte block (serial %llu)",
             n, (unsigned long long)sa);
    PM_CHECK_STR(S.message, line);
    PM_CHECK_STR(S.message, "pymalloc: pm_trim: buffer overflow: at least ");
    PM_CHECK_EQ(held_blocks(), 0);
    keep(a);
    keep(a + step);
    saved = quiet_begin();
    pm_mem_free(a + step); /* B: leaked, and still freed */
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 2);
    PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
    PM_CHECK_EQ(S.r.serial, sb);
    start();
    pm_set_error_handler(NULL, NULL);
    return 0;
}

/* The output of a death test whose child made held_after_overflow's
 * damage, printed "serials SA SB", then ended by exit or abort (`when`):
 * A's overflow reported once, no use after free. */
static inline void overflow_into_held_output(const char *out, size_t n, const char *when)
{
    unsigned long long sa = 0, sb = 0;
    const char *s = strstr(out, "serials ");
    PM_CHECK(s != NULL && sscanf(s, "serials %llu %llu", &sa, &sb) == 2);
    char want[200];
    snprintf(want, sizeof want, "pymalloc: %s: buffer overflow: at least ", when);
    PM_CHECK_STR(out, want);
    snprintf(want, sizeof want, "bytes written past the end of a %zu-byte block (serial %llu)", n,
             sa);
    const char *first = strstr(out, want);
    PM_CHECK(first != NULL && strstr(first + 1, want) == NULL);
    PM_CHECK(strstr(out, "use after free") == NULL);
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", out);
}

#endif
