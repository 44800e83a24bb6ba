/*
 * tests/test_pool.c - the pool allocator (pymalloc mode), single-threaded:
 * size classes, alignment, carving and reuse, realloc rules, raw fallback,
 * arenas returned to the OS, ownership, statistics and the validator.
 *
 * Runs in the modes whose MEM and OBJ domains are pools (pymalloc, and
 * default, which is pymalloc); elsewhere it skips.
 */
#include "domains.h"
#include "pool_class.h"
#include "harness.h"
#include "pm_internal.h"
#include "raw_label.h"
#if PM_T_HAVE_VALGRIND_H
#define PM_HAVE_VALGRIND 1 /* as the library (and harness.h) have it */
#endif
#include "../modes/pool.h"

#include <stdint.h>
#include <sys/mman.h>

static const pm_t_domain *MEM = &pm_t_domains[PM_DOMAIN_MEM];
static const pm_t_domain *OBJ = &pm_t_domains[PM_DOMAIN_OBJ];

static int pool_mode(void) { return strcmp(pm_mode_name(), "pymalloc") == 0; }

#define NEED_POOL()                                                                     \
    do {                                                                                \
        if (!pool_mode())                                                               \
            PM_SKIP("the mem and obj domains are not pools in this mode");              \
    } while (0)

/* Under valgrind the pools serve n from class n>>4 (at least one byte of
 * slack for memcheck to catch overflows) and report the requested size as
 * usable: tests of the exact class geometry do not apply there
 * (test_valgrind covers that mode), and tests that corrupt pool memory on
 * purpose would be reported by memcheck. */
#define NEED_NATIVE()                                                                   \
    do {                                                                                \
        NEED_POOL();                                                                    \
        if (pm_i_pool_valgrind(NULL))                                                   \
            PM_SKIP("under valgrind: class geometry differs (see test_valgrind)");      \
    } while (0)

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int validate(void)
{
    char storage[512];
    pm_i_buf why;
    pm_i_buf_init(&why, storage, sizeof storage - 1, -1);
    int rc = pm_i_pool_validate(&why);
    if (rc != 0) {
        storage[why.len] = '\0';
        fprintf(stderr, "validate: %s\n", storage);
    }
    return rc;
}

static int balanced(const struct pm_stats *st)
{
    size_t sum = st->bytes_allocated_blocks + st->bytes_available_blocks +
                 st->bytes_unused_pools + st->bytes_pool_headers + st->bytes_quantization +
                 st->bytes_arena_alignment + st->bytes_damaged_pools;
    if (sum != st->arenas_current * st->arena_size)
        fprintf(stderr, "stats: %zu bytes accounted, %zu arenas\n", sum, st->arenas_current);
    return sum == st->arenas_current * st->arena_size;
}

/* Every size 1..512: 16-byte aligned, in a pool, block size 16*((n-1)/16+1). */
static void test_size_classes_and_alignment(void)
{
    NEED_NATIVE();
    static void *blocks[513];
    for (size_t n = 1; n <= 512; n++) {
        const pm_t_domain *D = n % 2 ? MEM : OBJ;
        unsigned char *p = D->malloc(n);
        blocks[n] = p;
        PM_CHECK(p != NULL);
        PM_CHECK_EQ((uintptr_t)p % 16, 0);
        PM_CHECK(pm_i_pool_owns(p));
        size_t want = ((n - 1) / 16 + 1) * 16;
        PM_CHECK_EQ(pm_i_domain_usable_size(D->domain, p), want);
        /* The first block of a pool is at pool+48; every block on its grid. */
        uintptr_t off = (uintptr_t)p & 16383;
        PM_CHECK(off >= 48 && (off - 48) % want == 0 && off + want <= 16384);
        memset(p, (int)n, n); /* the whole request is writable */
    }
    for (size_t n = 1; n <= 512; n++) {
        unsigned char *p = blocks[n];
        PM_CHECK(p[0] == (unsigned char)n && p[n - 1] == (unsigned char)n);
        (n % 2 ? MEM : OBJ)->free(p);
    }
    PM_CHECK_EQ(validate(), 0);
}

