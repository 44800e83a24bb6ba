/*
 * tests/test_pool_links.c - damaged free-list links of the pools under the
 * debug hooks (pymalloc_debug, debug). A free pool block's first 16 bytes
 * hold the pool's free-list link and its complement (modes/pool.h); a
 * write past the end of the block before it (through that block's trailer)
 * or into the freed block's header used to send the next malloc of that
 * class to a wild address: a crash inside the allocator. Now:
 *  - an overflow of a live block into a freed neighbour is reported, at the
 *    malloc that meets the damaged link, as that block's buffer overflow
 *    (its size, serial and offset), in the mem and obj domains;
 *  - a write into a freed block's link (or its check word) is a use after
 *    free of that block, with its size and serial;
 *  - the same damage met by pm_trim's flush of the thread cache, or by a
 *    thread's exit, names that entry point;
 *  - the allocator goes on: the damaged block and the rest of its list are
 *    leaked, and later mallocs and frees of the class work;
 *  - with the default handler: the report, then SIGABRT;
 *  - a write past the end of a pool's last block through the header of
 *    the pool after it: the block's overflow and the damaged header are
 *    reported and the process aborts, whatever the handler;
 *  - a write into the link of a slot never handed out (a run carved into
 *    the thread cache), which skipped the trailer of the block below, is a
 *    stray write naming the slot and that block (it was a use after free
 *    of "the freed 0-byte block (serial 0)", with no API, before
 *    2026-12-05), met by a malloc, pm_trim or a thread's exit;
 *  - the report's api_expected is the API of the call that met the link
 *    (0 for pm_trim and a thread's exit, which have none).
 * Under valgrind's memcheck (no thread caches: the pools' own free lists)
 * the test opens the freed bytes it damages with client requests. Skipped
 * (77) where the blocks are not pool blocks with side words.
 */
#include "debug_layout.h"
#include "domains.h"
#include "pool_class.h"
#include "harness.h"
#include "recorder.h"
#include "pm_debug.h"
#include "pm_internal.h"

#include <pthread.h>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else /* (debug_layout.h defined VALGRIND_MAKE_MEM_DEFINED) */
#define VALGRIND_MAKE_MEM_NOACCESS(a, n) ((void)0)
#endif

enum { N = 40 };
/* 40 + 32 bytes: the 80-byte class (under memcheck, with its slack, 112) */
#define CLS pm_t_pool_class_size(N + 32)

/* A pool block of the debug layer. */
static int pool_block(const unsigned char *p) { return pm_i_pool_owns(p - 16); }

#define NEED_POOL_BLOCKS()                                                         \
    do {                                                                           \
        if (!pm_debug_enabled())                                                   \
            PM_SKIP("no debug hooks in this mode");                                \
        unsigned char *probe_ = pm_mem_malloc(N);                                  \
        int pooled_ = pool_block(probe_);                                          \
        pm_mem_free(probe_);                                                       \
        if (!pooled_)                                                              \
            PM_SKIP("no pool blocks under the debug hooks in this mode");          \
    } while (0)

/* Write n bytes of c at a (freed memory: opened for memcheck first). */
static void damage(unsigned char *a, int c, size_t n)
{
    VALGRIND_MAKE_MEM_DEFINED(a, n);
    memset(a, c, n);
    VALGRIND_MAKE_MEM_NOACCESS(a, n);
}

/* Blocks of D allocated until one shares p's pool (at most 300, in
 * keep[]; returns how many), so that the pool does not empty when p is
 * freed: under memcheck (no thread caches) an empty pool goes back to its
 * arena and is formatted afresh for its next use, which writes p's link
 * anew over any damage. */
static int keep_pool(const pm_t_domain *D, const unsigned char *p, unsigned char **keep)
{
    uintptr_t pool = (uintptr_t)(p - 16) >> 14;
    int k = 0;
    while (k < 300) {
        keep[k] = D->malloc(N);
        if (((uintptr_t)(keep[k++] - 16) >> 14) == pool)
            break;
    }
    return k;
}

/* Under memcheck a freed block is held back from reuse (quarantined) a
 * while: back to its pool's free list now, where the damage planted next
 * is to be met. */
static void unquarantine(void)
{
    if (pm_i_pool_valgrind(NULL))
        pm_i_pool_flush_thread_cache();
}

