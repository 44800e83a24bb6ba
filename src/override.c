/*
 * src/override.c - the malloc family, routed through the MEM domain.
 *
 * Built only into the override libraries (libpymalloc.so, libpymalloc.a),
 * never into the API-only libpymalloc_api. Preloaded (LD_PRELOAD) or linked
 * into a program, these definitions take the place of glibc's, so every
 * malloc of the program, of libc itself (strdup, stdio buffers, getline...)
 * and of libstdc++ (operator new) runs through the mode chosen by
 * PYMALLOC_MODE, and through any hook set on PM_DOMAIN_MEM (API id 'm').
 *
 *   malloc/calloc/realloc/free ---------------> MEM domain's allocator (hooks see it)
 *   aligned_alloc/memalign/posix_memalign/      alignment <= 16: malloc;
 *   valloc/pvalloc                              else pm_i_domain_memalign(MEM)
 *   malloc_usable_size -----------------------> pm_i_domain_usable_size(MEM)
 *   malloc_trim ------------------------------> glibc's malloc_trim, then pm_trim()
 *
 * Semantics are glibc's where they differ from the pm_* API: realloc(p, 0)
 * frees p and returns NULL; reallocarray(p, 0, k) likewise; every failure
 * sets errno = ENOMEM (EINVAL for an impossible alignment); free preserves
 * errno; posix_memalign reports through its result and leaves errno alone
 * (unlike glibc 2.36's, whose ENOMEM sets errno too);
 * memalign and aligned_alloc round an alignment that is not a power of two
 * up to the next one (glibc 2.36: aligned_alloc is memalign); pvalloc rounds
 * the size up to whole pages.
 *
 * Start-up. Nothing here runs before the first call: the first allocation
 * (from the dynamic loader, another library's constructor, libc start-up)
 * runs the set-up in src/api.c, which reads PYMALLOC_MODE by scanning
 * environ (never getenv) and installs the mode. If the set-up itself
 * allocates (pthread_atfork, a mode's lazy init), that call comes back here
 * with the set-up unfinished and is served from the early arena
 * (src/early.c), which free and realloc recognise by address. A constructor
 * also runs the set-up at load time, so a bad PYMALLOC_MODE stops even a
 * program that never allocates, and the set-up is done before the
 * constructors of the program's own libraries run.
 *
 * Nothing here calls the exported `malloc` symbols (calls inside the library
 * use the static o_* functions), and the file is compiled with -fno-builtin
 * so that the compiler cannot turn malloc+memset into a call to calloc.
 *
 * Every exported name is written PM_O_NAME(malloc) (src/pm_override.h): the
 * plain name, except in the renamed copy the fuzz targets link (built with
 * -DPM_O_PREFIX=pm_fz_, fuzz/CMakeLists.txt), where it is pm_fz_malloc and
 * so on, because a sanitizer owns the real symbols there. That copy has no
 * load-time constructor: the harness chooses the mode with pm_set_mode, which
 * must run before any set-up.
 */
#define _GNU_SOURCE 1 /* RTLD_DEFAULT */
#include "pm_override.h"
#include "pm_debug.h"
#include "../modes/pool.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PM_O_EXPORT __attribute__((visibility("default")))

/*
 * Seam for the debug hooks: a report should name the function the program
 * called ("free", "realloc") rather than "pm_mem_free". PM_O_ENTER(name) is
 * expanded around each call into the table when the debug hooks are on; it
 * sets the debug module's thread-local entry-name hint (name is a string
 * literal) and PM_O_LEAVE() clears it. Without debug hooks nobody reads the
 * hint, so the fast paths (taken only then, see o_kind) skip both stores,
 * which also lets free end in a tail call.
 */
#define PM_O_ENTER(name) (pm_i_debug_entry = (name), atomic_signal_fence(memory_order_seq_cst))
#define PM_O_LEAVE()                                                                  \
    do {                                                                              \
        atomic_signal_fence(memory_order_seq_cst);                                    \
        pm_i_debug_entry = NULL;                                                      \
        if (PM_I_UNLIKELY(o_deferred.pending))                                        \
            o_drain();                                                                \
    } while (0)

