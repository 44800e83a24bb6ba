/*
 * tests/override/prog_exit_fclose.c - exit() while other threads open,
 * write and close streams: the exit work's flush of the program's pending
 * output (PYMALLOC_STATS=1, or heap errors with PYMALLOC_ON_ERROR=report)
 * walks the C library's list of streams, which an fclose in another thread
 * changes, and frees the stream it unlinks. Before 2026-12-06 the walk
 * read that list without its lock: it read a FILE another thread had just
 * freed (0xDD-filled in the debug modes) and died with SIGSEGV, the
 * program's output lost (found by an audit, malloc_debug: every run).
 *
 *   prog_exit_fclose [children]
 *
 * Each child (10 by default), forked before any thread exists, starts two
 * threads that fopen /dev/null, write to it holding its lock a while, and
 * fclose it, for ever; then it prints a line and calls exit(0). The parent
 * prints how each child ended. Plain C: the same output under glibc and
 * under LD_PRELOAD=libpymalloc.so in every mode.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *writer(void *arg)
{
    (void)arg;
    for (;;) {
        FILE *f = fopen("/dev/null", "w");
        if (f == NULL)
            continue;
        flockfile(f);
        fputs("pending output", f); /* in f's buffer until its fclose */
        usleep(300);
        funlockfile(f);
        fclose(f); /* unlinks f from the list and frees it */
    }
    return NULL;
}

static void child(int i)
{
    for (int k = 0; k < 2; k++) {
        pthread_t t;
        if (pthread_create(&t, NULL, writer, NULL) != 0)
            _exit(3);
        pthread_detach(t);
    }
    usleep(3000);
    printf("child %d exits\n", i); /* pending in stdout's buffer at exit() */
    exit(0);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 10;
    for (int i = 0; i < n; i++) {
        fflush(stdout);
        pid_t c = fork();
        if (c < 0)
            return 2;
        if (c == 0)
            child(i);
        int st = 0;
        if (waitpid(c, &st, 0) != c)
            return 2;
        if (WIFEXITED(st))
            printf("child %d: status %d\n", i, WEXITSTATUS(st));
        else
            printf("child %d: signal %d\n", i, WTERMSIG(st));
    }
    return 0;
}