/* Flip a bit of the freed byte at a (a write that always changes it). */
static void flip(unsigned char *a)
{
    VALGRIND_MAKE_MEM_DEFINED(a, 1);
    *a ^= 0x40;
    VALGRIND_MAKE_MEM_NOACCESS(a, 1);
}

/* Two live blocks of domain D, y right after x in one pool. 0 if none was
 * found among 64 fresh ones (the others are freed). */
static int neighbours(const pm_t_domain *D, unsigned char **x, unsigned char **y)
{
    unsigned char *q[64];
    int keep_x = -1, keep_y = -1;
    for (int i = 0; i < 64; i++)
        q[i] = D->malloc(N);
    for (int i = 0; i < 64 && keep_x < 0; i++)
        for (int j = 0; j < 64; j++)
            if (q[i] != NULL && pool_block(q[i]) && q[j] == q[i] + CLS) {
                keep_x = i;
                keep_y = j;
                break;
            }
    for (int i = 0; i < 64; i++)
        if (i != keep_x && i != keep_y)
            D->free(q[i]);
    if (keep_x < 0)
        return 0;
    *x = q[keep_x];
    *y = q[keep_y];
    return 1;
}

/* The bug these tests plant: two neighbouring blocks x and y of D (see
 * neighbours), y freed, then 24 bytes written past x's end (x's trailer,
 * then y's free-list link). x's serial in *serial; x's 16 trailer bytes as
 * they were in saved (if not NULL). 0 if no neighbours were found. */
static int overflow_into_freed(const pm_t_domain *D, unsigned char **x, unsigned char **y,
                               uint64_t *serial, unsigned char *saved)
{
    if (!neighbours(D, x, y))
        return 0;
    *serial = trailer_serial(*x, N);
    if (saved != NULL)
        memcpy(saved, *x + N, 16);
    D->free(*y);
    unquarantine();
    memset(*x + N, 0x41, 16);
    damage(*y - 16, 0x41, 8);
    return 1;
}

/* The one report so far names x's overflow, with its serial. */
static int reported_overflow_of(const unsigned char *x, uint64_t serial)
{
    return S.calls == 1 && S.r.error == PM_ERR_BUFFER_OVERFLOW && S.r.address == x &&
           S.r.serial == serial;
}

/* Mallocs and frees of the class go on working. */
static void class_still_works(const pm_t_domain *D)
{
    unsigned char *q[200];
    for (int i = 0; i < 200; i++) {
        q[i] = D->malloc(N);
        PM_CHECK(q[i] != NULL);
        memset(q[i], i, N);
    }
    for (int i = 0; i < 200; i++)
        D->free(q[i]);
    PM_CHECK_EQ(S.calls, 1);
}

static void test_overflow_into_freed_neighbour(void)
{
    NEED_POOL_BLOCKS();
    for (int c = 0; c < 6; c++) {
        int d = PM_DOMAIN_MEM + c % 2, how = c / 2;
        const pm_t_domain *D = &pm_t_domains[d];
        unsigned char *x = NULL, *y = NULL;
        uint64_t serial = 0;
        unsigned char saved[16];
        if (!overflow_into_freed(D, &x, &y, &serial, saved)) {
            PM_CHECK(!"two neighbouring blocks");
            continue;
        }
        watch();
        /* The next allocation of the class takes y, and checks its link:
         * a malloc, a calloc, or a realloc that moves a block there
         * (calloc and realloc reach the pool through its own entry
         * points, not the hooks' inline pop). */
        /* Under memcheck (no thread caches) a later one may take y, once
         * y's pool is its class's first. */
        static unsigned char *q[4096];
        int k = 0;
        while (k < 4096 && S.calls == 0) {
            if (how == 0)
                q[k] = D->malloc(N);
            else if (how == 1)
                q[k] = D->calloc(1, N);
            else
                q[k] = D->realloc(D->malloc(8), N); /* 8 + 32: the 48-byte class */
            PM_CHECK(q[k] != NULL && q[k] != y);
            k++;
        }
        PM_CHECK(pm_t_under_valgrind() || k == 1);
        PM_CHECK_EQ(S.calls, 1);
        PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_OVERFLOW);
        PM_CHECK(S.r.address == x);
        PM_CHECK_EQ(S.r.size, (size_t)N);
        PM_CHECK_EQ(S.r.serial, serial);
        PM_CHECK_EQ(S.r.offset, (ptrdiff_t)N);
        PM_CHECK_EQ(S.r.api_expected, "rmo"[d]);
        char want[160];
        snprintf(want, sizeof want,
                 "pymalloc: pm_%s_%s: buffer overflow: at least 16 bytes written past the "
                 "end of a 40-byte block (serial %llu)",
                 D->name, how == 0 ? "malloc" : how == 1 ? "calloc" : "realloc",
                 (unsigned long long)serial);
        PM_CHECK_STR(S.message, want);
        memcpy(x + N, saved, 16); /* x repaired: live and whole */
        PM_CHECK_EQ(pm_check_block(x), 0);
        D->free(x);
        while (k > 0)
            D->free(q[--k]);
        class_still_works(D);
        pm_set_error_handler(NULL, NULL);
    }
}

