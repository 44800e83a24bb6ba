/*
 * tests/override/prog_cancel_exec.c - exec is no cancellation point. With
 * PYMALLOC_ON_ERROR=report and a heap error counted, the override's exec
 * hand-off writes a line and reads /proc/self/stat (open, read, close:
 * cancellation points) before the exec: a thread with a deferred
 * cancellation request pending unwound there, and the exec never happened
 * (found by an audit). Run preloaded in the debug modes: the new program
 * must print "exec happened".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *worker(void *arg)
{
    (void)arg;
    pthread_cancel(pthread_self());
    execl("/bin/sh", "sh", "-c", "echo exec happened", (char *)NULL);
    return NULL;
}

int main(void)
{
    char *volatile p = malloc(16);
    free(p);
    free(p); /* a heap error, counted (report mode) */
    pthread_t t;
    void *r;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 2;
    pthread_join(t, &r);
    fprintf(stderr, "the exec thread %s\n",
            r == PTHREAD_CANCELED ? "was CANCELLED inside execl" : "returned");
    return 3;
}
