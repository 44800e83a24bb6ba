/*
 * modes/debug_registry.h - the registry of debug blocks: data address ->
 * {size, serial, API, offset of the data in the underlying block, state}.
 *
 * Only for blocks without a side word (modes/debug.c): libc blocks
 * (malloc_debug, the raw domain, blocks of more than 512 bytes, aligned
 * blocks) and pool blocks of arenas made before the debug hooks asked for
 * side words. Pool blocks of pymalloc_debug never come here: their record is
 * a word kept by the pool module, which never forgets a freed block while
 * its memory is not reused.
 *
 * Why: CPython's hooks trust the pointer they are given and read its header,
 * so a stack address, an interior pointer or a block already returned to the
 * allocator is read as if it were a block (undefined behaviour, and at best
 * reported as a "bad ID" or "bad pad byte"). With the registry the debug
 * layer knows, before it reads one byte, whether a pointer is a live block of
 * ours, a block freed recently (a double free), or nothing of ours (an
 * invalid pointer); and it knows each block's true size, so a damaged size
 * field can neither hide an overflow nor send the tail check to a wild
 * address.
 *
 * How: 64 stripes, chosen by a hash of the address (computed once per
 * operation and passed to each step), each an open-addressing
 * hash table with linear probing in mmap'd memory (never malloc: this runs
 * inside malloc) behind its own spinlock. A table grows (rehashes into a new
 * mapping) when three quarters of its slots are used; freed records and
 * holes are counted as used until a rehash drops the holes.
 *
 * Stripes by page: the stripe is chosen by a hash of the address's 4 KiB
 * page (the slot by a hash of the whole address), so that the blocks one
 * thread allocates and frees one after the other, which glibc carves from
 * the same pages of that thread's arena, take the same stripe's lock and
 * lines, and two threads seldom touch one stripe (with stripes by address,
 * every operation of two busy threads moved a stripe's lines between the
 * cores: see bench/README.md).
 *
 * Freed blocks: free turns a live record into a freed one and puts its
 * address in the stripe's FIFO of the last PM_I_REG_RING freed addresses.
 * When the FIFO is full the oldest freed record is forgotten (it becomes a
 * hole), so memory stays bounded; a new block at the same address simply
 * replaces the freed record. An address already in the FIFO (freed, reused
 * by a new block, freed again: the temporaries of a loop) keeps its place
 * there instead of taking a new one (its record remembers the place), so
 * the churn of a few addresses cannot push the other freed blocks of their
 * page out. A double free is therefore recognised while the block is among
 * the last 64 x 256 = 16,384 distinct addresses freed (on average) and its
 * address has not been reused.
 *
 * A freed block whose memory the quarantine holds (debug_quarantine.h) is
 * marked HELD and does not take a place in the FIFO: its record stays (so
 * its second free is a double free however many blocks were freed since)
 * until the quarantine lets the block go (pm_i_reg_release: then it takes
 * a place in the FIFO, as a block freed without the quarantine), and the
 * FIFO never forgets it meanwhile.
 *
 * Entry (24 bytes): key = the data address, inverted (0: empty slot, 1:
 * hole; see key_of), size (low 54 bits) | HELD (bit 54) | the record's
 * place in the FIFO + 1 (top 9 bits; 0: none), and
 * one word: serial (low 48 bits) | API (8 bits) | state (2) | log2 offset (6).
 */
#ifndef PM_DEBUG_REGISTRY_H
#define PM_DEBUG_REGISTRY_H

/* Included by modes/debug.c only: one translation unit, so that the hot
 * paths (lock, lookup, insert, mark freed) inline into malloc and free. */
#include "../src/pm_debug.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NSTRIPES 64
#define PM_I_REG_RING 256
#define MIN_CAP 256 /* slots in a stripe's first table */

#define KEY_EMPTY ((uintptr_t)0)
#define KEY_HOLE ((uintptr_t)1)

