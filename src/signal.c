/*
 * src/signal.c - sigaction and signal, so that the debug modes' SIGABRT
 * handler does not show.
 *
 * The debug hooks check every live block when the process aborts, from a
 * SIGABRT handler of their own (modes/debug.c, "At abort"), installed when
 * they go in where the program's action is the default. A program that
 * asked for SIGABRT's action saw that handler instead of SIG_DFL: Python's
 * signal.getsignal(SIGABRT) answered None, and the common save-and-restore
 * (old = signal.signal(SIGABRT, h); ...; signal.signal(SIGABRT, old))
 * failed with a TypeError, in the debug modes only.
 *
 * The handler does what the default does (after its check, the default
 * action again, and the signal raised again), so here, for SIGABRT only:
 *
 *   - while the handler is installed, the action shown (the old action of
 *     sigaction and signal) is the default the program last set, or the one
 *     the handler replaced: the program's view, flags and mask included;
 *   - setting the default (SIG_DFL) keeps the handler, or puts it back when
 *     the program's own handler was there (a crash reporter restoring the
 *     action before it and raising the signal again gets the check too);
 *   - setting anything else (a handler, SIG_IGN) is the C library's
 *     sigaction: the program's action replaces the check, as before.
 *
 * Where the handler was never installed (the modes without debug hooks, a
 * program whose own handler was there first) every call goes on to the
 * next definition: the C library's, or that of a library preloaded after
 * this one (pm_i_signal_resolve). Which action is installed is asked of the kernel at each call,
 * so a change made behind these functions (another signal function of the
 * C library, a raw system call) is seen. The debug layer itself calls the
 * C library's sigaction (pm_i_real_sigaction), never these. Async-signal-
 * safe, as sigaction is: no lock, no allocation. Two threads setting
 * SIGABRT's default at once each get a whole action as the old one (one
 * that was set), though not always in the kernel's order.
 *
 * The C library's other names for signal, which call its sigaction
 * directly (bsd_signal and ssignal; sysv_signal, and __sysv_signal, which
 * a program built for strict ISO C or POSIX calls for signal), are defined
 * here too, the same way (before 2026-12-07 they showed the handler, and a
 * strict-standard program's signal(SIGABRT, SIG_DFL) took the check at
 * abort out: found by an audit and a review). Weak, so that a program
 * linked with libpymalloc.a may define one of its own. Not sigset, a
 * common name of a variable: a library's global `sigset_t sigset` would
 * bind to the function here (a crash, found by a review). sigset and the
 * raw rt_sigaction system call still show the handler. Built into the
 * override libraries only (libpymalloc.so/.a), on glibc, not into the
 * renamed copy of the fuzz targets.
 */
#define _GNU_SOURCE 1
#include "pm_override.h"
#include "pm_debug.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>

#if !defined(PM_O_PREFIX) && defined(__GLIBC__)

#define PM_S_EXPORT __attribute__((visibility("default")))

/* The next definitions of sigaction and signal (the C library's, or those
 * of a library preloaded after this one that chains handlers, as the
 * JVM's libjsig does): every action the program sets goes to them, not
 * past them. Found at load time (dlsym may allocate); until then, and if
 * there is none, the C library's own. */
typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef __sighandler_t (*signal_fn)(int, __sighandler_t);
static _Atomic(sigaction_fn) s_next_sigaction;
/* signal's names, each's next definition */
enum { S_SIGNAL, S_BSD_SIGNAL, S_SSIGNAL, S_SYSV_SIGNAL, S__SYSV_SIGNAL, S_NAMES };
static const char *const s_name[S_NAMES] = {"signal", "bsd_signal", "ssignal", "sysv_signal",
                                            "__sysv_signal"};
static _Atomic(signal_fn) s_next_signal[S_NAMES];
extern __sighandler_t bsd_signal(int sig, __sighandler_t handler);
extern __sighandler_t ssignal(int sig, __sighandler_t handler);
extern __sighandler_t __sysv_signal(int sig, __sighandler_t handler);

