/*
 * tests/test_debug_side.c - what the debug layer knows of a block, whichever
 * way it keeps it: a pool block's side word (pymalloc_debug: mem and obj
 * domains) or the registry (malloc_debug, the raw domain, big and aligned
 * blocks). The same expectations hold in every debug mode:
 *  - a second free of a block whose pool has since emptied (its pool back
 *    in its arena, no longer in the ownership tree) is a double free, with
 *    the block's size and serial;
 *  - an interior pointer (into the data, the header, a pool's header) is an
 *    invalid pointer, for free, realloc and pm_check_block; one past the
 *    end of the data is named so (p+1 of a 0-byte block was "1 byte into
 *    the live 0-byte block");
 *  - two threads freeing one block at once: exactly one free succeeds, the
 *    other is reported as a double free (also run under TSan);
 *  - a failed realloc leaves the block live and whole: its free succeeds and
 *    a second free is a double free with its original size and serial;
 *  - serials past 2^48 (48 of their bits are kept) check and report whole.
 * Skipped (77) in a mode without debug hooks.
 */
#include "debug_layout.h"
#include "domains.h"
#include "pool_class.h"
#include "harness.h"
#include "pm_debug.h"
#include "pm_internal.h"
#include "raw_label.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

PM_TEST_SANITIZER_MAY_RETURN_NULL

#define NEED_DEBUG()                                                               \
    do {                                                                           \
        if (!pm_debug_enabled())                                                   \
            PM_SKIP("no debug hooks in this mode");                                \
    } while (0)

/* The tests of glibc's chunk headers: libc blocks with glibc's headers,
 * which the library reads on 64-bit only (src/pm_internal.h:
 * PM_GLIBC_CHUNKS; 32-bit glibc's are 8 bytes of 4-byte words). */
#if defined(__GLIBC__) && __SIZEOF_SIZE_T__ == 8 && __SIZEOF_POINTER__ == 8
#define PM_T_GLIBC 1
#else
#define PM_T_GLIBC 0
#endif
#define NEED_GLIBC_HEADERS()                                                       \
    do {                                                                           \
        if (!PM_T_GLIBC)                                                           \
            PM_SKIP("glibc's 64-bit chunk headers only");                          \
        if (PM_T_ASAN || PM_T_TSAN || pm_t_under_valgrind())                       \
            PM_SKIP("the sanitizers' and valgrind's allocators have no glibc header"); \
    } while (0)

typedef struct seen {
    atomic_int calls;
    atomic_int double_frees;
    pm_error_report r; /* the last report (single-threaded tests only) */
    char message[512]; /* its line */
} seen;

static seen S;

static void record(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&S.calls, 1);
    if (r->error == PM_ERR_DOUBLE_FREE)
        atomic_fetch_add(&S.double_frees, 1);
    S.r = *r;
    snprintf(S.message, sizeof S.message, "%s", r->message);
    S.r.message = NULL;
    S.r.entry = NULL;
}

static void watch(void)
{
    atomic_store(&S.calls, 0);
    atomic_store(&S.double_frees, 0);
    memset(&S.r, 0, sizeof S.r);
    pm_set_error_handler(record, NULL);
}

/* A pool block of the debug layer: its underlying block is in a pool. */
static int pool_block(const unsigned char *p) { return pm_i_pool_owns(p - 16); }

static void test_double_free_after_pool_emptied(void)
{
    NEED_DEBUG();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        /* Sizes of classes nothing else in this process uses, one per
         * domain, so that the block's pool holds only it. */
        size_t n = 300 + 48 * (size_t)d;
        unsigned char *p = D->malloc(n);
        PM_CHECK(p != NULL);
        int in_pool = pool_block(p);
        uint64_t serial = trailer_serial(p, n);
        D->free(p);
        pm_i_pool_flush_thread_cache(); /* the cache's blocks back to their pools */
        if (in_pool) /* the pool is empty: back in its arena, not ours any more */
            PM_CHECK(!pm_i_pool_owns(p - 16));
        watch();
        D->free(p);
        PM_CHECK_EQ(atomic_load(&S.calls), 1);
        PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
        PM_CHECK_EQ(S.r.size, n);
        PM_CHECK_EQ(S.r.serial, serial);
        PM_CHECK(S.r.address == p);
        /* The same for realloc and pm_check_block: a use after free. */
        PM_CHECK(D->realloc(p, 10) == NULL);
        PM_CHECK_EQ(atomic_load(&S.calls), 2);
        PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
        PM_CHECK_EQ(S.r.serial, serial);
        PM_CHECK_EQ(pm_check_block(p), -1);
        PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
        PM_CHECK_EQ(S.r.size, n);
        pm_set_error_handler(NULL, NULL);
    }
}

