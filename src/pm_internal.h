/*
 * pm_internal.h - what the library's files share and nothing else sees.
 *
 * Names: pm_verb_noun is public (include/pymalloc.h), pm_i_... is shared
 * inside the library, static is file-local. Nothing in this header is
 * exported: the library is built with -fvisibility=hidden.
 *
 * Data flows one way:
 *   public entry point (src/api.c: edge cases, lazy mode set-up)
 *     -> domain table (src/table.c: one immutable allocator record per domain)
 *       -> decorators (modes/debug.c, ...)
 *         -> base allocator (modes/raw.c, modes/pool.c)
 */
#ifndef PM_INTERNAL_H
#define PM_INTERNAL_H

#include "pymalloc.h"

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PM_I_LIKELY(x) __builtin_expect(!!(x), 1)
#define PM_I_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* True while the process has one thread: glibc's __libc_single_threaded,
 * cleared by the first pthread_create (before the new thread runs) and set
 * again only in a fork child. While it holds, a read-modify-write of shared
 * state needs no lock prefix (glibc's malloc and libstdc++'s reference
 * counts rely on the same flag). Threads made without pthread_create (a raw
 * clone) are not seen: glibc's malloc does not support them either. */
#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define PM_I_SINGLE_THREADED() PM_I_LIKELY(__libc_single_threaded != 0)
#endif
#endif
#ifndef PM_I_SINGLE_THREADED
#define PM_I_SINGLE_THREADED() 0
#endif

/* One try at spin lock *l (0 free, 1 taken): 1 if taken now. With one
 * thread, a load and a store (no exchange, whose lock prefix waits for
 * every store before it, a free's fill among them: 84% of the quarantine
 * lock's time in pool_bench). A signal handler of the thread that runs
 * between the two finds the lock free and leaves it so; one that runs
 * after the store finds it taken (the compiler fence keeps the store
 * before the section it guards). */