/* The key of data address `data`, and the address of a key: its bits
 * inverted. The tables and FIFOs hold no pointer into any block, so that
 * valgrind memcheck's leak check, which scans them as it scans all memory,
 * reports a block the program lost as "definitely lost", as with libc's
 * malloc, instead of "possibly lost" (held 16 bytes in, by the registry).
 * A user-space address inverted points nowhere, and is never 0 or 1. */
static inline uintptr_t key_of(uintptr_t data) { return ~data; }

struct pm_i_reg_entry {
    uintptr_t key; /* key_of(the data address) */
    uint64_t size;
    uint64_t meta;
};
typedef struct pm_i_reg_entry entry;

typedef struct freed_rec {
    uintptr_t key; /* key_of(the data address) */
    uint64_t serial; /* low 48 bits */
    size_t slot;     /* where the record was (valid unless rehashed since) */
} freed_rec;

typedef struct stripe {
    _Atomic int lock;
    entry *tab;
    size_t mask;  /* capacity - 1, capacity a power of two (0 if no table) */
    size_t used;  /* slots that are not empty (records and holes) */
    size_t count; /* records (live and freed) */
    unsigned ring_head, ring_len;
    freed_rec *ring; /* s's FIFO of freed records: PM_I_REG_RING of them */
} __attribute__((aligned(64))) stripe;

/* The stripes' locks and counts, a cache line each, fill one page; their
 * FIFOs, 6 KiB each, are apart. A process that frees nothing into the
 * registry never touches the FIFOs, and the start of every process (each
 * stripe's table set at install) and the check of the heap at exit (each
 * stripe locked) touch one page of them, not 64: a page fault costs
 * microseconds, and a test suite runs thousands of processes. */
static freed_rec stripe_rings[NSTRIPES][PM_I_REG_RING];
#define RING1(i) {.ring = stripe_rings[i]}
#define RING4(i) RING1(i), RING1(i + 1), RING1(i + 2), RING1(i + 3)
#define RING16(i) RING4(i), RING4(i + 4), RING4(i + 8), RING4(i + 12)
_Static_assert(NSTRIPES == 64, "one RING1 per stripe");
_Static_assert(sizeof(stripe) == 64, "the stripes' headers fill one page");
static stripe stripes[NSTRIPES] = {RING16(0), RING16(16), RING16(32), RING16(48)};

/* One hash per address, computed once per operation: its top 6 bits pick
 * the stripe (a multiplicative hash of the 4 KiB page), bits 20..57 the
 * first slot (one of the whole address). */
#define STRIPE_SHIFT 58 /* 64 stripes */
#define HASH_STRIPE_BITS (~((UINT64_C(1) << STRIPE_SHIFT) - 1))
_Static_assert(NSTRIPES == 1 << (64 - STRIPE_SHIFT), "the hash's top bits pick the stripe");
static inline uint64_t pm_i_reg_hash(uintptr_t key)
{
    uint64_t by_address = ((uint64_t)key >> 4) * UINT64_C(0x9E3779B97F4A7C15);
    uint64_t by_page = ((uint64_t)key >> 12) * UINT64_C(0x9E3779B97F4A7C15);
    return (by_address & ~HASH_STRIPE_BITS) | (by_page & HASH_STRIPE_BITS);
}

/* The size word: the block's size (below 2^54: address spaces are below
 * 2^53), HELD (bit 54: a freed block whose memory the quarantine holds,
 * debug_quarantine.h), and its record's place in the FIFO of freed
 * addresses + 1 (top 9 bits, 0: none). */
#define PLACE_SHIFT 55
#define HELD_BIT (UINT64_C(1) << 54)
#define SIZE_BITS (HELD_BIT - 1)
_Static_assert(PM_I_REG_RING < 511, "a FIFO place + 1 fits 9 bits");

#define STRIPE_OF(h) ((size_t)((h) >> STRIPE_SHIFT))
#define SLOT_OF(h, mask) ((size_t)((h) >> 20) & (mask))