static void test_interior_pointers_are_invalid(void)
{
    NEED_DEBUG();
    for (int d = 0; d < 2 * PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d % PM_DOMAIN_COUNT];
        size_t n = d < PM_DOMAIN_COUNT ? 100 : 500; /* 500: a wide class (544) */
        unsigned char *p = D->malloc(n);
        PM_CHECK(p != NULL);
        uint64_t serial = trailer_serial(p, n);
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)i;
        /* Into the data (not 16-aligned), into the header; for a pool block
         * also 16-aligned ones into the data and into its pool's header.
         * (Not for a registry block: a block freed earlier may have been
         * at such an address, and the registry remembers it.) */
        unsigned char *wrong[] = {p + 1, p - 8, p + 16, p + 48,
                                  (unsigned char *)((uintptr_t)p & ~(uintptr_t)16383) + 16};
        int nwrong = pool_block(p) ? 5 : 2;
        watch();
        for (int k = 0; k < nwrong; k++) {
            int before = atomic_load(&S.calls);
            D->free(wrong[k]);
            PM_CHECK_EQ(atomic_load(&S.calls), before + 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_INVALID_POINTER);
            PM_CHECK(S.r.address == wrong[k]);
            PM_CHECK_EQ(S.r.size, 0); /* nothing known, nothing read */
            PM_CHECK(D->realloc(wrong[k], 10) == NULL);
            PM_CHECK_EQ(S.r.error, PM_ERR_INVALID_POINTER);
            PM_CHECK_EQ(pm_check_block(wrong[k]), -1);
            PM_CHECK_EQ(S.r.error, PM_ERR_INVALID_POINTER);
            PM_CHECK_EQ(atomic_load(&S.calls), before + 3);
        }
        /* Each report names the block pointed into: the line of the last
         * (its size, serial, address, API and the pointer's offset). */
        char want[320];
        snprintf(want, sizeof want,
                 "it points 8 bytes before the live %zu-byte block (serial %llu) at %p, "
                 "allocated with API '%c' (pm_%s_*): offset -8 from its data start, in its "
                 "header",
                 n, (unsigned long long)serial, (void *)p, D->name[0], D->name);
        if (pool_block(p)) /* wrong[4]: its pool's header, in no block */
            PM_CHECK_STR(S.message, "(a stack or global address, an interior pointer");
        else /* wrong[1]: p - 8 */
            PM_CHECK_STR(S.message, want);
        /* The block itself is untouched and still live. */
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += p[i] != (unsigned char)i;
        PM_CHECK_EQ(bad, 0);
        int before = atomic_load(&S.calls);
        PM_CHECK_EQ(pm_check_block(p), 0);
        D->free(p);
        PM_CHECK_EQ(atomic_load(&S.calls), before);
        if (pool_block(p)) {
            /* A pool slot remembers its freed block. */
            D->free(p + 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_INVALID_POINTER);
            snprintf(want, sizeof want,
                     "it points 1 byte into the freed %zu-byte block (serial %llu) at %p, "
                     "allocated with API '%c' (pm_%s_*): offset +1 from its data start",
                     n, (unsigned long long)serial, (void *)p, D->name[0], D->name);
            PM_CHECK_STR(S.message, want);
        }
        pm_set_error_handler(NULL, NULL);
    }
}

/* ---------------------------------------------------------------------------
 * Two threads free one block at once.
 */

typedef struct racer {
    const pm_t_domain *D;
    _Atomic(unsigned char *) *cell;
    atomic_int *go;
    int rounds;
} racer;

static void *race_thread(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        while (atomic_load(&r->go[0]) != 2 * i + 1) /* round i is open */
            sched_yield();
        r->D->free(atomic_load(r->cell));
        atomic_fetch_add(&r->go[1], 1); /* done with round i */
        while (atomic_load(&r->go[0]) == 2 * i + 1)
            sched_yield();
    }
    return NULL;
}

/* Pointers at and past the end of a block's data (into the 16 bytes after
 * it): the report says how far past the end, not "into" the block. */
static void test_pointer_past_the_end_named(void)
{
    NEED_DEBUG();
    static const struct {
        size_t n, off;
        const char *want;
    } cases[] = {
        {0, 0, NULL},
        {0, 1, "it points 1 byte past the end of the live 0-byte block (serial "},
        {0, 8, "it points 8 bytes past the end of the live 0-byte block (serial "},
        {8, 7, "it points 7 bytes into the live 8-byte block (serial "},
        {8, 8, "it points just past the end of the live 8-byte block (serial "},
        {8, 9, "it points 1 byte past the end of the live 8-byte block (serial "},
    };
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            unsigned char *p = D->malloc(cases[c].n);
            PM_CHECK(p != NULL);
            watch();
            int saved = quiet_begin();
            int rc = pm_check_block(p + cases[c].off);
            quiet_end(saved);
            if (cases[c].want == NULL) {
                PM_CHECK_EQ(rc, 0);
                PM_CHECK_EQ(atomic_load(&S.calls), 0);
            } else {
                PM_CHECK_EQ(rc, -1);
                PM_CHECK_EQ(S.r.error, PM_ERR_INVALID_POINTER);
                PM_CHECK_STR(S.message, cases[c].want);
            }
            pm_set_error_handler(NULL, NULL);
            D->free(p);
        }
    }
}

static void test_racing_double_free(void)
{
    NEED_DEBUG();
    enum { ROUNDS = 300 };
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        _Atomic(unsigned char *) cell;
        atomic_int go[2];
        atomic_store(&go[0], 0);
        atomic_store(&go[1], 0);
        racer r = {&pm_t_domains[d], &cell, go, ROUNDS};
        watch();
        int saved = quiet_begin();
        pthread_t t[2];
        for (int k = 0; k < 2; k++)
            PM_CHECK_EQ(pthread_create(&t[k], NULL, race_thread, &r), 0);
        for (int i = 0; i < ROUNDS; i++) {
            size_t n = 24 + (size_t)(i % 5) * 250; /* pool blocks and big ones */
            atomic_store(&cell, r.D->malloc(n));
            atomic_store(&go[0], 2 * i + 1);
            while (atomic_load(&go[1]) != 2 * (i + 1))
                sched_yield();
            atomic_store(&go[0], 2 * i + 2);
        }
        for (int k = 0; k < 2; k++)
            pthread_join(t[k], NULL);
        quiet_end(saved);
        /* One report per round, each a double free. */
        PM_CHECK_EQ(atomic_load(&S.calls), ROUNDS);
        PM_CHECK_EQ(atomic_load(&S.double_frees), ROUNDS);
        pm_set_error_handler(NULL, NULL);
    }
    /* Every block was given back to its allocator exactly once. */
    if (strcmp(pm_mode_name(), "pymalloc_debug") == 0) {
        pm_i_pool_flush_thread_cache();
        PM_CHECK_EQ(pm_i_pool_validate(NULL), 0);
    }
}

