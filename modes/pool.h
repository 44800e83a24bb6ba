/*
 * modes/pool.h - the pool allocator's state, shared by modes/pool.c (the
 * allocator) and modes/pool_stats.c (statistics, printer, validator).
 * Outside modes/pool*.c, only modes/debug.c (side words, the free of a block
 * it knows) and src/override.c (the malloc family's inline fast paths)
 * include this; the rest of the library sees pool mode through
 * src/pm_internal.h. The design is described at the top of modes/pool.c.
 */
#ifndef PM_POOL_H
#define PM_POOL_H

#include "../src/pm_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* ---- valgrind (CMake option PYMALLOC_VALGRIND -> PM_HAVE_VALGRIND) ---- */
#ifndef PM_HAVE_VALGRIND
#define PM_HAVE_VALGRIND 0
#endif
#if PM_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#else
#define RUNNING_ON_VALGRIND 0
#define VALGRIND_MALLOCLIKE_BLOCK(a, n, rz, z) ((void)0)
#define VALGRIND_FREELIKE_BLOCK(a, rz) ((void)0)
#define VALGRIND_RESIZEINPLACE_BLOCK(a, o, n, rz) ((void)0)
#define VALGRIND_MAKE_MEM_NOACCESS(a, n) ((void)0)
#define VALGRIND_MAKE_MEM_UNDEFINED(a, n) ((void)0)
#define VALGRIND_MAKE_MEM_DEFINED(a, n) ((void)0)
#endif

/* ---- geometry (64-bit CPython figures) ---- */
#define PM_P_ALIGN 16u
#define PM_P_ALIGN_SHIFT 4
#define PM_P_SMALL_MAX 512u          /* pymalloc's own threshold (CPython's) */
/* Under the debug hooks (pymalloc_debug) every request of up to 512 bytes
 * comes with 32 bytes more: two more classes (528, 544) hold those of 481
 * to 512 bytes, which would otherwise go to libc and the hooks' registry.
 * They are served once pm_i_pool_side_enable() has run (the debug hooks
 * wrapping the pool); before, pm_i_p_small_max() is 512 and their bins and
 * pools stay empty. */
#define PM_P_WIDE_MAX (PM_P_SMALL_MAX + 32u)
/* Under memcheck, the bytes of slack a pool block keeps at least after its
 * end (pool.c, vg_malloc): a block of n bytes takes the class of n + this:
 * 16 bytes, plus memcheck's effective redzone (24 on amd64, 20 on i386). */
#define PM_P_VG_GAP 40u
#define PM_P_NCLASSES 34u            /* PM_P_WIDE_MAX / PM_P_ALIGN */
#define PM_P_POOL_BITS 14
#define PM_P_POOL_SIZE (1u << PM_P_POOL_BITS)  /* 16 KiB */
#define PM_P_POOL_MASK ((uintptr_t)PM_P_POOL_SIZE - 1)
#define PM_P_ARENA_SIZE (1u << 20)   /* 1 MiB */
#define PM_P_MAX_POOLS (PM_P_ARENA_SIZE / PM_P_POOL_SIZE) /* 64 */
#define PM_P_HDR 48u                 /* sizeof(pm_pool), asserted in pool.c */

#define PM_P_CLASS_SIZE(idx) (((size_t)(idx) + 1) << PM_P_ALIGN_SHIFT)
#define PM_P_BLOCKS_PER_POOL(size) ((PM_P_POOL_SIZE - PM_P_HDR) / (size))
#define PM_P_POOL_OF(p) ((pm_pool *)((uintptr_t)(p) & ~PM_P_POOL_MASK))

/* ---- thread caches: a run carved from a fresh pool for a refill ---- */
#define PM_P_CARVE_MAX 64u /* blocks, at most half a bin */

/* ---- ownership radix tree: one byte per 16 KiB pool of a 48-bit space ---- */
#define PM_P_ADDR_BITS 48
#define PM_P_TREE_KEY_BITS (PM_P_ADDR_BITS - PM_P_POOL_BITS) /* 34 */
#define PM_P_TREE_LEAF_BITS 18                                /* 256 KiB leaves */
#define PM_P_TREE_TOP_BITS (PM_P_TREE_KEY_BITS - PM_P_TREE_LEAF_BITS)
#define PM_P_TREE_LEAF_SIZE ((size_t)1 << PM_P_TREE_LEAF_BITS)

struct pm_arena;

/* Pool header: 48 bytes at the start of every 16 KiB pool in use. The
 * check word comes first: a write past the end of the last block of the
 * pool before reaches it before anything else (CPython's order put the
 * count there, which a short overflow changed to a value that still
 * looked sane). */
