/*
 * tests/override/prog_cancel_exit.c - a thread calling exit() is cancelled
 * (pthread_cancel, deferred) by main as soon as the exit handlers run:
 * pymalloc's work at exit must neither act on the request (it holds
 * registry stripes' and pools' locks across cancellation points: a fork
 * child's read of /proc/self/pagemap, the statistics' wait for a lock, a
 * report's write) nor leave a lock held. Before, the cancelled thread
 * unwound out of the work with a lock taken: main's next malloc, or the
 * other threads', waited for ever (found by an audit: 7 children in 10
 * hung in pymalloc_debug, 1 round in 100 with PYMALLOC_STATS=1 in pymalloc
 * mode), and the check at exit was lost.
 *
 *   prog_cancel_exit exit ROUNDS   each round a fork child of a parent
 *                                  holding 200,000 blocks (the child's
 *                                  check at exit reads pagemap)
 *   prog_cancel_exit stats ROUNDS  each round a child where four threads
 *                                  churn pool blocks (run with
 *                                  PYMALLOC_STATS=1)
 *
 * Every child must end through exit(), status 0, within 60 s: a child in
 * which main got past the cancel (status 3: the exiting thread unwound),
 * or whose threads stopped (status 4), or that hung fails the test.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int in_exit;
static atomic_long progress;

static void mark(void) { atomic_store(&in_exit, 1); }

static void *exiter(void *arg)
{
    (void)arg;
    atexit(mark); /* registered last: run first */
    exit(0);
}

static void *churn(void *arg)
{
    unsigned x = (unsigned)(uintptr_t)arg + 7;
    static __thread void *keep[4096];
    for (;;) {
        for (int i = 0; i < 4096; i++) {
            x = x * 1103515245 + 12345;
            keep[i] = malloc(((x >> 8) % 512) + 1);
        }
        for (int i = 0; i < 4096; i++)
            free(keep[i]);
        atomic_fetch_add(&progress, 1);
    }
    return NULL;
}

enum { KEEP = 200000 };
static void *keep[KEEP];

static void child_exit(int round)
{
    pthread_t t;
    pthread_create(&t, NULL, exiter, NULL);
    while (!atomic_load(&in_exit))
        ;
    usleep(200 + (unsigned)round * 100);
    pthread_cancel(t);
    for (int i = 0; i < KEEP; i++) {
        free(keep[i]);
        keep[i] = malloc(600 + (size_t)(i % 64));
    }
    _exit(3); /* main got here: the exiting thread was cancelled */
}

static void child_stats(void)
{
    pthread_t c[4], t;
    for (int i = 0; i < 4; i++)
        pthread_create(&c[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    usleep(20000);
    pthread_create(&t, NULL, exiter, NULL);
    while (!atomic_load(&in_exit))
        ;
    pthread_cancel(t);
    pthread_join(t, NULL); /* returns only if the exiting thread was cancelled */
    long p0 = atomic_load(&progress);
    sleep(2);
    _exit(atomic_load(&progress) == p0 ? 4 : 3);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "exit") != 0 && strcmp(argv[1], "stats") != 0)) {
        fprintf(stderr, "usage: prog_cancel_exit exit|stats ROUNDS\n");
        return 2;
    }
    int stats = strcmp(argv[1], "stats") == 0, rounds = atoi(argv[2]), failed = 0;
    if (!stats)
        for (int i = 0; i < KEEP; i++)
            keep[i] = malloc(600 + (size_t)(i % 64));
    for (int r = 0; r < rounds; r++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            if (stats)
                child_stats();
            child_exit(r);
        }
        int st = 0;
        pid_t w = 0;
        for (int i = 0; i < 6000 && (w = waitpid(pid, &st, WNOHANG)) == 0; i++)
            usleep(10000);
        if (w == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            printf("round %d: hung (killed after 60 s)\n", r);
            failed = 1;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            if (WIFEXITED(st))
                printf("round %d: exit status %d (%s)\n", r, WEXITSTATUS(st),
                       WEXITSTATUS(st) == 3   ? "the exiting thread was cancelled"
                       : WEXITSTATUS(st) == 4 ? "the other threads stopped: a lock left held"
                                              : "?");
            else
                printf("round %d: signal %d\n", r, WTERMSIG(st));
            failed = 1;
        }
    }
    printf("prog_cancel_exit %s: %s\n", argv[1], failed ? "FAILED" : "ok");
    return failed;
}