/* pm_check_block of a block another thread is freeing (a race in the
 * program): the block is either live and intact or freed, so the only
 * report possible is a use after free (the check read the bytes while the
 * free filled them, and called that damage). */
static _Atomic(unsigned char *) check_cell;
static atomic_int check_stop, check_other;

static void count_not_uaf(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&S.calls, 1);
    if (r->error != PM_ERR_USE_AFTER_FREE)
        atomic_fetch_add(&check_other, 1);
}

static void *check_freer(void *arg)
{
    const pm_t_domain *D = arg;
    for (int i = 0; i < 20000; i++) {
        unsigned char *p = D->malloc(24 + (size_t)(i % 3) * 100);
        atomic_store(&check_cell, p);
        for (volatile int k = 0; k < 20; k++)
            ;
        atomic_store(&check_cell, NULL);
        D->free(p);
    }
    atomic_store(&check_stop, 1);
    return NULL;
}

static void test_check_racing_free(void)
{
    NEED_DEBUG();
    /* The race is the point: TSan reports it (the check reads what the
     * free writes), and memcheck reports the check's read of a block the
     * free made inaccessible. */
    if (PM_T_TSAN)
        PM_SKIP("a data race on purpose");
    if (pm_t_under_valgrind())
        PM_SKIP("reads freed blocks on purpose");
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        watch();
        atomic_store(&check_stop, 0);
        atomic_store(&check_other, 0);
        pm_set_error_handler(count_not_uaf, NULL);
        int saved = quiet_begin();
        pthread_t t;
        PM_CHECK_EQ(pthread_create(&t, NULL, check_freer, (void *)&pm_t_domains[d]), 0);
        while (!atomic_load(&check_stop)) {
            unsigned char *p = atomic_load(&check_cell);
            if (p != NULL)
                pm_check_block(p);
        }
        pthread_join(t, NULL);
        quiet_end(saved);
        pm_set_error_handler(NULL, NULL);
        PM_CHECK_EQ(atomic_load(&check_other), 0);
    }
}

/* A failed realloc puts the block back: live, whole, same serial. */
static void test_realloc_failure_restores_block(void)
{
    NEED_DEBUG();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        size_t sizes[] = {40, 450, 2000};
        for (int k = 0; k < 3; k++) {
            size_t n = sizes[k];
            unsigned char *p = D->malloc(n);
            PM_CHECK(p != NULL);
            memset(p, 0x5A, n);
            uint64_t serial = trailer_serial(p, n);
            size_t huge[] = {PM_T_HUGE, (size_t)PTRDIFF_MAX - 8};
            watch();
            for (int h = 0; h < 2; h++) {
                PM_CHECK(D->realloc(p, huge[h]) == NULL);
                PM_CHECK_EQ(pm_check_block(p), 0);
                PM_CHECK_EQ(trailer_serial(p, n), serial);
                PM_CHECK_EQ(pm_i_domain_usable_size(D->domain, p), n);
            }
            PM_CHECK_EQ(atomic_load(&S.calls), 0);
            D->free(p); /* live: no report */
            PM_CHECK_EQ(atomic_load(&S.calls), 0);
            D->free(p);
            PM_CHECK_EQ(atomic_load(&S.calls), 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
            PM_CHECK_EQ(S.r.size, n);
            PM_CHECK_EQ(S.r.serial, serial);
            pm_set_error_handler(NULL, NULL);
        }
    }
}

/* Pool blocks are not in the registry (their side words know them); other
 * blocks are. */
static void test_pool_blocks_skip_registry(void)
{
    NEED_DEBUG();
    enum { N = 200 };
    static unsigned char *p[N];
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        size_t before = 0, after = 0;
        pm_i_reg_metadata_bytes(&before);
        int pooled = 0;
        for (int i = 0; i < N; i++) {
            p[i] = D->malloc((size_t)(i % 4) * 150); /* 0, 150, 300, 450 */
            pooled += pool_block(p[i]);
        }
        pm_i_reg_metadata_bytes(&after);
        /* Records are live and freed blocks: a new block may replace the
         * freed record of its address, so only "no new record" is exact. */
        if (pooled == N)
            PM_CHECK_EQ(after, before);
        else
            PM_CHECK(after >= (size_t)(N - pooled));
        if (strcmp(pm_mode_name(), "pymalloc_debug") == 0)
            PM_CHECK_EQ(pooled, d == PM_DOMAIN_RAW ? 0 : N);
        for (int i = 0; i < N; i++)
            D->free(p[i]);
    }
}

/* Every block has a record of its own: blocks of six classes allocated in
 * turn (so that neighbouring pools of an arena hold different classes),
 * more than fill one 1 MiB arena, every block index of a pool in use; every
 * second block freed. A second free of each freed block names that block's
 * own size and serial; every live block checks clean and frees without a
 * report. (pymalloc_debug keeps pool blocks' records in side words laid out
 * by pool and block index, modes/pool.h: two blocks sharing a word would
 * show here as a wrong serial or a false report.) */
