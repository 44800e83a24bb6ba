/*
 * modes/debug.c - the debug hooks: a decorator around any allocator.
 *
 * pm_i_debug_decorate() reads each domain's current allocator from the table
 * into that domain's ctx here and installs the hooks in its place; the hooks
 * call down through the saved copy and never know what it is (libc, the pool
 * allocator, a user's hook). CPython's PYTHONMALLOC=debug, with the serial
 * number always present, plus a record of every block so that double frees
 * and invalid pointers are named as such without reading memory we do not
 * own. The record of a block is kept in one of two places:
 *
 *  - a pool block (pymalloc_debug's mem and obj domains, requests of
 *    N + 32 <= 544 bytes: the pools' two wide classes) has a side word kept by the pool module
 *    (modes/pool.h: pm_i_pool_side; one atomic 64-bit word per block slot,
 *    found from the block address through a radix tree, no hash, no lock):
 *    state (empty / live / freed), serial (low 48 bits), API, size;
 *  - any other block (libc: malloc_debug, the raw domain, big blocks,
 *    aligned blocks) is in the registry (debug_registry.h: hashed, striped
 *    locks, a bounded FIFO of freed blocks).
 *
 * A pointer whose block start (p - 16) has a side word takes the side-word
 * path; anything else (libc memory, a stack address, an interior pointer,
 * which is "not a block start" for the pool) the registry path, which names
 * what it does not know an invalid pointer. Free claims a live pool block
 * with one compare-and-swap live -> freed of its word (a failed CAS is a
 * concurrent change: the word is read again, and a concurrent free is then
 * reported as a double free), then checks its bytes; damaged, the word goes
 * back to live and the block is reported and leaked. A pool block's word
 * outlives its pool emptying (the pool module keeps it until the pool is
 * formatted for another class), so a late double free is still named with
 * size and serial; once the address is handed out again the word is the new
 * block's, and a second free of the old pointer frees the new block (not
 * detectable without quarantine, as with the registry). Freed registry
 * blocks of the C library's go to a quarantine first (debug_quarantine.h:
 * held, filled, checked when they leave and at exit), so their addresses
 * are not reused for a while; with PYMALLOC_QUARANTINE_POOLS=on freed pool
 * blocks too (free_busy; dbg_free's fast path is off then: side_fast).
 *
 * Block layout on 64-bit, N = bytes requested, p = the pointer returned:
 *
 *   base                                          (from the allocator below)
 *   |  p-16 .. p-9   N, big-endian size_t
 *   |  p-8           API id: 'r' raw, 'm' mem, 'o' obj
 *   |  p-7 .. p-1    7 x FORBIDDENBYTE (0xFD)
 *   p  p .. p+N-1    data: CLEANBYTE 0xCD after malloc, 0x00 after calloc
 *      p+N .. +7     8 x FORBIDDENBYTE (0xFD)
 *      p+N+8 .. +15  serial number, big-endian
 *
 *   +----------+---+-------+------------------+---------+----------+
 *   | size (8) |api| FD x7 |  data (N bytes)  |  FD x8  |serial (8)|
 *   +----------+---+-------+------------------+---------+----------+
 *   base       p-8         p                  p+N                 p+N+16
 *
 * The underlying request is N + 32, so p keeps the allocator's 16-byte
 * alignment. An aligned block (alignment A > 16, for memalign and friends)
 * is A + N + 16 bytes from the allocator's memalign with p = base + A; the
 * A - 16 bytes before the header are left as the allocator gave them (not
 * written, not checked: writing them cost a 2^32-byte alignment 4 GiB).
 *
 * Checks, on free, realloc and pm_check_block, in CPython's order after the
 * side word or registry lookup: the pointer must be a live block of ours
 * (else: double free, use after free, invalid pointer); its API must be the
 * caller's (API mismatch); the header (API id, 7 pad bytes, size field) must
 * be intact (buffer underflow, or header corrupt if only the size field is
 * damaged); then the trailer (8 pad bytes, serial). The size used is the
 * record's, so a damaged size field cannot send the tail check astray.
 *
 * Free fills the whole block, header and trailer included, with DEADBYTE
 * 0xDD (the data of a block over 1 MiB only over its first and last 64 KiB,
 * as malloc's CLEANBYTE: fill_span). A block found damaged is reported
 * and, if the error handler returns, leaked: never freed, left live in its
 * record.
 *
 * Realloc (bpo-31626: never touch the old block after a successful realloc
 * below): check; record the block as freed; save the first and last 64 data
 * bytes; fill header, trailer and those bytes with DEADBYTE; realloc below;
 * on failure restore everything, so the old block is intact and live again;
 * on success write the new header and trailer, restore the saved bytes into
 * the new block (clipped to the new size), fill grown bytes with CLEANBYTE.
 * An aligned block is reallocated as malloc + copy + free (realloc keeps
 * only the 16-byte alignment, like libc's).
 */
#include "debug_registry.h"
#include "debug_quarantine.h"

/* The largest underlying block the debug layer asks for: PTRDIFF_MAX, and
 * no more than a registry record's size field holds (2^54 - 1; no address
 * space has room for more). A larger request fails with ENOMEM. */
#define DEBUG_SIZE_MAX ((size_t)PTRDIFF_MAX < SIZE_BITS ? (size_t)PTRDIFF_MAX : (size_t)SIZE_BITS)
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_FREE, OP_USABLE, OP_COUNT };

#if defined(__SANITIZE_THREAD__)
#define PM_HEAP_CHECK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PM_HEAP_CHECK_TSAN 1
#endif
#endif
/* A release fence between a block's writes (see SIDE_FILLED). Under TSan,
 * which gcc does not let fences into (-Wtsan), a compiler barrier: the
 * reads it orders the writes for are the check of the heap's, which TSan
 * is told to leave out (RACY_READS_BEGIN, below). */
#ifdef PM_HEAP_CHECK_TSAN
#define RELEASE_FENCE() atomic_signal_fence(memory_order_release)
#else
#define RELEASE_FENCE() atomic_thread_fence(memory_order_release)
#endif

typedef struct dbg {
    pm_i_base below; /* what the hooks wrap */
    pm_i_base self;  /* the hooks, as installed in the table */
    char api;
    int pool_below;    /* below is the pool allocator itself (pymalloc_debug) */
    int pool_fast;     /* pool_below, no PYMALLOC_BREAK_SERIAL and no pool
                          quarantine: dbg_malloc's fast path (one test) */
    int libc_below;    /* its blocks are the C library's: 1 all (libc below),
                          2 those not in a pool (the pool below), 0 none known */
    int foreign;       /* below is an allocator of the user's (a hook), called
                          outside the busy part (below_malloc_of, ...) */
    uint64_t api_w;    /* the word at p-8 of its blocks: API_WORD(api) */
    uint64_t side_api; /* the API in a side word's bits (pool.h) */
    uint64_t filled;   /* SIDE_FILLED if pool_below and freed blocks are
                          checked (PYMALLOC_CHECK_FREED not off), else 0 */
    int check_all;     /* PYMALLOC_CHECK_FREED=all */
    int quarantine;    /* its freed registry blocks may be held (libc_below) */
    int pool_quarantine; /* its freed pool blocks are held too
                            (PYMALLOC_QUARANTINE_POOLS=on, pool_below) */
    const char *names[OP_COUNT];
} dbg;

#define SIDE_API(k) ((uint64_t)(k) << PM_P_SIDE_API_SHIFT)

/* The word at p-8 of a block (API id then 7 x FORBIDDENBYTE), as it is in
 * memory. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define API_WORD(api) (((uint64_t)(unsigned char)(api) << 56) | UINT64_C(0x00FDFDFDFDFDFDFD))
#else
#define API_WORD(api) (UINT64_C(0xFDFDFDFDFDFDFD00) | (unsigned char)(api))
#endif

static dbg dbgs[PM_DOMAIN_COUNT] = {
    {.api = 'r',
     .api_w = API_WORD('r'),
     .side_api = SIDE_API(1),
     .names = {"pm_raw_malloc", "pm_raw_calloc", "pm_raw_realloc", "pm_raw_free",
               "malloc_usable_size"}},
    {.api = 'm',
     .api_w = API_WORD('m'),
     .side_api = SIDE_API(2),
     .names = {"pm_mem_malloc", "pm_mem_calloc", "pm_mem_realloc", "pm_mem_free",
               "malloc_usable_size"}},
    {.api = 'o',
     .api_w = API_WORD('o'),
     .side_api = SIDE_API(3),
     .names = {"pm_obj_malloc", "pm_obj_calloc", "pm_obj_realloc", "pm_obj_free",
               "malloc_usable_size"}},
};

/* Which domains the hooks are installed on (a flag, not a comparison of
 * function pointers: a hook set on top must not hide them). An allocator
 * set with pm_set_allocator can only reach the hooks through a copy of the
 * domain's allocator read with pm_get_allocator while they were installed
 * (handed_out): without one it replaces them (pm_i_debug_table_write). */
static _Atomic int enabled[PM_DOMAIN_COUNT];
static _Atomic int handed_out[PM_DOMAIN_COUNT];

__thread const char *pm_i_debug_entry __attribute__((tls_model("initial-exec")));

void pm_i_debug_set_entry(const char *name) { pm_i_debug_entry = name; }

static inline const char *entry_name(const dbg *g, int op)
{
    const char *o = pm_i_debug_entry;
    return o != NULL ? o : g != NULL ? g->names[op] : "pm_trim"; /* (NULL: q_drain's) */
}

/* ---------------------------------------------------------------------------
 * Calls nested in another of their thread.
 *
 * A signal handler runs on the thread it interrupted, maybe inside the
 * hooks, which hold locks there: a registry stripe's, the C library's
 * allocator's (below them), the pools' (which guard themselves: pool.h),
 * the arena lock of pm_check_block. A call of the handler's that waited
 * for one of them would wait for ever. So every part of the hooks past
 * their fast paths (which take no lock) marks its thread busy
 * (pm_i_debug_busy, busy_enter .. busy_leave), and a call of the hooks
 * that finds its thread busy is nested, and never waits:
 *
 *  - malloc, calloc and memalign are served from the early arena
 *    (src/early.c), without the debug checks (no header, trailer, serial
 *    or record); every entry point of the hooks recognises its blocks by
 *    address, nested or not: free gives them back, realloc moves them
 *    (into a debug block, if not nested), usable size and pm_check_block
 *    answer for them;
 *  - free of any other block waits in nested_frees (src/pm_internal.h:
 *    pm_i_defer, the override's queue too) until the interrupted call
 *    leaves its busy part (busy_leave), which frees it through the hooks
 *    then, checks and reports included, naming the entry point the
 *    handler called (past PM_I_DEFER_SLOTS waiting frees: a leak);
 *  - realloc of any other block fails (NULL: ENOMEM), the block kept;
 *  - usable size and pm_check_block of any other block read its side word
 *    (a pool block: no lock, but pm_check_block tries the arena lock a
 *    bounded number of times) or try its stripe's lock NESTED_LOCK_TRIES
 *    times; pm_check_block that cannot have a lock returns -1 with errno
 *    EDEADLK, without a report.
 *
 * The fast paths pay one load of the mark and a branch (dbg_malloc,
 * dbg_free). A handler's call made while its thread is in a fast path (no
 * lock held) is not nested: it is served as any other, with the limits of
 * the thread caches (pool.h): a handler that keeps a pool block past its
 * return, or frees one made outside it, may meet the interrupted fast
 * path's half-done change of that size class's bin.
 *
 * Internal calls of the hooks into themselves (realloc by malloc + copy +
 * free, realloc of an early block) are made outside the busy part. The
 * error handler is called with the mark cleared (src/report.c), unless
 * the report came from a nested call.
 */
__thread pm_i_debug_state_t pm_i_debug_state __attribute__((tls_model("initial-exec")));
/* The entry-point hint (pm_i_debug_entry) when this thread's busy part
 * began: a nested call that finds the same hint did not set it (a pm_*
 * call of the handler's); one that finds another did (the override's). */
static __thread const char *busy_entry __attribute__((tls_model("initial-exec")));
static __thread pm_i_defer nested_frees __attribute__((tls_model("initial-exec")));

/* A call that finds the busy mark clear but the error handler's: one made
 * inside the handler, or after it was left by longjmp. Made higher on the
 * stack than the report that called the handler, it is after: that
 * handler's entry goes, so that a report about a new block at the same
 * address calls the handler again (before 2026-12-07 a block made there
 * after a handler was left by longjmp, and reported from deeper in the
 * stack, was taken for the block that handler was given: the handler was
 * not called). */
__attribute__((noinline, cold)) static int nested_or_handling(void)
{
    if (pm_i_debug_busy != 0)
        return 1;
    pm_i_debug_handling_drop((uintptr_t)__builtin_frame_address(0));
    return 0;
}

static inline int nested(void)
{
    return PM_I_UNLIKELY(pm_i_debug_state.any != 0) && nested_or_handling();
}

/* The entry point a nested call names (NULL: the hooks' own name). */
static inline const char *nested_entry(void)
{
    const char *o = pm_i_debug_entry;
    return o != busy_entry ? o : NULL;
}

static inline void busy_enter(void)
{
    busy_entry = pm_i_debug_entry;
    atomic_signal_fence(memory_order_seq_cst);
    pm_i_debug_busy = 1;
    atomic_signal_fence(memory_order_seq_cst);
}

static void drain_nested(void);

/* busy_leave without the frees that waited (the caller frees them). */
static inline void busy_clear(void)
{
    atomic_signal_fence(memory_order_seq_cst);
    pm_i_debug_busy = 0;
    atomic_signal_fence(memory_order_seq_cst);
}

static inline void busy_leave(void)
{
    busy_clear();
    if (PM_I_UNLIKELY(nested_frees.pending))
        drain_nested();
}

/* Calls of the allocator below. One of the user's (a hook set before the
 * debug hooks wrapped it: g->foreign) is called with the busy mark
 * cleared, as the program's own code: its pm_* calls of another domain (a
 * tracing hook's bookkeeping, a hook that sends the mem domain to
 * pm_obj_malloc) are served as any call, not as a signal handler's (from
 * the early arena, frees deferred, realloc failing: before 2026-12-06).
 * No lock of the hooks is held at these calls. A signal handler that
 * interrupts the hook is served as any call too: the hook's code is the
 * program's, as it is without the debug hooks. Frees a handler deferred
 * before wait for the busy part's end, as before. */
typedef struct {
    const char *busy_hint, *entry;
} foreign_state;

/* The busy mark cleared, and the override's entry-point hint too (a
 * malloc the hook calls is then the program's, not a nested one). */
static inline foreign_state foreign_out(void)
{
    foreign_state st = {busy_entry, pm_i_debug_entry};
    atomic_signal_fence(memory_order_seq_cst);
    pm_i_debug_entry = NULL;
    pm_i_debug_busy = 0;
    atomic_signal_fence(memory_order_seq_cst);
    return st;
}

static inline void foreign_back(foreign_state st)
{
    atomic_signal_fence(memory_order_seq_cst);
    pm_i_debug_entry = st.entry;
    pm_i_debug_busy = 1;
    atomic_signal_fence(memory_order_seq_cst);
    busy_entry = st.busy_hint;
}

static inline void *below_malloc_of(const dbg *g, size_t n)
{
    if (PM_I_LIKELY(!g->foreign))
        return g->below.a.malloc(g->below.a.ctx, n);
    foreign_state st = foreign_out();
    void *r = g->below.a.malloc(g->below.a.ctx, n);
    foreign_back(st);
    return r;
}

static inline void *below_calloc_of(const dbg *g, size_t n)
{
    if (PM_I_LIKELY(!g->foreign))
        return g->below.a.calloc(g->below.a.ctx, 1, n);
    foreign_state st = foreign_out();
    void *r = g->below.a.calloc(g->below.a.ctx, 1, n);
    foreign_back(st);
    return r;
}

static inline void *below_realloc_of(const dbg *g, void *base, size_t n)
{
    if (PM_I_LIKELY(!g->foreign))
        return g->below.a.realloc(g->below.a.ctx, base, n);
    foreign_state st = foreign_out();
    void *r = g->below.a.realloc(g->below.a.ctx, base, n);
    foreign_back(st);
    return r;
}

static inline void below_free_of(const dbg *g, void *base)
{
    if (PM_I_LIKELY(!g->foreign)) {
        g->below.a.free(g->below.a.ctx, base);
        return;
    }
    foreign_state st = foreign_out();
    g->below.a.free(g->below.a.ctx, base);
    foreign_back(st);
}

/* ---------------------------------------------------------------------------
 * Serial numbers.
 */

static _Atomic uint64_t serial_counter;

/* The full serial of a block whose registry record holds its low 48 bits:
 * the one serial with those low bits that is at most the counter and more
 * than 2^48 below it (a block outliving 2^48 allocations is not supported).
 * The record was published under a stripe lock after the serial was taken,
 * so the counter read here is never below it. The serial field in memory is
 * checked against this value, all 64 bits of it. */
static inline uint64_t full_serial(uint64_t low)
{
    uint64_t now = atomic_load_explicit(&serial_counter, memory_order_relaxed);
    uint64_t s = (now & ~PM_I_SERIAL_MASK) | low;
    return s > now ? s - (PM_I_SERIAL_MASK + 1) : s;
}

/* Every serial is handed out here. While the process has one thread: a
 * plain increment of the counter (no other thread can take a serial in
 * between; the first pthread_create orders it before the new thread's
 * first), inlined, so a single-threaded program numbers its blocks 1, 2,
 * 3, ... From the first pthread_create on, each thread takes a run of
 * SERIAL_RUN numbers from the counter with one atomic add and hands them
 * out in order: serials stay unique and increase within a thread, but are
 * no longer in allocation order across threads, and a thread's unused
 * numbers are skipped when it exits. An atomic add per allocation made the
 * counter's cache line travel between cores on every malloc of two busy
 * threads (28.9 -> 112.4 ns per pair per thread in pymalloc_debug with two
 * threads allocating at once; with runs, see bench/README.md). The counter
 * is always at or above every serial handed out (full_serial needs that).
 *
 * Signal handlers: every serial is taken with the thread marked busy
 * (busy_enter: "Calls nested" above), so a handler that interrupts the
 * increment and allocates is nested (its block the early arena's, with no
 * serial) and cannot take the same number. Past the fast paths the thread
 * is busy anyway; dbg_malloc's fast path marks it for the increment
 * alone. The increment is then a plain load, add and store. From
 * 0a19076 to 2026-12-05 it was instead one instruction a handler could not
 * split (xadd without a lock prefix): on this AMD EPYC its latency chains
 * from one malloc to the next, 2.2 ns against 0.55 for the load and store
 * (1.5 ns of pymalloc_debug's 13 ns 16-byte pair), where the busy mark
 * (its stores, and the test for a handler's free that waited) costs 0.25
 * ns and 13 instructions. Before 0a19076 a handler between the
 * load and the store took the serial of the block being made
 * (tests/test_debug_serial_signal.c: some 20 duplicates a second with one
 * thread). A run is [run_next + 1, run_end]. */
#define SERIAL_RUN 256u
static __thread uint64_t run_next __attribute__((tls_model("initial-exec")));
static __thread uint64_t run_end __attribute__((tls_model("initial-exec")));

/* A new run for this thread: its first serial (busy). */
__attribute__((noinline)) static uint64_t new_run(void)
{
    uint64_t r = atomic_fetch_add_explicit(&serial_counter, SERIAL_RUN, memory_order_relaxed);
    run_next = r + 1;
    run_end = r + SERIAL_RUN;
    return r + 1;
}

/* Every serial is taken here, the thread busy: the next number, or 0 when
 * this thread's run is used up (then new_run). */
static inline uint64_t serial_take(void)
{
    if (PM_I_SINGLE_THREADED()) {
        uint64_t s = atomic_load_explicit(&serial_counter, memory_order_relaxed) + 1;
        atomic_store_explicit(&serial_counter, s, memory_order_relaxed);
        return s;
    }
    uint64_t s = run_next + 1;
    if (PM_I_UNLIKELY(s > run_end))
        return 0;
    run_next = s;
    return s;
}

/* The serial of a new block (busy). */
static inline uint64_t bump_serial(void)
{
    uint64_t s = serial_take();
    return PM_I_LIKELY(s != 0) ? s : new_run();
}

/* This thread's run dropped (a fork's child, a test setting the next
 * serial): its next serial starts a new run. run_end first: a handler
 * between the two stores takes a serial above run_end 0 and starts a new
 * run; with run_next first, it would take serial 1 under the old end. */
static void drop_run(void)
{
    run_end = 0;
    atomic_signal_fence(memory_order_seq_cst);
    run_next = 0;
}

/* Give back serial s, taken by this thread's last bump_serial, for a block
 * that could not be made (no registry memory): the next block takes it,
 * so serials of the blocks made stay consecutive. The thread is busy, so
 * no handler of its took a serial since (its calls are nested); with one
 * thread the counter is still s, with more this thread's run_next is. */
