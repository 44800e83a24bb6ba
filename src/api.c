/*
 * src/api.c - the public entry points, the lazy set-up and pm_set_mode.
 *
 * Edge cases are handled here, once, before dispatch (so no allocator has to):
 * sizes above PTRDIFF_MAX and overflowing calloc products fail with ENOMEM,
 * free(NULL) is a no-op and realloc(NULL, n) is malloc(n). Size 0 reaches the
 * allocator, whose contract is to return a unique block for it.
 *
 * Set-up state machine (pm_i_state):
 *
 *   UNINIT --first call--> INITING --PYMALLOC_MODE read, mode installed--> READY
 *   READY --first allocation--> IN_USE          (the mode is fixed from here)
 *   READY --pm_set_mode--> INITING --> READY    (another mode installed)
 *
 * One thread wins the UNINIT->INITING transition; the others yield until it
 * is done. An allocation made by the set-up thread itself while it is in
 * INITING (pthread_atfork allocates, for instance) goes to whatever the table
 * holds at that moment, which is libc's allocator before the mode is
 * installed; the set-up code never allocates after installing. The fast path
 * pays one load and one compare for all of this.
 */
#include "pm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

_Atomic int pm_i_state = PM_I_STATE_UNINIT;

/* The mode installed (canonical entry), NULL before set-up. */
static _Atomic(const pm_i_mode *) installed_mode;
/* Serializes the changes of the table after the set-up (pm_set_mode,
 * pm_setup_debug_hooks, pm_set_allocator, and pm_get_allocator, which
 * tells the debug hooks that a copy of them was handed out) against each
 * other and against fork(). */
static pthread_mutex_t mode_lock = PTHREAD_MUTEX_INITIALIZER;
/* Set while this thread holds mode_lock, and while it takes and leaves it
 * (a signal may come in between the two steps either way). */
static __thread volatile int mode_held __attribute__((tls_model("initial-exec")));
/* Skipped by the thread calling fork() inside our fork handlers, which
 * hold it (pm_i_fork_held_api, src/pm_internal.h). A signal handler's call
 * on a thread that holds it (the handler interrupted pm_set_allocator, say)
 * would wait for ever: -1 with EDEADLK instead, and nothing changes. */
static int lock_mode(void)
{
    if (pm_i_fork_held_api)
        return 0;
    if (mode_held) {
        errno = EDEADLK;
        return -1;
    }
    mode_held = 1;
    atomic_signal_fence(memory_order_seq_cst);
    pthread_mutex_lock(&mode_lock);
    return 0;
}

static void unlock_mode(void)
{
    if (!pm_i_fork_held_api) {
        pthread_mutex_unlock(&mode_lock);
        atomic_signal_fence(memory_order_seq_cst);
        mode_held = 0;
    }
}
/* Set while this thread runs the set-up (detects recursion). */
static __thread int in_setup __attribute__((tls_model("initial-exec")));

/* ---------------------------------------------------------------------------
 * Set-up.
 */

static void install(const pm_i_mode *m)
{
    pm_i_debug_forget();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        pm_i_table_set_static((pm_domain)d, m->base[d]);
    if (m->decorate != NULL)
        m->decorate();
    atomic_store_explicit(&installed_mode, m, memory_order_release);
}

__thread int pm_i_atfork_defer __attribute__((tls_model("initial-exec")));
int pm_i_quiet_copy;
/* PYMALLOC_VERBOSE's start-up line, held back in a copy that may be idle. */
static _Atomic int verbose_pending;
static const char *verbose_env;

/* The handlers waiting for pm_i_atfork_flush (src/pm_internal.h): three at
 * most (the set-up's, the pool's, the debug hooks'). */
enum { ATFORK_MAX = 8 };
static struct atfork {
    void (*prepare)(void), (*parent)(void), (*child)(void);
} atfork_queue[ATFORK_MAX];
static int atfork_queued;
/* A spin lock, held for a few stores: a fork child renews it with an atomic
 * store (another thread may have held it at the fork, and is gone), which
 * TSan sees, where a mutex renewed by assignment was still the dead
 * thread's to it. */