static inline uint64_t pack(uint64_t serial, char api, int state, size_t offset)
{
    unsigned lg = (unsigned)__builtin_ctzll((unsigned long long)offset);
    return (serial & PM_I_SERIAL_MASK) | ((uint64_t)(unsigned char)api << 48) |
           ((uint64_t)state << 56) | ((uint64_t)lg << 58);
}

static inline int meta_state(uint64_t m) { return (int)((m >> 56) & 3); }

static inline void unpack(const entry *e, pm_i_reg_info *info)
{
    info->size = (size_t)(e->size & SIZE_BITS);
    info->serial = e->meta & PM_I_SERIAL_MASK;
    info->api = (char)((e->meta >> 48) & 0xFF);
    info->state = meta_state(e->meta);
    info->offset = (size_t)1 << (e->meta >> 58);
    info->held = (e->size & HELD_BIT) != 0;
}

/* ---------------------------------------------------------------------------
 * Locks: test-and-test-and-set, yielding when contended (two cores).
 */

/* Set in the thread calling fork() between the registry's prepare handler
 * (which takes every stripe's lock) and its parent or child handler: that
 * thread skips the stripe locks there, so that an atfork handler registered
 * before ours (run inside that window) can allocate (see pm_p_lock in
 * modes/pool.h). */
static __thread int reg_fork_held __attribute__((tls_model("initial-exec")));

/* Take s's lock, trying at most `limit` times (< 0: until it is had); 1 if
 * taken. */
static inline int spin_lock_stripe(stripe *s, int limit)
{
    for (int spins = 0; limit < 0 || spins < limit; spins++) {
        if (pm_i_spin_try(&s->lock))
            return 1;
        if (spins > 64)
            sched_yield();
    }
    return 0;
}

static inline void lock_stripe(stripe *s)
{
    if (PM_I_UNLIKELY(reg_fork_held))
        return;
    spin_lock_stripe(s, -1);
}

static inline void *pm_i_reg_lock(uint64_t h)
{
    stripe *s = &stripes[STRIPE_OF(h)];
    lock_stripe(s);
    return s;
}

/* The stripe of hash h (pm_i_reg_lock's result), not locked. */
static inline void *pm_i_reg_stripe(uint64_t h) { return &stripes[STRIPE_OF(h)]; }

