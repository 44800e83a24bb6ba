/*
 * tests/override/prog_exit_paths.c - ways out of a program after heap
 * errors, for check_exit_paths.sh: errors made in a library's destructor,
 * which runs after libpymalloc's (exit_lib.c), exit() called there, handlers
 * registered at exit, a heap error made by another thread after the work
 * at exit, quick_exit, a return from main while other
 * threads still make heap errors, and a write after free found at exit. argv[1] names the case. Built twice:
 * plain (run with libpymalloc.so preloaded) and linked with libpymalloc.a.
 */
#define _GNU_SOURCE 1 /* on_exit, fopencookie */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pm_t_exit_lib_arm(const char *what);

static const char *what = "";

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

static void heap_error(void)
{
    volatile size_t n = 24;
    unsigned char *p = malloc(n);
    ((volatile unsigned char *)p)[n] = 'x'; /* one byte past the end */
    free(p);
}

/* "threads-errors": threads that make heap errors until the process
 * ends; main returns once each has made a few. */
#define ERROR_THREADS 2
static atomic_int errors_made[ERROR_THREADS];
static void *error_loop(void *arg)
{
    atomic_int *made = arg;
    for (;;) {
        heap_error();
        atomic_fetch_add(made, 1);
    }
    return NULL;
}

/* "late-thread-error": a thread makes a heap error while exit() flushes
 * stdio, after the work at exit found no error: a stream of the program's
 * whose write (in exit's last flush) lets the thread go, then waits for
 * it to be done (10 s at most). */
static atomic_int late_go, late_done;
static ssize_t late_write(void *cookie, const char *buf, size_t n)
{
    (void)cookie;
    (void)!write(1, buf, n);
    atomic_store(&late_go, 1);
    for (int i = 0; i < 10000 && !atomic_load(&late_done); i++)
        usleep(1000);
    return (ssize_t)n;
}

static void *late_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&late_go))
        usleep(1000);
    heap_error();
    say("late thread made its heap error\n");
    atomic_store(&late_done, 1);
    return NULL;
}

/* "key-dtor-error": a heap error in a thread-specific data destructor of
 * a thread that ends after main called pthread_exit (the last thread
 * ends the process with exit(0)); "signal-error": one in a signal
 * handler. */
static pthread_key_t key;
static void key_dtor(void *v)
{
    (void)v;
    heap_error();
    say("key destructor ran\n");
}

static void *key_thread(void *arg)
{
    (void)arg;
    (void)pthread_setspecific(key, &key);
    usleep(100000); /* (most often the last thread) */
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    heap_error();
}

static void quick_handler(void)
{
    say("at_quick_exit handler ran\n");
    if (strcmp(what, "quick-exit-handler") == 0)
        heap_error();
}

static void main_late_handler(void) { say("main's late atexit handler ran\n"); }

/* Registered by on_exit, in no library's name (unlike the executable's
 * atexit, which its own __cxa_finalize runs among its destructors). */
static void main_on_exit_handler(int status, void *arg)
{
    (void)status;
    (void)arg;
    say("main's on_exit handler ran\n");
    heap_error();
}

/* The executable's destructors run before the libraries' (and, preloaded,
 * before libpymalloc's). */
__attribute__((destructor)) static void main_dtor(void)
{
    if (strcmp(what, "main-dtor-atexit") == 0)
        atexit(main_late_handler);
    if (strcmp(what, "main-dtor-on-exit-error") == 0)
        on_exit(main_on_exit_handler, NULL);
    /* exit() called again by the executable's own destructor, after a
     * heap error made in main (main-dtor-exit) */
    if (strcmp(what, "main-dtor-exit") == 0 || strcmp(what, "main-dtor-exit-clean") == 0) {
        say("main's destructor calls exit\n");
        exit(0);
    }
    if (strcmp(what, "main-dtor-exit-3") == 0)
        exit(3);
}

int main(int argc, char **argv)
{
    what = argc > 1 ? argv[1] : "";
    pm_t_exit_lib_arm(what);
    printf("main ran\n"); /* buffered: written before the summary */
    if (strncmp(what, "main-dtor-exit", 14) == 0 && strcmp(what, "main-dtor-exit-clean") != 0)
        heap_error();
    if (strcmp(what, "threads-errors") == 0) {
        for (int i = 0; i < ERROR_THREADS; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, error_loop, &errors_made[i]) != 0)
                return 2;
        }
        for (int i = 0; i < ERROR_THREADS; i++)
            while (atomic_load(&errors_made[i]) < 50)
                sched_yield();
    }
    if (strcmp(what, "late-thread-error") == 0) {
        cookie_io_functions_t io = {NULL, late_write, NULL, NULL};
        FILE *late = fopencookie(NULL, "w", io);
        pthread_t t;
        if (late == NULL || setvbuf(late, NULL, _IOFBF, 256) != 0 ||
            fputs("late stream's output\n", late) == EOF ||
            pthread_create(&t, NULL, late_thread, NULL) != 0)
            return 2;
        fflush(stdout); /* (written before the stream, whatever happens to it) */
    }
    if (strcmp(what, "key-dtor-error") == 0) {
        pthread_t t;
        if (pthread_key_create(&key, key_dtor) != 0 ||
            pthread_create(&t, NULL, key_thread, NULL) != 0)
            return 2;
        fflush(stdout);
        pthread_exit(NULL);
    }
    if (strcmp(what, "uaf-at-exit") == 0) {
        /* a write after free that only the check at exit finds */
        volatile size_t n = 24;
        unsigned char *p = malloc(n);
        free(p);
        ((volatile unsigned char *)p)[20] = 1;
    }
    if (strcmp(what, "signal-error") == 0) {
        signal(SIGUSR1, on_signal);
        raise(SIGUSR1);
    }
    if (strncmp(what, "quick-exit", 10) == 0) {
        at_quick_exit(quick_handler);
        if (strcmp(what, "quick-exit") == 0 || strcmp(what, "quick-exit-3") == 0)
            heap_error();
        fflush(stdout); /* quick_exit does not flush */
        quick_exit(strcmp(what, "quick-exit-3") == 0 ? 3 : 0);
    }
    return 0;
}
