/*
 * tests/test_fork_first_use.c - fork() while another thread runs the lazy
 * set-up (its first allocation). The child used to inherit the set-up half
 * done, marked as running, without the thread running it: every pm_* call
 * of the child waited for it for ever (found by a fork stress test: a
 * thread's first malloc while main forked, about 1 run in 3 hung).
 *
 * This program's pthread_atfork holds the set-up for a moment, while main
 * forks, at the registration of the library's fork handlers (its first
 * step, one registration for all of them):
 *   - before it: no fork handler of ours runs; the child finds the set-up
 *     unfinished, its thread gone, and runs it itself;
 *   - after it: the fork's prepare handler waits for the set-up to finish,
 *     so the child inherits it whole. (The set-up registered its handlers
 *     one part at a time before: a fork between two registrations ran
 *     the first parts' handlers, waited, and not the pools': the child
 *     inherited a pool lock that the set-up's thread held, going on to
 *     allocate, and hung in pymalloc mode.)
 * Each case in a fresh process (the set-up runs once per process), in
 * each of them the child allocates, frees, reads the statistics, forks
 * again and exits. alarm() turns a hang into a failure.
 *
 * Under ASan the C library's malloc is ASan's allocator, which (gcc 12's
 * and clang 14's) is not made safe for fork: a child forked while another
 * thread held one of its locks waits for it for ever (seen in CI, case
 * "after", mode malloc: the thread's first block, right after the set-up,
 * refilled its allocator cache as main forked, and the child's exit hung
 * in LeakSanitizer's lock of the whole allocator). There the thread fills
 * its ASan caches for every small size before its first pm_* call, so
 * that what it allocates after the set-up takes no lock of ASan's, and the
 * child leaves with _exit, without LeakSanitizer's check: a block the
 * thread had between its malloc and its free when main forked is reached
 * in the child from nowhere (the thread's stack is not the child's), a
 * leak to LeakSanitizer (seen, malloc_debug: the 72-byte block below the
 * thread's). In every build the thread leaves only once main's fork is
 * over (a thread's exit empties its caches, under those locks).
 */
#include "harness.h"
#include "pymalloc.h"
#include "sanitizers.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* glibc's pthread_atfork is __register_atfork with the caller's DSO (its
 * libc_nonshared.a). This one replaces it in the program and the static
 * library it links. */
extern void *__dso_handle;
extern int __register_atfork(void (*prepare)(void), void (*parent)(void),
                             void (*child)(void), void *dso);

static atomic_int calls, hold_after = -1, holding;

static void hold(void)
{
    atomic_store(&holding, 1);
    usleep(200 * 1000); /* main forks meanwhile */
}

int pthread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    int first = atomic_fetch_add(&calls, 1) == 0, after = atomic_load(&hold_after);
    if (first && after == 0)
        hold();
    int rc = __register_atfork(prepare, parent, child, __dso_handle);
    if (first && after == 1)
        hold();
    return rc;
}

/* Detached (and waited for through `used`): a joinable thread, copied
 * into the child as not joined, is a leak to TSan at the child's exit. */
static atomic_int used, forked;

static void *first_use(void *arg)
{
    (void)arg;
    if (PM_T_ASAN)
        for (size_t n = 8; n <= 4096; n += 8) { /* (freed: to ASan's quarantine) */
            void *volatile warm = malloc(n);
            free(warm);
        }
    void *p = pm_obj_malloc(40);
    pm_obj_free(p);
    atomic_store(&used, p != NULL ? 1 : 2);
    while (!atomic_load(&forked))
        usleep(100);
    return NULL;
}

/* The child of the fork made during the set-up. */
static int child_work(int depth)
{
    alarm(5);
    void *r = pm_raw_malloc(100), *m = pm_mem_malloc(200), *o = pm_obj_calloc(3, 10);
    if (r == NULL || m == NULL || o == NULL)
        return 3;
    pm_raw_free(r);
    pm_mem_free(m);
    pm_obj_free(o);
    struct pm_stats s;
    if (pm_get_stats(&s) != 0)
        return 4;
    return pm_t_fork_again(child_work, depth);
}

/* One case: the set-up held before (0) or after (1) it registers the fork
 * handlers, main forks. */
static int one_case(int after)
{
    alarm(10);
    atomic_store(&hold_after, after);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, first_use, NULL) != 0)
        return 2;
    while (!atomic_load(&holding))
        usleep(100);
    pid_t pid = fork();
    if (pid == 0) {
        fflush(stdout);
        int rc = child_work(0);
        if (PM_T_ASAN)
            _exit(rc);
        exit(rc);
    }
    atomic_store(&forked, 1);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 2;
    while (atomic_load(&used) == 0)
        usleep(100);
    if (atomic_load(&used) != 1)
        return 6;
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "  the child was killed by signal %d%s\n", WTERMSIG(st),
                WTERMSIG(st) == SIGALRM ? " (it hung)" : "");
        return 1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(void)
{
    pm_t_pin_env(NULL);
    static const struct {
        int after;
        const char *what;
    } cases[] = {
        {0, "before it registers the fork handlers"},
        {1, "after it registers the fork handlers"},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(one_case(cases[i].after));
        int st = 0;
        waitpid(pid, &st, 0);
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        printf("test_fork_first_use: fork while the set-up is %s: %s", cases[i].what,
               ok ? "ok\n" : "FAILED");
        if (!ok)
            printf(" (status %#x)\n", (unsigned)st);
        failed |= !ok;
    }
    return failed;
}