static void unbump_serial(uint64_t s)
{
    if (PM_I_SINGLE_THREADED()) {
        atomic_compare_exchange_strong_explicit(&serial_counter, &s, s - 1, memory_order_relaxed,
                                                memory_order_relaxed);
    } else {
        __atomic_compare_exchange_n(&run_next, &s, s - 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    }
}

/* Tests: the next serial this thread hands out is `next` (other threads
 * finish the runs they hold). */
static _Atomic int serials_moved; /* set by the hook below: told_before */
void pm_i_debug_set_next_serial(uint64_t next)
{
    atomic_store_explicit(&serials_moved, 1, memory_order_relaxed);
    atomic_store_explicit(&serial_counter, next - 1, memory_order_relaxed);
    drop_run();
}

/* PYMALLOC_BREAK_SERIAL=N: stop in the debugger (SIGTRAP) when block N is
 * allocated or freed. Not inlined, so that the frame is easy to spot. */
__attribute__((noinline)) static void break_on_serial(uint64_t serial)
{
    (void)serial;
    raise(SIGTRAP);
}

static inline void maybe_break(uint64_t serial)
{
    uint64_t b = pm_i_debug_break_serial;
    if (PM_I_UNLIKELY(b != 0) && (serial & PM_I_SERIAL_MASK) == (b & PM_I_SERIAL_MASK))
        break_on_serial(serial);
}

/* A free or realloc (op) of a block found damaged, freed or of another API
 * (e, about to be reported): the break of PYMALLOC_BREAK_SERIAL comes
 * first, as for an intact block, when the block is known (its serial read
 * from its record or side word, not from its trailer, which the damage may
 * have changed), so that a debugger stops before the report and its
 * abort. No lock held. */
static inline void maybe_break_before_report(int op, const pm_i_err *e)
{
    if ((op == OP_FREE || op == OP_REALLOC) && e->known)
        maybe_break(e->serial);
}

/* ---------------------------------------------------------------------------
 * The block layout.
 */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PM_I_BE64(v) (v)
#else
#define PM_I_BE64(v) __builtin_bswap64(v)
#endif

static inline void put_be64(unsigned char *at, uint64_t v)
{
    v = PM_I_BE64(v);
    memcpy(at, &v, 8);
}

static inline uint64_t get_be64(const unsigned char *at)
{
    uint64_t v;
    memcpy(&v, at, 8);
    return PM_I_BE64(v);
}

/* The word at p+N (8 x FD), as it is in memory. */
#define PM_I_FORBIDDEN_WORD UINT64_C(0xFDFDFDFDFDFDFDFD)

static inline void write_header(unsigned char *p, size_t n, uint64_t api_w)
{
    put_be64(p - 16, (uint64_t)n);
    memcpy(p - 8, &api_w, 8);
}

static inline void write_trailer(unsigned char *p, size_t n, uint64_t serial)
{
    uint64_t w = PM_I_FORBIDDEN_WORD;
    memcpy(p + n, &w, 8);
    put_be64(p + n + 8, serial);
}

/* The fast check of a live block of n bytes, API api, whole serial
 * `serial`, against its header and trailer: four word compares. */
static inline int intact_words(const unsigned char *p, size_t n, uint64_t api_w, uint64_t serial)
{
    uint64_t w[4];
    memcpy(&w[0], p - 16, 16);
    memcpy(&w[2], p + n, 16);
    /* One test of the four differences (each word used as it is loaded:
     * fewer registers live, so the free's fast path saves none). */
    return ((w[0] ^ PM_I_BE64((uint64_t)n)) | (w[1] ^ api_w) | (w[2] ^ PM_I_FORBIDDEN_WORD) |
            (w[3] ^ PM_I_BE64(serial))) == 0;
}

static inline int intact(const unsigned char *p, const pm_i_reg_info *in)
{
    return intact_words(p, in->size, API_WORD(in->api), full_serial(in->serial));
}

/* (pm_debug.h) The header and trailer of live block e->address against
 * what its size, API and serial make them, each class's damage apart: the
 * one reading of a damaged block's bytes, for check_bytes and for the
 * reported set (src/report.c), which remembers every class a block had at
 * its report. */
unsigned pm_i_debug_damage(const pm_i_err *e, ptrdiff_t lo[3], ptrdiff_t hi[3])
{
    const unsigned char *p = e->address;
    size_t n = e->size;
    unsigned char head[16], tail[16];
    put_be64(head, (uint64_t)n);
    head[8] = (unsigned char)e->api_found;
    memset(head + 9, PM_I_FORBIDDENBYTE, 7);
    memset(tail, PM_I_FORBIDDENBYTE, 8);
    put_be64(tail + 8, e->serial);
    ptrdiff_t hlo = 0, hhi = 0, tlo = 0, thi = 0;
    int size_field = 0, pad_before = 0, pad_after = 0, serial_field = 0;
    for (int i = 0; i < 16; i++) {
        if (p[i - 16] != head[i]) {
            if (!size_field && !pad_before)
                hlo = i - 16;
            hhi = i - 16;
            *(i < 8 ? &size_field : &pad_before) = 1;
        }
        if (p[n + (size_t)i] != tail[i]) {
            if (!pad_after && !serial_field)
                tlo = (ptrdiff_t)n + i;
            thi = (ptrdiff_t)n + i;
            *(i < 8 ? &pad_after : &serial_field) = 1;
        }
    }
    unsigned mask = 0;
    if (pad_after) {
        mask |= PM_I_REP_OVERFLOW;
        lo[0] = tlo, hi[0] = thi;
    }
    if (pad_before) {
        mask |= PM_I_REP_UNDERFLOW;
        lo[1] = hlo, hi[1] = hhi;
    }
    if ((size_field && !pad_before) || (serial_field && !pad_after)) {
        mask |= PM_I_REP_HEADER;
        int head_side = size_field && !pad_before;
        lo[2] = head_side ? hlo : tlo;
        hi[2] = head_side ? hhi : thi;
    }
    return mask;
}

/* The class of damage a report names, of those in mask (pm_i_debug_damage):
 * the first in the check's order, underflow, overflow, header (CPython
 * checks the pad before the data, then the pad after it); -1 for none.
 * An index of lo[] and hi[], and of damage_class[]. */
static int damage_first(unsigned mask)
{
    return (mask & PM_I_REP_UNDERFLOW) ? 1
           : (mask & PM_I_REP_OVERFLOW) ? 0
           : (mask & PM_I_REP_HEADER)   ? 2
                                        : -1;
}

static const pm_error_class damage_class[3] = {PM_ERR_BUFFER_OVERFLOW, PM_ERR_BUFFER_UNDERFLOW,
                                               PM_ERR_HEADER_CORRUPT};

/* e names its damage of class i (damage_first's index), with that class's
 * first and last damaged offsets (pm_i_debug_damage's lo[i], hi[i]). */
static void name_damage(pm_i_err *e, int i, const ptrdiff_t lo[3], const ptrdiff_t hi[3])
{
    e->error = damage_class[i];
    e->offset = lo[i];
    e->last = hi[i];
}

/* The header and trailer of live block e->address (known and readable: its
 * size, serial and API in e) against what they should hold; 0 or the
 * class of the damage, with its first and last damaged offsets in e. An
 * overflow past the end is named as such even with the size field damaged
 * too; the size or serial field alone is header damage. */
static pm_error_class check_bytes(pm_i_err *e)
{
    ptrdiff_t lo[3], hi[3];
    int i = damage_first(pm_i_debug_damage(e, lo, hi));
    if (i < 0)
        return PM_ERR_NONE;
    name_damage(e, i, lo, hi);
    return e->error;
}

struct prev_search {
    uintptr_t chunk; /* the chunk whose predecessor is sought */
    int found;
};

static const dbg *dbg_of_api(char api);

static void prev_one(uintptr_t data, const pm_i_reg_info *in, void *arg)
{
    struct prev_search *ps = arg;
    const unsigned char *base = (const unsigned char *)data - in->offset;
    const dbg *g = dbg_of_api(in->api);
    /* Only the C library's blocks have a chunk header to read (an
     * allocator of the user's may have nothing mapped before a block). */
    if (g == NULL || g->libc_below == 0 || (g->libc_below == 2 && pm_i_pool_owns(base)))
        return;
    size_t word = ((const size_t *)base)[-1];
    if (!(word & 2) && (word & ~(size_t)7) >= 32 &&
        (uintptr_t)base - 16 + (word & ~(size_t)7) == ps->chunk)
        ps->found = 1;
}

/* The chunk before `base`'s looked damaged (pm_i_libc_header_ok: 2): real
 * damage if the chunk before is a live block of ours (glibc then leaves this chunk's
 * PREV_INUSE bit and prev_size alone: no race can explain them, once the
 * header is read again: see below_header_ok), which a
 * search of the registry tells (the lock of `held`, base's stripe, is this
 * thread's). Otherwise the failure may be glibc's own change of that word,
 * made by another thread freeing or taking the chunk before, read half
 * done: not damage. Only on a failure: it reads every record. */
__attribute__((noinline)) static int prev_damage_confirmed(const unsigned char *base, void *held)
{
    struct prev_search ps = {(uintptr_t)base - 16, 0};
    pm_i_reg_each_live_but(prev_one, &ps, held != NULL ? held : reg_held_here);
    return ps.found;
}

/* The C library's chunk header before the block at base (data at offset,
 * size bytes) is intact, or cannot be checked: libc_below says whether the
 * block came from the C library (a dbg's libc_below, or a held block's
 * Q_FROM: 1 the C library's, 2 the pools', which pass it their large
 * requests). See pm_i_libc_header_ok (pm_internal.h, modes/raw.c). */
static inline __attribute__((always_inline)) int
chunk_header_ok(int libc_below, const unsigned char *base, size_t offset, size_t size, void *held)
{
    if (libc_below == 0 || atomic_load_explicit(&pm_i_libc_chunk_page, memory_order_relaxed) == 0)
        return 1; /* nothing to check, or the check is off: no tree lookup */
    if (libc_below == 2 && pm_i_pool_owns(base))
        return 1;
    size_t req = offset + size + PM_I_DEBUG_TAIL;
    size_t align = offset > PM_I_DEBUG_HEAD ? offset : 0; /* (memalign_busy) */
    int ok = pm_i_libc_header_ok(base, req, align);
    /* Confirmed, the header is read again: the chunk before may have been
     * taken by another thread (glibc setting this chunk's bit, then that
     * block recorded live) between the first reading and the search. Once
     * it is live, glibc's writes here are done: a second reading that
     * still fails is damage. */
    return PM_I_LIKELY(ok == 1) ||
           (ok == 2 && (!prev_damage_confirmed(base, held) || pm_i_libc_header_ok(base, req, align) == 1));
}

/* The C library's header before registry block p is intact (or cannot be
 * checked): p was allocated through g, whose allocator below is libc's
 * for it. */
static inline __attribute__((always_inline)) int
below_header_ok(const dbg *g, const unsigned char *p, const pm_i_reg_info *in, void *held)
{
    return g == NULL || chunk_header_ok(g->libc_below, p - in->offset, in->offset, in->size, held);
}

/* The hooks of the domain whose API id is api, or NULL. */
static const dbg *dbg_of_api(char api)
{
    switch (api) {
    case 'r': return &dbgs[PM_DOMAIN_RAW];
    case 'm': return &dbgs[PM_DOMAIN_MEM];
    case 'o': return &dbgs[PM_DOMAIN_OBJ];
    default: return NULL;
    }
}

/* Classify pointer p for an operation by API `api` (0: any API, for
 * pm_check_block). The stripe lock of p is held. */
static pm_error_class classify(const void *p, const pm_i_reg_info *in, char api, int op,
                               pm_i_err *e)
{
    memset(e, 0, sizeof *e);
    e->address = p;
    e->api_expected = api != 0 ? api : in->api;
    if (in->state == PM_I_REG_EMPTY)
        return e->error = PM_ERR_INVALID_POINTER;
    e->known = 1;
    e->size = in->size;
    e->serial = full_serial(in->serial);
    e->api_found = in->api;
    if (in->state == PM_I_REG_FREED) {
        e->quarantined = in->held;
        return e->error = (op == OP_FREE ? PM_ERR_DOUBLE_FREE : PM_ERR_USE_AFTER_FREE);
    }
    e->readable = 1;
    if (api != 0 && in->api != api)
        return e->error = PM_ERR_API_MISMATCH;
    pm_error_class c = check_bytes(e);
    if (c == PM_ERR_NONE && !below_header_ok(dbg_of_api(in->api), p, in, NULL)) {
        /* Our bytes are intact, the C library's header before them is not:
         * most likely a write past the end of the block before. The block
         * is not handed back to libc, whose free would abort on it. */
        e->offset = -(ptrdiff_t)(in->offset + 8);
        e->last = e->offset + 7;
        e->below_header = 1;
        c = PM_ERR_BUFFER_UNDERFLOW;
    }
    return e->error = c;
}


/* ---------------------------------------------------------------------------
 * Side words: what the registry holds, for pool blocks, in one atomic word
 * per block kept by the pool module (modes/pool.h has the packing).
 */

/* Freed and whole: set with SIDE_FREED by the frees that fill the block's
 * data and trailer (p .. p+size+15) with DEADBYTE and give it to the pool
 * itself (pool_below: the pool writes only its link, at p-16, into a free
 * block), so that a malloc taking the block from the pool again checks
 * they still hold it (a write after the free: freed_written). Not set by
 * a realloc that moves the block (its old bytes are not all filled: it is
 * never touched after the allocator below took it), nor for hooks over
 * another allocator (which may write into the blocks it holds). Any live
 * word replaces the whole word.
 * For the check of the heap at exit and at abort, which reads freed
 * blocks while other threads (or a signal handler's caller, this thread)
 * take and free them, the block's first 16 bytes tell whether it is at
 * rest in the pools: a free fills the block (its header with the rest)
 * before the pool links it (a release fence between), and the pool's link
 * is a pair, a word and its complement (pool.h, pm_i_p_link_set), which no
 * fill and no debug header is; a malloc that takes the block writes its
 * header over the link before any other byte of it (header_first: then a
 * release fence). So a freed block whose first 16 bytes hold a pair, read
 * before its bytes and again, unchanged, after them (acquire fences
 * between), with its word unchanged, was neither being filled by a free
 * nor written by a malloc meanwhile (abort_check_freed). */
#define SIDE_FILLED ((uint64_t)1 << 60)
_Static_assert(PM_P_SIDE_API_SHIFT + 2 <= 60 && PM_P_SIDE_STATE_SHIFT > 60,
               "SIDE_FILLED is a bit of its own");
/* A freed pool block the quarantine holds (PYMALLOC_QUARANTINE_POOLS=on):
 * set with SIDE_FILLED by its free, cleared when it leaves intact, just
 * before the pool has it back. The quarantine's walk checks it at exit and
 * abort, the pools' walk leaves it alone (its first 16 bytes are 0xDD, not
 * a link). */
#define SIDE_HELD ((uint64_t)1 << 61)
_Static_assert(PM_P_SIDE_STATE_SHIFT > 61, "SIDE_HELD is a bit of its own");
#define SIDE_STATE_MASK ((uint64_t)3 << PM_P_SIDE_STATE_SHIFT)
#define SIDE_API_MASK ((uint64_t)3 << PM_P_SIDE_API_SHIFT)
#define SIDE_LIVE ((uint64_t)PM_P_SIDE_LIVE << PM_P_SIDE_STATE_SHIFT)
#define SIDE_FREED ((uint64_t)PM_P_SIDE_FREED << PM_P_SIDE_STATE_SHIFT)
_Static_assert(PM_P_SIDE_LIVE == PM_I_REG_LIVE && PM_P_SIDE_FREED == PM_I_REG_FREED,
               "side word states are the registry's");

/* 1 if a domain's hooks wrap the pool allocator (pymalloc_debug): only
 * then have pool blocks side words, and only then is one looked up (set at
 * set-up, before the first allocation). */
static _Atomic int side_any;
/* side_any, and no PYMALLOC_BREAK_SERIAL (read before the hooks go in):
 * dbg_free's fast path (one test for both). */
static _Atomic int side_fast;

/* Freed pool blocks go to the quarantine (PYMALLOC_QUARANTINE_POOLS=on,
 * a budget, not under memcheck): their frees take free_busy, not
 * dbg_free's fast path. */
static int pool_quarantine_on(void)
{
    return pm_i_debug_quarantine_pools && pm_i_debug_quarantine != 0 &&
           !pm_i_pool_valgrind(NULL);
}

static void set_side_any(int on)
{
    atomic_store(&side_any, on);
    atomic_store(&side_fast, on && pm_i_debug_break_serial == 0 && !pool_quarantine_on());
}

/* The side word of debug block p (data address), or NULL: not a pool block
 * with side words (then the registry knows it, or nobody does). */
/* side_of, and with a word, *status = PM_I_SIDE_OK | (pool class + 1) << 2. */
static inline _Atomic uint64_t *side_of_class(const unsigned char *p, int *status)
{
    if (!atomic_load_explicit(&side_any, memory_order_relaxed))
        return NULL;
    /* In integers: p may be any pointer (1, a stack address). */
    return pm_i_pool_side((const void *)((uintptr_t)p - PM_I_DEBUG_HEAD), status);
}

static inline _Atomic uint64_t *side_of(const unsigned char *p)
{
    int status;
    return side_of_class(p, &status);
}

static inline uint64_t side_pack(const dbg *g, size_t n, uint64_t serial)
{
    return (serial & PM_I_SERIAL_MASK) | ((uint64_t)n << PM_P_SIDE_SIZE_SHIFT) | g->side_api |
           SIDE_LIVE;
}

static inline size_t side_size(uint64_t w)
{
    return (size_t)(w >> PM_P_SIDE_SIZE_SHIFT) & PM_P_SIDE_SIZE_MAX;
}

/* Pool block w's word (which held v) loses SIDE_FILLED: the block, freed,
 * is leaked (reported), never checked again. */
static inline void unfilled(_Atomic uint64_t *w, uint64_t v)
{
    atomic_store_explicit(w, v & ~SIDE_FILLED, memory_order_relaxed);
}

static inline void side_unpack(uint64_t w, pm_i_reg_info *in)
{
    in->size = side_size(w);
    in->serial = w & PM_I_SERIAL_MASK;
    in->offset = PM_I_DEBUG_HEAD;
    in->api = "\0rmo"[(w >> PM_P_SIDE_API_SHIFT) & 3];
    in->state = (int)PM_P_SIDE_STATE(w);
    in->held = (w & SIDE_HELD) != 0;
}

static void find_block(const unsigned char *p, pm_i_reg_info *in);

/* Damage in the header of live block p that starts in its size field (a
 * write coming from below): most often a write past the end of the block
 * before it in memory, through that block's trailer. That block, if it is
 * live and its trailer damaged, is the one to name. */
static int damaged_from_below(const pm_i_err *e)
{
    /* The first damaged byte in the size field (p-16 .. p-9): a write from
     * below that began at p-16 leaves the field's high bytes as they were
     * when it writes zeros there (a NUL, small integers), as they are; over
     * a 0-byte block's field, all zeros, such a write leaves no trace at
     * all, and the first damaged byte is the API id's (p-8). */
    return e->known && e->readable &&
           (e->below_header ||
            ((e->error == PM_ERR_BUFFER_UNDERFLOW || e->error == PM_ERR_HEADER_CORRUPT) &&
             (e->offset < -8 || (e->offset == -8 && e->size == 0))));
}

/* Whether a write past a block's end may have gone on past its serial
 * field (field: its 8 bytes as found; serial: what they should hold; last:
 * the last one damaged, 0-7). It may if it reached the field's last byte
 * but one (the last byte alone left as it was is as likely the write's
 * own data holding the serial's low byte, 1 time in 256, as the write's
 * end: a review found a strcpy of text through the block into the next
 * one named as two bugs), or if each byte after the last damaged one is
 * one such a write may have left without a trace: a zero (a write of
 * zeros, a NUL), or the value it put in the last byte it changed (a run of
 * one value). Else the write stopped inside the field: the block above,
 * damaged from below too, was damaged by a bug of its own, an underflow
 * (before 2026-12-07 a 9-byte overflow of one block and a 9-byte
 * underflow of the block above it were taken for one overflow, and the
 * underflow was never reported: found by an audit). */
static int through_serial(const unsigned char *field, uint64_t serial, int last)
{
    if (last >= 6)
        return 1;
    for (int i = last + 1; i < 8; i++) {
        unsigned char b = (unsigned char)(serial >> (8 * (7 - i)));
        if (b != 0 && b != field[last])
            return 0;
    }
    return 1;
}

/* What live block e's own damage (c: its class; e its report, known and
 * readable) says of a write past its end that reached the block above it:
 * 0 none; 1 it was written past its end, through its pad bytes into its
 * serial field, whatever else is damaged in it (an underflow of its own:
 * before 2026-12-07 such a block was passed over, and the block above was
 * reported as an underflow of its own); 2 so, and its header was written
 * from below, from its lowest bytes through its pad: the block was run
 * over whole, and the write may have come from further down, through it.
 * For 1 and 2, e is made its overflow's report.
 * Only a write through the pad bytes into the serial field may have gone
 * on into what follows (a lone damaged byte among the pad bytes is another
 * bug); damage of the serial field alone, the pad bytes intact, came from
 * above (an underflow of the block after it reaching down into this one).
 * The first damaged pad byte is not always the first one, nor the serial's
 * last damaged byte its last one: a write of the value a byte holds leaves
 * no trace (0xFD over a pad byte; zeros over a serial that is a multiple
 * of 256). */
static int overflow_kind(pm_error_class c, pm_i_err *e)
{
    if ((c != PM_ERR_BUFFER_OVERFLOW && c != PM_ERR_BUFFER_UNDERFLOW &&
         c != PM_ERR_HEADER_CORRUPT) ||
        !e->known || !e->readable)
        return 0;
    ptrdiff_t lo[3], hi[3];
    unsigned mask = pm_i_debug_damage(e, lo, hi);
    if (!(mask & PM_I_REP_OVERFLOW) || hi[0] < (ptrdiff_t)e->size + 8 ||
        !through_serial((const unsigned char *)e->address + e->size + 8, e->serial,
                        (int)(hi[0] - (ptrdiff_t)e->size - 8)))
        return 0;
    /* (as damaged_from_below: a 0-byte block's size field, all zeros,
     * keeps no trace of zeros written over it) */
    int from_below = (mask & PM_I_REP_UNDERFLOW) && (lo[1] < -8 || (lo[1] == -8 && e->size == 0));
    e->error = PM_ERR_BUFFER_OVERFLOW;
    e->offset = lo[0];
    e->last = hi[0];
    e->below_header = 0;
    return from_below ? 2 : 1;
}

/* The block before registry block b (base: b's underlying block): a live
 * registry block whose trailer ends at most 64 bytes below b's C library
 * chunk header (the chunk's rounding; it may use the chunk's prev_size
 * word), damaged at its end; the closest, if several are. An aligned
 * block's chunk is cut from a larger one (glibc's memalign): the cut-off
 * start, a free chunk of less than the alignment + 32 bytes, may lie below
 * b's chunk if b is aligned, and the cut-off end above the block's if it
 * is: the search reaches that much further down for them. */
struct before_search {
    uintptr_t lo, hi; /* where its trailer may end (lo: before either cut) */
    uintptr_t best;   /* the end of the closest damaged block found so far */
    pm_i_err found;
    int any;
    int kind;            /* found's overflow_kind */
    size_t found_offset; /* found's offset from its underlying block */
    uintptr_t closest;   /* the end of the closest live block, damaged or not */
};

/* The most glibc's memalign leaves free around an aligned block's chunk
 * (offset: the block's alignment), cut off before or after it. */
static inline uintptr_t memalign_cut(size_t offset)
{
    return offset > PM_I_DEBUG_HEAD ? (uintptr_t)offset + 32 : 0;
}

static void before_one(uintptr_t data, const pm_i_reg_info *in, void *arg)
{
    struct before_search *bs = arg;
    uintptr_t end = data + in->size + PM_I_DEBUG_TAIL, cut = memalign_cut(in->offset);
    uintptr_t lo = bs->lo > cut ? bs->lo - cut : 0;
    if (end < lo || end > bs->hi)
        return;
    if (end > bs->closest)
        bs->closest = end;
    if (end <= bs->best)
        return;
    pm_i_err e;
    int kind = overflow_kind(classify((const void *)data, in, 0, OP_USABLE, &e), &e);
    if (kind != 0) {
        bs->best = end;
        bs->found = e;
        bs->any = 1;
        bs->kind = kind;
        bs->found_offset = in->offset;
    }
}

/* Pool block p (data address) is live and damaged: the class, its report
 * in *e; else (no side word, not live, intact) PM_ERR_NONE. A block freed
 * or taken again meanwhile by another thread (its side word changed while
 * its bytes were read: its 0xDD fill, a new header) is not taken for
 * damage. Reads only the side tree before the block's word, so p may be
 * any address. */
/* Live pool block p, its word w read v (live): its bytes checked into *e,
 * and 1 if w still holds v after they were read (else the block was freed
 * or taken under the check, whose fill looks like damage: 0). */
static int pool_block_read(const unsigned char *p, _Atomic uint64_t *w, uint64_t v, pm_i_err *e)
{
    pm_i_reg_info in;
    side_unpack(v, &in);
    (void)classify(p, &in, 0, OP_USABLE, e);
    atomic_thread_fence(memory_order_acquire); /* the bytes read before the word */
    return atomic_load_explicit(w, memory_order_relaxed) == v;
}

static pm_error_class pool_block_damaged(const unsigned char *p, pm_i_err *e)
{
    _Atomic uint64_t *w = side_of(p);
    if (w == NULL)
        return PM_ERR_NONE;
    uint64_t v = atomic_load_explicit(w, memory_order_acquire);
    if (PM_P_SIDE_STATE(v) != PM_P_SIDE_LIVE || !pool_block_read(p, w, v, e))
        return PM_ERR_NONE;
    return e->error;
}

/* Pool block p's side word w read v, "freed", but its header is still its
 * live one (its size field and API id: a free fills the header, or the
 * pool writes its link there): another thread's free has claimed it and is
 * checking it (side_claim, dbg_free's fast path), and puts the word back
 * to live if it is damaged. Waited for (about 50 ms at most): 1 if the
 * block was in that state, or its word is no longer v (read it again).
 * Else a search from the block above took it for a freed block run over
 * (its header no link, its trailer not 0xDD), went on below it, and named
 * the block above "header corrupt" for the damage this block's overflow
 * did (found by an audit: two threads freeing the two blocks at once). */
static int pool_block_being_freed(const unsigned char *p, _Atomic uint64_t *w, uint64_t v)
{
    if (pm_i_p_vg) /* (memcheck: a freed block's bytes are not to be read) */
        return 0;
    pm_i_reg_info in;
    side_unpack(v, &in);
    if (in.state != PM_I_REG_FREED ||
        get_be64(p - PM_I_DEBUG_HEAD) != in.size || p[-8] != (unsigned char)in.api)
        return atomic_load_explicit(w, memory_order_acquire) != v;
    struct timespec us = {0, 10000};
    for (int i = 0; i < 5000 && atomic_load_explicit(w, memory_order_acquire) == v; i++) {
        if (get_be64(p - PM_I_DEBUG_HEAD) != in.size) /* (filled: freed whole) */
            return 1;
        if (i < 64)
            sched_yield();
        else
            nanosleep(&us, NULL);
    }
    return 1;
}

/* Pool block p is live and was written past its end into its serial field
 * (overflow_kind: 1 or 2 with its report in *e), else 0. */
static int pool_block_overflowed(const unsigned char *p, pm_i_err *e)
{
    _Atomic uint64_t *w = side_of(p);
    if (w == NULL)
        return 0;
    /* While a free is checking it (its word "freed", its header still its
     * own: pool_block_being_freed), or its word changes, waited for and
     * read again, a few times at most; read from a live word, whose bytes
     * a free that finds them damaged leaves as they are. */
    for (int i = 0;; i++) {
        uint64_t v = atomic_load_explicit(w, memory_order_acquire);
        if (PM_P_SIDE_STATE(v) != PM_P_SIDE_LIVE) {
            if (i < 8 && pool_block_being_freed(p, w, v))
                continue;
            return 0;
        }
        if (pool_block_read(p, w, v, e)) /* (or claimed and put back meanwhile, by a
                                            free that found it damaged: no byte written) */
            return overflow_kind(e->error, e);
        if (i == 8)
            return 0;
    }
}

/* The pool block below pool block `base` (an underlying block of class
 * idx) in memory, as a data address: the one before it in its pool, or for
 * a pool's first block the last block of the pool before it in memory (a
 * write past its end goes through that pool's spare tail and this pool's
 * header); NULL if that pool is not in use. Reads only the pools' tree. */
static const unsigned char *pool_block_before(const unsigned char *base, unsigned idx)
{
    size_t size = PM_P_CLASS_SIZE(idx);
    if (((uintptr_t)base & PM_P_POOL_MASK) >= PM_P_HDR + size)
        return base - size + PM_I_DEBUG_HEAD;
    const unsigned char *before =
        (const unsigned char *)((uintptr_t)base & ~PM_P_POOL_MASK) - PM_P_POOL_SIZE;
    unsigned v = pm_i_p_lookup(before);
    if (v == 0)
        return NULL;
    size = PM_P_CLASS_SIZE(v - 1);
    return before + PM_P_HDR + (PM_P_BLOCKS_PER_POOL(size) - 1) * size + PM_I_DEBUG_HEAD;
}

/* Pool block p was written over from below through its whole length, so
 * a write past the end of a block further down may have gone through it.
 * Live: its header from its size field on (damaged_from_below) and its
 * serial field, which the write reached by way of its pad bytes. Freed: its
 * free-list link (its first 16 bytes) and the last byte of its 0xDD fill. */
static int pool_block_run_over(const unsigned char *p)
{
    _Atomic uint64_t *w = side_of(p);
    if (w == NULL)
        return 0;
    pm_i_reg_info in;
    side_unpack(atomic_load_explicit(w, memory_order_acquire), &in);
    const unsigned char *t = p + in.size;
    if (in.state == PM_I_REG_FREED) {
        uint64_t link[2];
        PM_P_VG(VALGRIND_MAKE_MEM_DEFINED(p - PM_I_DEBUG_HEAD, in.size + PM_I_DEBUG_EXTRA));
        memcpy(link, p - PM_I_DEBUG_HEAD, 16);
        int over = (link[0] ^ link[1]) != ~(uint64_t)0 && t[PM_I_DEBUG_TAIL - 1] != PM_I_DEADBYTE;
        PM_P_VG(VALGRIND_MAKE_MEM_NOACCESS(p - PM_I_DEBUG_HEAD, in.size + PM_I_DEBUG_EXTRA));
        return over;
    }
    pm_i_err e;
    if (in.state != PM_I_REG_LIVE || classify(p, &in, 0, OP_USABLE, &e) == PM_ERR_NONE ||
        !damaged_from_below(&e))
        return 0;
    unsigned char serial[8];
    put_be64(serial, full_serial(in.serial));
    int pad = 0, last = -1;
    for (int i = 0; i < 8; i++) {
        pad |= t[i] != PM_I_FORBIDDENBYTE;
        if (t[8 + i] != serial[i])
            last = i;
    }
    return pad && last >= 0 && through_serial(t + 8, full_serial(in.serial), last);
}

/* At most this many blocks run over from below are passed on the way down
 * to the block whose overflow did it: pool blocks (a step reads a side
 * word and the block's 32 guard bytes), and the C library's (a step walks
 * every record of the registry). Past them the lowest block run over is
 * named, its dump saying the write may have come from further down. */
#define BLAME_MAX_RUN_OVER 4096
#define BLAME_MAX_RUN_OVER_REGISTRY 64

/* The live pool block below pool block base (class idx) whose write past
 * its end reached base, maybe through blocks it ran over: 1 with its report
 * in *a, else 0. Reads only blocks the side words say are in use. */
static int blame_pool_below(const unsigned char *base, unsigned idx, pm_i_err *a)
{
    int have = 0; /* a live block run over whole is in *a: the lowest yet */
    for (unsigned k = 0; k <= BLAME_MAX_RUN_OVER; k++) {
        const unsigned char *prev = pool_block_before(base, idx);
        int status;
        if (prev == NULL)
            break;
        pm_i_err cand;
        int kind = pool_block_overflowed(prev, &cand);
        if (kind != 0) {
            *a = cand;
            a->run_over = k;
            a->further_down = kind == 2;
            if (kind == 1)
                return 1;
            have = 1;
        } else if (!pool_block_run_over(prev)) { /* (a freed one run over) */
            break;
        }
        if (side_of_class(prev, &status) == NULL)
            break;
        base = prev - PM_I_DEBUG_HEAD;
        idx = ((unsigned)status >> 2) - 1;
    }
    return have; /* (the write came from below the lowest: named all the same) */
}

/* The live registry block below registry block p (offset: p's from its
 * underlying block, the C library's) written past its end: 1 with its
 * report in *a, else 0. Reads no byte of p's block. */
static int blame_registry_below(const unsigned char *p, size_t offset, pm_i_err *a)
{
    int have = 0;
    /* Down through blocks run over whole (overflow_kind 2), as for pools:
     * one walk of the records a step, on this error path only. The blocks
     * passed are noted as reported (their damage is the named block's
     * write): the next one's search stops at them, one walk, and says
     * nothing more (pm_i_debug_reported_before), rather than walking the
     * same way again. A block is passed once a block below it is found:
     * the one the search stops at is the one named, never noted here
     * (8510e92 noted it when nothing was found below it, and its report
     * was silenced: a victim freed, nothing reported, exit status 0). */
    const void *above = NULL; /* the block the search left, not yet passed */
    uint64_t above_serial = 0;
    for (unsigned k = 0; k <= BLAME_MAX_RUN_OVER_REGISTRY; k++) {
        uintptr_t chunk = (uintptr_t)p - offset - 16, reach = 64 + memalign_cut(offset);
        struct before_search bs = {chunk > reach ? chunk - reach : 0, chunk + 16, 0, {0}, 0, 0, 0, 0};
        pm_i_reg_each_live_but(before_one, &bs, reg_held_here); /* (at abort: the walk's) */
        /* (a live block between the one found and p's, intact: the write
         * that damaged the one found did not reach p's, found by an
         * audit) */
        if (!bs.any || bs.closest != bs.best)
            break;
        if (above != NULL)
            pm_i_debug_note_passed(above, above_serial);
        *a = bs.found;
        a->run_over = k;
        a->further_down = bs.kind == 2;
        have = 1;
        if (bs.kind == 1 || k == BLAME_MAX_RUN_OVER_REGISTRY ||
            pm_i_debug_was_reported(a->address, a->serial))
            break;
        above = a->address;
        above_serial = a->serial;
        p = bs.found.address;
        offset = bs.found_offset;
    }
    return have;
}

/* Fill *a with the report of the block whose overflow damaged block e
 * (damaged_from_below), if it is found: 1, else 0. No lock held. */
static int blame_block_before(const pm_i_err *e, pm_i_err *a)
{
    const unsigned char *p = e->address;
    int status;
    _Atomic uint64_t *w = side_of_class(p, &status);
    if (w != NULL) /* a pool block: the one below it, or further down */
        return blame_pool_below(p - PM_I_DEBUG_HEAD, ((unsigned)status >> 2) - 1, a);
    /* A registry block: its chunk header is the 16 bytes below its
     * underlying block (prev_size, size). The offset is e's block's. The
     * block below ends at most at the size field (its data may fill
     * prev_size) with glibc's malloc, or right at the underlying block
     * with an allocator that keeps no header between its blocks (TSan's,
     * which is libc's malloc in a TSan build: test_debug_blame's zeros
     * into a 0-byte block, malloc_debug, blamed nobody there); in glibc
     * no block ends inside the size field. */
    pm_i_reg_info self;
    find_block(p, &self);
    if (self.state != PM_I_REG_LIVE)
        return 0;
    return blame_registry_below(p, self.offset, a);
}

/* Block e was found with its serial field alone damaged, its pad bytes
 * intact (live), or, freed, the last 8 bytes of its 0xDD alone, where its
 * serial field was: no write past its end did that, which would have gone
 * through the bytes before them first. A write from above did: an
 * underflow of the block after it in memory, down through that block's
 * header (blame_above). */
static int serial_alone(const pm_i_err *e)
{
    return (e->freed_data || (e->error == PM_ERR_HEADER_CORRUPT && e->known && e->readable)) &&
           e->offset >= (ptrdiff_t)e->size + 8;
}

/* A search of the registry for the live block right above block [lo's
 * trailer end]: its chunk (the underlying block's, less glibc's 16 bytes)
 * from lo to hi, the lowest such, if its header is damaged from below. */
struct after_search {
    uintptr_t end;  /* the lower block's trailer end */
    size_t cut;     /* the lower block's memalign_cut */
    uintptr_t best; /* the chunk of the block found (0: none yet) */
    pm_i_err found;
    int any;
};

static void after_one(uintptr_t data, const pm_i_reg_info *in, void *arg)
{
    struct after_search *as = arg;
    uintptr_t chunk = data - in->offset - 16;
    uintptr_t hi = as->end + 64 + as->cut + memalign_cut(in->offset);
    if (chunk + 16 < as->end || chunk > hi || (as->any && chunk >= as->best))
        return;
    pm_i_err e;
    if (classify((const void *)data, in, 0, OP_USABLE, &e) != PM_ERR_NONE &&
        damaged_from_below(&e)) {
        as->best = chunk;
        as->found = e;
        as->any = 1;
    }
}

/* The block after block p (size bytes, offset from its underlying block;
 * live, or freed: its serial field, or the 0xDD there, is what was hit)
 * in memory, if its underflow reached down into p's serial field: live,
 * its header damaged from below (damaged_from_below). 1 with its report in
 * *a, else 0. A pool block's is the next block of its pool. No lock held. */
static int blame_block_after(const unsigned char *p, size_t size, size_t offset, pm_i_err *a)
{
    int status;
    _Atomic uint64_t *w = side_of_class(p, &status);
    if (w != NULL) {
        size_t slot = PM_P_CLASS_SIZE(((unsigned)status >> 2) - 1);
        uintptr_t base = (uintptr_t)p - PM_I_DEBUG_HEAD, off = (base & PM_P_POOL_MASK) + slot;
        if (off < PM_P_HDR || (off - PM_P_HDR) / slot >= PM_P_BLOCKS_PER_POOL(slot))
            return 0; /* its pool's last block */
        const unsigned char *q = (const unsigned char *)(base + slot + PM_I_DEBUG_HEAD);
        return pool_block_damaged(q, a) != PM_ERR_NONE && damaged_from_below(a);
    }
    struct after_search as = {(uintptr_t)p + size + PM_I_DEBUG_TAIL, memalign_cut(offset), 0,
                              {0}, 0};
    pm_i_reg_each_live_but(after_one, &as, reg_held_here);
    if (!as.any)
        return 0;
    *a = as.found;
    return 1;
}

/* e (block p's report: its serial field alone damaged, live, or the 0xDD
 * there of a freed block, offset from its underlying block) becomes the
 * report of the underflow of the block after it that did it, p named as
 * the block below it went on into (next_below), if that is what
 * happened; else it stays. */
static void blame_above(pm_i_err *e, size_t offset)
{
    pm_i_err a;
    if (!blame_block_after(e->address, e->size, offset, &a))
        return;
    a.next_block = e->address;
    a.next_serial = e->serial;
    a.next_below = 1;
    *e = a;
}

/* Whether address a lies in the block whose data starts at data: from its
 * header to the end of its trailer. */
static inline int points_into(uintptr_t a, uintptr_t data, size_t size)
{
    return a + PM_I_DEBUG_HEAD >= data && a < data + size + PM_I_DEBUG_TAIL;
}

/* A search for the block an invalid pointer points into. */
struct inside_search {
    uintptr_t a;    /* the invalid pointer */
    uintptr_t data; /* the block it points into (0: none) */
    size_t size;
    uint64_t serial;
    char api;
};

static void inside_one(uintptr_t data, const pm_i_reg_info *in, void *arg)
{
    struct inside_search *s = arg;
    if (points_into(s->a, data, in->size)) {
        s->data = data;
        s->size = in->size;
        s->serial = full_serial(in->serial);
        s->api = in->api;
    }
}

static void held_inside_one(const qent *h, void *arg)
{
    struct inside_search *s = arg;
    uintptr_t data = (uintptr_t)h->base + Q_OFFSET(h->meta);
    if (points_into(s->a, data, h->size)) {
        s->data = data;
        s->size = h->size;
        s->serial = full_serial(Q_SERIAL(h->meta));
        s->api = dbgs[Q_DOMAIN(h->meta)].api;
    }
}

/* Invalid pointer e points into a block of ours, from its header to the
 * end of its trailer: that block in e->inside*. A pool slot's block from
 * the pools' tree and its side word, live or freed; a live registry block
 * by a search of every record, as blame's (only on this error path; not in
 * a nested call, whose thread may hold a stripe's lock), else a registry
 * block the quarantine holds, by a walk of its shards (q_each: a bounded
 * wait for each lock). Reads no block. No lock held. */
static void locate_inside(pm_i_err *e)
{
    uintptr_t a = (uintptr_t)e->address;
    if (atomic_load_explicit(&side_any, memory_order_relaxed)) {
        const unsigned char *pool = (const unsigned char *)(a & ~(uintptr_t)PM_P_POOL_MASK);
        unsigned v = pm_i_p_lookup(pool);
        if (v != 0) {
            size_t size = PM_P_CLASS_SIZE(v - 1), off = a & PM_P_POOL_MASK;
            if (off < PM_P_HDR || (off - PM_P_HDR) / size >= PM_P_BLOCKS_PER_POOL(size))
                return; /* the pool's header, or its spare tail */
            const unsigned char *data =
                pool + PM_P_HDR + (off - PM_P_HDR) / size * size + PM_I_DEBUG_HEAD;
            _Atomic uint64_t *w = side_of(data);
            if (w == NULL)
                return;
            pm_i_reg_info in;
            side_unpack(atomic_load_explicit(w, memory_order_acquire), &in);
            if ((in.state == PM_I_REG_LIVE || in.state == PM_I_REG_FREED) &&
                points_into(a, (uintptr_t)data, in.size)) {
                e->inside = data;
                e->inside_size = in.size;
                e->inside_serial = full_serial(in.serial);
                e->inside_api = in.api;
                e->inside_freed = in.state == PM_I_REG_FREED;
            }
            return;
        }
    }
    if (e->nested)
        return;
    struct inside_search s = {a, 0, 0, 0, 0};
    pm_i_reg_each_live_but(inside_one, &s, reg_held_here);
    int freed = 0;
    if (s.data == 0) {
        /* A block the quarantine holds (freed: its record is not live). */
        q_each(held_inside_one, &s);
        freed = 1;
    }
    if (s.data != 0) {
        e->inside = (const void *)s.data;
        e->inside_size = s.size;
        e->inside_serial = s.serial;
        e->inside_api = s.api;
        e->inside_freed = freed;
    }
}

/* e becomes the report of the block whose overflow damaged e's block, if
 * that is what happened and that block is found; an invalid pointer's
 * report names the block it points into, if any. No lock held. */
static void blame(pm_i_err *e)
{
    if (PM_I_UNLIKELY(e->error == PM_ERR_INVALID_POINTER)) {
        locate_inside(e);
        return;
    }
    pm_i_err other;
    if (PM_I_UNLIKELY(damaged_from_below(e)) && blame_block_before(e, &other)) {
        other.next_block = e->address;
        other.next_serial = e->serial;
        *e = other;
    } else if (PM_I_UNLIKELY(serial_alone(e))) {
        pm_i_reg_info self;
        find_block(e->address, &self);
        if (self.state == PM_I_REG_LIVE)
            blame_above(e, self.offset);
    }
}

/* One bug, one report, and each call named for what it is. e: a live
 * block's check by op, before blame. A damaged block's free leaks it: the
 * program's next free of it is a double free, and a realloc or
 * pm_check_block of it a use after free (through any domain: its API id
 * does not matter then), not that damage again; e is made so (its offsets
 * the damage's, for the dump). The free of a block all of whose damage a
 * pm_check_block or a failed realloc reported says nothing (1): the
 * program had its report, and the block is leaked all the same; damage of
 * another class written since is reported (e made so), and so is damage
 * mended (pm_check_block found the block whole) and written again. The
 * flags are taken and set in one step, so a pm_check_block racing the
 * block's free makes one report between them. Else 0: report e. */
static int damage_told(int op, pm_i_err *e)
{
    int damage = pm_i_err_is_damage(e->error);
    if ((!damage && e->error != PM_ERR_API_MISMATCH) || !e->known || !e->readable)
        return 0;
    ptrdiff_t lo[3], hi[3];
    unsigned mask = pm_i_debug_damage(e, lo, hi);
    if (mask == 0)
        return 0; /* (an API mismatch of a whole block) */
    unsigned add = op == OP_FREE ? PM_I_REP_FREED : 0;
    if (damage || op == OP_FREE) /* (an API mismatch's dump shows the damage too) */
        add |= mask;
    unsigned old = pm_i_debug_flags_add(e->address, e->serial, add);
    /* the class to name: the first in the check's order, new ones first */
    unsigned fresh = mask & ~old, pick = fresh != 0 ? fresh : mask;
    int i = damage_first(pick);
    if (old & PM_I_REP_FREED) {
        e->error = op == OP_FREE ? PM_ERR_DOUBLE_FREE : PM_ERR_USE_AFTER_FREE;
        e->freed_damaged = 1;
        e->offset = lo[i];
        e->last = hi[i];
        return 0;
    }
    if (!damage || op != OP_FREE || (old & PM_I_REP_CLASSES) == 0)
        return 0;
    if (fresh == 0)
        return 1;
    name_damage(e, i, lo, hi);
    return 0;
}

/* Whether a found error is new is decided by one thread at a time: the
 * free of a block written past its end and the free of the block after
 * it, whose header the write reached, each look in the reported set for
 * the other's finding, then note their own; in two threads at once both
 * looked first, and one overflow was reported twice (0.1 to 0.4% of such
 * pairs freed at once; found by an audit). Held from the first look
 * through the note, not while the report is written (an error handler may
 * wait for another thread). A call nested in this thread's decision (a
 * signal handler's) does not wait for it; another thread waits about 2 s
 * at most (a fork child of a parent that was deciding: the lock stays
 * taken), then decides alone. Only on the error paths. */
static atomic_flag decide_lock = ATOMIC_FLAG_INIT;
static __thread int deciding __attribute__((tls_model("initial-exec")));

static int decide_begin(void)
{
    /* (nested; or this thread holds a registry stripe, which the thread
     * deciding may need for its search: decided alone) */
    if (deciding++ > 0 || reg_held_here != NULL)
        return 0;
    for (int i = 0; i < 2064; i++) {
        if (!atomic_flag_test_and_set_explicit(&decide_lock, memory_order_acquire))
            return 1;
        if (i >= 64) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }
    return 0;
}

static void decide_end(int held)
{
    deciding--;
    if (held)
        atomic_flag_clear_explicit(&decide_lock, memory_order_release);
}

/* Whether e (a live block's check by op, before blame) is to be reported:
 * blamed, and made so (see damage_told). */
static int report_is_new(int op, pm_i_err *e)
{
    if (damage_told(op, e))
        return 0;
    if (e->freed_damaged)
        return 1;
    blame(e);
    /* One bug, one report: the free of the block a reported block's write
     * went on into, or of a block whose overflow (underflow) was reported
     * through the block after (before) it, tells nothing new (the block is
     * leaked all the same). A realloc, which fails, and pm_check_block name
     * it again. */
    if (e->next_block != NULL)
        return !(pm_i_debug_reported_before(e) && op == OP_FREE);
    return !(op == OP_FREE && pm_i_err_is_damage(e->error) &&
             pm_i_debug_was_blamed(e->address, e->serial));
}

static void report(const dbg *g, int op, pm_i_err *e)
{
    int held = decide_begin();
    int fresh = report_is_new(op, e);
    decide_end(held);
    if (!fresh)
        return;
    e->entry = entry_name(g, op);
    pm_i_debug_report(e);
}

/* For a stray write's report (report_bad_link): the pool block below free
 * slot base (class idx) in memory, live or freed, if the hooks know it:
 * e->near and its size, serial and API. Reads only side words. */
static void stray_block_below(const unsigned char *base, unsigned idx, pm_i_err *e)
{
    const unsigned char *prev = pool_block_before(base, idx);
    _Atomic uint64_t *w = prev != NULL ? side_of(prev) : NULL;
    if (w == NULL)
        return;
    pm_i_reg_info in;
    side_unpack(atomic_load_explicit(w, memory_order_acquire), &in);
    if (in.state != PM_I_REG_LIVE && in.state != PM_I_REG_FREED)
        return;
    e->near = prev;
    e->near_size = in.size;
    e->near_serial = full_serial(in.serial);
    e->near_api = in.api;
    e->near_freed = in.state == PM_I_REG_FREED;
}

/* Could link be a free-list link of a block of class idx other than NULL
 * (the end of a list, no evidence: zeros are what a write most often
 * leaves): the start of a slot of a pool of that class in use? Reads only
 * the pools' tree. */
static int link_plausible(uint64_t link, unsigned idx)
{
    if (link == 0 || link != (uint64_t)(uintptr_t)link ||
        pm_i_p_lookup((const void *)(uintptr_t)link) != idx + 1)
        return 0;
    size_t size = PM_P_CLASS_SIZE(idx), off = (size_t)(link & PM_P_POOL_MASK);
    return off >= PM_P_HDR && (off - PM_P_HDR) % size == 0 &&
           (off - PM_P_HDR) / size < PM_P_BLOCKS_PER_POOL(size);
}

/* Where e's free-list link (link_bytes: the link, then its complement;
 * the block of class idx) was written, as offsets from p (p-16 .. p-1)
 * into e->offset .. e->last. A byte of the pair that disagrees with its
 * partner tells that one of the two was written: if one word still holds
 * a link the pool could hold and the other word's does not, the other was
 * written (link_exact); else (a complement of a NULL link left whole
 * tells nothing) the bounds of what may have been (before 2026-12-07
 * every such report said p-16: found by an audit). */
static void link_written(pm_i_err *e, unsigned idx)
{
    uint64_t w[2];
    memcpy(w, e->link_bytes, 16);
    int lo = -1, hi = -1;
    for (int i = 0; i < 8; i++)
        if ((e->link_bytes[i] ^ e->link_bytes[8 + i]) != 0xff) {
            if (lo < 0)
                lo = i;
            hi = i;
        }
    e->link_exact = 0;
    if (lo < 0) { /* (both words written, each the other's complement) */
        e->offset = -(ptrdiff_t)PM_I_DEBUG_HEAD;
        e->last = -1;
        return;
    }
    int first_ok = link_plausible(w[0], idx), second_ok = link_plausible(~w[1], idx);
    ptrdiff_t at = -(ptrdiff_t)PM_I_DEBUG_HEAD;
    /* (a complement of all ones is that of a NULL link, as it was: the
     * link word then may have been written with a link-like value, the
     * bytes named would be the wrong word's: a review) */
    if (first_ok != second_ok && ~w[1] != 0) {
        e->link_exact = 1;
        at += first_ok ? 8 : 0; /* the word that was written */
        e->offset = at + lo;
        e->last = at + hi;
    } else {
        e->offset = at + lo;
        e->last = at + 8 + hi;
    }
}

/* A free pool block (base) of class idx whose free-list link was found
 * damaged (pool.h: pm_i_p_link_checked) by a call of API api (0: none, a
 * thread's exit or pm_trim). The bytes are the pool's: the block is free,
 * and the pool leaks it with the rest of its list. Named as the bug that
 * did it: a write past the end of the block before it in its pool, if that
 * one is live and its trailer damaged; else a write into the freed block
 * (its header: a use after free); or, for a slot no block was handed out
 * from since its pool took its size class (a run carved into a thread's
 * cache, not taken yet: its side word empty), a stray write, with the
 * block below it named (found before 2026-12-05 by an audit: "use after
 * free: the freed 0-byte block (serial 0)"). */
static void report_bad_link(const char *who, char api, unsigned char *base, unsigned idx)
{
    pm_i_err e;
    pm_i_reg_info in;
    if (blame_pool_below(base, idx, &e)) {
        e.entry = who;
        if (api != 0)
            e.api_expected = api;
        if (!pm_i_debug_reported_before(&e)) /* (once: see report) */
            pm_i_debug_report(&e);
        return;
    }
    const unsigned char *p = base + PM_I_DEBUG_HEAD;
    memset(&e, 0, sizeof e);
    e.error = PM_ERR_USE_AFTER_FREE;
    e.entry = who;
    e.address = p;
    e.freed_link = 1;
    e.api_expected = api;
    PM_P_VG(VALGRIND_MAKE_MEM_DEFINED(base, 16)); /* a free block, under memcheck */
    memcpy(e.link_bytes, base, 16);
    PM_P_VG(VALGRIND_MAKE_MEM_NOACCESS(base, 16));
    link_written(&e, idx);
    _Atomic uint64_t *w = side_of(p);
    if (w != NULL) {
        uint64_t v = atomic_load_explicit(w, memory_order_acquire);
        side_unpack(v, &in);
        if (in.state == PM_I_REG_FREED) {
            /* Leaked with its list: not checked again (at exit), whatever
             * its data hold. */
            unfilled(w, v);
            e.known = 1;
            e.size = in.size;
            e.serial = full_serial(in.serial);
            e.api_found = in.api;
            if (api == 0)
                e.api_expected = in.api;
        } else {
            e.error = PM_ERR_STRAY_WRITE;
            e.freed_link = 0;
            e.stray_unused = in.state == PM_I_REG_EMPTY;
            e.size = PM_P_CLASS_SIZE(idx); /* the slot's bytes */
            stray_block_below(base, idx, &e);
        }
    }
    pm_i_debug_report(&e);
}

/* Set when something other than the hooks may take pool blocks the hooks
 * freed, write them and give them back: a caller of the pool allocator
 * itself, which only pm_get_allocator gives out (read while the hooks were
 * not on that domain: pm_i_debug_table_read). From then on the bytes of a
 * freed block are not taken to be the hooks' fill. (An allocator set over
 * the hooks reaches the pool through them, or through such a copy: a mode
 * that puts the pool itself in the table fails once anything was
 * allocated in another mode.) */
static _Atomic int freed_untrusted;

/* The report of freed block p (size data bytes, serial: its full serial,
 * api: its API) written after its free: the bytes that are no longer
 * DEADBYTE, from head bytes before p (its header, which a held block's
 * free filled too; 0 for a pool block back in its pool, whose header is
 * its free-list link) to its trailer's end. */
static void freed_error(const unsigned char *p, size_t head, size_t size, uint64_t serial,
                        char api, pm_i_err *e)
{
    memset(e, 0, sizeof *e);
    int any = 0;
    for (ptrdiff_t i = -(ptrdiff_t)head; i < (ptrdiff_t)(size + PM_I_DEBUG_TAIL); i++) {
        if (p[i] != PM_I_DEADBYTE) {
            if (!any)
                e->offset = i;
            e->last = i;
            any = 1;
        }
    }
    if (!any)
        e->offset = e->last = -1;
    e->error = PM_ERR_USE_AFTER_FREE;
    e->address = p;
    e->known = 1;
    e->freed_data = 1;
    e->size = size;
    e->serial = serial;
    e->api_found = api;
    e->api_expected = api;
}

/* Report e of a freed block found written (taken by a malloc, or leaving
 * the quarantine) is new: not a damage reported through the block below
 * it (once: see report), nor a block the check at exit reported already
 * (PM_I_REP_FREED_WRITTEN: taken or released after it, by the library's
 * own allocation at the end of exit, say). */
static int freed_report_is_new(pm_i_err *e)
{
    if (e->next_block != NULL)
        return !pm_i_debug_reported_before(e);
    return !(pm_i_debug_flags(e->address, e->serial) & PM_I_REP_FREED_WRITTEN);
}

/* Pool block base, just taken from the pool by a malloc or calloc (op)
 * through g, was freed whole (its side word w held v: SIDE_FILLED), and
 * its data or trailer no longer hold DEADBYTE (freed_damaged): a write
 * after its free. Its word loses SIDE_FILLED. Reported, and 1: the block
 * is leaked, never handed out (its word stays freed, so a later free or
 * check of it is named). 0 if the fill is not trusted (freed_untrusted):
 * the block is used. The thread is busy. */
static int freed_written(const dbg *g, int op, unsigned char *base, _Atomic uint64_t *w,
                         uint64_t v)
{
    unfilled(w, v);
    if (atomic_load_explicit(&freed_untrusted, memory_order_relaxed))
        return 0;
    pm_i_reg_info in;
    side_unpack(v, &in);
    pm_i_err e;
    freed_error(base + PM_I_DEBUG_HEAD, 0, in.size, full_serial(in.serial), in.api, &e);
    int from_above = 1; /* damage the block above may have made */
    if (e.offset == -1) {
        /* Nothing written in the block itself: the byte the malloc's check
         * found is past its trailer, in its slot (a block shrunk in place
         * into a slot of a larger class, when no smaller block could be
         * had: realloc_busy's stay), up to the 64 bytes the check reads.
         * The block above's underflow only if it runs, without a gap, up
         * to the slot's last byte; else this block's own write. */
        int cls = pm_i_pool_class_of(base);
        size_t from = in.size + PM_I_DEBUG_TAIL, end = 64, slot_end = 0;
        if (cls >= 0) {
            slot_end = PM_P_CLASS_SIZE(cls) - PM_I_DEBUG_HEAD;
            if (slot_end < end)
                end = slot_end;
        }
        const unsigned char *p = base + PM_I_DEBUG_HEAD;
        int clean_after = 0; /* a DEADBYTE seen after the first damaged byte */
        for (size_t i = from; i < end; i++)
            if (p[i] != PM_I_DEADBYTE) {
                if (e.offset == -1)
                    e.offset = (ptrdiff_t)i;
                e.last = (ptrdiff_t)i;
            } else if (e.offset != -1) {
                clean_after = 1;
            }
        from_above = e.offset != -1 && !clean_after && (size_t)e.last + 1 == slot_end;
    }
    e.api_expected = g->api;
    int held = decide_begin();
    /* (the underflow of the block after it; past the trailer, in the slot
     * of a block shrunk in place, only as from_above says) */
    if (PM_I_UNLIKELY(serial_alone(&e)) && from_above)
        blame_above(&e, PM_I_DEBUG_HEAD);
    e.entry = entry_name(g, op);
    int fresh = freed_report_is_new(&e);
    decide_end(held);
    if (fresh)
        pm_i_debug_report(&e);
    return 1;
}

/* The header of the pool at `pool` (pool.h) is damaged: the pools cannot
 * go on. The likely writer is the last block of the pool before it in
 * memory (a write past its end goes through its trailer into this header):
 * reported if it is live and damaged. Then one line naming the damaged
 * header, and abort(), whatever the error handler (no handler is called:
 * the pool's locks are held, and nothing can be recovered). */
void pm_i_debug_pool_header_damaged(const void *pool, unsigned idx)
{
    /* The pool's locks are held and this ends in abort(): no cancellation
     * at the line's write(2) (never turned on again). */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    const char *who = pm_i_debug_entry != NULL ? pm_i_debug_entry : "pool allocator";
    /* The pool's own start: below its first block, so the previous pool's. */
    const unsigned char *last = pool_block_before(pool, 0);
    /* The writer: that block, live and written past its end; else the
     * pool's first block, live, its header damaged from its lowest bytes
     * (a write before its start, a loop from a negative index, went down
     * through it into the pool's header; before 2026-12-07 the line blamed
     * the pool before it and the block was never named). Reported here,
     * or named as reported before (by the free that leaked it,
     * PYMALLOC_ON_ERROR=report). */
    pm_i_err e;
    const char *how = NULL, *which = NULL;
    const unsigned char *first = (const unsigned char *)pool + PM_P_HDR + PM_I_DEBUG_HEAD;
    if (last != NULL && pool_block_overflowed(last, &e)) {
        how = "past the end";
        which = "the last block of the pool before it";
    } else if (idx < PM_P_NCLASSES && pool_block_damaged(first, &e) != PM_ERR_NONE &&
               damaged_from_below(&e)) {
        how = "before the start";
        which = "the pool's first block";
    }
    int before = how != NULL && pm_i_debug_was_reported(e.address, e.serial);
    if (how != NULL && !before) {
        e.entry = who;
        pm_i_debug_report_print(&e);
    }
    char storage[512];
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
    pm_i_buf_str(&b, "pymalloc: ");
    pm_i_buf_str(&b, who);
    pm_i_buf_str(&b, ": heap damage: the pool allocator's header of the pool at ");
    pm_i_buf_ptr(&b, pool);
    if (idx < PM_P_NCLASSES) {
        pm_i_buf_str(&b, " (");
        pm_i_buf_u64(&b, PM_P_CLASS_SIZE(idx));
        pm_i_buf_str(&b, "-byte blocks)");
    } else {
        pm_i_buf_str(&b, " (an empty pool)");
    }
    if (how != NULL) {
        pm_i_buf_str(&b, " was overwritten by the write ");
        pm_i_buf_str(&b, how);
        pm_i_buf_str(&b, " of the block ");
        if (before) {
            pm_i_buf_str(&b, "at ");
            pm_i_buf_ptr(&b, e.address);
            pm_i_buf_str(&b, " (serial ");
            pm_i_buf_u64(&b, e.serial);
            pm_i_buf_str(&b, "), ");
        } else {
            pm_i_buf_str(&b, "reported above, ");
        }
        pm_i_buf_str(&b, which);
        if (before)
            pm_i_buf_str(&b, ", reported before");
    } else {
        pm_i_buf_str(&b, " was overwritten (by a write past the end of the last block of "
                         "the pool before it?)");
    }
    pm_i_buf_str(&b, "; the pools cannot go on: aborting\n");
    pm_i_buf_flush(&b);
    atomic_store(&pm_i_debug_aborting, 1);
    abort();
}

/* A damaged link the pool's slow paths met in this thread (pool.h:
 * pm_i_p_bad_link), reported once, by the entry point that was running. */
static inline void pool_links_check(const dbg *g, int op)
{
    if (PM_I_UNLIKELY(pm_i_p_bad_link != NULL))
        pm_i_debug_pool_links_report(entry_name(g, op), g->api);
}

void pm_i_debug_pool_links_report(const char *who, char api)
{
    unsigned char *bp = pm_i_p_bad_link;
    if (bp == NULL)
        return;
    pm_i_p_bad_link = NULL;
    /* Leaked with its pool's count: the pool is in use, the tree has its class. */
    report_bad_link(who, api, bp, pm_i_p_lookup(bp) - 1);
}

/* Claim live block p of g's API for a free or realloc: live -> freed, so
 * that no other thread can free it too. Returns its word as it was (live),
 * or 0 after filling e (not live, or another API: nothing changed). */
static inline uint64_t side_claim(const dbg *g, _Atomic uint64_t *w, const unsigned char *p,
                                  int op, pm_i_reg_info *in, pm_i_err *e)
{
    uint64_t v = atomic_load_explicit(w, memory_order_acquire);
    for (;;) {
        if (PM_I_UNLIKELY((v & (SIDE_STATE_MASK | SIDE_API_MASK)) != (SIDE_LIVE | g->side_api)))
            break;
        /* A failure (a concurrent free, realloc or new block) reloads v.
         * With one thread nothing else can change the word in between. */
        uint64_t to = (v & ~SIDE_STATE_MASK) | SIDE_FREED;
        int claimed;
        if (PM_I_SINGLE_THREADED()) {
            atomic_store_explicit(w, to, memory_order_relaxed);
            claimed = 1;
        } else {
            claimed = atomic_compare_exchange_weak_explicit(w, &v, to, memory_order_acq_rel,
                                                            memory_order_acquire);
        }
        if (PM_I_LIKELY(claimed)) {
            side_unpack(v, in);
            if (PM_I_LIKELY(intact(p, in)))
                return v;
            /* Damaged: live again (leaked), and reported. */
            atomic_store_explicit(w, v, memory_order_release);
            break;
        }
    }
    side_unpack(v, in);
    if (classify(p, in, g->api, op, e) == PM_ERR_NONE) /* a concurrent repair */
        e->error = PM_ERR_HEADER_CORRUPT;
    return 0;
}

/* ---------------------------------------------------------------------------
 * The hooks.
 */

/* Record new block p in the registry (reserved: a realloc's, which
 * reserved a record: pm_i_reg_reserve). 0, or -1 if it has no memory. */
__attribute__((noinline)) static int record_in_registry(dbg *g, unsigned char *p, size_t offset,
                                                        size_t n, uint64_t serial, int reserved)
{
    pm_i_reg_info in = {n, serial & PM_I_SERIAL_MASK, offset, g->api, PM_I_REG_LIVE, 0};
    uint64_t h = pm_i_reg_hash((uintptr_t)p);
    void *st = pm_i_reg_lock(h);
    int rc = pm_i_reg_insert(st, h, (uintptr_t)p, &in, reserved);
    pm_i_reg_unlock(st);
    return rc;
}

/* Record new block p (base = p - offset) as live: in its side word if it
 * has one, else in the registry (reserved: see record_in_registry). 0, or
 * -1 if the registry has no memory. */
static inline int record_live(dbg *g, unsigned char *p, size_t offset, size_t n,
                              uint64_t serial, int reserved)
{
    if (PM_I_LIKELY(offset == PM_I_DEBUG_HEAD && n <= PM_P_SIDE_SIZE_MAX)) {
        _Atomic uint64_t *w = side_of(p);
        if (PM_I_LIKELY(w != NULL)) {
            atomic_store_explicit(w, side_pack(g, n, serial), memory_order_release);
            return 0;
        }
    }
    return record_in_registry(g, p, offset, n, serial, reserved);
}

/* Write the header and trailer of new block p and record it. */
static inline __attribute__((always_inline)) void *finish_block(dbg *g, unsigned char *base,
                                                                size_t offset, size_t n)
{
    unsigned char *p = base + offset;
    uint64_t serial = bump_serial();
    write_header(p, n, g->api_w);
    write_trailer(p, n, serial);
    if (PM_I_UNLIKELY(record_live(g, p, offset, n, serial, 0) != 0)) { /* no registry memory */
        unbump_serial(serial);
        below_free_of(g, base);
        return NULL;
    }
    maybe_break(serial);
    return p;
}

/* Byte c over 32 <= len <= 64 bytes at b: four 16-byte stores, the last
 * two overlapping the first two for less than 64. */
typedef unsigned char v16 __attribute__((vector_size(16), aligned(1)));
/* (The pattern is passed by address, never as a vector value: on i386
 * without SSE that would change the ABI, -Wpsabi.) */
static inline void fill_4(unsigned char *b, size_t len, const v16 *v)
{
    memcpy(b, v, 16);
    memcpy(b + 16, v, 16);
    memcpy(b + len - 32, v, 16);
    memcpy(b + len - 16, v, 16);
}

/* Byte c over len > 64 bytes at b: 64 bytes a step in 16-byte stores,
 * then the last 64 bytes (overlapping the step before). Kept stores (the
 * asm hides the pattern from the compiler, and keeps the pattern in its
 * register): a memset call, or rep stos, costs more to start than a
 * pool-sized block. */
#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE__))
#define FILL_BARRIER(q, v) __asm__("" : "+r"(q), "+x"(v))
#elif defined(__aarch64__)
#define FILL_BARRIER(q, v) __asm__("" : "+r"(q), "+w"(v))
#else
#define FILL_BARRIER(q, v) __asm__("" : "+r"(q))
#endif
static inline void fill_long(unsigned char *b, size_t len, const v16 *pv)
{
    v16 v = *pv;
    unsigned char *q = b, *end = b + len;
    do {
        memcpy(q, &v, 16);
        memcpy(q + 16, &v, 16);
        memcpy(q + 32, &v, 16);
        memcpy(q + 48, &v, 16);
        q += 64;
        FILL_BARRIER(q, v);
    } while (end - q > 64);
    fill_4(end - 64, 64, &v);
}

#define PATTERN(c) ((v16){0} + (unsigned char)(c))

/* A malloc taking a freed pool block again checks its first bytes (from
 * p: its data, then the 16 bytes after it), where a write through a
 * pointer kept after the free lands most (a struct's first fields:
 * counts, links): 16 of them for blocks of up to 16 bytes, 32 up to 48,
 * 64 above. Checking every byte (PYMALLOC_CHECK_FREED=all: dead_all)
 * costs 24-37% more time per malloc+free pair of mixed sizes in
 * pymalloc_debug (17.6 -> 21.8 ns LIFO, 24.8 -> 33.8 ns FIFO); a length
 * read from the side word put its load chain in front of the fill
 * (+10-20%). */

/* Whether those first bytes of the freed pool block at p, taken again for
 * a malloc of n bytes, still hold DEADBYTE. The block's class bounds what
 * its free filled (its size + 16: a class holds sizes within 16 bytes of
 * each other) from below: 16 bytes always, over 32 when n > 16, over 64
 * when n > 48. So the loads depend on n alone. */
static inline int dead_intact(const unsigned char *p, size_t n)
{
    v16 dd = PATTERN(PM_I_DEADBYTE), a, b;
    memcpy(&a, p, 16);
    v16 acc = a ^ dd;
    if (n > 16) {
        memcpy(&a, p + 16, 16);
        acc |= a ^ dd;
        if (n > 48) {
            memcpy(&a, p + 32, 16);
            memcpy(&b, p + 48, 16);
            acc |= (a ^ dd) | (b ^ dd);
        }
    }
    uint64_t h[2];
    memcpy(h, &acc, 16);
    return (h[0] | h[1]) == 0;
}

/* Whether all the len >= 16 bytes at p still hold DEADBYTE
 * (PYMALLOC_CHECK_FREED=all): 64 bytes a step, then the last 16. */
static int dead_all(const unsigned char *p, size_t len)
{
    v16 dd = PATTERN(PM_I_DEADBYTE), acc = {0}, a, b, c, d;
    const unsigned char *q = p, *end = p + len;
    for (; end - q > 64; q += 64) {
        memcpy(&a, q, 16);
        memcpy(&b, q + 16, 16);
        memcpy(&c, q + 32, 16);
        memcpy(&d, q + 48, 16);
        acc |= (a ^ dd) | (b ^ dd) | (c ^ dd) | (d ^ dd);
    }
    for (; end - q > 16; q += 16) {
        memcpy(&a, q, 16);
        acc |= a ^ dd;
    }
    memcpy(&a, end - 16, 16);
    acc |= a ^ dd;
    uint64_t h[2];
    memcpy(h, &acc, 16);
    return (h[0] | h[1]) == 0;
}

/* Side word v of a pool block base just taken from the pool by g for a
 * malloc of n bytes: 1 if it was freed whole (SIDE_FILLED) and its first
 * bytes (or, with PYMALLOC_CHECK_FREED=all, any byte its free filled) no
 * longer hold DEADBYTE (freed_written then tells). */
static inline int freed_damaged(const dbg *g, const unsigned char *base, size_t n, uint64_t v)
{
    return PM_I_UNLIKELY((v & SIDE_FILLED) != 0) &&
           (PM_I_UNLIKELY(!dead_intact(base + PM_I_DEBUG_HEAD, n)) ||
            (PM_I_UNLIKELY(g->check_all) &&
             !dead_all(base + PM_I_DEBUG_HEAD, side_size(v) + PM_I_DEBUG_TAIL)));
}

/* Pool block base, just taken from the pool by g for a malloc of n bytes:
 * its header, over the free-list link, before any other byte of it is
 * written (see SIDE_FILLED), then a fence that keeps those writes after
 * it. The block's trailer and side word follow (side_block, finish_block,
 * which write the header again). */
static inline __attribute__((always_inline)) void header_first(const dbg *g,
                                                               unsigned char *base, size_t n)
{
    write_header(base + PM_I_DEBUG_HEAD, n, g->api_w);
    RELEASE_FENCE();
}

/* ---------------------------------------------------------------------------
 * The quarantine (debug_quarantine.h): freed registry blocks held, filled
 * with DEADBYTE, before they go back to the allocator below.
 */
enum { Q_BATCH = 8 };

/* Whether a freed registry block of g of `bytes` underlying bytes is to be
 * held: the C library's (libc below, or the pools below, which pass
 * large requests to it), not an allocator's of the user's, whose frees
 * are its own business. */
static inline int q_takes_bytes(size_t bytes)
{
    return bytes <= atomic_load_explicit(&q_block_max, memory_order_relaxed);
}

static inline int q_takes(const dbg *g, size_t bytes)
{
    return g->quarantine && q_takes_bytes(bytes);
}

/* Whether freed block p (size data bytes) was written after its free:
 * head bytes before p (a held block's header, p-16 .. p-1, which its free
 * filled too; 0 for a pool block back in its pool, whose header is its
 * free-list link) and its first 64 bytes from p (its data, then the 16
 * after it), or (all) every byte, no longer DEADBYTE. */
static int q_damaged(const unsigned char *p, size_t head, size_t size, int all)
{
    size_t len = size + PM_I_DEBUG_TAIL;
    return !dead_all(p - head, head + (all || len <= 64 ? len : 64));
}

/* Held block h (p its data), whose report is e: damage that starts in
 * its header's size field (p-16 .. p-9) came from below, as a write past
 * the end of the block before it in memory does, through that block's
 * trailer (and for the C library's blocks its chunk's size field). That
 * block, if it is live and written to its end, is the one to name (e
 * becomes its report, the held block named as the next one): the held
 * block's damage is its overflow, not a use after free. */
static void q_blame_below(const qent *h, const unsigned char *p, pm_i_err *e)
{
    if (e->offset >= -8)
        return;
    pm_i_err a;
    int found;
    if (Q_FROM(h->meta) == Q_FROM_SLOT) {
        int status;
        found = side_of_class(p, &status) != NULL &&
                blame_pool_below(h->base, ((unsigned)status >> 2) - 1, &a);
    } else {
        found = blame_registry_below(p, Q_OFFSET(h->meta), &a);
    }
    if (!found)
        return;
    a.next_block = p;
    a.next_serial = e->serial;
    *e = a;
}

/* The report of held block h, written after its free, found by who
 * (g's operation, or g NULL: pm_trim, which has no API of its own, or the
 * check at exit or abort): its use after free, or the overflow of the
 * block below it. */
static void q_error(const dbg *g, const char *who, const qent *h, pm_i_err *e)
{
    const unsigned char *p = h->base + Q_OFFSET(h->meta);
    freed_error(p, PM_I_DEBUG_HEAD, h->size, full_serial(Q_SERIAL(h->meta)),
                dbgs[Q_DOMAIN(h->meta)].api, e);
    e->quarantined = 1;
    q_blame_below(h, p, e);
    if (e->next_block == NULL && serial_alone(e))
        blame_above(e, Q_OFFSET(h->meta));
    e->entry = who;
    if (g != NULL && e->freed_data)
        e->api_expected = g->api;
}

/* The C library's chunk header below held block h (its size field, and
 * the chunk before as glibc's free would read it) is intact, or cannot be
 * checked: h came from the C library (directly, or through the pools,
 * which pass it their large requests), checked as a live block's is
 * (chunk_header_ok). Its free filled its own header (p-16 .. p-1), which
 * q_damaged checks; the chunk header below that (p-offset-16 ..
 * p-offset-1) only glibc reads, and a write past the end of the block
 * below that stopped there (or a stray write into the size field) made
 * glibc's free of h abort with a message of its own ("double free or
 * corruption (out)", "free(): invalid size"), no report naming h. */
static int q_chunk_ok(const qent *h)
{
    int from = Q_FROM(h->meta);
    return from == Q_FROM_SLOT || chunk_header_ok(from, h->base, Q_OFFSET(h->meta), h->size, NULL);
}

/* The report of held block h, found by who (as q_error), whose C library
 * chunk header is damaged (!q_chunk_ok), its own bytes intact: the
 * overflow of the block below it, if that block is live and written past
 * its end (h named as the block it ran into), else the damage of h's
 * chunk header (its first byte is taken to be the size field's). */
static void q_chunk_error(const dbg *g, const char *who, const qent *h, pm_i_err *e)
{
    const unsigned char *p = h->base + Q_OFFSET(h->meta);
    memset(e, 0, sizeof *e);
    e->error = PM_ERR_BUFFER_UNDERFLOW;
    e->address = p;
    e->known = 1;
    e->size = h->size;
    e->serial = full_serial(Q_SERIAL(h->meta));
    e->api_found = dbgs[Q_DOMAIN(h->meta)].api;
    e->api_expected = g != NULL ? g->api : e->api_found;
    e->offset = -(ptrdiff_t)(Q_OFFSET(h->meta) + 8);
    e->last = e->offset + 7;
    e->below_header = 1;
    e->quarantined = 1;
    q_blame_below(h, p, e);
    e->entry = who;
}

/* Held block h leaves the quarantine in g's operation op, checked: intact,
 * it goes back to the allocator below it came from (its record forgotten
 * first: the address may be handed out again at once), and 1; written
 * after its free, 0, or its C library chunk header damaged (q_chunk_ok:
 * checked even with PYMALLOC_CHECK_FREED=off, as glibc's free would abort
 * on it), -1, and nothing done (q_release_all reports it). The thread is
 * busy. */
static inline void libc_next_guard(int libc_below, const unsigned char *base);

static int q_give_back(const dbg *g, int op, const qent *h)
{
    unsigned char *p = h->base + Q_OFFSET(h->meta);
    int from = Q_FROM(h->meta);
    const pm_i_base *below = from == 1 ? &pm_i_raw_base : &pm_i_pool_base;
    if (pm_i_debug_check_freed != 0 &&
        q_damaged(p, PM_I_DEBUG_HEAD, h->size, pm_i_debug_check_freed == 2))
        return 0;
    if (PM_I_UNLIKELY(!q_chunk_ok(h)))
        return -1;
    if (from == Q_FROM_SLOT) {
        /* A pool block: its side word stays freed (and filled) until a
         * malloc takes it again, which checks it once more. */
        int status;
        _Atomic uint64_t *w = pm_i_pool_side(h->base, &status);
        if (w != NULL) /* (only this thread writes a held block's word) */
            atomic_store_explicit(w, atomic_load_explicit(w, memory_order_relaxed) & ~SIDE_HELD,
                                  memory_order_relaxed);
        below->a.free(below->a.ctx, h->base);
        pool_links_check(g, op);
        return 1;
    }
    pm_i_reg_release((uintptr_t)p, Q_SERIAL(h->meta), h->rec);
    libc_next_guard(from, h->base);
    below->a.free(below->a.ctx, h->base);
    return 1;
}

/* The n blocks of out, which left the quarantine: the intact ones go back,
 * then the first written after its free is reported and kept (leaked: a
 * registry block's record stays freed and held, a pool block's side word
 * too, so a later free of it is still a double free), and any other is
 * held again (first: q_hold_again), to be reported when it leaves again,
 * or at exit or abort. So an error handler that leaves by longjmp, or the
 * abort after the report, leaves no block of the batch out of the
 * quarantine, its allocator and the reports. */
static int q_release_all(const dbg *g, int op, const qent *out, int n)
{
    int bad = -1, again = 0, chunk = 0;
    for (int i = 0; i < n; i++) {
        int r = q_give_back(g, op, &out[i]);
        if (r == 1)
            continue;
        if (bad < 0) {
            bad = i;
            chunk = r < 0;
        } else {
            q_hold_again(&out[i]);
            again++;
        }
    }
    if (bad >= 0) {
        pm_i_err e;
        int held = decide_begin();
        if (chunk)
            q_chunk_error(g, entry_name(g, op), &out[bad], &e);
        else
            q_error(g, entry_name(g, op), &out[bad], &e);
        int fresh = freed_report_is_new(&e);
        decide_end(held);
        if (fresh)
            pm_i_debug_report(&e);
    }
    return again;
}

/* The n blocks of out, which left the quarantine, then the rest of those
 * that must (while a batch comes back full). */
static void q_hand_back(const dbg *g, int op, qent *out, int n)
{
    for (;;) {
        (void)q_release_all(g, op, out, n);
        if (n < Q_BATCH)
            return;
        n = q_pop(out, Q_BATCH);
    }
}

/* Every block held when it starts leaves (memory is short below, or
 * pm_trim); those other threads free meanwhile may stay. Damaged blocks
 * held again after the first of their batch was reported leave in another
 * pass (at most 64). Returns how many left. */
static size_t q_drain(const dbg *g, int op)
{
    qent out[Q_BATCH];
    size_t total = 0;
    for (int pass = 0; pass < 64; pass++) {
        int again = 0;
        for (unsigned s = 0; s < Q_SHARDS; s++) {
            unsigned left = UINT_MAX;
            int n;
            while ((n = q_pop_held(s, out, Q_BATCH, &left)) > 0) {
                again += q_release_all(g, op, out, n);
                total += (size_t)n;
            }
        }
        if (again == 0)
            break;
    }
    return total;
}

/* pm_trim: every held block checked and handed back. 1 if any was. */
int pm_i_debug_trim(void)
{
    if (nested() || pm_i_p_busy != 0)
        return 0; /* a signal handler's, inside the hooks or the pools */
    const char *hint = pm_i_debug_entry;
    if (hint == NULL)
        pm_i_debug_entry = "pm_trim";
    busy_enter();
    size_t n = q_drain(NULL, OP_FREE); /* (no API of its own) */
    busy_leave();
    pm_i_debug_entry = hint;
    return n != 0;
}

void pm_i_debug_quarantine_held(size_t *blocks, size_t *bytes)
{
    q_sum(blocks, bytes);
}

struct held_each {
    void (*fn)(const void *base, void *arg);
    void *arg;
};

static void held_each_one(const qent *h, void *arg)
{
    struct held_each *he = arg;
    he->fn(h->base, he->arg);
}

unsigned pm_i_debug_quarantine_each(void (*fn)(const void *base, void *arg), void *arg)
{
    struct held_each he = {fn, arg};
    return q_each(held_each_one, &he);
}

int pm_i_debug_quarantine_stats(size_t *blocks, size_t *bytes, size_t *budget)
{
    int any = 0;
    /* (quarantine: atomic, as pm_set_mode may install a mode meanwhile,
     * which writes it: allowed until the first allocation) */
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        any |= atomic_load(&enabled[d]) && __atomic_load_n(&dbgs[d].quarantine, __ATOMIC_RELAXED);
    *budget = atomic_load_explicit(&q_budget, memory_order_relaxed);
    if (!any || *budget == 0)
        return 0;
    q_sum(blocks, bytes); /* (no lock: safe in a signal handler) */
    return 1;
}

/* DEADBYTE over a whole freed block (len >= 32 bytes) at b. */
static inline void fill_dead(unsigned char *b, size_t len)
{
    v16 v = PATTERN(PM_I_DEADBYTE);
    if (len <= 64)
        fill_4(b, len, &v);
    else
        fill_long(b, len, &v);
}

/* CLEANBYTE over the n data bytes of a pool-sized block at p, before its
 * trailer is written (a store may run into the trailer's 16 bytes, which
 * are written after). */
static inline void fill_clean(unsigned char *p, size_t n)
{
    v16 v = PATTERN(PM_I_CLEANBYTE);
    if (n <= 16) {
        memcpy(p, &v, 16);
    } else if (n <= 32) {
        memcpy(p, &v, 16);
        memcpy(p + n - 16, &v, 16);
    } else if (n <= 64) {
        fill_4(p, n, &v);
    } else {
        fill_long(p, n, &v);
    }
}

/* Byte c over the n data bytes at p, for blocks of any size: all of them
 * up to FILL_WHOLE_MAX, only the first and last FILL_EDGE bytes above.
 * Writing every byte of a big buffer that a program sizes generously and
 * uses sparingly gives every page of it real memory: sort's 2.9 GB buffer
 * took 2.8 GB of RAM instead of 139 MB, and ran 10x slower (found by an
 * audit). The middle of such a block holds what the allocator below gave
 * (zeros, for fresh memory) instead of the pattern. */
#define FILL_WHOLE_MAX ((size_t)1 << 20)
#define FILL_EDGE ((size_t)64 << 10)
static void fill_span(unsigned char *p, size_t n, unsigned char c)
{
    if (n <= FILL_WHOLE_MAX) {
        memset(p, c, n);
        return;
    }
    memset(p, c, FILL_EDGE);
    memset(p + n - FILL_EDGE, c, FILL_EDGE);
}

/* The header, trailer and side word w of pool block base, just taken, of
 * n data bytes filled. */
static inline __attribute__((always_inline)) void *side_block(const dbg *g, unsigned char *base,
                                                              size_t n, _Atomic uint64_t *w,
                                                              uint64_t serial)
{
    unsigned char *p = base + PM_I_DEBUG_HEAD;
    write_header(p, n, g->api_w);
    write_trailer(p, n, serial);
    atomic_store_explicit(w, side_pack(g, n, serial), memory_order_release);
    return p;
}

/* side_block for a block whose header is written already (header_first). */
static inline __attribute__((always_inline)) void *side_block_tail(const dbg *g,
                                                                   unsigned char *base, size_t n,
                                                                   _Atomic uint64_t *w,
                                                                   uint64_t serial)
{
    unsigned char *p = base + PM_I_DEBUG_HEAD;
    write_trailer(p, n, serial);
    atomic_store_explicit(w, side_pack(g, n, serial), memory_order_release);
    return p;
}

/* Block base, just taken from the pool by a malloc or calloc (op)
 * through g, was written after its free (freed_written): reported, and
 * 1 (it is leaked). Not checked under memcheck, which reports such a
 * write itself (a free pool block is NOACCESS to it). The thread is
 * busy. */
static int pool_block_written(const dbg *g, int op, unsigned char *base, size_t n)
{
    _Atomic uint64_t *w = pm_i_pool_side_new(base);
    if (w == NULL || pm_i_p_vg)
        return 0;
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    if (freed_damaged(g, base, n, v) && freed_written(g, op, base, w, v))
        return 1;
    header_first(g, base, n);
    return 0;
}

/* The C library's self-test of its chunk headers (modes/raw.c,
 * pm_i_libc_header_probe), once, just before the hooks' first request of
 * `total` bytes that it serves: every request when libc is below, the
 * pool's requests over its largest class and aligned ones (total
 * SIZE_MAX) when the pool is. Not at the set-up: a program's first pm_*
 * call may be a signal handler's that interrupted glibc's malloc, and a
 * small block from the pool needs nothing of glibc's. The thread is
 * busy; no lock is held. */
static inline void libc_probe(const dbg *g, size_t total)
{
    if (PM_I_UNLIKELY(!atomic_load_explicit(&pm_i_libc_probed, memory_order_relaxed)) &&
        (g->libc_below == 1 || (g->libc_below == 2 && total > pm_i_p_small_max())))
        pm_i_libc_header_probe();
}

/* The allocator below's malloc of a block for n data bytes, for a malloc
 * or calloc (op) through g; a pool block written after its free is
 * reported and leaked, and another taken (pool_block_written, which also
 * writes the header of the one returned over its link). A damaged link
 * met below (or by dbg_malloc, which emptied the bin first, for the
 * report's handler may allocate) is reported after the call
 * (pool_links_check). Out of memory below: once more after the
 * quarantine's blocks went back. The thread is busy. */
static unsigned char *below_malloc(dbg *g, int op, size_t n)
{
    unsigned char *base;
    libc_probe(g, n + PM_I_DEBUG_EXTRA);
    for (int again = 0;; again = 1) {
        do {
            base = below_malloc_of(g, n + PM_I_DEBUG_EXTRA);
            if (g->pool_below)
                pool_links_check(g, op);
        } while (base != NULL && g->pool_below && pool_block_written(g, op, base, n));
        if (base != NULL || again || q_drain(g, op) == 0)
            return base;
    }
}

/* Malloc, the general way: the allocator below's own malloc, for any
 * allocator below and any size (dbg_malloc tried the pool's cache). The
 * thread is busy. */
static void *malloc_busy(dbg *g, size_t n)
{
    if (n > DEBUG_SIZE_MAX - PM_I_DEBUG_EXTRA)
        return NULL;
    unsigned char *base = below_malloc(g, OP_MALLOC, n);
    if (base == NULL)
        return NULL;
    unsigned char *p = base + PM_I_DEBUG_HEAD;
    /* Under memcheck (whose thread caches are off, so dbg_malloc's fast
     * path never gets a block: every malloc comes here) the data bytes,
     * CLEANBYTE, are undefined to memcheck, as libc's malloc's are: a
     * read of one the program never wrote is reported there. */
    if (PM_I_LIKELY(g->pool_below && n <= PM_P_SIDE_SIZE_MAX)) {
        fill_clean(p, n);
        PM_P_VG(VALGRIND_MAKE_MEM_UNDEFINED(p, n));
        /* A block the pool just returned: a block start, so its side word
         * (if it has one) is found with fewer checks. */
        _Atomic uint64_t *w = pm_i_pool_side_new(base);
        if (PM_I_LIKELY(w != NULL)) {
            uint64_t serial = bump_serial();
            side_block(g, base, n, w, serial);
            maybe_break(serial);
            return p;
        }
    } else {
        fill_span(p, n, PM_I_CLEANBYTE);
        PM_P_VG(VALGRIND_MAKE_MEM_UNDEFINED(p, n));
    }
    return finish_block(g, base, PM_I_DEBUG_HEAD, n);
}

__attribute__((noinline)) static void *malloc_general(dbg *g, size_t n)
{
    busy_enter();
    void *p = malloc_busy(g, n);
    busy_leave();
    return p;
}

/* A nested call's block (see "Calls nested" above), any alignment. */
__attribute__((noinline, cold)) static void *malloc_nested(size_t n, size_t alignment)
{
    return pm_i_early_alloc(n, alignment);
}

/* The same for dbg_malloc: its own arguments, so that its fast path
 * reaches it by a plain jump. */
__attribute__((noinline, cold)) static void *malloc_nested_as(void *ctx, size_t n)
{
    (void)ctx;
    return pm_i_early_alloc(n, PM_I_DEBUG_HEAD);
}

/* dbg_malloc's fast path took pool block base and found its side word w,
 * but this thread's run of serials is used up (serial 0): a new run; or a
 * signal handler's free waited while it took its serial: freed now (by
 * busy_leave). (With PYMALLOC_BREAK_SERIAL the fast path is off:
 * pool_fast.) */
__attribute__((noinline)) static void *malloc_side_slow(const dbg *g, unsigned char *base,
                                                        size_t n, _Atomic uint64_t *w,
                                                        uint64_t serial)
{
    busy_enter();
    if (serial == 0)
        serial = new_run();
    busy_leave();
    return side_block_tail(g, base, n, w, serial);
}

/* dbg_malloc's fast path took pool block base, which has no side word (an
 * arena made before the hooks went in, or whose side mapping could not be
 * made or placed: pool.c, side_arena): its record goes in the registry. */
__attribute__((noinline)) static void *malloc_no_side(dbg *g, unsigned char *base, size_t n)
{
    fill_clean(base + PM_I_DEBUG_HEAD, n);
    busy_enter();
    void *p = finish_block(g, base, PM_I_DEBUG_HEAD, n);
    busy_leave();
    return p;
}

static void *dbg_malloc(void *ctx, size_t n);

/* dbg_malloc's fast path took pool block base, written after its free. */
__attribute__((noinline, cold)) static void *malloc_written(dbg *g, size_t n, unsigned char *base)
{
    busy_enter();
    int leaked = pool_block_written(g, OP_MALLOC, base, n);
    busy_leave();
    if (leaked)
        return dbg_malloc(g, n);
    fill_clean(base + PM_I_DEBUG_HEAD, n);
    busy_enter();
    void *p = finish_block(g, base, PM_I_DEBUG_HEAD, n);
    busy_leave();
    return p;
}

/* dbg_malloc's fast path met a damaged link (q: the tagged block). */
__attribute__((noinline)) static void *malloc_bad_link(dbg *g, size_t n, void *q)
{
    pm_i_p_pop_damaged(q, n + PM_I_DEBUG_EXTRA);
    return malloc_general(g, n); /* reports it, after the call below */
}

/* The fast path: the pool below (pymalloc_debug's mem and obj domains), a
 * block from this thread's cache with a side word. It calls out only in
 * tail position, so it needs no stack frame. */
static void *dbg_malloc(void *ctx, size_t n)
{
    dbg *g = ctx;
    if (nested())
        return malloc_nested_as(ctx, n);
    if (PM_I_LIKELY(g->pool_fast) && PM_I_LIKELY(n <= PM_P_SIDE_SIZE_MAX)) {
        void *bad = NULL;
        unsigned char *base = pm_i_p_pop_split(n + PM_I_DEBUG_EXTRA, 1, &bad);
        if (PM_I_UNLIKELY(bad != NULL))
            return malloc_bad_link(g, n, PM_P_POP_BAD(bad));
        if (PM_I_LIKELY(base != NULL)) {
            _Atomic uint64_t *w = pm_i_pool_side_new(base);
            if (PM_I_UNLIKELY(w == NULL))
                return malloc_no_side(g, base, n);
            if (freed_damaged(g, base, n, atomic_load_explicit(w, memory_order_relaxed)))
                return malloc_written(g, n, base);
            header_first(g, base, n);
            fill_clean(base + PM_I_DEBUG_HEAD, n);
            /* The serial, the thread marked busy for the increment (see
             * "Serial numbers"); a run used up, or a handler's free that
             * waited meanwhile: malloc_side_slow. */
            busy_enter();
            uint64_t serial = serial_take();
            busy_clear();
            if (PM_I_UNLIKELY(serial == 0) || PM_I_UNLIKELY(nested_frees.pending))
                return malloc_side_slow(g, base, n, w, serial);
            return side_block_tail(g, base, n, w, serial);
        }
    }
    return malloc_general(g, n);
}

static void *calloc_busy(dbg *g, size_t n)
{
    if (n > DEBUG_SIZE_MAX - PM_I_DEBUG_EXTRA)
        return NULL;
    unsigned char *base;
    if (g->pool_below && n + PM_I_DEBUG_EXTRA <= pm_i_p_small_max()) {
        /* A pool block, taken as malloc_busy takes one (checked for a
         * write after its free, its header written over its link first),
         * then zeroed: not by the pool's calloc, which would zero a freed
         * block before either (the check at exit reads freed blocks
         * meanwhile: SIDE_FILLED). */
        while ((base = pm_i_p_pop(n + PM_I_DEBUG_EXTRA, 1)) != NULL && !PM_P_POP_IS_BAD(base) &&
               pool_block_written(g, OP_CALLOC, base, n))
            ; /* reported and leaked: the next one */
        if (base != NULL && PM_P_POP_IS_BAD(base)) {
            pm_i_p_pop_damaged(base, n + PM_I_DEBUG_EXTRA); /* reported below */
            base = NULL;
        }
        if (base == NULL && (base = below_malloc(g, OP_CALLOC, n)) == NULL)
            return NULL;
        memset(base + PM_I_DEBUG_HEAD, 0, n); /* (finish_block writes the rest) */
        return finish_block(g, base, PM_I_DEBUG_HEAD, n);
    }
    libc_probe(g, n + PM_I_DEBUG_EXTRA);
    base = below_calloc_of(g, n + PM_I_DEBUG_EXTRA);
    pool_links_check(g, OP_CALLOC);
    if (base == NULL && q_drain(g, OP_CALLOC) != 0) {
        base = below_calloc_of(g, n + PM_I_DEBUG_EXTRA);
        pool_links_check(g, OP_CALLOC);
    }
    if (base == NULL)
        return NULL;
    return finish_block(g, base, PM_I_DEBUG_HEAD, n);
}

static void *dbg_calloc(void *ctx, size_t nelem, size_t elsize)
{
    size_t n = nelem * elsize; /* no overflow: checked by the entry point */
    if (nested())
        return malloc_nested(n, PM_I_DEBUG_HEAD); /* zeroed */
    busy_enter();
    void *p = calloc_busy(ctx, n);
    busy_leave();
    return p;
}

static void *memalign_busy(dbg *g, size_t alignment, size_t n)
{
    if (alignment > DEBUG_SIZE_MAX / 2 || n > DEBUG_SIZE_MAX - alignment - PM_I_DEBUG_TAIL)
        return NULL;
    libc_probe(g, SIZE_MAX);
    unsigned char *base =
        g->below.memalign(g->below.xctx, alignment, alignment + n + PM_I_DEBUG_TAIL);
    if (base == NULL && q_drain(g, OP_MALLOC) != 0)
        base = g->below.memalign(g->below.xctx, alignment, alignment + n + PM_I_DEBUG_TAIL);
    if (base == NULL)
        return NULL;
    fill_span(base + alignment, n, PM_I_CLEANBYTE);
    PM_P_VG(VALGRIND_MAKE_MEM_UNDEFINED(base + alignment, n)); /* as in malloc_general */
    return finish_block(g, base, alignment, n);
}

static void *dbg_memalign(void *ctx, size_t alignment, size_t n)
{
    if (alignment <= PM_I_DEBUG_HEAD)
        return dbg_malloc(ctx, n);
    if (nested())
        return malloc_nested(n, alignment);
    busy_enter();
    void *p = memalign_busy(ctx, alignment, n);
    busy_leave();
    return p;
}

/* glibc's view of the chunks above a block of ours that stays in use after
 * a report (leaked), mended where a write past its end damaged it. The
 * write went through its trailer, the chunk's slack and the prev_size of
 * the chunk after it into that chunk's size word, clearing its PREV_INUSE
 * bit: glibc's free of the chunk below then took this one for free, merged
 * with it and aborted ("corrupted size vs. prev_size", "double free or
 * corruption (!prev)": exit status 134, no summary) although the program
 * went on after the report as PYMALLOC_ON_ERROR=report promises (found by
 * an audit). From the chunk at `chunk` (its underlying block's - 16; its
 * own size word sane), up to `steps` chunks up, through the blocks the
 * write ran over: the bit of the chunk after each is set again, as glibc
 * keeps it while the chunk below is in use, where that chunk is a block
 * of ours in use (its record says so at exactly that address: a size
 * word the write changed but left plausible names no such chunk, and the
 * walk stops there). The blocks walked are leaked, in use for good: no
 * free of theirs clears the bit after this (an atomic or, so that a store
 * of glibc's own to the word, under its arena's lock, is not lost). A
 * size word the write damaged is left as it is: such a block is leaked
 * (its own check reports it), and glibc reads that word only to free it
 * or the chunk below it, both kept from it. Blocks at their usual offset
 * (16) only; not an mmapped chunk. No lock held; on the error path. */
static int ours_in_use(uintptr_t chunk)
{
    pm_i_reg_info in;
    find_block((const unsigned char *)chunk + 16 + PM_I_DEBUG_HEAD, &in);
    return (in.state == PM_I_REG_LIVE || (in.state == PM_I_REG_FREED && in.held)) &&
           in.offset == PM_I_DEBUG_HEAD &&
           side_of((const unsigned char *)chunk + 16 + PM_I_DEBUG_HEAD) == NULL;
}

static void libc_mend_above(uintptr_t chunk, unsigned steps)
{
    for (unsigned i = 0; i < steps; i++) {
        size_t w = __atomic_load_n((size_t *)chunk + 1, __ATOMIC_RELAXED);
        if ((w & 2) || (w & ~(size_t)7) < 32)
            return;
        uintptr_t next = chunk + (w & ~(size_t)7);
        if (!ours_in_use(next))
            return;
        size_t *nw = (size_t *)next + 1;
        if (!(__atomic_load_n(nw, __ATOMIC_RELAXED) & 1))
            __atomic_fetch_or(nw, (size_t)1, __ATOMIC_RELAXED);
        chunk = next;
    }
}

/* Before glibc frees C library block `base` (checked: its own chunk
 * header sane), the chunk after it, N: glibc's free merges with N if N is
 * free, which it reads in the PREV_INUSE bit of the chunk after N. When N
 * is a block of ours in use whose write past its end cleared that bit
 * (not reported yet: its free or the check at exit will), glibc took N
 * for free and aborted ("corrupted size vs. prev_size": exit status 134,
 * no report, in report mode; found by a review: 13% of the runs of a
 * random program with one overflow). The bit is set again, under N's
 * registry stripe (N's free, which takes it, cannot come in between), if
 * N's record says it is ours and in use and its own size word fits it.
 * On every free of a C library block: a few loads, none past the end of
 * the heap (the break, or a thread arena's heap's mapped size); the
 * look-up when the bit is clear. */
__attribute__((noinline, cold)) static void libc_next_mend(uintptr_t n, uintptr_t nn)
{
    const unsigned char *p = (const unsigned char *)n + 16 + PM_I_DEBUG_HEAD;
    if (side_of(p) != NULL)
        return;
    uint64_t h = pm_i_reg_hash((uintptr_t)p);
    if (pm_i_reg_stripe(h) == reg_held_here)
        return;
    void *st = pm_i_reg_lock(h);
    pm_i_reg_info in;
    pm_i_reg_find(st, h, (uintptr_t)p, &in);
    size_t nw = ((const size_t *)n)[1];
    if ((in.state == PM_I_REG_LIVE || (in.state == PM_I_REG_FREED && in.held)) &&
        in.offset == PM_I_DEBUG_HEAD &&
        pm_i_heap_chunk_fits(nw, in.offset + in.size + PM_I_DEBUG_TAIL) &&
        n + (nw & ~(size_t)7) == nn)
        __atomic_fetch_or((size_t *)nn + 1, (size_t)1, __ATOMIC_RELAXED);
    pm_i_reg_unlock(st);
}

/* Whether glibc's thread arenas' heaps are 64 MiB, aligned to it, their
 * heap_info first: not with the tunable glibc.malloc.hugetlb=2 (or a page
 * size), where glibc 2.35 and later size and align them to 4 huge pages
 * (8 MiB here: the address rounded down to 64 MiB was not mapped, SIGSEGV
 * on a thread's first free; found by a review). Read once, from environ
 * as every variable of ours (no allocation, no lock). */
static int thread_heaps_64m(void)
{
    static _Atomic int known; /* 0 not yet, 1 yes, 2 no */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (PM_I_LIKELY(k != 0))
        return k == 1;
    const char *t = pm_i_getenv("GLIBC_TUNABLES"), *h = t != NULL ? strstr(t, "glibc.malloc.hugetlb=") : NULL;
    k = 1;
    if (h != NULL) {
        h += sizeof "glibc.malloc.hugetlb=" - 1;
        k = (h[0] == '0' || h[0] == '1') && (h[1] == '\0' || h[1] == ':') ? 1 : 2;
    }
    atomic_store_explicit(&known, k, memory_order_relaxed);
    return k == 1;
}

static inline void libc_next_guard(int libc_below, const unsigned char *base)
{
    if (libc_below == 0 || atomic_load_explicit(&pm_i_libc_chunk_page, memory_order_relaxed) == 0)
        return;
    if (libc_below == 2 && pm_i_pool_owns(base))
        return;
    uintptr_t chunk = (uintptr_t)base - 16, brk;
    size_t w = ((const size_t *)chunk)[1];
    if (w & 2)
        return; /* (mmapped) */
    if ((w & 4) && !thread_heaps_64m())
        return;
    if (!(w & 4) && chunk < pm_i_libc_heap_floor)
        return;
    /* The chunk after this one, in use, always has a header (the top
     * chunk's at least); read before the end of the heap, so that a trim
     * in between (which shrinks the top chunk, n maybe) cannot make the
     * chunk after n lie past an end read earlier. */
    uintptr_t n = chunk + (w & ~(size_t)7);
    size_t nw = __atomic_load_n((const size_t *)n + 1, __ATOMIC_RELAXED);
    uintptr_t nn = n + (nw & ~(size_t)7);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (w & 4) {
        /* A thread arena's heap: aligned to 64 MiB, its glibc heap_info
         * first (ar_ptr, prev, size: the bytes mapped for it) */
        uintptr_t heap = chunk & ~(((uintptr_t)64 << 20) - 1);
        size_t size = __atomic_load_n((const size_t *)heap + 2, __ATOMIC_RELAXED);
        if (size > ((size_t)64 << 20) || chunk >= heap + size)
            return;
        brk = heap + size;
    } else {
        brk = (uintptr_t)pm_i_libc_break();
    }
    if ((nw & ~(size_t)7) < 32 || nn + 16 > brk || nn < n)
        return;
    if (PM_I_UNLIKELY(!(((const size_t *)nn)[1] & 1)))
        libc_next_mend(n, nn);
}

/* Registry block p (its record in), reported, stays in use (leaked): the
 * chunk after it mended (libc_mend_above), and those after the writer
 * blame named (e->address, which went on over e->run_over blocks into
 * this one). */
static void libc_keep_in_use(const dbg *g, const unsigned char *p, const pm_i_reg_info *in,
                             const pm_i_err *e)
{
    if (g->libc_below == 0 || atomic_load_explicit(&pm_i_libc_chunk_page, memory_order_relaxed) == 0 ||
        in->offset != PM_I_DEBUG_HEAD)
        return;
    const unsigned char *base = p - in->offset;
    if (g->libc_below == 2 && pm_i_pool_owns(base))
        return;
    size_t word = ((const size_t *)base)[-1];
    if (pm_i_heap_chunk_fits(word, in->offset + in->size + PM_I_DEBUG_TAIL) && !(word & 2))
        libc_mend_above((uintptr_t)base - 16, 1);
    if (e->next_block == p && e->address != p && e->known && side_of(e->address) == NULL) {
        pm_i_reg_info w;
        find_block(e->address, &w);
        const unsigned char *wb = (const unsigned char *)e->address - w.offset;
        if (w.state == PM_I_REG_LIVE && w.offset == PM_I_DEBUG_HEAD &&
            pm_i_heap_chunk_fits(((const size_t *)wb)[-1], w.offset + w.size + PM_I_DEBUG_TAIL) &&
            !(((const size_t *)wb)[-1] & 2))
            libc_mend_above((uintptr_t)wb - 16, e->run_over + 1);
    }
}

/* Look registry block p up and check it for operation op by g. Returns its
 * record with its stripe locked (*st), or NULL after reporting (unlocked,
 * nothing changed: a damaged block is leaked). */
static pm_i_reg_entry *registry_checked(const dbg *g, const unsigned char *p, int op,
                                        pm_i_reg_info *in, void **st)
{
    uint64_t h = pm_i_reg_hash((uintptr_t)p);
    *st = pm_i_reg_lock(h);
    pm_i_reg_entry *r = pm_i_reg_lookup(*st, h, (uintptr_t)p);
    if (PM_I_LIKELY(r != NULL)) {
        pm_i_reg_get(r, in);
        if (PM_I_LIKELY(in->state == PM_I_REG_LIVE && in->api == g->api && intact(p, in) &&
                        below_header_ok(g, p, in, *st)))
            return r;
    } else {
        memset(in, 0, sizeof *in);
        in->state = PM_I_REG_EMPTY;
    }
    pm_i_err e;
    reg_held_here = *st;
    pm_error_class c = classify(p, in, g->api, op, &e);
    reg_held_here = NULL;
    if (c == PM_ERR_NONE)
        return r; /* whole on a second look: the C library's header changed
                     meanwhile (glibc, freeing the chunk before: see
                     pm_i_libc_header_ok) */
    pm_i_reg_unlock(*st);
    maybe_break_before_report(op, &e);
    report(g, op, &e);
    if (in->state == PM_I_REG_LIVE && dbg_of_api(in->api) != NULL)
        libc_keep_in_use(dbg_of_api(in->api), p, in, &e); /* (the block's domain's) */
    return NULL;
}

/* Free, the general way: a side word whose fast path failed (error, or a
 * concurrent change), or a registry block. The thread is busy. */
static inline __attribute__((always_inline)) void free_busy_body(dbg *g, unsigned char *p,
                                                                  _Atomic uint64_t *w)
{
    pm_i_reg_info in;
    pm_i_err e;
    int held = 0;
    uint64_t v = 0;
    void *rec = (void *)w; /* (a hint for the quarantine: where the record is) */
    if (w != NULL) {
        if ((v = side_claim(g, w, p, OP_FREE, &in, &e)) == 0) {
            maybe_break_before_report(OP_FREE, &e);
            report(g, OP_FREE, &e);
            return; /* leaked, or not ours */
        }
        /* (its word stays freed while it is held: a second free of it is
         * a double free) */
        held = g->pool_quarantine && q_takes_bytes(in.offset + in.size + PM_I_DEBUG_TAIL);
    } else {
        void *st;
        pm_i_reg_entry *r = registry_checked(g, p, OP_FREE, &in, &st);
        if (PM_I_UNLIKELY(r == NULL))
            return; /* reported; leaked */
        held = q_takes(g, in.offset + in.size + PM_I_DEBUG_TAIL);
        pm_i_reg_mark_freed_held(st, r, held);
        pm_i_reg_unlock(st);
        rec = r;
    }
    maybe_break(in.serial);
    unsigned char *base = p - in.offset;
    /* The block, header and trailer (of a block over FILL_WHOLE_MAX, the
     * data's first and last FILL_EDGE bytes); not an aligned block's gap
     * before its header (up to the alignment: gigabytes for the largest). */
    memset(p - PM_I_DEBUG_HEAD, PM_I_DEADBYTE, PM_I_DEBUG_HEAD);
    fill_span(p, in.size, PM_I_DEADBYTE);
    memset(p + in.size, PM_I_DEADBYTE, PM_I_DEBUG_TAIL);
    /* (Freed: no one else writes the word, so a store, not a locked or.) */
    if (w != NULL && (g->filled != 0 || held))
        atomic_store_explicit(w, (v & ~SIDE_STATE_MASK) | SIDE_FREED | g->filled |
                                     (held ? SIDE_HELD : 0),
                              memory_order_release);
    if (held) {
        /* Into the quarantine (filled first: it may leave at once, from
         * another thread's free), and the oldest blocks out of it. */
        qent h = {base, in.size,
                  Q_META(in.serial, g - dbgs, w != NULL ? Q_FROM_SLOT : g->libc_below, in.offset),
                  rec};
        qent out[Q_BATCH];
        q_hand_back(g, OP_FREE, out, q_push(&h, out, Q_BATCH));
    } else {
        if (w == NULL)
            libc_next_guard(g->libc_below, base);
        below_free_of(g, base);
    }
    pool_links_check(g, OP_FREE);
}

/* Keeps errno (see dbg_free): saved here, in a function that has a stack
 * frame anyway (in free_slow it cost 22 instructions a free: the call that
 * finds errno made it keep its arguments in saved registers). */
__attribute__((noinline)) static void free_busy(dbg *g, unsigned char *p, _Atomic uint64_t *w)
{
    int saved = errno;
    free_busy_body(g, p, w);
    errno = saved;
}

/* A nested call's block (see "Calls nested" above), errno kept. */
__attribute__((noinline, cold)) static void free_early(void *p)
{
    int saved = errno;
    pm_i_early_free(p);
    errno = saved;
}

/* (Keeps errno: free_early and free_busy save it, busy_leave's frees of
 * deferred blocks are dbg_free's.) */
__attribute__((noinline)) static void free_slow(dbg *g, unsigned char *p, _Atomic uint64_t *w)
{
    if (PM_I_UNLIKELY(pm_i_early_owns(p))) {
        free_early(p);
        return;
    }
    busy_enter();
    free_busy(g, p, w);
    busy_leave();
}

/* A nested call's free (see "Calls nested" above): an early block at once,
 * any other when the interrupted call leaves its busy part. */
__attribute__((noinline, cold)) static void free_nested(dbg *g, void *p)
{
    if (pm_i_early_owns(p))
        free_early(p);
    else if (p != NULL) /* (no system call: errno kept) */
        (void)pm_i_defer_push(&nested_frees, p, nested_entry(), (unsigned)(g - dbgs));
}

/* dbg_free's fast path claimed block p (live -> freed, with g->filled)
 * and found it damaged: its word live again (the block leaked), then the
 * report. The word and its live value are found again here, so that the
 * fast path keeps no register for either past the claim. No other thread
 * changes a claimed word. (A live word's SIDE_FILLED, if it had one, is
 * not put back: that bit means something in a freed word only.) */
__attribute__((noinline, cold)) static void free_damaged(dbg *g, unsigned char *p)
{
    int saved = errno;
    int status;
    _Atomic uint64_t *w = pm_i_pool_side((const void *)((uintptr_t)p - PM_I_DEBUG_HEAD), &status);
    uint64_t v = (atomic_load_explicit(w, memory_order_relaxed) ^ (SIDE_LIVE | SIDE_FREED)) &
                 ~g->filled;
    atomic_store_explicit(w, v, memory_order_release);
    pm_i_reg_info in;
    pm_i_err e;
    side_unpack(v, &in);
    if (intact(p, &in)) { /* (the fast path's 48-bit serial: past 2^48) */
        free_slow(g, p, w);
        errno = saved;
        return;
    }
    /* Reported from here, the word left live: not by the slow path, whose
     * claim of the word would make it read "freed" again for a while (a
     * search from the block above, blaming this block's overflow, took it
     * for a freed block then: pool_block_being_freed). */
    busy_enter();
    if (classify(p, &in, g->api, OP_FREE, &e) == PM_ERR_NONE) /* a concurrent repair */
        e.error = PM_ERR_HEADER_CORRUPT;
    maybe_break_before_report(OP_FREE, &e);
    report(g, OP_FREE, &e);
    busy_leave();
    errno = saved;
}

/* dbg_free is the library's pm_i_debug_free (src/pm_internal.h): the
 * callers of a domain's free tell the hooks' free by its address. */
#define dbg_free pm_i_debug_free

static void free_deferred(void *p, const char *name, unsigned d)
{
    const char *hint = pm_i_debug_entry;
    pm_i_debug_entry = name;
    dbg_free(&dbgs[d], p);
    pm_i_debug_entry = hint;
}

static __attribute__((noinline, cold)) void drain_nested(void)
{
    pm_i_defer_drain(&nested_frees, free_deferred);
}

/* *w: *v -> to, if it still holds *v (else *v is what it holds). With one
 * thread nothing else can change it between the load and the store. */
static inline int side_swap(_Atomic uint64_t *w, uint64_t *v, uint64_t to)
{
    if (PM_I_SINGLE_THREADED()) {
        atomic_store_explicit(w, to, memory_order_relaxed);
        return 1;
    }
    return atomic_compare_exchange_strong_explicit(w, v, to, memory_order_acq_rel,
                                                   memory_order_relaxed);
}

/* The pool's free slow path (a full bin: a flush), then a report of a
 * damaged link the flush met (ctx: the hooks). */
__attribute__((noinline)) static void pool_free_slow_checked(void *ctx, void *base, unsigned idx)
{
    int saved = errno; /* (see dbg_free) */
    pm_i_p_free_slow(NULL, base, idx);
    pool_links_check(ctx, OP_FREE);
    errno = saved;
}

/* g's allocator below frees block base, then the same report (busy:
 * the allocator below may be the C library's). */
__attribute__((noinline)) static void below_free_checked(const dbg *g, void *base)
{
    int saved = errno; /* (see dbg_free) */
    busy_enter();
    below_free_of(g, base);
    pool_links_check(g, OP_FREE);
    busy_leave();
    errno = saved;
}

/* The fast path: a live pool block of this API, intact, no serial to
 * break on. It calls out only in tail position (built as position-
 * independent code it still saves one register; two before its damaged
 * path found the side word again, free_damaged: 2 instructions a pair).
 * It keeps errno, as free must, by itself: the fast path sets none (nor
 * does the pools' fast path it ends in), and every function it hands a
 * block to saves errno around its work (free_nested, free_slow,
 * pool_free_slow_checked, below_free_checked: reports, the C library's
 * free, an arena given back). So its callers (src/api.c: dom_free; the
 * override's free) call it without saving errno themselves, which put it
 * in a stack frame and cost 28 instructions a pair (90717a9). */
void dbg_free(void *ctx, void *ptr)
{
    dbg *g = ctx;
    unsigned char *p = ptr;
    if (nested()) {
        free_nested(g, p);
        return;
    }
    int status;
    if (PM_I_UNLIKELY(!atomic_load_explicit(&side_fast, memory_order_relaxed))) {
        free_slow(g, p, side_of_class(p, &status)); /* (a serial to break on) */
        return;
    }
    _Atomic uint64_t *w = pm_i_pool_side((const void *)((uintptr_t)p - PM_I_DEBUG_HEAD), &status);
    if (PM_I_LIKELY(w != NULL)) {
        uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
        if (PM_I_LIKELY((v & (SIDE_STATE_MASK | SIDE_API_MASK)) == (SIDE_LIVE | g->side_api)) &&
            PM_I_LIKELY(side_swap(w, &v, (v ^ (SIDE_LIVE | SIDE_FREED)) | g->filled))) {
            size_t n = side_size(v);
            /* The 48 bits as the whole serial: right below 2^48, and a
             * mismatch above takes free_slow, whose check reads the
             * counter (no counter read here). */
            if (PM_I_LIKELY(intact_words(p, n, g->api_w, v & PM_I_SERIAL_MASK))) {
                fill_dead(p - PM_I_DEBUG_HEAD, n + PM_I_DEBUG_EXTRA);
                /* The fill before the free-list link (see SIDE_FILLED). */
                RELEASE_FENCE();
                /* A live side word of ours: a pool block in use, of the
                 * class the side tree gave. */
                /* Tail calls only: this path needs no stack frame. */
                if (PM_I_LIKELY(g->pool_below))
                    pm_i_p_free_block_via(p - PM_I_DEBUG_HEAD, (unsigned)status >> 2,
                                          pool_free_slow_checked, g);
                else
                    below_free_checked(g, p - PM_I_DEBUG_HEAD);
                return;
            }
            free_damaged(g, p); /* live again, then reported */
            return;
        }
    }
    free_slow(g, p, w); /* reports, or a registry block */
}

#define ERASED_SIZE 64

/* Copy len bytes from src to dst, whose bytes are all zero: only the
 * chunks of src (one per page of dst) that are not all zero. */
static void copy_nonzero(unsigned char *dst, const unsigned char *src, size_t len)
{
    enum { CHUNK = 4096 };
    size_t head = (size_t)(-(uintptr_t)dst & (CHUNK - 1));
    if (head > len)
        head = len;
    memcpy(dst, src, head);
    size_t i = head;
    for (; len - i >= CHUNK; i += CHUNK)
        if (src[i] != 0 || memcmp(src + i, src + i + 1, CHUNK - 1) != 0)
            memcpy(dst + i, src + i, CHUNK);
    memcpy(dst + i, src + i, len - i);
}

/* Realloc of live block p (old bytes) as malloc + copy + free, all through
 * the hooks: the new block is recorded before the old one goes, so a
 * failure leaves p as it was. */
static void *realloc_by_copy(void *ctx, unsigned char *p, size_t old, size_t n)
{
    /* Reports are the realloc's (pm_mem_realloc), unless the override
     * named its own entry point (realloc). */
    const char *hint = pm_i_debug_entry;
    if (hint == NULL)
        pm_i_debug_entry = ((const dbg *)ctx)->names[OP_REALLOC];
    size_t keep = old < n ? old : n;
    void *q;
    if (PM_I_LIKELY(keep <= FILL_WHOLE_MAX) || pm_i_p_vg) {
        q = dbg_malloc(ctx, n);
        if (q != NULL)
            memcpy(q, p, keep);
    } else {
        /* A big block (an aligned one, or any while the registry is
         * short): into a zeroed block, copying only the pages that are not
         * all zeros, so that the pages of a big buffer never written
         * (reading them takes no memory) are not given real memory by the
         * copy: a 512 MiB memalign block realloc'd took 512 MiB of RSS,
         * against under 2 MiB in malloc mode. Not under memcheck: the
         * scan would read bytes it holds undefined. */
        q = dbg_calloc(ctx, 1, n);
        if (q != NULL)
            copy_nonzero(q, p, keep);
    }
    if (q == NULL) {
        pm_i_debug_entry = hint;
        return NULL;
    }
    /* Grown bytes over 1 MiB: their first and last FILL_EDGE bytes
     * CLEANBYTE, as realloc_busy fills them (the new block's own fill
     * left the ones next to the old bytes as the allocator gave them). */
    if (n > FILL_WHOLE_MAX && n > old) {
        fill_span((unsigned char *)q + old, n - old, PM_I_CLEANBYTE);
        PM_P_VG(VALGRIND_MAKE_MEM_UNDEFINED((unsigned char *)q + old, n - old));
    }
    dbg_free(ctx, p);
    pm_i_debug_entry = hint;
    return q;
}

/* realloc_busy's answer: the block is to move by malloc + copy + free of
 * its *old bytes (made outside the busy part). */
#define REALLOC_BY_COPY ((void *)(uintptr_t)1)

/* Realloc of p (not an early block). The thread is busy. stay: a shrink
 * whose move found no new block (dbg_realloc): in place where the block
 * allows it. */
static void *realloc_busy(dbg *g, unsigned char *p, size_t n, size_t *old_size, int stay)
{
    pm_i_reg_info in;
    pm_i_err e;
    int in_place = 0, reserved = 0;
    _Atomic uint64_t *w = side_of(p);
    if (PM_I_LIKELY(w != NULL)) {
        /* A pool block (never aligned). From here it is recorded as freed,
         * so a concurrent or later use of p is named; a failure below puts
         * it back. */
        uint64_t v = side_claim(g, w, p, OP_REALLOC, &in, &e);
        if (PM_I_UNLIKELY(v == 0)) {
            maybe_break_before_report(OP_REALLOC, &e);
            report(g, OP_REALLOC, &e);
            return NULL; /* the block is leaked; the caller sees a failure */
        }
        if (n > DEBUG_SIZE_MAX - PM_I_DEBUG_EXTRA) {
            atomic_store_explicit(w, v, memory_order_release);
            return NULL;
        }
        if ((g->pool_below && pm_i_p_vg) ||
            (g->pool_below && !stay &&
             (n + PM_I_DEBUG_EXTRA - 1) >> PM_P_ALIGN_SHIFT !=
                 (in.size + PM_I_DEBUG_EXTRA - 1) >> PM_P_ALIGN_SHIFT) ||
            (!g->pool_below && !(reserved = pm_i_reg_reserve()))) {
            /* The block moves to another class of the pool: by the
             * hooks' own malloc and free, so that the new block is one a
             * malloc checks (freed_damaged) and the old one is filled
             * whole, a write through a pointer kept to it found too (the
             * pool's realloc would copy into a block unchecked, and the
             * old one could not be filled after it took it). Or memcheck
             * runs (the pool below): a realloc always moves there, as its
             * own does, so that a use of the old pointer is a use after
             * free to it. Or, with another allocator below, which may
             * move the block, the registry is short somewhere: the new
             * block may need a record there, which must be made before
             * the old block goes (pm_i_reg_reserve). */
            atomic_store_explicit(w, v, memory_order_release);
            *old_size = in.size;
            return REALLOC_BY_COPY;
        }
        /* The same class of the pool (or a smaller block's, when no block
         * of that class could be had: stay): the block stays where it is. Not
         * the pool's realloc, which moves a block that shrinks to 3/4 of
         * its class or less (CPython's rule; with the 32 bytes of the
         * hooks, 1..4 bytes in the 48-byte class) into another block of
         * the same class, taken unchecked, and gives the old one back
         * half filled. */
        in_place = g->pool_below;
    } else {
        void *st;
        pm_i_reg_entry *r = registry_checked(g, p, OP_REALLOC, &in, &st);
        if (PM_I_UNLIKELY(r == NULL))
            return NULL; /* reported; leaked; the caller sees a failure */
        if (n > DEBUG_SIZE_MAX - PM_I_DEBUG_EXTRA) {
            pm_i_reg_unlock(st);
            return NULL;
        }
        /* A shrink that stays (stay), of a block of the C library's (not
         * a pool's, which its realloc may move): that realloc keeps the
         * address, so the record is rewritten where it is, with no new
         * one needed, even with the registry short. Marked freed and
         * held meanwhile: skipped by the check at exit, a concurrent free
         * of p named a double free, and never forgotten by another
         * thread's insert (which would take a new record). */
        int keep_record = stay && g->libc_below != 0 && !pm_i_pool_owns(p);
        if (in.offset != PM_I_DEBUG_HEAD ||
            (!stay && q_takes(g, in.offset + in.size + PM_I_DEBUG_TAIL)) ||
            (!keep_record && !(reserved = pm_i_reg_reserve()))) {
            /* An aligned block (realloc keeps only 16-byte alignment), or
             * a block the quarantine takes: the hooks' free puts it there,
             * so that a write through a pointer kept to it is found. Or
             * the registry short somewhere (see above). */
            pm_i_reg_unlock(st);
            *old_size = in.size;
            return REALLOC_BY_COPY;
        }
        /* From here the old block is recorded as freed, so a concurrent or
         * later use of p is named; a failure below puts it back. */
        pm_i_reg_mark_freed_held(st, r, keep_record);
        pm_i_reg_unlock(st);
    }

    size_t old = in.size;
    uint64_t old_serial = get_be64(p + old + 8);
    unsigned char save[2 * ERASED_SIZE];
    unsigned char *tail = NULL;
    if (old <= sizeof save) {
        memcpy(save, p, old);
        memset(p, PM_I_DEADBYTE, old);
    } else {
        tail = p + old - ERASED_SIZE;
        memcpy(save, p, ERASED_SIZE);
        memcpy(save + ERASED_SIZE, tail, ERASED_SIZE);
        memset(p, PM_I_DEADBYTE, ERASED_SIZE);
        memset(tail, PM_I_DEADBYTE, ERASED_SIZE);
    }
    memset(p - PM_I_DEBUG_HEAD, PM_I_DEADBYTE, PM_I_DEBUG_HEAD);
    memset(p + old, PM_I_DEADBYTE, PM_I_DEBUG_TAIL);

    unsigned char *base;
    if (in_place) {
        base = p - PM_I_DEBUG_HEAD;
    } else {
        libc_probe(g, n + PM_I_DEBUG_EXTRA);
        base = below_realloc_of(g, p - PM_I_DEBUG_HEAD, n + PM_I_DEBUG_EXTRA);
        pool_links_check(g, OP_REALLOC);
    }
    unsigned char *q;
    size_t size;
    uint64_t serial;
    if (base == NULL) {
        /* The old block is untouched by the allocator: make it whole again. */
        q = p;
        size = old;
        serial = old_serial;
    } else {
        q = base + PM_I_DEBUG_HEAD;
        size = n;
        serial = bump_serial();
    }
    write_header(q, size, g->api_w);
    write_trailer(q, size, serial);
    /* Restore the saved bytes, clipped to the new size. */
    if (old <= sizeof save) {
        memcpy(q, save, old < size ? old : size);
    } else {
        memcpy(q, save, ERASED_SIZE < size ? ERASED_SIZE : size);
        size_t t = old - ERASED_SIZE;
        if (t < size)
            memcpy(q + t, save + ERASED_SIZE, size - t < ERASED_SIZE ? size - t : ERASED_SIZE);
    }
    if (size > old) {
        fill_span(q + old, size - old, PM_I_CLEANBYTE);
        PM_P_VG(VALGRIND_MAKE_MEM_UNDEFINED(q + old, size - old)); /* as in malloc_general */
    }

    /* The new block, or the old one live again (its side word restored, or
     * its registry record replaced). */
    int unrecorded = record_live(g, q, PM_I_DEBUG_HEAD, size, serial, reserved);
    if (reserved)
        pm_i_reg_unreserve();
    if (PM_I_UNLIKELY(unrecorded != 0)) {
        /* A block we cannot record must not be handed out, and the old one
         * may be gone: nothing sane is left to do. */
        static const char msg[] = "pymalloc: debug hooks: out of memory for the block registry\n";
        pm_i_write_all(PM_I_STDERR, msg, sizeof msg - 1);
        abort();
    }
    if (base == NULL)
        return NULL;
    maybe_break(in.serial); /* the old block is gone */
    maybe_break(serial);
    return q;
}

/* Realloc of early block p (a nested call's): into a new block of the
 * hooks (an early one again when nested), p freed if that succeeds. */
__attribute__((noinline)) static void *realloc_early(void *ctx, void *p, size_t n)
{
    void *q = dbg_malloc(ctx, n);
    if (q != NULL) {
        size_t old = pm_i_early_size(p);
        memcpy(q, p, old < n ? old : n);
        pm_i_early_free(p);
    }
    return q;
}

static void *dbg_realloc(void *ctx, void *ptr, size_t n)
{
    if (PM_I_UNLIKELY(pm_i_early_owns(ptr)))
        return realloc_early(ctx, ptr, n);
    if (nested())
        return NULL; /* a block made outside the nested call: kept (ENOMEM) */
    size_t old = 0;
    int saved = errno; /* kept on success: a failed attempt on the way sets it */
    busy_enter();
    void *q = realloc_busy(ctx, ptr, n, &old, 0);
    busy_leave();
    if (PM_I_LIKELY(q != REALLOC_BY_COPY)) {
        if (PM_I_LIKELY(q != NULL))
            errno = saved;
        return q;
    }
    q = realloc_by_copy(ctx, ptr, old, n);
    if (PM_I_UNLIKELY(q == NULL) && n < old && !pm_i_p_vg) {
        /* A shrink that found no new block stays where it is, when the
         * block allows it (not an aligned block; with the registry short,
         * only a pool block or the C library's): glibc's realloc never
         * fails a shrink, and code such as
         * s = realloc(s, len) relies on it when memory is short. (Not
         * under memcheck, whose realloc always moves.) */
        busy_enter();
        q = realloc_busy(ctx, ptr, n, &old, 1);
        busy_leave();
        if (q == REALLOC_BY_COPY) {
            errno = ENOMEM;
            return NULL;
        }
    }
    if (q != NULL)
        errno = saved;
    return q;
}

/* What is known of block p: its side word or its registry record. */
static void find_block(const unsigned char *p, pm_i_reg_info *in)
{
    _Atomic uint64_t *w = side_of(p);
    if (w != NULL) {
        side_unpack(atomic_load_explicit(w, memory_order_acquire), in);
        return;
    }
    uint64_t h = pm_i_reg_hash((uintptr_t)p);
    if (pm_i_reg_stripe(h) == reg_held_here) { /* a walk's callback: this thread's */
        pm_i_reg_find(reg_held_here, h, (uintptr_t)p, in);
        return;
    }
    void *st = pm_i_reg_lock(h);
    pm_i_reg_find(st, h, (uintptr_t)p, in);
    pm_i_reg_unlock(st);
}

/* The answer for block p, whose record is in (its side word's or registry
 * record's): the requested size of a live block, else a report and 0. */
static size_t usable_of(const dbg *g, void *ptr, pm_i_reg_info *in, int is_nested)
{
    pm_i_err e;
    if (in->state == PM_I_REG_LIVE) {
        /* (a block the program freed, damaged: its free reported it and
         * leaked it, so it is live here, and a use after free; unless
         * mended since, which nothing then tells) */
        if (PM_I_LIKELY(!(pm_i_debug_flags(ptr, full_serial(in->serial)) & PM_I_REP_FREED)) ||
            classify(ptr, in, 0, OP_USABLE, &e) == PM_ERR_NONE)
            return in->size; /* exactly what was asked: writing past it is caught */
        e.nested = is_nested;
        report(g, OP_USABLE, &e);
        return 0;
    }
    classify(ptr, in, g->api, OP_USABLE, &e);
    e.nested = is_nested; /* (no blame: only a live block's damage has one) */
    report(g, OP_USABLE, &e);
    return 0;
}

static size_t usable_nested(const dbg *g, void *ptr);

static size_t dbg_usable_size(void *ctx, void *ptr)
{
    if (ptr == NULL)
        return 0;
    if (PM_I_UNLIKELY(pm_i_early_owns(ptr)))
        return pm_i_early_size(ptr);
    if (nested())
        return usable_nested(ctx, ptr);
    pm_i_reg_info in;
    busy_enter();
    find_block(ptr, &in);
    size_t n = usable_of(ctx, ptr, &in, 0);
    busy_leave();
    return n;
}

/* Tries of a stripe's lock by a nested malloc_usable_size, without
 * yielding: the lock may be this very thread's, interrupted, which will
 * never let go while the handler runs. Waiting for it is worse than the
 * header's answer: a first version tried 1000 times, yielding (about a
 * millisecond a block), and a handler that asked about 16 blocks outlasted
 * the profiling timer's period, so the thread ran its handler without end
 * while the other thread waited for the stripe it held (a livelock, 1 run
 * in 8 of prog_signals in malloc_debug). */
#define NESTED_LOCK_TRIES 64

/* malloc_usable_size made inside another call of the malloc family of its
 * thread (a signal handler's: src/override.c, o_nested). The interrupted
 * call may hold the registry stripe of p's record, which find_block would
 * wait for for ever. A pool block's side word needs no lock. A registry
 * block's stripe is tried NESTED_LOCK_TRIES times; taken (or held by this
 * thread in a consistent state: reg_held_here), the answer is
 * dbg_usable_size's, reports included. Else the stripe may be halfway
 * through a change (a rehash unmaps a table): the size is read from the
 * block's own header, as CPython's hooks read it, if the word after it is
 * a domain's API id and 7 forbidden bytes (a live block's, intact); else
 * 0, without a report (a pointer that is not a block of ours, a block the
 * interrupted call is freeing or reallocating: its DEADBYTE fill). The
 * mem domain's allocator, if the hooks are not it, is asked as usual. */
size_t pm_i_debug_usable_size_nested(void *ptr)
{
    void *ctx;
    pm_i_usable_fn fn;
    PM_I_DOMAIN_READ(&pm_i_domains[PM_DOMAIN_MEM], xctx, usable_size, ctx, fn);
    if (fn != dbg_usable_size)
        return fn(ctx, ptr);
    return usable_nested(ctx, ptr);
}

/* The same for the hooks g, and for a nested call of their own
 * (dbg_usable_size). */
static size_t usable_nested(const dbg *g, void *ptr)
{
    const unsigned char *p = ptr;
    pm_i_reg_info in;
    if (pm_i_early_owns(p))
        return pm_i_early_size(p);
    _Atomic uint64_t *w = side_of(p);
    if (w != NULL) {
        side_unpack(atomic_load_explicit(w, memory_order_acquire), &in);
        return usable_of(g, ptr, &in, 1);
    }
    uint64_t h = pm_i_reg_hash((uintptr_t)p);
    stripe *s = pm_i_reg_stripe(h);
    if (s == reg_held_here) {
        pm_i_reg_find(s, h, (uintptr_t)p, &in);
        return usable_of(g, ptr, &in, 1);
    }
    /* (reg_fork_held: this thread took every stripe for fork(), and an
     * atfork handler's allocation may be changing one) */
    if (!reg_fork_held && spin_lock_stripe(s, NESTED_LOCK_TRIES)) {
        pm_i_reg_find(s, h, (uintptr_t)p, &in);
        pm_i_reg_unlock(s);
        return usable_of(g, ptr, &in, 1);
    }
    uint64_t api_w;
    memcpy(&api_w, p - 8, sizeof api_w);
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        if (api_w == dbgs[d].api_w) {
            uint64_t n = get_be64(p - 16);
            return n <= DEBUG_SIZE_MAX ? (size_t)n : 0;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * The check of the heap at abort.
 *
 * The C library's allocator checks its own chunk headers and aborts when it
 * finds one damaged, with a message that names no block: "malloc():
 * corrupted top size", "free(): invalid next size (fast)", "corrupted size
 * vs. prev_size". The damage is most often a write past the end of one of
 * our blocks, through its trailer into the header of the chunk after it: the
 * top chunk or a free one, which no free of ours ever checks (a block in use
 * after it is checked: below_header_ok). The trailer of the block that
 * overflowed is damaged too, but that block may not be freed before the C
 * library trips over the next chunk.
 *
 * So the debug hooks install a SIGABRT handler (only where the program has
 * none: the default action) that checks every live block of the registry,
 * the C library's blocks among them, and reports each damaged one (at most
 * ABORT_REPORTS in full) as "pymalloc: abort: <the bug>", then one line of
 * totals. It prints nothing when every block is intact (an abort of the
 * program's own) and does nothing when the debug layer aborts after its own
 * report. Then SIGABRT's action is the default again and the signal is
 * raised again, to kill the process when the handler returns, as before
 * (for abort(), raise(SIGABRT) and kill -ABRT alike). The reports are not
 * counted and go to no handler: the process is ending. The pools' blocks
 * with side words (pymalloc_debug's) are checked too, after the registry's:
 * the C library never reads them, but a program's own abort (an assert
 * over data a write past a block's end changed) has its cause named.
 * Async-signal-safe: reads, write(2), sched_yield(), a mutex's trylock; no
 * allocation.
 */
enum { ABORT_REPORTS = 8 };

enum { ABORT_SEEN = 64 };
struct abort_scan {
    size_t checked, damaged;
    size_t held;          /* the quarantine's blocks checked */
    size_t freed;         /* the pools' freed blocks checked */
    size_t freed_damaged; /* freed blocks (both kinds) found written */
    size_t leaked_damaged; /* live blocks the program freed, leaked by that
                              free's report, damaged again since */
    size_t before;        /* damaged blocks reported before (and leaked), or
                             counted at exit: not reported again */
    const void *last;     /* the block of the last report */
    int at_exit;          /* the check at exit (below), not at abort */
    int shared;           /* ... of a fork child: leaves out the parent's pages */
    /* At abort, the registry's blocks reported (the first ABORT_SEEN): a
     * block whose overflow damaged the next one is reported once, blamed
     * for the victim, whichever the walk meets first. */
    const void *seen[ABORT_SEEN];
    int nseen;
    int nseen_new; /* seen[0 .. nseen_new): reported by this check; the
                      rest, reported before it (their slots given up to
                      new ones when full) */
};

/* The check at exit's or abort's damaged block e: 1 if it was reported
 * before and has nothing new, else 0 (report e). Damage of a class not
 * reported of it before is named for itself (e made so), and so is any
 * damage of a block a check found whole since its report; a block the
 * program freed since (which leaked it) says so in its dump. A block noted
 * without classes (the victim of another block's overflow, blamed on that
 * one) stays left out, as does a write after the free of a freed one. */
static int told_before(pm_i_err *e)
{
    unsigned f = pm_i_debug_flags(e->address, e->serial);
    if (f == 0)
        return 0;
    if (!pm_i_err_is_damage(e->error) || !e->known || !e->readable || e->below_header)
        return 1;
    /* (a victim's: noted, without classes, neither mended nor freed by the
     * program; a free found an API mismatch: freed, without classes) */
    if (!(f & (PM_I_REP_MENDED | PM_I_REP_CLASSES | PM_I_REP_FREED)))
        return 1;
    ptrdiff_t lo[3], hi[3];
    unsigned mask = pm_i_debug_damage(e, lo, hi);
    unsigned fresh = mask & ~f & PM_I_REP_CLASSES;
    /* Tests only: the serial field's top two bytes alone, once the hook
     * moved the counter (the record keeps the serial's low 48 bits, the
     * rest worked out from the counter: full_serial), are not taken as
     * new damage of a block reported before the move. */
    ptrdiff_t top = (ptrdiff_t)e->size + 8;
    if (fresh == PM_I_REP_HEADER && lo[2] >= top && hi[2] <= top + 1 &&
        atomic_load_explicit(&serials_moved, memory_order_relaxed))
        return 1;
    int i = damage_first(fresh);
    if (i < 0)
        return 1;
    name_damage(e, i, lo, hi);
    e->freed_damaged = (f & PM_I_REP_FREED) != 0;
    return 0;
}

/* Report e of the check at abort: printed (the first ABORT_REPORTS). A
 * block reported already (and leaked, by a report that let the program go
 * on, or counted by a check at exit) is left out, only counted in the
 * totals line (at exit by exit_keep, before any report of this check: a
 * block met again here, reported earlier in this check, is not counted);
 * at exit the others are counted as errors too. */
static int abort_report(struct abort_scan *sc, pm_i_err *e)
{
    if (told_before(e)) {
        if (!sc->at_exit) /* (at exit: counted by exit_keep; met again here) */
            sc->before++;
        return 0;
    }
    e->entry = sc->at_exit ? "exit" : "abort";
    if (sc->at_exit)
        pm_i_debug_count_at_exit(e);
    /* (a freed block: written after its free, or, held, its C library
     * chunk header overwritten, q_chunk_error; before 2026-12-06 the
     * latter was counted as a live block, "never freed") */
    if (e->freed_data || (e->quarantined && e->below_header))
        sc->freed_damaged++;
    else if (e->freed_damaged)
        sc->leaked_damaged++;
    if (++sc->damaged > ABORT_REPORTS)
        return 1;
    pm_i_debug_report_print(e);
    return 1;
}

/* The check at exit's damaged registry blocks, reported after the walk
 * (the process is ending: one thread at a time runs the exit handlers). */
enum { EXIT_PENDING = 256 };
static pm_i_err exit_pending[EXIT_PENDING];
static int exit_pending_n;
static size_t exit_unexamined; /* damaged blocks past EXIT_PENDING */

/* The serial counter when this process was forked (0: not a fork child):
 * the blocks at or below it are the parent's too (the child's counts of
 * errors start at zero: src/report.c). */
static uint64_t exit_min_serial;

/* The parent of this process when it was forked (a fork child), else 0. */
static pid_t forked_from;

/* The check at exit of a fork child leaves out the memory it still shares
 * with its parent, page by page: a page that neither wrote since the fork
 * holds the parent's bytes, so any damage there is the parent's, for the
 * parent to report (parents_damage), and a block there can hold no damage
 * of the child's (a block the child made, freed or wrote has a page it
 * wrote). Before, the child read every block it inherited, to report none
 * of them: 40 ms at the exit of each child of a parent with 80,000 live
 * blocks. /proc/self/pagemap read 512 pages at a time (the entries of a
 * page: bit 63 present, bit 56 mapped by this process alone), into a
 * small cache of one bit per page (1: shared, unchanged); a page not
 * present, or pagemap not readable, is taken as changed. No allocator.
 * The cache maps SHARED_SLOTS_BIG groups (32 GiB of address space, 1.2 MB
 * of cache, only its pages used faulted in) for the check, else, if that
 * mapping fails, the SHARED_SLOTS_MIN of static storage. Before
 * 2026-12-07 it had 128 groups alone, 256 MiB: the walk of the registry,
 * in hash order, missed it for nearly every block past that, a read of
 * pagemap each, and a child's exit with 600,000 blocks of 600 bytes in
 * the parent took 5 s instead of 30 ms (found by an audit). */
enum { SHARED_GROUP = 512, SHARED_SLOTS_MIN = 128, SHARED_SLOTS_BIG = 16384 };
struct shared_slot {
    uintptr_t group_1;                  /* the group of pages (address / page /
                                           SHARED_GROUP), + 1; 0: empty */
    uint64_t shared[SHARED_GROUP / 64]; /* a bit per page of it */
};
static struct shared_slot shared_static[SHARED_SLOTS_MIN];
static struct shared_slot *shared_cache = shared_static;
static size_t shared_mask = SHARED_SLOTS_MIN - 1; /* slots - 1 */
static int shared_fd = -1;
static uintptr_t shared_page;

static int shared_since_fork(uintptr_t a, uintptr_t b);

static void shared_pages_begin(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (forked_from == 0 || ps <= 0)
        return;
    shared_page = (uintptr_t)ps;
    void *big = mmap(NULL, SHARED_SLOTS_BIG * sizeof(struct shared_slot), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big != MAP_FAILED) {
        shared_cache = big;
        shared_mask = SHARED_SLOTS_BIG - 1;
    } else {
        memset(shared_static, 0, sizeof shared_static);
    }
    shared_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    /* The cache's first page, written just now, must read as this
     * process's own: a kernel before 4.2 has no bit 56 (the page shift
     * there, 0 in that bit), where every page would look shared. */
    ((volatile struct shared_slot *)shared_cache)->group_1 = 0;
    uintptr_t first = (uintptr_t)shared_cache;
    if (shared_fd >= 0 && shared_since_fork(first, first)) {
        close(shared_fd);
        shared_fd = -1;
    }
    shared_cache[first / shared_page / SHARED_GROUP & shared_mask].group_1 = 0; /* (read) */
}

static void shared_pages_end(void)
{
    if (shared_fd >= 0)
        close(shared_fd);
    shared_fd = -1;
    if (shared_cache != shared_static)
        munmap(shared_cache, SHARED_SLOTS_BIG * sizeof(struct shared_slot));
    shared_cache = shared_static;
    shared_mask = SHARED_SLOTS_MIN - 1;
}

/* The slot of the group of pages `group`, read if it is not there. */
static const struct shared_slot *shared_group(uintptr_t group)
{
    struct shared_slot *s = &shared_cache[group & shared_mask];
    if (s->group_1 == group + 1)
        return s;
    uint64_t words[SHARED_GROUP]; /* (4 KiB: a read of the kernel's costs the most) */
    ssize_t got = pread(shared_fd, words, sizeof words, (off_t)(group * sizeof words));
    memset(s->shared, 0, sizeof s->shared);
    for (ssize_t i = 0; i < got / (ssize_t)sizeof words[0]; i++)
        if ((words[i] >> 63 & 1) != 0 && (words[i] >> 56 & 1) == 0)
            s->shared[i / 64] |= UINT64_C(1) << (i % 64);
    s->group_1 = group + 1;
    return s;
}

/* Whether every page from a to b (inclusive) is still shared with the
 * parent, unchanged since the fork. */
static int shared_since_fork(uintptr_t a, uintptr_t b)
{
    if (shared_fd < 0 || b < a)
        return 0;
    for (uintptr_t pg = a / shared_page; pg <= b / shared_page; pg++) {
        const struct shared_slot *s = shared_group(pg / SHARED_GROUP);
        uintptr_t i = pg % SHARED_GROUP;
        if ((s->shared[i / 64] >> (i % 64) & 1) == 0)
            return 0;
    }
    return 1;
}

/* pm_i_pool_each_side's skip: a pool whose pages are all the parent's. */
static int pool_shared(const void *pool, size_t len)
{
    return shared_since_fork((uintptr_t)pool, (uintptr_t)pool + len - 1);
}

/* n bytes at `from` in process pid into `to` (process_vm_readv): n, or
 * less, or -1. */
static long read_other(pid_t pid, void *to, const void *from, size_t n)
{
    struct iovec mine = {to, n}, there = {(void *)(uintptr_t)from, n};
    return syscall(SYS_process_vm_readv, (long)pid, &mine, 1UL, &there, 1UL, 0UL);
}

/* Whether the parent this process was forked from has the same bytes from
 * a to b (inclusive; the first 4 KiB of a longer run) at the same
 * addresses, read with process_vm_readv: 1, 0 if they differ, -1 if they
 * cannot be read (the parent gone, or another's since; not allowed, as
 * under Yama's ptrace_scope 1, or by a seccomp filter). Calls no
 * allocator. */
static int parent_has_bytes(uintptr_t a, uintptr_t b)
{
    pid_t parent = forked_from;
    if (parent <= 1 || getppid() != parent)
        return -1;
    size_t len = b - a + 1 < 4096 ? b - a + 1 : 4096;
    unsigned char theirs[256];
    for (size_t done = 0; done < len;) {
        size_t k = len - done < sizeof theirs ? len - done : sizeof theirs;
        if (read_other(parent, theirs, (const void *)(a + done), k) != (long)k)
            return -1;
        if (memcmp(theirs, (const void *)(a + done), k) != 0)
            return 0;
        done += k;
    }
    return 1;
}

/* Whether the parent has changed block e's header (p-16 .. p-1) or serial
 * field since the fork (freed it, or taken it again: a new serial, a new
 * header or free-list link), told by its copy of their bytes outside the
 * damage, a .. b: 1, else 0 (the same, or not read). */
static int parent_changed_block(const pm_i_err *e, uintptr_t a, uintptr_t b)
{
    uintptr_t p = (uintptr_t)e->address;
    uintptr_t lo[2] = {p - PM_I_DEBUG_HEAD, p + e->size + 8};
    for (int r = 0; r < 2; r++) {
        unsigned char theirs[16];
        size_t n = r == 0 ? PM_I_DEBUG_HEAD : 8;
        if (read_other(forked_from, theirs, (const void *)lo[r], n) != (long)n)
            return 0;
        const unsigned char *mine = (const unsigned char *)lo[r];
        for (size_t i = 0; i < n; i++)
            if ((lo[r] + i < a || lo[r] + i > b) && theirs[i] != mine[i])
                return 1;
    }
    return 0;
}

/* Whether damaged block e, found at exit in a fork child, is one its
 * parent made before the fork and whose damage is the parent's: the
 * parent's error, which the parent reports. Told by the pages of the
 * damage (still shared with the parent: neither wrote them since the
 * fork), else by the parent's own bytes there (the same damage). Else the
 * damage is reported here, saying that the block is the parent's too
 * (e->before_fork: 1 the parent's bytes differ, the write was made here
 * after the fork; 2 they could not be read), rather than a child's write
 * into a block it inherited never reported at all. */
static int parents_damage(pm_i_err *e)
{
    if (e->serial > exit_min_serial)
        return 0;
    uintptr_t p = (uintptr_t)e->address;
    uintptr_t a = p + (uintptr_t)e->offset, b = p + (uintptr_t)(e->last > e->offset ? e->last
                                                                                    : e->offset);
    if (shared_since_fork(a, b)) /* (pagemap read at the start of the check) */
        return 1;
    int same = parent_has_bytes(a, b);
    if (same == 1)
        return 1;
    /* The parent's bytes differ, and so does the block there (its free, or
     * a malloc that took it again, wrote over the damage): whose write it
     * was cannot be told. Before 2026-12-07 it was said to be this
     * process's, written after the fork: a clean child claimed a write
     * after free its parent made before forking (found by an audit). */
    if (same == 0 && parent_changed_block(e, a, b))
        same = -2;
    e->before_fork = same == 0 ? 1 : same == -1 ? 2 : 3;
    return 0;
}

/* At exit, damaged block e (the walk's lock held) is kept for after the
 * walks: blame() looks blocks up (locks), and stdio is flushed before the
 * first report, with no lock held (a stream's write may allocate). */
static void exit_keep(struct abort_scan *sc, pm_i_err *e)
{
    if (told_before(e)) {
        sc->before++; /* reported and leaked: no room taken here */
        return;
    }
    if (exit_pending_n == EXIT_PENDING) {
        exit_unexamined++;
        return;
    }
    pm_i_err *k = &exit_pending[exit_pending_n];
    *k = *e;
    if (!parents_damage(k)) /* (a fork child) */
        exit_pending_n++;
}

/* At abort, damaged block e (blamed): reported (abort_report) unless this
 * check met it already (a block blamed for the damage of the one above
 * it is met twice, once through that one). The blocks this check reports
 * keep their place in seen[]; those reported before it (not again, only
 * counted) take what is left, and give it up to new ones when it is full:
 * before 2026-12-07 they filled it, after 64 earlier reports every block
 * met twice was reported twice (found by an audit). */
static void abort_found(struct abort_scan *sc, pm_i_err *e)
{
    for (int i = 0; i < sc->nseen; i++)
        if (sc->seen[i] == e->address)
            return;
    if (abort_report(sc, e)) {
        if (sc->nseen_new == ABORT_SEEN)
            return;
        if (sc->nseen == ABORT_SEEN)
            sc->nseen--; /* (the last of those reported before gives way) */
        if (sc->nseen > sc->nseen_new) /* (the first of them moves to the end) */
            sc->seen[sc->nseen] = sc->seen[sc->nseen_new];
        sc->nseen++;
        sc->seen[sc->nseen_new++] = e->address;
    } else if (sc->nseen < ABORT_SEEN) {
        sc->seen[sc->nseen++] = e->address;
    }
}

static void abort_check_one(uintptr_t data, const pm_i_reg_info *in, void *arg)
{
    struct abort_scan *sc = arg;
    pm_i_err e;
    /* In a fork child at exit: a block whose header (from the C library's
     * chunk header below it) and trailer are on pages the parent's,
     * unchanged (shared_since_fork). */
    if (sc->shared && shared_since_fork(data - in->offset - 16, data - 1) &&
        shared_since_fork(data + in->size, data + in->size + PM_I_DEBUG_TAIL - 1))
        return;
    sc->checked++;
    if (classify((const void *)data, in, 0, OP_USABLE, &e) == PM_ERR_NONE)
        return;
    if (sc->at_exit) {
        exit_keep(sc, &e);
        return;
    }
    /* The stripe's lock held: the block stays. Blamed now, not after the
     * walk as at exit: another thread may free the blocks meanwhile (and
     * a freed big block is unmapped). The search of the block before waits
     * a bounded time for each other stripe (this thread may have been
     * interrupted holding one). */
    blame(&e);
    abort_found(sc, &e);
}

static void abort_check_freed(unsigned char *base, _Atomic uint64_t *w, uint64_t v,
                              struct abort_scan *sc);

/* A live pool block (pm_i_pool_each_side, the arena lock held): its
 * word w was v. Damage is reported only if the word still holds v after the
 * bytes were read, twice: else the block was freed or reallocated under the
 * check, whose fill looks like damage. The damage of a block written by
 * the one below it is that block's overflow (blame), and the walk goes up
 * through a pool: the block below was reported just before, and is not
 * reported again. A freed one: abort_check_freed. */
static void abort_check_side(unsigned char *base, _Atomic uint64_t *w, uint64_t v, void *arg)
{
    struct abort_scan *sc = arg;
    if (PM_P_SIDE_STATE(v) != PM_P_SIDE_LIVE) {
        abort_check_freed(base, w, v, sc);
        return;
    }
    const unsigned char *p = base + PM_I_DEBUG_HEAD;
    pm_i_reg_info in;
    pm_i_err e;
    side_unpack(v, &in);
    sc->checked++;
    if (PM_I_LIKELY(intact(p, &in)) || atomic_load_explicit(w, memory_order_acquire) != v)
        return;
    if (classify(p, &in, 0, OP_USABLE, &e) == PM_ERR_NONE ||
        atomic_load_explicit(w, memory_order_acquire) != v)
        return;
    blame(&e);
    if (e.address == sc->last)
        return;
    sc->last = e.address;
    if (sc->at_exit)
        exit_keep(sc, &e); /* blamed already (the arena lock keeps the blocks) */
    else
        abort_found(sc, &e);
}

/* A freed pool block whose free filled it (SIDE_FILLED), still in the
 * pools (when check_heap_racy reads them): checked whole, as the
 * quarantine's blocks are, for a write after its free that no malloc met
 * (the block was never taken again). Its free-list link, whole before and
 * after the read of its bytes, and its word unchanged, tell that no free
 * was filling it and no malloc writing it meanwhile (see SIDE_FILLED), in
 * another thread or in the code a signal handler (the check at abort, an
 * exit) interrupted. A block whose link was written over is not read: the
 * pool reports the link when a malloc meets it; and a write past the end
 * of the block below that ran on into this one went through the link, so
 * it is that block's overflow alone (its damaged trailer, reported by the
 * walk of the live blocks). */
static void abort_check_freed(unsigned char *base, _Atomic uint64_t *w, uint64_t v,
                              struct abort_scan *sc)
{
    if ((v & SIDE_FILLED) == 0 || (v & SIDE_HELD) != 0)
        return; /* (held: the quarantine's walk checks it) */
    const unsigned char *p = base + PM_I_DEBUG_HEAD;
    const volatile uint64_t *link = (const volatile uint64_t *)(void *)base;
    uint64_t l0 = link[0], l1 = link[1];
    if (l1 != ~l0)
        return; /* not at rest in the pools: being freed or taken */
    pm_i_reg_info in;
    side_unpack(v, &in);
    sc->freed++;
    atomic_thread_fence(memory_order_acquire);
    if (!q_damaged(p, 0, in.size, 1))
        return;
    atomic_thread_fence(memory_order_acquire);
    if (link[0] != l0 || link[1] != l1 || atomic_load_explicit(w, memory_order_relaxed) != v)
        return;
    pm_i_err e;
    freed_error(p, 0, in.size, full_serial(in.serial), in.api, &e);
    if (serial_alone(&e))
        blame_above(&e, PM_I_DEBUG_HEAD);
    if (sc->at_exit)
        exit_keep(sc, &e);
    else
        abort_found(sc, &e);
}

/* A block the quarantine holds (q_each, its lock held: the block stays),
 * checked whole at abort and at exit (unless PYMALLOC_CHECK_FREED=off),
 * and its C library chunk header (always: q_chunk_ok). */
static void abort_check_held(const qent *h, void *arg)
{
    struct abort_scan *sc = arg;
    const char *who = sc->at_exit ? "exit" : "abort";
    pm_i_err e;
    sc->held++;
    if (pm_i_debug_check_freed != 0 &&
        q_damaged(h->base + Q_OFFSET(h->meta), PM_I_DEBUG_HEAD, h->size, 1))
        q_error(NULL, who, h, &e);
    else if (!q_chunk_ok(h))
        q_chunk_error(NULL, who, h, &e);
    else
        return;
    if (sc->at_exit)
        exit_keep(sc, &e);
    else
        abort_found(sc, &e);
}

/* The check of the heap at abort and at exit reads blocks that other
 * threads may be freeing or taking at that moment (a block whose bytes
 * change under the check is told by its side word or record changing
 * too, and not taken for damage): under TSan its reads are left out of
 * the race detection, which reported them as races with the frees'
 * fills (test_abort_check's test_abort_under_churn). */
#ifdef PM_HEAP_CHECK_TSAN
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define RACY_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define RACY_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define RACY_READS_BEGIN() ((void)0)
#define RACY_READS_END() ((void)0)
#endif

static size_t check_heap_racy(int at_exit);

/* Check every live block, the registry's then the pools' (at_exit: the
 * check at exit, below; else at abort), each damaged one reported, then
 * one line of totals (at abort also for blocks reported before, and the
 * parts that were busy named in it). Returns the
 * number of damaged blocks. */
static size_t check_heap_run(int at_exit);

/* check_heap_run with cancellation off: it holds a registry stripe's or
 * the pools' lock across cancellation points (a fork child's read of
 * /proc/self/pagemap, a report's write), and a thread unwound out of it
 * by pthread_cancel left that lock held for ever (see report.c:
 * exit_work). */
static size_t check_heap(int at_exit)
{
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    size_t damaged = check_heap_run(at_exit);
    pthread_setcancelstate(cancel_state, NULL);
    return damaged;
}

static size_t check_heap_run(int at_exit)
{
    RACY_READS_BEGIN();
    size_t n = check_heap_racy(at_exit);
    RACY_READS_END();
    return n;
}

static size_t check_heap_racy(int at_exit)
{
    struct abort_scan sc = {.at_exit = at_exit};
    exit_pending_n = 0;
    exit_unexamined = 0;
    /* The pages shared with the parent: at exit only. The check at abort
     * may run while another thread's check at exit does: it neither reads
     * that check's cache nor closes it (before 2026-12-07 it did both,
     * and since the cache is mapped for the check, read it after the
     * exit's check had unmapped it: SIGSEGV under memcheck, CI's run). */
    if (at_exit)
        shared_pages_begin();
    sc.shared = at_exit && shared_fd >= 0;
    int skipped = pm_i_reg_each_live(abort_check_one, &sc);
    int registry_n = exit_pending_n; /* the rest, the pools', are blamed already */
    /* The pools' freed blocks too; not under memcheck (they are NOACCESS
     * to it, and it reports a write into them itself), nor where the fills
     * are not trusted. */
    int pools_freed = pm_i_debug_check_freed != 0 && !pm_i_p_vg &&
                      !atomic_load_explicit(&freed_untrusted, memory_order_relaxed);
    int pools_busy = atomic_load(&side_any) &&
                     pm_i_pool_each_side(abort_check_side, &sc, pools_freed,
                                         sc.shared ? pool_shared : NULL) != 0;
    unsigned held_busy = q_each(abort_check_held, &sc);
    if (at_exit)
        shared_pages_end();
    if (at_exit && exit_pending_n != 0) {
        pm_i_flush_streams(); /* the program's output, which an abort() would lose */
        for (int i = 0; i < exit_pending_n; i++) {
            if (i < registry_n)
                blame(&exit_pending[i]);
            abort_report(&sc, &exit_pending[i]);
        }
    }
    /* Blocks reported before alone: no line at exit (the program was told,
     * and PYMALLOC_ON_ERROR=report's summary follows); at abort the line
     * says they are there (their damage may be what the C library's
     * allocator aborted over). Parts that were busy alone: no line (it
     * names them when there is one): a clean program aborted inside a
     * malloc, kill -ABRT say, printed a line of none found, at random
     * (before 2026-12-07; found by an audit). */
    if (sc.damaged == 0 && exit_unexamined == 0 && (at_exit || sc.before == 0))
        return 0;
    char storage[512];
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
    pm_i_buf_str(&b, at_exit ? "pymalloc: exit: " : "pymalloc: abort: ");
    size_t live_damaged = sc.damaged - sc.freed_damaged - sc.leaked_damaged;
    pm_i_buf_u64(&b, live_damaged);
    pm_i_buf_str(&b, live_damaged == 1 ? " damaged block" : " damaged blocks");
    if (at_exit)
        pm_i_buf_str(&b, ", never freed,");
    if (sc.leaked_damaged != 0) {
        pm_i_buf_str(&b, " and ");
        pm_i_buf_u64(&b, sc.leaked_damaged);
        pm_i_buf_str(&b, " freed by the program, leaked by that free's report, damaged again,");
    }
    if (sc.damaged > ABORT_REPORTS) {
        pm_i_buf_str(&b, " (the first ");
        pm_i_buf_u64(&b, ABORT_REPORTS);
        pm_i_buf_str(&b, " reported)");
    }
    pm_i_buf_str(&b, " among the ");
    pm_i_buf_u64(&b, sc.checked);
    pm_i_buf_str(&b, " live blocks checked");
    if (sc.before != 0) {
        pm_i_buf_str(&b, "; ");
        pm_i_buf_u64(&b, sc.before);
        pm_i_buf_str(&b, sc.before == 1 ? " damaged block" : " damaged blocks");
        pm_i_buf_str(&b, " reported before, not again");
    }
    if (sc.freed_damaged != 0) {
        pm_i_buf_str(&b, "; ");
        pm_i_buf_u64(&b, sc.freed_damaged);
        pm_i_buf_str(&b, sc.freed_damaged == 1 ? " freed block written after its free"
                                               : " freed blocks written after their free");
        pm_i_buf_str(&b, " among the ");
        if (sc.freed == 0) {
            pm_i_buf_u64(&b, sc.held);
            pm_i_buf_str(&b, " held in the quarantine");
        } else if (sc.held == 0) {
            pm_i_buf_u64(&b, sc.freed);
            pm_i_buf_str(&b, sc.freed == 1 ? " freed block in the pools checked"
                                           : " freed blocks in the pools checked");
        } else {
            pm_i_buf_u64(&b, sc.held + sc.freed);
            pm_i_buf_str(&b, " freed blocks checked (");
            pm_i_buf_u64(&b, sc.held);
            pm_i_buf_str(&b, " held in the quarantine, ");
            pm_i_buf_u64(&b, sc.freed);
            pm_i_buf_str(&b, " in the pools)");
        }
    }
    if (skipped != 0) {
        pm_i_buf_str(&b, " (");
        pm_i_buf_u64(&b, (uint64_t)skipped);
        pm_i_buf_str(&b, " of 64 parts of the block registry were busy and not checked)");
    }
    if (pools_busy)
        pm_i_buf_str(&b, " (the pools were busy: their blocks were not checked)");
    if (held_busy != 0) {
        pm_i_buf_str(&b, " (");
        pm_i_buf_u64(&b, held_busy);
        pm_i_buf_str(&b, " of ");
        pm_i_buf_u64(&b, Q_SHARDS);
        pm_i_buf_str(&b, " parts of the quarantine were busy and not checked)");
    }
    if (exit_unexamined != 0) {
        pm_i_buf_str(&b, " (and ");
        pm_i_buf_u64(&b, exit_unexamined);
        pm_i_buf_str(&b, " more damaged, not examined or counted)");
    }
    if (!at_exit && live_damaged + sc.leaked_damaged + sc.before != 0) /* (glibc never reads a held block) */
        pm_i_buf_str(&b, "; if the C library's allocator aborted (its message, such as "
                         "\"malloc(): corrupted top size\", is above), this damage is the "
                         "likely cause");
    pm_i_buf_char(&b, '\n');
    pm_i_buf_flush(&b);
    return sc.damaged + exit_unexamined;
}

static _Atomic int abort_checked;

/* SIGABRT's default action from now on, and the signal raised again: it
 * is blocked while the handler runs and kills the process when it returns,
 * whoever sent it (abort() would raise it again itself; raise, kill and
 * pthread_kill would not, and the process must not survive them). */

/* The action the program sees. Under TSan (no malloc override in that
 * build, so sigaction is TSan's interceptor, then the C library's) every
 * handler a program sets through sigaction or signal is kept in TSan's own
 * table and the kernel gets TSan's wrapper, which calls it; TSan's
 * sigaction reports the program's handler in its place. A program that
 * read SIGABRT's action and set it back (a save and restore) put this
 * handler back behind that wrapper, and the C library's sigaction, asked
 * past TSan, showed the wrapper: taken for a handler of the program's
 * chained to this one, so raise(SIGABRT) and kill -ABRT no longer killed
 * the process (test_abort_check's test_raised_sigabrt_still_kills, run
 * under TSan). */
#if defined(__SANITIZE_THREAD__)
#define PM_ABORT_PROGRAM_SIGACTION 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PM_ABORT_PROGRAM_SIGACTION 1
#endif
#endif
#ifdef PM_ABORT_PROGRAM_SIGACTION
#define abort_sigaction sigaction
#else
#define abort_sigaction pm_i_real_sigaction
#endif

static int abort_default_again(void)
{
    struct sigaction cur, dfl;
    /* Called by a handler the program set later (a crash reporter calling
     * the one before it): that handler decides what happens next. */
    if (abort_sigaction(SIGABRT, NULL, &cur) != 0 || (cur.sa_flags & SA_SIGINFO) ||
        cur.sa_handler != pm_i_debug_abort_handler)
        return 0;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    abort_sigaction(SIGABRT, &dfl, NULL);
    raise(SIGABRT); /* (blocked until the handler returns: then it kills) */
    return 1;
}

/* The thread running the check at abort (its process, then its thread id;
 * 0: none), for pm_i_debug_abort_wait. */
static _Atomic long abort_check_pid, abort_check_tid;

/* Another thread's exit (exit(), a return from main, _exit, quick_exit)
 * while this process's check at abort runs waits for it: the SIGABRT that
 * ends the check kills the process, as abort() does at once without the
 * hooks. Before, the exit went on meanwhile, and a failed assert in one
 * thread while main returned ended the process with status 0, or the
 * summary's, in a third of the runs (found by an audit). A check whose
 * handler returns to the program (a handler of its own that called ours
 * and goes on) lets the exit go on. Not in a fork child (another
 * process's check). Async-signal-safe. */
void pm_i_debug_abort_wait(void)
{
    long tid = atomic_load(&abort_check_tid);
    /* Not while this thread holds the reports' lock (report mode's
     * summary, then _exit): the check's next report waits for it. */
    if (tid == 0 || atomic_load(&abort_check_pid) != (long)getpid() ||
        tid == (long)syscall(SYS_gettid) || pm_i_debug_reporting_here())
        return;
    /* At most a minute (the check reads the whole heap; a SIGABRT raised
     * again that did not kill the process, under a debugger, leaves the
     * mark), with cancellation off (nanosleep is a cancellation point:
     * _exit must not unwind the thread instead). */
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 60000 && atomic_load(&abort_check_tid) == tid; i++)
        nanosleep(&ms, NULL);
    pthread_setcancelstate(cancel_state, NULL);
}

/* The check at abort needs up to about 3 KiB of stack (a report's frames;
 * less when no block is damaged). A handler running on a signal's
 * alternate stack (abort() called by a crash handler there) may not have
 * it: the classic SIGSTKSZ, 8 KiB, of which the two signal frames and
 * abort() take 7 KiB on x86-64 with AVX-512 state, 7.6 KiB on i386. There
 * the check is left out, with one line, and the process dies of SIGABRT
 * as under glibc (before, the check overflowed the alternate stack:
 * SIGSEGV, and no report). Only the alternate stack's room is known (a
 * thread's own stack cannot be measured without allocating). */
#define ABORT_CHECK_STACK 4096

/* The bytes left below this frame on the alternate stack it runs on, or
 * SIZE_MAX if it runs on no alternate stack. */
static __attribute__((noinline)) size_t alt_stack_room(void)
{
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0 || !(ss.ss_flags & SS_ONSTACK))
        return SIZE_MAX;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0), lo = (uintptr_t)ss.ss_sp;
    return sp > lo ? sp - lo : 0;
}

/* The line, in one writev of static text and a number converted here: not
 * through pm_i_buf and pm_i_write_all (SIGPIPE blocked around the write,
 * waits on a full pipe), whose frames need more of the few hundred bytes
 * left (i386). SIGPIPE is blocked anyway: the SIGABRT handler blocks every
 * signal. */
static __attribute__((noinline)) void abort_check_left_out(size_t room)
{
    static const char head[] = "pymalloc: abort: the heap is not checked: ";
    static const char tail[] = " bytes of stack are left on the signal's alternate stack, "
                               "and the check needs 4096\n";
    _Static_assert(ABORT_CHECK_STACK == 4096, "the line names the size");
    char digits[24];
    int n = 0;
    do
        digits[sizeof digits - 1 - n++] = (char)('0' + room % 10);
    while ((room /= 10) != 0);
    struct iovec v[3] = {{(void *)head, sizeof head - 1},
                         {digits + sizeof digits - n, (size_t)n},
                         {(void *)tail, sizeof tail - 1}};
    if (writev(PM_I_STDERR, v, 3) < 0)
        return; /* nothing more to do */
}

void pm_i_debug_abort_handler(int sig)
{
    (void)sig;
    int saved = errno;
    if (atomic_load(&pm_i_debug_aborting) || atomic_exchange(&abort_checked, 1) != 0) {
        abort_default_again();
        errno = saved;
        return;
    }
    size_t room = alt_stack_room();
    if (room < ABORT_CHECK_STACK) {
        abort_check_left_out(room);
        abort_default_again();
        errno = saved;
        return;
    }
    atomic_store(&abort_check_pid, (long)getpid());
    atomic_store(&abort_check_tid, (long)syscall(SYS_gettid));
    check_heap(0);
    if (!abort_default_again()) /* (else the process ends as it returns) */
        atomic_store(&abort_check_tid, 0);
    errno = saved;
}

/* ---------------------------------------------------------------------------
 * The check of the heap at exit.
 *
 * A block written past its end (or before its start) that the program
 * never frees is never checked on its own; at exit (exit(), or a return
 * from main: src/report.c's work at exit calls this, after every
 * destructor) every live block is checked as at abort, and each damaged one not reported before (a block
 * reported and leaked is not reported twice) gets a report whose entry
 * point is "exit", is counted, and then: with PYMALLOC_ON_ERROR=report,
 * the summary line and exit status 1 follow; with the default, abort();
 * with an error handler of the program's, nothing more (the handler is not
 * called: locks of the registry are held, and the process is ending).
 */
static _Atomic int decorated;

void pm_i_debug_exit_check(void)
{
    /* Not in a child made without our fork handlers (_Fork, a raw fork
     * system call): it cannot tell its parent's blocks from its own. */
    if (!atomic_load(&decorated) || atomic_load(&pm_i_debug_aborting) ||
        !pm_i_debug_counts_are_mine())
        return;
    /* This thread's signals wait until the check is done: it holds the
     * pools' arena lock, or a registry stripe's, for as long as it reads
     * their blocks, and a handler's malloc that needed it would wait for
     * its own thread (exit hung, with a profiling timer's handler that
     * allocates). (At abort the check runs in the SIGABRT handler, which
     * blocks every signal.) */
    sigset_t all, old;
    sigfillset(&all);
    int masked = pthread_sigmask(SIG_BLOCK, &all, &old) == 0;
    size_t damaged = check_heap(1);
    if (masked)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (damaged == 0)
        return;
    if (pm_i_debug_on_error_report || pm_i_debug_has_handler())
        return;
    atomic_store(&pm_i_debug_aborting, 1); /* reported: no check of the heap at abort */
    abort();
}

static pthread_once_t abort_check_once = PTHREAD_ONCE_INIT;

struct sigaction pm_i_debug_abort_prev;
_Atomic int pm_i_debug_abort_installed;

int pm_i_debug_abort_set(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = pm_i_debug_abort_handler;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return pm_i_real_sigaction(SIGABRT, &sa, NULL);
}

static void install_abort_check(void)
{
    struct sigaction old;
    if (pm_i_real_sigaction(SIGABRT, NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
        old.sa_handler != SIG_DFL)
        return; /* the program's own handler is kept */
    pm_i_debug_abort_prev = old;
    atomic_store_explicit(&pm_i_debug_abort_installed, 1, memory_order_release);
    pm_i_debug_abort_set();
}

/* ---------------------------------------------------------------------------
 * Installing.
 */

static int fork_no_locks; /* PM_I_FORK_TAKES_NO_LOCKS, at the prepare handler */

/* While the locks are being taken, and released (in the child: renewed),
 * with the fork_held flags not set, this thread is busy: a signal
 * handler's call there is nested (served without the locks), instead of
 * waiting for a stripe its thread holds. (Unless fork() was itself
 * called inside a call of the hooks, by a handler: then it is busy
 * already, and stays so.) */
static __thread int fork_was_busy __attribute__((tls_model("initial-exec")));
static void fork_busy_enter(void)
{
    if (!(fork_was_busy = pm_i_debug_busy))
        busy_enter();
}
static void fork_busy_leave(void)
{
    if (!fork_was_busy)
        busy_leave();
}

void pm_i_debug_fork_prepare(void)
{
    if (!(fork_no_locks = PM_I_FORK_TAKES_NO_LOCKS())) {
        fork_busy_enter();
        pm_i_reg_fork_prepare();
        q_fork_prepare();
        fork_busy_leave();
    }
}

void pm_i_debug_fork_parent(void)
{
    if (!fork_no_locks) {
        fork_busy_enter();
        q_fork_parent();
        pm_i_reg_fork_parent();
        fork_busy_leave();
    }
}

void pm_i_debug_fork_child(void)
{
    pm_i_reg_fork_child_reserved();
    if (!fork_no_locks) {
        fork_busy_enter();
        q_fork_child();
        pm_i_reg_fork_child();
        fork_busy_leave();
    }
    pm_i_debug_reports_fork_child(!fork_no_locks);
    if (!fork_no_locks) { /* (another thread may have been deciding) */
        atomic_flag_clear(&decide_lock);
        deciding = 0;
    }
    /* The check at exit leaves the parent's blocks out: the child's own
     * serials are all above this one (its run of serials is dropped). */
    exit_min_serial = atomic_load_explicit(&serial_counter, memory_order_relaxed);
    forked_from = getppid();
    drop_run();
}

static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

/* Every function of allocator a is base b's. */
static int same_base(const pm_i_base *a, const pm_i_base *b)
{
    return a->a.malloc == b->a.malloc && a->a.calloc == b->a.calloc &&
           a->a.realloc == b->a.realloc && a->a.free == b->a.free &&
           a->memalign == b->memalign;
}

void pm_i_debug_decorate(void)
{
    pm_i_debug_fork_arm(); /* (a store: every installation may) */
    pthread_once(&registry_once, pm_i_reg_prepare);
    pthread_once(&abort_check_once, install_abort_check);
    atomic_store(&decorated, 1);
    size_t budget = pm_i_debug_quarantine;
    atomic_store(&q_budget, budget);
    atomic_store(&q_block_max, budget / 8 < Q_BLOCK_MAX ? budget / 8 : Q_BLOCK_MAX);
    q_set_shares();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        if (atomic_load(&enabled[d]))
            continue; /* never wrap twice */
        dbg *g = &dbgs[d];
        pm_i_base b;
        pm_i_table_read_base((pm_domain)d, &b);
        if (b.xctx == g && b.memalign == dbg_memalign) {
            /* The hooks were replaced by an allocator of the user's (set
             * over them, which keeps their aligned allocator): wrap that,
             * with the aligned allocator they wrapped, not themselves. */
            b.xctx = g->below.xctx;
            b.memalign = g->below.memalign;
            b.usable_size = g->below.usable_size;
        }
        if (b.a.malloc == pm_i_pool_malloc_checked)
            b.a.malloc = pm_i_pool_base.a.malloc; /* the hooks check it (see below) */
        g->below = b;
        g->pool_below = same_base(&g->below, &pm_i_pool_base);
        /* Not with freed pool blocks held either: the fast path takes a
         * block from the thread's cache without marking the thread busy,
         * which is safe only while a signal handler's malloc and free of
         * the same block there leave the cache as they found it; with the
         * quarantine the handler's free holds the block and puts another
         * on the list, and the interrupted malloc handed out the held
         * block while losing the other. */
        g->pool_fast = g->pool_below && pm_i_debug_break_serial == 0 && !pool_quarantine_on();
        g->filled = g->pool_below && pm_i_debug_check_freed != 0 ? SIDE_FILLED : 0;
        g->check_all = pm_i_debug_check_freed == 2;
        g->libc_below = same_base(&g->below, &pm_i_raw_base) ? 1 : g->pool_below ? 2 : 0;
        g->foreign = g->libc_below == 0;
        /* Not under memcheck, which reports a write into a freed block
         * itself (once the C library's free has it). */
        __atomic_store_n(&g->quarantine, g->libc_below != 0 && !pm_i_pool_valgrind(NULL),
                         __ATOMIC_RELAXED); /* (read by the statistics meanwhile) */
        g->pool_quarantine = g->pool_below && pool_quarantine_on();
        if (g->below.a.malloc == pm_i_pool_base.a.malloc) {
            /* Pool blocks get side words from here (nothing is allocated
             * yet: the hooks go in before the first allocation). */
            pm_i_pool_side_enable();
            set_side_any(1);
        }
        g->self = (pm_i_base){
            .a = {g, dbg_malloc, dbg_calloc, dbg_realloc, dbg_free},
            .xctx = g,
            .memalign = dbg_memalign,
            .usable_size = dbg_usable_size,
        };
        if (pm_i_table_write_base((pm_domain)d, &g->self) == 0) { /* else: no memory */
            atomic_store(&handed_out[d], 0);
            atomic_store(&enabled[d], 1);
        }
    }
}

/* The debug hooks whose allocator a is (a copy kept from pm_get_allocator),
 * or NULL. */
static dbg *hooks_of(const pm_allocator *a)
{
    for (int k = 0; k < PM_DOMAIN_COUNT; k++)
        if (a->ctx == &dbgs[k] && a->malloc == dbg_malloc && a->calloc == dbg_calloc &&
            a->realloc == dbg_realloc && a->free == dbg_free)
            return &dbgs[k];
    return NULL;
}

/* pm_get_allocator(d): from now on an allocator set on d may be a hook
 * calling down to the debug hooks. */
void pm_i_debug_table_read(pm_domain d)
{
    if (atomic_load(&enabled[d])) {
        atomic_store(&handed_out[d], 1);
        return;
    }
    pm_i_base b;
    pm_i_table_read_base(d, &b);
    if (b.a.free == pm_i_pool_base.a.free)
        /* The pool itself, which the hooks may wrap later: its caller
         * may reuse their freed blocks without them. */
        atomic_store(&freed_untrusted, 1);
}

/* pm_set_allocator(d, a): 0, or -1 if the table has no memory.
 * - a is the debug hooks (put back, say after pm_set_mode): they are
 *   installed again whole, with the aligned allocator and usable size they
 *   wrap, and count as installed;
 * - any other allocator replaces them (pm_debug_enabled() says so and
 *   pm_setup_debug_hooks() wraps it), unless the domain's allocator was
 *   read while they were installed: then it may be a hook calling down to
 *   them, and they still count as installed. */
int pm_i_debug_table_write(pm_domain d, const pm_allocator *a)
{
    dbg *g = hooks_of(a);
    if (g != NULL) {
        if (pm_i_table_write_base(d, &g->self) != 0)
            return -1;
        if (g->below.a.malloc == pm_i_pool_base.a.malloc && !atomic_load(&side_any)) {
            /* Put back after a mode was installed (which turned side words
             * and link checks off): on again, and a domain left with the
             * pool base itself gets the checked malloc (the override's
             * inline pop is unchecked). */
            pm_i_pool_side_enable();
            set_side_any(1);
            for (int k = 0; k < PM_DOMAIN_COUNT; k++) {
                pm_i_base b;
                pm_i_table_read_base((pm_domain)k, &b);
                if (same_base(&b, &pm_i_pool_base)) {
                    b.a.malloc = pm_i_pool_malloc_checked;
                    pm_i_table_write_base((pm_domain)k, &b);
                }
            }
        }
        atomic_store(&enabled[d], 1);
        return 0;
    }
    pm_allocator copy = *a;
    if (atomic_load(&side_any) && copy.malloc == pm_i_pool_base.a.malloc)
        /* A copy of the pool allocator (read before the hooks went in) set
         * over them: it shares the thread caches with the hooks of the
         * other domains, so its pops check links too (pool.h). A hook of
         * the user's that calls such a copy itself is not seen here. */
        copy.malloc = pm_i_pool_malloc_checked;
    if (pm_i_table_write(d, &copy) != 0)
        return -1;
    if (!atomic_load(&handed_out[d]))
        atomic_store(&enabled[d], 0);
    return 0;
}

void pm_i_debug_forget(void)
{
    set_side_any(0);
    /* The pools' wide classes (528, 544) and side words are for the debug
     * hooks only: the mode being installed re-enables them if it wraps the
     * pool (pm_i_debug_decorate). Without this, pymalloc mode installed
     * after pymalloc_debug served 513..544-byte requests from the pools. */
    pm_i_pool_side_disable();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        atomic_store(&enabled[d], 0);
        atomic_store(&handed_out[d], 0);
    }
}

