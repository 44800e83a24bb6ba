/*
 * tests/test_oom.c - when the library's own mappings fail, in every mode.
 *
 * This program defines mmap: the library's calls (arenas, tree leaves, side
 * words, the debug registry's tables) come here, and fail while fail_mmap
 * is set; libc's malloc maps through its internal alias and keeps working.
 *  - pool modes: small requests go to libc when no arena can be mapped (as
 *    CPython's pymalloc does), instead of failing while libc has memory;
 *  - debug modes: a realloc that fails below, while the block registry
 *    cannot grow, returns NULL with ENOMEM and leaves the block live and
 *    whole (it used to abort: putting the record back grew the table
 *    first); new blocks are recorded down to each table's last empty slot;
 *  - an aligned block with an alignment of 2^28 or more: the debug modes
 *    neither write the gap before the header (2^28 bytes) nor truncate the
 *    alignment (2^32 became 0, and free passed libc a wrong pointer).
 *  - debug modes: a malloc that fails for want of registry memory (the
 *    block below was served) takes no serial number: the next block made
 *    has the number after the last one's (it skipped one per failure).
 * Found by an audit.
 */
#define _GNU_SOURCE
#include "debug_layout.h"
#include "domains.h"
#include "harness.h"
#include "pm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

PM_TEST_SANITIZER_MAY_RETURN_NULL

static volatile int fail_mmap;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (fail_mmap) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
#ifdef SYS_mmap2 /* 32-bit: SYS_mmap there takes a pointer to its arguments */
    long r = syscall(SYS_mmap2, addr, len, prot, flags, fd, (long)(off / 4096));
#else
    long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
#endif
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return MAP_FAILED;
    }
    return (void *)r;
}

/* 2000 blocks of 480 bytes per domain (about 3 MiB: more than the arena
 * mapped already has room for), with every mapping failing. */
enum { SMALL_N = 2000, SMALL_SIZE = 480 };
static unsigned char *small[PM_DOMAIN_COUNT][SMALL_N];

static void test_small_blocks_without_mappings(void)
{
    struct pm_stats before, after;
    PM_CHECK_EQ(pm_get_stats(&before), 0);
    fail_mmap = 1;
    int failed = 0;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        for (int i = 0; i < SMALL_N; i++) {
            small[d][i] = pm_t_domains[d].malloc(SMALL_SIZE);
            if (small[d][i] == NULL) {
                failed++;
                continue;
            }
            memset(small[d][i], (int)(i & 0xFF), SMALL_SIZE);
        }
    }
    PM_CHECK_EQ(pm_get_stats(&after), 0);
    fail_mmap = 0;
    /* Every one served (the debug registry's first tables, made when the
     * hooks went in, have room for these records). */
    PM_CHECK_EQ(failed, 0);
    if (strstr(pm_mode_name(), "pymalloc") != NULL) {
        PM_CHECK_EQ(after.arenas_current, before.arenas_current); /* none could be mapped */
        PM_CHECK(after.raw_blocks_current > before.raw_blocks_current); /* so libc served */
    }
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        for (int i = 0; i < SMALL_N; i++) {
            if (small[d][i] == NULL)
                continue;
            PM_CHECK_EQ(small[d][i][SMALL_SIZE - 1], (unsigned char)(i & 0xFF));
            if (pm_debug_enabled())
                PM_CHECK_EQ(pm_check_block(small[d][i]), 0);
            pm_t_domains[d].free(small[d][i]);
        }
    }
    /* And the pools serve again once mappings work. */
    void *p = pm_mem_malloc(SMALL_SIZE);
    PM_CHECK(p != NULL);
    pm_mem_free(p);
}

/* Raw-domain blocks (libc below, so registry records in the debug modes)
 * until one fails with every mapping failing, then a realloc of each that
 * libc cannot serve: NULL, ENOMEM, and the block still live and whole. */
enum { REG_MAX = 40000 };
static unsigned char *reg[REG_MAX];

static void test_failed_realloc_while_registry_full(void)
{
    fail_mmap = 1;
    int n = 0, max = pm_debug_enabled() ? REG_MAX : 1000; /* no registry: libc's blocks */
    while (n < max && (reg[n] = pm_raw_malloc(32)) != NULL) {
        memset(reg[n], 0x5A, 32);
        n++;
    }
    int bad = 0;
    for (int i = n - 1; i >= 0; i--) {
        errno = 0;
        void *q = pm_raw_realloc(reg[i], PM_T_HUGE);
        if (q != NULL || errno != ENOMEM || reg[i][0] != 0x5A || reg[i][31] != 0x5A)
            bad++;
        if (pm_debug_enabled() && pm_check_block(reg[i]) != 0)
            bad++;
    }
    fail_mmap = 0;
    PM_CHECK_EQ(bad, 0);
    PM_CHECK(n > 0);
    for (int i = 0; i < n; i++)
        pm_raw_free(reg[i]);
}

/* The registry full of live blocks, with every mapping failing: a realloc
 * whose block the allocator below would move to a new address (which
 * needs a new record, for which there is no room) returns NULL with ENOMEM
 * and leaves the block as it was, or succeeds; it used to abort after the
 * block had moved. */