typedef struct pm_pool {
    uint32_t check;         /* pm_i_p_hdr_check(): the pool's address, arena
                               and class, hashed (CPython's maxnextoffset,
                               PM_P_MAXNEXT(size), is computed instead) */
    uint32_t szidx;        /* size class */
    uint8_t *freeblock;    /* LIFO free list; link in a free block's 1st word */
    struct pm_pool *nextpool; /* class list (used) or arena freepools (empty) */
    struct pm_pool *prevpool; /* class list only */
    struct pm_arena *arena;
#if UINTPTR_MAX == UINT32_MAX
    /* 32-bit: the same 48 bytes (the first block stays 16-byte aligned,
     * and the geometry, the blocks per pool, is the same everywhere) */
    uint32_t pad[4];
#endif
    uint32_t nextoffset;    /* offset of the first never-used block */
    uint32_t count;        /* blocks handed out (to users or thread caches) */
} pm_pool;

/* The largest valid nextoffset of a pool of blocks of `size` bytes. */
#define PM_P_MAXNEXT(size) ((uint32_t)(PM_P_POOL_SIZE - (size)))

/* A pool header's check word (hdr: the header of the pool at `pool`, or a
 * copy of it): set when the pool is formatted for a class;
 * the debug hooks' checks of a header (modes/pool.c: used_hdr_ok) compare
 * it, so that an arena pointer or class overwritten by a write past the
 * end of the last block of the pool before is never followed. */
static inline uint32_t pm_i_p_hdr_check(const pm_pool *hdr, const void *pool)
{
    uint64_t h = ((uint64_t)(uintptr_t)hdr->arena ^ (uint64_t)(uintptr_t)pool) +
                 hdr->szidx * UINT64_C(0x9E3779B97F4A7C15);
    h *= UINT64_C(0xFF51AFD7ED558CCD);
    return (uint32_t)(h ^ (h >> 32));
}

/* One arena: 1 MiB from mmap. Arena objects live in mmap'ed chunks and are
 * never freed; an object whose arena was unmapped has address 0. */
typedef struct pm_arena {
    uintptr_t address;      /* mmap base, or 0 */
    uint8_t *first_pool;    /* first 16 KiB-aligned address in the arena */
    uint8_t *pool_address;  /* next never-carved pool */
    uint32_t nfreepools;    /* empty pools: on freepools plus never carved */
    uint32_t ntotalpools;   /* 64 if the arena is aligned, else 63 */
    pm_pool *freepools;     /* empty pools, singly linked */
    struct pm_arena *nextarena, *prevarena; /* usable_arenas, or unused list */
    uint16_t *vg_sizes;     /* under valgrind: requested size per 16 bytes */
    _Atomic uint64_t *side; /* side words (see below): kept with the object */
    int side_on;            /* this arena's pools have side words */
    /* Per pool k, the blocks ever carved since its words were last reset:
     * every block below byte side_carved[k] * 256 of the pool (nextoffset
     * rounded up; only grows, with the class lock held, and is reset when
     * the pool's words are). A side word of a block above it is 0: the
     * look through all the words at exit (pm_i_pool_each_side) stops
     * there, instead of reading, and faulting in, the pages of groups no
     * pool of the arena has reached (43 for a pool of 48-byte blocks). */
    _Atomic uint8_t side_carved[PM_P_MAX_POOLS];
} pm_arena;

#define PM_P_ARENA_CHUNK 1024u /* arena objects per mmap'ed chunk */
/* The objects of chunk c (pm_i_p.chunks[c]) ever handed out: a loop over
 * the arenas (arena lock held) reads no further. */
#define PM_P_CHUNK_USED(c) ((c) + 1 == pm_i_p.nchunks ? pm_i_p.chunk_fresh : PM_P_ARENA_CHUNK)
#define PM_P_MAX_CHUNKS 4096u  /* 4M arenas: 4 TiB of pools */

/* A thread's cache: per size class a bounded LIFO list of blocks that are
 * counted as allocated by their pools, linked through their first word (as
 * in a pool's free list). Indexed by class + 1 (the value the ownership
 * tree stores; entry 0 is unused) so that free() indexes it with the tree's
 * byte directly. A bin holds at most one pool's worth of blocks (16 KiB):
 * a refill takes a pool's whole free list at once (no walk down the list;
 * a block's link is read when the block is handed out, as CPython's
 * pymalloc does), or carves a run of never-used blocks. n is written by the
 * owning thread only; it is atomic (relaxed: plain moves) because the
 * statistics read it from other threads. */
#define PM_P_CACHE_BINS (PM_P_NCLASSES + 1)
struct pm_p_bin {
    void *head;         /* the list, NULL-terminated */
    _Atomic uint32_t n; /* its length */
    /* capacity; 0 in the shared empty cache, and while the owner's slow
     * path changes the bin (closed: see pm_i_p_busy). Only its own thread
     * reads or writes it (and its signal handlers: signal fences). */
    uint32_t lim;
};
typedef struct pm_tcache {
    struct pm_p_bin bin[PM_P_CACHE_BINS];
    struct pm_tcache *next, *prev; /* registry (under tc_lock) */
    /* The thread that has it: the address of its pm_i_p_tc, unique among
     * the live threads; and the next cache of its owner bucket (owned below).
     * Both under tc_lock. */
    const void *owner;
    struct pm_tcache *onext;
} pm_tcache;

/* Buckets of the caches by owner (pm_p_state.owned). */
#define PM_P_OWNER_BUCKETS 1024