/* A fresh pool is carved in address order; a freed block is reused first. */
static void test_carving_and_reuse(void)
{
    NEED_NATIVE();
    enum { N = 200 };
    unsigned char *p[N];
    for (int i = 0; i < N; i++)
        p[i] = MEM->malloc(200); /* class 12, 208-byte blocks */
    int ascending = 0;
    for (int i = 1; i < N; i++)
        ascending += p[i] == p[i - 1] + 208;
    /* Consecutive except at pool boundaries (78 blocks per pool). */
    PM_CHECK(ascending >= N - 1 - N / 78 - 1);
    for (int i = 0; i < N; i++)
        PM_CHECK_EQ(pm_i_domain_usable_size(PM_DOMAIN_MEM, p[i]), 208);
    /* LIFO: the last freed is the next handed out, in this and other classes. */
    MEM->free(p[10]);
    MEM->free(p[20]);
    unsigned char *a = MEM->malloc(193), *b = OBJ->malloc(208);
    PM_CHECK(a == p[20]);
    PM_CHECK(b == p[10]); /* same class, other domain, same pools */
    p[20] = a;
    p[10] = b;
    for (int i = 0; i < N; i++)
        if (p[i] != NULL)
            MEM->free(p[i]);
    PM_CHECK_EQ(validate(), 0);
}

/* The thread cache (one bin of a class no other test has used yet):
 * a refill carves a run of half a bin from a fresh pool, or takes a used
 * pool's whole free list at once; a bin holds at most one pool's worth and
 * gives half back when full. 384-byte blocks: 42 per pool, a bin of 42. */
static size_t cached(unsigned cls)
{
    struct pm_stats st;
    PM_CHECK_EQ(pm_get_stats(&st), 0);
    return st.classes[cls].blocks_cached;
}

/* A bin whose count is one above its list: what a signal handler's free
 * leaves when it lands between an interrupted fast pop's load of the head
 * and its store (the pushed block is lost). A flush walks the count: it
 * must stop at the list's end (it followed NULL before: SIGSEGV). */
static void test_bin_count_above_list(void)
{
    NEED_NATIVE();
    enum { SIZE = 200 };
    void *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = MEM->malloc(SIZE);
    for (int i = 0; i < 4; i++)
        MEM->free(p[i]);
    struct pm_p_bin *b = &pm_i_p_tc->bin[(SIZE + 15) >> 4];
    uint32_t n = atomic_load(&b->n);
    PM_CHECK(n >= 4 && b->head != NULL);
    atomic_store(&b->n, n + 1);
    pm_i_pool_flush_thread_cache();
    PM_CHECK_EQ(atomic_load(&b->n), 0);
    PM_CHECK(b->head == NULL);
    PM_CHECK_EQ(cached((SIZE + 15) / 16 - 1), 0);
    PM_CHECK_EQ(validate(), 0);
    void *q = MEM->malloc(SIZE); /* the bin works on */
    PM_CHECK(q != NULL);
    MEM->free(q);
}

/* A signal handler's free that finds the bin full, delivered inside a
 * fast malloc of the class (pool.h: pm_i_p_pop) after its load of the head
 * p and p's link, before its store of that link as the new head: the
 * handler's slow path gives half the bin back, then the pop's store puts
 * back the list from p's link down. The half given back must be none of
 * those blocks nor p (it was the newer half, p first: p and the blocks
 * after it were handed out again while the thread held p). Done here in
 * the order the signal makes, without a signal. */