static atomic_flag atfork_queue_lock = ATOMIC_FLAG_INIT;

static void queue_lock(void)
{
    while (atomic_flag_test_and_set_explicit(&atfork_queue_lock, memory_order_acquire))
        sched_yield();
}

static void queue_unlock(void)
{
    atomic_flag_clear_explicit(&atfork_queue_lock, memory_order_release);
}

void pm_i_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    queue_lock();
    if ((pm_i_atfork_defer || atfork_queued > 0) && atfork_queued < ATFORK_MAX) {
        atfork_queue[atfork_queued++] = (struct atfork){prepare, parent, child};
        queue_unlock();
        return;
    }
    queue_unlock();
    pthread_atfork(prepare, parent, child);
}

void pm_i_atfork_flush(void)
{
    queue_lock();
    struct atfork q[ATFORK_MAX];
    int n = atfork_queued;
    memcpy(q, atfork_queue, sizeof q);
    atfork_queued = 0;
    queue_unlock();
    for (int i = 0; i < n; i++)
        pthread_atfork(q[i].prepare, q[i].parent, q[i].child);
}

static int fork_no_locks; /* PM_I_FORK_TAKES_NO_LOCKS, at the prepare handler */
/* The debug hooks' handlers are called from their first installation on
 * (pm_i_debug_fork_arm); debug_in_fork: whether this thread's fork's
 * prepare did (a thread's own: another thread's fork may start after the
 * hooks went in, and its prepare must not change what this one's parent
 * handler releases). */
static _Atomic int debug_armed;
static __thread int debug_in_fork __attribute__((tls_model("initial-exec")));

void pm_i_debug_fork_arm(void) { atomic_store(&debug_armed, 1); }

static void wait_setup(void);
static void api_fork_prepare(void)
{
    if ((fork_no_locks = PM_I_FORK_TAKES_NO_LOCKS()))
        return;
    pthread_mutex_lock(&mode_lock);
    pm_i_table_lock(); /* sets pm_i_fork_held_api */
}

static void api_fork_parent(void)
{
    if (fork_no_locks)
        return;
    pm_i_table_unlock(); /* clears pm_i_fork_held_api */
    pthread_mutex_unlock(&mode_lock);
}

static void api_fork_child(void)
{
    if (fork_no_locks)
        return;
    /* The table's lock and the mode lock are this thread's (taken by the
     * prepare handler): released, as in the parent. The queue's lock is
     * not taken there, and may be another thread's, gone: renewed. */
    api_fork_parent();
    queue_unlock();
}

/* The library's fork handlers: one registration, made first by the set-up,
 * so that a fork() either runs all of them or none (the set-up registered
 * one set at a time before: a fork between two registrations ran some
 * handlers and not the others, and the child inherited a lock of the pools
 * held by the set-up's thread, which went on allocating). Locks are taken
 * in the order of the separate registrations before: the debug hooks', the
 * pools', the table's, and the early arena's last (a signal handler
 * allocates there while its thread may hold any other lock); released in
 * the other order. */
static void fork_prepare(void)
{
    if (!PM_I_FORK_TAKES_NO_LOCKS())
        wait_setup();
    /* (the C library's functions' lookup, waited for with other threads) */
    pm_i_raw_fork_prepare(!PM_I_FORK_TAKES_NO_LOCKS());
    for (;;) {
        debug_in_fork = atomic_load(&debug_armed);
        if (debug_in_fork)
            pm_i_debug_fork_prepare();
        pm_i_pool_fork_prepare();
        api_fork_prepare();
        /* The hooks go in with the mode lock held (change_setup), which we
         * hold now: if they went in since we looked, their locks were not
         * taken (the child inherited one held by a thread allocating under
         * them, and their child handler did not run). Let go and take
         * them all again, the hooks' first (once: they never go out). */
        if (debug_in_fork || fork_no_locks || !atomic_load(&debug_armed))
            break;
        api_fork_parent();
        pm_i_pool_fork_parent();
    }
    pm_i_early_fork_prepare();
}