struct pm_p_class {
    pthread_mutex_t lock;
    pm_pool *used; /* pools with free blocks, NULL-terminated, doubly linked */
    /* Under memcheck: blocks freed but not yet back in their pools, oldest
     * first from vg_qhead (a ring of PM_P_VG_QUARANTINE, mapped at the
     * first free), so that a use after free is still reported after later
     * mallocs of the class (pool.c: vg_quarantine). */
    uint8_t **vg_quar;
    uint32_t vg_qhead, vg_qlen;
} __attribute__((aligned(64)));

struct pm_p_state {
    struct pm_p_class cls[PM_P_NCLASSES];

    pthread_mutex_t arena_lock; /* everything below up to tc_lock */
    pm_arena *usable_arenas;    /* sorted by nfreepools, fullest first */
    pm_arena *nfp2lasta[PM_P_MAX_POOLS + 1];
    pm_arena *unused_arena_objects;
    pm_arena *chunks[PM_P_MAX_CHUNKS];
    size_t nchunks;
    /* Objects of the last chunk ever handed out (the rest are untouched:
     * a process with one arena touches one page of its chunk, not the
     * chunk's 38 pages, 1,024 objects of 152 bytes; neither does a look
     * through the arenas). */
    unsigned chunk_fresh;
    size_t arenas_total, arenas_reclaimed, arenas_highwater, arenas_current;
    size_t tree_leaves, side_leaves; /* the two maps' leaves (never freed) */

    pthread_mutex_t tc_lock; /* the thread-cache registry */
    pm_tcache *caches;       /* every live thread's cache, and dead ones' left
                              * unflushed (cache(), modes/pool.c) */
    pm_tcache *spare;        /* caches of exited threads, for reuse */
    pm_tcache *owned[PM_P_OWNER_BUCKETS]; /* `caches` again, by owner */

    _Atomic ptrdiff_t raw_current; /* raw-fallback blocks live (see stats) */
    _Atomic size_t raw_total;
};

extern struct pm_p_state pm_i_p;
extern _Atomic(_Atomic uint8_t *) pm_i_p_tree[(size_t)1 << PM_P_TREE_TOP_BITS];
extern int pm_i_p_vg; /* running under valgrind (set once, at init) */

/* ---------------------------------------------------------------------------
 * Side words: one 8-byte atomic word per block slot of each pool, for the
 * debug layer (modes/debug.c), which keeps there what it knows about each
 * pool block (state, serial, API, requested size) instead of in its hashed
 * registry. The pool module only provides the words and finds them; it
 * never reads them on its own paths (the validator does).
 *
 * Where: an arena created after pm_i_pool_side_enable() has a 256 KiB
 * mapping of PM_P_SIDE_PER_POOL / 8 groups of one 4 KiB page each: group g holds, in
 * its k-th 64-byte line, the words of blocks 8g .. 8g + 7 of the arena's
 * k-th pool (the block at offset 48 + i * size is block i):
 * pm_i_p_side_words, PM_P_SIDE_WORD. The words in use are packed into the
 * first pages whatever the classes: about 8 bytes of resident memory per
 * block (a page per pool cost a whole 4 KiB page for the 31 blocks of a
 * 512-byte pool). A cache line holds the words of 8 neighbouring blocks of
 * one pool, which a thread's cache takes and gives back together: two
 * threads working on their own pools never write the same line, and
 * blocks carved from a pool one after the other share lines. (The first layout,
 * a row per block index, put block i and block i + 1 of a pool 512 bytes
 * apart, one line each, every line shared with 7 other pools: two threads
 * churning at once paid 20 to 30% more time a pair for it.)
 * Pools of class 0
 * (16-byte blocks, 1021 per pool: more than a pool has words) and arenas created
 * before the flag was set (or whose mapping failed) have none: their
 * blocks are "not pool memory" for the side-word lookup.
 *
 * Finding them without reading the pool: a second radix tree, parallel to
 * the ownership tree, one word per 16 KiB pool: the address of the pool's
 * first side word shifted left by PM_P_SIDE_PTR_SHIFT | its block size
 * (32..544, bits 4..9), or 0. It is set (arena lock) when a pool is
 * formatted for a class (new_pool) in an arena with side words, and KEPT
 * when the pool empties and goes back to its arena, so that a second free
 * of a block of an emptied pool still finds the block's word (freed, with its
 * size and serial) while the ownership tree already says "not ours". It is
 * cleared when the arena is unmapped. Invariant: a pool whose side entry
 * is 0 has all its side words 0; a pool reformatted for another class has
 * its words reset to 0 before the new entry is published (for the same
 * class they are kept: a freed word stays true until its block is handed
 * out again). An empty pool holds no live word.
 *
 * Unmapping: the arena's side mapping is not unmapped with the arena but
 * emptied (madvise MADV_DONTNEED: the pages are released and read as
 * zeros) and kept with the arena object for its next arena, so that a
 * thread that found the words just before cannot fault on them; it reads
 * zeros ("empty": an invalid pointer, which it then is).
 */