static void test_flush_inside_fast_pop(void)
{
    NEED_NATIVE();
    enum { SIZE = 464, N = 2 * (16336 / 464) + 2 };
    void *blk[N];
    for (int i = 0; i < N; i++)
        blk[i] = MEM->malloc(SIZE);
    struct pm_p_bin *b = &pm_i_p_tc->bin[(SIZE + 15) >> 4];
    int i = 0;
    while (i < N - 1 && atomic_load(&b->n) < b->lim)
        MEM->free(blk[i++]);
    PM_CHECK(atomic_load(&b->n) == b->lim && b->lim > 4);
    /* The fast malloc's loads... */
    void *p = b->head, *next = *(void **)p;
    /* ...the handler's free of a block made outside it (the bin is full:
     * its slow path)... */
    MEM->free(blk[N - 1]);
    /* ...and the fast malloc's stores. */
    b->head = next;
    atomic_store(&b->n, atomic_load(&b->n) - 1);
    memset(p, 0x5A, SIZE); /* the thread's block */
    PM_CHECK_EQ(validate(), 0);
    /* Nothing handed out now is p or handed out twice. */
    void *again[N];
    int dup = 0;
    for (int k = 0; k < N; k++) {
        again[k] = MEM->malloc(SIZE);
        dup += again[k] == p;
        for (int j = 0; j < k; j++)
            dup += again[j] == again[k];
    }
    PM_CHECK_EQ(dup, 0);
    for (int k = 0; k < SIZE; k++)
        if (((unsigned char *)p)[k] != 0x5A) {
            PM_CHECK(!"the thread's block was written");
            break;
        }
    for (int k = 0; k < N; k++)
        MEM->free(again[k]);
    MEM->free(p);
    for (; i < N - 1; i++)
        MEM->free(blk[i]);
    PM_CHECK_EQ(validate(), 0);
}

static void test_thread_cache_bins(void)
{
    NEED_NATIVE();
    enum { CLS = 23, SIZE = 384, PER_POOL = 42 };
    pm_i_pool_flush_thread_cache();
    /* One pool's worth: two carved runs of 21, all from one pool. */
    unsigned char *p[PER_POOL];
    p[0] = MEM->malloc(SIZE);
    PM_CHECK_EQ(cached(CLS), PER_POOL / 2 - 1);
    for (int i = 1; i < PER_POOL; i++)
        p[i] = MEM->malloc(SIZE);
    PM_CHECK_EQ(cached(CLS), 0);
    uintptr_t pool = (uintptr_t)p[0] & ~(uintptr_t)16383;
    int same = 0;
    for (int i = 0; i < PER_POOL; i++)
        same += ((uintptr_t)p[i] & ~(uintptr_t)16383) == pool;
    PM_CHECK_EQ(same, PER_POOL);
    /* Half freed, then back to the pool: its free list has 21 blocks. */
    for (int i = 0; i < PER_POOL; i += 2)
        MEM->free(p[i]);
    PM_CHECK_EQ(cached(CLS), PER_POOL / 2);
    pm_i_pool_flush_thread_cache();
    PM_CHECK_EQ(cached(CLS), 0);
    PM_CHECK_EQ(validate(), 0);
    /* The next malloc takes that whole list: the pool is full again. */
    unsigned char *q = MEM->malloc(SIZE);
    PM_CHECK_EQ(cached(CLS), PER_POOL / 2 - 1);
    PM_CHECK_EQ((uintptr_t)q & ~(uintptr_t)16383, pool);
    PM_CHECK_EQ(validate(), 0);
    unsigned char *rest[PER_POOL / 2];
    rest[0] = q;
    for (int i = 1; i < PER_POOL / 2; i++) {
        rest[i] = OBJ->malloc(SIZE - 10); /* same class, other domain */
        PM_CHECK_EQ((uintptr_t)rest[i] & ~(uintptr_t)16383, pool);
    }
    PM_CHECK_EQ(cached(CLS), 0);
    /* More frees than a bin holds: it never exceeds one pool's worth. A
     * block from a second pool first (a carved run: 20 left cached), then
     * 42 frees: 22 fill the bin, the 23rd gives 21 back, 19 more. */
    unsigned char *extra = MEM->malloc(SIZE);
    PM_CHECK_EQ(cached(CLS), PER_POOL / 2 - 1);
    PM_CHECK(((uintptr_t)extra & ~(uintptr_t)16383) != pool);
    size_t most = 0;
    for (int i = 1; i < PER_POOL; i += 2) {
        MEM->free(p[i]);
        most = cached(CLS) > most ? cached(CLS) : most;
    }
    for (int i = 0; i < PER_POOL / 2; i++) {
        (i ? OBJ : MEM)->free(rest[i]);
        most = cached(CLS) > most ? cached(CLS) : most;
    }
    PM_CHECK_EQ(most, PER_POOL);
    PM_CHECK_EQ(cached(CLS), PER_POOL / 2 + 20);
    PM_CHECK_EQ(validate(), 0);
    MEM->free(extra);
    PM_CHECK_EQ(validate(), 0);
}

