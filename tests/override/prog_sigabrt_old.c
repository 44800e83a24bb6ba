/*
 * tests/override/prog_sigabrt_old.c - SIGABRT's action as a program sees
 * it through the C library's other names of signal: bsd_signal, ssignal,
 * sysv_signal and __sysv_signal (a strict ISO C or POSIX program's signal).
 * The output must be glibc's in every mode: the debug modes' check at
 * abort (a handler of the library's) must not show (before 2026-12-07
 * each of them returned it as the old action: found by an audit; a strict
 * program's signal(SIGABRT, SIG_DFL) took the check out: a review).
 * SIGUSR1 through each, raised: the program's handler runs, with each
 * function's flags (sysv_signal's resets the action to the default).
 *
 * With "overflow": then the default put back through __sysv_signal, a
 * block written past its end, and abort(); a debug mode reports the block
 * at abort (check_heapbug.sh).
 */
#define _GNU_SOURCE 1
#include "overflow_abort.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern __sighandler_t bsd_signal(int sig, __sighandler_t handler);
extern __sighandler_t __sysv_signal(int sig, __sighandler_t handler);

static volatile sig_atomic_t ran;
static void mine(int sig)
{
    (void)sig;
    ran++;
}

static const char *name(__sighandler_t h)
{
    return h == SIG_DFL ? "SIG_DFL" : h == SIG_IGN ? "SIG_IGN" : h == SIG_ERR ? "SIG_ERR"
           : h == mine ? "mine" : "another";
}

static void show(int sig, const char *when)
{
    struct sigaction sa;
    sigset_t now;
    if (sigaction(sig, NULL, &sa) != 0 || sigprocmask(SIG_BLOCK, NULL, &now) != 0) {
        perror("sigaction");
        exit(2);
    }
    /* The flags whole: the C library adds its own (SA_RESTORER on x86). */
    printf("  %s: %s, flags %#x, itself in mask %d, blocked %d\n", when, name(sa.sa_handler),
           (unsigned)sa.sa_flags, sigismember(&sa.sa_mask, sig), sigismember(&now, sig));
}

typedef __sighandler_t (*signal_fn)(int, __sighandler_t);

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        signal_fn f;
    } fns[] = {{"bsd_signal", bsd_signal}, {"ssignal", ssignal}, {"sysv_signal", sysv_signal},
               {"__sysv_signal", __sysv_signal}};
    free(malloc(10)); /* (the library set up: the debug modes' handler in) */
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        printf("%s:\n", fns[i].name);
        show(SIGABRT, "start");
        __sighandler_t old = fns[i].f(SIGABRT, mine);
        printf("  (mine) returned %s\n", name(old));
        show(SIGABRT, "after (mine)");
        printf("  (old) returned %s\n", name(fns[i].f(SIGABRT, old)));
        show(SIGABRT, "after (old)");
        printf("  (SIG_ERR) returned %s\n", name(fns[i].f(SIGABRT, SIG_ERR)));
        printf("  signal 0 returned %s\n", name(fns[i].f(0, mine)));

        ran = 0;
        fns[i].f(SIGUSR1, mine);
        raise(SIGUSR1);
        printf("  SIGUSR1 raised: ran %d\n", (int)ran);
        show(SIGUSR1, "SIGUSR1 after");
        fns[i].f(SIGUSR1, SIG_DFL);
    }
    fflush(stdout);
    if (argc > 1 && strcmp(argv[1], "overflow") == 0) {
        __sysv_signal(SIGABRT, mine);
        __sysv_signal(SIGABRT, SIG_DFL);
        return overflow_and_abort();
    }
    return 0;
}