static void test_every_block_its_own_record(void)
{
    NEED_DEBUG();
    enum { N = 12000 };
    /* 0: the 32-byte class, 509 blocks a pool (every word of a pool) */
    static const size_t sizes[] = {0, 16, 48, 112, 240, 496};
    static unsigned char *p[N];
    static uint64_t serial[N];
    const pm_t_domain *D = &pm_t_domains[PM_DOMAIN_MEM];
    int pooled = 0;
    for (int i = 0; i < N; i++) {
        size_t n = sizes[i % 6];
        p[i] = D->malloc(n);
        PM_CHECK(p[i] != NULL);
        serial[i] = trailer_serial(p[i], n);
        pooled += pool_block(p[i]);
    }
    if (strcmp(pm_mode_name(), "pymalloc_debug") == 0 && !PM_T_ASAN && !PM_T_TSAN)
        PM_CHECK_EQ(pooled, pm_i_pool_valgrind(NULL) ? N - N / 6 : N); /* (496: libc there) */
    for (int i = 0; i < N; i += 2)
        D->free(p[i]);
    watch();
    int saved = quiet_begin();
    int bad = 0;
    for (int i = 0; i < N; i += 2) {
        int before = atomic_load(&S.calls);
        D->free(p[i]);
        if (atomic_load(&S.calls) != before + 1 || S.r.error != PM_ERR_DOUBLE_FREE ||
            S.r.size != sizes[i % 6] || S.r.serial != serial[i] || S.r.address != p[i])
            bad++;
    }
    quiet_end(saved);
    PM_CHECK_EQ(bad, 0);
    PM_CHECK_EQ(atomic_load(&S.calls), N / 2);
    for (int i = 1; i < N; i += 2)
        PM_CHECK_EQ(pm_check_block(p[i]), 0);
    for (int i = 1; i < N; i += 2)
        D->free(p[i]);
    PM_CHECK_EQ(atomic_load(&S.calls), N / 2);
    pm_set_error_handler(NULL, NULL);
}

extern int pm_i_p_vg;

/* pymalloc_debug: every request of up to 512 bytes (what pymalloc mode
 * serves from its pools) is a pool block of exactly N + 32 bytes rounded
 * up to 16, 481..512 included (two classes more, 528 and 544, hold those);
 * 513 and up go to libc. The wide blocks are checked like any other: an
 * overflow into their last byte, an underflow and a double free are named
 * with their size and serial. The statistics say 544 and show the blocks.
 * In the other debug modes no block is a pool block and the threshold
 * stays 512. */
static void test_every_small_request_pooled(void)
{
    NEED_DEBUG();
    int pymalloc_debug = strcmp(pm_mode_name(), "pymalloc_debug") == 0;
    struct pm_stats st;
    for (int d = PM_DOMAIN_MEM; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t n = 0; n <= 520; n++) {
            unsigned char *p = (n & 1) ? D->calloc(n, 1) : D->malloc(n);
            PM_CHECK(p != NULL);
            /* Under memcheck a block keeps 40 bytes of slack or more: so
             * requests over 472 go to libc there. */
            size_t need = n + 32;
            int want = pymalloc_debug && need <= pm_t_pool_largest(544);
            PM_CHECK_EQ(pool_block(p), want);
            if (want)
                PM_CHECK_EQ((size_t)pm_i_pool_class_of(p - 16), pm_t_pool_class(need));
            D->free(p);
        }
        if (!pymalloc_debug)
            continue;
        static const size_t sizes[] = {481, 496, 497, 511, 512};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            unsigned char *p = D->malloc(n);
            pm_get_stats(&st);
            PM_CHECK_EQ(st.small_threshold, 544);
            if (pool_block(p))
                PM_CHECK(st.classes[pm_i_pool_class_of(p - 16)].blocks_in_use >= 1);
            uint64_t serial = be64(p + n + 8);
            watch();
            p[n] = 0x41; /* one byte past the end */
            D->free(p);
            PM_CHECK_EQ(S.calls, 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_OVERFLOW);
            PM_CHECK_EQ(S.r.size, n);
            PM_CHECK_EQ(S.r.serial, serial);
            PM_CHECK_EQ(S.r.offset, (ptrdiff_t)n);
            p = D->malloc(n);
            serial = be64(p + n + 8);
            watch();
            p[-1] = 0x41;
            D->free(p);
            PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_UNDERFLOW);
            PM_CHECK_EQ(S.r.offset, -1);
            PM_CHECK_EQ(S.r.size, n);
            PM_CHECK_EQ(S.r.serial, serial);
            p = D->malloc(n);
            serial = be64(p + n + 8);
            watch();
            D->free(p);
            PM_CHECK_EQ(S.calls, 0);
            D->free(p);
            PM_CHECK_EQ(S.calls, 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
            PM_CHECK_EQ(S.r.size, n);
            PM_CHECK_EQ(S.r.serial, serial);
            pm_set_error_handler(NULL, NULL);
        }
    }
    if (!pymalloc_debug) {
        pm_get_stats(&st);
        PM_CHECK_EQ(st.small_threshold, 512);
    }
}

/* pymalloc_debug: the statistics' raw blocks are named in the program's
 * sizes, not the pools' (which carry the hooks' 32 bytes): requests past
 * 512 bytes (511 under memcheck) and aligned ones; 0 is a pool block. The
 * label said "0, >544": a request of 544 bytes was a raw block. */
static void test_raw_label_in_user_sizes(void)
{
    NEED_DEBUG();
    if (strcmp(pm_mode_name(), "pymalloc_debug") != 0)
        PM_SKIP("the pools serve no domain in this mode");
    for (int d = PM_DOMAIN_MEM; d < PM_DOMAIN_COUNT; d++)
        pm_t_check_raw_label(&pm_t_domains[d]);
}

/* Every size up to past the pool's largest class, in every domain: the
 * layout, CLEANBYTE over exactly the data after malloc, 0 after calloc,
 * and, for a pool block, DEADBYTE over the whole freed block (its first
 * word is the free list's link; the block stays mapped in its pool, so it
 * can be read here, except under memcheck, which forbids it). The blocks
 * taken before and after each one are checked whole after its fills: a
 * fill past its block would damage the next block's header, where they
 * are neighbours, as they mostly are. */