/*
 * Signal handlers. A handler that calls the malloc family (not
 * async-signal-safe, but common: printf, strdup, a logger) runs on the
 * thread it interrupted, maybe inside the library. The pools guard
 * themselves (modes/pool.h). The debug hooks hold more: a registry
 * stripe's lock, the report lock, a pool's lock through them. So while a
 * call of the malloc family is in the debug hooks (the entry-name hint is
 * set: every call names itself then), a call of the same thread is a
 * handler's: o_nested. Its allocations come from the early arena (without
 * the debug checks), which every entry point recognises by address, and
 * its frees of other blocks wait in o_deferred (src/pm_internal.h:
 * pm_i_defer, the queue the debug hooks' nested frees wait in too) until
 * the interrupted call leaves (PM_O_LEAVE). The pointer is not written to
 * or read from before that, so an invalid one is reported as such then.
 * Past PM_I_DEFER_SLOTS waiting frees the next is dropped: a leak, never
 * a hang. (A handler's call made while its thread is inside a pm_* call
 * in the debug hooks is not nested here: the hooks guard themselves,
 * modes/debug.c.)
 * A realloc of another block in a handler fails (ENOMEM, the block kept).
 * malloc_usable_size of another block answers without waiting for a lock
 * the interrupted call may hold (pm_i_debug_usable_size_nested).
 */
static __thread pm_i_defer o_deferred __attribute__((tls_model("initial-exec")));

static void o_free_named_as(void *p, const char *name);

static inline int o_nested(void) { return pm_i_debug_entry != NULL; }

static void o_defer(void *p, const char *name) { (void)pm_i_defer_push(&o_deferred, p, name, 0); }

static void o_free_deferred(void *p, const char *name, unsigned tag)
{
    (void)tag;
    o_free_named_as(p, name);
}

static __attribute__((noinline, cold)) void o_drain(void)
{
    pm_i_defer_drain(&o_deferred, o_free_deferred);
}

/* ---------------------------------------------------------------------------
 * Dispatch.
 */

/* O_PLAIN once the mode is installed and fixed and has no debug hooks: the
 * fast paths' one test. O_NAMED once it is installed with debug hooks: then
 * every call takes the path that names the entry point. Decided by the first
 * call off the fast path after the set-up (o_ready) and never changed, since
 * neither the mode nor the debug hooks can change once the mode is in use. */
enum { O_UNDECIDED, O_PLAIN, O_NAMED };
static _Atomic int o_kind;

static inline int o_fast(void)
{
    return atomic_load_explicit(&o_kind, memory_order_acquire) == O_PLAIN;
}

#ifndef PM_O_PREFIX
/* Set while the library's constructor (o_load) makes its look-ups, whose
 * dlopen and dlsym allocate: served from the early arena while the mode is
 * not in use, so that they do not fix it. Before, every program's mode was
 * fixed by them before main, and pm_set_mode and pm_setup_debug_hooks
 * always returned EBUSY, also in a program that had allocated nothing. */
static __thread int o_loading __attribute__((tls_model("initial-exec")));
#else
enum { o_loading = 0 };
#endif

/* Called off the fast path: run the set-up if needed. 1 when the mode is
 * installed and fixed; 0 when this thread is inside the set-up (src/api.c:
 * only the set-up thread ever sees the state short of IN_USE after
 * pm_i_first_use returns) or inside o_load's look-ups before the mode is
 * in use. */
static int o_ready(void)
{
    if (!pm_i_in_use()) {
        if (o_loading)
            return 0;
#ifndef PM_O_PREFIX
        /* libc may be calling with its atfork lock held: the set-up's fork
         * handlers wait for o_load (src/pm_internal.h, pm_i_atfork). */
        int defer = pm_i_atfork_defer;
        pm_i_atfork_defer = 1;
        pm_i_first_use();
        pm_i_atfork_defer = defer;
#else
        pm_i_first_use(); /* the renamed copy: libc never calls it */
#endif
        if (!pm_i_in_use())
            return 0;
    }
    /* (the mem domain's hooks: with the debug hooks replaced on another
     * domain before the first allocation, possible since the mode is no
     * longer fixed at load, pm_debug_enabled() is 0, and malloc's reports
     * named pm_mem_free) */
    if (PM_I_UNLIKELY(atomic_load_explicit(&o_kind, memory_order_relaxed) == O_UNDECIDED))
        atomic_store_explicit(&o_kind, pm_i_debug_enabled_on(PM_DOMAIN_MEM) ? O_NAMED : O_PLAIN,
                              memory_order_release);
    return 1;
}

#define O_COLD __attribute__((noinline, cold))

static O_COLD void *o_enomem(void)
{
    errno = ENOMEM;
    return NULL;
}

static void *o_early(size_t n, size_t alignment)
{
    void *p = pm_i_early_alloc(n, alignment);
    return p != NULL ? p : o_enomem();
}

/* The mode is in use: the call through the table, naming the entry point
 * (the function the program called: malloc, or realloc(NULL, n)). */
__attribute__((noinline)) static void *o_malloc_named_as(size_t n, const char *name)
{
    if (PM_I_UNLIKELY(o_nested()))
        return o_early(n, 16);
    void *ctx;
    pm_i_malloc_fn fn;
    PM_I_DOMAIN_READ(&pm_i_domains[PM_DOMAIN_MEM], a.ctx, a.malloc, ctx, fn);
    PM_O_ENTER(name);
    void *p = fn(ctx, n);
    PM_O_LEAVE();
    return PM_I_LIKELY(p != NULL) ? p : o_enomem();
}

