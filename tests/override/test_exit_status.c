/*
 * tests/override/test_exit_status.c - PYMALLOC_ON_ERROR=report and _exit:
 * a process that counted heap errors and ends with _exit(0) or _Exit(0) (a
 * test harness's child, typically) prints the summary line and exits with
 * status 1, like one ending with exit(0); any other status is kept, without
 * the line; a process without errors exits as it asked. Linked with the
 * override (libpymalloc.a), whose _exit and _Exit do this. Run in every
 * mode (ctest sets PYMALLOC_MODE and PYMALLOC_ON_ERROR=report); the heap
 * error is made only in the debug modes.
 */
#include "../harness.h"
#include "pymalloc.h"

#include <stdlib.h>
#include <sys/wait.h>

typedef struct how {
    int error;  /* make a heap error first */
    int status; /* then end with this status */
    int big_e;  /* through _Exit rather than _exit */
} how;

static void child(void *arg)
{
    const how *h = arg;
    if (h->error) {
        volatile size_t n = 24; /* hidden from the compiler's bounds checks */
        unsigned char *p = malloc(n);
        /* One byte past the end (volatile: a store before free() is dead to
         * the compiler): reported at the free, the block leaked. */
        ((volatile unsigned char *)p)[n] = 'x';
        free(p);
    }
    if (h->big_e)
        _Exit(h->status);
    _exit(h->status);
}

static void test_exit_statuses(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode: no heap error to count");
    static const how cases[] = {
        {1, 0, 0}, {1, 0, 1}, {1, 3, 0}, {1, 3, 1}, {0, 0, 0}, {0, 5, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const how *h = &cases[i];
        pm_death_result r;
        pm_death(child, (void *)h, &r);
        PM_CHECK(r.exited);
        int want = h->error && h->status == 0 ? 1 : h->status;
        PM_CHECK_EQ(r.exit_status, want);
        int summary = strstr(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error "
                                       "(buffer overflow: 1); exit status 1") != NULL;
        PM_CHECK_EQ(summary, h->error && h->status == 0);
        if (h->error)
            PM_CHECK_STR(r.output, "buffer overflow: 1 byte written past the end");
    }
}

/* Without heap errors (any mode), _exit and _Exit end the process with the
 * status asked for, at once (no destructor, no stdio flush). */
static void quiet_child(void *arg)
{
    const how *h = arg;
    printf("unflushed");
    if (h->big_e)
        _Exit(h->status);
    _exit(h->status);
}

static void test_exit_plain(void)
{
    static const how cases[] = {{0, 0, 0}, {0, 7, 0}, {0, 0, 1}, {0, 255, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pm_death_result r;
        pm_death(quiet_child, (void *)&cases[i], &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, cases[i].status);
        PM_CHECK(strstr(r.output, "unflushed") == NULL);
        PM_CHECK(strstr(r.output, "PYMALLOC_ON_ERROR") == NULL);
    }
}

int main(void)
{
    PM_RUN(test_exit_statuses);
    PM_RUN(test_exit_plain);
    return pm_test_done();
}
