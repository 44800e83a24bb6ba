/*
 * tests/test_fork_hooks_race.c - fork() while another thread installs the
 * debug hooks (pm_setup_debug_hooks) and allocates under them. The fork's
 * prepare handler looked whether the hooks were in before it took the
 * locks: hooks that went in meanwhile were not locked for the fork, so the
 * child could inherit a lock of theirs held by the other thread (seen: a
 * registry stripe, and the child's first calloc under the hooks spun for
 * ever, in 1 to 5 trials of 10 in malloc and pymalloc mode), and their
 * child handler did not run (the child would take the parent's blocks for
 * its own at exit).
 *
 * This program's pthread_mutex_lock holds the forking thread at the first
 * mutex its fork takes (the library's prepare handler, after it looked)
 * until the other thread has installed the hooks, made a block, written a
 * byte past its end, and allocates on under the hooks. The child allocates
 * in every domain (alarm() turns a hang into a failure) and returns from
 * main: the check at exit must leave the parent's damaged block out (the
 * parent's error: its pages are still shared with the parent), exit
 * status 0. Each trial in a fresh process (the hooks go in once per
 * process). In the debug modes the hooks are in from the start: the child
 * must do as well.
 */
#define _GNU_SOURCE
#include "pin_env.h"
#include "pymalloc.h"
#include "sanitizers.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if !PM_T_TSAN
enum { TRIALS = 10 };

/* The C library's (dlsym, found at the first call). */
static int (*real_lock)(pthread_mutex_t *m);

static atomic_int stall, installer_go, installer_ready, stop;
/* (reachable: LeakSanitizer, in the child) */
static char *parent_block;

/* Not across the fork under ASan: its allocator (which serves the C
 * library's blocks there) is not made safe for fork, and the child can
 * inherit its lock held (seen: the child's first raw block waited for
 * ever; see also test_atfork). There the other thread, once ready, waits
 * for the fork to be over (its exit frees too). */
#if PM_T_ASAN
enum { CHURN_ACROSS_FORK = 0 };
#else
enum { CHURN_ACROSS_FORK = 1 };
#endif
static pthread_t forker;

int pthread_mutex_lock(pthread_mutex_t *m)
{
    if (atomic_load(&stall) && pthread_equal(pthread_self(), forker) &&
        atomic_exchange(&stall, 0)) {
        atomic_store(&installer_go, 1);
        for (int i = 0; !atomic_load(&installer_ready) && i < 5000000; i++)
            sched_yield();
    }
    if (real_lock == NULL)
        *(void **)&real_lock = dlsym(RTLD_NEXT, "pthread_mutex_lock");
    return real_lock(m);
}

static void *installer(void *arg)
{
    (void)arg;
    while (!atomic_load(&installer_go))
        sched_yield();
    if (pm_setup_debug_hooks() != 0) {
        perror("pm_setup_debug_hooks");
        exit(3);
    }
    char *p = pm_mem_malloc(24);
    if (p == NULL)
        exit(3);
    volatile size_t past = 24;
    p[past] = 'x'; /* the parent's bug: its block is left live, damaged */
    parent_block = p;
    for (int i = 0; !atomic_load(&stop); i++) {
        void *q = pm_obj_malloc((size_t)(i % 200) + 1);
        void *r = pm_raw_malloc(300);
        pm_obj_free(q);
        pm_raw_free(r);
        if (i == 100) {
            atomic_store(&installer_ready, 1);
            while (!CHURN_ACROSS_FORK && !atomic_load(&stop))
                sched_yield(); /* (neither allocating nor exiting) */
        }
    }
    return p;
}

static int child(void)
{
    alarm(10);
    for (int i = 0; i < 1000; i++) {
        void *r = pm_raw_malloc((size_t)i), *m = pm_mem_calloc(1, 40),
             *o = pm_obj_realloc(NULL, (size_t)(i % 300));
        if (r == NULL || m == NULL || o == NULL)
            return 4;
        pm_raw_free(r);
        pm_mem_free(m);
        pm_obj_free(o);
    }
    if (!pm_debug_enabled())
        return 5;
    return 0; /* exit(): the check at exit */
}

static int trial(void)
{
    alarm(30);
    (void)pm_mode_name(); /* the set-up (our fork handlers), no allocation */
    pthread_t t;
    if (pthread_create(&t, NULL, installer, NULL) != 0)
        return 2;
    forker = pthread_self();
    fflush(NULL);
    if (pm_debug_enabled()) { /* (a debug mode: the hooks are in) */
        atomic_store(&installer_go, 1);
        while (!atomic_load(&installer_ready))
            sched_yield();
    } else {
        atomic_store(&stall, 1);
    }
    pid_t pid = fork();
    if (pid == 0)
        exit(child());
    atomic_store(&stop, 1);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 2;
    void *p = NULL;
    pthread_join(t, &p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "  the child %s %d\n", WIFEXITED(st) ? "exited with" : "was killed by",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return 1;
    }
    if (atomic_load(&stall) || !atomic_load(&installer_ready)) {
        fprintf(stderr, "  the fork took no mutex: nothing was tested\n");
        return 1;
    }
    return 0;
}

int main(void)
{
    pm_t_pin_env(NULL);
    int failed = 0;
    for (int i = 0; i < TRIALS && !failed; i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            _exit(trial()); /* (_exit: the damaged block is the test's own) */
        int st = 0;
        waitpid(pid, &st, 0);
        failed = !WIFEXITED(st) || WEXITSTATUS(st) != 0;
        if (failed)
            fprintf(stderr, "trial %d: status %#x\n", i, st);
    }
    printf("test_fork_hooks_race: %s\n", failed ? "FAILED" : "ok");
    return failed;
}
#else
int main(void)
{
    puts("test_fork_hooks_race: skipped (its pthread_mutex_lock would replace TSan's)");
    return 77;
}
#endif