/* In place iff n <= block size and 4n > 3 * block size; raw stays raw. */
static void test_realloc_rules(void)
{
    NEED_NATIVE();
    unsigned char *p = MEM->malloc(100); /* 112-byte block */
    for (int i = 0; i < 100; i++)
        p[i] = (unsigned char)i;
    PM_CHECK(MEM->realloc(p, 112) == p);
    PM_CHECK(MEM->realloc(p, 85) == p); /* 340 > 336 */
    PM_CHECK(MEM->realloc(p, 100) == p);
    unsigned char *q = MEM->realloc(p, 84); /* 336 == 336: moves */
    PM_CHECK(q != p && pm_i_pool_owns(q));
    PM_CHECK_EQ(pm_i_domain_usable_size(PM_DOMAIN_MEM, q), 96);
    int bad = 0;
    for (int i = 0; i < 84; i++)
        bad += q[i] != (unsigned char)i;
    PM_CHECK_EQ(bad, 0);
    unsigned char *r = MEM->realloc(q, 113); /* grows: moves to the 128 class */
    PM_CHECK(r != q && pm_i_pool_owns(r));
    PM_CHECK_EQ(pm_i_domain_usable_size(PM_DOMAIN_MEM, r), 128);
    for (int i = 0; i < 84; i++)
        bad += r[i] != (unsigned char)i;
    PM_CHECK_EQ(bad, 0);
    unsigned char *big = MEM->realloc(r, 600); /* leaves the pools */
    PM_CHECK(big != NULL && !pm_i_pool_owns(big));
    for (int i = 0; i < 84; i++)
        bad += big[i] != (unsigned char)i;
    PM_CHECK_EQ(bad, 0);
    unsigned char *still_raw = MEM->realloc(big, 50); /* raw stays raw */
    PM_CHECK(still_raw != NULL && !pm_i_pool_owns(still_raw));
    for (int i = 0; i < 50; i++)
        bad += still_raw[i] != (unsigned char)i;
    PM_CHECK_EQ(bad, 0);
    MEM->free(still_raw);
    /* realloc(p, 0) of a pool block: a valid (raw) block, contents gone. */
    unsigned char *s = OBJ->malloc(30);
    unsigned char *z = OBJ->realloc(s, 0);
    PM_CHECK(z != NULL && !pm_i_pool_owns(z));
    OBJ->free(z);
    PM_CHECK_EQ(validate(), 0);
}

static void test_raw_fallback(void)
{
    NEED_POOL();
    struct pm_stats before, after;
    pm_get_stats(&before);
    void *z = MEM->malloc(0), *c0 = OBJ->calloc(0, 5), *big = OBJ->malloc(513);
    void *huge = MEM->calloc(1000, 1000), *small = MEM->malloc(400);
    void *al = pm_i_domain_memalign(PM_DOMAIN_MEM, 64, 40);
    PM_CHECK(!pm_i_pool_owns(z) && !pm_i_pool_owns(c0) && !pm_i_pool_owns(big));
    PM_CHECK(!pm_i_pool_owns(huge) && !pm_i_pool_owns(al) && pm_i_pool_owns(small));
    PM_CHECK_EQ((uintptr_t)al % 64, 0);
    pm_get_stats(&after);
    PM_CHECK_EQ(after.raw_blocks_current - before.raw_blocks_current, 5);
    PM_CHECK_EQ(after.raw_blocks_total - before.raw_blocks_total, 5);
    MEM->free(z);
    OBJ->free(c0);
    OBJ->free(big);
    MEM->free(huge);
    MEM->free(small);
    MEM->free(al);
    pm_get_stats(&after);
    PM_CHECK_EQ(after.raw_blocks_current, before.raw_blocks_current);
    /* CPython's threshold: the two classes past 512 (528, 544) serve only
     * the debug hooks' blocks, never a request of this mode. */
    PM_CHECK_EQ(after.small_threshold, 512);
    for (size_t n = 513; n <= 545; n++) {
        void *m = MEM->malloc(n), *c = OBJ->calloc(1, n), *r = OBJ->malloc(400);
        PM_CHECK(m != NULL && c != NULL && r != NULL && pm_i_pool_owns(r));
        r = OBJ->realloc(r, n);
        PM_CHECK(r != NULL);
        PM_CHECK(!pm_i_pool_owns(m) && !pm_i_pool_owns(c) && !pm_i_pool_owns(r));
        MEM->free(m);
        OBJ->free(c);
        OBJ->free(r);
    }
    pm_get_stats(&after);
    PM_CHECK_EQ(after.classes[32].pools + after.classes[33].pools, 0);
    PM_CHECK_EQ(after.raw_blocks_current, before.raw_blocks_current);
}