static void test_fills_every_size(void)
{
    NEED_DEBUG();
    static const char api[PM_DOMAIN_COUNT] = {'r', 'm', 'o'};
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t n = 0; n <= 540; n++) {
            for (int zero = 0; zero < 2; zero++) {
                unsigned char *before = D->malloc(n);
                unsigned char *p = zero ? D->calloc(1, n) : D->malloc(n);
                unsigned char *after = D->malloc(n);
                PM_CHECK(p != NULL && before != NULL && after != NULL);
                PM_CHECK_EQ(be64(p - 16), n);
                PM_CHECK_EQ(p[-8], (unsigned char)api[d]);
                PM_CHECK_EQ(count_not(p - 7, 7, 0xFD), 0);
                PM_CHECK_EQ(count_not(p, n, zero ? 0x00 : 0xCD), 0);
                PM_CHECK_EQ(count_not(p + n, 8, 0xFD), 0);
                PM_CHECK_EQ(pm_check_block(p), 0);
                int peek = pool_block(p) && !pm_i_p_vg;
                D->free(p);
                if (peek) {
                    /* Data and trailer 0xDD; the header holds the pool's
                     * free-list link and its complement (pool.h). */
                    PM_CHECK_EQ(count_not(p, n + 16, 0xDD), 0);
                    PM_CHECK_EQ(be64(p - 16) ^ be64(p - 8), ~(uint64_t)0);
                }
                PM_CHECK_EQ(pm_check_block(before), 0);
                PM_CHECK_EQ(pm_check_block(after), 0);
                D->free(before);
                D->free(after);
            }
        }
    }
}

/* A write past the end of one libc block that skips its trailer lands in
 * glibc's chunk header of the next block (the size word, 8 bytes before
 * it). glibc's free would abort on it with a message naming the wrong bug
 * ("double free or corruption (out)"); the hooks check the word and report
 * a buffer underflow of the damaged block, with its size, serial and the
 * offset of the word, and keep the block from libc. On glibc, outside
 * valgrind and the sanitizers (their allocators have no such header).
 * Checked on free, realloc and pm_check_block, for plain, big and aligned
 * libc blocks in every domain (pool blocks have no libc header). */
typedef struct libc_block {
    unsigned char *p;
    size_t n, offset;
} libc_block;

static libc_block libc_block_of(int d, int kind)
{
    const pm_t_domain *D = &pm_t_domains[d];
    libc_block b = {NULL, kind == 0 ? 24 : kind == 1 ? 1000 : 40, kind == 2 ? 64 : 16};
    b.p = kind == 2 ? pm_i_domain_memalign(D->domain, 64, b.n) : D->malloc(b.n);
    return b;
}

static void damage_child(void *arg)
{
    const libc_block *b = arg;
    memset(b->p - b->offset - 8, 0x41, 8);
    pm_t_domains[PM_DOMAIN_RAW].free(b->p);
}

static void test_libc_header_damage(void)
{
    NEED_DEBUG();
    NEED_GLIBC_HEADERS();
    int tried = 0;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (int kind = 0; kind < 3; kind++) {
            for (int op = 0; op < 3; op++) { /* free, realloc, pm_check_block */
                libc_block b = libc_block_of(d, kind);
                PM_CHECK(b.p != NULL);
                if (pool_block(b.p)) { /* pymalloc_debug's pool blocks */
                    D->free(b.p);
                    continue;
                }
                tried++;
                uint64_t serial = be64(b.p + b.n + 8);
                unsigned char *word = b.p - b.offset - 8, saved[8];
                memcpy(saved, word, 8);
                memset(word, op == 1 ? 0 : 0x41, 8); /* too big; zero */
                watch();
                if (op == 0)
                    D->free(b.p);
                else if (op == 1)
                    PM_CHECK(D->realloc(b.p, 3000) == NULL);
                else
                    PM_CHECK_EQ(pm_check_block(b.p), -1);
                PM_CHECK_EQ(S.calls, 1);
                PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_UNDERFLOW);
                PM_CHECK_EQ(S.r.size, b.n);
                PM_CHECK_EQ(S.r.serial, serial);
                PM_CHECK_EQ(S.r.offset, -(ptrdiff_t)(b.offset + 8));
                PM_CHECK(S.r.address == b.p);
                /* The block was kept (leaked): repaired, it is whole and
                 * live, and goes back cleanly. */
                memcpy(word, saved, 8);
                PM_CHECK_EQ(pm_check_block(b.p), 0);
                D->free(b.p);
                PM_CHECK_EQ(S.calls, 1);
                pm_set_error_handler(NULL, NULL);
            }
        }
    }
    PM_CHECK(tried > 0); /* every mode has libc blocks: the raw domain's */
    /* The default handler: the report, then SIGABRT (not glibc's abort). */
    libc_block b = libc_block_of(PM_DOMAIN_RAW, 0);
    pm_death_result r;
    pm_death(damage_child, &b, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    char want[200];
    snprintf(want, sizeof want,
             "pymalloc: pm_raw_free: buffer underflow: the C library's chunk header 24 bytes "
             "before the start of a 24-byte block (serial %llu) was overwritten",
             (unsigned long long)be64(b.p + 24 + 8));
    PM_CHECK_STR(r.output, want);
    PM_CHECK_STR(r.output, "The C library's chunk header at p-24 holds 0x4141414141414141");
    PM_CHECK(strstr(r.output, "double free or corruption") == NULL);
    pm_t_domains[PM_DOMAIN_RAW].free(b.p);
}

/* A write past the end of block a that goes on through its trailer into
 * the header of the live block b after it (a pool block of the same pool;
 * a C library block: its chunk header too) is found when b is freed or
 * checked, and named as a's buffer overflow (a's size, serial, offset),
 * with b in the dump. */