int pm_i_debug_enabled(void)
{
    pm_i_ensure_init();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        if (!atomic_load(&enabled[d]))
            return 0;
    return 1;
}

int pm_debug_enabled(void) { return pm_i_debug_enabled(); }

int pm_i_debug_enabled_on(pm_domain d) { return atomic_load(&enabled[d]); }

int pm_setup_debug_hooks(void)
{
    if (pm_i_debug_enabled())
        return 0;
    int saved = errno;
    if (pm_i_reconfigure(pm_i_debug_decorate) == 0)
        return 0;
    /* EBUSY because something was allocated, but under the hooks: another
     * thread's call installed them while this one waited for the mode
     * lock, and a first allocation followed (before, -1 with EBUSY). Once
     * anything is allocated nothing installs them but a copy of them set
     * back (pm_set_allocator), so they are installed now, as documented. */
    if (errno == EBUSY && pm_i_debug_enabled()) {
        errno = saved;
        return 0;
    }
    return -1;
}

static void release_arenas(void *arg)
{
    (void)arg;
    pm_i_pool_release_arenas();
}

/* Classify pool block ptr by its side word w (the arenas held). Another
 * thread may free (fill) or reallocate the block meanwhile, which changes
 * its word first. Damage seen while the word changed is classified again
 * from the new word (a block freed meanwhile is a use after free, not
 * damage). */
