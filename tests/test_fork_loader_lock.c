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
#include "pin_env.h"
#include "pymalloc.h"
#include "sanitizers.h"

#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int in_callback, released, first_done;

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
    void *p = pm_raw_malloc(100); /* the lookup: waits for the holder */
    pm_raw_free(p);
    atomic_store(&first_done, p != NULL ? 1 : 2);
    return NULL;
}

static void let_go(void) { atomic_store(&released, 1); }

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
    if (depth == 0) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_work(1));
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 5;
    }
    return 0;
}

int main(void)
{
    pm_t_pin_env(NULL);
    if (PM_T_ASAN || PM_T_TSAN) {
        /* (the library calls the sanitizer's malloc by name: no lookup) */
        printf("test_fork_loader_lock: skipped: no lookup under the sanitizers\n");
        return 77;
    }
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
    usleep(50 * 1000); /* (t now waits inside the lookup) */
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
