/*
 * modes/pool.c - the `pymalloc` mode's allocator: CPython's pools (obmalloc),
 * made thread-safe with per-thread caches and per-size-class locks.
 *
 *   request n      1..512 -> size class (n-1)>>4, block size 16..512
 *                  (1..544, block size up to 544, once the debug hooks wrap
 *                  the pools: pm_i_p_small_max(), pool.h)
 *                  0, >512 (>544), alignment > 16 -> libc (the "raw fallback")
 *
 *   arena (1 MiB, mmap, 16 KiB aligned)         pool (16 KiB, 16 KiB aligned)
 *   +------+------+------+-- ... --+------+     +--------+-----+-----+-- ... -+----+
 *   | pool | pool | pool |         | pool |     | header | blk | blk |  never  |lost|
 *   +------+------+------+-- ... --+------+     |  48 B  |     |     |  carved |    |
 *    64 pools: the mapping is trimmed to a        +--------+-----+-----+-- ... -+----+
 *    16 KiB boundary (CPython loses one pool      first block at pool+48, no per-block
 *    to mmap's 4 KiB alignment in most arenas)    header: pool = p & ~(16 KiB - 1)
 *
 *   thread T1 cache          class locks (one per size class)     arena lock
 *   [class 0: b b b ...] <-> cls[0]: used pools (have free blocks) -> usable_arenas
 *   [class 1: b ...    ] <-> cls[1]: ...                              (fullest first,
 *   thread T2 cache      <-> ...                                       nfp2lasta[])
 *
 *   ownership tree: p>>14 -> top[16 bits] -> leaf[18 bits] = size class + 1, or 0
 *
 * The pools are CPython's design (see ../shared reference §3): a pool serves
 * one size class; blocks are carved lazily from `nextoffset` only when the
 * pool's LIFO free list runs dry; a pool is used (on its class list), full
 * (on no list; a free puts it back at the front of its class list) or empty
 * (on its arena's freepools, reusable by any class). usable_arenas is sorted
 * by free pools, fullest first, and allocation takes from its head so
 * nearly-empty arenas drain; nfp2lasta[k] (the last arena with k free pools)
 * makes the re-sort after a free O(1). An arena whose pools are all empty is
 * unmapped unless it is the last usable arena (anti-thrash). Whether a
 * pointer is ours is decided by a radix tree over pool addresses that never
 * reads the pointed-to memory; its leaf byte also gives the size class, so
 * free() needs no pool header on its fast path.
 *
 * Threads. Each thread has a cache: per size class a LIFO list of blocks,
 * linked through their first word like a pool's free list, holding at most
 * one pool's worth (16 KiB: 1021 blocks of 16 bytes, 31 of 512). malloc
 * pops from it and free pushes to it with no lock and no atomic
 * read-modify-write. An empty list is refilled, under that class's lock,
 * with the first used pool's whole free list, taken in O(1) without walking
 * it (its links are read one at a time as the blocks are handed out, as in
 * CPython's pymalloc), or with a run carved from a fresh pool's tail; a
 * full one gives its older half back to the pools (flush_bin_c). A block
 * freed by another thread simply lands in the freeing thread's cache. Pools
 * are taken from and returned to arenas under the arena lock. A thread's
 * cache is flushed when the thread exits (pthread key destructor); a thread
 * that allocates after that, or during set-up, uses the class locks
 * directly. Lock order: cls[0..33] -> arena_lock -> tc_lock.
 *
 * Invariants (checked by pm_i_pool_validate, modes/pool_stats.c):
 *  - a block is in exactly one of: a user's hands, one thread cache, its
 *    pool's free list, or its pool's never-carved tail; pool->count counts
 *    the first two;
 *  - pool->count == 0 <=> the pool is on its arena's freepools; otherwise
 *    the pool is on its class list <=> freeblock != NULL;
 *  - tree[pool] == szidx + 1 for every pool with count > 0, 0 for every
 *    other address; the tree entry of a pool does not change while any of
 *    its blocks is out (so the lock-free lookup in free() is exact);
 *  - nfreepools == |freepools| + never-carved pools; usable_arenas holds
 *    exactly the arenas with nfreepools > 0, in non-decreasing nfreepools
 *    order, and nfp2lasta[k] is the last of them with k free pools;
 *  - pool headers and list heads change only under the class lock (used
 *    and full pools) or the arena lock (empty pools, arenas);
 *  - side words (pool.h, for the debug layer): side tree entry of a used
 *    pool == its words | block size (0 for class 0 or without side words); an
 *    empty pool keeps its last entry or 0; no live word in an empty pool,
 *    at most count in a used one, none past the class's last block.
 * fork(): the prepare handler takes every lock, the child re-initializes
 * them and drops the other threads' caches (their blocks stay allocated).
 *
 * Valgrind (PM_HAVE_VALGRIND, memcheck detected at set-up; other tools such
 * as callgrind get the normal paths): thread caches
 * are off and every operation takes its class lock; each block is a
 * MALLOCLIKE block of exactly the requested size, freed with FREELIKE (then
 * kept from reuse a while: vg_quarantine) and
 * always moved by realloc, as by memcheck's own; arenas, pool headers, free blocks
 * and never-carved memory are NOACCESS, opened briefly around the
 * allocator's own accesses. The size class is n>>4 instead of (n-1)>>4, so
 * every pool block has at least one byte of slack and an overflow into the
 * next block is caught at its first byte. Not under valgrind all this costs
 * one predictable branch in the slow paths and nothing on the fast paths.
 */
#include "pool.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

_Static_assert(sizeof(pm_pool) == PM_P_HDR, "pool header is 48 bytes");
_Static_assert(offsetof(pm_pool, check) == 0 && offsetof(pm_pool, count) == 44,
               "the check word first (a write from below meets it first); tests/test_pool.c "
               "finds the count at 44");

/* Slow paths: out of line, and with the fast path's signature kept (GCC's
 * noipa stops it from dropping the unused ctx, which would cost the fast
 * path a register move before its tail jump). */
#if defined(__GNUC__) && !defined(__clang__)
#define PM_P_SLOW __attribute__((noinline, noipa))
#else
#define PM_P_SLOW __attribute__((noinline))
#endif
_Static_assert(PM_P_NCLASSES * PM_P_ALIGN == PM_P_WIDE_MAX, "34 size classes");
_Static_assert(PM_P_NCLASSES == 34, "one CLS_INIT per class in pm_i_p below");

#define PM_P_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define CLS_INIT(i) [i] = {.lock = PM_P_MUTEX_INIT}

struct pm_p_state pm_i_p = {
    .cls = {CLS_INIT(0),  CLS_INIT(1),  CLS_INIT(2),  CLS_INIT(3),  CLS_INIT(4),
            CLS_INIT(5),  CLS_INIT(6),  CLS_INIT(7),  CLS_INIT(8),  CLS_INIT(9),
            CLS_INIT(10), CLS_INIT(11), CLS_INIT(12), CLS_INIT(13), CLS_INIT(14),
            CLS_INIT(15), CLS_INIT(16), CLS_INIT(17), CLS_INIT(18), CLS_INIT(19),
            CLS_INIT(20), CLS_INIT(21), CLS_INIT(22), CLS_INIT(23), CLS_INIT(24),
            CLS_INIT(25), CLS_INIT(26), CLS_INIT(27), CLS_INIT(28), CLS_INIT(29),
            CLS_INIT(30), CLS_INIT(31), CLS_INIT(32), CLS_INIT(33)},
    .arena_lock = PM_P_MUTEX_INIT,
    .tc_lock = PM_P_MUTEX_INIT,
};

_Atomic(_Atomic uint8_t *) pm_i_p_tree[(size_t)1 << PM_P_TREE_TOP_BITS];
int pm_i_p_vg;

_Atomic(_Atomic pm_p_sentry *) pm_i_p_side_tree[(size_t)1 << PM_P_TREE_TOP_BITS];
_Atomic int pm_i_p_side_enabled;
#define INV(k) [k] = (uint32_t)(UINT32_MAX / ((k) * PM_P_ALIGN) + 1)
const uint32_t pm_i_p_side_inv[PM_P_NCLASSES + 1] = {
    INV(1),  INV(2),  INV(3),  INV(4),  INV(5),  INV(6),  INV(7),  INV(8),
    INV(9),  INV(10), INV(11), INV(12), INV(13), INV(14), INV(15), INV(16),
    INV(17), INV(18), INV(19), INV(20), INV(21), INV(22), INV(23), INV(24),
    INV(25), INV(26), INV(27), INV(28), INV(29), INV(30), INV(31), INV(32), INV(33), INV(34)};
#undef INV

/* The cache of threads that have none (yet, or any more): every bin is
 * empty with capacity 0, so both fast paths fall through to the slow ones. */
static pm_tcache empty_cache;
__thread pm_tcache *pm_i_p_tc __attribute__((tls_model("initial-exec"))) = &empty_cache;
/* 1 once this thread's cache was flushed at thread exit. */
static __thread int tc_dead __attribute__((tls_model("initial-exec")));
/* 1 while this thread creates its cache or runs the set-up (recursion). */
static __thread int tc_busy __attribute__((tls_model("initial-exec")));

/* Set-up: 0 not yet, 1 in progress, 2 done. */
static _Atomic int init_state;
static pthread_key_t tc_key;
/* 1 if pthread_key_create failed (the program took every key first): no
 * thread has a cache, whose flush at thread exit needs the key. tc_key is
 * then no key of ours, and setting it would overwrite a program's value. */
static int tc_no_key;

static void *map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* ---------------------------------------------------------------------------
 * Raw fallback: libc, counted.
 */

static void *raw_count(void *p)
{
    if (p != NULL) {
        atomic_fetch_add_explicit(&pm_i_p.raw_current, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&pm_i_p.raw_total, 1, memory_order_relaxed);
    }
    return p;
}

PM_P_SLOW void pm_i_p_free_other(void *p)
{
    atomic_fetch_sub_explicit(&pm_i_p.raw_current, 1, memory_order_relaxed);
    int saved = errno; /* free keeps errno (src/api.c: dom_free) */
    pm_i_libc_free(p);
    errno = saved;
}

