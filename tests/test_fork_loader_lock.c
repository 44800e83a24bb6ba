/*
 * tests/test_fork_loader_lock.c - fork() while another thread's first call
 * of the C library's allocator looks its functions up.
 *
 * The lookup walks the loaded objects with dl_iterate_phdr, which holds
 * the loader's lock of its list while it walks; glibc's fork does not
 * renew that lock in the child. A child forked during a walk inherited the
 * lock held by a thread it does not have: its own first call of the C
 * library's allocator (the lookup again, unfinished in the parent) waited
 * for ever, and so would its next dl_iterate_phdr, dlopen or C++ exception
 * (found by CI: test_fork_first_use hung, 1 run in about 500 on i386). Now
 * a fork waits for the walks under way.
 *
 * Made certain here: a thread of the program holds the loader's lock (its
 * own dl_iterate_phdr, whose callback waits); another thread's first
 * pm_raw_malloc waits for it inside the lookup; main forks, and a prepare
 * handler of the program's, registered after the library's so run before
 * them, lets the callback go. Before the fix the fork went on at once, the
 * lock still held; the child, which allocates, walks and forks again, hung
 * (ended by alarm()). Now the library's prepare handler waits for the
 * lookup, which waits for the callback's end. Skipped under the
 * sanitizers, whose builds call the C library's functions by name.
 */
#define _GNU_SOURCE /* dl_iterate_phdr */
#include "harness.h"
#include "pymalloc.h"
#include "sanitizers.h"

#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int in_callback, released, first_done, first_tid;

static int hold_walk(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    (void)data;
    atomic_store(&in_callback, 1);
    while (!atomic_load(&released))
        usleep(200);
    return 1; /* stop */
}

static void *holder(void *arg)
{
    (void)arg;
    dl_iterate_phdr(hold_walk, NULL);
    return NULL;
}

static void *first_raw(void *arg)
{
    (void)arg;
    atomic_store(&first_tid, (int)syscall(SYS_gettid));
    void *p = pm_raw_malloc(100); /* the lookup: waits for the holder */
    pm_raw_free(p);
    atomic_store(&first_done, p != NULL ? 1 : 2);
    return NULL;
}

static void let_go(void) { atomic_store(&released, 1); }

/* Whether thread tid sleeps in the kernel on a futex (the loader's lock):
 * 1 yes, 0 not yet (a thread that runs reads "0" too), -1 unknown (no
 * /proc). */
