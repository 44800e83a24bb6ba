/*
 * tests/override/prog_sigabrt.c - what a program sees of SIGABRT's action,
 * through sigaction and signal: the default at start, a handler set and
 * the action before it put back (as Python's signal.signal and crash
 * reporters do). The output must be glibc's in every mode: the debug modes'
 * check at abort (a handler of the library's) must not show.
 *
 * With "overflow": then a block is written past its end and the program
 * aborts; a debug mode reports the block at abort (check_heapbug.sh).
 */
#include "overflow_abort.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mine(int sig) { (void)sig; }

static const char *name(void (*h)(int))
{
    return h == SIG_DFL ? "SIG_DFL" : h == SIG_IGN ? "SIG_IGN" : h == mine ? "mine" : "another";
}

static void show(const char *when)
{
    struct sigaction sa;
    if (sigaction(SIGABRT, NULL, &sa) != 0) {
        perror("sigaction");
        exit(2);
    }
    /* The flags whole: the C library adds its own (SA_RESTORER on x86). */
    printf("%s: %s, flags %#x, SIGINT in mask %d\n", when, name(sa.sa_handler),
           (unsigned)sa.sa_flags, sigismember(&sa.sa_mask, SIGINT));
}

int main(int argc, char **argv)
{
    show("start");

    void (*old)(int) = signal(SIGABRT, mine);
    printf("signal(mine) returned %s\n", name(old));
    show("after signal(mine)");
    printf("signal(old) returned %s\n", name(signal(SIGABRT, old)));
    show("after signal(old)");

    struct sigaction sa, prev, back;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = mine;
    sigfillset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, &prev);
    printf("sigaction(mine) gave %s\n", name(prev.sa_handler));
    sigaction(SIGABRT, &prev, &back);
    printf("sigaction(prev) gave %s\n", name(back.sa_handler));
    show("after sigaction(prev)");

    /* SIG_DFL set with a mask and flags of the program's: shown back. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGABRT, &sa, NULL);
    show("after sigaction(SIG_DFL, mask, SA_RESTART)");
    sigaction(SIGABRT, &prev, NULL);
    fflush(stdout);

    if (argc > 1 && strcmp(argv[1], "overflow") == 0) {
        return overflow_and_abort();
    }
    return 0;
}
