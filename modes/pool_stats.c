/*
 * modes/pool_stats.c - the pool allocator seen from outside: statistics
 * (pm_get_stats), the printer in CPython's _debugmallocstats format
 * (pm_print_stats, PYMALLOC_STATS=1), and the validator that checks every
 * invariant listed at the top of modes/pool.c (pm_i_pool_validate).
 *
 * All three stop the pool allocator (every lock, in the documented order)
 * and walk every arena and pool. Nothing here allocates: the printer
 * formats into a stack buffer and writes with write(2).
 */
#include "../src/pm_debug.h"
#include "pool.h"
#include <pthread.h>

#include <errno.h>
#include <string.h>
#include <time.h>

void pm_i_p_lock_all(void)
{
    for (unsigned i = 0; i < PM_P_NCLASSES; i++)
        pm_p_lock(&pm_i_p.cls[i].lock);
    pm_p_lock(&pm_i_p.arena_lock);
    pm_p_lock(&pm_i_p.tc_lock);
}

void pm_i_p_unlock_all(void)
{
    pm_p_unlock(&pm_i_p.tc_lock);
    pm_p_unlock(&pm_i_p.arena_lock);
    for (unsigned i = PM_P_NCLASSES; i-- > 0;)
        pm_p_unlock(&pm_i_p.cls[i].lock);
}

/* pm_i_p_lock_all, for the statistics at exit, where waiting may never end:
 * exit() called by a signal handler that interrupted this very thread in a
 * slow path of the pools, which holds a class lock (or the arena lock) and
 * will never release it. Each lock is tried, a held one again every
 * millisecond, for about 100 ms in all (a lock another thread holds is
 * held for microseconds); then the locks taken are released and -1 says
 * the pools could not be stopped. 0 with every lock held. */