/* Pointers the pools never gave out are not ours, and their free goes to
 * libc: the ownership test reads no memory it does not own. */
static int static_var;

static void test_foreign_pointers(void)
{
    NEED_POOL();
    int local;
    void *libc = malloc(32);
    char *m = mmap(NULL, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    PM_CHECK(m != MAP_FAILED);
    PM_CHECK(!pm_i_pool_owns(&local));
    PM_CHECK(!pm_i_pool_owns(&static_var));
    PM_CHECK(!pm_i_pool_owns(libc));
    PM_CHECK(!pm_i_pool_owns(m + 48)); /* PROT_NONE: reading it would crash */
    PM_CHECK(!pm_i_pool_owns((void *)(uintptr_t)0x10));
#if UINTPTR_MAX > UINT32_MAX
    PM_CHECK(!pm_i_pool_owns((void *)((uintptr_t)1 << 60))); /* above the tree's 48 bits */
#endif
    PM_CHECK(!pm_i_pool_owns((void *)~(uintptr_t)0xF));
    munmap(m, 1 << 20);
    MEM->free(libc); /* a libc block through pymalloc's free: handed to libc */
    /* An address in an arena, but in a pool not in use, is not ours either. */
    void *p = MEM->malloc(16);
    uintptr_t pool = (uintptr_t)p & ~(uintptr_t)16383;
    int found_unused = 0;
    for (uintptr_t q = pool + 16384; q < pool + (1u << 20); q += 16384)
        if (!pm_i_pool_owns((void *)(q + 48))) {
            found_unused = 1;
            break;
        }
    PM_CHECK(found_unused);
    MEM->free(p);
}

/* ~100 MB of small blocks, all freed, then pm_trim(): the arenas go back to
 * the OS (all but one, kept against thrashing) and the resident set
 * shrinks. */
static void test_arenas_returned(void)
{
    NEED_POOL();
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    const size_t TOTAL_MB = 20; /* sanitizer builds: smaller, same property */
#else
    const size_t TOTAL_MB = pm_i_pool_valgrind(NULL) ? 20 : 100; /* valgrind: idem */
#endif
    size_t n = (size_t)TOTAL_MB * 1000 * 1000 / 64;
    void **p = malloc(n * sizeof *p); /* libc: not in the pools */
    pm_i_pool_flush_thread_cache();
    struct pm_stats st0, st1, st2;
    pm_get_stats(&st0);
    size_t rss0 = (size_t)pm_t_resident_kib();
    uint64_t s = 42;
    for (size_t i = 0; i < n; i++) {
        size_t sz = 33 + rnd(&s) % 64; /* classes 48..96 */
        p[i] = (i % 2 ? MEM : OBJ)->malloc(sz);
        memset(p[i], 1, sz);
    }
    pm_get_stats(&st1);
    size_t rss1 = (size_t)pm_t_resident_kib();
    PM_CHECK(st1.arenas_current >= st0.arenas_current + TOTAL_MB * 3 / 4);
    PM_CHECK(rss1 > rss0 + TOTAL_MB * 1000 * 3 / 4);
    PM_CHECK(balanced(&st1));
    PM_CHECK_EQ(validate(), 0);
    for (size_t i = 0; i < n; i++) /* in an order unrelated to the arenas */
        (i % 2 ? MEM : OBJ)->free(p[(size_t)((uint64_t)i * 7919 % n)]); /* (no 32-bit wrap) */
    /* This thread's cache still holds up to a pool's worth of blocks per
     * class, from all over the arenas: they keep their arenas mapped until
     * pm_trim() gives them back (under memcheck there are no caches, but
     * the last 1024 blocks freed of each class are held back from reuse,
     * counted as cached, until pm_trim() too). */
    struct pm_stats mid;
    pm_get_stats(&mid);
    int vg = pm_i_pool_valgrind(NULL);
    PM_CHECK(mid.blocks_in_thread_caches > 0 && mid.arenas_current > 1);
    PM_CHECK_EQ(pm_trim(), 1);
    pm_get_stats(&st2);
    PM_CHECK_EQ(st2.blocks_in_thread_caches, 0);
    size_t rss2 = (size_t)pm_t_resident_kib();
    fprintf(stderr, "  arenas: %zu -> %zu -> %zu (%zu cached blocks) -> %zu after pm_trim "
            "(reclaimed %zu); RSS KiB %zu -> %zu -> %zu\n",
            st0.arenas_current, st1.arenas_current, mid.arenas_current,
            mid.blocks_in_thread_caches, st2.arenas_current,
            st2.arenas_reclaimed, rss0, rss1, rss2);
    PM_CHECK(st2.arenas_current <= 1);
    PM_CHECK(st2.arenas_reclaimed >= st1.arenas_current - 1);
    /* Under memcheck arenas are blocks of (valgrind's) heap, which keeps
     * what is freed. */
    if (!vg)
        PM_CHECK(rss2 < rss1 - TOTAL_MB * 1000 * 3 / 4);
    PM_CHECK(balanced(&st2));
    PM_CHECK_EQ(validate(), 0);
    free(p);
}

/* Random workloads: the validator passes and the statistics balance. */
static void test_random_workload_stats_balance(void)
{
    NEED_POOL();
    enum { SLOTS = 20000 };
    static unsigned char *p[SLOTS];
    static size_t len[SLOTS];
    uint64_t s = 7;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 60000; i++) {
            size_t k = rnd(&s) % SLOTS;
            const pm_t_domain *D = k % 2 ? MEM : OBJ;
            if (p[k] == NULL) {
                len[k] = rnd(&s) % (round % 2 ? 600 : 128);
                p[k] = rnd(&s) % 4 ? D->malloc(len[k]) : D->calloc(len[k], 1);
                memset(p[k], (int)k, len[k]);
            } else if (rnd(&s) % 3 == 0) {
                size_t n = rnd(&s) % 700;
                unsigned char *q = D->realloc(p[k], n);
                size_t keep = n < len[k] ? n : len[k];
                for (size_t j = 0; j < keep; j++)
                    if (q[j] != (unsigned char)k) {
                        PM_CHECK(q[j] == (unsigned char)k);
                        break;
                    }
                memset(q, (int)k, n);
                p[k] = q;
                len[k] = n;
            } else {
                D->free(p[k]);
                p[k] = NULL;
            }
        }
        struct pm_stats st;
        PM_CHECK_EQ(pm_get_stats(&st), 0);
        PM_CHECK(balanced(&st));
        PM_CHECK_EQ(validate(), 0);
        size_t in_use = 0;
        for (int c = 0; c < PM_STATS_NCLASSES; c++) {
            in_use += st.classes[c].blocks_in_use;
            PM_CHECK(st.classes[c].blocks_cached <= st.classes[c].blocks_in_use);
            PM_CHECK_EQ(st.classes[c].size, 16 * (c + 1));
        }
        size_t live = 0;
        for (int k = 0; k < SLOTS; k++)
            live += p[k] != NULL && pm_i_pool_owns(p[k]);
        PM_CHECK_EQ(in_use, live + st.blocks_in_thread_caches);
        if (round == 3) {
            pm_i_pool_flush_thread_cache();
            pm_get_stats(&st);
            PM_CHECK_EQ(st.blocks_in_thread_caches, 0);
        }
    }
    for (int k = 0; k < SLOTS; k++) {
        (k % 2 ? MEM : OBJ)->free(p[k]);
        p[k] = NULL;
    }
    PM_CHECK_EQ(validate(), 0);
    PM_CHECK_EQ(pm_get_stats(NULL), -1);
}