static void fork_parent(void)
{
    pm_i_early_fork_release();
    api_fork_parent();
    pm_i_pool_fork_parent();
    if (debug_in_fork)
        pm_i_debug_fork_parent();
    pm_i_raw_fork_parent();
}

/* The process in which our fork handlers last ran in the child: there, the
 * set-up had registered them before the fork. */
static pid_t fork_child_pid;

static void fork_child(void)
{
    fork_child_pid = getpid();
    pm_i_early_fork_release();
    api_fork_child();
    pm_i_pool_fork_child();
    if (debug_in_fork)
        pm_i_debug_fork_child();
    pm_i_raw_fork_child();
}

/* Stop the process: one line on stderr, exit status 1, no atexit handlers
 * (they may allocate, and the allocator is not set up). */
__attribute__((noreturn)) void pm_i_fatal_option(const char *var, const char *value,
                                                 const char *problem,
                                                 const char *const *valid)
{
    char storage[512];
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
    pm_i_buf_str(&b, "pymalloc: ");
    pm_i_buf_str(&b, var);
    pm_i_buf_char(&b, '=');
    pm_i_buf_shown(&b, value, 64); /* the line fits the buffer: one write */
    pm_i_buf_str(&b, ": ");
    pm_i_buf_str(&b, problem);
    if (valid != NULL) {
        pm_i_buf_str(&b, " (valid: ");
        for (int i = 0; valid[i] != NULL; i++) {
            if (i > 0)
                pm_i_buf_str(&b, ", ");
            pm_i_buf_str(&b, valid[i]);
        }
        pm_i_buf_char(&b, ')');
    }
    pm_i_buf_char(&b, '\n');
    pm_i_buf_flush(&b);
    _exit(1);
}

static void print_verbose(const char *mode_env)
{
    char storage[512];
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
    pm_i_buf_str(&b, "pymalloc " PYMALLOC_VERSION_STRING ": mode ");
    pm_i_buf_str(&b, atomic_load(&installed_mode)->name);
    pm_i_buf_str(&b, " (PYMALLOC_MODE=");
    pm_i_buf_shown(&b, mode_env != NULL ? mode_env : "<unset>", 64);
    pm_i_buf_str(&b, ")\n");
    for (int i = 0; pm_i_option_names[i] != NULL; i++) {
        const char *v = pm_i_getenv(pm_i_option_names[i]);
        if (v == NULL)
            continue;
        pm_i_buf_str(&b, "pymalloc:   ");
        pm_i_buf_str(&b, pm_i_option_names[i]);
        pm_i_buf_char(&b, '=');
        pm_i_buf_shown(&b, v, 64);
        pm_i_buf_char(&b, '\n');
    }
    pm_i_buf_flush(&b);
}

/* A boolean PYMALLOC_* variable: 0 or 1, or the process stops naming the
 * accepted values. */
static int bool_option(const char *name)
{
    static const char *const bools[] = {"0", "1", "no", "yes", "off", "on", "false", "true", NULL};
    const char *env = pm_i_getenv(name);
    int v = pm_i_parse_bool(env);
    if (v < 0)
        pm_i_fatal_option(name, env, "not a boolean", bools);
    return v;
}

/* A process started with its stderr closed (2>&-): the first file it opens
 * gets descriptor 2, and everything pymalloc writes to stderr (reports,
 * PYMALLOC_STATS's table, report mode's summary, a bad variable's line)
 * went into that file, a data file the program writes. Then pymalloc
 * writes nothing (pm_i_stderr_fd -1; the exit status, 134 or 1 in report
 * mode, still tells), and the program's descriptors stay as it has them
 * (no /dev/null put there: a program sees whether its stderr is open,
 * Python's sys.stderr is None). No allocation; errno kept (set-up runs in
 * malloc). */