static inline int pm_i_spin_try(_Atomic int *l)
{
    if (atomic_load_explicit(l, memory_order_relaxed) != 0)
        return 0;
    if (PM_I_SINGLE_THREADED()) {
        atomic_store_explicit(l, 1, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
        return 1;
    }
    return atomic_exchange_explicit(l, 1, memory_order_acquire) == 0;
}

/* Everything declared below is the library's own (and hidden: see above),
 * so the compiler reaches it directly, not through the global offset table
 * (a declaration without this is taken as possibly another object's).
 * No header is included inside. */
#pragma GCC visibility push(hidden)

/* fork() in a process that has never had a second thread: the fork
 * handlers take none of our locks, as glibc's fork takes none of its
 * malloc's then. No other thread can hold one, and this thread may: fork()
 * is async-signal-safe, and a signal handler that calls it may have
 * interrupted this thread inside the allocator (taking the lock would wait
 * for ever). The interrupted operation goes on in the parent and in the
 * child alike, and releases it in both. Each module's prepare handler
 * notes the answer for its parent and child handlers. */
#define PM_I_FORK_TAKES_NO_LOCKS() PM_I_SINGLE_THREADED()

/* ---------------------------------------------------------------------------
 * Base allocators (modes/).
 */

/*
 * What a mode puts on a domain: the public allocator, plus what the malloc
 * family needs and pm_allocator lacks. Every base allocator and decorator
 * provides one; hooks set with pm_set_allocator do not (see the table).
 */
typedef void *(*pm_i_memalign_fn)(void *ctx, size_t alignment, size_t n);
typedef size_t (*pm_i_usable_fn)(void *ctx, void *p);
typedef struct pm_i_base {
    pm_allocator a;
    /* The ctx passed to memalign and usable_size: a.ctx in every base and
     * decorator; it differs from a.ctx only in what pm_i_table_read_base
     * returns while a user hook sits over the mode. */
    void *xctx;
    /* A block of n bytes aligned to `alignment` (a power of two > 16), freed
     * and reallocated through a's free and realloc like any other block.
     * n may be 0. Returns NULL on failure. */
    pm_i_memalign_fn memalign;
    /* The bytes the caller may use in live block p (malloc_usable_size). */
    pm_i_usable_fn usable_size;
} pm_i_base;

/* modes/raw.c: libc's allocator, reached without going through the symbol
 * `malloc` so that the malloc override can never recurse into itself. */
extern const pm_i_base pm_i_raw_base;
void *pm_i_libc_malloc(size_t n);
void *pm_i_libc_calloc(size_t nelem, size_t elsize);
void *pm_i_libc_realloc(void *p, size_t n);
void pm_i_libc_free(void *p);
void *pm_i_libc_memalign(size_t alignment, size_t n);
size_t pm_i_libc_usable_size(void *p);
/* Look up now the libc function pm_i_libc_usable_size calls (the
 * override's constructor), not in its first call (modes/raw.c). */
void pm_i_libc_usable_resolve(void);
#if defined(__GLIBC__)
struct link_map;
/* The loaded object holding address a (modes/raw.c), else NULL. */
struct link_map *pm_i_object_of(const void *a);
#endif
/* The C library's allocator set up now, on this thread (the override's
 * constructor, while the program has one thread): see modes/raw.c. */
void pm_i_libc_start(void);
/* The objects whose calls of the malloc family (malloc, free, ...,
 * __libc_malloc, ...) are bound to the C library's own definitions, past
 * the malloc override, as in a library opened with dlopen(...,
 * RTLD_DEEPBIND) (modes/raw.c): fn(ctx, path, names) for each (path "" for
 * the program; names: those functions, "malloc, free and realloc"), and
 * how many. 0 without
 * the override in the process, and where it cannot be told (not glibc, a
 * sanitizer build). Allocates nothing; takes the loader's lock
 * (dl_iterate_phdr's, which a thread may take again). */
int pm_i_libc_bypassers(void (*fn)(void *ctx, const char *path, const char *names), void *ctx);
/* ASan or TSan own malloc in this build. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PM_UNDER_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PM_UNDER_SANITIZER 1
#endif
#if defined(__GLIBC__) && !defined(PM_UNDER_SANITIZER) && __SIZEOF_SIZE_T__ == 8 && \
    __SIZEOF_POINTER__ == 8
#define PM_GLIBC_CHUNKS 1
#endif
/* glibc's chunk header before a block of libc's (modes/raw.c explains):
 * pm_i_libc_header_ok is 0 if the header of `block` (returned for `req`
 * bytes, by memalign with `align` if not 0) is damaged, 2 if the chunk before it looks damaged (to be
 * confirmed, see below), else 1, also when it cannot tell (not glibc, valgrind,
 * a sanitizer, glibc's allocator replaced: pm_i_libc_chunk_page is then 0;
 * pm_i_libc_header_probe's self-test sets it). Reads the 16 bytes before
 * block. */
void pm_i_libc_header_probe(void);
/* 1 once pm_i_libc_header_probe has started (or has nothing to test). */
extern _Atomic int pm_i_libc_probed;
extern _Atomic size_t pm_i_libc_chunk_page;
/* The smallest chunk glibc makes for req bytes (nb). */
static inline size_t pm_i_chunk_min(size_t req)
{
    return req + 8 + 15 < 32 ? 32 : (req + 8 + 15) & ~(size_t)15;
}
/* Size word `word` of a heap (not mmapped) chunk can hold req bytes: a
 * multiple of 16 from nb to nb + 32. */
static inline int pm_i_heap_chunk_fits(size_t word, size_t req)
{
    size_t cs = word & ~(size_t)7, nb = pm_i_chunk_min(req);
    return nb < req /* cannot judge */ || ((cs & 15) == 0 && cs >= nb && cs - nb <= 32);
}
/* The break (sbrk(0)) when the probe ran, before its first malloc and the
 * hooks' first block from libc: those blocks of glibc's main heap lie above
 * it, in one mapping up to the current break (0: the probe has not run or
 * is compiled out). Chunks below it are not judged by it. */
extern uintptr_t pm_i_libc_heap_floor;
void *pm_i_libc_break(void); /* sbrk(0) */
/* The chunk before heap chunk `chunk` (size word `word`), which glibc's free
 * merges with this one when its PREV_INUSE bit is clear, reading the chunk
 * at chunk - prev_size: a prev_size that is not a chunk size, or names a
 * chunk whose size disagrees (glibc's own check, "corrupted size vs.
 * prev_size", which would first read a wild address), is damage. A write
 * past the end of the block before that clears the bit with a string's
 * last zero byte writes that word too. Addresses that cannot be read
 * safely are not read: the previous chunk is then taken as sane. */
static inline int pm_i_prev_chunk_ok(uintptr_t chunk, size_t word)
{
    if (word & 1)
        return 1; /* in use: glibc reads nothing before this chunk */
    size_t ps = ((const size_t *)chunk)[0];
    if ((ps & 15) != 0 || ps < 32 || ps > chunk)
        return 0;
    uintptr_t prev = chunk - ps, floor;
    if (word & 4) { /* a thread arena's heap: aligned to its maximum size, 64 MiB or more */
        floor = chunk & ~(((uintptr_t)64 << 20) - 1);
    } else {
        floor = pm_i_libc_heap_floor;
        if (floor == 0 || chunk >= (uintptr_t)pm_i_libc_break())
            return 1; /* not in the break's one mapping (a non-contiguous main heap) */
    }
    if (prev < floor)
        return 1; /* cannot tell */
    return (((const size_t *)prev)[1] & ~(size_t)7) == ps;
}
/* An mmapped chunk's mapping (prev_size + size: glibc's munmap_chunk unmaps
 * it whole) for a chunk of nb bytes, made by memalign with `align` (0:
 * malloc, calloc or realloc), is at most what glibc maps for it: nb + 8
 * rounded up to the page, or to the huge page (glibc.malloc.hugetlb=2)
 * that then divides the mapping, memalign asking for align + 32 more
 * (glibc's _int_memalign). A stray write into the size word's high bytes
 * (an int array's a[-5]) leaves the low bits as they were: before, glibc's
 * free of the block then unmapped gigabytes past its mapping (the program's
 * code and stack with them: SIGSEGV, no report). */
static inline int pm_i_mmap_chunk_fits(size_t total, size_t nb, size_t align)
{
    size_t most = nb + 8 + (align != 0 ? align + 48 : 0);
    return most < nb /* cannot judge */ || total <= most || total - most < (total & -total);
}
static inline int pm_i_libc_header_ok(const void *block, size_t req, size_t align)
{
    size_t page = atomic_load_explicit(&pm_i_libc_chunk_page, memory_order_relaxed);
    if (page == 0)
        return 1;
    const size_t *h = block;
    size_t word = h[-1];
    if (word & 2) { /* mmapped: at least nb, and glibc's own munmap_chunk test */
        size_t cs = word & ~(size_t)7, prev = h[-2], nb = pm_i_chunk_min(req);
        uintptr_t chunk = (uintptr_t)block - 16;
        return nb < req /* cannot judge */ ||
               ((cs & 15) == 0 && cs >= nb &&
                (((chunk - prev) | (prev + cs)) & (page - 1)) == 0 && prev + cs >= cs &&
                pm_i_mmap_chunk_fits(prev + cs, nb, align));
    }
    if (!pm_i_heap_chunk_fits(word, req))
        return 0;
    /* Bit 2 (NON_MAIN_ARENA) on a chunk of the main heap, the break's one
     * mapping, which no thread arena's heap shares: glibc's free would look
     * for the chunk's arena at the 64 MiB boundary below it, a wild address
     * (SIGSEGV, no report, before 2026-12-04). */
    if ((word & 4) && pm_i_libc_heap_floor != 0 &&
        (uintptr_t)block - 16 >= pm_i_libc_heap_floor &&
        (uintptr_t)block < (uintptr_t)pm_i_libc_break())
        return 0;
    /* 2: the chunk before, as glibc's free would read it, is not sane:
     * racy in a threaded process (glibc changes this chunk's PREV_INUSE bit
     * and prev_size word when the chunk before is freed or taken, under
     * its arena's lock, not ours), so to be confirmed (modes/debug.c: the
     * chunk before is a live block of ours). */
    return (word & 1) || pm_i_prev_chunk_ok((uintptr_t)block - 16, word) ? 1 : 2;
}

/* modes/pool.c: CPython's pools (the pymalloc mode); modes/pool_stats.c:
 * its statistics and validator. */
extern const pm_i_base pm_i_pool_base;
/* 1 if p lies in a pool in use (never reads *p). */
int pm_i_pool_owns(const void *p);
/* The size class of the pool block in use at p, or -1 (not in a pool in
 * use). For consistency checks (the fuzz harness). */
int pm_i_pool_class_of(const void *p);
/* 1 when running under valgrind (the pools then describe every block to
 * memcheck); *compiled_in (if not NULL) says whether the client requests
 * were compiled in (CMake PYMALLOC_VALGRIND). */
int pm_i_pool_valgrind(int *compiled_in);
/* The pool's one-time set-up (fork handlers, thread-exit key, valgrind
 * detection); run by the library's set-up, idempotent. */
void pm_i_pool_init(void);
/* Give every block in the calling thread's cache back to its pool. */
void pm_i_pool_flush_thread_cache(void);
/* pm_trim(): flush the calling thread's cache; 1 if an arena was unmapped. */
int pm_i_pool_trim(void);
/* pm_trim and pm_debug_enabled for the library's own calls: the exported
 * names may be another copy's (a program linked with libpymalloc.a exports
 * its pm_* functions), and a call through them would reach that copy. */
int pm_i_trim(void);
int pm_i_debug_enabled(void);
/* modes/debug.c: the debug hooks' free (any domain's: its ctx says which).
 * It keeps errno by itself, so that a caller of a domain's free that finds
 * it there calls it without saving errno (src/api.c, src/override.c). */
void pm_i_debug_free(void *ctx, void *p);
/* 1 if the debug hooks are installed on domain d (maybe under a hook). */
int pm_i_debug_enabled_on(pm_domain d);
/* glibc's malloc_trim (of the library whose __libc_malloc we call), or 0
 * where there is none (modes/raw.c). */
int pm_i_libc_trim(size_t pad);
/* Check every invariant of every arena, pool, list and cache of the pool
 * allocator; 0 if all hold, else -1 with the first violation in *why. */
struct pm_i_buf;
int pm_i_pool_validate(struct pm_i_buf *why);
/* Set by the set-up when PYMALLOC_STATS is true: print at exit (by the
 * work at exit, src/report.c, after every destructor). */
extern _Atomic int pm_i_stats_at_exit;
void pm_i_stats_at_exit_now(void); /* PYMALLOC_STATS's output, at most once */
/* pm_print_stats at exit (modes/pool_stats.c): it does not wait for ever
 * for the pools' locks, which the exiting thread itself may hold (exit()
 * from a signal handler that interrupted a slow path of the pools); after
 * about 100 ms it prints one line saying so instead of the statistics. */
void pm_i_print_stats_at_exit(int fd);

/* ---------------------------------------------------------------------------
 * The early arena (src/early.c): blocks for calls that must not reach a
 * mode. The malloc override's calls made while this thread is inside
 * pymalloc's own set-up (an allocation made by pthread_atfork, by a mode's
 * lazy init, by a decorator being installed: the table may hold a
 * half-installed mode then, and libc's blocks would later be freed through
 * the mode's free, which a debug mode would report, wrongly), and in the
 * debug modes a signal handler's calls made while its thread is inside the
 * allocator (the malloc family's: src/override.c, o_nested; the pm_*
 * API's: modes/debug.c, nested calls). The arena is static memory that
 * the override and the debug hooks recognise by address, so a free,
 * realloc or usable size of its blocks never reaches a mode. Blocks are
 * zeroed when handed out; freed blocks are merged and reused.
 */
#define PM_I_EARLY_SIZE ((size_t)256 * 1024)

/* A block of n bytes aligned to `alignment` (a power of two; values below 16
 * mean 16), zero-filled; NULL when the arena is exhausted. Async-signal-safe
 * (its lock is taken with every signal blocked). */
void *pm_i_early_alloc(size_t n, size_t alignment);
/* Is p a block of the early arena? (one subtraction and one compare) */
extern unsigned char pm_i_early_arena[PM_I_EARLY_SIZE] __attribute__((visibility("hidden")));
static inline int pm_i_early_owns(const void *p)
{
    return (uintptr_t)p - (uintptr_t)pm_i_early_arena < PM_I_EARLY_SIZE;
}
/* The size p was allocated with; 0 if p is not an allocated block. */
size_t pm_i_early_size(const void *p);
/* 1 if p is an allocated block (handed out, not freed). */
int pm_i_early_live(const void *p);
/* Frees an allocated block; any other pointer into the arena (freed
 * already, interior) is ignored. */
void pm_i_early_free(void *p);
/* Bytes of the arena's allocated chunks, headers included (for tests). */
size_t pm_i_early_used(void);
/* Register the arena's fork handlers, once: called by the set-up first of
 * all (src/api.c), so that fork takes the arena's lock after every other. */
void pm_i_early_fork_prepare(void);
void pm_i_early_fork_release(void);

/* ---------------------------------------------------------------------------
 * Frees deferred by a signal handler: a free made while its thread is inside
 * the allocator (and may hold the lock the free needs) waits here until the
 * interrupted call leaves, which then makes it. One queue per thread and
 * user (the malloc override's, src/override.c; the debug hooks',
 * modes/debug.c). Slots are taken and emptied by atomic operations, since
 * a handler may interrupt a handler; the pointer is neither read nor
 * written before it is freed, so an invalid one is reported then. Past
 * PM_I_DEFER_SLOTS waiting frees the next is dropped: a leak, never a hang.
 * Each slot keeps the entry point named in a report and a tag of the
 * user's (the debug hooks': the domain).
 */
#define PM_I_DEFER_SLOTS 16
typedef struct pm_i_defer {
    void *p[PM_I_DEFER_SLOTS];
    const char *name[PM_I_DEFER_SLOTS];
    unsigned char tag[PM_I_DEFER_SLOTS];
    int pending; /* a slot may be taken: the owner's leave drains */
} pm_i_defer;

/* Queue p (name, tag): 0, or -1 when every slot is taken (p dropped). The
 * name and tag are written before the slot is taken: a handler that
 * interrupts this one and writes them too then takes that slot itself. */
static inline int pm_i_defer_push(pm_i_defer *q, void *p, const char *name, unsigned tag)
{
    for (int i = 0; i < PM_I_DEFER_SLOTS; i++) {
        if (__atomic_load_n(&q->p[i], __ATOMIC_RELAXED) != NULL)
            continue;
        q->name[i] = name;
        q->tag[i] = (unsigned char)tag;
        atomic_signal_fence(memory_order_seq_cst);
        void *expected = NULL;
        if (__atomic_compare_exchange_n(&q->p[i], &expected, p, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            atomic_signal_fence(memory_order_seq_cst);
            q->pending = 1;
            return 0;
        }
    }
    return -1;
}

/* The drain: call free(p, name, tag, arg) for every waiting free (read
 * before its slot is emptied: a handler that takes the slot after that
 * writes its own). */
static inline void pm_i_defer_drain(pm_i_defer *q,
                                    void (*free_fn)(void *p, const char *name, unsigned tag))
{
    q->pending = 0;
    atomic_signal_fence(memory_order_seq_cst);
    for (int i = 0; i < PM_I_DEFER_SLOTS; i++) {
        if (__atomic_load_n(&q->p[i], __ATOMIC_RELAXED) == NULL)
            continue;
        const char *name = q->name[i];
        unsigned tag = q->tag[i];
        atomic_signal_fence(memory_order_seq_cst);
        void *p = __atomic_exchange_n(&q->p[i], NULL, __ATOMIC_RELAXED);
        if (p != NULL)
            free_fn(p, name, tag);
    }
}

/* ---------------------------------------------------------------------------
 * Mode registry (src/registry.c): modes by name, as data.
 */
typedef struct pm_i_mode {
    const char *name;     /* as accepted by PYMALLOC_MODE and pm_set_mode */
    const char *alias_of; /* NULL, or the canonical mode this name installs */
    /* Base allocator of each domain, indexed by pm_domain. */
    const pm_i_base *base[PM_DOMAIN_COUNT];
    /* Decorator installed over the bases (debug hooks), or NULL. */
    void (*decorate)(void);
} pm_i_mode;

/* The mode named exactly (case-sensitive, no trimming) by the first len bytes
 * of name, with aliases resolved to their canonical entry; NULL if unknown. */
const pm_i_mode *pm_i_mode_find(const char *name, size_t len);
/* The accepted names in registry order, NULL-terminated. */
const char *const *pm_i_mode_names(void);

/* ---------------------------------------------------------------------------
 * Domain table (src/table.c).
 *
 * Each domain holds one pointer to an immutable record (a pm_i_base), and a
 * change of allocator publishes a new record with one release store, so a
 * reader (every allocation) does one acquire load (a plain load on x86 and
 * a load-acquire on arm64), takes no lock, never retries and never sees a
 * torn {ctx, function} pair, while pm_set_allocator may run concurrently
 * from any thread. Records are never freed (a reader may still hold an old
 * one); identical records are shared, so a program that pushes and pops the
 * same hooks forever uses a bounded number of them.
 *
 * Besides the public allocator, a record holds the mode's own memalign and
 * usable_size with their ctx (xctx): they belong to the stack the mode
 * installed (base and decorators) and are not changed by pm_set_allocator,
 * so aligned allocations (alignment > 16) bypass user hooks. Their blocks
 * are freed through the public free like any other, which hooks do see.
 */
typedef void *(*pm_i_malloc_fn)(void *, size_t);
typedef void *(*pm_i_calloc_fn)(void *, size_t, size_t);
typedef void *(*pm_i_realloc_fn)(void *, void *, size_t);
typedef void (*pm_i_free_fn)(void *, void *);

struct pm_i_domain {
    _Atomic(const pm_i_base *) cur; /* never NULL: libc's until a mode is set */
} __attribute__((aligned(64)));

extern struct pm_i_domain pm_i_domains[PM_DOMAIN_COUNT];

/* Read a consistent {ctx, fn} pair of one domain: `field` is a.malloc,
 * a.calloc, a.realloc or a.free with ctxfield a.ctx, or memalign or
 * usable_size with ctxfield xctx. */
#define PM_I_DOMAIN_READ(dom, ctxfield, field, ctx_out, fn_out)                      \
    do {                                                                             \
        const pm_i_base *r_ = atomic_load_explicit(&(dom)->cur, memory_order_acquire); \
        (ctx_out) = r_->ctxfield;                                                    \
        (fn_out) = r_->field;                                                        \
    } while (0)

/* Read or write a domain's public allocator (writers are serialized by the
 * table lock); pm_i_table_write leaves the memalign/usable_size part alone.
 * The writers return 0, or -1 with errno = ENOMEM when no memory is left for
 * a new record (the domain is then unchanged). */
void pm_i_table_read(pm_domain d, pm_allocator *out);
int pm_i_table_write(pm_domain d, const pm_allocator *a);
/* Read or write everything: what modes and decorators use. */
void pm_i_table_read_base(pm_domain d, pm_i_base *out);
int pm_i_table_write_base(pm_domain d, const pm_i_base *b);
/* Publish b itself, which must never change or go away (a mode's base
 * allocator, a const object): no copy, cannot fail. */
void pm_i_table_set_static(pm_domain d, const pm_i_base *b);
/* Through the mode's stack of domain d (for the malloc family). */
void *pm_i_domain_memalign(pm_domain d, size_t alignment, size_t n);
size_t pm_i_domain_usable_size(pm_domain d, void *p);
/* fork(): src/api.c's handlers take the mode lock, then the table's with
 * pm_i_table_lock, which sets pm_i_fork_held_api in the forking thread
 * until pm_i_table_unlock (in the parent and in the child). A pthread_atfork
 * handler registered before ours runs in that window and may read or set
 * an allocator or the mode: that thread skips both locks there (it holds
 * them); other threads wait as always. */
void pm_i_table_lock(void);
void pm_i_table_unlock(void);
extern __thread int pm_i_fork_held_api __attribute__((tls_model("initial-exec")));

/* ---------------------------------------------------------------------------
 * Lazy set-up (src/api.c). The mode is read from PYMALLOC_MODE once, on the
 * first allocation from any thread (or the first table or mode call).
 */
enum {
    PM_I_STATE_UNINIT = 0,  /* nothing read yet */
    PM_I_STATE_INITING = 1, /* one thread is reading the environment */
    PM_I_STATE_READY = 2,   /* a mode is installed, nothing allocated yet */
    PM_I_STATE_IN_USE = 3   /* something was allocated: the mode is fixed */
};
extern _Atomic int pm_i_state;

/* The mode is installed and fixed (the entry points' and the override's
 * one test of the state on their fast paths). */
static inline int pm_i_in_use(void)
{
    return atomic_load_explicit(&pm_i_state, memory_order_acquire) == PM_I_STATE_IN_USE;
}
/* Called by the entry points while the state is not IN_USE. */
void pm_i_first_use(void);
/* Make sure a mode is installed (does not mark the mode as used). */
void pm_i_ensure_init(void);
/* The fork handlers of the pools (modes/pool.c) and of the debug hooks
 * (modes/debug.c), called by the library's one registration (src/api.c);
 * pm_i_debug_fork_arm has the debug hooks' called from then on. */
void pm_i_pool_fork_prepare(void);
void pm_i_pool_fork_parent(void);
void pm_i_pool_fork_child(void);
/* Round i of a bounded wait (src/api.c): 100 yields, then 1 ms a round;
 * no cancellation point. */
void pm_i_wait_round(int i);
/* The C library allocator's (modes/raw.c): its functions' lookup, which
 * holds the loader's lock, is waited for, never inherited half done. */
void pm_i_raw_fork_prepare(int wait);
void pm_i_raw_fork_parent(void);
void pm_i_raw_fork_child(void);
void pm_i_debug_fork_prepare(void);
void pm_i_debug_fork_parent(void);
void pm_i_debug_fork_child(void);
void pm_i_debug_fork_arm(void);

/* fork handlers: the library registers one set, for all its parts, as the
 * first step of its set-up (src/api.c), through pm_i_atfork, never
 * pthread_atfork. glibc's pthread_atfork (and fork, running the handlers)
 * calls malloc with its atfork lock held, so a set-up started by that
 * malloc must not call pthread_atfork: it would wait for the lock its own
 * thread holds. The override (src/override.c) sets pm_i_atfork_defer on
 * this thread around the set-up it starts; pm_i_atfork then queues the
 * handlers, in order, and pm_i_atfork_flush, called by the override's
 * load-time constructor, registers them. While the queue is not empty every
 * registration joins it, so the handlers keep their order (the order in
 * which fork takes the locks). */
extern __thread int pm_i_atfork_defer __attribute__((tls_model("initial-exec")));
/* 1 in a preloaded copy of the override whose malloc is not the first in
 * the process: the program has a malloc of its own (libpymalloc.a's, say,
 * whose copy then serves everything), or a wrapper preloaded before this
 * copy passes calls on to it. Such a copy prints PYMALLOC_VERBOSE's
 * start-up line at its first allocation, not at its set-up; if it never
 * serves one, it prints no statistics at exit (PYMALLOC_STATS), and with
 * PYMALLOC_VERBOSE a line saying it was idle. Set by the override before
 * its set-up. */
extern int pm_i_quiet_copy;
void pm_i_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
void pm_i_atfork_flush(void);

/* ---------------------------------------------------------------------------
 * Options (src/options.c): the environment read without allocating.
 */
/* The value of an environment variable, scanning environ directly (getenv is
 * not safe in every context a malloc replacement runs in); NULL if unset. */
const char *pm_i_getenv(const char *name);
/* Every PYMALLOC_* variable the library reads, NULL-terminated (printed by
 * PYMALLOC_VERBOSE=1). */
extern const char *const pm_i_option_names[];
/* Pure parsers, unit-tested on their own. */
/* A boolean option: "1", "yes", "true", "on" are true; "", "0", "no",
 * "false", "off" are false; anything else is -1. NULL is false. */
int pm_i_parse_bool(const char *s);
/* A decimal unsigned 64-bit number, the whole string; 0 on success, -1 if
 * empty, not a number, or out of range. */
int pm_i_parse_u64(const char *s, uint64_t *out);
/* A size: decimal digits, then optionally K, M, G or T (binary: 2^10,
 * 2^20, 2^30, 2^40; either case). 0 and *out, or -1 (empty, other
 * characters, or more than 2^64 - 1). */
int pm_i_parse_size(const char *s, uint64_t *out);

/* ---------------------------------------------------------------------------
 * Formatting without allocating (src/fmt.c): reports and statistics are
 * written into a stack buffer and out with write(2).
 */
typedef struct pm_i_buf {
    char *p;
    size_t len, cap;
    int fd;                 /* flushed to this descriptor when full, or -1 */
} pm_i_buf;

void pm_i_buf_init(pm_i_buf *b, char *storage, size_t cap, int fd);
void pm_i_buf_str(pm_i_buf *b, const char *s);
void pm_i_buf_mem(pm_i_buf *b, const char *s, size_t n);
void pm_i_buf_shown(pm_i_buf *b, const char *s, size_t max); /* escaped, capped */
void pm_i_buf_char(pm_i_buf *b, char c);
void pm_i_buf_u64(pm_i_buf *b, uint64_t v);
void pm_i_buf_u64_right(pm_i_buf *b, uint64_t v, int width); /* space-padded on the left */
void pm_i_buf_i64(pm_i_buf *b, int64_t v);
void pm_i_buf_hex(pm_i_buf *b, uint64_t v, int min_digits); /* no 0x prefix */
void pm_i_buf_ptr(pm_i_buf *b, const void *p);              /* 0x... */
/* v with thousands separators, right-aligned in width columns. */
void pm_i_buf_u64_grouped(pm_i_buf *b, uint64_t v, int width);
/* Pad with spaces up to column col (counted since the last newline). */
void pm_i_buf_pad_to(pm_i_buf *b, size_t col);
/* Write out what is buffered (to fd, retrying short writes). */
void pm_i_buf_flush(pm_i_buf *b);
/* write(2) all of s to fd, retrying on EINTR and short writes. */
void pm_i_write_all(int fd, const char *s, size_t n);
/* Where pymalloc's own output goes (reports, PYMALLOC_STATS's table, the
 * summary, start-up lines): 2, or -1 (nowhere) in a process that was
 * started with descriptor 2 closed, whose first open took it (set-up, in
 * src/api.c). pm_print_stats(fd) writes where it is told. */
extern _Atomic int pm_i_stderr_fd;
#define PM_I_STDERR atomic_load_explicit(&pm_i_stderr_fd, memory_order_relaxed)
/* Around writes of ours to a pipe nobody may read any more (reports, and
 * the program's streams flushed at exit before a report): SIGPIPE is
 * blocked, and one raised meanwhile is taken back at the end (it is sent
 * to the writing thread; one already pending before is left alone). */
typedef struct pm_i_nopipe {
    sigset_t old;
    int masked, was_pending;
} pm_i_nopipe;
void pm_i_nopipe_begin(pm_i_nopipe *g);
void pm_i_nopipe_end(pm_i_nopipe *g);

/* ---------------------------------------------------------------------------
 * Debug hooks (modes/debug.c, src/report.c; their private header is
 * src/pm_debug.h).
 */
/* A mode's decorate function: wrap every domain's current allocator with the
 * debug hooks, unless they are already there. */
void pm_i_debug_decorate(void);
/* The table is being rewritten by a mode (src/api.c install()): the debug
 * hooks, if any, are gone. */
void pm_i_debug_forget(void);
/* pm_get_allocator(d) read the table / pm_set_allocator(d, a) writes it (0,
 * or -1: no memory): keeps track of whether the debug hooks are still
 * installed on d (modes/debug.c). */
void pm_i_debug_table_read(pm_domain d);
int pm_i_debug_table_write(pm_domain d, const pm_allocator *a);
/* Read and validate PYMALLOC_ON_ERROR, PYMALLOC_BREAK_SERIAL,
 * PYMALLOC_CHECK_FREED and PYMALLOC_QUARANTINE at start-up (an invalid
 * value is a fatal start-up error, in every mode). */
void pm_i_debug_read_options(void);
/* pm_trim's part under the debug hooks: their quarantine emptied, each
 * block checked (modes/debug.c). 1 if a block went back. */
int pm_i_debug_trim(void);
/*
 * The entry point named in reports. By default the debug layer names the
 * public entry point from the domain and the operation ("pm_mem_free"). A
 * caller that is itself an entry point (the malloc override) sets its own
 * name for the current thread around the call and clears it after:
 *
 *     pm_i_debug_set_entry("free");
 *     pm_raw_free(p);            // a report says "pymalloc: free: ..."
 *     pm_i_debug_set_entry(NULL);
 *
 * The name must be a string literal (it is kept, not copied). Thread-local,
 * async-signal-safe, never allocates. The override's fast paths store into
 * the variable directly (two stores a call, no function call).
 */
void pm_i_debug_set_entry(const char *name);
/* Report the damaged free-list link the pool met in this thread, if any
 * (modes/pool.h: pm_i_p_bad_link), naming `entry` as the entry point
 * (pm_i_debug_entry first, if set). The debug hooks call it after their
 * calls into the pool; the pool itself after pm_trim's flush and a
 * thread's exit. api: the API of the entry point ('r', 'm', 'o'; 0 for
 * none: a thread's exit, pm_trim). */
void pm_i_debug_pool_links_report(const char *entry, char api);
extern __thread const char *pm_i_debug_entry __attribute__((tls_model("initial-exec")));

/* src/api.c: stop the process at start-up because variable var has an
 * invalid value: one line on stderr naming the valid values, exit status 1. */
__attribute__((noreturn)) void pm_i_fatal_option(const char *var, const char *value,
                                                 const char *problem,
                                                 const char *const *valid);
/* src/api.c: run fn() to rewrite the table, as pm_set_mode does, if nothing
 * has been allocated yet; 0, or -1 (errno = EBUSY) once the mode is in use. */
int pm_i_reconfigure(void (*fn)(void));

#pragma GCC visibility pop

#endif /* PM_INTERNAL_H */
