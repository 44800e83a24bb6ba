/*
 * tests/override/sig_chain.c - a library preloaded after libpymalloc.so
 * that defines sigaction and signal itself and passes each call on to the
 * next definition (dlsym(RTLD_NEXT, ...)), as the JVM's libjsig chains
 * handlers: it must see every action the program sets, in every mode
 * (the override's sigaction, src/signal.c, passed them to the C library
 * straight, past it). At exit it writes how many it saw.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int seen;

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    int (*next)(int, const struct sigaction *, struct sigaction *);
    void *f = dlsym(RTLD_NEXT, "sigaction");
    memcpy(&next, &f, sizeof next);
    if (act != NULL && act->sa_handler != SIG_DFL)
        seen++;
    return next(sig, act, old);
}

__sighandler_t signal(int sig, __sighandler_t handler)
{
    __sighandler_t (*next)(int, __sighandler_t);
    void *f = dlsym(RTLD_NEXT, "signal");
    memcpy(&next, &f, sizeof next);
    if (handler != SIG_DFL)
        seen++;
    return next(sig, handler);
}

__attribute__((destructor)) static void report(void)
{
    char line[64];
    int n = snprintf(line, sizeof line, "sig_chain: saw %d\n", seen);
    if (write(2, line, (size_t)n) < 0)
        return;
}