static inline void pm_i_reg_unlock(void *st)
{
    stripe *s = st;
    if (PM_I_UNLIKELY(reg_fork_held))
        return;
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

static void pm_i_reg_fork_prepare(void)
{
    for (int i = 0; i < NSTRIPES; i++)
        lock_stripe(&stripes[i]);
    reg_fork_held = 1;
}

/* ---------------------------------------------------------------------------
 * The table of one stripe (its lock held).
 */

/* Stripes short of room, one bit each: their table could not grow (no
 * memory), so a new record there can only take the room left, or be made
 * by forgetting a freed block. A realloc then moves its block by malloc +
 * copy + free, which can fail cleanly, instead of recording the block's
 * new address after the allocator below has already moved it.
 *
 * A realloc that goes on reserves a record first (pm_i_reg_reserve): it
 * counts itself in reg_reserved, then looks at reg_full; an insert of a
 * new block in a short stripe sets the stripe's bit, then reads
 * reg_reserved, and leaves that many slots free (it fails, as when the
 * stripe is full). Both in sequentially consistent order: either the
 * realloc sees the bit and moves by copy, or the insert sees the realloc
 * and leaves it a slot, wherever its new address falls. Before
 * 2026-12-07 the realloc looked at the bits alone, and another thread's
 * inserts could take the last slot meanwhile: the realloc, its old block
 * already gone, aborted ("out of memory for the block registry"). (Beyond
 * a quarter of a stripe's first table, 64 reallocs at once into one
 * stripe whose table cannot grow, some could still find none.) */
static _Atomic uint64_t reg_full;
static _Atomic long reg_reserved;
/* This thread's part of it: a fork child's count is its forking thread's
 * (the others' reallocs never end there). */
static __thread int reg_reserved_here __attribute__((tls_model("initial-exec")));
_Static_assert(NSTRIPES <= 64, "a bit per stripe");

static inline void set_full(stripe *s, int full)
{
    uint64_t bit = UINT64_C(1) << (s - stripes);
    if (full)
        atomic_fetch_or_explicit(&reg_full, bit, memory_order_seq_cst);
    else if (PM_I_UNLIKELY(atomic_load_explicit(&reg_full, memory_order_relaxed) & bit))
        atomic_fetch_and_explicit(&reg_full, ~bit, memory_order_relaxed);
}

/* 1: a record is kept for a realloc's new block wherever it falls (give it
 * back with pm_i_reg_unreserve once the block is recorded); 0: the
 * registry is short: move the block by copy. */
static inline int pm_i_reg_reserve(void)
{
    reg_reserved_here++;
    atomic_fetch_add_explicit(&reg_reserved, 1, memory_order_seq_cst);
    if (PM_I_LIKELY(atomic_load_explicit(&reg_full, memory_order_seq_cst) == 0))
        return 1;
    atomic_fetch_sub_explicit(&reg_reserved, 1, memory_order_relaxed);
    reg_reserved_here--;
    return 0;
}

static inline void pm_i_reg_unreserve(void)
{
    atomic_fetch_sub_explicit(&reg_reserved, 1, memory_order_relaxed);
    reg_reserved_here--;
}

/* slot_of in a table without an empty slot (memory ran out as it filled):
 * the probe ends after every slot. */
__attribute__((noinline)) static entry *slot_of_full(stripe *s, uint64_t h, uintptr_t key)
{
    size_t i = SLOT_OF(h, s->mask);
    for (size_t k = 0; k <= s->mask; k++, i = (i + 1) & s->mask)
        if (s->tab[i].key == key)
            return &s->tab[i];
    return NULL;
}

static inline entry *slot_of(stripe *s, uint64_t h, uintptr_t key)
{
    if (s->tab == NULL || PM_I_UNLIKELY(key <= KEY_HOLE))
        return NULL; /* 0 and 1 mark empty slots and holes: never a key */
    if (PM_I_UNLIKELY(s->used > s->mask))
        return slot_of_full(s, h, key);
    size_t i = SLOT_OF(h, s->mask);
    for (;;) {
        entry *e = &s->tab[i];
        if (e->key == key)
            return e;
        if (e->key == KEY_EMPTY)
            return NULL;
        i = (i + 1) & s->mask;
    }
}

static int rehash(stripe *s)
{
    size_t cap = MIN_CAP;
    while (cap < (s->count + 1) * 2)
        cap *= 2;
    void *mem = mmap(NULL, cap * sizeof(entry), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -1;
    entry *tab = mem;
    size_t mask = cap - 1;
    if (s->tab != NULL) {
        for (size_t i = 0; i <= s->mask; i++) {
            entry *e = &s->tab[i];
            if (e->key == KEY_EMPTY || e->key == KEY_HOLE)
                continue;
            size_t j = SLOT_OF(pm_i_reg_hash(key_of(e->key)), mask);
            while (tab[j].key != KEY_EMPTY)
                j = (j + 1) & mask;
            tab[j] = *e;
        }
        munmap(s->tab, (s->mask + 1) * sizeof(entry));
    }
    s->tab = tab;
    s->mask = mask;
    s->used = s->count;
    set_full(s, 0);
    return 0;
}

static inline pm_i_reg_entry *pm_i_reg_lookup(void *st, uint64_t h, uintptr_t data)
{
    return (pm_i_reg_entry *)slot_of(st, h, key_of(data));
}

static inline void pm_i_reg_get(const pm_i_reg_entry *re, pm_i_reg_info *info)
{
    unpack((const entry *)re, info);
}

static inline void pm_i_reg_find(void *st, uint64_t h, uintptr_t data, pm_i_reg_info *info)
{
    entry *e = slot_of(st, h, key_of(data));
    if (e == NULL) {
        memset(info, 0, sizeof *info);
        info->state = PM_I_REG_EMPTY;
        return;
    }
    unpack(e, info);
}

static inline void make_hole(stripe *s, entry *e)
{
    e->key = KEY_HOLE;
    e->meta = 0;
    s->count--;
    /* Short no longer once a quarter of the table is free again: a
     * realloc that then sees the bit clear has room (see reg_full). Not at
     * the first hole: that one may be the slot a realloc under way was
     * left, and a second realloc, seeing the bit clear, would reserve the
     * same slot (both then found none: abort). */
    if ((s->count + 1) * 4 <= (s->mask + 1) * 3)
        set_full(s, 0);
}

/* The slot for key `key` in s's table, claimed: its own record if it
 * has one (a freed block at the same address), else the first hole on its
 * probe sequence, else the empty slot that ends it (even the table's last:
 * probes then end after every slot, see slot_of). NULL: no room. */
static inline entry *claim_slot(stripe *s, uint64_t h, uintptr_t key)
{
    entry *hole = NULL, *e = NULL;
    size_t i = SLOT_OF(h, s->mask);
    for (size_t k = 0; k <= s->mask; k++, i = (i + 1) & s->mask) {
        entry *t = &s->tab[i];
        if (t->key == key)
            return t;
        if (t->key == KEY_HOLE && hole == NULL)
            hole = t;
        if (t->key == KEY_EMPTY) {
            e = t;
            break;
        }
    }
    if (hole != NULL) {
        e = hole;
    } else if (e != NULL) {
        s->used++;
    } else {
        return NULL; /* every slot a record */
    }
    s->count++;
    e->key = key;
    e->meta = 0;
    e->size = 0;
    return e;
}

/* The freed block of FIFO entry `old` is forgotten: its record becomes a
 * hole, unless its address was reused since, or the quarantine holds its
 * memory (the record stays until the quarantine lets the block go:
 * pm_i_reg_release). */
static void forget_freed(stripe *s, freed_rec old)
{
    entry *o = old.slot <= s->mask && s->tab[old.slot].key == old.key
                   ? &s->tab[old.slot]
                   : slot_of(s, pm_i_reg_hash(key_of(old.key)), old.key); /* rehashed */
    if (o != NULL && meta_state(o->meta) == PM_I_REG_FREED &&
        (o->meta & PM_I_SERIAL_MASK) == old.serial) {
        if (o->size & HELD_BIT)
            o->size &= ~(UINT64_C(0x1FF) << PLACE_SHIFT); /* out of the FIFO */
        else
            make_hole(s, o);
    }
}

/* Forget the oldest freed block of s's FIFO, and its entry there. 0 if the
 * FIFO is empty. */
static int forget_oldest_freed(stripe *s)
{
    if (s->ring_len == 0)
        return 0;
    forget_freed(s, s->ring[s->ring_head]);
    s->ring[s->ring_head].key = 0; /* no record finds its place here again */
    s->ring_head = (s->ring_head + 1) % PM_I_REG_RING;
    s->ring_len--;
    return 1;
}

/* Room for a new block's record in stripe s, whose table could not grow:
 * the stripe is marked short, then as many slots as reallocs under way
 * reserved are left free, freed blocks forgotten to make them (see
 * reg_full). 0, or -1: no room (the record of a block already there, put
 * back, always has its slot). */
static __attribute__((noinline, cold)) int room_when_short(stripe *s, uint64_t h, uintptr_t key)
{
    set_full(s, 1);
    long r = atomic_load_explicit(&reg_reserved, memory_order_seq_cst);
    if (r <= 0 || slot_of(s, h, key) != NULL)
        return 0;
    while (s->count + (size_t)r > s->mask) /* fewer than r slots free after this one */
        if (!forget_oldest_freed(s))
            return -1;
    return 0;
}

/* Record a block at `data`. The table grows at three quarters full; when
 * it cannot (no memory), the room left is used, to the last slot (less
 * the slots that reallocs under way reserved, unless this is one of them:
 * `reserved`), then the oldest freed blocks are forgotten to make holes.
 * -1 only when the stripe has no table, or a full one of live blocks (or
 * reserved slots), and no memory: so the record of a block that is only
 * being put back (a realloc whose allocator failed) always finds its own
 * slot. */
static inline int pm_i_reg_insert(void *st, uint64_t h, uintptr_t data,
                                  const pm_i_reg_info *info, int reserved)
{
    stripe *s = st;
    if (s->tab == NULL || (s->used + 1) * 4 > (s->mask + 1) * 3) {
        if (rehash(s) != 0) {
            if (s->tab == NULL) {
                set_full(s, 1);
                return -1;
            }
            if (reserved)
                set_full(s, 1); /* (else, its bit clear, reallocs that come
                                 * after it could drain the stripe to its
                                 * last slot: a bit clear must mean room) */
            else if (room_when_short(s, h, key_of(data)) != 0)
                return -1;
        }
    }
    entry *e;
    while ((e = claim_slot(s, h, key_of(data))) == NULL) {
        if (!forget_oldest_freed(s)) {
            set_full(s, 1);
            return -1;
        }
    }
    if (PM_I_UNLIKELY(s->count > s->mask))
        set_full(s, 1);
    /* A freed record replaced: its place in the FIFO stays with the address. */
    uint64_t place = e->meta != 0 ? e->size & ~(SIZE_BITS | HELD_BIT) : 0;
    e->size = ((uint64_t)info->size & SIZE_BITS) | place;
    e->meta = pack(info->serial, info->api, PM_I_REG_LIVE, info->offset);
    return 0;
}

/* A big table (SHRINK_MIN slots or more) 16 times the size its records
 * need (a peak of live blocks, freed since, their records forgotten by the
 * FIFO) is rebuilt at their size, at most half full as after a growth. In
 * malloc_debug, a peak of 1,000,000 blocks of 24 bytes, all freed, left
 * 49.5 MB of tables for good. Small tables are left alone (64 stripes of
 * 4,096 slots are 6 MiB): a churn whose records come and go around a
 * small table's size would rebuild it back and forth. A growth comes only
 * after the records have grown 8 times over, a shrink after most of the
 * table's records have gone, so each rebuild, which reads the old table
 * once, is paid for by as many frees. Looked at where records are
 * forgotten (fifo_put, its FIFO full), not on the hot unlock. */
#define SHRINK_MIN 4096
static __attribute__((noinline, cold)) void shrink(stripe *s) { (void)rehash(s); }

/* Freed record e (not held) of stripe s (locked) takes its place in the
 * FIFO of freed addresses: the one its address has there already, or the
 * newest, the oldest forgotten if the FIFO is full. */
static void fifo_put(stripe *s, entry *e)
{
    freed_rec rec = {e->key, e->meta & PM_I_SERIAL_MASK, (size_t)(e - s->tab)};
    uint64_t place = e->size >> PLACE_SHIFT;
    if (place != 0 && s->ring[place - 1].key == e->key) {
        s->ring[place - 1] = rec; /* the address keeps its place */
        return;
    }
    unsigned at = (s->ring_head + s->ring_len) % PM_I_REG_RING; /* ring_head if full */
    e->size = (e->size & SIZE_BITS) | ((uint64_t)(at + 1) << PLACE_SHIFT);
    if (s->ring_len == PM_I_REG_RING) {
        /* Forget the oldest freed block; its entry takes the new one. */
        forget_freed(s, s->ring[s->ring_head]);
        s->ring[s->ring_head] = rec;
        s->ring_head = (s->ring_head + 1) % PM_I_REG_RING;
        /* The record the next put forgets, asked for now: this stripe's
         * next free comes after dozens of others, and the record was last
         * touched hundreds before (a prefetch never faults: the slot of an
         * older table, past this one, costs nothing). */
        __builtin_prefetch((const void *)((uintptr_t)s->tab +
                                          s->ring[s->ring_head].slot * sizeof(entry)));
        /* (e moves: the callers keep it only as a hint, at_hint) */
        if (PM_I_UNLIKELY(s->mask >= SHRINK_MIN - 1) && s->count * 16 < s->mask)
            shrink(s);
    } else {
        s->ring[(s->ring_head + s->ring_len) % PM_I_REG_RING] = rec;
        s->ring_len++;
    }
}

/* Record re (live, its stripe st locked) as freed; held: the quarantine
 * keeps its memory (the record stays until pm_i_reg_release). */
static inline void pm_i_reg_mark_freed_held(void *st, pm_i_reg_entry *re, int held)
{
    stripe *s = st;
    entry *e = (entry *)re;
    e->meta = (e->meta & ~((uint64_t)3 << 56)) | ((uint64_t)PM_I_REG_FREED << 56);
    if (held) {
        /* The quarantine keeps the record; not in the FIFO, whose turn
         * would read it again when it is cold (pm_i_reg_release puts it
         * there when the quarantine lets the block go). */
        e->size |= HELD_BIT;
        return;
    }
    fifo_put(s, e);
}

static inline void pm_i_reg_mark_freed(void *st, pm_i_reg_entry *re)
{
    pm_i_reg_mark_freed_held(st, re, 0);
}

/* The record of key `key` in s's table (locked), if it is where `hint`
 * points: the address its record had when the block came into the
 * quarantine, the slot of another table since a rehash (then NULL: the
 * caller looks it up), never dereferenced unless it is a slot of the table
 * now. */
static inline entry *at_hint(stripe *s, const void *hint, uintptr_t key)
{
    uintptr_t off = (uintptr_t)hint - (uintptr_t)s->tab;
    if (s->tab == NULL || off > s->mask * sizeof(entry) || off % sizeof(entry) != 0)
        return NULL;
    entry *e = &s->tab[off / sizeof(entry)];
    return e->key == key ? e : NULL;
}

/* The quarantine lets freed block `data` (serial: its low 48 bits) go:
 * its record is no longer held, and takes a place in the FIFO of freed
 * addresses, as a block freed without the quarantine does: a second free
 * is still a double free until the address is used again or the FIFO
 * forgets it (the record was forgotten at once: such a free was an
 * "invalid pointer" with the quarantine on, a double free without it). */
static void pm_i_reg_release(uintptr_t data, uint64_t serial, const void *hint)
{
    uint64_t h = pm_i_reg_hash(data);
    stripe *s = pm_i_reg_lock(h);
    entry *e = at_hint(s, hint, key_of(data));
    if (e == NULL)
        e = slot_of(s, h, key_of(data));
    if (e != NULL && meta_state(e->meta) == PM_I_REG_FREED &&
        (e->meta & PM_I_SERIAL_MASK) == (serial & PM_I_SERIAL_MASK) && (e->size & HELD_BIT)) {
        e->size &= ~HELD_BIT;
        fifo_put(s, e);
    }
    pm_i_reg_unlock(s);
}

static inline void pm_i_reg_remove(void *st, pm_i_reg_entry *re)
{
    make_hole(st, (entry *)re);
}

/* Give every stripe without one its first table (the debug hooks call it
 * when they are installed, before the first allocation), best effort: a
 * stripe that has a table can always put a block's record back, and can
 * record new blocks while memory is short, to its last slot. One mapping,
 * a slice per stripe of whole pages (rehash unmaps a first table by its
 * size, which munmap rounds up to the slice). A stripe whose lock is taken
 * is skipped, never waited for: this runs under the mode lock, and fork()
 * takes the stripes' locks before the mode lock. */
static void pm_i_reg_prepare(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    size_t slice = (MIN_CAP * sizeof(entry) + page - 1) / page * page;
    unsigned char *mem = mmap(NULL, (size_t)NSTRIPES * slice, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        for (int i = 0; i < NSTRIPES; i++)
            set_full(&stripes[i], 1); /* (see below) */
        return;
    }
    for (int i = 0; i < NSTRIPES; i++) {
        stripe *s = &stripes[i];
        unsigned char *mine = mem + (size_t)i * slice;
        /* A stripe whose lock is taken (another thread giving it a table,
         * or failing to) is marked short, as every stripe is without the
         * mapping: so that a realloc never counts on a stripe that may
         * have no table (see reg_full); the bit goes at its first hole
         * or growth. */
        if (reg_fork_held || !spin_lock_stripe(s, 1)) {
            set_full(s, 1);
        } else {
            int used = s->tab == NULL;
            if (used) {
                s->tab = (entry *)mine;
                s->mask = MIN_CAP - 1;
                s->used = s->count;
            }
            atomic_store_explicit(&s->lock, 0, memory_order_release);
            if (used)
                continue;
        }
        munmap(mine, slice);
    }
}

/* Call fn on every live record, a stripe at a time with its lock held (fn
 * may read the block: it cannot be freed meanwhile); `held`: a stripe whose
 * lock this thread holds already (pm_i_reg_lock's result, or NULL). For the check of the
 * heap at abort, which runs in a SIGABRT handler: a stripe whose lock stays
 * taken (by a thread that is stuck, or by this one, interrupted) is skipped
 * after a bounded wait and counted in the return value. Never allocates. */
/* The stripe whose lock this thread holds while it looks a block up (set
 * around the error paths' classify and the scans' callbacks): a search of
 * the whole registry made from there must not wait for it. */
static __thread void *reg_held_here __attribute__((tls_model("initial-exec")));

static int pm_i_reg_each_live_but(void (*fn)(uintptr_t data, const pm_i_reg_info *in, void *arg),
                                  void *arg, void *held)
{
    int skipped = 0;
    void *outer = reg_held_here;
    for (int i = 0; i < NSTRIPES; i++) {
        stripe *s = &stripes[i];
        /* this thread holds it (or them all), or a bounded wait */
        if (!reg_fork_held && s != held && !spin_lock_stripe(s, 2000)) {
            skipped++;
            continue;
        }
        /* (a stripe without records: its table's pages are not read, so
         * that a check of a heap with few blocks does not fault them in) */
        for (size_t k = 0; s->tab != NULL && s->count != 0 && k <= s->mask; k++) {
            const entry *e = &s->tab[k];
            if (e->key <= KEY_HOLE || meta_state(e->meta) != PM_I_REG_LIVE)
                continue;
            pm_i_reg_info in;
            unpack(e, &in);
            reg_held_here = s;
            fn(key_of(e->key), &in, arg);
            reg_held_here = outer;
        }
        if (s != held)
            pm_i_reg_unlock(s); /* (no-op when reg_fork_held) */
    }
    return skipped;
}

static int pm_i_reg_each_live(void (*fn)(uintptr_t data, const pm_i_reg_info *in, void *arg),
                              void *arg)
{
    return pm_i_reg_each_live_but(fn, arg, NULL);
}

size_t pm_i_reg_metadata_bytes(size_t *records)
{
    size_t bytes = sizeof stripes, n = 0;
    for (int i = 0; i < NSTRIPES; i++) {
        lock_stripe(&stripes[i]);
        if (stripes[i].tab != NULL)
            bytes += (stripes[i].mask + 1) * sizeof(entry);
        n += stripes[i].count;
        pm_i_reg_unlock(&stripes[i]);
    }
    if (records != NULL)
        *records = n;
    return bytes;
}

/* ---------------------------------------------------------------------------
 * fork: no stripe may be half-updated in the child.
 */

static void pm_i_reg_fork_parent(void)
{
    reg_fork_held = 0;
    for (int i = NSTRIPES - 1; i >= 0; i--)
        pm_i_reg_unlock(&stripes[i]);
}

/* In every fork child, locks taken or not. */
static void pm_i_reg_fork_child_reserved(void)
{
    atomic_store_explicit(&reg_reserved, reg_reserved_here, memory_order_relaxed);
}

static void pm_i_reg_fork_child(void)
{
    reg_fork_held = 0;
    for (int i = 0; i < NSTRIPES; i++)
        atomic_store_explicit(&stripes[i].lock, 0, memory_order_relaxed);
}

#endif /* PM_DEBUG_REGISTRY_H */