static void test_realloc_moving_while_registry_full(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no registry in this mode");
    unsigned char *blk = pm_mem_malloc(100);
    memset(blk, 0x33, 100);
    fail_mmap = 1;
    int n = 0;
    while (n < REG_MAX && (reg[n] = pm_raw_malloc(1000)) != NULL)
        n++;
    int err = errno;
    errno = 0;
    unsigned char *q = pm_mem_realloc(blk, 1000); /* 1000 bytes: libc's, a record */
    int rerr = errno;
    fail_mmap = 0;
    PM_CHECK_EQ(err, ENOMEM);
    if (q == NULL) {
        PM_CHECK_EQ(rerr, ENOMEM);
        PM_CHECK_EQ(blk[0], 0x33);
        PM_CHECK_EQ(blk[99], 0x33);
        PM_CHECK_EQ(pm_check_block(blk), 0);
        pm_mem_free(blk);
    } else {
        PM_CHECK_EQ(q[99], 0x33);
        PM_CHECK_EQ(pm_check_block(q), 0);
        pm_mem_free(q);
    }
    for (int i = 0; i < n; i++)
        pm_raw_free(reg[i]);
    /* Room again: a realloc moves its block as usual. */
    unsigned char *r = pm_raw_malloc(10);
    r = pm_raw_realloc(r, 5000);
    PM_CHECK(r != NULL);
    pm_raw_free(r);
}

/* Raw-domain blocks (registry records) until one fails with every mapping
 * failing, then a few more failures: the next block made, once the
 * registry can grow again, has the serial after the last one made. */
static void failed_malloc_takes_no_serial(void)
{
    fail_mmap = 1;
    int n = 0;
    while (n < REG_MAX && (reg[n] = pm_raw_malloc(32)) != NULL)
        n++;
    int failed = n < REG_MAX;
    /* Three more tries: they fail too, unless the block lands in a part of
     * the registry that still has room (its stripes go by the block's
     * page; under ASan's allocator one or two of the three were seen to
     * succeed). Each block made must have the serial after the last one
     * made, failures between them or not. */
    unsigned char *last = n > 0 ? reg[n - 1] : NULL, *more[3] = {0};
    for (int i = 0; i < 3; i++) {
        more[i] = pm_raw_malloc(32);
        if (more[i] == NULL) {
            failed++;
            continue;
        }
        if (last != NULL) /* the failures before it took no serial */
            PM_CHECK_EQ(trailer_serial(more[i], 32), trailer_serial(last, 32) + 1);
        last = more[i];
    }
    fail_mmap = 0;
    unsigned char *q = pm_raw_malloc(32);
    PM_CHECK(failed >= 1);
    PM_CHECK(n > 0);
    PM_CHECK(q != NULL);
    if (last != NULL && q != NULL)
        PM_CHECK_EQ(trailer_serial(q, 32), trailer_serial(last, 32) + 1);
    for (int i = 0; i < 3; i++)
        pm_raw_free(more[i]);
    pm_raw_free(q);
    for (int i = 0; i < n; i++)
        pm_raw_free(reg[i]);
}

static void test_failed_malloc_takes_no_serial(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no serials in this mode");
    failed_malloc_takes_no_serial();
}

static void *failed_malloc_thread(void *arg)
{
    (void)arg;
    failed_malloc_takes_no_serial();
    return NULL;
}

/* The same on a second thread (its serials from a run of its own, not
 * from the counter). Last: the process has had two threads since. */
static void test_failed_malloc_takes_no_serial_threaded(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no serials in this mode");
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, failed_malloc_thread, NULL), 0);
    pthread_join(t, NULL);
}

/* Aligned blocks of 2^28 and 2^32 bytes of alignment (through the mode's
 * aligned allocator, as the malloc override calls it). */
static void test_huge_alignments(void)
{
    if (pm_t_under_valgrind()) /* valgrind 3.19's own memalign stops the process there */
        PM_SKIP("alignments valgrind cannot serve");
    /* Under TSan, 2^28 only: a debug mode asks the allocator below (TSan's
     * own, in that build) for A + N + 16 bytes, and TSan writes the shadow
     * of a whole block when it is allocated and again when it is freed
     * (OnUserAlloc's MemoryRangeImitateWrite, OnUserFree's
     * MemoryRangeFreed): for 2^32 that was 2.2 GB resident and 27 s per
     * debug mode, for a case (the alignment cut to 32 bits) that is not
     * about threads. */
    int last = PM_T_TSAN ? 28 : 32;
    for (int lg = 28; lg <= last; lg += 4) {
        size_t a = (size_t)1 << lg;
        long before = pm_t_resident_kib();
        unsigned char *p = pm_i_domain_memalign(PM_DOMAIN_MEM, a, 64);
        if (p == NULL)
            continue; /* no room for it here (a sanitizer's or valgrind's limits) */
        long grown = pm_t_resident_kib() - before;
        PM_CHECK_EQ((uintptr_t)p % a, 0);
        memset(p, 1, 64);
        if (pm_debug_enabled())
            PM_CHECK_EQ(pm_check_block(p), 0);
        /* Not the gap before the block: 2^28 bytes written were 256 MiB. */
        if (before > 0 && !PM_T_ASAN && !PM_T_TSAN)
            PM_CHECK(grown < 16 * 1024);
        pm_mem_free(p); /* with 2^32: free() of a wrong pointer, abort */
    }
}

int main(void)
{
    pm_t_pin_env(NULL);
    pm_mem_free(pm_mem_malloc(1)); /* the set-up, with mappings working */
    PM_RUN(test_small_blocks_without_mappings);
    PM_RUN(test_failed_realloc_while_registry_full);
    PM_RUN(test_realloc_moving_while_registry_full);
    PM_RUN(test_failed_malloc_takes_no_serial);
    PM_RUN(test_huge_alignments);
    PM_RUN(test_failed_malloc_takes_no_serial_threaded);
    return pm_test_done();
}
