/*
 * modes/debug_quarantine.h - the quarantine of the debug hooks: freed
 * registry blocks held back from the allocator below for a while.
 *
 * Registry blocks come here (modes/debug_registry.h: the C library's
 * blocks of malloc_debug, of the raw domain, of more than 512 bytes, aligned
 * blocks), and with PYMALLOC_QUARANTINE_POOLS=on pool blocks too (their
 * record is their side word, marked SIDE_HELD meanwhile). Otherwise a pool
 * block's slot is checked when a malloc takes it again
 * (modes/debug.c: freed_damaged); the C library would have a freed block
 * back at once and write its own links into it, so a write through a
 * pointer kept after the free could never be seen. Held here, filled with
 * DEADBYTE by its free, the block is checked when it leaves (and at exit
 * and abort, with the live blocks); while it is held its address cannot be
 * handed out again, so a second free of it is always named a double free.
 *
 * At most PYMALLOC_QUARANTINE bytes (default 1 MiB; the underlying blocks'
 * sizes are counted) and Q_CAP blocks for the whole process, in Q_SHARDS
 * FIFOs, each behind a spinlock of its own: a thread holds the blocks it
 * frees in its shard (chosen round robin when it first frees one), which
 * keeps to its share of the budget and of Q_CAP (the whole over the shards
 * in use) by pushing its own oldest blocks out, reading no other shard;
 * one push in Q_WHOLE_EVERY looks at the whole: the shard grows into the
 * room other shards leave, or, the whole over its budget, the fullest
 * shard's oldest blocks leave (q_push). A single thread has the exact FIFO
 * of one shard and the whole budget; threads that free at once share no
 * lock and no cache line (with one FIFO and one lock, two threads that
 * freed 16-byte blocks in malloc_debug took 1,000 ns a pair, against 120
 * ns for one: the lock's and the ring's cache lines went from core to
 * core at every free). Not one
 * FIFO per registry stripe: the oldest block leaves first whichever pages
 * it is on. A block of more than an eighth of the budget (or 1 MiB) is not
 * held: it goes back at once, as without the quarantine.
 *
 * The FIFOs hold plain pointers to the blocks (the registry holds none), so
 * that a leak checker scanning memory (LeakSanitizer, valgrind's) finds the
 * held blocks reachable, not lost. Blocks leave a FIFO with its lock held
 * and are checked and handed back after it is released: the allocator below
 * may be a hook of the user's, which may call back into the library.
 */
#ifndef PM_DEBUG_QUARANTINE_H
#define PM_DEBUG_QUARANTINE_H

#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define Q_CAP 16384
#define Q_SHARDS 8
#define Q_BLOCK_MAX ((size_t)1 << 20)

/* A held block: its underlying block (base), data size, and serial (low
 * 48 bits) | domain (2 bits at 48) | its allocator (2 bits at 50: 1 the C
 * library's, pm_i_raw_base; 2 the pools', pm_i_pool_base: both for the
 * life of the process, so a block goes back to the one it came from even
 * after the hooks were installed again over another; Q_FROM_SLOT a pool
 * block with a side word, PYMALLOC_QUARANTINE_POOLS=on: the pools' too,
 * but its record is its side word, not the registry) | log2 of the data's
 * offset from base (6 bits at 56); and where its record was when it came
 * (rec: a registry record's address, a hint for q_prefetch and
 * pm_i_reg_release, checked before use; for a pool block with a side word,
 * that word's address, for q_prefetch only). */
typedef struct qent {
    unsigned char *base;
    size_t size;
    uint64_t meta;
    void *rec; /* where its record was when it came (a hint) */
} qent;

#define Q_META(serial, d, from, offset)                                                         \
    (((serial) & PM_I_SERIAL_MASK) | ((uint64_t)(d) << 48) | ((uint64_t)(from) << 50) |        \
     ((uint64_t)__builtin_ctzll((unsigned long long)(offset)) << 56))
#define Q_FROM(m) ((int)(((m) >> 50) & 3))
#define Q_FROM_SLOT 3
#define Q_SERIAL(m) ((m) & PM_I_SERIAL_MASK)
#define Q_DOMAIN(m) ((int)(((m) >> 48) & 3))
#define Q_OFFSET(m) ((size_t)1 << (((m) >> 56) & 63))