/* A side word, as the debug layer packs it (documented here because the
 * validator reads the state too):
 *   bits  0..47  serial number, low 48 bits (the debug layer's full_serial
 *                gives all 64 back)
 *   bits 48..57  requested size (a pool block holds at most 544 - 32 = 512
 *                data bytes; 10 bits)
 *   bits 58..59  API: 1 raw, 2 mem, 3 obj
 *   bits 60..61  the debug layer's flags (modes/debug.c: SIDE_FILLED,
 *                SIDE_HELD)
 *   bits 62..63  state: 0 empty (never a block here since the pool was
 *                formatted for its class), 1 live, 2 freed
 * A word is 0 until its first block is handed out. */
#define PM_P_SIDE_SIZE_SHIFT 48
#define PM_P_SIDE_SIZE_MAX 1023u
#define PM_P_SIDE_API_SHIFT 58
#define PM_P_SIDE_STATE_SHIFT 62
#define PM_P_SIDE_STATE(w) ((unsigned)((w) >> PM_P_SIDE_STATE_SHIFT))
#define PM_P_SIDE_LIVE 1u
#define PM_P_SIDE_FREED 2u

#define PM_P_SIDE_PER_POOL 512u /* words per pool: >= blocks per pool of class >= 1 */
#define PM_P_SIDE_LINE 8u   /* words per 64-byte line */
#define PM_P_SIDE_BYTES ((size_t)PM_P_MAX_POOLS * PM_P_SIDE_PER_POOL * 8u)
_Static_assert(PM_P_BLOCKS_PER_POOL(32) <= PM_P_SIDE_PER_POOL, "the words hold class 1");
/* The first side word (word 0) of pool `pool` of arena ao, which has side
 * words: the arena's k-th pool (k < 64) has the k-th line of every group. */
_Static_assert(PM_P_MAX_POOLS * PM_P_SIDE_LINE * 8 == 4096, "a group is a page");
/* The index of pool `pool` in arena ao (0 .. 63). */
static inline size_t pm_i_p_pool_index(const pm_arena *ao, const void *pool)
{
    return (size_t)((const uint8_t *)pool - ao->first_pool) / PM_P_POOL_SIZE;
}
static inline _Atomic uint64_t *pm_i_p_side_words(const pm_arena *ao, const void *pool)
{
    return ao->side + pm_i_p_pool_index(ao, pool) * PM_P_SIDE_LINE;
}
/* Word i of the pool whose first word is w: line i / 8 of its group, word
 * i % 8 of the line. */
#define PM_P_SIDE_WORD(w, i)                                                                     \
    ((w) + (((size_t)(i) & ~(size_t)(PM_P_SIDE_LINE - 1)) * PM_P_MAX_POOLS) +                     \
     ((size_t)(i) & (PM_P_SIDE_LINE - 1)))
/* Side tree entry: the first word's address << 10 | block size, 64 bits
 * on every target (a 32-bit address shifted by 10 needs 42). Only for side
 * mappings below 2^53 (user space is below 2^47 on x86-64 and below 2^52
 * on arm64; side_arena checks). */
typedef uint64_t pm_p_sentry;
#define PM_P_SIDE_PTR_SHIFT 10
#define PM_P_SIDE_ENTRY(w, size)                                                                 \
    (((pm_p_sentry)(uintptr_t)(w) << PM_P_SIDE_PTR_SHIFT) | (pm_p_sentry)(size))
#define PM_P_SIDE_FIRST(e) ((_Atomic uint64_t *)(uintptr_t)((e) >> PM_P_SIDE_PTR_SHIFT))

extern _Atomic(_Atomic pm_p_sentry *) pm_i_p_side_tree[(size_t)1 << PM_P_TREE_TOP_BITS];
/* ceil(2^32 / (16 k)) for block size 16 k (k = 2..34), see pm_i_pool_side. */
extern const uint32_t pm_i_p_side_inv[PM_P_NCLASSES + 1];
#define PM_P_SIDE_SIZE_BITS ((pm_p_sentry)0x3F0) /* block size in a side tree entry */
/* Set once by pm_i_pool_side_enable, before the first allocation. */
extern _Atomic int pm_i_p_side_enabled;
/* The largest request the pools serve: PM_P_SMALL_MAX, or PM_P_WIDE_MAX
 * while the debug hooks wrap the pools (side words on: one switch for
 * both). Read on the slow paths only: the fast paths serve what the bins
 * hold. */
static inline size_t pm_i_p_small_max(void)
{
    return atomic_load_explicit(&pm_i_p_side_enabled, memory_order_relaxed) ? PM_P_WIDE_MAX
                                                                            : PM_P_SMALL_MAX;
}

/* Give every arena created from now on side words, and serve the two wide
 * classes (the debug decorator, before the first allocation). Idempotent. */
void pm_i_pool_side_enable(void);
/* Undo it (a mode is being installed, before the first allocation): the
 * pools serve up to PM_P_SMALL_MAX again. */
void pm_i_pool_side_disable(void);