/* The validator is not a rubber stamp: a corrupted count is reported. */
static void test_validator_detects_corruption(void)
{
    NEED_NATIVE();
    unsigned char *p = OBJ->malloc(300);
    pm_i_pool_flush_thread_cache();
    /* The header's last field (modes/pool.h: after the check word, the
     * class, four pointers and nextoffset). */
    uint32_t *count = (uint32_t *)(((uintptr_t)p & ~(uintptr_t)16383) + 44);
    PM_CHECK_EQ(validate(), 0);
    (*count)++;
    char storage[256];
    pm_i_buf why;
    pm_i_buf_init(&why, storage, sizeof storage - 1, -1);
    PM_CHECK_EQ(pm_i_pool_validate(&why), -1);
    storage[why.len] = '\0';
    PM_CHECK_STR(storage, "pool count");
    (*count)--;
    PM_CHECK_EQ(validate(), 0);
    /* A free-list link pointing outside its pool. */
    unsigned char *q = OBJ->malloc(300);
    OBJ->free(q);
    pm_i_pool_flush_thread_cache(); /* q is now at the head of its free list */
    unsigned char *saved;
    memcpy(&saved, q, sizeof saved);
    unsigned char *wild = (unsigned char *)&why;
    memcpy(q, &wild, sizeof wild);
    pm_i_buf_init(&why, storage, sizeof storage - 1, -1);
    PM_CHECK_EQ(pm_i_pool_validate(&why), -1);
    storage[why.len] = '\0';
    PM_CHECK_STR(storage, "free list link");
    memcpy(q, &saved, sizeof saved);
    PM_CHECK_EQ(validate(), 0);
    OBJ->free(p);
}