void pm_i_signal_resolve(void)
{
    void *a = dlsym(RTLD_NEXT, "sigaction");
    sigaction_fn fa;
    memcpy(&fa, &a, sizeof fa); /* POSIX: dlsym results are callable */
    atomic_store_explicit(&s_next_sigaction, fa, memory_order_release);
    for (int i = 0; i < S_NAMES; i++) {
        void *s = dlsym(RTLD_NEXT, s_name[i]);
        signal_fn fs;
        memcpy(&fs, &s, sizeof fs);
        atomic_store_explicit(&s_next_signal[i], fs, memory_order_release);
    }
}

static int s_next_action(int sig, const struct sigaction *act, struct sigaction *old)
{
    sigaction_fn f = atomic_load_explicit(&s_next_sigaction, memory_order_acquire);
    return f != NULL ? f(sig, act, old) : pm_i_real_sigaction(sig, act, old);
}

/* The default action the program last set while the handler was installed
 * (NULL: none yet, pm_i_debug_abort_prev is shown, the one it replaced).
 * Two threads setting the default at once tore a single stored copy (one's
 * mask with the other's flags: tests/override/prog_sigabrt_race.c). Now a
 * set claims one of S_SHOWN_SLOTS copies (its generation odd while it is
 * written), writes it and publishes it; a reader copies the published one
 * and takes the copy only if its generation was even and unchanged across
 * it (a copy is rewritten only when the sets after it have gone round all
 * the slots: a reader preempted that long reads it again). No lock: a
 * handler's sigaction in the middle of its own thread's never waits for
 * it (it claims another slot; a reader there reads a published slot,
 * which its thread is not writing). */
#define S_SHOWN_SLOTS 8
typedef struct s_slot {
    _Atomic unsigned gen; /* odd while a set writes sa */
    struct sigaction sa;
} s_slot;
static s_slot s_shown_slot[S_SHOWN_SLOTS];
static _Atomic unsigned s_shown_next;
static _Atomic(s_slot *) s_shown;

/* Is the debug layer's handler SIGABRT's action in *cur? */
static int s_is_ours(const struct sigaction *cur)
{
    return !(cur->sa_flags & SA_SIGINFO) && cur->sa_handler == pm_i_debug_abort_handler;
}

static void s_shown_get(struct sigaction *out)
{
    for (unsigned tries = 0;; tries++) {
        s_slot *p = atomic_load_explicit(&s_shown, memory_order_acquire);
        if (p == NULL) {
            *out = pm_i_debug_abort_prev;
            return;
        }
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        memcpy(out, &p->sa, sizeof *out);
        atomic_thread_fence(memory_order_acquire);
        /* (past a million tries, which no schedule makes, the copy as it is) */
        if (((g & 1) == 0 && atomic_load_explicit(&p->gen, memory_order_relaxed) == g) ||
            tries >= 1000000)
            return;
    }
}

/* Action *shown as the C library reports one it set: with the flags it
 * adds of its own (SA_RESTORER, on x86 and others) and its restorer, as it
 * added them to the handler's action *ours (set with SA_RESTART only). */
static void s_as_set(struct sigaction *shown, const struct sigaction *ours)
{
    shown->sa_flags |= ours->sa_flags & ~SA_RESTART;
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || defined(__arm__)
    shown->sa_restorer = ours->sa_restorer;
#endif
}

/* Publish act, SIGABRT's default as the program set it, as the action
 * shown; ours is the handler's action as the C library reports it. */
static void s_shown_put(const struct sigaction *act, const struct sigaction *ours)
{
    for (;;) {
        unsigned i = atomic_fetch_add_explicit(&s_shown_next, 1, memory_order_relaxed);
        s_slot *slot = &s_shown_slot[i % S_SHOWN_SLOTS];
        unsigned g = atomic_load_explicit(&slot->gen, memory_order_relaxed);
        if ((g & 1) != 0 || !atomic_compare_exchange_strong_explicit(
                                &slot->gen, &g, g + 1, memory_order_acquire, memory_order_relaxed))
            continue; /* another set is writing this one */
        atomic_thread_fence(memory_order_release);
        slot->sa = *act;
        s_as_set(&slot->sa, ours);
        atomic_store_explicit(&slot->gen, g + 2, memory_order_release);
        atomic_store_explicit(&s_shown, slot, memory_order_release);
        return;
    }
}

