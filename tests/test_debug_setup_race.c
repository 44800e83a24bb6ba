/*
 * tests/test_debug_setup_race.c - pm_setup_debug_hooks from four threads
 * at once, each then allocating and checking a block. The calls are
 * serialized: one installs the hooks, and the others find them installed
 * and return 0, as documented ("0 if the hooks are installed (or already
 * were)"). One that waited for the mode lock while the first installed
 * them, and came after a thread's first allocation under them, returned
 * -1 with EBUSY (about 3 trials in 4 with a raced call).
 * Each trial in a fresh process (the set-up runs once per process);
 * alarm() turns a hang into a failure (10 s, 60 s under valgrind, where a
 * trial took up to 9 s on a loaded machine), named with its trial.
 */
#include "pin_env.h"
#include "pymalloc.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

enum { THREADS = 4, TRIALS = 60 };

static atomic_int go, rcs[THREADS];

static void *racer(void *arg)
{
    int k = (int)(intptr_t)arg;
    while (!atomic_load(&go))
        sched_yield(); /* (valgrind runs one thread at a time) */
    atomic_store(&rcs[k], pm_setup_debug_hooks() == 0 ? 1 : -errno);
    void *p = pm_obj_malloc(24);
    int ok = p != NULL && pm_check_block(p) == 0;
    pm_obj_free(p);
    return (void *)(intptr_t)ok;
}

static int trial(void)
{
    alarm(RUNNING_ON_VALGRIND ? 60 : 10);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, racer, (void *)(intptr_t)i) != 0)
            return 2;
    atomic_store(&go, 1);
    int failed = 0;
    for (int i = 0; i < THREADS; i++) {
        void *ok = NULL;
        pthread_join(t[i], &ok);
        failed |= ok == NULL;
        int rc = atomic_load(&rcs[i]);
        if (rc != 1) {
            fprintf(stderr, "  thread %d: pm_setup_debug_hooks failed, errno %d\n", i, -rc);
            failed = 1;
        }
    }
    failed |= !pm_debug_enabled();
    return failed;
}

int main(void)
{
    pm_t_pin_env(NULL);
    int failed = 0;
    for (int i = 0; i < TRIALS && !failed; i++) {
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0)
            _exit(trial());
        int st = 0;
        waitpid(pid, &st, 0);
        failed = !WIFEXITED(st) || WEXITSTATUS(st) != 0;
        if (failed && WIFSIGNALED(st))
            fprintf(stderr, "  trial %d: ended by signal %d%s\n", i, WTERMSIG(st),
                    WTERMSIG(st) == SIGALRM ? " (hung: the alarm)" : "");
        else if (failed)
            fprintf(stderr, "  trial %d: exit status %d\n", i, WEXITSTATUS(st));
    }
    printf("test_debug_setup_race: %s\n", failed ? "FAILED" : "ok");
    return failed;
}