/* Call fn(base, w, v, arg) for every live side word w (value v) of every
 * pool, and (freed_too) every freed one, in address order within a pool,
 * base being its block's address (the debug hooks' check of the heap at
 * abort and at exit). The arena lock is held meanwhile, so no arena is
 * unmapped under fn, which may read the block and its neighbours; a word
 * may change under it (the block freed, reallocated or taken again by
 * another thread). Returns 0, or -1 without calling fn when the arena
 * lock stayed taken (by a thread that is stuck, or by this one,
 * interrupted) through a bounded wait. Never allocates. A pool for which
 * skip(pool, PM_P_POOL_SIZE) returns 1 is left out (skip NULL: none). */
int pm_i_pool_each_side(void (*fn)(unsigned char *base, _Atomic uint64_t *w, uint64_t v,
                                   void *arg),
                        void *arg, int freed_too, int (*skip)(const void *pool, size_t len));
/* Hold, and release, the arena lock: no arena is unmapped meanwhile (for
 * pm_check_block, which reads a block it has not claimed). */
void pm_i_pool_hold_arenas(void);
void pm_i_pool_release_arenas(void);
/* pm_i_pool_hold_arenas for a call nested in another of this thread (a
 * signal handler's), which may hold the lock: 1 if it was taken within
 * `tries` tries (release it as above), else 0 (nothing held). */
int pm_i_pool_try_hold_arenas(int tries);

enum {
    PM_I_SIDE_NONE = 0,    /* not a pool block with side words: use the registry */
    PM_I_SIDE_OK = 1,      /* the block's word is returned */
    PM_I_SIDE_INTERIOR = 2 /* in a pool with side words, but not at a block start */
};

/* The side tree's entry for the pool holding address a, or 0. */
static inline pm_p_sentry pm_i_p_side_entry(uintptr_t a)
{
    uintptr_t top = (a >> PM_P_POOL_BITS) >> PM_P_TREE_LEAF_BITS; /* (0 on 32-bit) */
    if (PM_I_UNLIKELY(top >= ((uintptr_t)1 << PM_P_TREE_TOP_BITS)))
        return 0;
    _Atomic pm_p_sentry *leaf = atomic_load_explicit(&pm_i_p_side_tree[top], memory_order_acquire);
    if (PM_I_UNLIKELY(leaf == NULL))
        return 0;
    return atomic_load_explicit(&leaf[(a >> PM_P_POOL_BITS) & (PM_P_TREE_LEAF_SIZE - 1)],
                                memory_order_acquire);
}

/* The side word of the pool block starting at `block` (the address the
 * pool allocator returned), or NULL with *status NONE or INTERIOR; with
 * OK, *status is PM_I_SIDE_OK | (class + 1) << 2. Reads only the side
 * tree, never the memory at block or the pool header. */
static inline _Atomic uint64_t *pm_i_pool_side(const void *block, int *status)
{
    uintptr_t a = (uintptr_t)block;
    *status = PM_I_SIDE_NONE;
    pm_p_sentry e = pm_i_p_side_entry(a);
    if (PM_I_UNLIKELY(e == 0))
        return NULL;
    /* Offset of block from the pool's first block (in the header: wraps,
     * huge); the entry's bits 4..9 are the class's block size d. Lemire's
     * test: for off < 2^14 and d < 2^10, with c = ceil(2^32 / d),
     * off * c = q * 2^32 + r, and d divides off iff r < c (then q = off / d). */
    uintptr_t off = (a & PM_P_POOL_MASK) - PM_P_HDR, d = (uintptr_t)(e & PM_P_SIDE_SIZE_BITS);
    uint32_t c = pm_i_p_side_inv[d >> PM_P_ALIGN_SHIFT];
    uint64_t prod = (uint64_t)off * c;
    if (PM_I_UNLIKELY(off > PM_P_POOL_SIZE - PM_P_HDR - d || (uint32_t)prod >= c)) {
        *status = PM_I_SIDE_INTERIOR;
        return NULL;
    }
    *status = PM_I_SIDE_OK | (int)(d >> (PM_P_ALIGN_SHIFT - 2));
    _Atomic uint64_t *w = PM_P_SIDE_WORD(PM_P_SIDE_FIRST(e), prod >> 32);
    if (w == NULL)
        __builtin_unreachable(); /* a side mapping's word (callers test for NULL) */
    return w;
}

/* The side word of `block`, just returned by the pool allocator, or NULL
 * (a block without one: raw, class 0, an arena without side words).
 * pm_i_pool_side without the checks a block start passes. */
static inline _Atomic uint64_t *pm_i_pool_side_new(const void *block)
{
    uintptr_t a = (uintptr_t)block;
    pm_p_sentry e = pm_i_p_side_entry(a);
    if (PM_I_UNLIKELY(e == 0))
        return NULL;
    uintptr_t off = (a & PM_P_POOL_MASK) - PM_P_HDR;
    uint64_t prod = (uint64_t)off * pm_i_p_side_inv[(e & PM_P_SIDE_SIZE_BITS) >> PM_P_ALIGN_SHIFT];
    _Atomic uint64_t *w = PM_P_SIDE_WORD(PM_P_SIDE_FIRST(e), prod >> 32);
    if (w == NULL)
        __builtin_unreachable();
    return w;
}

