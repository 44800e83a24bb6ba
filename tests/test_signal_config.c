/*
 * tests/test_signal_config.c - the configuration calls (pm_get_allocator,
 * pm_set_allocator, pm_set_mode, pm_setup_debug_hooks) from a signal
 * handler that interrupts its own thread inside one of them.
 *
 * Each of them holds one lock (the mode lock) while it reads or changes the
 * table. A handler's call on the thread that holds it waited for ever.
 * Now it returns -1 with EDEADLK and changes nothing; a handler's call on a
 * thread that holds no such lock works as anywhere else.
 *
 * The thread reads the MEM domain's allocator and sets it back, in a loop,
 * while a profiling timer's handler does the same and also asks for the
 * installed mode and for the debug hooks (both already in place or
 * refused: EBUSY once blocks were handed out). It allocates and frees a
 * block through MEM in between, so the allocator it sets back is in use.
 * The loop runs in a child with a deadline: a hang is a failure. Both
 * outcomes must be seen: calls that worked, and calls refused because the
 * thread held the lock (the case this is about).
 */
#define _GNU_SOURCE 1
#include "harness.h"

#include <pymalloc.h>

#include <time.h>

#define RUN_SECONDS 2
#define DEADLINE 60

static volatile sig_atomic_t handled, worked, refused, bad;
static const char *mode;

static void on_prof(int sig)
{
    (void)sig;
    int saved = errno;
    handled++;
    pm_allocator a;
    int rc = pm_get_allocator(PM_DOMAIN_MEM, &a);
    if (rc == 0) {
        rc = pm_set_allocator(PM_DOMAIN_MEM, &a);
        if (rc == 0)
            worked++;
    }
    if (rc != 0) {
        if (errno == EDEADLK)
            refused++;
        else
            bad = __LINE__;
    }
    rc = pm_set_mode(mode); /* the installed mode: 0, nothing changes */
    if (rc != 0 && errno != EDEADLK)
        bad = __LINE__;
    int debug = pm_debug_enabled();
    rc = pm_setup_debug_hooks(); /* in place (0), or blocks are out (EBUSY) */
    if (rc != 0 && errno != EDEADLK && !(errno == EBUSY && !debug))
        bad = __LINE__;
    if (rc == 0 && !debug)
        bad = __LINE__; /* hooks installed over a mode in use */
    errno = saved;
}

static void workload(void *arg)
{
    (void)arg;
    pm_t_prof_start(on_prof, 100, NULL);
    time_t end = time(NULL) + RUN_SECONDS;
    unsigned long loops = 0;
    while ((time(NULL) < end || refused == 0) && !bad) {
        pm_allocator a;
        if (pm_get_allocator(PM_DOMAIN_MEM, &a) != 0 || pm_set_allocator(PM_DOMAIN_MEM, &a) != 0)
            bad = __LINE__; /* never refused outside a handler */
        char *p = pm_mem_malloc(40);
        if (p == NULL)
            bad = __LINE__;
        else
            memset(p, 'x', 40);
        pm_mem_free(p);
        loops++;
    }
    pm_t_prof_stop();
    fprintf(stderr, "    %lu loops, %d signals: %d calls worked, %d refused (EDEADLK)\n", loops,
            (int)handled, (int)worked, (int)refused);
    if (bad)
        fprintf(stderr, "    a check failed at line %d\n", (int)bad);
    _exit(bad ? 4 : worked == 0 ? 5 : 0);
}

static void config_in_handler(void) { PM_CHECK(pm_t_child_within(workload, NULL, DEADLINE)); }

int main(void)
{
    pm_t_pin_env(NULL);
    if (PM_T_TSAN) {
        /* TSan runs a handler at its own safe points, never inside the
         * lock: the refused case would not be reached (and the loop runs
         * until it is). */
        puts("skipped: TSan defers signal handlers to its own safe points");
        return 77;
    }
    mode = pm_mode_name();
    fprintf(stderr, "mode %s\n", mode);
    PM_RUN(config_in_handler);
    return pm_test_done();
}