static void stderr_check(void)
{
    int saved = errno;
    if (fcntl(2, F_GETFD) < 0 && errno == EBADF)
        atomic_store_explicit(&pm_i_stderr_fd, -1, memory_order_relaxed);
    errno = saved;
}

/* Every PYMALLOC_* variable of the environment that pymalloc does not read
 * (a misspelling: PYMALLOC_ON_ERRORS=report left abort mode on without a
 * word) named in one line on stderr, and ignored. PYMALLOC_LIBRARY is
 * pymalloc-run's. No allocation: environ is scanned as pm_i_getenv does. */
extern char **environ;
static void name_unknown_variables(void)
{
    static const char prefix[] = "PYMALLOC_";
    for (char **env = environ; env != NULL && *env != NULL; env++) {
        const char *e = *env;
        if (strncmp(e, prefix, sizeof prefix - 1) != 0)
            continue;
        const char *eq = strchr(e, '=');
        size_t len = eq != NULL ? (size_t)(eq - e) : strlen(e);
        int known = len == strlen("PYMALLOC_LIBRARY") && strncmp(e, "PYMALLOC_LIBRARY", len) == 0;
        for (int i = 0; !known && pm_i_option_names[i] != NULL; i++)
            known = strlen(pm_i_option_names[i]) == len &&
                    strncmp(e, pm_i_option_names[i], len) == 0;
        if (known)
            continue;
        char storage[512], name[72];
        size_t shown = len < sizeof name - 1 ? len : sizeof name - 1;
        memcpy(name, e, shown);
        name[shown] = '\0';
        pm_i_buf b;
        pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
        pm_i_buf_str(&b, "pymalloc: ");
        pm_i_buf_shown(&b, name, 64);
        pm_i_buf_str(&b, ": not a variable pymalloc reads: ignored (known:");
        for (int i = 0; pm_i_option_names[i] != NULL; i++) {
            if (strcmp(pm_i_option_names[i], "PYMALLOC_ERRORS_BEFORE_EXEC") == 0)
                continue; /* (pymalloc's own, not the user's) */
            pm_i_buf_str(&b, i == 0 ? " " : ", ");
            pm_i_buf_str(&b, pm_i_option_names[i]);
        }
        pm_i_buf_str(&b, "; PYMALLOC_LIBRARY is pymalloc-run's)\n");
        pm_i_buf_flush(&b);
    }
}

/* Defined by the override (src/override.c) that replaces malloc. */
extern const char pm_i_o_replaces_malloc __attribute__((weak, visibility("hidden")));

/* The set-up; register: 0 when a fork child runs it again after our fork
 * handlers ran in it (they are registered already). */
static void setup_from_env(int register_handlers)
{
    stderr_check();
    /* Every fork handler of the library, first (see fork_prepare). */
    if (register_handlers)
        pm_i_atfork(fork_prepare, fork_parent, fork_child);
    pm_i_pool_init(); /* while the table holds libc */
    /* The C library allocator's first call (modes/raw.c), made here, where
     * the threads of the process wait for the set-up: in o_load, the
     * constructor, it came too late for a program linked with
     * libpymalloc.a whose other library's constructor starts threads.
     * Only where the override replaces malloc: the program's calls never
     * reach glibc's allocator then, and neither can a signal handler's
     * set-up interrupt it. With the API-only library (or the renamed copy)
     * glibc's malloc is the program's, set up by its first call, and a
     * program's first pm_* call may be a handler's that interrupted it
     * (tests/test_first_use_signal.c: glibc's heap broken, 12 children of
     * 60). */
    if (&pm_i_o_replaces_malloc != NULL)
        pm_i_libc_start();

    const char *env = pm_i_getenv("PYMALLOC_MODE");
    const char *name = (env == NULL || *env == '\0') ? "default" : env;
    const pm_i_mode *m = pm_i_mode_find(name, strlen(name));
    if (m == NULL)
        pm_i_fatal_option("PYMALLOC_MODE", env, "unknown mode", pm_i_mode_names());

    int verbose = bool_option("PYMALLOC_VERBOSE");

    pm_i_debug_read_options();
    int stats = bool_option("PYMALLOC_STATS");
    atomic_store(&pm_i_stats_at_exit, stats);
    if (!pm_i_quiet_copy) /* (the copy in use names them) */
        name_unknown_variables();

    install(m);
    if (verbose && !pm_i_quiet_copy) {
        print_verbose(env);
    } else if (verbose) {
        verbose_env = env;
        atomic_store(&verbose_pending, 1);
    }
}