/* The printer: CPython's layout, and its Total is arenas x 1 MiB. */
static void test_print_stats_format(void)
{
    NEED_POOL();
    void *keep = OBJ->malloc(24);
    void *every[32]; /* a row per class: the output outgrows the printer's buffer */
    for (int c = 0; c < 32; c++)
        every[c] = MEM->malloc((size_t)c * 16 + 1);
    const char *out = pm_t_stats_text();
    struct pm_stats st;
    pm_get_stats(&st);
    PM_CHECK_STR(out, "Small block threshold = 512, in 32 size classes.\n\n"
                      "class   size   num pools   blocks in use  avail blocks\n"
                      "-----   ----   ---------   -------------  ------------\n");
    char want[160];
    size_t k = pm_t_pool_class(17); /* every[1]'s: 1 (32 bytes), under memcheck 3 */
    snprintf(want, sizeof want, "%5zu %6zu %11zu %15zu %13zu\n", k, (k + 1) * 16,
             st.classes[k].pools, st.classes[k].blocks_in_use, st.classes[k].blocks_available);
    PM_CHECK_STR(out, want);
    snprintf(want, sizeof want, "%zu arenas * 1048576 bytes/arena", st.arenas_current);
    PM_CHECK_STR(out, want);
    PM_CHECK_STR(out, "# bytes lost to arena alignment    =");
    /* Every "label = value" line has its '=' in column 35, whatever the
     * printer's buffer did (it flushes mid-output). */
    int lines = 0;
    for (const char *l = out; *l != '\0';) {
        const char *nl = strchr(l, '\n');
        size_t ll = nl ? (size_t)(nl - l) : strlen(l);
        const char *eq = memchr(l, '=', ll);
        if (eq != NULL && strncmp(l, "Small block", 11) != 0) {
            lines++;
            if (eq - l != 35 || ll != 57)
                fprintf(stderr, "misaligned: %.*s\n", (int)ll, l);
            PM_CHECK(eq - l == 35 && ll == 57);
        }
        l += ll + (nl != NULL);
    }
    /* CPython's 16, and the ownership map's 4 (CPython's "arena map
     * counts", with leaves in place of its mid and bot nodes) */
    PM_CHECK_EQ(lines, 20);
    PM_CHECK_EQ(st.side_map_leaves, 0);
    PM_CHECK(st.arena_map_leaves >= 1);
    PM_CHECK_EQ(st.bytes_arena_map_leaves, st.arena_map_leaves * 262144);
    PM_CHECK_EQ(st.bytes_arena_map_root, ((size_t)1 << 16) * sizeof(void *));
    snprintf(want, sizeof want,
             "\narena map counts\n"
             "# arena map leaf nodes             =%21s\n\n"
             "# bytes lost to arena map root     =%21s\n",
             st.arena_map_leaves == 1 ? "1" : "?", sizeof(void *) == 8 ? "524,288" : "262,144");
    if (st.arena_map_leaves == 1)
        PM_CHECK_STR(out, want);
    /* Total == arenas * ARENA_SIZE, printed with separators. */
    const char *total = strstr(out, "\nTotal");
    PM_CHECK(total != NULL);
    if (total != NULL) {
        PM_CHECK(total[36] == '=');
        unsigned long long v = 0;
        for (const char *c = total + 37; *c != '\n'; c++)
            if (*c >= '0' && *c <= '9')
                v = v * 10 + (unsigned long long)(*c - '0');
        PM_CHECK_EQ(v, st.arenas_current * 1048576ull);
    }
    OBJ->free(keep);
    for (int c = 0; c < 32; c++)
        MEM->free(every[c]);
}