/* A freed block whose link is NULL (the first into an empty list), a
 * link-like value (another slot of its class) written over its link word:
 * the report gives the span the damage lies in, not the complement word
 * as the bytes written (a review: "at p-8 .. p-3", never written). */
static void test_link_written_over_a_null_link(void)
{
    NEED_POOL_BLOCKS();
    if (pm_t_under_valgrind())
        PM_SKIP("no thread caches under memcheck: no list starts empty here");
    const pm_t_domain *D = &pm_t_domains[PM_DOMAIN_MEM];
    enum { K = 200 };
    unsigned char *keep[K];
    int k = 0, found = -1;
    /* Blocks until one is freed into an empty list (the thread cache's
     * list of the class emptied by the mallocs before it). */
    while (k < K && found < 0) {
        keep[k] = D->malloc(N);
        PM_CHECK(keep[k] != NULL);
        unsigned char *p = keep[k++];
        D->free(p);
        uint64_t w[2];
        VALGRIND_MAKE_MEM_DEFINED(p - 16, 16);
        memcpy(w, p - 16, 16);
        VALGRIND_MAKE_MEM_NOACCESS(p - 16, 16);
        if (w[0] == 0 && w[1] == ~(uint64_t)0 && k > 1)
            found = k - 1;
        else
            keep[k - 1] = D->malloc(N); /* (taken again: kept) */
    }
    if (found < 0) {
        while (k > 0)
            D->free(keep[--k]);
        PM_SKIP("no block freed into an empty list");
    }
    unsigned char *p = keep[found];
    uint64_t v = (uint64_t)(uintptr_t)(keep[0] - 16); /* a slot of the class */
    VALGRIND_MAKE_MEM_DEFINED(p - 16, 8);
    memcpy(p - 16, &v, 8);
    VALGRIND_MAKE_MEM_NOACCESS(p - 16, 8);
    watch();
    static unsigned char *q[512];
    int n = 0;
    while (n < 512 && S.calls == 0)
        q[n++] = D->malloc(N);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK(S.r.address == p);
    PM_CHECK_EQ(S.r.offset, -16);
    PM_CHECK_STR(S.message, "link in its first 16 bytes was overwritten, somewhere in p-16 .. p-");
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", S.message);
    while (n > 0)
        D->free(q[--n]);
    for (int i = 0; i < k; i++)
        if (i != found) /* (p is leaked with its list) */
            D->free(keep[i]);
    class_still_works(D);
    pm_set_error_handler(NULL, NULL);
}