/* A copy of the override that may be idle (pm_i_quiet_copy, set when another
 * malloc comes first) waits with its start-up line for its first allocation:
 * a wrapper preloaded before it (glibc's libmemusage.so, say) passes the
 * program's calls on to it. Still unused at exit, it prints no statistics,
 * and instead of the start-up line one line saying it was idle. */
static int idle_copy(void)
{
    return pm_i_quiet_copy && atomic_load(&pm_i_state) != PM_I_STATE_IN_USE;
}

/* PYMALLOC_STATS=1: the pool statistics on stderr when the program ends,
 * after its destructors (src/report.c's exit work calls this; nothing is
 * registered at start-up and nothing allocates). */
_Atomic int pm_i_stats_at_exit;

/* Print them now if asked, once. */
void pm_i_stats_at_exit_now(void)
{
    int stats = atomic_exchange(&pm_i_stats_at_exit, 0);
    if (idle_copy()) {
        static const char note[] = "pymalloc: this copy of libpymalloc was idle: no "
                                   "allocation reached it (the program has a malloc of its "
                                   "own, libpymalloc.a's for instance, which came first)\n";
        if (atomic_exchange(&verbose_pending, 0))
            pm_i_write_all(PM_I_STDERR, note, sizeof note - 1);
        return;
    }
    if (stats)
        pm_i_print_stats_at_exit(PM_I_STDERR);
}

/* The process whose thread runs (or ran) the first set-up: 0 before it.
 * A thread wins the set-up by setting it to its process's id; a fork child
 * that finds another's there, and the set-up unfinished, was forked while
 * that thread was inside the set-up, and that thread is not in the child. */
static _Atomic pid_t setup_owner;

static void run_setup(int register_handlers)
{
    /* Cancellation off: the set-up writes (PYMALLOC_VERBOSE's line, an
     * unknown variable's) and reads /proc/self/stat (an exec's hand-off),
     * cancellation points; a thread unwound there left the state INITING
     * and every other thread waited for ever in pm_i_ensure_init. */
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    in_setup = 1;
    setup_from_env(register_handlers);
    in_setup = 0;
    atomic_store_explicit(&pm_i_state, PM_I_STATE_READY, memory_order_release);
    pthread_setcancelstate(cancel_state, NULL);
}

void pm_i_ensure_init(void)
{
    if (PM_I_LIKELY(atomic_load_explicit(&pm_i_state, memory_order_acquire) >=
                    PM_I_STATE_READY))
        return;
    if (in_setup)
        return; /* a recursive call from the set-up: the table holds libc */
    pid_t me = getpid(), none = 0;
    if (atomic_compare_exchange_strong(&setup_owner, &none, me)) {
        atomic_store(&pm_i_state, PM_I_STATE_INITING);
        run_setup(1);
        return;
    }
    while (atomic_load_explicit(&pm_i_state, memory_order_acquire) < PM_I_STATE_READY) {
        /* A fork child whose parent's set-up thread is gone (before,
         * every thread of the child waited for it for ever): it is run
         * again here, once. If our fork handlers ran in this child, the
         * set-up had registered them, its first step, and the fork's
         * prepare handler gave up waiting for it (wait_setup): the
         * handlers renewed the locks, and the set-up goes on without
         * registering them again. Else the fork came before, and the
         * set-up had done nothing yet. */
        pid_t owner = atomic_load(&setup_owner);
        if (owner != me && atomic_compare_exchange_strong(&setup_owner, &owner, me)) {
            int registered = fork_child_pid == me;
            if (!registered) {
                queue_unlock(); /* (may be the dead thread's) */
                atfork_queued = 0;
            }
            run_setup(!registered);
            return;
        }
        sched_yield();
    }
}