static void overflow_blamed(const pm_t_domain *D, unsigned char *a, size_t na, unsigned char *b,
                            size_t nb, size_t upto, int op, int fill)
{
    uint64_t sa = trailer_serial(a, na), sb = trailer_serial(b, nb);
    size_t span = (size_t)(b - a) - na - upto; /* a's end .. b - upto */
    unsigned char saved[256];
    PM_CHECK(span <= sizeof saved);
    memcpy(saved, a + na, span);
    memset(a + na, fill, span);
    watch();
    int quiet = quiet_begin();
    if (op == 0)
        D->free(b);
    else
        PM_CHECK_EQ(pm_check_block(b), -1);
    quiet_end(quiet);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_OVERFLOW);
    PM_CHECK(S.r.address == a);
    PM_CHECK_EQ(S.r.size, na);
    PM_CHECK_EQ(S.r.serial, sa);
    PM_CHECK_EQ(S.r.offset, (ptrdiff_t)na);
    PM_CHECK_STR(S.message, "buffer overflow: at least ");
    memcpy(a + na, saved, span); /* both whole again: b was kept (leaked) */
    PM_CHECK_EQ(pm_check_block(a), 0);
    PM_CHECK_EQ(pm_check_block(b), 0);
    PM_CHECK_EQ(trailer_serial(b, nb), sb);
    /* Two bugs, not one write: a written one byte past its end, b's
     * header damaged on its own. b's damage is b's. */
    a[na] ^= 0x55;
    unsigned char *hb = b - 16 - (upto - 8), keep_hb = *hb;
    *hb ^= 0x55;
    watch();
    quiet = quiet_begin();
    PM_CHECK_EQ(pm_check_block(b), -1);
    quiet_end(quiet);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK(S.r.address == b);
    PM_CHECK_EQ(S.r.serial, sb);
    PM_CHECK(S.r.error != PM_ERR_BUFFER_OVERFLOW);
    a[na] ^= 0x55;
    *hb = keep_hb;
    D->free(a);
    D->free(b);
    PM_CHECK_EQ(S.calls, 1);
    pm_set_error_handler(NULL, NULL);
}

static void test_overflow_blamed_on_block_before(void)
{
    NEED_DEBUG();
    if (pm_t_under_valgrind())
        PM_SKIP("the overflow crosses bytes memcheck guards (a pool block's slack)");
    int tried = 0;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        /* op 0: free, zeros (a NUL-terminated overrun: they leave the high
         * bytes of b's size field and of a's serial as they were); 1:
         * pm_check_block, 0x41; 2: free, zeros, and a's serial a multiple
         * of 256 (its last byte too is left as it was) */
        for (int op = 0; op < 3; op++) {
            /* Two neighbours among fresh blocks of one size. */
            enum { K = 64 };
            unsigned char *q[K];
            size_t n = 40;
            for (int i = 0; i < K; i++) {
                if (op == 2) /* serials that are multiples of 256, far above the others */
                    pm_i_debug_set_next_serial((UINT64_C(1) << 49) + ((uint64_t)(d * K + i) << 8));
                q[i] = D->malloc(n);
            }
            int ia = -1, ib = -1;
            size_t upto = 0;
            if (pool_block(q[0])) {
                for (int i = 0; i < K && ia < 0; i++)
                    for (int j = 0; j < K; j++)
                        if (q[j] == q[i] + 80) {
                            ia = i, ib = j;
                            upto = 8; /* up to b's API id: its size field */
                            break;
                        }
            } else if (PM_T_GLIBC && !PM_T_ASAN && !PM_T_TSAN) {
                /* glibc: chunks of 80 bytes (72 + 8, rounded); b's chunk
                 * header (prev_size, which a's trailer uses, then size) is
                 * the 16 bytes before its underlying block. */
                for (int i = 0; i < K && ia < 0; i++)
                    for (int j = 0; j < K; j++)
                        if (q[j] == q[i] + 80) {
                            ia = i, ib = j;
                            upto = 16; /* through its chunk's size word */
                            break;
                        }
            }
            for (int i = 0; i < K; i++)
                if (i != ia && i != ib)
                    D->free(q[i]);
            if (ia < 0)
                continue;
            tried++;
            int fill = op == 1 ? 0x41 : 0;
            overflow_blamed(D, q[ia], n, q[ib], n, upto, op == 2 ? 0 : op, fill);
        }
    }
    if (tried == 0)
        PM_SKIP("no neighbouring blocks to overflow between here");
}

/* The "poison null byte": a string copied 25 bytes past the end of a
 * 2000-byte libc block, its last zero byte on the low byte of the next
 * chunk's size word (2048: a multiple of 256), which clears only the
 * PREV_INUSE bit. glibc's free of the next block would merge it with a
 * "free" chunk before it found through prev_size, the string's bytes, and
 * crash there; the hooks see the previous chunk cannot be (it is a live
 * block of theirs) and report the overflow, keeping the block from glibc. */
static void test_poison_null_byte(void)
{
    NEED_DEBUG();
    NEED_GLIBC_HEADERS();
    enum { K = 8 };
    unsigned char *q[K];
    for (int i = 0; i < K; i++)
        q[i] = pm_raw_malloc(2000);
    unsigned char *a = NULL, *b = NULL;
    for (int i = 0; i < K && a == NULL; i++)
        for (int j = 0; j < K; j++)
            if (q[j] == q[i] + 2048) {
                a = q[i];
                b = q[j];
                break;
            }
    for (int i = 0; i < K; i++)
        if (q[i] != a && q[i] != b)
            pm_raw_free(q[i]);
    if (a == NULL)
        PM_SKIP("no two neighbouring 2000-byte blocks");
    uint64_t sa = trailer_serial(a, 2000);
    unsigned char saved[25];
    memcpy(saved, a + 2000, 25);
    PM_CHECK_EQ(saved[24] & 0xF, 1); /* the size word's low byte: 0x801 */
    memset(a + 2000, 0x41, 24);
    a[2024] = 0; /* the string's end */
    watch();
    int quiet = quiet_begin();
    pm_raw_free(b);
    quiet_end(quiet);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_OVERFLOW);
    PM_CHECK(S.r.address == a);
    PM_CHECK_EQ(S.r.serial, sa);
    memcpy(a + 2000, saved, 25); /* both whole again: b was kept */
    PM_CHECK_EQ(pm_check_block(a), 0);
    PM_CHECK_EQ(pm_check_block(b), 0);
    pm_raw_free(b);
    pm_raw_free(a);
    PM_CHECK_EQ(S.calls, 1);
    pm_set_error_handler(NULL, NULL);
}