/* A pool whose header a write from below overwrote cannot be read: the
 * statistics leave it out and say so, on a line of its own, so that the
 * byte lines still add up to arenas x 1 MiB (before, the pool and its
 * blocks were gone from the figures, without a word). */
static void test_stats_damaged_pool(void)
{
    NEED_NATIVE();
    unsigned char *p = OBJ->malloc(300);
    pm_i_pool_flush_thread_cache();
    struct pm_stats before, after;
    PM_CHECK_EQ(pm_get_stats(&before), 0);
    PM_CHECK_EQ(before.pools_damaged, 0);
    PM_CHECK(balanced(&before));
    size_t k = (300 - 1) / 16; /* the class of 304 bytes */
    /* The check word, the header's first field: where a write past the end
     * of the last block of the pool below lands first. */
    unsigned char *check = (unsigned char *)((uintptr_t)p & ~(uintptr_t)16383);
    unsigned char saved = check[0];
    check[0] ^= 0x5a;
    PM_CHECK_EQ(pm_get_stats(&after), 0);
    PM_CHECK_EQ(after.pools_damaged, 1);
    PM_CHECK_EQ(after.bytes_damaged_pools, 16384);
    PM_CHECK_EQ(after.classes[k].pools, before.classes[k].pools - 1);
    PM_CHECK(balanced(&after));
    const char *out = pm_t_stats_text();
    PM_CHECK_STR(out, "# bytes lost to arena alignment    =");
    PM_CHECK_STR(out, "1 damaged pools * 16384 bytes      =               16,384\n"
                      "Total                              =");
    check[0] = saved;
    /* A header written to zeros, count and all (its last field): it reads
     * as an empty pool's, and is told by the arena's count of those. */
    unsigned char hdr[48];
    memcpy(hdr, check, sizeof hdr);
    memset(check, 0, sizeof hdr);
    PM_CHECK_EQ(pm_get_stats(&after), 0);
    PM_CHECK_EQ(after.pools_damaged, 1);
    PM_CHECK(balanced(&after));
    memcpy(check, hdr, sizeof hdr);
    PM_CHECK_EQ(pm_get_stats(&after), 0);
    PM_CHECK_EQ(after.pools_damaged, 0);
    PM_CHECK_STR(pm_t_stats_text(), "arena map counts"); /* (and no damaged line) */
    PM_CHECK(strstr(pm_t_stats_text(), "damaged pools") == NULL);
    PM_CHECK_EQ(validate(), 0);
    OBJ->free(p);
}

/* The raw blocks' label: 0 and requests past 512 go to libc (under
 * memcheck, past 511: a pool block keeps a byte of slack there). */
static void test_raw_label(void)
{
    NEED_POOL();
    pm_t_check_raw_label(MEM);
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_carving_and_reuse); /* first: needs a class never used */
    PM_RUN(test_thread_cache_bins); /* second: needs another one */
    PM_RUN(test_size_classes_and_alignment);
    PM_RUN(test_realloc_rules);
    PM_RUN(test_raw_fallback);
    PM_RUN(test_foreign_pointers);
    PM_RUN(test_random_workload_stats_balance);
    PM_RUN(test_validator_detects_corruption);
    PM_RUN(test_print_stats_format);
    PM_RUN(test_stats_damaged_pool);
    PM_RUN(test_raw_label);
    PM_RUN(test_arenas_returned);
    PM_RUN(test_bin_count_above_list);
    PM_RUN(test_flush_inside_fast_pop);
    return pm_test_done();
}