static pm_error_class classify_side(const void *ptr, _Atomic uint64_t *w, pm_i_reg_info *in,
                                    pm_i_err *e)
{
    pm_error_class c;
    uint64_t v = atomic_load_explicit(w, memory_order_acquire);
    for (int tries = 0;; tries++) {
        side_unpack(v, in);
        c = classify(ptr, in, 0, OP_USABLE, e);
        if (c == PM_ERR_NONE || tries == 8)
            break;
        atomic_thread_fence(memory_order_acquire); /* the bytes read before the word */
        uint64_t again = atomic_load_explicit(w, memory_order_acquire);
        if (again == v)
            break;
        v = again;
    }
    return c;
}

static const char *check_entry(void)
{
    const char *o = nested() ? nested_entry() : pm_i_debug_entry;
    return o != NULL ? o : "pm_check_block";
}

/* pm_check_block of ptr (not an early block), the thread busy, or nested
 * in a call of this thread (see "Calls nested"): then the arena lock and
 * a stripe's are tried a bounded number of times (this thread may hold
 * them), and without them it is -1 with EDEADLK and no report; and a
 * registry block's damage is reported without looking for the block whose
 * overflow did it (blame waits for stripes). */
static int check_block(const void *ptr, int is_nested)
{
    pm_i_reg_info in;
    pm_i_err e;
    pm_error_class c;
    /* A pool block is read without claiming it: another thread may free
     * it meanwhile, and the arena it is in be unmapped (a crash here). The
     * arena lock is held until its report is written (the dump reads the
     * block), not while the handler runs (it may allocate). */
    int held = 0;
    if (atomic_load_explicit(&side_any, memory_order_relaxed)) {
        if (!is_nested) {
            pm_i_pool_hold_arenas();
        } else if (!pm_i_pool_try_hold_arenas(NESTED_LOCK_TRIES)) {
            errno = EDEADLK;
            return -1;
        }
        held = 1;
    }
    _Atomic uint64_t *w = held ? side_of(ptr) : NULL;
    if (w == NULL && held) {
        pm_i_pool_release_arenas();
        held = 0;
    }
    if (w != NULL) {
        c = classify_side(ptr, w, &in, &e);
    } else {
        uint64_t h = pm_i_reg_hash((uintptr_t)ptr);
        stripe *st = pm_i_reg_stripe(h);
        /* (nested: a stripe this thread holds is consistent, and used as
         * it is) */
        int mine = is_nested && st == reg_held_here;
        if (!is_nested)
            pm_i_reg_lock(h);
        else if (!mine && (reg_fork_held || !spin_lock_stripe(st, NESTED_LOCK_TRIES))) {
            errno = EDEADLK;
            return -1;
        }
        pm_i_reg_find(st, h, (uintptr_t)ptr, &in);
        void *outer = reg_held_here;
        reg_held_here = st;
        c = classify(ptr, &in, 0, OP_USABLE, &e);
        reg_held_here = outer;
        if (!mine)
            pm_i_reg_unlock(st);
    }
    if (c == PM_ERR_NONE) {
        if (held)
            pm_i_pool_release_arenas();
        if (in.state == PM_I_REG_LIVE)
            pm_i_debug_repaired(ptr, in.serial);
        return 0;
    }
    (void)damage_told(OP_USABLE, &e);
    if (e.freed_damaged) {
        /* (no blame: that free's report named the damage) */
    } else if (!is_nested || w != NULL)
        blame(&e); /* (a pool block's: side words and the pools' tree, no lock) */
    if (e.next_block != NULL)
        (void)pm_i_debug_reported_before(&e); /* (reported all the same: see report) */
    e.entry = check_entry();
    e.nested = is_nested;
    pm_i_debug_report_then(&e, held ? release_arenas : NULL, NULL);
    return -1;
}

/* pm_check_block of early block ptr (a nested call's): 0 if it is one
 * handed out and not freed (the debug checks do not cover it), else an
 * invalid pointer. */
static int check_early(const void *ptr)
{
    if (pm_i_early_live(ptr))
        return 0;
    pm_i_err e;
    memset(&e, 0, sizeof e);
    e.error = PM_ERR_INVALID_POINTER;
    e.address = ptr;
    e.entry = check_entry();
    e.nested = nested();
    pm_i_debug_report(&e);
    return -1;
}

int pm_check_block(const void *ptr)
{
    if (ptr == NULL)
        return 0;
    pm_i_ensure_init();
    int any = 0;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        any |= atomic_load(&enabled[d]);
    if (!any) { /* no domain has the hooks: nothing to check against */
        errno = ENOTSUP;
        return -1;
    }
    if (PM_I_UNLIKELY(pm_i_early_owns(ptr)))
        return check_early(ptr);
    if (nested())
        return check_block(ptr, 1);
    busy_enter();
    int rc = check_block(ptr, 0);
    busy_leave();
    return rc;
}
