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
 * One FIFO for the whole process, of at most PYMALLOC_QUARANTINE bytes
 * (default 1 MiB; the underlying blocks' sizes are counted) and Q_CAP
 * blocks, behind one spinlock. One FIFO, not one per registry stripe, so
 * that the oldest block leaves first whichever pages it is on. A block of
 * more than an eighth of the budget (or 1 MiB) is not held: it goes back at
 * once, as without the quarantine.
 *
 * The FIFO holds plain pointers to the blocks (the registry holds none), so
 * that a leak checker scanning memory (LeakSanitizer, valgrind's) finds the
 * held blocks reachable, not lost. Blocks leave the FIFO with its lock held
 * and are checked and handed back after it is released: the allocator below
 * may be a hook of the user's, which may call back into the library.
 */
#ifndef PM_DEBUG_QUARANTINE_H
#define PM_DEBUG_QUARANTINE_H

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define Q_CAP 16384
#define Q_BLOCK_MAX ((size_t)1 << 20)

/* A held block: its underlying block (base), data size, and serial (low
 * 48 bits) | domain (2 bits at 48) | its allocator (2 bits at 50: 1 the C
 * library's, pm_i_raw_base; 2 the pools', pm_i_pool_base: both for the
 * life of the process, so a block goes back to the one it came from even
 * after the hooks were installed again over another; Q_FROM_SLOT a pool
 * block with a side word, PYMALLOC_QUARANTINE_POOLS=on: the pools' too,
 * but its record is its side word, not the registry) | log2 of the data's
 * offset from base (6 bits at 56). */
typedef struct qent {
    unsigned char *base;
    size_t size;
    uint64_t meta;
} qent;

#define Q_META(serial, d, from, offset)                                                         \
    (((serial) & PM_I_SERIAL_MASK) | ((uint64_t)(d) << 48) | ((uint64_t)(from) << 50) |        \
     ((uint64_t)__builtin_ctzll((unsigned long long)(offset)) << 56))
#define Q_FROM(m) ((int)(((m) >> 50) & 3))
#define Q_FROM_SLOT 3
#define Q_SERIAL(m) ((m) & PM_I_SERIAL_MASK)
#define Q_DOMAIN(m) ((int)(((m) >> 48) & 3))
#define Q_OFFSET(m) ((size_t)1 << (((m) >> 56) & 63))

static struct {
    _Atomic int lock;
    unsigned head, len;
    size_t bytes; /* the underlying bytes held */
} quar;
static qent q_ring[Q_CAP];

/* The budget and the largest block held (set when the hooks go in). */
static _Atomic size_t q_budget, q_block_max;

/* The thread calling fork() holds the lock from the prepare handler to the
 * parent's or child's (see reg_fork_held). */
static __thread int q_fork_held __attribute__((tls_model("initial-exec")));

/* Set while this thread takes or holds the lock (from before it tries to
 * until after it let go): a signal handler that interrupted it there (the
 * statistics) does not wait for it. */
static __thread volatile sig_atomic_t q_held_here __attribute__((tls_model("initial-exec")));

static int q_lock(int limit)
{
    if (q_fork_held)
        return 1;
    q_held_here = 1;
    atomic_signal_fence(memory_order_seq_cst);
    for (int spins = 0; limit < 0 || spins < limit; spins++) {
        if (atomic_load_explicit(&quar.lock, memory_order_relaxed) == 0 &&
            atomic_exchange_explicit(&quar.lock, 1, memory_order_acquire) == 0)
            return 1;
        if (spins > 64)
            sched_yield();
    }
    atomic_signal_fence(memory_order_seq_cst);
    q_held_here = 0;
    return 0;
}

static void q_unlock(void)
{
    if (!q_fork_held) {
        atomic_store_explicit(&quar.lock, 0, memory_order_release);
        atomic_signal_fence(memory_order_seq_cst);
        q_held_here = 0;
    }
}

/* The underlying bytes of held block e. */
static inline size_t q_bytes(const qent *e)
{
    return Q_OFFSET(e->meta) + e->size + PM_I_DEBUG_TAIL;
}

/* The oldest held blocks leave (the lock held): into out (at most max of
 * them) while the FIFO is over its budget or full, or all of them (all).
 * Returns how many left. */
static int q_pop_locked(qent *out, int max, int all)
{
    size_t budget = atomic_load_explicit(&q_budget, memory_order_relaxed);
    int n = 0;
    while (n < max && quar.len > 0 && (all || quar.bytes > budget || quar.len == Q_CAP)) {
        qent *e = &q_ring[quar.head];
        out[n++] = *e;
        quar.bytes -= q_bytes(e);
        e->base = NULL;
        quar.head = (quar.head + 1) % Q_CAP;
        quar.len--;
    }
    return n;
}

/* Hold block e (filled already); the blocks that must leave to make room go
 * into out (at most max): the caller checks and hands them back, then asks
 * q_pop for more while it gets max. */
static int q_push(const qent *e, qent *out, int max)
{
    q_lock(-1);
    int n = 0;
    if (quar.len == Q_CAP)
        n = q_pop_locked(out, 1, 1);
    q_ring[(quar.head + quar.len) % Q_CAP] = *e;
    quar.len++;
    quar.bytes += q_bytes(e);
    n += q_pop_locked(out + n, max - n, 0);
    q_unlock();
    return n;
}

static int q_pop(qent *out, int max, int all)
{
    q_lock(-1);
    int n = q_pop_locked(out, max, all);
    q_unlock();
    return n;
}

/* Call fn on every held block, oldest first, the lock held (so none leaves
 * meanwhile); waits a bounded time for the lock (the check at abort runs in
 * a signal handler, maybe interrupting a holder). -1 if the lock stayed
 * taken. Never allocates. */
static int q_each(void (*fn)(const qent *e, void *arg), void *arg)
{
    if (!q_lock(2000))
        return -1;
    for (unsigned i = 0; i < quar.len; i++)
        fn(&q_ring[(quar.head + i) % Q_CAP], arg);
    q_unlock();
    return 0;
}

/* Held blocks and their bytes (for statistics and tests). */
/* The blocks and bytes held: 1, or 0 if the lock was not taken within
 * `limit` tries (q_lock). */
static int q_totals(size_t *blocks, size_t *bytes, int limit)
{
    if (!q_lock(limit))
        return 0;
    *blocks = quar.len;
    *bytes = quar.bytes;
    q_unlock();
    return 1;
}

static void q_fork_prepare(void)
{
    q_lock(-1);
    q_fork_held = 1;
}

static void q_fork_parent(void)
{
    q_fork_held = 0;
    q_unlock();
}

static void q_fork_child(void)
{
    q_fork_held = 0;
    atomic_store_explicit(&quar.lock, 0, memory_order_relaxed);
    q_held_here = 0;
}

#endif /* PM_DEBUG_QUARANTINE_H */