/* With the debug hooks (O_NAMED) malloc comes here straight. */
static void *o_malloc_named(size_t n) { return o_malloc_named_as(n, "malloc"); }

static O_COLD void *o_malloc_slow(size_t n)
{
    if (n > (size_t)PTRDIFF_MAX)
        return o_enomem();
    if (!o_ready())
        return o_early(n, 16);
    return o_malloc_named(n);
}

/* The mem domain's record: when it is the pool allocator's own (pymalloc
 * mode with no hook over it), the fast paths run its inline fast paths
 * instead of an indirect call. */
static inline const pm_i_base *o_mem(void)
{
    return atomic_load_explicit(&pm_i_domains[PM_DOMAIN_MEM].cur, memory_order_acquire);
}

/* The pool's slow path, for o_malloc (a tail call from there). The fast
 * path serves only 1..512 bytes, so sizes above PTRDIFF_MAX end up here. */
static O_COLD void *o_pool_malloc_slow(size_t n)
{
    if (n > (size_t)PTRDIFF_MAX)
        return o_enomem();
    void *p = pm_i_p_malloc_slow(pm_i_pool_base.a.ctx, n);
    return PM_I_LIKELY(p != NULL) ? p : o_enomem();
}

static inline __attribute__((always_inline)) void *o_malloc(size_t n)
{
    int kind = atomic_load_explicit(&o_kind, memory_order_acquire);
    if (PM_I_LIKELY(kind == O_PLAIN)) {
        const pm_i_base *r = o_mem();
        if (PM_I_LIKELY(r == &pm_i_pool_base)) {
            /* The pool base itself is the mem domain's allocator only in
             * the modes without debug hooks (they install themselves over
             * it), where links are not checked: the plain pop. */
            void *p = pm_i_p_pop(n, 0);
            return PM_I_LIKELY(p != NULL) ? p : o_pool_malloc_slow(n);
        }
        if (PM_I_LIKELY(n <= (size_t)PTRDIFF_MAX)) {
            void *p = r->a.malloc(r->a.ctx, n);
            return PM_I_LIKELY(p != NULL) ? p : o_enomem();
        }
    } else if (kind == O_NAMED && PM_I_LIKELY(n <= (size_t)PTRDIFF_MAX)) {
        return o_malloc_named(n);
    }
    return o_malloc_slow(n);
}

static inline void *o_calloc(size_t nelem, size_t elsize, const char *name)
{
    if (PM_I_UNLIKELY(elsize != 0 && nelem > (size_t)PTRDIFF_MAX / elsize))
        return o_enomem();
    void *ctx, *p;
    pm_i_calloc_fn fn;
    if (PM_I_LIKELY(o_fast())) {
        PM_I_DOMAIN_READ(&pm_i_domains[PM_DOMAIN_MEM], a.ctx, a.calloc, ctx, fn);
        p = fn(ctx, nelem, elsize);
    } else {
        if (!o_ready() || PM_I_UNLIKELY(o_nested()))
            return o_early(nelem * elsize, 16);
        PM_I_DOMAIN_READ(&pm_i_domains[PM_DOMAIN_MEM], a.ctx, a.calloc, ctx, fn);
        PM_O_ENTER(name);
        p = fn(ctx, nelem, elsize);
        PM_O_LEAVE();
    }
    return PM_I_LIKELY(p != NULL) ? p : o_enomem();
}

/* free keeps errno (glibc >= 2.33, POSIX 2024). The fast paths do not save
 * it around the library's own frees, which keep it (libc's, the pools',
 * the debug hooks'; test_override checks it in every mode). A hook's free
 * may change it (a log write that fails): o_free_hook saves it around that
 * one (before, free changed errno in the malloc and pymalloc modes, where
 * the fast path called the hook directly, and kept it in the debug
 * modes). */
/* The mode is in use: free of p (not NULL, not the early arena's) through
 * the table, naming the entry point. errno kept: saved around a free that
 * is not the debug hooks' (which keeps it, and so do PM_O_LEAVE's frees of
 * deferred blocks, which come back here). */
static inline __attribute__((always_inline)) void o_free_table(void *p, const char *name)
{
    void *ctx;
    pm_i_free_fn fn;
    PM_I_DOMAIN_READ(&pm_i_domains[PM_DOMAIN_MEM], a.ctx, a.free, ctx, fn);
    PM_O_ENTER(name);
    if (PM_I_LIKELY(fn == pm_i_debug_free)) {
        fn(ctx, p);
    } else {
        int saved = errno;
        fn(ctx, p);
        errno = saved;
    }
    PM_O_LEAVE();
}

