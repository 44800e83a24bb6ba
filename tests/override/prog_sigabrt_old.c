/*
 * tests/override/prog_sigabrt_old.c - SIGABRT's action as a program sees
 * it through the C library's older signal functions: bsd_signal, ssignal,
 * sysv_signal and sigset (with SIG_HOLD). The output must be glibc's in
 * every mode: the debug modes' check at abort (a handler of the library's)
 * must not show (before 2026-12-07 each of them returned it as the old
 * action: found by an audit). SIGUSR1 through each, raised: the program's
 * handler runs, with each function's flags (sysv_signal's resets the
 * action to the default).
 */
#define _GNU_SOURCE 1
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern __sighandler_t bsd_signal(int sig, __sighandler_t handler);
/* (declared deprecated by glibc's header: this test calls it on purpose) */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static volatile sig_atomic_t ran;
static void mine(int sig)
{
    (void)sig;
    ran++;
}

static const char *name(__sighandler_t h)
{
    return h == SIG_DFL ? "SIG_DFL" : h == SIG_IGN ? "SIG_IGN" : h == SIG_HOLD ? "SIG_HOLD"
           : h == SIG_ERR ? "SIG_ERR" : h == mine ? "mine" : "another";
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

int main(void)
{
    static const struct {
        const char *name;
        signal_fn f;
    } fns[] = {{"bsd_signal", bsd_signal}, {"ssignal", ssignal}, {"sysv_signal", sysv_signal},
               {"sigset", sigset}};
    free(malloc(10)); /* (the library set up: the debug modes' handler in) */
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        printf("%s:\n", fns[i].name);
        show(SIGABRT, "start");
        __sighandler_t old = fns[i].f(SIGABRT, mine);
        printf("  (mine) returned %s\n", name(old));
        show(SIGABRT, "after (mine)");
        printf("  (old) returned %s\n", name(fns[i].f(SIGABRT, old)));
        show(SIGABRT, "after (old)");
        if (fns[i].f != sigset) /* (glibc's sets SIG_ERR as a handler) */
            printf("  (SIG_ERR) returned %s\n", name(fns[i].f(SIGABRT, SIG_ERR)));
        printf("  signal 0 returned %s\n", name(fns[i].f(0, mine)));

        ran = 0;
        fns[i].f(SIGUSR1, mine);
        raise(SIGUSR1);
        printf("  SIGUSR1 raised: ran %d\n", (int)ran);
        show(SIGUSR1, "SIGUSR1 after");
        fns[i].f(SIGUSR1, SIG_DFL);
    }
    printf("sigset(SIG_HOLD):\n");
    printf("  returned %s\n", name(sigset(SIGABRT, SIG_HOLD)));
    show(SIGABRT, "held");
    printf("  again returned %s\n", name(sigset(SIGABRT, SIG_HOLD)));
    printf("  (SIG_DFL) returned %s\n", name(sigset(SIGABRT, SIG_DFL)));
    show(SIGABRT, "after (SIG_DFL)");
    return 0;
}