static void test_write_into_freed_header(void)
{
    NEED_POOL_BLOCKS();
    for (int d = PM_DOMAIN_MEM; d <= PM_DOMAIN_OBJ; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        /* the link's first byte; the check word's; a byte inside the check
         * word (the report names the byte: before 2026-12-07, p-16 always) */
        static const int at[] = {-16, -8, -3};
        for (int which = 0; which < 3; which++) {
            unsigned char *p = D->malloc(N), *keep[300];
            PM_CHECK(p != NULL);
            int kept = keep_pool(D, p, keep);
            uint64_t serial = trailer_serial(p, N);
            D->free(p);
            unquarantine();
            flip(p + at[which]);
            watch();
            /* The next malloc of the class takes p, from the thread cache;
             * under memcheck (no caches) a later one may, once p's pool is
             * the class's first. */
            static unsigned char *q[4096];
            int k = 0;
            while (k < 4096 && S.calls == 0) {
                q[k] = D->malloc(N);
                PM_CHECK(q[k] != NULL && q[k] != p);
                k++;
            }
            PM_CHECK(pm_t_under_valgrind() || k == 1);
            PM_CHECK_EQ(S.calls, 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
            PM_CHECK(S.r.address == p);
            PM_CHECK_EQ(S.r.size, (size_t)N);
            PM_CHECK_EQ(S.r.serial, serial);
            PM_CHECK_EQ(S.r.offset, at[which]);
            PM_CHECK_EQ(S.r.api_expected, "rmo"[d]);
            PM_CHECK_EQ(S.r.api_found, "rmo"[d]);
            char want[200];
            snprintf(want, sizeof want,
                     "pymalloc: pm_%s_malloc: use after free: the freed 40-byte block (serial "
                     "%llu) at %p was written after its free (the pool's free-list link in "
                     "its first 16 bytes was overwritten at p%d)",
                     D->name, (unsigned long long)serial, (void *)p, at[which]);
            PM_CHECK_STR(S.message, want);
            while (k > 0)
                D->free(q[--k]);
            while (kept > 0)
                D->free(keep[--kept]);
            class_still_works(D);
            pm_set_error_handler(NULL, NULL);
        }
    }
}

static void test_damage_met_by_trim(void)
{
    NEED_POOL_BLOCKS();
    if (pm_t_under_valgrind())
        PM_SKIP("no thread caches under memcheck: pm_trim flushes nothing");
    unsigned char *p = pm_mem_malloc(N);
    uint64_t serial = trailer_serial(p, N);
    pm_mem_free(p);
    damage(p - 16, 0x33, 16);
    watch();
    pm_trim(); /* the flush of the thread cache meets it */
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK_EQ(S.r.serial, serial);
    PM_CHECK_STR(S.message, "pymalloc: pm_trim: use after free: the freed 40-byte block");
    PM_CHECK_EQ(S.r.api_expected, 'm'); /* (no API of its own: the block's) */
    class_still_works(&pm_t_domains[PM_DOMAIN_MEM]);
    pm_set_error_handler(NULL, NULL);
}

static void *free_and_damage(void *arg)
{
    uint64_t *serial = arg;
    unsigned char *p = pm_obj_malloc(N);
    *serial = trailer_serial(p, N);
    pm_obj_free(p);
    damage(p - 16, 0x5a, 8);
    return NULL; /* the cache's flush at exit meets it */
}

static void test_damage_met_at_thread_exit(void)
{
    NEED_POOL_BLOCKS();
    if (pm_t_under_valgrind())
        PM_SKIP("no thread caches under memcheck");
    watch();
    uint64_t serial = 0;
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, free_and_damage, &serial), 0);
    pthread_join(t, NULL);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK_EQ(S.r.serial, serial);
    PM_CHECK_STR(S.message, "pymalloc: thread exit: use after free: the freed 40-byte block");
    class_still_works(&pm_t_domains[PM_DOMAIN_OBJ]);
    pm_set_error_handler(NULL, NULL);
}

static void damaged_then_malloc(void *arg)
{
    (void)arg;
    unsigned char *p = pm_mem_malloc(N), *keep[300];
    keep_pool(&pm_t_domains[PM_DOMAIN_MEM], p, keep);
    pm_mem_free(p);
    unquarantine();
    damage(p - 16, 0x41, 16);
    for (int k = 0; k < 4096; k++) /* the first takes p, but under memcheck */
        pm_mem_malloc(N);
}