static O_COLD void o_free_slow(void *p)
{
    if (p == NULL)
        return;
    int saved = errno;
    if (pm_i_early_owns(p)) {
        pm_i_early_free(p);
    } else if (!o_ready()) {
        /* Inside the set-up, a block that is not the arena's was not made
         * by any mode: only libc (or the dynamic loader through it) can
         * have made it. */
        pm_i_libc_free(p);
    } else {
        o_free_table(p, "free");
    }
    errno = saved; /* (o_ready's set-up too) */
}

/* With the debug hooks (O_NAMED, which implies the mode is in use): as
 * o_free_slow without o_ready, naming the function the program called
 * (free, or realloc(p, 0)). */
__attribute__((noinline)) static void o_free_named_as(void *p, const char *name)
{
    if (p == NULL || PM_I_UNLIKELY(pm_i_early_owns(p))) {
        o_free_slow(p);
        return;
    }
    if (PM_I_UNLIKELY(o_nested())) {
        o_defer(p, name);
        return;
    }
    o_free_table(p, name);
}

static void o_free_named(void *p) { o_free_named_as(p, "free"); }

/* The fast path's free through another allocator than libc's or the pool
 * base (a hook on the mem domain, or a copy of the mode's allocator set
 * back): errno kept whatever that free does with it. */
__attribute__((noinline)) static void o_free_hook(const pm_i_base *r, void *p)
{
    int saved = errno;
    r->a.free(r->a.ctx, p);
    errno = saved;
}

static inline __attribute__((always_inline)) void o_free(void *p)
{
    int kind = atomic_load_explicit(&o_kind, memory_order_acquire);
    if (PM_I_LIKELY(kind == O_PLAIN)) {
        const pm_i_base *r = o_mem();
        if (PM_I_LIKELY(r == &pm_i_pool_base)) {
            /* NULL and the early arena are not in a pool: the slow path. */
            unsigned v = pm_i_p_lookup(p);
            if (PM_I_LIKELY(v != 0)) {
                pm_i_p_free_block(p, v);
                return;
            }
        } else if (PM_I_LIKELY(!pm_i_early_owns(p) && p != NULL)) {
            if (PM_I_LIKELY(r == &pm_i_raw_base)) {
                r->a.free(r->a.ctx, p); /* libc's: keeps errno */
                return;
            }
            o_free_hook(r, p);
            return;
        }
    } else if (kind == O_NAMED) {
        o_free_named(p);
        return;
    }
    o_free_slow(p);
}

/* An early block moves to the mode (or, still inside the set-up, to a new
 * early block) on realloc. */
static void *o_realloc_early(void *p, size_t n)
{
    void *q = o_malloc(n);
    if (q != NULL) {
        size_t old = pm_i_early_size(p);
        memcpy(q, p, old < n ? old : n);
        pm_i_early_free(p);
    }
    return q;
}

static inline int o_named(void)
{
    return atomic_load_explicit(&o_kind, memory_order_acquire) == O_NAMED;
}

/* Until the first call off the fast path (o_ready) the kind is undecided,
 * and a call takes the plain paths, whose reports name malloc and free. So
 * an entry point with a name of its own (__libc_free, cfree, realloc(p, 0),
 * __libc_malloc, realloc(NULL, n), an aligned allocation up to 16 bytes)
 * decides it first: its report names it even as the process's first call
 * (before 2026-12-05 a double free by a first __libc_free was "free:
 * double free", found by the corruption fuzzer). errno kept (the
 * set-up's). */
static O_COLD void o_decide(void)
{
    int saved = errno;
    (void)o_ready();
    errno = saved;
}

static inline void o_decided(void)
{
    if (PM_I_UNLIKELY(atomic_load_explicit(&o_kind, memory_order_relaxed) == O_UNDECIDED))
        o_decide();
}

/* free of p for the function the program called (name: __libc_free, cfree,
 * realloc(p, 0)), deciding the kind first; an early block's free fixes no
 * mode, as before o_decided. */
static void o_free_by(void *p, const char *name)
{
    if (p != NULL && !pm_i_early_owns(p))
        o_decided();
    if (o_named())
        o_free_named_as(p, name);
    else
        o_free(p);
}

/* malloc of n for the function the program called (name): with the debug
 * hooks, a report made by it names that function (realloc(NULL, n), the
 * memalign family up to 16-byte alignment); else the plain malloc. */
static void *o_malloc_as(size_t n, const char *name)
{
    o_decided();
    if (o_named() && PM_I_LIKELY(n <= (size_t)PTRDIFF_MAX))
        return o_malloc_named_as(n, name);
    return o_malloc(n);
}

