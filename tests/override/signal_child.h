/*
 * tests/override/signal_child.h - a storm of SIGUSR1 from a child process,
 * for the preloaded signal programs that must stay single-threaded (glibc's
 * malloc then takes no lock, so a handler's malloc cannot wait for one its
 * own thread holds, and the comparison with glibc holds).
 */
#ifndef PM_T_SIGNAL_CHILD_H
#define PM_T_SIGNAL_CHILD_H

#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Install handler for SIGUSR1 (SA_RESTART), then fork a child that sends
 * SIGUSR1 to this process until it is gone, pausing pause_us microseconds
 * between signals (0: none). The child's pid, or -1. */
static pid_t signal_child_start(void (*handler)(int), unsigned pause_us)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        while (kill(parent, SIGUSR1) == 0)
            if (pause_us != 0)
                usleep(pause_us);
        _exit(0);
    }
    return child;
}

static void signal_child_stop(pid_t child)
{
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

#endif
