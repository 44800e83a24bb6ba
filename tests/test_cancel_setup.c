/*
 * tests/test_cancel_setup.c - the library's first call (its set-up) made by
 * a thread with a cancellation request pending (pthread_cancel, deferred):
 * the set-up writes (PYMALLOC_VERBOSE's start-up line, the line naming an
 * unknown PYMALLOC_* variable), cancellation points, and the thread used
 * to unwind there with the set-up half done: every other thread's next
 * call waited for ever in pm_i_ensure_init (found by an audit). It runs
 * with cancellation off: the thread's request is acted on at its next
 * cancellation point, and main allocates. Each case in a fresh process
 * (the set-up runs once per process), its environment set before its
 * first call; alarm() turns a hang into a failure.
 */
#include "pin_env.h"
#include "pymalloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

static void *first(void *arg)
{
    (void)arg;
    pthread_cancel(pthread_self()); /* deferred: pending */
    void *p = pm_mem_malloc(16);    /* the library's first call */
    pm_mem_free(p);
    return NULL;
}

static int run_case(const char *setting)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(60);
        putenv((char *)setting);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 2); /* (the start-up lines) */
        pthread_t t;
        if (pthread_create(&t, NULL, first, NULL) != 0)
            _exit(2);
        void *r;
        pthread_join(t, &r);
        void *p = pm_mem_malloc(32); /* waited for ever before */
        if (p == NULL)
            _exit(3);
        pm_mem_free(p);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok)
        fprintf(stderr, "  %s: %s %d%s\n", setting, WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? " (hung: the alarm)" : "");
    return ok;
}

int main(void)
{
    pm_t_pin_env(NULL);
    int ok = run_case("PYMALLOC_VERBOSE=1") & run_case("PYMALLOC_NO_SUCH_OPTION=1") &
             run_case("PYMALLOC_STATS=0");
    printf("test_cancel_setup: %s\n", ok ? "ok" : "FAILED");
    return !ok;
}
