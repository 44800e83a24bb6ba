/*
 * tests/override/exit_lib.c - a library of the program's whose destructor
 * runs after libpymalloc's: a preloaded libpymalloc.so's destructors run
 * before those of the program's own libraries, and so do libpymalloc.a's,
 * in the executable. prog_exit_paths arms it (pm_t_exit_lib_arm) to make a
 * heap error there, to free a block damaged long before, to call exit(),
 * or to register an atexit handler that late (check_exit_paths.sh).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *what = "";
static unsigned char *damaged;

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

/* n + 1 bytes written into an n-byte block (volatile: hidden from the
 * compiler, which would drop a store before free). */
static void overflow(unsigned char *p, size_t n)
{
    for (size_t i = 0; i <= n; i++)
        ((volatile unsigned char *)p)[i] = 'x';
}

void pm_t_exit_lib_arm(const char *w)
{
    what = w;
    if (strcmp(what, "dtor-late-free") == 0) {
        volatile size_t n = 20;
        damaged = malloc(n);
        overflow(damaged, n); /* damaged now, freed by the destructor */
    }
}

static void late_handler(void) { say("late atexit handler ran\n"); }

__attribute__((destructor)) static void exit_lib_dtor(void)
{
    say("library destructor ran\n");
    if (strcmp(what, "dtor-overflow") == 0 || strcmp(what, "dtor-exit") == 0) {
        volatile size_t n = 20;
        unsigned char *p = malloc(n);
        overflow(p, n);
        free(p);
    } else if (strcmp(what, "dtor-late-free") == 0) {
        free(damaged);
    } else if (strcmp(what, "dtor-atexit") == 0) {
        atexit(late_handler);
    }
    if (strcmp(what, "dtor-exit") == 0 || strcmp(what, "dtor-exit-clean") == 0)
        exit(3);
}