#define LOCK_WAIT_STEPS 100 /* x 1 ms, in all */
static int lock_all_bounded(void)
{
    if (pm_i_p_fork_held)
        return 0; /* this thread holds them all (a fork handler's window) */
    pthread_mutex_t *locks[PM_P_NCLASSES + 2];
    unsigned n = 0;
    for (unsigned i = 0; i < PM_P_NCLASSES; i++)
        locks[n++] = &pm_i_p.cls[i].lock;
    locks[n++] = &pm_i_p.arena_lock;
    locks[n++] = &pm_i_p.tc_lock;
    int waits = 0;
    for (unsigned k = 0; k < n; k++) {
        while (pthread_mutex_trylock(locks[k]) != 0) {
            if (waits++ == LOCK_WAIT_STEPS) {
                while (k-- > 0)
                    pthread_mutex_unlock(locks[k]);
                return -1;
            }
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
    return 0;
}

/* Every mapped arena, in object order (all locks held). */
#define FOR_EACH_ARENA(ao)                                                            \
    for (size_t c_ = 0; c_ < pm_i_p.nchunks; c_++)                                    \
        for (pm_arena *ao = pm_i_p.chunks[c_]; ao < pm_i_p.chunks[c_] + PM_P_CHUNK_USED(c_); \
             ao++)                                                                    \
            if (ao->address != 0)

/* A copy of a pool header (opened for valgrind for the duration). */
static pm_pool read_header(uint8_t *p)
{
    pm_pool h;
    PM_P_HDR_OPEN(p);
    memcpy(&h, p, sizeof h);
    PM_P_HDR_CLOSE(p);
    return h;
}

/* ---------------------------------------------------------------------------
 * Statistics.
 */

/* pm_get_stats; bounded: lock_all_bounded, -1 if the pools stay locked. */
static int get_stats_run(struct pm_stats *st, int bounded);

/* With cancellation off: lock_all_bounded waits (nanosleep, a cancellation
 * point) holding the locks it has taken, and a thread cancelled there
 * (the exiting thread printing PYMALLOC_STATS's table) left them held: the
 * other threads' next malloc of those classes waited for ever (found by
 * an audit). */
static int get_stats(struct pm_stats *st, int bounded)
{
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    int rc = get_stats_run(st, bounded);
    pthread_setcancelstate(cancel_state, NULL);
    return rc;
}

static int get_stats_run(struct pm_stats *st, int bounded)
{
    /* The mode decides the threshold (544 once the debug hooks wrap the
     * pools): install it first, as every other entry point does. */
    pm_i_ensure_init();
    memset(st, 0, sizeof *st);
    st->arena_size = PM_P_ARENA_SIZE;
    st->pool_size = PM_P_POOL_SIZE;
    st->small_threshold = pm_i_p_small_max();
    for (unsigned i = 0; i < PM_P_NCLASSES; i++)
        st->classes[i].size = PM_P_CLASS_SIZE(i);

    if (pm_i_p_busy != 0) {
        /* A signal handler's call that interrupted this thread inside the
         * pools (pool.h): a lock of theirs may be its own. */
        errno = EDEADLK;
        return -1;
    }
    /* Counted busy before the first lock is taken: a signal handler's
     * malloc meanwhile is served without the locks this thread holds. */
    pm_i_p_enter();
    if (!bounded) {
        pm_i_p_lock_all();
    } else if (lock_all_bounded() != 0) {
        pm_i_p_leave();
        return -1;
    }
    st->arenas_allocated_total = pm_i_p.arenas_total;
    st->arenas_reclaimed = pm_i_p.arenas_reclaimed;
    st->arenas_highwater = pm_i_p.arenas_highwater;
    st->arenas_current = pm_i_p.arenas_current;
    st->arena_map_leaves = pm_i_p.tree_leaves;
    st->side_map_leaves = pm_i_p.side_leaves;
    FOR_EACH_ARENA(ao) {
        st->bytes_arena_alignment += PM_P_ARENA_SIZE - (size_t)ao->ntotalpools * PM_P_POOL_SIZE;
        st->unused_pools += ao->nfreepools;
        /* Carved pools that read as empty: the arena's empty ones (on its
         * free list), and any whose header a write from below set to
         * zeros, count and all (the count is its last field), which are
         * in use: the excess is counted as damaged, after the loop. */
        size_t uncarved =
            ao->ntotalpools - (size_t)(ao->pool_address - ao->first_pool) / PM_P_POOL_SIZE;
        size_t zero = 0, damaged = st->pools_damaged;
        for (uint8_t *p = ao->first_pool; p < ao->pool_address; p += PM_P_POOL_SIZE) {
            pm_pool h = read_header(p);
            if (h.count == 0) {
                zero++;
                continue; /* empty: counted in nfreepools */
            }
            if (PM_I_UNLIKELY(!pm_i_p_hdr_usable(&h, p))) {
                /* Overwritten (by a write past the end of the pool before).
                 * Under the debug hooks, fatal, as for any use of a damaged
                 * header; without them, the pool is left out. */
                unsigned tree = pm_i_p_lookup(p);
                if (atomic_load_explicit(&pm_i_p_side_enabled, memory_order_relaxed))
                    pm_i_debug_pool_header_damaged(p, tree != 0 ? tree - 1 : PM_P_NCLASSES);
                st->pools_damaged++;
                continue;
            }
            size_t size = PM_P_CLASS_SIZE(h.szidx);
            size_t cap = PM_P_BLOCKS_PER_POOL(size);
            struct pm_stats_class *k = &st->classes[h.szidx];
            k->pools++;
            k->blocks_in_use += h.count;
            k->blocks_available += cap - h.count;
            st->bytes_pool_headers += PM_P_HDR;
            st->bytes_quantization += (PM_P_POOL_SIZE - PM_P_HDR) % size;
        }
        /* (An empty pool whose header was damaged, count and all, was
         * counted damaged above and is in nfreepools too: taken back.) */
        size_t empty = ao->nfreepools >= uncarved ? ao->nfreepools - uncarved : 0;
        if (zero > empty)
            st->pools_damaged += zero - empty;
        else if (st->pools_damaged - damaged >= empty - zero)
            st->pools_damaged -= empty - zero;
    }
    for (pm_tcache *c = pm_i_p.caches; c != NULL; c = c->next)
        for (unsigned i = 0; i < PM_P_NCLASSES; i++)
            st->classes[i].blocks_cached +=
                atomic_load_explicit(&c->bin[i + 1].n, memory_order_relaxed);
    /* Under memcheck there are no caches; freed blocks held back from
     * reuse (pool.c: vg_quarantine) are counted in their place: handed out
     * by their pools, not by the program. */
    for (unsigned i = 0; i < PM_P_NCLASSES; i++)
        st->classes[i].blocks_cached += pm_i_p.cls[i].vg_qlen;
    pm_i_p_unlock_all();
    pm_i_p_leave();

    st->bytes_unused_pools = st->unused_pools * PM_P_POOL_SIZE;
    st->bytes_damaged_pools = st->pools_damaged * PM_P_POOL_SIZE;
    st->bytes_arena_map_root = sizeof pm_i_p_tree;
    st->bytes_arena_map_leaves = st->arena_map_leaves * PM_P_TREE_LEAF_SIZE;
    st->bytes_side_map_root = sizeof pm_i_p_side_tree;
    st->bytes_side_map_leaves = st->side_map_leaves * PM_P_TREE_LEAF_SIZE * sizeof(pm_p_sentry);
    for (unsigned i = 0; i < PM_P_NCLASSES; i++) {
        struct pm_stats_class *k = &st->classes[i];
        st->bytes_allocated_blocks += k->blocks_in_use * k->size;
        st->bytes_available_blocks += k->blocks_available * k->size;
        st->blocks_in_thread_caches += k->blocks_cached;
        st->bytes_in_thread_caches += k->blocks_cached * k->size;
    }
    /* Freeing a libc block that pymalloc did not allocate (allowed: it is
     * handed to libc) also counts down: never report below zero. */
    ptrdiff_t raw = atomic_load_explicit(&pm_i_p.raw_current, memory_order_relaxed);
    st->raw_blocks_current = raw > 0 ? (size_t)raw : 0;
    st->raw_blocks_total = atomic_load_explicit(&pm_i_p.raw_total, memory_order_relaxed);
    return 0;
}

int pm_get_stats(struct pm_stats *st)
{
    if (st == NULL) {
        errno = EINVAL;
        return -1;
    }
    return get_stats(st, 0);
}

/* "label<pad to 35>=<value in 21 columns>\n", CPython's printone(). */
static size_t line(pm_i_buf *b, const char *label, size_t v)
{
    if (b->cap - b->len < 128)
        pm_i_buf_flush(b); /* keep the line in the buffer: pad_to counts from it */
    pm_i_buf_str(b, label);
    pm_i_buf_pad_to(b, 35);
    pm_i_buf_char(b, '=');
    pm_i_buf_u64_grouped(b, v, 21);
    pm_i_buf_char(b, '\n');
    return v;
}

/* A label "<n><text><m><text2>" built in a small buffer. */
static void label2(pm_i_buf *l, size_t n, const char *text, size_t m, const char *text2)
{
    pm_i_buf_u64(l, n);
    pm_i_buf_str(l, text);
    pm_i_buf_u64(l, m);
    pm_i_buf_str(l, text2);
    pm_i_buf_char(l, '\0');
}

static void print_stats(int fd, int bounded)
{
    struct pm_stats st;
    if (get_stats(&st, bounded) != 0) {
        static const char at_exit[] =
            "pymalloc: PYMALLOC_STATS: no statistics: the pool allocator stayed locked "
            "(exit() called by a signal handler that interrupted it?)\n";
        static const char nested[] = "pymalloc: pm_print_stats: no statistics: called by a "
                                     "signal handler that interrupted the pool allocator\n";
        if (bounded)
            pm_i_write_all(fd, at_exit, sizeof at_exit - 1);
        else
            pm_i_write_all(fd, nested, sizeof nested - 1);
        return;
    }
    char storage[4096]; /* the whole report in one write(2) (about 3 KB): see report.c */
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, fd);

    pm_i_buf_str(&b, "Small block threshold = ");
    pm_i_buf_u64(&b, st.small_threshold);
    pm_i_buf_str(&b, ", in ");
    pm_i_buf_u64(&b, st.small_threshold / PM_P_ALIGN);
    pm_i_buf_str(&b, " size classes.\n\n"
                     "class   size   num pools   blocks in use  avail blocks\n"
                     "-----   ----   ---------   -------------  ------------\n");
    for (unsigned i = 0; i < PM_STATS_NCLASSES; i++) {
        const struct pm_stats_class *k = &st.classes[i];
        if (k->pools == 0)
            continue;
        pm_i_buf_u64_right(&b, i, 5); /* CPython: "%5u %6u %11zu %15zu %13zu\n" */
        pm_i_buf_char(&b, ' ');
        pm_i_buf_u64_right(&b, k->size, 6);
        pm_i_buf_char(&b, ' ');
        pm_i_buf_u64_right(&b, k->pools, 11);
        pm_i_buf_char(&b, ' ');
        pm_i_buf_u64_right(&b, k->blocks_in_use, 15);
        pm_i_buf_char(&b, ' ');
        pm_i_buf_u64_right(&b, k->blocks_available, 13);
        pm_i_buf_char(&b, '\n');
    }
    pm_i_buf_char(&b, '\n');
    line(&b, "# arenas allocated total", st.arenas_allocated_total);
    line(&b, "# arenas reclaimed", st.arenas_reclaimed);
    line(&b, "# arenas highwater mark", st.arenas_highwater);
    line(&b, "# arenas allocated current", st.arenas_current);
    char ls[64];
    pm_i_buf l;
    pm_i_buf_init(&l, ls, sizeof ls, -1);
    label2(&l, st.arenas_current, " arenas * ", PM_P_ARENA_SIZE, " bytes/arena");
    line(&b, ls, st.arenas_current * PM_P_ARENA_SIZE);
    pm_i_buf_char(&b, '\n');
    size_t total = line(&b, "# bytes in allocated blocks", st.bytes_allocated_blocks);
    total += line(&b, "# bytes in available blocks", st.bytes_available_blocks);
    pm_i_buf_init(&l, ls, sizeof ls, -1);
    label2(&l, st.unused_pools, " unused pools * ", PM_P_POOL_SIZE, " bytes");
    total += line(&b, ls, st.bytes_unused_pools);
    total += line(&b, "# bytes lost to pool headers", st.bytes_pool_headers);
    total += line(&b, "# bytes lost to quantization", st.bytes_quantization);
    total += line(&b, "# bytes lost to arena alignment", st.bytes_arena_alignment);
    if (st.pools_damaged != 0) {
        /* (not in CPython's output: its pools never leave one out) */
        pm_i_buf_init(&l, ls, sizeof ls, -1);
        label2(&l, st.pools_damaged, " damaged pools * ", PM_P_POOL_SIZE, " bytes");
        total += line(&b, ls, st.bytes_damaged_pools);
    }
    line(&b, "Total", total);
    /* The ownership map, as CPython's radix tree ("arena map"): a root and
     * leaves here (CPython's has a middle level: mid and bot nodes); the
     * debug hooks' side map, of the same shape, once it has a leaf. */
    pm_i_buf_str(&b, "\narena map counts\n");
    line(&b, "# arena map leaf nodes", st.arena_map_leaves);
    if (st.side_map_leaves != 0)
        line(&b, "# side map leaf nodes", st.side_map_leaves);
    pm_i_buf_char(&b, '\n');
    total = line(&b, "# bytes lost to arena map root", st.bytes_arena_map_root);
    total += line(&b, "# bytes lost to arena map leaves", st.bytes_arena_map_leaves);
    if (st.side_map_leaves != 0) {
        total += line(&b, "# bytes lost to side map root", st.bytes_side_map_root);
        total += line(&b, "# bytes lost to side map leaves", st.bytes_side_map_leaves);
    }
    line(&b, "Total", total);
    /* pymalloc's own lines: thread caches (already counted above in
     * "blocks in use" and "bytes in allocated blocks") and the blocks sent
     * to libc. */
    pm_i_buf_char(&b, '\n');
    line(&b, "# blocks in thread caches", st.blocks_in_thread_caches);
    line(&b, "# bytes in thread caches", st.bytes_in_thread_caches);
    /* Which requests those are, in the program's sizes, not the pools':
     * under the debug hooks (threshold 544) every request comes with their
     * 32 bytes, so a request of 0 is a 32-byte pool block and the largest
     * pooled one is 512; under memcheck a pool block keeps PM_P_VG_GAP
     * bytes of slack at least (vg_malloc), so that largest request is
     * that much less. */
    int hooks = st.small_threshold == PM_P_WIDE_MAX;
    size_t largest = st.small_threshold - (hooks ? PM_P_WIDE_MAX - PM_P_SMALL_MAX : 0) -
                     (pm_i_p_vg ? PM_P_VG_GAP : 0);
    char rl[64];
    pm_i_buf_init(&l, rl, sizeof rl, -1);
    pm_i_buf_str(&l, hooks ? "# raw blocks (>" : "# raw blocks (0, >");
    pm_i_buf_u64(&l, largest);
    pm_i_buf_str(&l, ", aligned)");
    pm_i_buf_char(&l, '\0');
    line(&b, rl, st.raw_blocks_current);
    line(&b, "# raw blocks allocated total", st.raw_blocks_total);
    /* The debug hooks' quarantine (PYMALLOC_QUARANTINE): freed blocks of
     * the C library's, held back from it (not in the pools' figures), and
     * with PYMALLOC_QUARANTINE_POOLS=on pool blocks (in them: allocated). */
    size_t qblocks, qbytes, qbudget;
    if (pm_i_debug_quarantine_stats(&qblocks, &qbytes, &qbudget) != 0) {
        pm_i_buf_char(&b, '\n');
        line(&b, "# blocks held in the quarantine", qblocks);
        line(&b, "# bytes held in the quarantine", qbytes);
        line(&b, "# bytes of the quarantine's budget", qbudget);
    }
    pm_i_buf_flush(&b);
}

void pm_print_stats(int fd) { print_stats(fd, 0); }

void pm_i_print_stats_at_exit(int fd) { print_stats(fd, 1); }

/* ---------------------------------------------------------------------------
 * Validator.
 */

#define FAIL(...)                                                                     \
    do {                                                                              \
        fail(why, __VA_ARGS__);                                                       \
        goto out;                                                                     \
    } while (0)

static void fail(pm_i_buf *why, const char *what, const void *where, uint64_t v)
{
    if (why == NULL)
        return;
    pm_i_buf_str(why, "pool invariant: ");
    pm_i_buf_str(why, what);
    pm_i_buf_str(why, " at ");
    pm_i_buf_ptr(why, where);
    pm_i_buf_str(why, " (");
    pm_i_buf_u64(why, v);
    pm_i_buf_str(why, ")");
}

static int in_arena(const pm_arena *ao, const void *p)
{
    return (const uint8_t *)p >= ao->first_pool && (const uint8_t *)p < ao->pool_address;
}

/* The free list of a used pool: every link inside the pool, on a block
 * boundary below nextoffset, no cycle; returns its length or -1. */
static long free_list_length(uint8_t *pool, const pm_pool *h, size_t size)
{
    long n = 0;
    size_t cap = PM_P_BLOCKS_PER_POOL(size);
    for (uint8_t *bp = h->freeblock; bp != NULL; bp = pm_i_p_link_read(bp)) {
        size_t off = (size_t)(bp - pool);
        if (bp < pool || off >= h->nextoffset || off < PM_P_HDR ||
            (off - PM_P_HDR) % size != 0 || (size_t)++n > cap)
            return -1;
    }
    return n;
}

/* The side words of pool p of arena ao (pool.h), whose header says count
 * blocks out of class szidx: NULL, or what is wrong. The side tree entry is
 * the pool's words | its block size while it is used (0 for class 0 and in an
 * arena without side words); an empty pool keeps the entry of its last
 * class, or 0. Live words: none in an empty pool, at most count in a used
 * one; none past the class's last block. */
static const char *check_side(const pm_arena *ao, const uint8_t *p, uint32_t count,
                              unsigned szidx, uint64_t *v)
{
    pm_p_sentry e = pm_i_p_side_entry((uintptr_t)p);
    *v = e;
    if (!ao->side_on)
        return e == 0 ? NULL : "side entry of a pool without side words";
    _Atomic uint64_t *words = pm_i_p_side_words(ao, p);
    if (count > 0 && e != (szidx == 0 ? 0 : PM_P_SIDE_ENTRY(words, PM_P_CLASS_SIZE(szidx))))
        return "side entry of a used pool";
    size_t d = (size_t)(e & PM_P_SIDE_SIZE_BITS);
    if (e != 0 && (PM_P_SIDE_FIRST(e) != words || (e & 0xF) != 0 || d < 32 ||
                   d > PM_P_WIDE_MAX))
        return "side entry of an empty pool";
    size_t nb = e == 0 ? 0 : PM_P_BLOCKS_PER_POOL(d), live = 0;
    for (size_t j = 0; j < PM_P_SIDE_PER_POOL; j++) {
        uint64_t w = atomic_load_explicit(PM_P_SIDE_WORD(words, j), memory_order_relaxed);
        if (w != 0 && j >= nb) {
            *v = j;
            return "side word past the pool's last block";
        }
        live += PM_P_SIDE_STATE(w) == PM_P_SIDE_LIVE;
    }
    *v = live;
    return live > count ? "more live side words than blocks out" : NULL;
}

int pm_i_pool_validate(pm_i_buf *why)
{
    int rc = -1;
    size_t used_pools[PM_P_NCLASSES] = {0};
    size_t narenas = 0;
    pm_i_p_enter();
    pm_i_p_lock_all();

    FOR_EACH_ARENA(ao) {
        narenas++;
        uintptr_t want = (ao->address + PM_P_POOL_MASK) & ~PM_P_POOL_MASK;
        if ((uintptr_t)ao->first_pool != want ||
            ao->ntotalpools != PM_P_MAX_POOLS - (want != ao->address))
            FAIL("arena geometry", (void *)ao->address, ao->ntotalpools);
        size_t carved = (size_t)(ao->pool_address - ao->first_pool) / PM_P_POOL_SIZE;
        if (carved > ao->ntotalpools || ((uintptr_t)ao->pool_address & PM_P_POOL_MASK))
            FAIL("arena pool_address", ao->pool_address, carved);
        size_t empty = 0;
        for (uint8_t *p = ao->first_pool; p < ao->pool_address; p += PM_P_POOL_SIZE) {
            pm_pool h = read_header(p);
            unsigned tree = pm_i_p_lookup(p);
            uint64_t sv;
            const char *side = check_side(ao, p, h.count, h.szidx, &sv);
            if (side != NULL)
                FAIL(side, p, sv);
            if (h.count == 0) {
                empty++;
                if (tree != 0)
                    FAIL("empty pool still in the ownership tree", p, tree);
                continue;
            }
            if (h.arena != ao)
                FAIL("pool's arena", p, 0);
            if (h.szidx >= PM_P_NCLASSES)
                FAIL("pool size class", p, h.szidx);
            size_t size = PM_P_CLASS_SIZE(h.szidx);
            size_t cap = PM_P_BLOCKS_PER_POOL(size);
            if (tree != h.szidx + 1)
                FAIL("ownership tree entry of a used pool", p, tree);
            if (h.check != pm_i_p_hdr_check(&h, p))
                FAIL("pool header check word", p, h.check);
            if (h.nextoffset < PM_P_HDR + size ||
                h.nextoffset > PM_P_MAXNEXT(size) + size || (h.nextoffset - PM_P_HDR) % size)
                FAIL("pool nextoffset", p, h.nextoffset);
            size_t carved_blocks = (h.nextoffset - PM_P_HDR) / size;
            long nfree = free_list_length(p, &h, size);
            if (nfree < 0)
                FAIL("free list link outside its pool or misaligned", p, h.szidx);
            if (h.count + (size_t)nfree != carved_blocks || h.count > cap)
                FAIL("pool count != carved - free blocks", p, h.count);
            if (h.freeblock == NULL && carved_blocks != cap)
                FAIL("pool without free list but not fully carved", p, carved_blocks);
            if (h.freeblock != NULL)
                used_pools[h.szidx]++;
        }
        /* Freepools: count-0 pools of this arena, each once. */
        size_t nfp = 0;
        for (pm_pool *fp = ao->freepools; fp != NULL;) {
            if (!in_arena(ao, fp) || ((uintptr_t)fp & PM_P_POOL_MASK) || ++nfp > empty)
                FAIL("freepools entry", fp, nfp);
            pm_pool h = read_header((uint8_t *)fp);
            if (h.count != 0)
                FAIL("freepools entry with blocks", fp, h.count);
            fp = h.nextpool;
        }
        if (nfp != empty)
            FAIL("freepools length != empty carved pools", (void *)ao->address, nfp);
        if (ao->nfreepools != empty + (ao->ntotalpools - carved))
            FAIL("arena nfreepools", (void *)ao->address, ao->nfreepools);
    }
    if (narenas != pm_i_p.arenas_current)
        FAIL("arenas_current", NULL, pm_i_p.arenas_current);

    /* Class lists: exactly the pools with a free list, each once. */
    for (unsigned i = 0; i < PM_P_NCLASSES; i++) {
        size_t n = 0;
        pm_pool *prev = NULL;
        for (pm_pool *p = pm_i_p.cls[i].used; p != NULL;) {
            if (++n > used_pools[i])
                FAIL("class list longer than its used pools", p, i);
            pm_pool h = read_header((uint8_t *)p);
            if (h.szidx != i || h.count == 0 || h.freeblock == NULL || h.prevpool != prev)
                FAIL("class list entry", p, i);
            prev = p;
            p = h.nextpool;
        }
        if (n != used_pools[i])
            FAIL("class list misses a used pool", NULL, i);
    }

    /* usable_arenas: the arenas with free pools, fullest first, nfp2lasta. */
    size_t nusable = 0, with_free = 0;
    FOR_EACH_ARENA(ao) with_free += ao->nfreepools > 0;
    pm_arena *prev = NULL;
    for (pm_arena *a = pm_i_p.usable_arenas; a != NULL; prev = a, a = a->nextarena) {
        if (++nusable > with_free || a->address == 0 || a->prevarena != prev ||
            a->nfreepools == 0)
            FAIL("usable_arenas entry", a, nusable);
        if (prev != NULL && prev->nfreepools > a->nfreepools)
            FAIL("usable_arenas not sorted fullest first", a, a->nfreepools);
        int last = a->nextarena == NULL || a->nextarena->nfreepools != a->nfreepools;
        if (last != (pm_i_p.nfp2lasta[a->nfreepools] == a))
            FAIL("nfp2lasta is not the last arena with its count", a, a->nfreepools);
    }
    if (nusable != with_free)
        FAIL("usable_arenas misses an arena with free pools", NULL, nusable);
    for (unsigned k = 0; k <= PM_P_MAX_POOLS; k++) {
        pm_arena *a = pm_i_p.nfp2lasta[k];
        if (a != NULL && (a->address == 0 || a->nfreepools != k))
            FAIL("stale nfp2lasta entry", a, k);
    }

    /* Thread caches: counts within capacity (a pool's worth: a bin's lim
     * reads 0 while its owner's slow path has it closed, pool.h). */
    for (pm_tcache *c = pm_i_p.caches; c != NULL; c = c->next)
        for (unsigned i = 0; i < PM_P_NCLASSES; i++)
            if (atomic_load_explicit(&c->bin[i + 1].n, memory_order_relaxed) >
                PM_P_BLOCKS_PER_POOL(PM_P_CLASS_SIZE(i)))
                FAIL("thread cache over capacity", c, i);
    rc = 0;
out:
    pm_i_p_unlock_all();
    pm_i_p_leave();
    return rc;
}