static int waits_on_futex(int tid)
{
    char path[64], buf[64] = {0};
    snprintf(path, sizeof path, "/proc/self/task/%d/wchan", tid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    return strstr(buf, "futex") != NULL;
}

static int count_objects(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    ++*(int *)data;
    return 0;
}

static int child_work(int depth)
{
    alarm(10);
    void *r = pm_raw_malloc(100), *m = pm_mem_malloc(3000), *o = pm_obj_malloc(40);
    if (r == NULL || m == NULL || o == NULL)
        return 3;
    pm_raw_free(r);
    pm_mem_free(m);
    pm_obj_free(o);
    int objects = 0;
    dl_iterate_phdr(count_objects, &objects); /* the loader's lock is free */
    if (objects == 0)
        return 4;
    return pm_t_fork_again(child_work, depth);
}

/* Case 1, in a fresh process: fork while the lookup waits for the lock. */
static int loader_lock_case(void)
{
    /* The set-up (the library's fork handlers registered), no block yet:
     * the C library's functions not looked up. */
    pm_debug_enabled();
    if (pthread_atfork(let_go, NULL, NULL) != 0)
        return 2;
    alarm(60);
    pthread_t h, t;
    if (pthread_create(&h, NULL, holder, NULL) != 0)
        return 2;
    while (!atomic_load(&in_callback))
        usleep(100);
    if (pthread_create(&t, NULL, first_raw, NULL) != 0)
        return 2;
    /* t must be inside the lookup, waiting for the loader's lock, when main
     * forks (else the fork has no walk to wait for, and the child inherits
     * the holder's lock: the case the library leaves to the program, as
     * glibc does). A futex sleep of t's after its start is that wait (t
     * calls nothing else); under valgrind, whose threads wait for its own
     * lock on a futex too, a while longer. */
    while (atomic_load(&first_tid) == 0)
        usleep(100);
    int known = 0;
    for (int i = 0; i < 5000 && (known = waits_on_futex(atomic_load(&first_tid))) == 0; i++)
        usleep(1000);
    usleep(known == 1 && !pm_t_under_valgrind() ? 20 * 1000 : 300 * 1000);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = child_work(0);
        if (PM_T_ASAN)
            _exit(rc); /* (the parent's threads' blocks: no leak check) */
        exit(rc);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 2;
    pthread_join(h, NULL);
    pthread_join(t, NULL);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && atomic_load(&first_done) == 1;
    printf("test_fork_loader_lock: fork while a thread's first block looks the C library's "
           "allocator up: %s",
           ok ? "ok\n" : "FAILED");
    if (!ok) {
        if (WIFSIGNALED(st))
            printf(" (the child was killed by signal %d%s)\n", WTERMSIG(st),
                   WTERMSIG(st) == SIGALRM ? ": it hung" : "");
        else
            printf(" (status %#x, the thread's block %d)\n", (unsigned)st,
                   atomic_load(&first_done));
    }
    return !ok;
}

/* Case 2, in a fresh process: a thread whose first C library block comes
 * while another thread's fork is under way waits for the fork, and that
 * wait is no cancellation point: a thread with a cancellation pending was
 * unwound out of pm_raw_malloc there, the program's mutex left locked
 * (found by a review of the first version of the fix). The program's
 * prepare handler, registered before the set-up, runs after the library's
 * (the fork counted) and holds the fork for 300 ms meanwhile. */
static pthread_mutex_t cancel_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int prep_running, cancel_returned;

static void slow_prepare(void)
{
    atomic_store(&prep_running, 1);
    usleep(300 * 1000);
}

static void *first_raw_cancelled(void *arg)
{
    (void)arg;
    while (!atomic_load(&prep_running))
        ; /* (no cancellation point) */
    pthread_mutex_lock(&cancel_mu);
    void *p = pm_raw_malloc(100); /* the lookup, during the fork */
    atomic_store(&cancel_returned, p != NULL ? 1 : 2);
    pm_raw_free(p);
    pthread_mutex_unlock(&cancel_mu);
    return NULL;
}

static int cancel_case(void)
{
    if (pthread_atfork(slow_prepare, NULL, NULL) != 0)
        return 2;
    pm_debug_enabled(); /* the set-up: its handlers registered after */
    alarm(60);
    pthread_t t;
    if (pthread_create(&t, NULL, first_raw_cancelled, NULL) != 0)
        return 2;
    pthread_cancel(t); /* pending until a cancellation point */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 2;
    void *res = NULL;
    pthread_join(t, &res);
    int unlocked = pthread_mutex_trylock(&cancel_mu) == 0;
    int ok = atomic_load(&cancel_returned) == 1 && unlocked;
    printf("test_fork_loader_lock: a first C library block during a fork, a cancellation "
           "pending: %s",
           ok ? "ok\n" : "FAILED");
    if (!ok)
        printf(" (pm_raw_malloc %s, the thread %s, its mutex %s)\n",
               atomic_load(&cancel_returned) ? "returned" : "did not return",
               res == PTHREAD_CANCELED ? "cancelled" : "ended", unlocked ? "free" : "left locked");
    return !ok;
}

int main(void)
{
    pm_t_pin_env(NULL);
    if (PM_T_ASAN || PM_T_TSAN) {
        /* (the library calls the sanitizer's malloc by name: no lookup) */
        printf("test_fork_loader_lock: skipped: no lookup under the sanitizers\n");
        return 77;
    }
    int (*const cases[])(void) = {loader_lock_case, cancel_case};
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            int rc = cases[i]();
            fflush(stdout);
            _exit(rc);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            if (WIFSIGNALED(st))
                printf("test_fork_loader_lock: case %d killed by signal %d\n", i + 1,
                       WTERMSIG(st));
            failed = 1;
        }
    }
    return failed;
}