/* One shard: a FIFO ring of held blocks behind a spinlock. len and bytes
 * change with the lock held, and are read without it too (q_sum). */
typedef struct q_shard {
    _Atomic int lock;
    unsigned head;
    unsigned pushes; /* (for Q_WHOLE_EVERY) */
    /* What it may hold beyond its share (q_pop_locked): set by its last
     * look at the whole (q_push), so that it grows into the room other
     * shards leave (those of threads that ended, or free little). */
    size_t limit_bytes, limit_len;
    _Atomic unsigned len;
    _Atomic size_t bytes; /* the underlying bytes held here */
    qent *ring;           /* Q_CAP of them */
} __attribute__((aligned(64))) q_shard;

/* The shards' locks and counts, a cache line each, share one page; their
 * rings (512 KiB each) are apart, so that a process that holds nothing
 * touches one page at exit (each shard is locked to be looked through),
 * not 8. */
static qent q_rings[Q_SHARDS][Q_CAP];
_Static_assert(Q_SHARDS == 8, "one ring per shard below");
_Static_assert(sizeof(q_shard) == 64, "the shards' headers share a page");
static q_shard q_shards[Q_SHARDS] = {{.ring = q_rings[0]}, {.ring = q_rings[1]},
                                     {.ring = q_rings[2]}, {.ring = q_rings[3]},
                                     {.ring = q_rings[4]}, {.ring = q_rings[5]},
                                     {.ring = q_rings[6]}, {.ring = q_rings[7]}};

/* The budget and the largest block held (set when the hooks go in). */
static _Atomic size_t q_budget, q_block_max;

/* This thread's shard + 1 (0: none chosen yet), chosen round robin. */
static __thread unsigned q_mine __attribute__((tls_model("initial-exec")));
static _Atomic unsigned q_next_shard;

/* A shard's share of the budget and of Q_CAP: the whole over the shards in
 * use (one per thread that freed a block here, up to Q_SHARDS). Set when
 * the hooks go in and when a thread takes a shard, so read cheaply. */
static _Atomic size_t q_share_bytes, q_share_len;
static _Atomic size_t q_active_n; /* the shards in use */

/* The shares for the shards in use now. Written again while the count
 * read after the writes differs from the one they were made for: two
 * threads that take shards at once may write out of order, and the last
 * writes must be for the final count (it only grows). */