/* Called by our fork prepare handler before it takes a lock, in a process
 * with more than one thread: a set-up running on another thread (the
 * first, or pm_set_mode's) is waited for, so that the child never inherits
 * one half done, whose thread it does not have (every pm_* call of the
 * child waited for ever). Bounded (about a second), in case the set-up
 * waits for something the forking thread holds. */
static void wait_setup(void)
{
    if (in_setup)
        return; /* fork() from inside the set-up: it is this thread's */
    for (int i = 0; i < 1100; i++) {
        if (atomic_load_explicit(&pm_i_state, memory_order_acquire) != PM_I_STATE_INITING)
            return;
        pm_i_wait_round(i);
    }
}

/* Round i of a bounded wait: 100 yields, then 1 ms a round. No
 * cancellation point (the raw nanosleep system call): the waits run inside
 * fork() and pm_raw_malloc, neither of which a pending cancellation may
 * unwind (a thread unwound there left our locks, or the prepare handlers
 * run before ours, held). */
void pm_i_wait_round(int i)
{
#ifdef SYS_nanosleep
    if (i >= 100) {
#if defined(__x86_64__) && defined(__ILP32__)
        struct {
            long long tv_sec, tv_nsec; /* (x32: the 64-bit system call's) */
        } ms = {0, 1000000};
#else
        struct {
            long tv_sec, tv_nsec; /* (the kernel's, for this system call) */
        } ms = {0, 1000000};
#endif
        syscall(SYS_nanosleep, &ms, NULL);
        return;
    }
#else
    (void)i;
#endif
    sched_yield();
}

void pm_i_first_use(void)
{
    for (;;) {
        pm_i_ensure_init();
        int s = atomic_load_explicit(&pm_i_state, memory_order_acquire);
        if (s == PM_I_STATE_IN_USE || in_setup)
            return;
        if (s == PM_I_STATE_READY &&
            atomic_compare_exchange_strong(&pm_i_state, &s, PM_I_STATE_IN_USE)) {
            if (atomic_load_explicit(&verbose_pending, memory_order_relaxed) &&
                atomic_exchange(&verbose_pending, 0))
                print_verbose(verbose_env); /* a copy that was not idle after all */
            return;
        }
        /* pm_set_mode is installing another mode: wait for it. */
    }
}

/* ---------------------------------------------------------------------------
 * Modes.
 */

/* Install mode m (if m is not NULL) or run fn, while nothing has been
 * allocated: the one place the set-up is changed after start-up. Once the
 * mode is in use: 0 for the installed mode (nothing changes: any hooks
 * stay), else -1 with EBUSY. Before, the mode is installed anew even if it
 * is the installed one (replacing any hooks, as documented). */
static int change_setup(const pm_i_mode *m, void (*fn)(void))
{
    pm_i_ensure_init();
    if (lock_mode() != 0)
        return -1;
    int rc = 0;
    for (;;) {
        int s = atomic_load_explicit(&pm_i_state, memory_order_acquire);
        if (s == PM_I_STATE_IN_USE) {
            if (m != NULL && atomic_load(&installed_mode) == m)
                break; /* in use, and already installed: keep any hooks */
            errno = EBUSY;
            rc = -1;
            break;
        }
        /* (this process runs it: a fork child's other threads wait for
         * it, and do not run the set-up themselves, pm_i_ensure_init) */
        atomic_store(&setup_owner, getpid());
        if (s == PM_I_STATE_READY &&
            atomic_compare_exchange_strong(&pm_i_state, &s, PM_I_STATE_INITING)) {
            in_setup = 1;
            if (m != NULL)
                install(m);
            else
                fn();
            in_setup = 0;
            atomic_store_explicit(&pm_i_state, PM_I_STATE_READY, memory_order_release);
            break;
        }
    }
    unlock_mode();
    return rc;
}