/* ---------------------------------------------------------------------------
 * The ownership tree (written under the arena lock, read lock-free).
 */

static void tree_set(const void *pool, unsigned value)
{
    uintptr_t k = (uintptr_t)pool >> PM_P_POOL_BITS;
    _Atomic uint8_t *leaf =
        atomic_load_explicit(&pm_i_p_tree[k >> PM_P_TREE_LEAF_BITS], memory_order_relaxed);
    atomic_store_explicit(&leaf[k & (PM_P_TREE_LEAF_SIZE - 1)], (uint8_t)value,
                          memory_order_relaxed);
}

/* Make sure the leaf covering address a exists (arena lock held). */
static int tree_leaf(uintptr_t a)
{
    size_t top = (a >> PM_P_POOL_BITS) >> PM_P_TREE_LEAF_BITS;
    if (atomic_load_explicit(&pm_i_p_tree[top], memory_order_relaxed) != NULL)
        return 0;
    _Atomic uint8_t *leaf = map(PM_P_TREE_LEAF_SIZE); /* never freed */
    if (leaf == NULL)
        return -1;
    atomic_store_explicit(&pm_i_p_tree[top], leaf, memory_order_release);
    pm_i_p.tree_leaves++;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Side words (pool.h; arena lock held).
 */

void pm_i_pool_side_enable(void) { atomic_store(&pm_i_p_side_enabled, 1); }

/* A mode is being installed (nothing allocated yet): back to CPython's
 * threshold and no side words, until the debug hooks wrap the pool again. */
void pm_i_pool_side_disable(void) { atomic_store(&pm_i_p_side_enabled, 0); }

/* Make sure the side tree's leaf covering address a exists. */
static int side_leaf(uintptr_t a)
{
    size_t top = (a >> PM_P_POOL_BITS) >> PM_P_TREE_LEAF_BITS;
    if (atomic_load_explicit(&pm_i_p_side_tree[top], memory_order_relaxed) != NULL)
        return 0;
    _Atomic pm_p_sentry *leaf = map(PM_P_TREE_LEAF_SIZE * sizeof(pm_p_sentry)); /* never freed */
    if (leaf == NULL)
        return -1;
    atomic_store_explicit(&pm_i_p_side_tree[top], leaf, memory_order_release);
    pm_i_p.side_leaves++;
    return 0;
}

static _Atomic pm_p_sentry *side_slot(const void *pool)
{
    uintptr_t k = (uintptr_t)pool >> PM_P_POOL_BITS;
    _Atomic pm_p_sentry *leaf =
        atomic_load_explicit(&pm_i_p_side_tree[k >> PM_P_TREE_LEAF_BITS], memory_order_relaxed);
    return &leaf[k & (PM_P_TREE_LEAF_SIZE - 1)];
}

/* Pool `pool` has carved its blocks up to `nextoffset`: side_carved. */
static inline void side_carved(const pm_pool *pool, uint32_t nextoffset)
{
    pm_arena *ao = pool->arena;
    if (!ao->side_on)
        return;
    _Atomic uint8_t *c = &ao->side_carved[pm_i_p_pool_index(ao, pool)];
    unsigned hw = (nextoffset + 255) >> 8;
    if (hw > PM_P_POOL_SIZE >> 8)
        hw = PM_P_POOL_SIZE >> 8;
    if (hw > atomic_load_explicit(c, memory_order_relaxed))
        atomic_store_explicit(c, (uint8_t)hw, memory_order_relaxed);
}

/* Pool `pool` of arena ao is formatted for class idx: publish its side
 * words, reset first if they were another class's. */
static void side_format(pm_arena *ao, pm_pool *pool, unsigned idx)
{
    if (!ao->side_on)
        return;
    _Atomic pm_p_sentry *slot = side_slot(pool);
    pm_p_sentry old = atomic_load_explicit(slot, memory_order_relaxed);
    _Atomic uint64_t *words = pm_i_p_side_words(ao, pool);
    pm_p_sentry e = idx == 0 ? 0 : PM_P_SIDE_ENTRY(words, PM_P_CLASS_SIZE(idx));
    if (old == e)
        return; /* same class: the words are still right */
    atomic_store_explicit(&ao->side_carved[pm_i_p_pool_index(ao, pool)], 0, memory_order_relaxed);
    if (old != 0) {
        size_t n = PM_P_BLOCKS_PER_POOL((size_t)(old & PM_P_SIDE_SIZE_BITS));
        for (size_t i = 0; i < n; i++)
            atomic_store_explicit(PM_P_SIDE_WORD(words, i), 0, memory_order_relaxed);
    }
    atomic_store_explicit(slot, e, memory_order_release);
}

/* Arena ao is being unmapped: forget its pools' side words. */
static void side_release(pm_arena *ao)
{
    if (!ao->side_on)
        return;
    for (uint8_t *p = ao->first_pool; p < ao->pool_address; p += PM_P_POOL_SIZE)
        atomic_store_explicit(side_slot(p), 0, memory_order_release);
    madvise(ao->side, PM_P_SIDE_BYTES, MADV_DONTNEED); /* reads as zeros from now */
    for (size_t k = 0; k < PM_P_MAX_POOLS; k++)
        atomic_store_explicit(&ao->side_carved[k], 0, memory_order_relaxed);
    ao->side_on = 0;
}

void pm_i_pool_hold_arenas(void)
{
    pm_i_p_enter();
    pm_p_lock(&pm_i_p.arena_lock);
}

void pm_i_pool_release_arenas(void)
{
    pm_p_unlock(&pm_i_p.arena_lock);
    pm_i_p_leave();
}

int pm_i_pool_try_hold_arenas(int tries)
{
    pm_i_p_enter();
    if (pm_i_p_fork_held)
        return 1; /* this thread holds every lock (pm_p_unlock skips it too) */
    for (int i = 0; i < tries; i++)
        if (pthread_mutex_trylock(&pm_i_p.arena_lock) == 0)
            return 1;
    pm_i_p_leave();
    return 0;
}

int pm_i_pool_each_side(void (*fn)(unsigned char *base, _Atomic uint64_t *w, uint64_t v,
                                   void *arg),
                        void *arg, int freed_too, int (*skip)(const void *pool, size_t len))
{
    int locked = 0;
    if (!pm_i_p_fork_held) { /* (else this thread holds every lock) */
        for (int i = 0; i < 2000 && !locked; i++) {
            locked = pthread_mutex_trylock(&pm_i_p.arena_lock) == 0;
            if (!locked)
                sched_yield();
        }
        if (!locked)
            return -1;
    }
    for (size_t c = 0; c < pm_i_p.nchunks; c++) {
        pm_arena *chunk = pm_i_p.chunks[c];
        for (unsigned j = 0; j < PM_P_CHUNK_USED(c); j++) {
            const pm_arena *ao = &chunk[j];
            if (ao->address == 0 || !ao->side_on)
                continue;
            for (uint8_t *pool = ao->first_pool; pool < ao->pool_address; pool += PM_P_POOL_SIZE) {
                /* Kept while the pool is empty (its words freed or empty). */
                pm_p_sentry e = atomic_load_explicit(side_slot(pool), memory_order_acquire);
                if (e == 0 || (skip != NULL && skip(pool, PM_P_POOL_SIZE)))
                    continue;
                size_t d = (size_t)(e & PM_P_SIDE_SIZE_BITS);
                _Atomic uint64_t *first = PM_P_SIDE_FIRST(e);
                /* the blocks ever carved: the words above are 0 */
                size_t end = (size_t)atomic_load_explicit(&ao->side_carved[pm_i_p_pool_index(ao, pool)],
                                                          memory_order_relaxed) << 8;
                size_t n = end <= PM_P_HDR ? 0 : (end - PM_P_HDR + d - 1) / d;
                if (n > PM_P_BLOCKS_PER_POOL(d))
                    n = PM_P_BLOCKS_PER_POOL(d);
                for (size_t i = 0; i < n; i++) {
                    _Atomic uint64_t *w = PM_P_SIDE_WORD(first, i);
                    uint64_t v = atomic_load_explicit(w, memory_order_acquire);
                    if (PM_P_SIDE_STATE(v) == PM_P_SIDE_LIVE ||
                        (freed_too && PM_P_SIDE_STATE(v) == PM_P_SIDE_FREED))
                        fn(pool + PM_P_HDR + i * d, w, v, arg);
                }
            }
        }
    }
    if (locked)
        pthread_mutex_unlock(&pm_i_p.arena_lock);
    return 0;
}

/* Give new arena ao (at a) side words if they are asked for. */
static void side_arena(pm_arena *ao, uintptr_t a)
{
    ao->side_on = 0;
    if (!atomic_load_explicit(&pm_i_p_side_enabled, memory_order_relaxed))
        return;
    if (side_leaf(a) != 0 || side_leaf(a + PM_P_ARENA_SIZE - 1) != 0)
        return;
    if (ao->side == NULL && (ao->side = map(PM_P_SIDE_BYTES)) == NULL)
        return;
    if ((uint64_t)(uintptr_t)ao->side + PM_P_SIDE_BYTES > (UINT64_C(1) << (64 - PM_P_SIDE_PTR_SHIFT - 1)))
        return; /* cannot be encoded in a side tree entry: the registry serves */
    ao->side_on = 1;
}

/* ---------------------------------------------------------------------------
 * Arenas (arena lock held).
 */

static pm_arena *arena_object(void)
{
    if (pm_i_p.unused_arena_objects == NULL) {
        /* The next never-used object, of a new chunk if the last one has
         * none left (objects come back to the unused list, never to their
         * chunk). */
        if (pm_i_p.nchunks == 0 || pm_i_p.chunk_fresh == PM_P_ARENA_CHUNK) {
            if (pm_i_p.nchunks == PM_P_MAX_CHUNKS)
                return NULL;
            pm_arena *chunk = map(PM_P_ARENA_CHUNK * sizeof(pm_arena));
            if (chunk == NULL)
                return NULL;
            pm_i_p.chunks[pm_i_p.nchunks++] = chunk;
            pm_i_p.chunk_fresh = 0;
        }
        pm_arena *ao = &pm_i_p.chunks[pm_i_p.nchunks - 1][pm_i_p.chunk_fresh++];
        ao->nextarena = NULL;
        pm_i_p.unused_arena_objects = ao;
    }
    return pm_i_p.unused_arena_objects;
}

/* 1 MiB on a 16 KiB boundary, so that all 64 pools are usable: mmap only
 * aligns to the page, and CPython loses a pool in most arenas (1.6% of the
 * memory). Map 16 KiB - 4 KiB more than needed and unmap the excess ends;
 * if the kernel happens to return an aligned address, nothing is trimmed. */
static uint8_t *map_arena(void)
{
    uint8_t *p = map(PM_P_ARENA_SIZE);
    if (p == NULL || ((uintptr_t)p & PM_P_POOL_MASK) == 0)
        return p;
    munmap(p, PM_P_ARENA_SIZE);
    size_t page = 4096, extra = PM_P_POOL_SIZE - page;
    uint8_t *raw = map(PM_P_ARENA_SIZE + extra);
    if (raw == NULL)
        return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)raw + PM_P_POOL_MASK) & ~PM_P_POOL_MASK);
    if (a > raw)
        munmap(raw, (size_t)(a - raw));
    if (a + PM_P_ARENA_SIZE < raw + PM_P_ARENA_SIZE + extra)
        munmap(a + PM_P_ARENA_SIZE, (size_t)(raw + PM_P_ARENA_SIZE + extra - (a + PM_P_ARENA_SIZE)));
    return a;
}

