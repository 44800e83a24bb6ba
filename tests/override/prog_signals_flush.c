/*
 * tests/override/prog_signals_flush.c - a signal handler's malloc and free
 * (last allocated first, as a handler's printf does) of the size the
 * interrupted loop is freeing in bulk, run under glibc and under the
 * preload in every mode.
 *
 * In pymalloc mode such a loop runs the pool's free slow path every few
 * frees (its thread cache's bin is full: half of it goes back to the
 * pools). The slow path closed the bin to the handler's free (capacity 0:
 * deferred), not to its malloc, which popped the head of the list the slow
 * path was about to link the freed block to; the handler's free of it was
 * deferred, and put it in the bin a second time when the slow path left:
 * one block handed out twice, then a crash in the bin's list (7 runs of 8
 * crashed within a second). The flush had the same window between its read
 * of the list and its store of NULL.
 *
 * The process stays single-threaded (the signals come from a child
 * process), so that glibc's malloc takes no lock, and the handler allocates
 * only while the loop frees, after its first frees: glibc's thread cache
 * for the size is full then and serves the handler without touching its
 * arena. Every block the loop allocates carries its own tag, checked
 * before it is freed: a block handed out twice shows as a changed tag.
 * The output is the same under every allocator; a hang becomes a failure
 * through alarm(), whose default action kills.
 */
#define _GNU_SOURCE 1
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "signal_child.h"

#define BLOCKS 2048   /* per round: many times a bin's capacity */
#define SIZE 512      /* the largest pool class: a bin of 31, flushed every 15 frees */
#define HANDLED 20000 /* handler runs wanted (about 200 a round) */
#define SECONDS 5     /* at most (the debug modes are slower)... */
#define LONGEST 60    /* ...unless no signal has landed in a free loop yet */

static volatile sig_atomic_t handled, bad, freeing;

static void on_signal(int sig)
{
    (void)sig;
    if (!freeing)
        return;
    unsigned char *a = malloc(SIZE);
    if (a == NULL) {
        bad = 1;
        return;
    }
    memset(a, 0xee, SIZE);
    for (int i = 0; i < SIZE; i++)
        if (a[i] != 0xee)
            bad = 1;
    free(a);
    handled++;
}

static uint64_t tag_of(long round, int i) { return (uint64_t)round << 16 | (uint64_t)i; }

int main(void)
{
    alarm(120);
    pid_t child = signal_child_start(on_signal, 0);
    if (child < 0)
        return 2;
    static uint64_t *p[BLOCKS];
    /* The signals land where they land: on a loaded machine (CI's parallel
     * tests) glibc's whole 5 seconds once passed with none inside a free
     * loop, and "handler ran: no" under glibc failed the comparison. So the
     * rounds go on past SECONDS while no signal has, up to LONGEST. */
    time_t start = time(NULL), now = start;
    for (long r = 0; handled < HANDLED && !bad; r++, now = time(NULL)) {
        if (now >= start + LONGEST || (now >= start + SECONDS && handled > 0))
            break;
        for (int i = 0; i < BLOCKS; i++) {
            p[i] = malloc(SIZE);
            if (p[i] == NULL)
                bad = 1;
            else
                p[i][0] = p[i][SIZE / 8 - 1] = tag_of(r, i);
        }
        for (int i = 0; i < BLOCKS; i++)
            if (p[i] != NULL && (p[i][0] != tag_of(r, i) || p[i][SIZE / 8 - 1] != tag_of(r, i)))
                bad = 1;
        for (int i = 0; i < BLOCKS; i++) {
            free(p[i]);
            if (i == 8)
                freeing = 1;
        }
        freeing = 0;
    }
    signal_child_stop(child);
    printf("handler ran: %s\n", handled > 0 ? "yes" : "no");
    printf("%s\n", bad ? "BAD: a block was handed out twice or an allocation failed" : "ok");
    return bad;
}