/* The size class + 1 of the pool holding p, or 0 if p is not in a pool in
 * use. Reads only the tree, never the memory at p. */
static inline unsigned pm_i_p_lookup(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t top = (a >> PM_P_POOL_BITS) >> PM_P_TREE_LEAF_BITS; /* (0 on 32-bit) */
    if (PM_I_UNLIKELY(top >= ((uintptr_t)1 << PM_P_TREE_TOP_BITS)))
        return 0; /* above the 48-bit space */
    uintptr_t k = a >> PM_P_POOL_BITS;
    _Atomic uint8_t *leaf = atomic_load_explicit(&pm_i_p_tree[top], memory_order_acquire);
    if (PM_I_UNLIKELY(leaf == NULL))
        return 0;
    return atomic_load_explicit(&leaf[k & (PM_P_TREE_LEAF_SIZE - 1)], memory_order_relaxed);
}

/* ---------------------------------------------------------------------------
 * The fast paths, inline here so that the malloc override (src/override.c)
 * runs them without the indirect call through the domain table when the mem
 * domain's allocator is pm_i_pool_base itself. pool_malloc and pool_free in
 * modes/pool.c are these functions.
 */

/* This thread's cache (initial-exec TLS: one %fs-relative load). Never NULL:
 * until the thread has a cache, and after it exited, a shared empty cache
 * whose bins are empty with capacity 0, so both fast paths fall through to
 * the slow ones, which create it. */
extern __thread pm_tcache *pm_i_p_tc __attribute__((tls_model("initial-exec")));

/* The pool's locks. Between the pool's fork prepare handler (which takes
 * them all) and its parent or child handler, the thread calling fork()
 * holds every one of them, and pthread_atfork handlers registered before
 * the pool's run in that window (prepare handlers in reverse order,
 * parent and child handlers in order) and may allocate: that thread skips
 * the pool's locking there (pm_i_p_fork_held) instead of waiting for
 * itself. Other threads wait as always. */
extern __thread int pm_i_p_fork_held __attribute__((tls_model("initial-exec")));

static inline void pm_p_lock(pthread_mutex_t *m)
{
    if (PM_I_LIKELY(!pm_i_p_fork_held))
        pthread_mutex_lock(m);
}

static inline void pm_p_unlock(pthread_mutex_t *m)
{
    if (PM_I_LIKELY(!pm_i_p_fork_held))
        pthread_mutex_unlock(m);
}

/* Signal handlers. A handler that calls malloc or free (not
 * async-signal-safe, but common: printf, strdup, a logger) runs on the
 * thread it interrupted, maybe inside one of the pool's slow paths, with a
 * class or arena lock held or a bin of its cache half changed. Waiting for
 * the lock would hang the thread for ever (glibc's malloc mostly survives
 * such programs, and they must work here as there). So every slow path,
 * and everything else that takes the pool's locks for this thread, counts
 * itself in pm_i_p_busy; a slow path entered while it is non-zero is a
 * handler's (or the slow path's own recursion, through pthread_setspecific
 * say): its malloc goes to libc (a raw block, freed as raw blocks are) and
 * its free is deferred to the end of the interrupted slow path
 * (pm_i_p_leave). The fast paths stay as they are: the slow paths close
 * the bin they change (empty, capacity 0) until they are done with it, so
 * that a handler's fast path falls through to its slow path. What is left
 * is a signal between the load and the store of a fast path's bin update
 * (a few instructions), as with glibc's thread cache. The handler's free
 * there of a block made outside it is lost (a leak): pushed on the bin, it
 * is dropped by the interrupted pop's store of the head; if the bin was
 * full, its slow path gives back the older half, below a cut of the list
 * that the pop's store brings back (modes/pool.c: flush_bin_c), so never
 * the block being taken nor the ones after it, while the handler has
 * pushed fewer than half the bin (rounded up) less one blocks of the class
 * on top of them. */
extern __thread int pm_i_p_busy __attribute__((tls_model("initial-exec")));
/* The blocks a handler freed meanwhile, linked through their first word. */
extern __thread void *pm_i_p_deferred __attribute__((tls_model("initial-exec")));
void pm_i_p_drain_deferred(void);

static inline void pm_i_p_enter(void)
{
    pm_i_p_busy++;
    atomic_signal_fence(memory_order_seq_cst);
}

static inline void pm_i_p_leave(void)
{
    atomic_signal_fence(memory_order_seq_cst);
    if (--pm_i_p_busy == 0 &&
        PM_I_UNLIKELY(__atomic_load_n(&pm_i_p_deferred, __ATOMIC_RELAXED) != NULL))
        pm_i_p_drain_deferred();
}