/* Under memcheck an arena is a block of libc's heap (valgrind's, there),
 * not a mapping of its own: memcheck's leak check takes every client
 * mapping as a root, so a pointer held in a leaked pool block kept the
 * block it pointed to "still reachable" (a leaked list was reported as its
 * head alone; a leaked cycle not at all). Inside a heap block, the pool
 * blocks (described to memcheck as heap blocks) are scanned only when
 * reachable, as with libc's malloc. */
static uint8_t *get_arena(void)
{
    if (!pm_i_p_vg)
        return map_arena();
    uint8_t *base = pm_i_libc_memalign(PM_P_POOL_SIZE, PM_P_ARENA_SIZE);
    /* To memcheck, a heap block of 1 byte (its least; the first pool's
     * header is there): it names an address in the arena by the pool
     * block next to it ("0 bytes after a block of size 32"), not as inside
     * a 1 MiB block allocated here. */
    if (base != NULL)
        VALGRIND_RESIZEINPLACE_BLOCK(base, PM_P_ARENA_SIZE, 1, 0);
    return base;
}

static void put_arena(uint8_t *base)
{
    if (pm_i_p_vg)
        pm_i_libc_free(base);
    else
        munmap(base, PM_P_ARENA_SIZE);
}

static pm_arena *new_arena(void)
{
    pm_arena *ao = arena_object();
    if (ao == NULL)
        return NULL;
    uint8_t *base = get_arena();
    if (base == NULL)
        return NULL;
    uintptr_t a = (uintptr_t)base;
    if (((uint64_t)a + PM_P_ARENA_SIZE - 1) >> PM_P_ADDR_BITS || tree_leaf(a) != 0 ||
        tree_leaf(a + PM_P_ARENA_SIZE - 1) != 0) {
        put_arena(base);
        return NULL;
    }
    uint16_t *sizes = NULL;
    if (pm_i_p_vg) {
        sizes = map(PM_P_ARENA_SIZE / PM_P_ALIGN * sizeof(uint16_t));
        if (sizes == NULL) {
            put_arena(base);
            return NULL;
        }
        VALGRIND_MAKE_MEM_NOACCESS(base, PM_P_ARENA_SIZE);
    }
    pm_i_p.unused_arena_objects = ao->nextarena;
    ao->address = a;
    ao->first_pool = (uint8_t *)((a + PM_P_POOL_MASK) & ~PM_P_POOL_MASK);
    ao->pool_address = ao->first_pool;
    ao->ntotalpools = PM_P_MAX_POOLS - (ao->first_pool != base);
    ao->nfreepools = ao->ntotalpools;
    ao->freepools = NULL;
    ao->nextarena = ao->prevarena = NULL;
    ao->vg_sizes = sizes;
    side_arena(ao, a);
    pm_i_p.arenas_total++;
    if (++pm_i_p.arenas_current > pm_i_p.arenas_highwater)
        pm_i_p.arenas_highwater = pm_i_p.arenas_current;
    return ao;
}

/* Links and pool headers are checked while the debug hooks wrap the pools
 * (side words on): see link_next_vg and used_hdr_ok. */
static inline int links_checked(void)
{
    return atomic_load_explicit(&pm_i_p_side_enabled, memory_order_relaxed);
}

__attribute__((noreturn, noinline, cold)) static void pool_damaged(const pm_pool *pool,
                                                                   unsigned idx)
{
    pm_i_debug_pool_header_damaged(pool, idx); /* no return */
}

/* The header of empty pool `pool` on arena ua's free pools (open) is
 * whole: its check word still matches (its last class), and its link is
 * NULL or another pool of ua. */
static int empty_hdr_ok(const pm_pool *pool, const pm_arena *ua)
{
    uintptr_t next = (uintptr_t)pool->nextpool;
    return pool->arena == ua && pm_i_p_hdr_usable(pool, pool) &&
           (next == 0 || ((next & PM_P_POOL_MASK) == 0 && next >= ua->address &&
                          next < ua->address + PM_P_ARENA_SIZE));
}

/* An empty pool, taken from the fullest usable arena. */
static pm_pool *arena_take_pool(void)
{
    pm_arena *ua = pm_i_p.usable_arenas;
    if (ua == NULL) {
        ua = new_arena();
        if (ua == NULL)
            return NULL;
        pm_i_p.usable_arenas = ua;
        pm_i_p.nfp2lasta[ua->nfreepools] = ua;
    }
    /* ua is the head: the fewest free pools, so the only one with nfp - 1
     * after the decrement. */
    if (pm_i_p.nfp2lasta[ua->nfreepools] == ua)
        pm_i_p.nfp2lasta[ua->nfreepools] = NULL;
    if (ua->nfreepools > 1)
        pm_i_p.nfp2lasta[ua->nfreepools - 1] = ua;

    pm_pool *pool;
    if (ua->freepools != NULL) {
        pool = ua->freepools;
        PM_P_HDR_OPEN(pool);
        if (links_checked() && PM_I_UNLIKELY(!empty_hdr_ok(pool, ua)))
            pool_damaged(pool, PM_P_NCLASSES); /* (no class: empty) */
        ua->freepools = pool->nextpool;
    } else {
        pool = (pm_pool *)ua->pool_address;
        ua->pool_address += PM_P_POOL_SIZE;
        PM_P_HDR_OPEN(pool);
    }
    pool->arena = ua;
    if (--ua->nfreepools == 0) {
        pm_i_p.usable_arenas = ua->nextarena;
        if (ua->nextarena != NULL)
            ua->nextarena->prevarena = NULL;
        ua->nextarena = NULL;
    }
    return pool; /* header open */
}

/* Give an empty pool back to its arena; unmap the arena if it is wholly
 * empty and not the last usable one. CPython's insert_to_freepool. */
static void arena_put_pool(pm_pool *pool)
{
    pm_arena *ao = pool->arena;
    tree_set(pool, 0);
    pool->nextpool = ao->freepools;
    ao->freepools = pool;
    PM_P_VG(VALGRIND_MAKE_MEM_NOACCESS(pool, PM_P_POOL_SIZE));

    uint32_t nf = ao->nfreepools;
    pm_arena *lastnf = pm_i_p.nfp2lasta[nf];
    if (lastnf == ao) { /* ao is the rightmost with nf: its left neighbour may be */
        pm_arena *p = ao->prevarena;
        pm_i_p.nfp2lasta[nf] = (p != NULL && p->nfreepools == nf) ? p : NULL;
    }
    ao->nfreepools = ++nf;

    if (nf == ao->ntotalpools && ao->nextarena != NULL) {
        /* Wholly empty and not the last usable arena: unmap it. */
        if (ao->prevarena == NULL)
            pm_i_p.usable_arenas = ao->nextarena;
        else
            ao->prevarena->nextarena = ao->nextarena;
        ao->nextarena->prevarena = ao->prevarena;
        if (pm_i_p.nfp2lasta[nf] == ao)
            pm_i_p.nfp2lasta[nf] = NULL;
        if (ao->vg_sizes != NULL)
            munmap(ao->vg_sizes, PM_P_ARENA_SIZE / PM_P_ALIGN * sizeof(uint16_t));
        side_release(ao);
        put_arena((uint8_t *)ao->address);
        ao->address = 0;
        ao->vg_sizes = NULL;
        ao->freepools = NULL;
        ao->prevarena = NULL;
        ao->nextarena = pm_i_p.unused_arena_objects;
        pm_i_p.unused_arena_objects = ao;
        pm_i_p.arenas_current--;
        pm_i_p.arenas_reclaimed++;
        return;
    }
    if (nf == 1) {
        /* Was full (on no list): it has the fewest free pools, so it goes first. */
        ao->nextarena = pm_i_p.usable_arenas;
        ao->prevarena = NULL;
        if (pm_i_p.usable_arenas != NULL)
            pm_i_p.usable_arenas->prevarena = ao;
        pm_i_p.usable_arenas = ao;
        if (pm_i_p.nfp2lasta[1] == NULL)
            pm_i_p.nfp2lasta[1] = ao;
        return;
    }
    if (pm_i_p.nfp2lasta[nf] == NULL)
        pm_i_p.nfp2lasta[nf] = ao;
    if (ao == lastnf)
        return; /* the rightmost with nf - 1, so still in order */
    /* Move ao to just after lastnf, the last arena with nf - 1 free pools. */
    if (ao->prevarena != NULL)
        ao->prevarena->nextarena = ao->nextarena;
    else
        pm_i_p.usable_arenas = ao->nextarena;
    ao->nextarena->prevarena = ao->prevarena;
    ao->prevarena = lastnf;
    ao->nextarena = lastnf->nextarena;
    if (ao->nextarena != NULL)
        ao->nextarena->prevarena = ao;
    lastnf->nextarena = ao;
}