int pm_set_mode(const char *name)
{
    const pm_i_mode *m = name != NULL ? pm_i_mode_find(name, strlen(name)) : NULL;
    if (m == NULL) {
        errno = EINVAL;
        return -1;
    }
    return change_setup(m, NULL);
}

int pm_i_reconfigure(void (*fn)(void)) { return change_setup(NULL, fn); }

const char *pm_mode_name(void)
{
    pm_i_ensure_init();
    const pm_i_mode *m = atomic_load_explicit(&installed_mode, memory_order_acquire);
    return m != NULL ? m->name : "malloc"; /* NULL only inside the set-up itself */
}

const char *const *pm_mode_names(void) { return pm_i_mode_names(); }

const char *pm_version(void) { return PYMALLOC_VERSION_STRING; }

int pm_i_trim(void)
{
    pm_i_ensure_init();
    int held = pm_i_debug_trim(); /* the quarantine's blocks first: some are the pools' */
    return pm_i_pool_trim() | held;
}

int pm_trim(void) { return pm_i_trim(); }

/* ---------------------------------------------------------------------------
 * The table, publicly.
 */

int pm_get_allocator(pm_domain domain, pm_allocator *out)
{
    if ((unsigned)domain >= PM_DOMAIN_COUNT || out == NULL) {
        errno = EINVAL;
        return -1;
    }
    pm_i_ensure_init();
    if (lock_mode() != 0)
        return -1;
    pm_i_table_read(domain, out);
    pm_i_debug_table_read(domain);
    unlock_mode();
    return 0;
}

int pm_set_allocator(pm_domain domain, const pm_allocator *a)
{
    if ((unsigned)domain >= PM_DOMAIN_COUNT || a == NULL || a->malloc == NULL ||
        a->calloc == NULL || a->realloc == NULL || a->free == NULL) {
        errno = EINVAL;
        return -1;
    }
    pm_i_ensure_init();
    if (lock_mode() != 0)
        return -1;
    int rc = pm_i_debug_table_write(domain, a);
    unlock_mode();
    return rc;
}

/* ---------------------------------------------------------------------------
 * Entry points.
 */

static inline void ready(void)
{
    if (PM_I_UNLIKELY(!pm_i_in_use()))
        pm_i_first_use();
}