static void test_default_handler_aborts(void)
{
    NEED_POOL_BLOCKS();
    pm_death_result r;
    pm_death(damaged_then_malloc, NULL, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_mem_malloc: use after free: the freed 40-byte block");
    PM_CHECK_STR(r.output, "Freed pool block at p=");
    PM_CHECK_STR(r.output, "41 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41");
}

/* A write past the end of the last block of a pool through the header of
 * the used pool after it (`fill` bytes over both): the pools abort at the
 * next use of that header, naming the block and the damaged header; an
 * error handler cannot keep the process going (handler: one is set). */
typedef struct header_case {
    int fill, handler; /* handler: 1 one that returns, 2 PYMALLOC_ON_ERROR=report */
    size_t into; /* bytes of the next pool's header written */
    int then;    /* what meets it: 0 frees and mallocs, 1 pm_get_stats, 2 reallocs,
                    3 the free of the block itself (reported, leaked), then 0 */
} header_case;

static void no_report(const pm_error_report *r, void *ctx)
{
    (void)r;
    (void)ctx;
}

static void overflow_into_pool_header(void *arg)
{
    const header_case *hc = arg;
    enum { COUNT = 3000 };
    static unsigned char *q[COUNT];
    if (hc->handler == 1)
        pm_set_error_handler(no_report, NULL);
    else if (hc->handler == 2)
        pm_i_debug_on_error_report = 1;
    for (int i = 0; i < COUNT; i++)
        q[i] = pm_mem_malloc(N);
    int last = -1;
    uintptr_t next_pool = 0;
    for (int i = 0; i < COUNT && last < 0; i++) {
        uintptr_t end = (uintptr_t)(q[i] - 16) + CLS, pool_end = (end + 16383) & ~(uintptr_t)16383;
        if (pool_end - end < CLS && pm_i_pool_owns((void *)(pool_end + 48))) {
            last = i;
            next_pool = pool_end;
        }
    }
    if (last < 0) {
        fprintf(stderr, "no block at the end of a pool\n");
        _exit(3);
    }
    unsigned char *p = q[last];
    memset(p + N, hc->fill, 16);             /* its trailer (live) */
    /* the slack (of its block, then of its pool), the next pool's header
     * (one byte of it: changed, whatever it held) */
    if (hc->into == 1) {
        damage(p + N + 16, hc->fill, next_pool - (uintptr_t)(p + N + 16));
        flip((unsigned char *)next_pool);
    } else {
        damage(p + N + 16, hc->fill, next_pool - (uintptr_t)(p + N + 16) + hc->into);
    }
    if (hc->then == 1) {
        struct pm_stats st;
        pm_get_stats(&st); /* reads every pool's header */
    } else if (hc->then == 2) {
        for (int i = 0; i < COUNT; i++) /* moves: each block to the next class */
            if (i != last)
                q[i] = pm_mem_realloc(q[i], N + 16);
    } else if (hc->then == 3) {
        pm_mem_free(p); /* reported (its trailer), and leaked */
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < COUNT; i++)
            if (i != last)
                pm_mem_free(q[i]);
        for (int i = 0; i < COUNT; i++)
            if (i != last)
                q[i] = pm_mem_malloc(N);
    }
    pm_trim();
    fprintf(stderr, "the pools went on\n");
}