static inline void *o_realloc(void *p, size_t n, const char *name)
{
    /* With the debug hooks, a report names realloc (name: the function the
     * program called), also for realloc(NULL, n) and realloc(p, 0) (the
     * mode is read on these two paths only). */
    if (p == NULL)
        return o_malloc_as(n, name);
    if (n == 0) { /* glibc: realloc(p, 0) frees p and returns NULL */
        o_free_by(p, name);
        return NULL;
    }
    if (PM_I_UNLIKELY(n > (size_t)PTRDIFF_MAX))
        return o_enomem();
    if (PM_I_UNLIKELY(pm_i_early_owns(p)))
        return o_realloc_early(p, n);
    void *q;
    if (PM_I_LIKELY(o_fast())) {
        void *ctx;
        pm_i_realloc_fn fn;
        PM_I_DOMAIN_READ(&pm_i_domains[PM_DOMAIN_MEM], a.ctx, a.realloc, ctx, fn);
        q = fn(ctx, p, n);
    } else if (!o_ready()) {
        q = pm_i_libc_realloc(p, n); /* not the arena's: libc's (see o_free_slow) */
    } else if (PM_I_UNLIKELY(o_nested())) {
        return o_enomem();
    } else {
        void *ctx;
        pm_i_realloc_fn fn;
        PM_I_DOMAIN_READ(&pm_i_domains[PM_DOMAIN_MEM], a.ctx, a.realloc, ctx, fn);
        PM_O_ENTER(name);
        q = fn(ctx, p, n);
        PM_O_LEAVE();
    }
    return PM_I_LIKELY(q != NULL) ? q : o_enomem();
}

/* alignment: a power of two; name: the function the program called, which
 * the debug hooks' reports name (a freed pool block written after its free
 * that the malloc takes; a block the quarantine held, written, that leaves
 * it when memory runs short), as they name realloc. */
static void *o_aligned(size_t alignment, size_t n, const char *name)
{
    if (alignment <= 16)
        return o_malloc_as(n, name); /* every mode aligns to 16 */
    /* n bytes at an `alignment` boundary may need n + alignment bytes: past
     * PTRDIFF_MAX nothing can serve them (glibc: ENOMEM), so no mode's
     * memalign is asked (under a sanitizer the raw mode's is the
     * sanitizer's, which aborts on an alignment of 2^63: found by the
     * operations fuzzer, regress-memalign-align-2-63). */
    if (PM_I_UNLIKELY(alignment > (size_t)PTRDIFF_MAX || n > (size_t)PTRDIFF_MAX - alignment))
        return o_enomem();
    if (PM_I_UNLIKELY(!o_ready() || o_nested()))
        return o_early(n, alignment);
    PM_O_ENTER(name);
    void *p = pm_i_domain_memalign(PM_DOMAIN_MEM, alignment, n);
    PM_O_LEAVE();
    return PM_I_LIKELY(p != NULL) ? p : o_enomem();
}

/* glibc's memalign: an alignment above SIZE_MAX/2+1 is EINVAL; one that is
 * not a power of two is rounded up to the next power of two. */
static void *o_memalign(size_t alignment, size_t n, const char *name)
{
    if (alignment > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment & (alignment - 1)) {
        size_t a = 1;
        while (a < alignment)
            a <<= 1;
        alignment = a;
    }
    return o_aligned(alignment, n, name);
}

static size_t o_pagesize(void)
{
    static _Atomic size_t cached;
    size_t ps = atomic_load_explicit(&cached, memory_order_relaxed);
    if (ps == 0) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
        atomic_store_explicit(&cached, ps, memory_order_relaxed);
    }
    return ps;
}

/* ---------------------------------------------------------------------------
 * The exported malloc family.
 */

PM_O_EXPORT void *PM_O_NAME(malloc)(size_t n) { return o_malloc(n); }

PM_O_EXPORT void PM_O_NAME(free)(void *p) { o_free(p); }

PM_O_EXPORT void *PM_O_NAME(calloc)(size_t nelem, size_t elsize)
{
    return o_calloc(nelem, elsize, "calloc");
}

PM_O_EXPORT void *PM_O_NAME(realloc)(void *p, size_t n) { return o_realloc(p, n, "realloc"); }

/* valgrind (3.19) replaces this library's malloc, free, realloc and the
 * other standard names (unless told
 * --soname-synonyms=somalloc=nouserintercepts), not its reallocarray,
 * pvalloc or its __libc_* names: their blocks must be valgrind's too.
 * Under valgrind, O_AS_EXPORTED returns the call of the exported plain
 * name through its address, which goes where the program's calls go, to
 * valgrind's replacement (or to ours, with nouserintercepts). */
#define O_AS_EXPORTED(plain, ...)                                              \
    do {                                                                       \
        if (PM_I_UNLIKELY(RUNNING_ON_VALGRIND)) {                              \
            __typeof__(&PM_O_NAME(plain)) volatile exported_ = PM_O_NAME(plain); \
            return exported_(__VA_ARGS__);                                     \
        }                                                                      \
    } while (0)