/* ---------------------------------------------------------------------------
 * Pools (class lock held).
 */

static inline __attribute__((always_inline)) void link_write_vg(uint8_t *bp, uint8_t *next,
                                                                int vg)
{
    PM_P_VG_IF(vg, VALGRIND_MAKE_MEM_UNDEFINED(bp, 16));
    pm_i_p_link_set(bp, next);
    PM_P_VG_IF(vg, VALGRIND_MAKE_MEM_NOACCESS(bp, 16));
}

/* Damaged links (pool.h: pm_i_p_link_checked): checked while the debug hooks
 * wrap the pools (side words on). The first damaged block this thread met
 * since the last report: found with a class lock held, it
 * is reported after (pm_i_debug_pool_links_report), for the report's
 * handler may allocate. The block and the rest of its list are leaked. */
__thread void *pm_i_p_bad_link __attribute__((tls_model("initial-exec")));


static void note_bad_link(uint8_t *bp)
{
    if (pm_i_p_bad_link == NULL)
        pm_i_p_bad_link = bp;
}

/* The link of free block bp; PM_P_LINK_BAD if `checked`
 * (links_checked(), or a constant in a loop specialised on it) and damaged
 * (noted). */
static inline __attribute__((always_inline)) uint8_t *link_next_c(uint8_t *bp, int vg,
                                                                  int checked)
{
    if (!checked)
        return pm_i_p_link_read_vg(bp, vg);
    PM_P_VG_IF(vg, VALGRIND_MAKE_MEM_DEFINED(bp, 16));
    uint8_t *next = pm_i_p_link_checked(bp);
    PM_P_VG_IF(vg, VALGRIND_MAKE_MEM_NOACCESS(bp, 16));
    if (PM_I_UNLIKELY(next == PM_P_LINK_BAD))
        note_bad_link(bp);
    return next;
}

static inline uint8_t *link_next_vg(uint8_t *bp, int vg)
{
    return link_next_c(bp, vg, links_checked());
}

static inline __attribute__((always_inline)) void link_write(uint8_t *bp, uint8_t *next)
{
    link_write_vg(bp, next, pm_i_p_vg);
}

/* Pool headers, while the debug hooks wrap the pools (as links): a write
 * past the end of the last block of a pool lands in the header of the pool
 * after it, whose pointers the allocator would follow (a crash inside it).
 * Each header is checked before it is used or changed; a damaged one is
 * fatal (pm_i_debug_pool_header_damaged reports and aborts): the pool's
 * blocks and lists cannot be trusted. A changed count or free-list head
 * that still looks sane is not caught (see docs/detection.md). */
int pm_i_p_hdr_usable(const pm_pool *h, const void *pool)
{
    return h->szidx < PM_P_NCLASSES && h->check == pm_i_p_hdr_check(h, pool);
}

/* x is NULL or the address of a used pool of class idx (the tree says so:
 * no header is read). */
static inline int used_pool_or_null(const pm_pool *x, unsigned idx)
{
    return x == NULL || (((uintptr_t)x & PM_P_POOL_MASK) == 0 && pm_i_p_lookup(x) == idx + 1);
}

/* The header of used pool `pool` (class idx; open) is whole. */
static int used_hdr_ok(const pm_pool *pool, unsigned idx)
{
    size_t size = PM_P_CLASS_SIZE(idx);
    uint32_t no = pool->nextoffset;
    uintptr_t fb = (uintptr_t)pool->freeblock - (uintptr_t)pool;
    if (pool->szidx != idx || !pm_i_p_hdr_usable(pool, pool) || no < PM_P_HDR + size ||
        no > PM_P_POOL_SIZE || (no - PM_P_HDR) % size != 0 ||
        pool->count > (no - PM_P_HDR) / size)
        return 0;
    if (pool->freeblock == NULL)
        return 1; /* full: off the class list (its list pointers are stale) */
    return fb >= PM_P_HDR && fb < no && (fb - PM_P_HDR) % size == 0 &&
           used_pool_or_null(pool->nextpool, idx) && used_pool_or_null(pool->prevpool, idx);
}

/* `checked`: links_checked(), or a constant in a loop specialised on it. */
static inline __attribute__((always_inline)) void check_used_hdr_c(const pm_pool *pool,
                                                                   unsigned idx, int checked)
{
    if (checked && PM_I_UNLIKELY(!used_hdr_ok(pool, idx)))
        pool_damaged(pool, idx);
}

static inline void check_used_hdr(const pm_pool *pool, unsigned idx)
{
    check_used_hdr_c(pool, idx, links_checked());
}

static void class_link_front(struct pm_p_class *c, pm_pool *pool)
{
    pool->prevpool = NULL;
    pool->nextpool = c->used;
    if (c->used != NULL) {
        PM_P_HDR_OPEN(c->used);
        check_used_hdr(c->used, (unsigned)(c - pm_i_p.cls));
        c->used->prevpool = pool;
        PM_P_HDR_CLOSE(c->used);
    }
    c->used = pool;
}

static void class_unlink(struct pm_p_class *c, pm_pool *pool)
{
    pm_pool *next = pool->nextpool, *prev = pool->prevpool;
    unsigned idx = (unsigned)(c - pm_i_p.cls);
    if (prev != NULL) {
        PM_P_HDR_OPEN(prev);
        check_used_hdr(prev, idx);
        prev->nextpool = next;
        PM_P_HDR_CLOSE(prev);
    } else {
        c->used = next;
    }
    if (next != NULL) {
        PM_P_HDR_OPEN(next);
        check_used_hdr(next, idx);
        next->prevpool = prev;
        PM_P_HDR_CLOSE(next);
    }
}

/* A fresh pool for class idx, on the class list (header closed). */
static pm_pool *new_pool(unsigned idx)
{
    pm_p_lock(&pm_i_p.arena_lock);
    pm_pool *pool = arena_take_pool();
    if (pool != NULL) {
        size_t size = PM_P_CLASS_SIZE(idx);
        pool->count = 0;
        pool->szidx = idx;
        pool->freeblock = (uint8_t *)pool + PM_P_HDR;
        pool->nextoffset = (uint32_t)(PM_P_HDR + size);
        pool->check = pm_i_p_hdr_check(pool, pool);
        link_write(pool->freeblock, NULL);
        side_format(pool->arena, pool, idx);
        side_carved(pool, pool->nextoffset);
        tree_set(pool, idx + 1);
    }
    pm_p_unlock(&pm_i_p.arena_lock);
    if (pool != NULL) {
        class_link_front(&pm_i_p.cls[idx], pool);
        PM_P_HDR_CLOSE(pool);
    }
    return pool;
}

/* One block of class idx: from the first used pool's free list, else
 * carved from its never-used tail; a new pool if there is none. */
static uint8_t *take_block(unsigned idx)
{
    struct pm_p_class *c = &pm_i_p.cls[idx];
    for (;;) {
        pm_pool *pool = c->used;
        if (pool == NULL && (pool = new_pool(idx)) == NULL)
            return NULL;
        PM_P_HDR_OPEN(pool);
        check_used_hdr(pool, idx);
        uint8_t *bp = pool->freeblock;
        /* Checked under memcheck too (which reported the write into the
         * freed block): the program goes on, as it would with libc's
         * allocator under memcheck, instead of the pool following the
         * damaged link. */
        uint8_t *next = link_next_c(bp, pm_i_p_vg, links_checked() || pm_i_p_vg);
        int bad = next == PM_P_LINK_BAD;
        pool->count++; /* bp, handed out (leaked if its link is damaged) */
        if (bad || next == NULL) {
            /* A damaged link: the rest of the free list is lost (leaked
             * until the pool's other blocks come back and it empties). */
            if (pool->nextoffset <= PM_P_MAXNEXT(PM_P_CLASS_SIZE(idx))) { /* lazy carving */
                next = (uint8_t *)pool + pool->nextoffset;
                pool->nextoffset += (uint32_t)PM_P_CLASS_SIZE(idx);
                side_carved(pool, pool->nextoffset);
                link_write(next, NULL);
            } else {
                next = NULL;
                class_unlink(c, pool); /* full */
            }
        }
        pool->freeblock = next;
        PM_P_HDR_CLOSE(pool);
        if (!bad)
            return bp;
    }
}

/* Return block bp of class idx to its pool. give_block_c takes `vg`
 * (running under memcheck) as an argument: inlined into the thread caches'
 * flush loop with 0 (the caches are off under memcheck), its valgrind
 * requests and tests of pm_i_p_vg drop out of that loop. */
static inline __attribute__((always_inline)) void give_block_c(unsigned idx, uint8_t *bp, int vg,
                                                               int checked)
{
    struct pm_p_class *c = &pm_i_p.cls[idx];
    pm_pool *pool = PM_P_POOL_OF(bp);
    PM_P_HDR_OPEN_VG(pool, vg);
    check_used_hdr_c(pool, idx, checked);
    int was_full = pool->freeblock == NULL;
    link_write_vg(bp, pool->freeblock, vg);
    pool->freeblock = bp;
    if (--pool->count == 0) {
        if (!was_full)
            class_unlink(c, pool);
        pm_p_lock(&pm_i_p.arena_lock);
        arena_put_pool(pool);
        pm_p_unlock(&pm_i_p.arena_lock);
        return; /* the whole pool is NOACCESS now */
    }
    if (was_full)
        class_link_front(c, pool);
    PM_P_HDR_CLOSE_VG(pool, vg);
}

static void give_block(unsigned idx, uint8_t *bp)
{
    give_block_c(idx, bp, pm_i_p_vg, links_checked());
}

/* A thread cache's refill (not under memcheck): a list of blocks of class
 * idx, linked through their first word and NULL-terminated, now counted
 * as allocated by their pool; *count gets its length (at most max, a bin's
 * capacity). It is the first used pool's whole free list, taken without
 * walking it: the pool's carved blocks are either counted or on the list.
 * If that list is the single block in front of the pool's never-used tail,
 * a run of up to PM_P_CARVE_MAX blocks (and half of max) is carved from the
 * tail instead. Either way the pool is left with its next never-used block
 * as its free list, or full. NULL (and *count 0) when no memory is left. */
