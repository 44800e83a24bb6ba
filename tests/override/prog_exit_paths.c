/*
 * tests/override/prog_exit_paths.c - ways out of a program after heap
 * errors, for check_exit_paths.sh: errors made in a library's destructor,
 * which runs after libpymalloc's (exit_lib.c), exit() called there, handlers
 * registered at exit, and quick_exit. argv[1] names the case. Built twice:
 * plain (run with libpymalloc.so preloaded) and linked with libpymalloc.a.
 */
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

static void quick_handler(void)
{
    say("at_quick_exit handler ran\n");
    if (strcmp(what, "quick-exit-handler") == 0)
        heap_error();
}

static void main_late_handler(void) { say("main's late atexit handler ran\n"); }

/* The executable's destructors run before the libraries' (and, preloaded,
 * before libpymalloc's). */
__attribute__((destructor)) static void main_dtor(void)
{
    if (strcmp(what, "main-dtor-atexit") == 0)
        atexit(main_late_handler);
}

int main(int argc, char **argv)
{
    what = argc > 1 ? argv[1] : "";
    pm_t_exit_lib_arm(what);
    printf("main ran\n"); /* buffered: written before the summary */
    if (strncmp(what, "quick-exit", 10) == 0) {
        at_quick_exit(quick_handler);
        if (strcmp(what, "quick-exit") == 0 || strcmp(what, "quick-exit-3") == 0)
            heap_error();
        fflush(stdout); /* quick_exit does not flush */
        quick_exit(strcmp(what, "quick-exit-3") == 0 ? 3 : 0);
    }
    return 0;
}