PM_O_EXPORT void *PM_O_NAME(reallocarray)(void *p, size_t nelem, size_t elsize)
{
    size_t n;
    if (__builtin_mul_overflow(nelem, elsize, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    /* valgrind does not replace reallocarray: its block is valgrind's */
    O_AS_EXPORTED(realloc, p, n);
    return o_realloc(p, n, "realloc");
}

PM_O_EXPORT int PM_O_NAME(posix_memalign)(void **out, size_t alignment, size_t n)
{
    if (alignment == 0 || alignment % sizeof(void *) != 0 ||
        (alignment & (alignment - 1)) != 0)
        return EINVAL;
    int saved = errno;
    void *p = o_aligned(alignment, n, "posix_memalign");
    errno = saved;
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

PM_O_EXPORT void *PM_O_NAME(aligned_alloc)(size_t alignment, size_t n)
{
    return o_memalign(alignment, n, "aligned_alloc");
}

PM_O_EXPORT void *PM_O_NAME(memalign)(size_t alignment, size_t n)
{
    return o_memalign(alignment, n, "memalign");
}

PM_O_EXPORT void *PM_O_NAME(valloc)(size_t n) { return o_aligned(o_pagesize(), n, "valloc"); }

/* n rounded up to whole pages, as pvalloc takes it; -1 (ENOMEM) if that
 * does not fit in a size_t. */
static int o_page_rounded(size_t n, size_t *rounded)
{
    size_t ps = o_pagesize();
    if (__builtin_add_overflow(n, ps - 1, rounded)) {
        errno = ENOMEM;
        return -1;
    }
    *rounded &= ~(ps - 1);
    return 0;
}

static void *o_pvalloc(size_t n, const char *name)
{
    size_t rounded;
    if (o_page_rounded(n, &rounded) != 0)
        return NULL;
    return o_aligned(o_pagesize(), rounded, name);
}

/* valgrind (3.19) does not replace pvalloc either: under it, the page-
 * rounded request goes to the exported memalign, valgrind's (before
 * 2026-12-06 the debug modes made a debug block that valgrind's free and
 * realloc were then given: "Invalid free()", a realloc that failed, a
 * program that crashed). */
PM_O_EXPORT void *PM_O_NAME(pvalloc)(size_t n)
{
    if (PM_I_UNLIKELY(RUNNING_ON_VALGRIND)) {
        size_t rounded;
        if (o_page_rounded(n, &rounded) != 0)
            return NULL;
        O_AS_EXPORTED(memalign, o_pagesize(), rounded);
    }
    return o_pvalloc(n, "pvalloc");
}

/* glibc's other names of its allocator (and cfree, an old name of free
 * that glibc keeps for programs linked long ago), which programs may call
 * directly: __libc_malloc's block freed with free, or malloc's with
 * __libc_free, mixes no allocators under glibc, nor does it here (before,
 * these reached glibc, whose free took a pool block for one of its own
 * chunks, and the debug hooks reported free's of glibc's blocks as invalid
 * pointers). Reports name the function the program called. tcmalloc and
 * mimalloc export these too.
 *
 * Under valgrind, which replaces this library's malloc, free, realloc and
 * the others but not these names, each goes through O_AS_EXPORTED: else a
 * block of __libc_malloc's (ours) freed with free (valgrind's) was a
 * "Mismatched free()" to memcheck. */

PM_O_EXPORT void *PM_O_NAME(__libc_malloc)(size_t n)
{
    O_AS_EXPORTED(malloc, n);
    return o_malloc_as(n, "__libc_malloc");
}

/* Its address, for modes/raw.c, which must not take it for glibc's. */
#define O_STR2(x) #x
#define O_STR(x) O_STR2(x)
extern void *pm_i_o_libc_malloc(size_t n)
    __attribute__((alias(O_STR(PM_O_NAME(__libc_malloc))), visibility("hidden")));

static void o_free_as(void *p, const char *name)
{
    if (PM_I_UNLIKELY(RUNNING_ON_VALGRIND)) {
        __typeof__(&PM_O_NAME(free)) volatile exported = PM_O_NAME(free);
        exported(p);
    } else {
        o_free_by(p, name);
    }
}

PM_O_EXPORT void PM_O_NAME(__libc_free)(void *p) { o_free_as(p, "__libc_free"); }

PM_O_EXPORT void PM_O_NAME(cfree)(void *p) { o_free_as(p, "cfree"); }

PM_O_EXPORT void *PM_O_NAME(__libc_calloc)(size_t nelem, size_t elsize)
{
    O_AS_EXPORTED(calloc, nelem, elsize);
    return o_calloc(nelem, elsize, "__libc_calloc");
}

PM_O_EXPORT void *PM_O_NAME(__libc_realloc)(void *p, size_t n)
{
    O_AS_EXPORTED(realloc, p, n);
    return o_realloc(p, n, "__libc_realloc");
}

PM_O_EXPORT void *PM_O_NAME(__libc_memalign)(size_t alignment, size_t n)
{
    O_AS_EXPORTED(memalign, alignment, n);
    return o_memalign(alignment, n, "__libc_memalign");
}

PM_O_EXPORT void *PM_O_NAME(__libc_valloc)(size_t n)
{
    O_AS_EXPORTED(valloc, n);
    return o_aligned(o_pagesize(), n, "__libc_valloc");
}

PM_O_EXPORT void *PM_O_NAME(__libc_pvalloc)(size_t n)
{
    O_AS_EXPORTED(pvalloc, n);
    return o_pvalloc(n, "__libc_pvalloc");
}

/* With the debug hooks it names itself as the other calls do, so that a
 * handler's call made while it holds a registry stripe is served as nested;
 * nested itself (a handler's, on a block made outside the handler), it
 * must not wait for the stripe its interrupted call may hold. */
PM_O_EXPORT size_t PM_O_NAME(malloc_usable_size)(void *p)
{
    if (p == NULL)
        return 0;
    if (pm_i_early_owns(p))
        return pm_i_early_size(p);
    if (!o_ready())
        return pm_i_libc_usable_size(p);
    if (PM_I_LIKELY(o_fast()))
        return pm_i_domain_usable_size(PM_DOMAIN_MEM, p);
    if (PM_I_UNLIKELY(o_nested()))
        return pm_i_debug_usable_size_nested(p);
    PM_O_ENTER("malloc_usable_size");
    size_t n = pm_i_domain_usable_size(PM_DOMAIN_MEM, p);
    PM_O_LEAVE();
    return n;
}

/* The debug hooks' quarantine emptied first (its blocks go back to glibc,
 * which can then trim them), glibc's own trim of its heap, and the calling
 * thread's cached pool blocks back to their pools (pm_trim), last: the
 * first call's look-up of glibc's malloc_trim allocates. */
PM_O_EXPORT int PM_O_NAME(malloc_trim)(size_t pad)
{
    int ready = o_ready(); /* (set up: pm_trim's parts, one at a time) */
    int held = 0;
    if (ready) {
        /* Its reports (a write into a block the quarantine held) name
         * malloc_trim, the function the program called (nested in another
         * call, a handler's, the trim does nothing). */
        int name_it = o_named() && !o_nested();
        if (name_it)
            PM_O_ENTER("malloc_trim");
        held = pm_i_debug_trim();
        if (name_it)
            PM_O_LEAVE();
    }
    int released = pm_i_libc_trim(pad);
    return (ready ? pm_i_pool_trim() : 0) | released | held;
}

/* The summary line, for an exit status of 0 after heap errors (this
 * copy's, then the other copies' count): 1 then, else status. The parent
 * sees status & 0xff: _exit(256) is a success too. A vfork child's counts
 * are its parent's, summed up at the parent's exit. */
static int o_exit_status(int status)
{
    pm_i_debug_abort_wait();
    if ((status & 0xff) != 0 || !pm_i_debug_counts_are_mine())
        return status;
    int mine = pm_i_debug_summary();
    if (pm_i_debug_others_summary() || mine)
        return PM_I_REPORT_EXIT_STATUS;
    return status;
}

static __attribute__((noreturn)) void o_end(int status)
{
    for (;;) {
        syscall(SYS_exit_group, status);
        syscall(SYS_exit, status);
    }
}

/* _exit and _Exit: with PYMALLOC_ON_ERROR=report, a process that counted
 * heap errors and ends with _exit(0) (a test harness's child, typically)
 * would pass silently: the summary is printed at exit(), which _exit
 * skips. Here it prints the summary line and exits with status 1 instead.
 * Any other status (low 8 bits not 0) is kept, without the line, and so is
 * a vfork child's (its counts are its parent's). Async-signal-safe (one
 * write; the reports' lock, kept, waited for about a second at most, and
 * taken at once by a handler that interrupted its own thread's report).
 * Calls inside the C library
 * (exit() ending in _exit) do not come here. */
PM_O_EXPORT __attribute__((noreturn)) void PM_O_NAME(_exit)(int status)
{
    o_end(o_exit_status(status));
}

PM_O_EXPORT __attribute__((noreturn)) void PM_O_NAME(_Exit)(int status)
{
    PM_O_NAME(_exit)(status);
}

/* Run the set-up when the library is loaded: a bad PYMALLOC_MODE stops the
 * program even if it never allocates, and the mode is in place before the
 * constructors of libraries loaded after this one. Then register the fork
 * handlers of a set-up that an allocation started before (o_ready). */
#ifndef PM_O_PREFIX
/* This copy's malloc, by an address that no other definition can take. */
#if defined(__has_attribute) && __has_attribute(copy)
#define O_SAME_ATTRIBUTES __attribute__((copy(malloc)))
#else
#define O_SAME_ATTRIBUTES
#endif
extern void *o_this_malloc(size_t n)
    __attribute__((alias("malloc"), visibility("hidden"))) O_SAME_ATTRIBUTES;

/* Another malloc comes first in the process (src/pm_internal.h): this copy
 * may be idle, or behind a wrapper. */
static int o_hidden(void)
{
    void *sym = dlsym(RTLD_DEFAULT, "malloc"); /* may allocate: from that malloc */
    void *(*first)(size_t);
    memcpy(&first, &sym, sizeof first); /* POSIX: dlsym results are callable */
    return sym != NULL && first != o_this_malloc;
}

/* quick_exit: glibc's runs the at_quick_exit handlers, then its own
 * _exit, which is not this one: after heap errors, quick_exit(0) exited 0
 * without the summary. An at_quick_exit handler of this library does what
 * its _exit does. Registered here, before main's and those of libraries
 * loaded later (which then run before it, their errors counted), and in
 * no library's name; a handler registered by the constructor of a library
 * set up before this one runs after it (its errors are reported, not
 * summed up: handlers run last registered first). glibc calls
 * a handler registered by __cxa_at_quick_exit as fn(arg, status) (its
 * struct exit_function, ef_cxa), which gives it the status to keep or
 * replace. (The cast through void (*)(void) is the one that says the
 * types differ on purpose.) Registering may allocate (past glibc's 32
 * static entries): here that is from the early arena while the mode is not
 * in use (o_loading), else from the mode, and no lock of ours is held. */
#if defined(__GLIBC__)
extern int __cxa_at_quick_exit(void (*fn)(void *), void *d);
static void o_quick_exit(void *arg, int status)
{
    (void)arg;
    int end = o_exit_status(status);
    if (end != status)
        o_end(end);
}
#endif

/* This copy is a shared object loaded at start-up before the C library
 * (preloaded, or a dependency the program names before it): its
 * constructors run before the program's entry point, where glibc registers
 * the exit handler that runs the destructors (src/report.c,
 * pm_i_exit_work_at_load). Not the copy in an executable (libpymalloc.a),
 * whose constructors run after that, nor one loaded after the C library
 * (dlopen). pm_i_object_of does not allocate. */
#if defined(__GLIBC__)
extern int __cxa_atexit(void (*fn)(void *), void *arg, void *d);
static int o_loaded_before_libc(void)
{
    void *(*self_fn)(size_t) = o_this_malloc;
    int (*libc_fn)(void (*)(void *), void *, void *) = __cxa_atexit;
    void *self_addr, *libc_addr; /* (POSIX: function and data pointers convert) */
    memcpy(&self_addr, &self_fn, sizeof self_addr);
    memcpy(&libc_addr, &libc_fn, sizeof libc_addr);
    struct link_map *self = pm_i_object_of(self_addr), *libc = pm_i_object_of(libc_addr);
    if (self == NULL || libc == NULL)
        return 0;
    if (self->l_prev == NULL || self == libc) /* the program itself (the list's head) */
        return 0;
    for (const struct link_map *m = self->l_next; m != NULL; m = m->l_next)
        if (m == libc)
            return 1;
    return 0;
}
#endif

/* The set-up (src/api.c) makes the C library allocator's first call in
 * this copy only: the one that replaces malloc. */
const char pm_i_o_replaces_malloc __attribute__((visibility("hidden"))) = 1;

__attribute__((constructor)) static void o_load(void)
{
    o_loading = 1; /* (their allocations do not fix the mode) */
    pm_i_quiet_copy = o_hidden();
    pm_i_debug_find_other_copies(); /* (its dlsym may allocate: the early arena) */
    pm_i_ensure_init();
    pm_i_atfork_flush();
    /* malloc_usable_size may first be called by a signal handler that
     * interrupted malloc, where the look-up must not allocate. */
    pm_i_libc_usable_resolve();
    /* The C library's exec functions (src/exec.c), found while no exec can
     * be in a vfork child; the call also links that file in with this one
     * from libpymalloc.a. */
    pm_i_exec_resolve();
#if defined(__GLIBC__)
    /* The next sigaction and signal (src/signal.c); this also links that
     * file in from libpymalloc.a. */
    pm_i_signal_resolve();
    __cxa_at_quick_exit((void (*)(void *))(void (*)(void))o_quick_exit, NULL);
    if (o_loaded_before_libc())
        (void)pm_i_exit_work_at_load();
#endif
    o_loading = 0;
}
#endif