/* A stray write into the high bytes of the size word of an mmapped chunk
 * (an int array's a[-5] = 1: the size grows by 4 GiB, its low bits, which
 * glibc's own test reads, as they were): before, the hooks took the word
 * for sane and glibc's free unmapped 4 GiB past the block's mapping (the
 * program's code with it: SIGSEGV, no report). Now a buffer underflow of
 * the block, as for any damage there; checked by pm_check_block here, by
 * free and realloc in children (which crashed). Plain and aligned blocks
 * of 40 MiB, above glibc's largest mmap threshold. */
enum { MMAPPED_N = 40 << 20 };

static unsigned char *mmapped_block(size_t align)
{
    return align ? pm_i_domain_memalign(PM_DOMAIN_RAW, align, MMAPPED_N)
                 : pm_raw_malloc(MMAPPED_N);
}

static void mmapped_damage_child(void *arg)
{
    int op = (int)(intptr_t)arg;
    unsigned char *p = mmapped_block(op & 2 ? 4096 : 0);
    size_t offset = op & 2 ? 4096 : 16;
    ((int *)(p - offset))[-1] = 1; /* the size word's high half */
    if (op & 1)
        (void)pm_raw_realloc(p, 2 * MMAPPED_N);
    else
        pm_raw_free(p);
    _exit(0);
}

static void test_mmapped_header_high_bytes(void)
{
    NEED_DEBUG();
    NEED_GLIBC_HEADERS();
    if (atomic_load(&pm_i_libc_chunk_page) == 0)
        PM_SKIP("the C library's chunk headers are not checked here");
    for (int aligned = 0; aligned < 2; aligned++) {
        size_t offset = aligned ? 4096 : 16;
        unsigned char *p = mmapped_block(aligned ? 4096 : 0);
        PM_CHECK(p != NULL);
        unsigned char *word = p - offset - 8;
        size_t saved;
        memcpy(&saved, word, 8);
        if (!(saved & 2)) {
            pm_raw_free(p);
            PM_SKIP("not an mmapped chunk");
        }
        uint64_t serial = trailer_serial(p, MMAPPED_N);
        for (int byte = 3; byte < 8; byte++) {
            watch();
            word[byte] ^= 0x01;
            PM_CHECK_EQ(pm_check_block(p), -1);
            word[byte] ^= 0x01;
            PM_CHECK_EQ(S.calls, 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_UNDERFLOW);
            PM_CHECK_EQ(S.r.serial, serial);
            PM_CHECK_EQ(S.r.offset, -(ptrdiff_t)(offset + 8));
        }
        pm_set_error_handler(NULL, NULL);
        PM_CHECK_EQ(pm_check_block(p), 0);
        pm_raw_free(p);
    }
    for (int op = 0; op < 4; op++) { /* free, realloc; plain, aligned */
        pm_death_result r;
        pm_death(mmapped_damage_child, (void *)(intptr_t)op, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, op & 1 ? "pymalloc: pm_raw_realloc: buffer underflow: the C "
                                        "library's chunk header"
                                      : "pymalloc: pm_raw_free: buffer underflow: the C "
                                        "library's chunk header");
        PM_CHECK_STR(r.output, "holds 0x00000001");
    }
}

/* Bit 2 of a chunk's size word (NON_MAIN_ARENA) set by a stray write on a
 * chunk of the main heap (a string's byte over the word's low byte: 0x801
 * made 0x805, the size intact): glibc's free looked for the chunk's arena
 * at the 64 MiB boundary below it and died there (SIGSEGV, no report),
 * when the block left the quarantine or at once without it. Now a buffer
 * underflow of the block, kept from glibc. */
static void arena_bit_child(void *arg)
{
    unsigned char *p = arg;
    p[-24] |= 4;
    pm_raw_free(p);
    (void)pm_trim(); /* (out of the quarantine, to glibc) */
    _exit(0);
}

static void test_non_main_arena_bit(void)
{
    NEED_DEBUG();
    NEED_GLIBC_HEADERS();
    if (atomic_load(&pm_i_libc_chunk_page) == 0 || pm_i_libc_heap_floor == 0)
        PM_SKIP("the C library's chunk headers are not checked here");
    unsigned char *p = pm_raw_malloc(2000);
    PM_CHECK(p != NULL);
    uintptr_t chunk = (uintptr_t)p - 32;
    if ((p[-24] & 6) != 0 || chunk >= (uintptr_t)pm_i_libc_break()) {
        pm_raw_free(p);
        PM_SKIP("not a chunk of glibc's main heap");
    }
    /* (the floor is the heap's start: before, the break after the
     * set-up's first call of glibc's allocator, and the chunks of a
     * program's first blocks were not judged, prog_arena_bit.c) */
    PM_CHECK(chunk >= pm_i_libc_heap_floor);
    uint64_t serial = trailer_serial(p, 2000);
    watch();
    p[-24] |= 4;
    PM_CHECK_EQ(pm_check_block(p), -1);
    p[-24] &= (unsigned char)~4;
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_UNDERFLOW);
    PM_CHECK_EQ(S.r.serial, serial);
    PM_CHECK_EQ(S.r.offset, -24);
    pm_set_error_handler(NULL, NULL);
    PM_CHECK_EQ(pm_check_block(p), 0);
    pm_death_result r;
    pm_death(arena_bit_child, p, &r);
    PM_CHECK(!r.exited && r.signal == SIGABRT);
    char want[200];
    snprintf(want, sizeof want,
             "pymalloc: pm_raw_free: buffer underflow: the C library's chunk header 24 bytes "
             "before the start of a 2000-byte block (serial %llu) was overwritten",
             (unsigned long long)serial);
    PM_CHECK_STR(r.output, want);
    pm_raw_free(p);
}