/* A free block's first 16 bytes: its free-list link, then a check word
 * (the link's complement), written together by every path that links a
 * block. The debug hooks check the pair before following a link: a write
 * past the end of the block before (through its trailer) or into a freed
 * block's header would otherwise send the allocator to a wild address (a
 * crash inside it) or hand out one block twice. Any fill of both words
 * with one value (zeros, a byte pattern) fails the check. The plain paths
 * (pymalloc mode) only write it, as CPython reads its links unchecked; they
 * write it so that a block freed by them (an allocator set over the debug
 * hooks of one domain) passes the check of the hooks of another. */
static inline __attribute__((always_inline)) void pm_i_p_link_set(void *bp, const void *next)
{
    /* Two plain stores (volatile: gcc's vectorizer otherwise builds one
     * 16-byte store from two registers, five instructions instead of
     * three; a block's memory has no declared type, so the words' type
     * is the one stored). */
    volatile uint64_t *w = (volatile uint64_t *)bp;
    uint64_t link = (uint64_t)(uintptr_t)next;
    w[0] = link;
    w[1] = ~link;
}

/* The link of free block bp, or PM_P_LINK_BAD if its pair was damaged. */
#define PM_P_LINK_BAD ((void *)(uintptr_t)1)
static inline __attribute__((always_inline)) void *pm_i_p_link_checked(const void *bp)
{
    uint64_t link, check;
    __builtin_memcpy(&link, bp, 8);
    __builtin_memcpy(&check, (const unsigned char *)bp + 8, 8);
    if (PM_I_UNLIKELY((link ^ check) != ~(uint64_t)0))
        return PM_P_LINK_BAD;
    return (void *)(uintptr_t)link;
}

/* The header of the pool at `pool` (class idx; PM_P_NCLASSES: an empty
 * pool) was found damaged while the debug hooks wrap the pools: they
 * report it, with the block whose overflow did it if they find one, and
 * abort (modes/debug.c). Called with the pool's locks held. */
__attribute__((noreturn)) void pm_i_debug_pool_header_damaged(const void *pool, unsigned idx);

/* A damaged link met by the pool's slow paths (while links are checked:
 * side words on): the first free block this thread found with one, until
 * the debug hooks report it (pm_i_debug_pool_links_report; its pool stays in
 * use, so the tree keeps its class). The pool leaks that block and the
 * blocks after it in its list. */
extern __thread void *pm_i_p_bad_link __attribute__((tls_model("initial-exec")));

/* The slow paths (modes/pool.c): malloc of a size the fast path does not
 * serve or with an empty bin; free with a full bin (idx: the class); free
 * of a block that is not in a pool (libc's, counted). */
void *pm_i_p_malloc_slow(void *ctx, size_t n);
void pm_i_p_free_slow(void *ctx, void *p, unsigned idx);
void pm_i_p_free_other(void *p);

/* A damaged link in this thread's bin of class idx (the pool's slow path
 * does the same): note block bp for the debug hooks' report
 * (pm_i_p_bad_link) and empty the bin; its blocks stay counted as handed
 * out (leaked). */
void pm_i_p_link_damaged(void *bp, unsigned idx);

/* A block of n bytes from this thread's cache, or NULL when the fast path
 * cannot serve n (then call pm_i_p_malloc_slow). `checked` (the debug
 * hooks): the popped block's link is checked before it becomes the bin's
 * head; damaged, the bin is untouched and the block is returned tagged,
 * PM_P_POP_BAD(p) (p + 1: blocks are 16-byte aligned), for the caller to
 * pass to pm_i_p_pop_damaged, which notes it and empties the bin, then
 * take its slow path, after which the hooks report it. (The debug hooks'
 * malloc calls out only in tail position, and needs no stack frame.) */
#define PM_P_POP_BAD(p) ((void *)((uintptr_t)(p) + 1))
#define PM_P_POP_IS_BAD(q) (((uintptr_t)(q) & 1) != 0)
/* pm_i_p_pop (described above, defined below) with the damaged link's
 * block apart: NULL with *bad set to it, the bin untouched (*bad is left
 * alone otherwise). Inlined into its caller, the damage is a branch of its
 * own there, and a block served needs no test of a tag (dbg_malloc's fast
 * path: 4 instructions a pair fewer, and no saved register). */
static inline __attribute__((always_inline)) void *pm_i_p_pop_split(size_t n, int checked,
                                                                      void **bad)
{
    /* v = class + 1. n == 0 gives v - 1 == SIZE_MAX, n > 544 gives
     * v - 1 >= 34, and n > SIZE_MAX - 15 wraps to v == 0: not here. The
     * bins of the two wide classes (513..544) are empty unless
     * pm_i_p_small_max() allows them, so no global is read here. */
    size_t v = (n + PM_P_ALIGN - 1) >> PM_P_ALIGN_SHIFT;
    if (PM_I_LIKELY(v - 1 < PM_P_NCLASSES)) {
        struct pm_p_bin *b = &pm_i_p_tc->bin[v];
        void *p = b->head;
        if (PM_I_LIKELY(p != NULL)) {
            void *next = checked ? pm_i_p_link_checked(p) : *(void **)p;
            if (checked && PM_I_UNLIKELY(next == PM_P_LINK_BAD)) {
                *bad = p;
                return NULL;
            }
            b->head = next;
            atomic_store_explicit(&b->n, atomic_load_explicit(&b->n, memory_order_relaxed) - 1,
                                  memory_order_relaxed);
            return p;
        }
    }
    return NULL;
}