static inline void *dom_malloc(pm_domain d, size_t n)
{
    if (PM_I_UNLIKELY(n > (size_t)PTRDIFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    ready();
    void *ctx;
    pm_i_malloc_fn fn;
    PM_I_DOMAIN_READ(&pm_i_domains[d], a.ctx, a.malloc, ctx, fn);
    void *p = fn(ctx, n);
    if (PM_I_UNLIKELY(p == NULL))
        errno = ENOMEM;
    return p;
}

static inline void *dom_calloc(pm_domain d, size_t nelem, size_t elsize)
{
    if (PM_I_UNLIKELY(elsize != 0 && nelem > (size_t)PTRDIFF_MAX / elsize)) {
        errno = ENOMEM;
        return NULL;
    }
    ready();
    void *ctx;
    pm_i_calloc_fn fn;
    PM_I_DOMAIN_READ(&pm_i_domains[d], a.ctx, a.calloc, ctx, fn);
    void *p = fn(ctx, nelem, elsize);
    if (PM_I_UNLIKELY(p == NULL))
        errno = ENOMEM;
    return p;
}

/* realloc(NULL, n) is a malloc, whose reports (a damaged free-list link
 * met on the way) name the entry point the program called, unless the
 * malloc override has named its own. */
__attribute__((noinline)) static void *realloc_null(pm_domain d, size_t n)
{
    static const char *const names[PM_DOMAIN_COUNT] = {"pm_raw_realloc", "pm_mem_realloc",
                                                       "pm_obj_realloc"};
    if (pm_i_debug_entry != NULL)
        return dom_malloc(d, n);
    pm_i_debug_entry = names[d];
    void *q = dom_malloc(d, n);
    pm_i_debug_entry = NULL;
    return q;
}

/* A successful realloc keeps errno, also through a hook of the program's (a
 * log write that fails: before 2026-12-07 its errno came out), and also
 * for realloc(NULL, n). */
static inline void *dom_realloc(pm_domain d, void *p, size_t n)
{
    if (PM_I_UNLIKELY(n > (size_t)PTRDIFF_MAX)) {
        errno = ENOMEM;
        return NULL;
    }
    int saved = errno;
    void *q;
    if (PM_I_UNLIKELY(p == NULL)) {
        q = realloc_null(d, n);
    } else {
        ready();
        void *ctx;
        pm_i_realloc_fn fn;
        PM_I_DOMAIN_READ(&pm_i_domains[d], a.ctx, a.realloc, ctx, fn);
        q = fn(ctx, p, n);
    }
    errno = PM_I_LIKELY(q != NULL) ? saved : ENOMEM;
    return q;
}

/* free keeps errno (POSIX 2024, glibc >= 2.33). The pools' free keeps it
 * itself: its fast path (a block onto this thread's cache) sets none, and
 * its slow paths (a full bin's flush, an arena given back to the system,
 * a block that is the C library's) save it (modes/pool.c). So does the
 * debug hooks' free (modes/debug.c: dbg_free, whose checks and reports
 * save it). Every other free runs through free_keeping_errno: the C
 * library's free (older C libraries change errno), a hook of the
 * program's (a log write that fails). Out of line, so that the pools' and
 * the hooks' paths stay tail calls with no frame (before, pm_*_free
 * through a hook, or the C library's where it does not keep errno,
 * changed it). */
__attribute__((noinline)) static void free_keeping_errno(void *ctx, pm_i_free_fn fn, void *p)
{
    int saved = errno;
    fn(ctx, p);
    errno = saved;
}

static inline __attribute__((always_inline)) void dom_free_ready(pm_domain d, void *p)
{
    const pm_i_base *r = atomic_load_explicit(&pm_i_domains[d].cur, memory_order_acquire);
    if (PM_I_LIKELY(r == &pm_i_pool_base) || PM_I_LIKELY(r->a.free == pm_i_debug_free)) {
        r->a.free(r->a.ctx, p);
        return;
    }
    free_keeping_errno(r->a.ctx, r->a.free, p);
}

/* The first call of the library is a free: the set-up first (out of line,
 * so that dom_free needs no stack frame). */
__attribute__((noinline, cold)) static void free_first_use(pm_domain d, void *p)
{
    pm_i_first_use();
    dom_free_ready(d, p);
}

static inline void dom_free(pm_domain d, void *p)
{
    if (p == NULL)
        return;
    if (PM_I_UNLIKELY(!pm_i_in_use())) {
        free_first_use(d, p);
        return;
    }
    dom_free_ready(d, p);
}

#define PM_I_DEFINE_DOMAIN(prefix, D)                                                   \
    void *prefix##_malloc(size_t n) { return dom_malloc(D, n); }                        \
    void *prefix##_calloc(size_t nelem, size_t elsize) { return dom_calloc(D, nelem, elsize); } \
    void *prefix##_realloc(void *p, size_t n) { return dom_realloc(D, p, n); }          \
    void prefix##_free(void *p) { dom_free(D, p); }

PM_I_DEFINE_DOMAIN(pm_raw, PM_DOMAIN_RAW)
PM_I_DEFINE_DOMAIN(pm_mem, PM_DOMAIN_MEM)
PM_I_DEFINE_DOMAIN(pm_obj, PM_DOMAIN_OBJ)