static int s_sigaction(const struct sigaction *act, struct sigaction *old)
{
    struct sigaction cur;
    if (pm_i_real_sigaction(SIGABRT, NULL, &cur) != 0)
        return -1;
    int ours = s_is_ours(&cur);
    struct sigaction was;
    if (ours)
        s_shown_get(&was);
    else
        was = cur;
    if (act != NULL) {
        /* SIG_DFL is 0 in either member: with SA_SIGINFO too, the default. */
        if (act->sa_handler == SIG_DFL) {
            if (!ours && (pm_i_debug_abort_set() != 0 || pm_i_real_sigaction(SIGABRT, NULL, &cur) != 0))
                return -1;
            s_shown_put(act, &cur);
        } else if (s_next_action(SIGABRT, act, NULL) != 0) {
            return -1;
        }
    }
    if (old != NULL)
        *old = was;
    return 0;
}

/* The handler was ever installed in this process (then SIGABRT is served
 * here). A fork child inherits it; exec ends it with the process image. */
static int s_debug_handler_used(void)
{
    return atomic_load_explicit(&pm_i_debug_abort_installed, memory_order_acquire);
}

PM_S_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (sig != SIGABRT || !s_debug_handler_used())
        return s_next_action(sig, act, old);
    return s_sigaction(act, old);
}

/* One of signal's names: the next definition of it, but for SIGABRT where
 * the handler is served here, or where there is none yet (before the
 * override's load-time lookup, in another library's constructor: the same
 * action, set here, but for a siginterrupt of the program's, which only
 * the C library's own keeps). The action: handler, with flags, and sig
 * itself blocked while it runs unless SA_NODEFER; through s_sigaction
 * (SIGABRT, the handler installed) or the next sigaction. */
static __sighandler_t s_signal(int which, int sig, __sighandler_t handler, int flags)
{
    signal_fn f = atomic_load_explicit(&s_next_signal[which], memory_order_acquire);
    int ours = sig == SIGABRT && s_debug_handler_used();
    if (!ours && f != NULL)
        return f(sig, handler);
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    sigemptyset(&act.sa_mask);
    act.sa_flags = flags;
    if (handler == SIG_ERR || (!(flags & SA_NODEFER) && sigaddset(&act.sa_mask, sig) != 0)) {
        errno = EINVAL;
        return SIG_ERR;
    }
    if ((ours ? s_sigaction(&act, &old) : s_next_action(sig, &act, &old)) != 0)
        return SIG_ERR;
    return old.sa_handler;
}

/* glibc's signal, bsd_signal and ssignal (BSD semantics): the handler, with
 * sig itself blocked while it runs, and SA_RESTART (unless siginterrupt
 * said otherwise, which is not kept here for SIGABRT). */
PM_S_EXPORT __sighandler_t signal(int sig, __sighandler_t handler)
{
    return s_signal(S_SIGNAL, sig, handler, SA_RESTART);
}

PM_S_EXPORT __attribute__((weak)) __sighandler_t bsd_signal(int sig, __sighandler_t handler)
{
    return s_signal(S_BSD_SIGNAL, sig, handler, SA_RESTART);
}

PM_S_EXPORT __attribute__((weak)) __sighandler_t ssignal(int sig, __sighandler_t handler)
{
    return s_signal(S_SSIGNAL, sig, handler, SA_RESTART);
}

/* System V semantics: the action reset to the default as the handler is
 * entered, sig not blocked while it runs, no restart. */
PM_S_EXPORT __attribute__((weak)) __sighandler_t sysv_signal(int sig, __sighandler_t handler)
{
    return s_signal(S_SYSV_SIGNAL, sig, handler, SA_RESETHAND | SA_NODEFER);
}

PM_S_EXPORT __attribute__((weak)) __sighandler_t __sysv_signal(int sig, __sighandler_t handler)
{
    return s_signal(S__SYSV_SIGNAL, sig, handler, SA_RESETHAND | SA_NODEFER);
}

#endif /* !PM_O_PREFIX && __GLIBC__ */