static inline __attribute__((always_inline)) void *pm_i_p_pop(size_t n, int checked)
{
    void *bad = NULL;
    void *p = pm_i_p_pop_split(n, checked, &bad);
    return checked && PM_I_UNLIKELY(bad != NULL) ? PM_P_POP_BAD(bad) : p;
}

/* q, a tagged block pm_i_p_pop(n, 1) returned: pm_i_p_link_damaged. */
static inline void pm_i_p_pop_damaged(void *q, size_t n)
{
    pm_i_p_link_damaged((void *)((uintptr_t)q - 1), (unsigned)((n - 1) >> PM_P_ALIGN_SHIFT));
}

/* The header hdr (a copy) of the pool at `pool` has a class in range and
 * its check word (the statistics read headers too). */
int pm_i_p_hdr_usable(const pm_pool *hdr, const void *pool);

/* The pool allocator's malloc with its free-list links checked (pool.c),
 * for paths that share the thread caches with the debug hooks. */
void *pm_i_pool_malloc_checked(void *ctx, size_t n);

/* Free pool block p of class v - 1: onto this thread's cache, or the slow
 * path when the bin is full (or there is no cache): `slow`, called as
 * pm_i_p_free_slow is (the debug hooks pass one that reports a damaged
 * link the flush met). The debug decorator
 * calls it for a block whose live side word it has just claimed (which
 * implies a pool block in use) with v from the side tree: pool_free
 * without the ownership lookup. */
static inline __attribute__((always_inline)) void
pm_i_p_free_block_via(void *p, unsigned v, void (*slow)(void *ctx, void *p, unsigned idx),
                      void *ctx)
{
    struct pm_p_bin *b = &pm_i_p_tc->bin[v];
    uint32_t k = atomic_load_explicit(&b->n, memory_order_relaxed);
    if (PM_I_LIKELY(k < b->lim)) {
        pm_i_p_link_set(p, b->head);
        b->head = p;
        atomic_store_explicit(&b->n, k + 1, memory_order_relaxed);
        return;
    }
    slow(ctx, p, v - 1); /* a tail call: the fast path needs no frame */
}

static inline __attribute__((always_inline)) void pm_i_p_free_block(void *p, unsigned v)
{
    pm_i_p_free_block_via(p, v, pm_i_p_free_slow, NULL);
}

static inline __attribute__((always_inline)) void pm_i_p_free(void *p)
{
    unsigned v = pm_i_p_lookup(p); /* class + 1, or 0: not ours */
    if (PM_I_LIKELY(v != 0)) {
        pm_i_p_free_block(p, v);
        return;
    }
    pm_i_p_free_other(p);
}

/* Valgrind requests, made only when vg (running under memcheck) is set.
 * The paths that know they are not under memcheck (the thread caches, off
 * there) pass a constant 0 and the requests drop out; the others pass
 * pm_i_p_vg, which is what PM_P_VG and the macros without _VG do. */
#define PM_P_VG_IF(vg, stmt)                                                         \
    do {                                                                             \
        if (PM_I_UNLIKELY(vg)) {                                                     \
            stmt;                                                                    \
        }                                                                            \
    } while (0)
#define PM_P_VG(stmt) PM_P_VG_IF(pm_i_p_vg, stmt)

/* Open a pool header for the allocator's own access, close it. */
#define PM_P_HDR_OPEN_VG(pool, vg) PM_P_VG_IF(vg, VALGRIND_MAKE_MEM_DEFINED((pool), PM_P_HDR))
#define PM_P_HDR_CLOSE_VG(pool, vg) PM_P_VG_IF(vg, VALGRIND_MAKE_MEM_NOACCESS((pool), PM_P_HDR))
#define PM_P_HDR_OPEN(pool) PM_P_HDR_OPEN_VG(pool, pm_i_p_vg)
#define PM_P_HDR_CLOSE(pool) PM_P_HDR_CLOSE_VG(pool, pm_i_p_vg)

/* Read a free-list link (the first word of a free block). */
static inline __attribute__((always_inline)) uint8_t *pm_i_p_link_read_vg(uint8_t *bp, int vg)
{
    PM_P_VG_IF(vg, VALGRIND_MAKE_MEM_DEFINED(bp, sizeof(uint8_t *)));
    uint8_t *next = *(uint8_t **)bp;
    PM_P_VG_IF(vg, VALGRIND_MAKE_MEM_NOACCESS(bp, sizeof(uint8_t *)));
    return next;
}

static inline uint8_t *pm_i_p_link_read(uint8_t *bp) { return pm_i_p_link_read_vg(bp, pm_i_p_vg); }

/* Lock/unlock everything (statistics, validator, fork):
 * every class lock in order, the arena lock, the cache registry lock. */
void pm_i_p_lock_all(void);
void pm_i_p_unlock_all(void);

#endif /* PM_POOL_H */