static void test_overflow_into_next_pool_header(void)
{
    NEED_POOL_BLOCKS();
    for (int k = 0; k < 7; k++) {
        /* 0x41 or zeros over the whole header; with a handler; one byte
         * of it (its first field); met by the statistics; by reallocs
         * (under memcheck, the size slot's lookup); after the block's
         * own free reported it, with PYMALLOC_ON_ERROR=report */
        header_case hc = {k == 1 ? 0 : 0x41, k == 2 ? 1 : k == 6 ? 2 : 0, k == 3 ? 1 : 48,
                          k < 4 ? 0 : k < 6 ? k - 3 : 3};
        pm_death_result r;
        pm_death(overflow_into_pool_header, &hc, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        const char *over = ": buffer overflow: at least 16 bytes written past the end of a "
                           "40-byte block (serial ";
        PM_CHECK_STR(r.output, over);
        PM_CHECK_STR(r.output, ": heap damage: the pool allocator's header of the pool at ");
        if (k == 6) {
            /* reported once, by its free (before 2026-12-06: again, with
             * its dump, before the pools' abort) */
            unsigned long long serial = 0;
            const char *first = strstr(r.output, over);
            PM_CHECK(first != NULL && sscanf(first + strlen(over), "%llu", &serial) == 1);
            PM_CHECK(first == NULL || strstr(first + 1, over) == NULL);
            PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: buffer overflow: at least 16 bytes");
            char want[200];
            snprintf(want, sizeof want,
                     " (%zu-byte blocks) was overwritten by the write past the end of the block "
                     "at 0x", CLS);
            PM_CHECK_STR(r.output, want);
            snprintf(want, sizeof want,
                     " (serial %llu), the last block of the pool before it, reported before; the "
                     "pools cannot go on: aborting",
                     serial);
            PM_CHECK_STR(r.output, want);
            PM_CHECK(strstr(r.output, "the pools went on") == NULL);
            continue;
        }
        char want[200];
        snprintf(want, sizeof want,
                 " (%zu-byte blocks) was overwritten by the write past the end of the block "
                 "reported above, the last block of the pool before it; the pools cannot go "
                 "on: aborting", CLS);
        PM_CHECK_STR(r.output, want);
        PM_CHECK(strstr(r.output, "the pools went on") == NULL);
    }
}

/* A write before the start of a pool's first block, down through its
 * header into the pool's header (a loop from index -6 of an int array):
 * the pools abort at the next use of that header, naming the block's
 * underflow (before 2026-12-07 the line blamed the last block of the pool
 * before it, and the block was never named). reported: the block's
 * pm_check_block reported it first, with PYMALLOC_ON_ERROR=report. */
static void underflow_into_pool_header(void *arg)
{
    int reported = arg != NULL;
    enum { COUNT = 3000 };
    static unsigned char *q[COUNT];
    if (reported)
        pm_i_debug_on_error_report = 1;
    int first = -1;
    for (int i = 0; i < COUNT && first < 0; i++) {
        q[i] = pm_mem_malloc(N);
        if ((((uintptr_t)q[i] - 16) & 16383) == 48)
            first = i;
    }
    if (first < 0) {
        fprintf(stderr, "no block at the start of a pool\n");
        _exit(3);
    }
    unsigned char *p = q[first];
    memset(p - 24, 0x41, 24 + N); /* the pool header's last 8 bytes, the block's header, its data */
    if (reported && pm_check_block(p) != -1)
        _exit(4);
    for (int round = 0; round < 3; round++) { /* frees and mallocs of the class */
        for (int i = 0; i < first; i++)
            pm_mem_free(q[i]);
        for (int i = 0; i < first; i++)
            q[i] = pm_mem_malloc(N);
    }
    void *more[COUNT];
    for (int i = 0; i < COUNT; i++)
        more[i] = pm_mem_malloc(N);
    for (int i = 0; i < COUNT; i++)
        pm_mem_free(more[i]);
    pm_mem_free(p);
    pm_trim();
    fprintf(stderr, "the pools went on\n");
}

static void test_underflow_into_pool_header(void)
{
    NEED_POOL_BLOCKS();
    for (int k = 0; k < 2; k++) {
        pm_death_result r;
        pm_death(underflow_into_pool_header, k == 1 ? (void *)1 : NULL, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        char want[200];
        snprintf(want, sizeof want,
                 ": buffer underflow: at least 16 bytes written before the start of a %d-byte "
                 "block (serial ", (int)N);
        PM_CHECK_STR(r.output, want);
        PM_CHECK_STR(r.output, ": heap damage: the pool allocator's header of the pool at ");
        if (k == 0)
            PM_CHECK_STR(r.output, " was overwritten by the write before the start of the block "
                                   "reported above, the pool's first block; the pools cannot go "
                                   "on: aborting");
        else
            PM_CHECK_STR(r.output, "), the pool's first block, reported before; the pools cannot "
                                   "go on: aborting");
        PM_CHECK(strstr(r.output, "the last block of the pool before it") == NULL);
        PM_CHECK(strstr(r.output, "the pools went on") == NULL);
        if (pm_t_cur_failed)
            fprintf(stderr, "case %d: %s\n", k, r.output);
    }
}

/* A copy of the pool allocator, read before the hooks went in, set back on
 * the mem domain over them while the obj domain keeps them: both share the
 * thread caches, and the copy's pops check links too. A block freed by the
 * obj hooks, its link damaged by an overflow of the block before it, is
 * met by a malloc of the bare copy: no crash, and the damage is reported
 * (by pm_trim here: the copy has no entry point of the hooks). */
static void bare_copy_meets_damage(void *arg)
{
    (void)arg;
    pm_allocator bare;
    if (pm_get_allocator(PM_DOMAIN_MEM, &bare) != 0 || pm_setup_debug_hooks() != 0 ||
        pm_set_allocator(PM_DOMAIN_MEM, &bare) != 0)
        _exit(3);
    watch();
    const pm_t_domain *D = &pm_t_domains[PM_DOMAIN_OBJ];
    unsigned char *x = NULL, *y = NULL;
    uint64_t serial = 0;
    if (!overflow_into_freed(D, &x, &y, &serial, NULL))
        _exit(4);
    void *q[8];
    for (int i = 0; i < 8; i++) /* the bare copy: N + 32 bytes, y's class */
        q[i] = pm_mem_malloc(N + 32);
    pm_trim();
    if (!reported_overflow_of(x, serial))
        _exit(5);
    for (int i = 0; i < 8; i++)
        if (q[i] == y)
            _exit(6);
    _exit(0);
}

/* The hooks put back with pm_set_allocator after pm_set_mode installed a
 * mode without them (which turns side words and link checks off): the
 * checks are on again. */
static void put_back_meets_damage(void *arg)
{
    (void)arg;
    pm_allocator a[PM_DOMAIN_COUNT];
    if (pm_set_mode("pymalloc_debug") != 0)
        _exit(3);
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        pm_get_allocator((pm_domain)d, &a[d]);
    if (pm_set_mode("pymalloc") != 0)
        _exit(3);
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        if (pm_set_allocator((pm_domain)d, &a[d]) != 0)
            _exit(3);
    if (!pm_debug_enabled())
        _exit(4);
    watch();
    const pm_t_domain *D = &pm_t_domains[PM_DOMAIN_MEM];
    unsigned char *x = NULL, *y = NULL;
    uint64_t serial = 0;
    if (!overflow_into_freed(D, &x, &y, &serial, NULL))
        _exit(5);
    pm_trim(); /* the flush meets y's link */
    if (!reported_overflow_of(x, serial))
        _exit(6);
    _exit(0);
}

static void test_put_back_hooks_check_links(void)
{
    if (pm_t_under_valgrind())
        PM_SKIP("no thread caches under memcheck: pm_trim flushes nothing");
    pm_death_result r;
    pm_death(put_back_meets_damage, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
    PM_CHECK_STR(r.output, "pymalloc: pm_trim: buffer overflow: at least 16 bytes written past "
                           "the end of a 40-byte block");
}

static void test_bare_pool_copy_checks_links(void)
{
    if (pm_debug_enabled() || strcmp(pm_mode_name(), "pymalloc") != 0)
        PM_SKIP("pymalloc mode only: the hooks go in over it at run time");
    if (pm_t_under_valgrind())
        PM_SKIP("no thread caches under memcheck");
    pm_death_result r;
    pm_death(bare_copy_meets_damage, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
    PM_CHECK_STR(r.output, "pymalloc: pm_trim: buffer overflow: at least 16 bytes written past "
                           "the end of a 40-byte block");
}

/* Stray writes: blocks of SN bytes (SN + 32 = 232: the 240-byte class,
 * used by no other test here), so that the first malloc of the class in
 * the process carves a fresh run into the thread cache: the block x it
 * returns, then slots never handed out. */
enum { SN = 200, SCLS = 240 };

/* x, the first block of its class in this process (its own thread's, for
 * the thread-exit case), then 8 bytes written at the slot after it, past
 * x's trailer and the slot's 8 spare bytes: that slot's free-list link. */
static unsigned char *stray_write_after(const pm_t_domain *D)
{
    unsigned char *x = D->malloc(SN);
    PM_CHECK(x != NULL && pool_block(x));
    memset(x + SN + 27, 0x55, 5); /* the next slot's link (x - 16 + SCLS): p-13 .. p-9 */
    return x;
}

static unsigned long stray_before, freed_before; /* the counts before the case */

static void stray_watch(void)
{
    watch();
    stray_before = pm_error_count(PM_ERR_STRAY_WRITE);
    freed_before = pm_error_count(PM_ERR_USE_AFTER_FREE);
}

static void check_stray_report(const char *entry, const unsigned char *x, char api)
{
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_STRAY_WRITE);
    PM_CHECK(S.r.address == x + SCLS);
    PM_CHECK_EQ(S.r.size, (size_t)SCLS);
    PM_CHECK_EQ(S.r.serial, 0);
    PM_CHECK_EQ(S.r.offset, -13);
    PM_CHECK_EQ(S.r.api_expected, api);
    PM_CHECK_EQ(S.r.api_found, 0);
    char want[400];
    snprintf(want, sizeof want,
             "pymalloc: %s: stray write: the free-list link of the unused 240-byte pool slot "
             "at %p (no block was handed out there since its pool took that size) was "
             "overwritten at p-13 .. p-9, 27 bytes past the end of the live 200-byte block (serial %llu) at "
             "%p, whose guard bytes are intact",
             entry, (const void *)(x + SCLS), (unsigned long long)trailer_serial(x, SN),
             (const void *)x);
    PM_CHECK_STR(S.message, want);
    PM_CHECK_EQ(pm_error_count(PM_ERR_STRAY_WRITE), stray_before + 1);
    PM_CHECK_EQ(pm_error_count(PM_ERR_USE_AFTER_FREE), freed_before);
    PM_CHECK_STR(pm_error_class_name(PM_ERR_STRAY_WRITE), "stray write");
}

static void stray_then_malloc(void *arg)
{
    (void)arg;
    unsigned char *x = stray_write_after(&pm_t_domains[PM_DOMAIN_OBJ]);
    pm_obj_malloc(SN); /* meets the link */
    pm_obj_free(x);
}

static void *stray_in_thread(void *arg)
{
    *(unsigned char **)arg = stray_write_after(&pm_t_domains[PM_DOMAIN_MEM]);
    return NULL; /* the cache's flush at exit meets the link */
}

/* In a child: x's stray write met by a pm_mem_malloc (the report, then
 * the class goes on) or by pm_trim (how: "malloc" or "trim"). */
static void stray_met_by(void *how)
{
    stray_watch();
    unsigned char *x = stray_write_after(&pm_t_domains[PM_DOMAIN_MEM]);
    if (strcmp(how, "malloc") == 0) {
        unsigned char *y = pm_mem_malloc(SN);
        PM_CHECK(y != NULL && y != x + SCLS);
        check_stray_report("pm_mem_malloc", x, 'm');
        PM_CHECK_EQ(pm_check_block(x), 0); /* x itself is whole */
        pm_mem_free(y);
    } else {
        pm_trim();
        check_stray_report("pm_trim", x, 0);
    }
    pm_mem_free(x);
    class_still_works(&pm_t_domains[PM_DOMAIN_MEM]);
    pm_set_error_handler(NULL, NULL);
}

static void test_stray_write_into_unused_slot(void)
{
    NEED_POOL_BLOCKS();
    if (pm_t_under_valgrind())
        PM_SKIP("no thread caches under memcheck: slots are carved one at a time");
    /* Met by a malloc (the report, then the class goes on) and by pm_trim:
     * each in a child of its own, so that each finds the class untouched.
     * Then with the default handler (a child too), and last by a thread's
     * exit, here: no class of SN bytes was used here before. */
    PM_CHECK(pm_t_child_within(stray_met_by, "malloc", 60));
    PM_CHECK(pm_t_child_within(stray_met_by, "trim", 60));
    pm_death_result r;
    pm_death(stray_then_malloc, NULL, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_obj_malloc: stray write: the free-list link of the "
                           "unused 240-byte pool slot at ");
    PM_CHECK_STR(r.output, "    Free pool slot at p=");
    PM_CHECK_STR(r.output, " 55 55 55 55 55 ");
    PM_CHECK_STR(r.output, "    The block below it in memory: the live 200-byte block (serial ");
    PM_CHECK_STR(r.output, "allocated with API 'o' (pm_obj_*).\n    Its trailer (the 16 bytes "
                           "after its data) is intact: a write past its end that skipped it");
    stray_watch();
    unsigned char *x = NULL;
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, stray_in_thread, &x), 0);
    pthread_join(t, NULL);
    check_stray_report("thread exit", x, 0);
    pm_mem_free(x);
    class_still_works(&pm_t_domains[PM_DOMAIN_MEM]);
    pm_set_error_handler(NULL, NULL);
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_bare_pool_copy_checks_links); /* first: before any block */
    PM_RUN(test_put_back_hooks_check_links);  /* (in children: still none) */
    PM_RUN(test_overflow_into_freed_neighbour);
    PM_RUN(test_write_into_freed_header);
    PM_RUN(test_link_written_over_a_null_link);
    PM_RUN(test_damage_met_by_trim);
    PM_RUN(test_damage_met_at_thread_exit);
    PM_RUN(test_default_handler_aborts);
    PM_RUN(test_overflow_into_next_pool_header);
    PM_RUN(test_underflow_into_pool_header);
    PM_RUN(test_stray_write_into_unused_slot);
    return pm_test_done();
}