/* Serials past 2^48 (the side word and the registry keep 48 bits): blocks
 * made on both sides of the boundary free cleanly, and a damaged one is
 * reported with its whole serial. */
static void test_serials_past_2_48(void)
{
    NEED_DEBUG();
    const uint64_t edge = UINT64_C(1) << 48;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        size_t sizes[] = {24, 400, 1000};
        for (int k = 0; k < 3; k++) {
            size_t n = sizes[k];
            pm_i_debug_set_next_serial(edge - 2);
            unsigned char *p[4];
            for (int i = 0; i < 4; i++) {
                p[i] = D->malloc(n);
                PM_CHECK(p[i] != NULL);
                PM_CHECK_EQ(trailer_serial(p[i], n), edge - 2 + (uint64_t)i);
            }
            watch();
            for (int i = 0; i < 4; i++)
                PM_CHECK_EQ(pm_check_block(p[i]), 0);
            D->free(p[0]);
            D->free(p[3]);
            PM_CHECK_EQ(atomic_load(&S.calls), 0);
            int saved = quiet_begin();
            p[2][n] ^= 1; /* overflow by one */
            D->free(p[2]);
            quiet_end(saved);
            PM_CHECK_EQ(atomic_load(&S.calls), 1);
            PM_CHECK_EQ(S.r.error, PM_ERR_BUFFER_OVERFLOW);
            PM_CHECK_EQ(S.r.serial, edge);
            PM_CHECK_EQ(S.r.size, n);
            p[2][n] ^= 1; /* repaired: the leaked block is live and frees */
            D->free(p[2]);
            D->free(p[1]);
            PM_CHECK_EQ(atomic_load(&S.calls), 1);
            saved = quiet_begin();
            D->free(p[3]);
            quiet_end(saved);
            PM_CHECK_EQ(atomic_load(&S.calls), 2);
            PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
            PM_CHECK_EQ(S.r.serial, edge + 1);
            pm_set_error_handler(NULL, NULL);
        }
    }
}

/* The registry's tables shrink after a peak: 300,000 raw blocks (the
 * registry's in every debug mode) live at once, then all freed: the tables
 * are rebuilt for the records left (the FIFOs' freed blocks and the
 * quarantine's), at most a third of the peak's bytes (they stayed at the
 * peak for good, 49.5 MB after a million blocks). What the records know
 * survives the rebuild: the last block freed, freed again, is a double
 * free with its size and serial, and a second peak's blocks check clean. */
static void test_registry_shrinks_after_peak(void)
{
    NEED_DEBUG();
    enum { N = 300000 };
    static unsigned char *p[N];
    size_t records = 0, before = pm_i_reg_metadata_bytes(&records);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            p[i] = pm_raw_malloc(24);
            PM_CHECK(p[i] != NULL);
            if (p[i] == NULL)
                return;
        }
        size_t live = 0, peak = pm_i_reg_metadata_bytes(&live);
        PM_CHECK(live >= N);
        watch();
        for (int i = 0; i < N; i += 997)
            pm_check_block(p[i]);
        PM_CHECK_EQ(atomic_load(&S.calls), 0);
        uint64_t last_serial = trailer_serial(p[N - 1], 24);
        for (int i = 0; i < N; i++)
            pm_raw_free(p[i]);
        size_t left = 0, after = pm_i_reg_metadata_bytes(&left);
        printf("round %d: %zu bytes of tables before, %zu at the peak (%zu records), "
               "%zu after (%zu records)\n", round, before, peak, live, after, left);
        PM_CHECK(after * 3 <= peak);
        PM_CHECK_EQ(atomic_load(&S.calls), 0);
        pm_raw_free(p[N - 1]);
        PM_CHECK_EQ(atomic_load(&S.calls), 1);
        PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
        PM_CHECK_EQ(S.r.size, 24);
        PM_CHECK_EQ(S.r.serial, last_serial);
        pm_set_error_handler(NULL, NULL);
    }
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_pool_blocks_skip_registry);
    PM_RUN(test_every_small_request_pooled);
    PM_RUN(test_raw_label_in_user_sizes);
    PM_RUN(test_every_block_its_own_record);
    PM_RUN(test_fills_every_size);
    PM_RUN(test_double_free_after_pool_emptied);
    PM_RUN(test_interior_pointers_are_invalid);
    PM_RUN(test_pointer_past_the_end_named);
    PM_RUN(test_racing_double_free);
    PM_RUN(test_check_racing_free);
    PM_RUN(test_realloc_failure_restores_block);
    PM_RUN(test_serials_past_2_48);
    PM_RUN(test_libc_header_damage);
    PM_RUN(test_overflow_blamed_on_block_before);
    PM_RUN(test_poison_null_byte);
    PM_RUN(test_mmapped_header_high_bytes);
    PM_RUN(test_non_main_arena_bit);
    PM_RUN(test_registry_shrinks_after_peak);
    return pm_test_done();
}