static void q_set_shares(void)
{
    size_t active, now = 0;
    do {
        unsigned n = atomic_load_explicit(&q_next_shard, memory_order_acquire);
        active = n == 0 ? 1 : n < Q_SHARDS ? n : Q_SHARDS;
        atomic_store_explicit(&q_share_bytes, atomic_load(&q_budget) / active,
                              memory_order_relaxed);
        atomic_store_explicit(&q_share_len, Q_CAP / active, memory_order_relaxed);
        atomic_store_explicit(&q_active_n, active, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        unsigned m = atomic_load_explicit(&q_next_shard, memory_order_acquire);
        now = m == 0 ? 1 : m < Q_SHARDS ? m : Q_SHARDS;
    } while (now != active);
}

static inline q_shard *q_my_shard(void)
{
    if (PM_I_UNLIKELY(q_mine == 0)) {
        q_mine = atomic_fetch_add_explicit(&q_next_shard, 1, memory_order_seq_cst) % Q_SHARDS + 1;
        q_set_shares();
    }
    return &q_shards[q_mine - 1];
}

/* The thread calling fork() holds every shard's lock from the prepare
 * handler to the parent's or child's (see reg_fork_held). */
static __thread int q_fork_held __attribute__((tls_model("initial-exec")));

/* The shard (its index + 1) whose lock this thread takes or holds (from
 * before it tries to until after it let go), else 0: a signal handler that
 * interrupted it there (the check at abort, q_each) does not wait for that
 * lock, which stays taken until the handler returns. */
static __thread volatile sig_atomic_t q_held_here __attribute__((tls_model("initial-exec")));

static int q_lock(q_shard *q, int limit)
{
    if (q_fork_held)
        return 1;
    q_held_here = (sig_atomic_t)(q - q_shards) + 1;
    atomic_signal_fence(memory_order_seq_cst);
    for (int spins = 0; limit < 0 || spins < limit; spins++) {
        if (pm_i_spin_try(&q->lock))
            return 1;
        if (spins > 64)
            sched_yield();
    }
    atomic_signal_fence(memory_order_seq_cst);
    q_held_here = 0;
    return 0;
}

static void q_unlock(q_shard *q)
{
    if (!q_fork_held) {
        atomic_store_explicit(&q->lock, 0, memory_order_release);
        atomic_signal_fence(memory_order_seq_cst);
        q_held_here = 0;
    }
}

/* The underlying bytes of held block e. */
static inline size_t q_bytes(const qent *e)
{
    return Q_OFFSET(e->meta) + e->size + PM_I_DEBUG_TAIL;
}

static inline unsigned q_len(q_shard *q) { return atomic_load_explicit(&q->len, memory_order_relaxed); }

static inline size_t q_shard_bytes(q_shard *q)
{
    return atomic_load_explicit(&q->bytes, memory_order_relaxed);
}

/* The blocks and bytes held in all shards: the sums of their counts, read
 * without their locks (no counter of the whole, which every push and pop
 * would write: a cache line all threads would share). */
static inline void q_sum(size_t *blocks, size_t *bytes)
{
    size_t n = 0, b = 0;
    for (unsigned s = 0; s < Q_SHARDS; s++) {
        n += q_len(&q_shards[s]);
        b += q_shard_bytes(&q_shards[s]);
    }
    *blocks = n;
    *bytes = b;
}

/* Whether the quarantine as a whole is over its budget or its count. */
static inline int q_over(void)
{
    size_t n, b;
    q_sum(&n, &b);
    return b > atomic_load_explicit(&q_budget, memory_order_relaxed) || n > Q_CAP;
}

enum { Q_ALL, Q_SHARE, Q_WHOLE };

/* The oldest held blocks of shard q leave (its lock held), into out (at
 * most max of them): all of them (Q_ALL), or while the shard holds more
 * than it may (Q_SHARE: its share of the budget and of Q_CAP, or the limit
 * its last look at the whole set, whichever is more), or while the whole
 * quarantine is over its budget (Q_WHOLE).
 * Returns how many left. */
static int q_pop_locked(q_shard *q, qent *out, int max, int why)
{
    /* (The shard's counts in locals: only this thread changes them now.) */
    size_t bytes = q_shard_bytes(q), lim_b = SIZE_MAX;
    unsigned len = q_len(q), lim_n = UINT32_MAX;
    if (why == Q_SHARE) {
        size_t share_b = atomic_load_explicit(&q_share_bytes, memory_order_relaxed);
        size_t share_n = atomic_load_explicit(&q_share_len, memory_order_relaxed);
        lim_b = q->limit_bytes > share_b ? q->limit_bytes : share_b;
        lim_n = (unsigned)(q->limit_len > share_n ? q->limit_len : share_n);
    }
    int n = 0;
    while (n < max && len > 0 &&
           (why == Q_ALL || (why == Q_SHARE ? bytes > lim_b || len > lim_n : q_over()))) {
        qent *e = &q->ring[q->head];
        out[n++] = *e;
        bytes -= q_bytes(e);
        len--;
        e->base = NULL;
        q->head = (q->head + 1) % Q_CAP;
        atomic_store_explicit(&q->bytes, bytes, memory_order_relaxed);
        atomic_store_explicit(&q->len, len, memory_order_relaxed);
    }
    return n;
}

/* The shard that holds the most bytes (read without the locks: a hint). */
static q_shard *q_fullest(void)
{
    q_shard *f = &q_shards[0];
    for (unsigned s = 1; s < Q_SHARDS; s++)
        if (q_shard_bytes(&q_shards[s]) > q_shard_bytes(f))
            f = &q_shards[s];
    return f;
}

/* While the whole is over its budget, the fullest shard's oldest blocks
 * leave, into out (at most max). (Bounded: the hint may name a shard
 * another thread just emptied.) */
static int q_pop_fullest(qent *out, int max)
{
    int n = 0;
    for (int tries = 0; tries < 2 * Q_SHARDS && n < max && q_over(); tries++) {
        q_shard *f = q_fullest();
        q_lock(f, -1);
        n += q_pop_locked(f, out + n, max - n, Q_WHOLE);
        q_unlock(f);
    }
    return n;
}

/* Blocks leave, into out (at most max): this thread's shard's oldest
 * while it is over its share, then, while the whole is over its budget,
 * the fullest shard's. */
static int q_pop(qent *out, int max)
{
    q_shard *mine = q_my_shard();
    q_lock(mine, -1);
    int n = q_pop_locked(mine, out, max, Q_SHARE);
    q_unlock(mine);
    return n + q_pop_fullest(out + n, max - n);
}

/* Block e, which left the quarantine damaged with another (the batch's
 * first damaged block reported), is held again, the newest of this
 * thread's shard, even over its share (it leaves at the next push), unless
 * the shard's ring is full: then it is left out (its record stays freed
 * and held: a second free of it is a double free, but its damage goes
 * unreported). Never allocates. */
static void q_hold_again(const qent *e)
{
    q_shard *q = q_my_shard();
    q_lock(q, -1);
    if (q_len(q) < Q_CAP) {
        q->ring[(q->head + q_len(q)) % Q_CAP] = *e;
        atomic_store_explicit(&q->len, q_len(q) + 1, memory_order_relaxed);
        atomic_store_explicit(&q->bytes, q_shard_bytes(q) + q_bytes(e), memory_order_relaxed);
    }
    q_unlock(q);
}

/* For a drain (pm_trim, memory short): the oldest blocks of shard s leave,
 * into out (at most max), of those it held when first asked: *left is
 * UINT_MAX before the first call, then how many of those are still to
 * leave. A drain does not chase the blocks other threads free meanwhile
 * (it took seconds with eight threads freeing). */
static int q_pop_held(unsigned s, qent *out, int max, unsigned *left)
{
    q_shard *q = &q_shards[s];
    if (q_len(q) == 0 && !q_fork_held)
        return 0; /* (an empty shard is not locked) */
    q_lock(q, -1);
    if (*left == UINT_MAX)
        *left = q_len(q);
    int n = q_pop_locked(q, out, *left < (unsigned)max ? (int)*left : max, Q_ALL);
    *left -= (unsigned)n;
    q_unlock(q);
    return n;
}

/* Hold block e (filled already) in this thread's shard; the blocks that
 * must leave to make room go into out (at most max): the caller checks and
 * hands them back, then asks q_pop for more while it gets max. The shard
 * keeps to what it may hold by itself, reading no other shard. One push
 * in Q_WHOLE_EVERY (with more than one shard in use) looks at the whole:
 * under its budget, the shard may grow into the room left (other threads'
 * shards may too: the next look finds the whole over); over it, the shard
 * keeps to its share again, and the fullest shard's oldest blocks leave
 * until the whole is within its budget (a shard of a thread that ended
 * holds what it held: its blocks leave only then, or at pm_trim). */
enum { Q_WHOLE_EVERY = 64 };

/* A shard's limit, from what it holds (own) and the whole (total) against
 * its maximum (cap): own and its part of the room left (the shards in use
 * share it: all growing into the whole of it would overshoot), or own
 * less the excess. */
static inline size_t q_limit(size_t own, size_t total, size_t cap)
{
    if (total <= cap)
        return own + (cap - total) / atomic_load_explicit(&q_active_n, memory_order_relaxed);
    return total - cap < own ? own - (total - cap) : 0;
}

/* The lines the block Q_AHEAD places from the head of shard q (its lock
 * held) will need when it leaves, asked for now: the C library's chunk
 * header below its underlying block (q_chunk_ok, the C library's free: at
 * base - 16, which is p - 32 only for an offset of 16, not for an aligned
 * block) and the next chunk's size word (which the C library's free reads
 * for a block its thread cache does not take), the bytes q_damaged checks
 * (p - 16 up to its first 64 bytes from p, or fewer for a smaller block:
 * two lines at most, p being 16-aligned), its registry record and its
 * stripe's lock (pm_i_reg_release); for a pool block (Q_FROM_SLOT), its
 * side word instead of the record, and no chunk. A block leaves
 * after thousands of other frees, when none of those lines is in a cache
 * any more: their loads were a quarter of malloc_debug's time on a Python
 * workload (bench/README.md). A prefetch never faults: a record's address
 * in a table a rehash has unmapped since costs nothing. */
enum { Q_AHEAD = 8 };
static inline void q_prefetch(q_shard *q)
{
    if (q_len(q) <= Q_AHEAD)
        return;
    const qent *a = &q->ring[(q->head + Q_AHEAD) % Q_CAP];
    const unsigned char *p = a->base + Q_OFFSET(a->meta);
    size_t len = a->size + PM_I_DEBUG_TAIL;
    const unsigned char *last = p + (len < 64 ? len : 64) - 1;
    __builtin_prefetch(p - 16);
    __builtin_prefetch(last);
    if (Q_FROM(a->meta) == Q_FROM_SLOT) {
        __builtin_prefetch(a->rec, 1); /* its side word */
        return;
    }
    size_t req = Q_OFFSET(a->meta) + len, chunk = (req + 8 + 15) & ~(size_t)15;
    __builtin_prefetch(a->base - 16);
    __builtin_prefetch(a->base + chunk - 8); /* the next chunk's size word */
    if (a->rec != NULL) { /* (and its stripe's lock, both to be written) */
        __builtin_prefetch(a->rec, 1);
        __builtin_prefetch(pm_i_reg_stripe(pm_i_reg_hash((uintptr_t)p)), 1);
    }
}

static int q_push(const qent *e, qent *out, int max)
{
    q_shard *q = q_my_shard();
    q_lock(q, -1);
    int n = 0;
    if (q_len(q) == Q_CAP)
        n = q_pop_locked(q, out, 1, Q_ALL); /* (its ring is full: the whole is too) */
    q->ring[(q->head + q_len(q)) % Q_CAP] = *e;
    atomic_store_explicit(&q->len, q_len(q) + 1, memory_order_relaxed);
    atomic_store_explicit(&q->bytes, q_shard_bytes(q) + q_bytes(e), memory_order_relaxed);
    n += q_pop_locked(q, out + n, max - n, Q_SHARE);
    q_prefetch(q);
    /* (One shard in use: its share is the whole.) */
    int whole_over = 0;
    if (++q->pushes % Q_WHOLE_EVERY == 0 &&
        atomic_load_explicit(&q_active_n, memory_order_relaxed) > 1) {
        size_t tn, tb, budget = atomic_load_explicit(&q_budget, memory_order_relaxed);
        size_t own_b = q_shard_bytes(q), own_n = q_len(q);
        q_sum(&tn, &tb);
        /* Under: the shard may grow into the room left. Over: it gives up
         * its part of the excess (down to its share at least), and the
         * fullest shard the rest. */
        q->limit_bytes = q_limit(own_b, tb, budget);
        q->limit_len = q_limit(own_n, tn, Q_CAP);
        /* Over by more than a 64th: a shard seen between its push and its
         * pop is a block over, which is not worth a trip to its lock. */
        if (tb > budget + budget / 64 || tn > Q_CAP + Q_CAP / 64) {
            whole_over = 1;
            n += q_pop_locked(q, out + n, max - n, Q_SHARE);
        }
    }
    q_unlock(q);
    if (whole_over)
        n += q_pop_fullest(out + n, max - n);
    return n;
}

/* Call fn on every held block, each shard's oldest first, that shard's
 * lock held (so none leaves meanwhile); waits a bounded time for each lock
 * (the check at abort runs in a signal handler, maybe interrupting a
 * holder). Returns the number of shards whose lock stayed taken (not
 * read). Never allocates. */
static unsigned q_each(void (*fn)(const qent *e, void *arg), void *arg)
{
    unsigned busy = 0;
    sig_atomic_t mine = q_held_here; /* (the interrupted code's, restored) */
    for (unsigned s = 0; s < Q_SHARDS; s++) {
        q_shard *q = &q_shards[s];
        if (mine == (sig_atomic_t)s + 1 || !q_lock(q, 2000)) {
            busy++;
            continue;
        }
        for (unsigned i = 0; i < q_len(q); i++)
            fn(&q->ring[(q->head + i) % Q_CAP], arg);
        q_unlock(q);
    }
    q_held_here = mine;
    return busy;
}

static void q_fork_prepare(void)
{
    for (unsigned s = 0; s < Q_SHARDS; s++)
        q_lock(&q_shards[s], -1);
    q_fork_held = 1;
}

static void q_fork_parent(void)
{
    q_fork_held = 0;
    for (unsigned s = 0; s < Q_SHARDS; s++)
        q_unlock(&q_shards[s]);
}

static void q_fork_child(void)
{
    q_fork_held = 0;
    for (unsigned s = 0; s < Q_SHARDS; s++)
        atomic_store_explicit(&q_shards[s].lock, 0, memory_order_relaxed);
    q_held_here = 0;
}

#endif /* PM_DEBUG_QUARANTINE_H */