static uint8_t *take_run(unsigned idx, uint32_t max, uint32_t *count)
{
    struct pm_p_class *c = &pm_i_p.cls[idx];
    pm_pool *pool = c->used;
    *count = 0;
    if (pool == NULL && (pool = new_pool(idx)) == NULL)
        return NULL;
    check_used_hdr(pool, idx);
    uint32_t size = (uint32_t)PM_P_CLASS_SIZE(idx);
    uint8_t *head = pool->freeblock;
    uint32_t n = (pool->nextoffset - PM_P_HDR) / size - pool->count;
    if (n == 1) { /* head's link is NULL: carve */
        uint32_t want = max / 2 < PM_P_CARVE_MAX ? max / 2 : PM_P_CARVE_MAX;
        uint8_t *tail = head;
        for (; n < want && pool->nextoffset <= PM_P_MAXNEXT(size); n++) {
            uint8_t *bp = (uint8_t *)pool + pool->nextoffset;
            pool->nextoffset += size;
            link_write_vg(tail, bp, 0);
            tail = bp;
        }
        link_write_vg(tail, NULL, 0);
    }
    pool->count += n;
    if (pool->nextoffset <= PM_P_MAXNEXT(size)) {
        uint8_t *bp = (uint8_t *)pool + pool->nextoffset;
        pool->nextoffset += size;
        link_write_vg(bp, NULL, 0);
        pool->freeblock = bp;
    } else {
        pool->freeblock = NULL;
        class_unlink(c, pool); /* full */
    }
    side_carved(pool, pool->nextoffset);
    *count = n;
    return head;
}

/* ---------------------------------------------------------------------------
 * Set-up and thread caches.
 */

/* The caches by owner (tc_lock held): a thread finds there the cache that
 * a dead thread before it, with the same thread-local storage (a stack
 * glibc reused), never gave back. */
static pm_tcache **owner_bucket(const void *owner)
{
    uint64_t h = (uint64_t)(uintptr_t)owner * UINT64_C(0x9E3779B97F4A7C15);
    return &pm_i_p.owned[h >> (64 - 10)];
}
_Static_assert(PM_P_OWNER_BUCKETS == 1 << 10, "owner_bucket's shift");

static void owned_insert(pm_tcache *c)
{
    pm_tcache **b = owner_bucket(c->owner);
    c->onext = *b;
    *b = c;
}

static void owned_remove(pm_tcache *c)
{
    for (pm_tcache **p = owner_bucket(c->owner); *p != NULL; p = &(*p)->onext)
        if (*p == c) {
            *p = c->onext;
            return;
        }
}

__thread int pm_i_p_fork_held __attribute__((tls_model("initial-exec")));

static int fork_no_locks; /* PM_I_FORK_TAKES_NO_LOCKS, at the prepare handler */

/* While the locks are being taken, and released (in the child: renewed),
 * with pm_i_p_fork_held not set, this thread is busy (pool.h): a signal
 * handler's malloc there does not wait for a lock its thread holds. */
void pm_i_pool_fork_prepare(void)
{
    if ((fork_no_locks = PM_I_FORK_TAKES_NO_LOCKS()))
        return;
    pm_i_p_enter();
    pm_i_p_lock_all();
    pm_i_p_fork_held = 1;
    pm_i_p_leave();
}

void pm_i_pool_fork_parent(void)
{
    if (fork_no_locks)
        return;
    pm_i_p_enter();
    pm_i_p_fork_held = 0;
    pm_i_p_unlock_all();
    pm_i_p_leave();
}

void pm_i_pool_fork_child(void)
{
    /* The pools' set-up, started by a thread that is not in the child: it
     * is run again by the first to need it (src/api.c reruns its set-up). */
    if (!tc_busy && atomic_load(&init_state) == 1)
        atomic_store(&init_state, 0);
    if (fork_no_locks)
        return; /* (one thread: its cache is the only one) */
    pm_i_p_enter();
    /* The locks are this thread's, taken by the prepare handler: released
     * below, as in the parent (pthread_atfork's own pattern; renewing them
     * by assignment instead was correct, but a thread sanitizer does not
     * see an assignment, and took the child's threads' locking of a lock
     * it still thought held by this thread for a double lock). */
    /* The other threads are gone. Their caches may be mid-update, so their
     * blocks are not reused: they stay allocated (a bounded leak). */
    pm_i_p.caches = pm_i_p_tc != &empty_cache ? pm_i_p_tc : NULL;
    /* (a thread of the child given the storage of one of theirs must not
     * take its cache over: see cache()) */
    memset(pm_i_p.owned, 0, sizeof pm_i_p.owned);
    if (pm_i_p_tc != &empty_cache) {
        pm_i_p_tc->next = pm_i_p_tc->prev = NULL;
        owned_insert(pm_i_p_tc);
    }
    pm_i_p_fork_held = 0;
    pm_i_p_unlock_all();
    pm_i_p_leave(); /* (frees a handler deferred meanwhile) */
}

static void flush_bin(pm_tcache *c, unsigned idx, uint32_t count);

