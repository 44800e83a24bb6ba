/*
 * tests/override/test_small_stacks.c - heap-error reports and the abort-time
 * check on small stacks: a thread with the smallest stack glibc allows
 * (PTHREAD_STACK_MIN, 16 KiB) and a signal handler on a small sigaltstack
 * (the classic 8 KiB SIGSTKSZ, and one sized to leave less than 4 KiB)
 * that calls abort(). Each must end in SIGABRT with the report (where less
 * than 4 KiB of the alternate stack is left: a line saying the check at
 * abort is left out), never in SIGSEGV.
 *
 * A report and abort's SIGABRT frame (about 3 KB with AVX-512 state) leave
 * little room: before, a 4 KiB report buffer on the stack and a first call
 * through a lazily bound PLT stub (the dynamic linker's resolver saves the
 * vector registers, about 3 KB more) overflowed such stacks. Linked with
 * libpymalloc.a; the program's own calls are bound lazily, as usual.
 */
#include "../harness.h"
#include "pymalloc.h"

#include <limits.h>
#include <pthread.h>
#include <sys/auxv.h>

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

typedef void (*scenario)(void);

/* Sizes and pointers hidden from the compiler's bounds checks. */
static volatile size_t small = 24, big = 5000;
static unsigned char *volatile hide;

/* The SIGABRT action at start-up (the debug hooks' check of the heap): the
 * harness's death tests reset it to the default in the child. */
static struct sigaction installed;

static void overflow_small(void)
{
    unsigned char *p = malloc(small);
    ((volatile unsigned char *)p)[small] = 'x';
    free(p);
}

static void overflow_big(void)
{
    unsigned char *p = malloc(big);
    ((volatile unsigned char *)p)[big] = 'x';
    free(p);
}

static void double_free(void)
{
    hide = malloc(40);
    free(hide);
    free(hide);
}

/* abort() with a damaged live block: the SIGABRT handler checks the heap. */
static void abort_damaged(void)
{
    hide = malloc(big);
    for (size_t i = big; i < big + 10; i++)
        ((volatile unsigned char *)hide)[i] = 'x';
    abort();
}

static void *run(void *arg)
{
    scenario fn;
    memcpy(&fn, &arg, sizeof fn);
    fn();
    return NULL;
}

/* fn on a thread with a PTHREAD_STACK_MIN stack. */
static void on_small_thread(void *arg)
{
    sigaction(SIGABRT, &installed, NULL);
    pthread_attr_t at;
    pthread_attr_init(&at);
    if (pthread_attr_setstacksize(&at, PTHREAD_STACK_MIN) != 0)
        _exit(90);
    pthread_t t;
    if (pthread_create(&t, &at, run, arg) != 0)
        _exit(91);
    pthread_join(t, NULL);
    _exit(92); /* the scenario must not return */
}

static void expect_abort(scenario fn, const char *text)
{
    pm_death_result r;
    void *arg;
    memcpy(&arg, &fn, sizeof arg);
    pm_death(on_small_thread, arg, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, text);
}

static void test_reports_on_a_small_thread_stack(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode: no report");
    expect_abort(overflow_small, "pymalloc: free: buffer overflow: 1 byte written past the end "
                                 "of a 24-byte block");
    expect_abort(overflow_big, "pymalloc: free: buffer overflow: 1 byte written past the end "
                               "of a 5000-byte block");
    expect_abort(double_free, "pymalloc: free: double free");
    expect_abort(abort_damaged, "pymalloc: abort: buffer overflow");
}

static void on_segv(int sig)
{
    (void)sig;
    abort();
}

/* A crash handler on an alternate stack of arg bytes that calls abort(),
 * with a live block written past its end: the process must die of
 * SIGABRT, as under glibc. */
static void crash_on_alt_stack(void *arg)
{
    sigaction(SIGABRT, &installed, NULL);
    size_t size = (size_t)(uintptr_t)arg;
    static char alt[65536] __attribute__((aligned(64)));
    stack_t ss = {.ss_sp = alt + sizeof alt - size, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        _exit(93);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    unsigned char *volatile d = malloc(small);
    ((volatile unsigned char *)d)[small] = 'x';
    hide = NULL;
    *(volatile int *)hide = 1;
    _exit(94);
}

/* An alternate stack on which the two signal frames and abort() leave
 * less than 4 KiB: twice the kernel's largest signal frame
 * (AT_MINSIGSTKSZ: 1776 bytes on an x86-64 without AVX-512, about twice
 * that with it) and 2.5 KiB. Without that value (kernels before 5.14),
 * 8 KiB, which leaves about 1 KiB with AVX-512 and 5 KiB without. */
static size_t tight_alt_stack(void)
{
    unsigned long m = getauxval(AT_MINSIGSTKSZ);
    if (m == 0)
        return 8192;
    size_t size = (2 * (size_t)m + 2560 + 63) & ~(size_t)63;
    return size < 32768 ? size : 32768;
}

/* On an alternate stack where the two signal frames and abort() leave
 * less than 4 KiB, the check of the heap at abort is left out, with one
 * line: before, it overflowed the stack (SIGSEGV, no report: on i386
 * always, on x86-64 when a block was damaged). On the classic 8 KiB
 * SIGSTKSZ, the line or the report (about 1 KiB is left with AVX-512
 * state, 5 KiB without: found by an audit on an AMD EPYC without it, where
 * the test expected the line), never SIGSEGV. On a 64 KiB one it reports
 * the damaged block. */
static void test_abort_on_a_small_alt_stack(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode: no SIGABRT handler");
    pm_death_result r;
    pm_death(crash_on_alt_stack, (void *)(uintptr_t)tight_alt_stack(), &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: abort: the heap is not checked: ");
    PM_CHECK_STR(r.output, " bytes of stack are left on the signal's alternate stack, and the "
                           "check needs 4096\n");
    pm_death(crash_on_alt_stack, (void *)(uintptr_t)8192, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK(strstr(r.output, "pymalloc: abort: the heap is not checked: ") != NULL ||
             strstr(r.output, "pymalloc: abort: buffer overflow: 1 byte written past the end "
                              "of a 24-byte block") != NULL);
    pm_death(crash_on_alt_stack, (void *)(uintptr_t)65536, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: abort: buffer overflow: 1 byte written past the end of a "
                           "24-byte block");
    PM_CHECK(strstr(r.output, "not checked") == NULL);
}

int main(void)
{
    sigaction(SIGABRT, NULL, &installed);
    PM_RUN(test_reports_on_a_small_thread_stack);
    PM_RUN(test_abort_on_a_small_alt_stack);
    return pm_test_done();
}
