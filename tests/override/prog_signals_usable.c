/*
 * tests/override/prog_signals_usable.c - malloc_usable_size in a signal
 * handler, of blocks made outside it, while the interrupted loop allocates
 * and frees; run under glibc and under the preload in every mode.
 *
 * In the debug modes malloc_usable_size looked its block up in the
 * registry, under the lock of the block's stripe, which the interrupted
 * call may hold (it records its own block there): the handler waited for
 * ever (every run of each debug mode, within seconds), until a nested call
 * stopped waiting for that lock. glibc's malloc_usable_size takes no
 * lock. In malloc mode, the first call looked glibc's function up
 * (dlopen), which allocated inside the interrupted malloc, glibc's: its
 * heap broke in some runs (test_override checks that directly).
 *
 * The process stays single-threaded (the signals come from a child
 * process). The loop's blocks are above the pools' sizes, so that every
 * one of them goes through the registry in every debug mode; the
 * handler's blocks too. The output is the same under every allocator; a
 * hang becomes a failure through alarm(), whose default action kills.
 */
#define _GNU_SOURCE 1
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "signal_child.h"

#define KEPT 64        /* the handler's blocks: their stripes are spread */
#define KEPT_SIZE 700  /* above the pools' sizes */
#define HANDLED 20000  /* handler runs wanted */
#define SECONDS 5      /* at most */

static void *kept[KEPT];
static volatile sig_atomic_t handled, bad;

static void on_signal(int sig)
{
    (void)sig;
    for (int i = 0; i < KEPT; i++)
        if (malloc_usable_size(kept[i]) < KEPT_SIZE)
            bad = 1;
    handled++;
}

int main(void)
{
    alarm(30);
    for (int i = 0; i < KEPT; i++)
        if ((kept[i] = malloc(KEPT_SIZE)) == NULL)
            return 2;
    pid_t child = signal_child_start(on_signal, 20);
    if (child < 0)
        return 2;
    void *slot[64] = {0};
    time_t end = time(NULL) + SECONDS;
    for (unsigned long i = 0; handled < HANDLED && !bad; i++) {
        if (i % 1024 == 0 && time(NULL) >= end)
            break;
        unsigned k = (unsigned)(i * 2654435761u) >> 26;
        free(slot[k]);
        slot[k] = malloc(600 + (i * 7) % 3000);
        if (slot[k] == NULL)
            bad = 1;
    }
    signal_child_stop(child);
    for (int k = 0; k < 64; k++)
        free(slot[k]);
    for (int i = 0; i < KEPT; i++)
        free(kept[i]);
    printf("handler ran: %s\n", handled > 0 ? "yes" : "no");
    printf("%s\n", bad ? "BAD: a usable size was too small or an allocation failed" : "ok");
    return bad;
}