static void tc_destroy(void *arg)
{
    pm_tcache *c = arg;
    pm_i_p_enter();
    pm_i_p_tc = &empty_cache;
    tc_dead = 1;
    for (unsigned i = 0; i < PM_P_NCLASSES; i++)
        flush_bin(c, i, atomic_load_explicit(&c->bin[i + 1].n, memory_order_relaxed));
    pm_p_lock(&pm_i_p.tc_lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        pm_i_p.caches = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    owned_remove(c);
    c->next = pm_i_p.spare;
    pm_i_p.spare = c;
    pm_p_unlock(&pm_i_p.tc_lock);
    pm_i_p_leave();
    pm_i_debug_pool_links_report("thread exit", 0); /* met by the flush */
}

/* Running under valgrind's memcheck (not another tool such as callgrind,
 * which should measure the normal paths): memcheck answers a MAKE_MEM
 * request with -1, other tools (and no valgrind) with 0. */
static int under_memcheck(void)
{
    if (!RUNNING_ON_VALGRIND)
        return 0;
#if PM_HAVE_VALGRIND
    int probe = 0;
    return (long)VALGRIND_MAKE_MEM_DEFINED(&probe, sizeof probe) == -1;
#else
    return 0;
#endif
}

/* Wait for the set-up (or run it). Returns 0 when done; 1 if this thread is
 * inside the set-up itself (a recursive allocation: use the direct path). */
static int ensure_init(void)
{
    if (PM_I_LIKELY(atomic_load_explicit(&init_state, memory_order_acquire) == 2))
        return 0;
    if (tc_busy)
        return 1;
    int expected = 0;
    if (atomic_compare_exchange_strong(&init_state, &expected, 1)) {
        tc_busy = 1;
        pm_i_p_vg = under_memcheck();
        tc_no_key = pthread_key_create(&tc_key, tc_destroy) != 0;
        tc_busy = 0;
        atomic_store_explicit(&init_state, 2, memory_order_release);
        return 0;
    }
    while (atomic_load_explicit(&init_state, memory_order_acquire) != 2)
        sched_yield();
    return 0;
}

/* Called by the library's set-up (src/api.c) before any mode is installed,
 * so that what pthread_atfork and pthread_key_create allocate goes to libc
 * (the table still holds it), never through a domain a hook may watch. */
void pm_i_pool_init(void) { (void)ensure_init(); }

/* Each of c's bins open, with room for one pool's worth of blocks (a
 * refill's whole free list always fits). */
static void open_bins(pm_tcache *c)
{
    for (unsigned i = 0; i < PM_P_NCLASSES; i++)
        c->bin[i + 1].lim = (uint32_t)PM_P_BLOCKS_PER_POOL(PM_P_CLASS_SIZE(i));
}

/* Take over cache c, left by a dead thread with this thread's storage
 * (cache(), tc_busy set). It stays registered (the statistics count its
 * blocks). Its bins are as its owner left them, each open: a thread ends
 * outside the slow paths. NULL if the key cannot be set: it stays as it
 * was, and this thread goes without (tried again at its next call). */
static pm_tcache *adopt(pm_tcache *c)
{
    /* (open already, unless its owner left a slow path by longjmp or
     * pthread_exit in a signal handler: its list may then be lost, and its
     * count too high, which the flush allows for) */
    open_bins(c);
    if (PM_I_UNLIKELY(pthread_setspecific(tc_key, c) != 0)) {
        tc_busy = 0;
        return NULL;
    }
    pm_i_p_tc = c;
    tc_busy = 0;
    return c;
}

/* This thread's cache, created on first use; NULL if it must not have one
 * (valgrind, thread exiting, recursion during creation or set-up, no key
 * for the flush at thread exit). */
static pm_tcache *cache(void)
{
    if (pm_i_p_tc != &empty_cache)
        return pm_i_p_tc;
    if (pm_i_p_vg || tc_dead || tc_busy || tc_no_key)
        return NULL;
    tc_busy = 1;
    pm_p_lock(&pm_i_p.tc_lock);
    /* A cache still registered to this thread's storage is a dead thread's
     * that the key's destructor never flushed: created in the last round
     * of its thread-exit destructors (glibc runs PTHREAD_DESTRUCTOR_ITERATIONS
     * rounds, and ours, set after its turn in the last one, is not called
     * again), or later. Its blocks are sound (no thread changes them any
     * more): this thread takes it over as it is, and its key's destructor
     * flushes it at this thread's exit. Else each such thread left a cache
     * behind, 4 KiB and its blocks (100,000 threads: 400 MB). */
    for (pm_tcache *o = *owner_bucket(&pm_i_p_tc); o != NULL; o = o->onext)
        if (o->owner == &pm_i_p_tc) {
            pm_p_unlock(&pm_i_p.tc_lock);
            return adopt(o);
        }
    pm_tcache *c = pm_i_p.spare;
    if (c != NULL)
        pm_i_p.spare = c->next;
    pm_p_unlock(&pm_i_p.tc_lock);
    if (c == NULL)
        c = map(sizeof *c);
    if (c != NULL) {
        for (unsigned i = 0; i < PM_P_NCLASSES; i++) {
            struct pm_p_bin *b = &c->bin[i + 1];
            b->head = NULL;
            atomic_store_explicit(&b->n, 0, memory_order_relaxed);
        }
        open_bins(c);
        /* It may allocate (key >= 32), and fail: with no value set the
         * cache would never be flushed, so it goes back (tried again at
         * this thread's next allocation). */
        if (PM_I_UNLIKELY(pthread_setspecific(tc_key, c) != 0)) {
            pm_p_lock(&pm_i_p.tc_lock);
            c->next = pm_i_p.spare;
            pm_i_p.spare = c;
            pm_p_unlock(&pm_i_p.tc_lock);
            tc_busy = 0;
            return NULL;
        }
        pm_p_lock(&pm_i_p.tc_lock);
        c->prev = NULL;
        c->next = pm_i_p.caches;
        if (c->next != NULL)
            c->next->prev = c;
        pm_i_p.caches = c;
        c->owner = &pm_i_p_tc;
        owned_insert(c);
        pm_p_unlock(&pm_i_p.tc_lock);
        pm_i_p_tc = c;
    }
    tc_busy = 0;
    return c;
}

/* Take bin b's list, leaving it empty, for a slow path that changes it.
 * One instruction (an exchange): a signal handler that interrupts this
 * thread either finds the list whole (and its pop or push is done before
 * the list is taken) or finds it empty, never a block that is both the
 * handler's and still on the taken list. */
static inline void *pm_p_bin_take(struct pm_p_bin *b)
{
    return __atomic_exchange_n(&b->head, NULL, __ATOMIC_RELAXED);
}

/* Give blocks of class idx's bin back to their pools: the first `keep`
 * (the most recently freed) stay, and the list is cut below them; up to
 * `count` of the blocks after them go back.
 *
 * Why the oldest go back (the free slow path's flush of a full bin, keep
 * half): that flush may run in a signal handler that interrupted a fast
 * malloc of this class (pool.h: pm_i_p_pop) between its load of the head
 * (block p) with p's link (next) and its store of next as the new head.
 * That store comes after the handler returns and puts back the list from
 * next down, whatever the flush did: a flush that gave back the first
 * blocks (p, next, ...) left them both in their pools and in the bin (p
 * in the thread's hands too), and they were handed out twice. The fast
 * path has read p's link only; the blocks after it are reached through
 * links read later, so a cut below next is seen by the restored list:
 * it then ends at the cut, and the blocks given back are not on it. p is
 * among the first `keep` unless the handler pushed keep - 1 or more blocks
 * of the class on top of it (fast frees) before the full bin sent it here
 * (pool.h: the handler's frees during a fast malloc). */
static inline __attribute__((always_inline)) void flush_bin_c(pm_tcache *c, unsigned idx,
                                                              uint32_t keep, uint32_t count,
                                                              int checked)
{
    struct pm_p_bin *b = &c->bin[idx + 1];
    /* Closed and empty while it is walked: a signal handler's fast paths
     * meanwhile fall through to the slow ones (pool.h). The list is taken
     * by one exchange: between a load of the head and a store of NULL, a
     * handler's malloc could pop the first block, which the flush would
     * then give back to its pool while the handler used it. Its count is
     * read after that (a handler's pop meanwhile made the list shorter
     * than the caller's count). */
    pm_p_lock(&pm_i_p.cls[idx].lock);
    uint32_t lim = b->lim;
    b->lim = 0;
    atomic_signal_fence(memory_order_seq_cst);
    uint8_t *top = pm_p_bin_take(b);
    uint32_t have = atomic_load_explicit(&b->n, memory_order_relaxed);
    /* The blocks kept: walked to the last of them, whose link is cut. */
    uint8_t *bp = top, *last = NULL;
    uint32_t kept = 0;
    for (; kept < keep && bp != NULL; kept++) {
        uint8_t *next = link_next_c(bp, 0, checked);
        if (checked && PM_I_UNLIKELY(next == PM_P_LINK_BAD))
            goto damaged;
        last = bp;
        bp = next;
    }
    if (bp == NULL) { /* nothing past them (a list shorter than its count) */
        have = kept;
        count = 0;
    } else {
        if (last != NULL)
            link_write_vg(last, NULL, 0);
        else
            top = NULL; /* keep 0: all of it may go */
        if (count > (have > kept ? have - kept : 0))
            count = have > kept ? have - kept : 0;
    }
    for (uint32_t i = 0; i < count; i++) {
        /* The list may be shorter than its count without damage: a signal
         * handler's free (a push) that lands between an interrupted fast
         * pop's load of the head and its store is lost, and the count is
         * one too high (glibc's thread cache has the same window). The
         * lost block leaks; walking past the list's end would crash. */
        if (!checked && PM_I_UNLIKELY(bp == NULL)) {
            have = count = i;
            break;
        }
        /* (checked: the loop is specialised on it, so that pymalloc mode's
         * flush, a hot path, pays nothing for the checks) */
        uint8_t *next = checked && bp == NULL ? PM_P_LINK_BAD : link_next_c(bp, 0, checked);
        if (checked && PM_I_UNLIKELY(next == PM_P_LINK_BAD))
            goto damaged; /* (a list shorter than its count: see below) */
        give_block_c(idx, bp, 0, checked); /* a cache: not under memcheck */
        bp = next;
    }
    /* What is left: the kept blocks, or (keep 0) the rest of the list; a
     * cut list keeps the kept ones only (the blocks past count below the
     * cut, if any, stay counted as handed out: a leak, of a list longer
     * than its count, which only a damaged count makes). */
    if (last == NULL)
        top = bp;
    have = last == NULL ? have - count : kept;
    /* The bin's count drops before the lock is released, so that the
     * statistics (under the lock) never count a block both back in its
     * pool and still cached; and before the list comes back, so that a
     * handler's pop of it counts from the new count. */
    atomic_store_explicit(&b->n, have, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    b->head = top;
    pm_p_unlock(&pm_i_p.cls[idx].lock);
    atomic_signal_fence(memory_order_seq_cst);
    b->lim = lim;
    return;
damaged:
    /* (A list shorter than its count: a damaged pool count made a refill
     * count too many. Nothing to give back; links checked, the header's
     * check then catches the damage.) The damaged block and the blocks
     * after it (and those kept above it) stay counted as handed out:
     * leaked, and the bin is empty. */
    atomic_store_explicit(&b->n, 0, memory_order_relaxed);
    pm_p_unlock(&pm_i_p.cls[idx].lock);
    atomic_signal_fence(memory_order_seq_cst);
    b->lim = lim;
}

/* Give back the first `count` blocks of the bin (keep 0: thread exit,
 * pm_trim), or keep the first `keep` and give back up to `count` after
 * them (a full bin's flush). */
static void flush_bin_keep(pm_tcache *c, unsigned idx, uint32_t keep, uint32_t count)
{
    if (count == 0)
        return;
    if (PM_I_UNLIKELY(links_checked()))
        flush_bin_c(c, idx, keep, count, 1);
    else
        flush_bin_c(c, idx, keep, count, 0);
}

static void flush_bin(pm_tcache *c, unsigned idx, uint32_t count)
{
    flush_bin_keep(c, idx, 0, count);
}

static void vg_quarantine_flush(void);

void pm_i_pool_flush_thread_cache(void)
{
    if (pm_i_p_vg) {
        vg_quarantine_flush(); /* no caches: the quarantine stands in for them */
        return;
    }
    pm_tcache *c = pm_i_p_tc;
    if (c == &empty_cache)
        return;
    pm_i_p_enter();
    for (unsigned i = 0; i < PM_P_NCLASSES; i++)
        flush_bin(c, i, atomic_load_explicit(&c->bin[i + 1].n, memory_order_relaxed));
    pm_i_p_leave();
}

static size_t arenas_reclaimed_now(void)
{
    pm_i_p_enter(); /* (as everything that takes the pools' locks) */
    pm_p_lock(&pm_i_p.arena_lock);
    size_t n = pm_i_p.arenas_reclaimed;
    pm_p_unlock(&pm_i_p.arena_lock);
    pm_i_p_leave();
    return n;
}

/* pm_trim: the calling thread's cached blocks back to their pools (under
 * memcheck, the quarantined blocks: vg_quarantine), so that the arenas
 * they alone kept (a cached block pins its pool, and its arena) can be
 * unmapped. 1 if an arena was unmapped. */
int pm_i_pool_trim(void)
{
    if (atomic_load_explicit(&init_state, memory_order_acquire) != 2)
        return 0; /* the pools were never used */
    if (pm_i_p_busy != 0)
        return 0; /* a signal handler's, inside the pools (pool.h) */
    size_t before = arenas_reclaimed_now();
    pm_i_pool_flush_thread_cache();
    pm_i_debug_pool_links_report("pm_trim", 0);
    return arenas_reclaimed_now() != before;
}

/* ---------------------------------------------------------------------------
 * Slow paths.
 */

/* Under valgrind: the requested size of block bp of class idx (its class
 * lock held). */
static uint16_t *vg_size_slot(uint8_t *bp, unsigned idx)
{
    pm_pool *pool = PM_P_POOL_OF(bp);
    PM_P_HDR_OPEN(pool);
    check_used_hdr(pool, idx); /* its arena pointer is followed */
    pm_arena *ao = pool->arena;
    PM_P_HDR_CLOSE(pool);
    return &ao->vg_sizes[((uintptr_t)bp - ao->address) / PM_P_ALIGN];
}

/* Under valgrind: bp (in a pool of class idx) is a block handed out and
 * not freed since: a block start whose size slot is set (vg_free clears
 * it). Else memcheck is told of a free of bp, which it reports as the
 * invalid free (a double free, an interior pointer) or realloc it is, and
 * the pool does nothing more: giving such a block back would count it
 * twice (the pool emptied, made NOACCESS and reused under live blocks) or
 * put an interior pointer on the free list (two blocks handed out over the
 * same bytes). Class lock held. */
static uint16_t *vg_live_slot(uint8_t *bp, unsigned idx)
{
    uintptr_t off = (uintptr_t)bp & PM_P_POOL_MASK;
    if (off >= PM_P_HDR && (off - PM_P_HDR) % PM_P_CLASS_SIZE(idx) == 0) {
        uint16_t *slot = vg_size_slot(bp, idx);
        if (*slot != 0)
            return slot;
    }
    VALGRIND_FREELIKE_BLOCK(bp, 0);
    return NULL;
}

/* Under memcheck a pool block of n bytes is given a slot of n + 40 to
 * n + 55 bytes (the size class of n + 40): the 40 or more bytes after its
 * end, never addressable, stand for the redzones memcheck's own malloc
 * puts around a block. memcheck names an address by the first block it
 * finds whose margin holds it, a margin of its effective redzone (24 bytes
 * on amd64: the 16 asked for, rounded with the 8-byte chunk header to 16),
 * so an access up to 16 bytes past the end is "k bytes after" this block
 * only when the next block starts at least 16 + 24 bytes past it; with 32
 * bytes of slack, p[n + 8] past a block of 448 bytes was "24 bytes before"
 * the next one, with that block's allocation stack. With a byte of slack,
 * a write one past the end was often so described. And p[n + 16] is
 * caught, as with memcheck's malloc, instead of landing in the next
 * block. (PM_P_VG_GAP, pool.h.) */

static void *vg_malloc(size_t n)
{
    unsigned idx = (unsigned)((n + PM_P_VG_GAP - 1) >> PM_P_ALIGN_SHIFT);
    if (idx >= pm_i_p_small_max() >> PM_P_ALIGN_SHIFT)
        return raw_count(pm_i_libc_malloc(n));
    pm_p_lock(&pm_i_p.cls[idx].lock);
    uint8_t *bp = take_block(idx);
    if (bp != NULL) {
        *vg_size_slot(bp, idx) = (uint16_t)n;
        VALGRIND_MALLOCLIKE_BLOCK(bp, n, 0, 0);
    }
    pm_p_unlock(&pm_i_p.cls[idx].lock);
    return bp;
}

/* Under memcheck: freed block bp of class idx waits in its class's
 * quarantine, a FIFO of the last PM_P_VG_QUARANTINE blocks freed, before
 * it goes back to its pool: NOACCESS meanwhile, so that a read or write
 * through a stale pointer is reported even after later mallocs of the same
 * size, as memcheck's own free queue does for libc's blocks (the pool's
 * LIFO free list handed the block out again at the next malloc, and the
 * access went unseen). Returns the block to give back now: the oldest one
 * when the ring is full, bp itself if the ring cannot be mapped. Class
 * lock held. */
#define PM_P_VG_QUARANTINE 1024
static uint8_t *vg_quarantine(unsigned idx, uint8_t *bp)
{
    struct pm_p_class *c = &pm_i_p.cls[idx];
    if (c->vg_quar == NULL &&
        (c->vg_quar = map(PM_P_VG_QUARANTINE * sizeof *c->vg_quar)) == NULL)
        return bp;
    if (c->vg_qlen < PM_P_VG_QUARANTINE) {
        c->vg_quar[(c->vg_qhead + c->vg_qlen++) % PM_P_VG_QUARANTINE] = bp;
        return NULL;
    }
    uint8_t *oldest = c->vg_quar[c->vg_qhead];
    c->vg_quar[c->vg_qhead] = bp;
    c->vg_qhead = (c->vg_qhead + 1) % PM_P_VG_QUARANTINE;
    return oldest;
}

/* pm_trim under memcheck: every quarantined block back to its pool, so
 * that the arenas they alone kept can go. Counted in pm_i_p_busy, as
 * everything that takes the pool's locks: a signal handler's malloc or
 * free meanwhile goes to libc or is deferred, instead of waiting for the
 * class lock this thread holds. */
static void vg_quarantine_flush(void)
{
    pm_i_p_enter();
    for (unsigned idx = 0; idx < PM_P_NCLASSES; idx++) {
        struct pm_p_class *c = &pm_i_p.cls[idx];
        pm_p_lock(&c->lock);
        for (; c->vg_qlen > 0; c->vg_qlen--) {
            give_block(idx, c->vg_quar[c->vg_qhead]);
            /* Not left in the ring: memcheck's leak check scans it as a
             * root, and a block later made at that address and lost was
             * "still reachable" through it. */
            c->vg_quar[c->vg_qhead] = NULL;
            c->vg_qhead = (c->vg_qhead + 1) % PM_P_VG_QUARANTINE;
        }
        pm_p_unlock(&c->lock);
    }
    pm_i_p_leave();
}

static void vg_free(uint8_t *bp, unsigned idx)
{
    pm_p_lock(&pm_i_p.cls[idx].lock);
    uint16_t *slot = vg_live_slot(bp, idx);
    if (slot != NULL) {
        *slot = 0;
        VALGRIND_FREELIKE_BLOCK(bp, 0);
        /* The whole slot: a deferred free (defer_free) opened 8 bytes of
         * it for its link, past the end of a block of fewer. */
        VALGRIND_MAKE_MEM_NOACCESS(bp, PM_P_CLASS_SIZE(idx));
        if ((bp = vg_quarantine(idx, bp)) != NULL)
            give_block(idx, bp);
    }
    pm_p_unlock(&pm_i_p.cls[idx].lock);
}

/* No pool block for n bytes: no arena could be mapped (or the arena
 * objects, or a tree leaf). As in CPython, the request goes to libc, which
 * may still have memory (its heap grows with brk, and mmap can fail for
 * want of mappings, vm.max_map_count, rather than of memory). */
__attribute__((noinline)) static void *no_pool_memory(size_t n)
{
    return raw_count(pm_i_libc_malloc(n));
}

/* Empty cache c's bin of class idx, whose list is damaged: its blocks stay
 * counted as handed out (leaked). */
static void drop_bin(pm_tcache *c, unsigned idx)
{
    struct pm_p_bin *b = &c->bin[idx + 1];
    /* Under the class lock, as a flush: the statistics read the count. */
    pm_p_lock(&pm_i_p.cls[idx].lock);
    b->head = NULL;
    atomic_store_explicit(&b->n, 0, memory_order_relaxed);
    pm_p_unlock(&pm_i_p.cls[idx].lock);
}

/* The malloc slow path's work, its busy count held (pool.h). */
static void *malloc_slow(size_t n)
{
    int recursive = ensure_init();
    if (pm_i_p_vg) {
        void *p = vg_malloc(n);
        return p != NULL ? p : no_pool_memory(n);
    }
    unsigned idx = (unsigned)((n - 1) >> PM_P_ALIGN_SHIFT);
    pm_tcache *c = recursive ? NULL : cache();
    struct pm_p_class *cl = &pm_i_p.cls[idx];
    if (c == NULL) { /* no cache: straight from the pools */
        pm_p_lock(&cl->lock);
        uint8_t *bp = take_block(idx);
        pm_p_unlock(&cl->lock);
        return bp != NULL ? bp : no_pool_memory(n);
    }
    /* The bin is closed (capacity 0) while it is refilled: a signal
     * handler's free of this class goes to its slow path, not into it. Its
     * list is taken (pm_p_bin_take), so that a handler's malloc finds it
     * empty too, until the one store that gives it back or fills it. */
    struct pm_p_bin *b = &c->bin[idx + 1];
    uint32_t lim = b->lim;
    b->lim = 0;
    atomic_signal_fence(memory_order_seq_cst);
    void *r;
    for (;;) {
        uint8_t *bp = pm_p_bin_take(b);
        if (bp == NULL) { /* refill */
            uint32_t k;
            pm_p_lock(&cl->lock);
            bp = take_run(idx, lim, &k);
            pm_p_unlock(&cl->lock);
            if (bp == NULL) {
                r = no_pool_memory(n);
                break;
            }
            atomic_store_explicit(&b->n, k, memory_order_relaxed);
        }
        uint8_t *next = link_next_vg(bp, 0);
        if (PM_I_UNLIKELY(next == PM_P_LINK_BAD)) {
            drop_bin(c, idx); /* bp and the rest: leaked */
            continue;
        }
        atomic_store_explicit(&b->n, atomic_load_explicit(&b->n, memory_order_relaxed) - 1,
                              memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst); /* the count first (flush_bin_c) */
        b->head = next;
        r = bp;
        break;
    }
    atomic_signal_fence(memory_order_seq_cst);
    b->lim = lim;
    return r;
}

PM_P_SLOW void *pm_i_p_malloc_slow(void *ctx, size_t n)
{
    (void)ctx; /* same signature as pool_malloc: a plain tail jump */
    /* (and a signal handler's malloc inside a slow path, pool.h) */
    if (n == 0 || n > pm_i_p_small_max() || PM_I_UNLIKELY(pm_i_p_busy))
        return raw_count(pm_i_libc_malloc(n));
    pm_i_p_enter();
    void *p = malloc_slow(n);
    pm_i_p_leave();
    return p;
}

void pm_i_p_link_damaged(void *bp, unsigned idx)
{
    note_bad_link(bp);
    drop_bin(pm_i_p_tc, idx);
}

__thread int pm_i_p_busy __attribute__((tls_model("initial-exec")));
__thread void *pm_i_p_deferred __attribute__((tls_model("initial-exec")));

/* Free p later: a signal handler's free while this thread is in a slow
 * path (pool.h). The list is this thread's, but a handler may interrupt a
 * handler: a compare-and-swap. A block already on the list (a double free
 * in the handler) is not put on it twice, which would make a cycle. */
static void defer_free(void *p, unsigned idx)
{
    (void)idx; /* (under memcheck only) */
    void *head = __atomic_load_n(&pm_i_p_deferred, __ATOMIC_RELAXED);
    for (void *q = head; q != NULL;) {
        if (q == p)
            return;
        memcpy(&q, q, sizeof q);
    }
#if PM_HAVE_VALGRIND
    if (pm_i_p_vg) {
        /* Not a block start (an interior pointer, whose block's bytes the
         * link would overwrite), or a block start not addressable to
         * memcheck, so no live block (a second free: the link would go
         * over its free-list link, in its pool or its class's
         * quarantine): reported now, and nothing written. */
        uintptr_t off = (uintptr_t)p & PM_P_POOL_MASK;
        unsigned char vbits;
        if (off < PM_P_HDR || (off - PM_P_HDR) % PM_P_CLASS_SIZE(idx) != 0 ||
            VALGRIND_GET_VBITS(p, &vbits, 1) == 3) {
            VALGRIND_FREELIKE_BLOCK(p, 0);
            return;
        }
        /* (its slack too, for blocks under 8 bytes: vg_free closes it) */
        VALGRIND_MAKE_MEM_UNDEFINED(p, sizeof head);
    }
#endif
    do
        memcpy(p, &head, sizeof head);
    while (!__atomic_compare_exchange_n(&pm_i_p_deferred, &head, p, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
}

/* The blocks freed by a signal handler while this thread was in a slow
 * path, freed now that it has left it (pm_i_p_leave). */
void pm_i_p_drain_deferred(void)
{
    void *p;
    while ((p = __atomic_exchange_n(&pm_i_p_deferred, NULL, __ATOMIC_RELAXED)) != NULL) {
        while (p != NULL) {
            void *next;
            memcpy(&next, p, sizeof next);
            pm_i_p_free_block(p, pm_i_p_lookup(p));
            p = next;
        }
    }
}

static void free_slow(void *p, unsigned idx);

/* Keeps errno, as free must (src/api.c: dom_free): the flush of a full bin
 * may give an arena back to the system (munmap, madvise), and the first
 * free of a thread sets up its cache. */
PM_P_SLOW void pm_i_p_free_slow(void *ctx, void *p, unsigned idx)
{
    (void)ctx;
    int saved = errno;
    free_slow(p, idx);
    errno = saved;
}

static inline __attribute__((always_inline)) void free_slow(void *p, unsigned idx)
{
    if (PM_I_UNLIKELY(pm_i_p_busy)) {
        defer_free(p, idx);
        return;
    }
    pm_i_p_enter();
    int recursive = ensure_init();
    pm_tcache *c;
    if (pm_i_p_vg) {
        vg_free(p, idx);
    } else if ((c = recursive ? NULL : cache()) == NULL) {
        pm_p_lock(&pm_i_p.cls[idx].lock);
        give_block(idx, p);
        pm_p_unlock(&pm_i_p.cls[idx].lock);
    } else {
        /* Closed while it changes (see malloc_slow); the flush also empties
         * its list while it walks it. */
        struct pm_p_bin *b = &c->bin[idx + 1];
        uint32_t lim = b->lim;
        b->lim = 0;
        atomic_signal_fence(memory_order_seq_cst);
        /* Full: the older half goes back, below a cut (flush_bin_c: a
         * signal handler's free may be here while its thread's fast malloc
         * is taking the first block). */
        uint32_t have = atomic_load_explicit(&b->n, memory_order_relaxed);
        if (have >= lim)
            flush_bin_keep(c, idx, lim - lim / 2, have);
        /* The list taken, as in malloc_slow: a handler's pop of its head
         * between our load and store would leave that block in the bin
         * and (freed by the handler: deferred) put it there again. */
        pm_i_p_link_set(p, pm_p_bin_take(b));
        atomic_store_explicit(&b->n, atomic_load_explicit(&b->n, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
        b->head = p;
        atomic_signal_fence(memory_order_seq_cst);
        b->lim = lim;
    }
    pm_i_p_leave();
}

/* ---------------------------------------------------------------------------
 * The allocator. The fast paths touch only this thread's cache and the tree.
 */

static void *pool_malloc(void *ctx, size_t n)
{
    void *p = pm_i_p_pop(n, 0);
    return PM_I_LIKELY(p != NULL) ? p : pm_i_p_malloc_slow(ctx, n);
}

/* pool_malloc with its links checked (pool.h: pm_i_p_link_checked), for
 * the paths that share the thread caches with the debug hooks while they
 * wrap the pools: pool_calloc and pool_realloc under the hooks, and a copy
 * of the pool allocator set over the hooks of one domain
 * (pm_i_debug_table_write puts this in its place). One unchecked pop would
 * make a damaged link the head of a bin. */
void *pm_i_pool_malloc_checked(void *ctx, size_t n)
{
    void *p = pm_i_p_pop(n, 1);
    if (PM_I_LIKELY(p != NULL) && PM_I_LIKELY(!PM_P_POP_IS_BAD(p)))
        return p;
    if (p != NULL)
        pm_i_p_pop_damaged(p, n); /* then the slow path: the bin is empty */
    return pm_i_p_malloc_slow(ctx, n);
}

/* The malloc for the pool's own calloc and realloc. */
static inline void *pool_malloc_inner(void *ctx, size_t n)
{
    if (PM_I_UNLIKELY(links_checked()))
        return pm_i_pool_malloc_checked(ctx, n);
    return pool_malloc(ctx, n);
}

static void pool_free(void *ctx, void *p)
{
    (void)ctx;
    pm_i_p_free(p);
}


static void *pool_calloc(void *ctx, size_t nelem, size_t elsize)
{
    size_t n = nelem * elsize; /* cannot overflow: checked by the entry point */
    if (n - 1 >= pm_i_p_small_max())
        return raw_count(pm_i_libc_calloc(nelem, elsize));
    void *p = pool_malloc_inner(ctx, n);
    if (p != NULL)
        memset(p, 0, n);
    return p;
}

/* Under memcheck, realloc and usable_size read a block's requested size
 * under its class lock. Counted in pm_i_p_busy, as everything that takes
 * the pools' locks, so that a signal handler's malloc or free meanwhile is
 * served without the lock (the handler's malloc of that class waited for
 * it on its own thread: the process hung). A call nested in one of this
 * thread's (a handler's), which may hold the lock, only tries it, once:
 * 0 if it is taken, nothing held. (Not a few times with a yield between:
 * a handler that failed them all took longer than a 500 us timer's
 * period under memcheck, and the thread never left the handlers.) */
static int vg_class_lock(unsigned idx)
{
    int nested = pm_i_p_busy != 0;
    pm_i_p_enter();
    if (!nested || pm_i_p_fork_held) { /* (fork_held: pm_p_lock skips it too) */
        pm_p_lock(&pm_i_p.cls[idx].lock);
        return 1;
    }
    if (pthread_mutex_trylock(&pm_i_p.cls[idx].lock) == 0)
        return 1;
    pm_i_p_leave();
    return 0;
}

static void vg_class_unlock(unsigned idx)
{
    pm_p_unlock(&pm_i_p.cls[idx].lock);
    pm_i_p_leave();
}

/* CPython's rule: stay in place iff n <= block size and 4n > 3 * block
 * size; otherwise move (malloc, copy, free), or stay if a shrink's new
 * block cannot be had. Raw blocks stay raw. */
static void *pool_realloc(void *ctx, void *p, size_t n)
{
    unsigned cls = pm_i_p_lookup(p);
    if (cls == 0)
        return pm_i_libc_realloc(p, n);
    size_t size = PM_P_CLASS_SIZE(cls - 1), copy = size;
    if (pm_i_p_vg) {
        /* Always moved, as memcheck's own realloc does: the old block
         * freed (into the quarantine), so that a use of the pointer
         * passed to realloc is reported as a use after free, and the new
         * block's allocation stack is the realloc's. (Resized in place,
         * a read through the old pointer went unseen and a later free of
         * it was taken for the new block's.) Copy only the defined
         * bytes. */
        if (!vg_class_lock(cls - 1)) {
            errno = ENOMEM; /* a handler's, its thread holding the lock */
            return NULL;
        }
        uint16_t *slot = vg_live_slot(p, cls - 1);
        if (slot == NULL) { /* reported by memcheck, as with its own realloc */
            vg_class_unlock(cls - 1);
            return NULL;
        }
        copy = *slot;
        vg_class_unlock(cls - 1);
    } else if (n <= size && 4 * n > 3 * size) {
        return p;
    }
    if (n < copy)
        copy = n;
    int saved = errno;
    void *q = pool_malloc_inner(ctx, n);
    if (q == NULL) {
        /* A block that shrinks stays where it is when no smaller one can
         * be had: glibc's realloc never fails a shrink, and code such as
         * s = realloc(s, len) relies on it when memory is short. (Not
         * under memcheck, whose realloc always moves.) */
        if (n <= size && !pm_i_p_vg) {
            errno = saved;
            return p;
        }
        return NULL;
    }
    memcpy(q, p, copy);
    pool_free(ctx, p);
    errno = saved; /* (a failed arena mapping before the C library served) */
    return q;
}

static void *pool_memalign(void *ctx, size_t alignment, size_t n)
{
    (void)ctx;
    return raw_count(pm_i_libc_memalign(alignment, n));
}

static size_t pool_usable_size(void *ctx, void *p)
{
    (void)ctx;
    unsigned cls = pm_i_p_lookup(p);
    if (cls == 0)
        return pm_i_libc_usable_size(p);
    if (pm_i_p_vg) { /* the requested size: the rest is not addressable */
        if (!vg_class_lock(cls - 1))
            return 0; /* a handler's, its thread holding the lock: none known */
        size_t n = *vg_size_slot(p, cls - 1);
        vg_class_unlock(cls - 1);
        return n;
    }
    return PM_P_CLASS_SIZE(cls - 1);
}

const pm_i_base pm_i_pool_base = {
    .a = {
        .ctx = NULL,
        .malloc = pool_malloc,
        .calloc = pool_calloc,
        .realloc = pool_realloc,
        .free = pool_free,
    },
    .xctx = NULL,
    .memalign = pool_memalign,
    .usable_size = pool_usable_size,
};

int pm_i_pool_owns(const void *p) { return pm_i_p_lookup(p) != 0; }

int pm_i_pool_class_of(const void *p) { return (int)pm_i_p_lookup(p) - 1; }

int pm_i_pool_valgrind(int *compiled_in)
{
    if (compiled_in != NULL)
        *compiled_in = PM_HAVE_VALGRIND;
    return under_memcheck();
}
