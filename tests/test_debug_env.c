/*
 * tests/test_debug_env.c - the debug hooks' environment: PYMALLOC_ON_ERROR,
 * PYMALLOC_BREAK_SERIAL, and serial numbers stable from run to run.
 *
 * Runs once, not per mode: each case sets PYMALLOC_MODE and the variables
 * itself in a forked child, before pymalloc is set up there.
 */
#define _GNU_SOURCE /* fopencookie */
#include "debug_layout.h"
#include "harness.h"

#include <pthread.h>
#include "../src/pm_internal.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

/* Under ASan, an allocation too large for the allocator returns NULL (as
 * with libc) instead of stopping the process: these tests make the
 * underlying realloc fail on purpose. */
PM_TEST_SANITIZER_MAY_RETURN_NULL

typedef struct env_case {
    const char *mode, *on_error, *break_serial;
    void (*body)(void);
} env_case;

static const env_case *cur;
static const char *cur_stats; /* PYMALLOC_STATS for the next cases, if not NULL */

static void child_main(void *arg)
{
    (void)arg;
    setenv("PYMALLOC_MODE", cur->mode, 1);
    if (cur->on_error != NULL)
        setenv("PYMALLOC_ON_ERROR", cur->on_error, 1);
    if (cur->break_serial != NULL)
        setenv("PYMALLOC_BREAK_SERIAL", cur->break_serial, 1);
    if (cur_stats != NULL)
        setenv("PYMALLOC_STATS", cur_stats, 1);
    cur->body();
}

static void run_case(const env_case *c, pm_death_result *r)
{
    cur = c;
    pm_death(child_main, NULL, r);
}

/* body run in mode with PYMALLOC_ON_ERROR=report: it must end with the
 * status of a process whose heap errors were summed up (1). */
static void run_report_case(const char *mode, void (*body)(void), pm_death_result *r)
{
    env_case c = {mode, "report", NULL, body};
    run_case(&c, r);
    PM_CHECK(r->exited);
    PM_CHECK_EQ(r->exit_status, 1);
}

static void say(const char *s)
{
    if (write(1, s, strlen(s)) < 0)
        _exit(3);
}

/* A deterministic single-threaded program: prints the serial of each block. */
static void body_serials(void)
{
    void *blocks[20];
    size_t sizes[20];
    for (int i = 0; i < 20; i++) {
        sizes[i] = (size_t)(i * 37 % 300);
        blocks[i] = (i % 3 == 0) ? pm_raw_malloc(sizes[i])
                    : (i % 3 == 1) ? pm_mem_calloc(1, sizes[i]) : pm_obj_malloc(sizes[i]);
        if (i % 4 == 3) {
            sizes[i] += 100;
            blocks[i] = (i % 3 == 0   ? pm_raw_realloc
                         : i % 3 == 1 ? pm_mem_realloc
                                      : pm_obj_realloc)(blocks[i], sizes[i]);
        }
        printf("%llu ", (unsigned long long)trailer_serial(blocks[i], sizes[i]));
    }
    printf("\n");
    for (int i = 0; i < 20; i++)
        (i % 3 == 0 ? pm_raw_free : i % 3 == 1 ? pm_mem_free : pm_obj_free)(blocks[i]);
}

static void test_serials_stable(void)
{
    const char *modes[] = {"malloc_debug", "debug"};
    for (int m = 0; m < 2; m++) {
        env_case c = {modes[m], NULL, NULL, body_serials};
        static pm_death_result r1, r2;
        run_case(&c, &r1);
        run_case(&c, &r2);
        PM_CHECK(r1.exited && r1.exit_status == 0);
        PM_CHECK(strcmp(r1.output, r2.output) == 0);
        /* Nothing else in the program allocates through pymalloc: the first
         * block is serial 1, and a realloc takes the next number. */
        PM_CHECK(strncmp(r1.output, "1 2 3 5 6 7 8 10 11 ", 20) == 0);
        if (strncmp(r1.output, "1 2 3 5 6 7 8 10 11 ", 20) != 0)
            fprintf(stderr, "serials: %s\n", r1.output);
    }
}

/* PYMALLOC_BREAK_SERIAL=3: SIGTRAP when block 3 is made and when it is freed. */
static void on_trap(int sig)
{
    (void)sig;
    say("TRAP\n");
}

static void body_break_caught(void)
{
    signal(SIGTRAP, on_trap);
    void *p[5];
    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "alloc %d\n", i + 1);
        say(msg);
        p[i] = pm_mem_malloc(8);
    }
    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "free %d\n", i + 1);
        say(msg);
        pm_mem_free(p[i]);
    }
    say("end\n");
}

static void body_break_uncaught(void)
{
    for (int i = 0; i < 5; i++) {
        say("alloc\n");
        (void)pm_mem_malloc(8);
    }
}

static void test_break_serial(void)
{
    static pm_death_result r;
    env_case c = {"malloc_debug", NULL, "3", body_break_caught};
    run_case(&c, &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK_STR(r.output, "alloc 2\nalloc 3\nTRAP\nalloc 4\n");
    PM_CHECK_STR(r.output, "free 2\nfree 3\nTRAP\nfree 4\n");
    PM_CHECK(strstr(r.output, "TRAP\n") != NULL &&
             strstr(strstr(r.output, "TRAP\n") + 5, "TRAP\n") != NULL &&
             strstr(strstr(strstr(r.output, "TRAP\n") + 5, "TRAP\n") + 5, "TRAP") == NULL);

    env_case u = {"debug", NULL, "2", body_break_uncaught};
    run_case(&u, &r);
    PM_CHECK(!r.exited && r.signal == SIGTRAP); /* a debugger would stop here */
    PM_CHECK(strcmp(r.output, "alloc\nalloc\n") == 0);

    /* Not a debug mode: nothing to break on, the program runs. */
    env_case m = {"malloc", NULL, "1", body_break_uncaught};
    run_case(&m, &r);
    PM_CHECK(r.exited && r.exit_status == 0);
}

/* PYMALLOC_BREAK_SERIAL=3 and block 3 written past its end: its free (or
 * realloc) raises SIGTRAP before the report, as an intact block's free
 * does (before, the report and its abort came first: no break). */
static int break_by_realloc;

static void body_break_damaged(void)
{
    signal(SIGTRAP, on_trap);
    unsigned char *p[5];
    for (int i = 0; i < 5; i++)
        p[i] = pm_mem_malloc(8);
    p[2][8] = 0; /* block 3: one byte past its end */
    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "free %d\n", i + 1);
        say(msg);
        if (break_by_realloc && i == 2)
            (void)pm_mem_realloc(p[i], 100);
        else
            pm_mem_free(p[i]);
    }
    say("end\n");
}

static void test_break_serial_before_report(void)
{
    const char *modes[] = {"malloc_debug", "pymalloc_debug"};
    for (int m = 0; m < 2; m++)
        for (break_by_realloc = 0; break_by_realloc < 2; break_by_realloc++) {
            static pm_death_result r;
            env_case c = {modes[m], NULL, "3", body_break_damaged};
            run_case(&c, &r);
            PM_CHECK(!r.exited && r.signal == SIGABRT);
            char want[160];
            snprintf(want, sizeof want,
                     "free 3\nTRAP\npymalloc: pm_mem_%s: buffer overflow: 1 byte written past "
                     "the end of a 8-byte block (serial 3)",
                     break_by_realloc ? "realloc" : "free");
            PM_CHECK_STR(r.output, want);
            if (pm_t_cur_failed) {
                fprintf(stderr, "mode %s:\n%s\n", modes[m], r.output);
                return;
            }
        }
}

/* PYMALLOC_ON_ERROR=report: each error printed and counted, the program goes
 * on, the damaged blocks leak, and the process exits non-zero at the end
 * with a summary line. */
static void body_two_bugs(void)
{
    unsigned char *p = pm_mem_malloc(10);
    p[10] = 0;
    pm_mem_free(p);
    unsigned char *q = pm_obj_malloc(10);
    pm_obj_free(q);
    pm_obj_free(q);
    unsigned char *s = pm_raw_malloc(10);
    s[-1] = 0;
    pm_raw_free(s);
    printf("still running\n");
    fflush(stdout);
    exit(0); /* exit, not _exit: the summary runs at exit */
}

static void test_on_error_report(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "debug"};
    for (int m = 0; m < 2; m++) {
        run_report_case(modes[m], body_two_bugs, &r);
        PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: buffer overflow: 1 byte written past");
        PM_CHECK_STR(r.output, "pymalloc: pm_obj_free: double free: the 10-byte block");
        PM_CHECK_STR(r.output, "pymalloc: pm_raw_free: buffer underflow: 1 byte written before");
        PM_CHECK_STR(r.output, "still running\n");
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 3 heap errors (buffer "
                               "overflow: 1, buffer underflow: 1, double free: 1); exit "
                               "status 1\n");
    }
    /* With PYMALLOC_STATS=1 too: the statistics, then the summary line last
     * (the summary's _exit skipped the statistics' destructor). */
    for (int m = 0; m < 2; m++) {
        env_case c = {modes[m], "report", NULL, body_two_bugs};
        cur_stats = "1";
        run_case(&c, &r);
        cur_stats = NULL;
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 1);
        const char *stats = strstr(r.output, "Small block threshold = ");
        const char *sum = strstr(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 3 heap errors");
        PM_CHECK(stats != NULL && sum != NULL && stats < sum);
        PM_CHECK(stats == NULL || strstr(stats + 1, "Small block threshold = ") == NULL);
    }
    /* abort (the default, and by name): the first error stops the process. */
    const char *aborts[] = {"abort", ""};
    for (int i = 0; i < 2; i++) {
        env_case c = {"malloc_debug", aborts[i], NULL, body_two_bugs};
        run_case(&c, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK(strstr(r.output, "still running") == NULL);
    }
}

/* Output the program left in stdio's buffers comes before the summary,
 * which is the last line (stdout is a pipe here: fully buffered). */
static void body_unflushed_output(void)
{
    unsigned char *p = pm_mem_malloc(10);
    p[10] = 0;
    pm_mem_free(p);
    printf("program output, not flushed\n");
    exit(0);
}

static void test_on_error_report_summary_last(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug"};
    const char *sum = "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error (buffer overflow: "
                      "1); exit status 1\n";
    for (int m = 0; m < 2; m++) {
        run_report_case(modes[m], body_unflushed_output, &r);
        const char *out = strstr(r.output, "program output, not flushed\n");
        const char *at = strstr(r.output, sum);
        PM_CHECK(out != NULL && at != NULL && out < at);
        PM_CHECK(at != NULL && strcmp(at, sum) == 0);
    }
}

/* Blocks written past their ends (or before their starts) and never
 * freed: the check at exit reports each one, counts it, and ends the
 * process as a heap error does (abort, or report mode's summary). */
static unsigned char *never_freed[3];
static void body_never_freed(void)
{
    never_freed[0] = pm_mem_malloc(24);  /* a pool block in pymalloc_debug */
    never_freed[1] = pm_raw_malloc(1000); /* a libc block */
    never_freed[2] = pm_obj_malloc(40);
    never_freed[0][24] = 0;
    never_freed[1][-1] = 0;
    unsigned char *reported = pm_mem_malloc(10); /* reported and leaked: once */
    reported[10] = 0;
    pm_mem_free(reported);
    printf("exiting\n");
    exit(0);
}

static void test_exit_check(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug", "debug"};
    for (int m = 0; m < 3; m++) {
        /* report: the free's error, then the two at exit, in the summary */
        run_report_case(modes[m], body_never_freed, &r);
        PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: buffer overflow: 1 byte written past the "
                               "end of a 10-byte block");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end of a "
                               "24-byte block (serial 1)");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer underflow: 1 byte written before the start "
                               "of a 1000-byte block (serial 2)");
        PM_CHECK_STR(r.output, "pymalloc: exit: 2 damaged blocks, never freed, among the ");
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 3 heap errors (buffer "
                               "overflow: 2, buffer underflow: 1); exit status 1\n");
        /* abort (the default): the reports, then SIGABRT */
        env_case a = {modes[m], NULL, NULL, body_never_freed};
        run_case(&a, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK(strstr(r.output, "exiting\n") == NULL); /* the free's report aborted */
    }
}

/* The same blocks with the default (abort), no error before exit. */
static void body_never_freed_only(void)
{
    unsigned char *p = pm_mem_malloc(24), *q = pm_raw_malloc(1000);
    p[24] = 0;
    q[-1] = 0;
    printf("exiting\n");
    exit(0);
}

/* A write from one block into the next one's header, both never freed:
 * one report, of the block that overflowed. */
static void body_never_freed_into_next(void)
{
    unsigned char *a = block_run(24, 64, 2);
    if (a == NULL) {
        printf("no neighbours\n");
        exit(0);
    }
    memset(a + 24, 'O', 16 + 12); /* a's pad and serial, then the next block's size and API */
    exit(0);
}

/* A write before the start of the second of two blocks, down through its
 * header into the first one's serial field (its pad bytes intact), both
 * never freed: one report, of the block underflowed (before, the first
 * block's "header corrupt" too: two for one write). The report names the
 * first block too when the check meets it first (the registry's blocks
 * come in the order of its hash table). */
static void body_never_freed_into_below(void)
{
    unsigned char *a = block_run(24, 64, 2);
    if (a == NULL) {
        printf("no neighbours\n");
        exit(0);
    }
    memset(a + 64 - 30, 'U', 30); /* the second's header, then the first's serial */
    exit(0);
}

/* With an error handler of the program's: the report at exit, and the
 * process ends as it would (the handler is not called: locks are held). */
static int handler_calls;
static void count_handler(const pm_error_report *rep, void *ctx)
{
    (void)rep;
    (void)ctx;
    handler_calls++;
}

static void body_never_freed_with_handler(void)
{
    pm_set_error_handler(count_handler, NULL);
    unsigned char *p = pm_obj_malloc(24);
    p[-1] = 0;
    printf("exiting, %d handler calls\n", handler_calls);
    exit(5);
}

static void test_exit_check_abort(void)
{

    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug", "debug"};
    for (int m = 0; m < 3; m++) {
        env_case c = {modes[m], NULL, NULL, body_never_freed_only};
        run_case(&c, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, "exiting\n");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end of a "
                               "24-byte block (serial 1)");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer underflow: 1 byte written before the start "
                               "of a 1000-byte block (serial 2)");
        PM_CHECK_STR(r.output, "pymalloc: exit: 2 damaged blocks, never freed, among the 2 live "
                               "blocks checked\n");
        PM_CHECK(strstr(r.output, "pymalloc: abort") == NULL); /* no second look at abort */

        env_case n = {modes[m], NULL, NULL, body_never_freed_into_next};
        run_case(&n, &r);
        if (strstr(r.output, "no neighbours") != NULL)
            continue;
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: at least 16 bytes written past "
                               "the end of a 24-byte block");
        PM_CHECK_STR(r.output, "pymalloc: exit: 1 damaged block, never freed, among the 2 live "
                               "blocks checked\n");

        env_case u = {modes[m], NULL, NULL, body_never_freed_into_below};
        run_case(&u, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer underflow: at least 16 bytes written before "
                               "the start of a 24-byte block (serial 2)");
        PM_CHECK(strstr(r.output, "header corrupt") == NULL);
        PM_CHECK_STR(r.output, "pymalloc: exit: 1 damaged block, never freed, among the 2 live "
                               "blocks checked\n");
    }
}

/* Wait for child c; print how it ended. */
static void print_child_end(pid_t c)
{
    int st = -1;
    waitpid(c, &st, 0);
    printf("child %s %d\n", WIFEXITED(st) ? "status" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    fflush(stdout);
}

/* Fork a child that allocates, frees and exit()s; print how it ended. */
static void fork_clean_child(void)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        void *q = pm_mem_malloc(10);
        pm_mem_free(q);
        exit(0);
    }
    print_child_end(c);
}

/* A fork child's exit leaves out its parent's damaged block (the parent's
 * error, reported at the parent's own exit). */
static void body_fork_child_exit(void)
{
    unsigned char *p = pm_mem_malloc(24);
    p[24] = 0;
    fork_clean_child();
    exit(0);
}

/* A fork child that writes past the end of a block its parent made (and
 * into a block its parent freed) and exit()s reports both at its exit (the
 * parent's copies are intact: the child's errors; before, a fork child
 * left every block its parent made out of its check at exit). The parent
 * exits 0. */
static void body_fork_child_damages_inherited(void)
{
    unsigned char *p = pm_mem_malloc(24), *f = pm_mem_malloc(40);
    pm_mem_free(f);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        void *q = pm_mem_malloc(10); /* the heap's pages written here too */
        pm_mem_free(q);
        p[24] = 0;
        f[3] = 'x';
        exit(0);
    }
    print_child_end(c);
    pm_mem_free(p);
    exit(0);
}

/* The parent writes into a freed pool block (past the 64 bytes a malloc
 * checks), forks, and takes the block again (over the write). The child,
 * which wrote nothing, finds the write at exit and cannot tell whose it
 * is: the parent's copy has changed. It used to say it was its own,
 * "written here, after the fork"; now that it may be the parent's. It is
 * still reported and counted: no other process sees it. */
static void body_fork_parent_takes_block_again(void)
{
    unsigned char *p = pm_mem_malloc(100);
    pm_mem_free(p);
    p[80] = 'w';
    int go[2];
    if (pipe(go) != 0)
        _exit(3);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char b;
        if (read(go[0], &b, 1) != 1)
            _exit(4);
        exit(0);
    }
    unsigned char *q = pm_mem_malloc(100);
    say(q == p ? "the same block\n" : "another block\n");
    if (write(go[1], "g", 1) != 1)
        _exit(5);
    print_child_end(c);
    pm_mem_free(q);
    exit(0);
}

static void test_fork_child_parent_took_block_again(void)
{
    static pm_death_result r;
    const char *modes[] = {"pymalloc_debug", "debug"};
    for (int m = 0; m < 2; m++) {
        env_case c = {modes[m], "report", NULL, body_fork_parent_takes_block_again};
        run_case(&c, &r);
        PM_CHECK(r.exited && r.exit_status == 0); /* the parent: nothing seen */
        PM_CHECK_STR(r.output, "the same block\n");
        PM_CHECK_STR(r.output, "pymalloc: exit: use after free: the freed 100-byte block "
                               "(serial 1)");
        /* (Or "could not be read", where process_vm_readv is not allowed.) */
        if (strstr(r.output, "could not be read") == NULL)
            PM_CHECK_STR(r.output, "and the\n    parent has freed it or taken it again since, "
                                   "over the damage: the damage\n    may be the parent's");
        PM_CHECK(strstr(r.output, "written here, after the fork") == NULL);
        /* (Still counted: the only process that can see the write says
         * what it saw, and ends with report mode's status.) */
        PM_CHECK_STR(r.output, "child status 1\n");
        if (pm_t_cur_failed)
            fprintf(stderr, "mode %s: %s\n", modes[m], r.output);
    }
}

/* The same with a parent that has many blocks, and a child that writes
 * nothing else near the two it damages (a pool block of 24 bytes, and a
 * C library block of 600, in the middle of 4,000 of each): its check at
 * exit, which leaves out the pages it still shares with its parent, finds
 * both on the pages those writes gave it. The parent's blocks it does not
 * damage are all the parent's: none reported. The parent exits 0. */
static void body_fork_child_damages_far(void)
{
    enum { N = 4000 };
    static unsigned char *small[N], *big[N];
    for (int i = 0; i < N; i++) {
        small[i] = pm_mem_malloc(24);
        big[i] = pm_mem_malloc(600);
        if (small[i] == NULL || big[i] == NULL)
            _exit(3);
    }
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        small[N / 2][24] = 0;
        big[N / 2][600] = 0;
        exit(0);
    }
    print_child_end(c);
    exit(0);
}

/* A block reported (through a handler), repaired and freed; a new block
 * at the same address, damaged and never freed, is reported at exit. */
static void quiet_handler(const pm_error_report *rep, void *ctx)
{
    (void)rep;
    (void)ctx;
}

static void body_same_address_again(void)
{
    pm_set_error_handler(quiet_handler, NULL);
    unsigned char *p = pm_mem_malloc(24);
    p[24] = 0;
    pm_check_block(p);
    p[24] = 0xFD;
    pm_mem_free(p);
    pm_set_error_handler(NULL, NULL);
    unsigned char *q = pm_mem_malloc(24);
    printf("same address: %d\n", q == p);
    q[24] = 0;
    exit(0);
}

/* A stream whose write allocates, with output buffered in it, and a thread
 * blocked reading stdin (holding its lock): the check at exit reports and
 * ends the process, without waiting for either. */
static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
    (void)c;
    void *copy = pm_mem_malloc(n + 1000); /* through the pools in pymalloc_debug */
    if (copy != NULL)
        memcpy(copy, buf, n);
    pm_mem_free(copy);
    return (ssize_t)n;
}

static void *read_stdin(void *arg)
{
    (void)arg;
    char line[64];
    if (fgets(line, sizeof line, stdin) == NULL)
        return NULL;
    return NULL;
}

static void body_exit_no_wait(void)
{
    int fds[2];
    if (pipe(fds) != 0 || dup2(fds[0], 0) < 0)
        _exit(3);
    pthread_t th;
    pthread_create(&th, NULL, read_stdin, NULL);
    cookie_io_functions_t io = {NULL, cookie_write, NULL, NULL};
    FILE *f = fopencookie(NULL, "w", io);
    if (f == NULL)
        _exit(4);
    setvbuf(f, NULL, _IOFBF, 4096);
    fprintf(f, "buffered\n");
    usleep(20000); /* the reader is in fgets, stdin locked */
    unsigned char *p = pm_mem_malloc(40);
    p[40] = 0;
    printf("exiting\n");
    exit(0);
}

/* A thread blocked for good in a read of stdin holds stdin's lock; output
 * pending in a file stream must still reach the file. At exit, report
 * mode's summary and the check at exit's reports must not wait for the
 * reader (fflush(NULL) did, for ever: the alarm ends the child then), and
 * must write the file's output, which their _exit or abort() would lose. */
static char pending_path[64];
static unsigned char *kept_damaged;

/* A 10-byte block written one byte past its end, then freed (reported by
 * the free) or kept (live: reported by the check at exit), then exit(0). */
static void overflow_then_exit(int live)
{
    unsigned char *p = pm_mem_malloc(10);
    p[10] = 0;
    if (live)
        kept_damaged = p;
    else
        pm_mem_free(p);
    exit(0);
}
static void body_stdin_reader(int damage_live)
{
    int fds[2];
    if (pipe(fds) != 0 || dup2(fds[0], 0) < 0) /* fds[1] stays open: no EOF */
        _exit(3);
    alarm(20);
    FILE *f = fopen(pending_path, "w");
    if (f == NULL)
        _exit(4);
    fprintf(f, "pending in a file stream\n");
    pthread_t t;
    if (pthread_create(&t, NULL, read_stdin, NULL) != 0)
        _exit(5);
    usleep(50000); /* the reader is in fgets, stdin locked */
    overflow_then_exit(damage_live);
}

static void body_stdin_reader_free(void) { body_stdin_reader(0); }
static void body_stdin_reader_exit(void) { body_stdin_reader(1); }

static void test_exit_not_held_by_stdin_reader(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug"};
    snprintf(pending_path, sizeof pending_path, "/tmp/pm_pending_%d", (int)getpid());
    for (int m = 0; m < 2; m++) {
        for (int live = 0; live < 2; live++) {
            const char *on_error[] = {"report", NULL};
            for (int k = 0; k < 2; k++) {
                if (!live && k == 1)
                    continue; /* the free's report aborts before exit */
                env_case c = {modes[m], on_error[k], NULL,
                              live ? body_stdin_reader_exit : body_stdin_reader_free};
                unlink(pending_path);
                run_case(&c, &r);
                if (k == 0) {
                    PM_CHECK(r.exited);
                    PM_CHECK_EQ(r.exit_status, 1);
                    PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error "
                                           "(buffer overflow: 1); exit status 1\n");
                } else {
                    PM_CHECK(!r.exited && r.signal == SIGABRT);
                    PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written "
                                           "past the end of a 10-byte block");
                }
                char buf[64] = {0};
                int fd = open(pending_path, O_RDONLY);
                PM_CHECK(fd >= 0 && read(fd, buf, sizeof buf - 1) > 0);
                PM_CHECK(strcmp(buf, "pending in a file stream\n") == 0);
                if (fd >= 0)
                    close(fd);
                if (pm_t_cur_failed)
                    fprintf(stderr, "mode %s, %s, on_error %s: %s\n", modes[m],
                            live ? "at exit" : "at free", on_error[k] ? on_error[k] : "abort",
                            r.output);
            }
        }
    }
    unlink(pending_path);
}

/* A thread with a cancellation request pending (pthread_cancel) frees a
 * damaged block: the report is written whole and its lock released (the
 * report's write(2) is a cancellation point: the thread unwound out of the
 * free with the lock taken, the report lost, and the next one waited for
 * ever); the request is acted on at the thread's next cancellation point. */
static void *cancelled_freer(void *arg)
{
    (void)arg;
    pthread_cancel(pthread_self());
    unsigned char *p = pm_mem_malloc(20);
    p[20] = 0;
    pm_mem_free(p);
    pthread_testcancel();
    return NULL;
}

static void body_cancelled_reporter(void)
{
    alarm(20);
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, cancelled_freer, NULL) != 0 || pthread_join(t, &ret) != 0)
        _exit(3);
    printf(ret == PTHREAD_CANCELED ? "cancelled\n" : "not cancelled\n");
    unsigned char *q = pm_mem_malloc(30);
    q[-1] = 0;
    pm_mem_free(q);
    exit(0);
}

static void test_report_of_a_cancelled_thread(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug"};
    for (int m = 0; m < 2; m++) {
        run_report_case(modes[m], body_cancelled_reporter, &r);
        PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: buffer overflow: 1 byte written past the "
                               "end of a 20-byte block");
        PM_CHECK_STR(r.output, "cancelled\n");
        PM_CHECK(strstr(r.output, "not cancelled") == NULL);
        PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: buffer underflow: 1 byte written before "
                               "the start of a 30-byte block");
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 2 heap errors (buffer "
                               "overflow: 1, buffer underflow: 1); exit status 1\n");
        env_case a = {modes[m], NULL, NULL, body_cancelled_reporter};
        run_case(&a, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, "pymalloc: pm_mem_free: buffer overflow: 1 byte written past the "
                               "end of a 20-byte block");
        if (pm_t_cur_failed)
            fprintf(stderr, "mode %s: %s\n", modes[m], r.output);
    }
}

/* stdout a pipe whose reader has gone, with output pending: flushing it
 * at exit raises SIGPIPE, which ended the process before the check at
 * exit's report (or report mode's summary) was written. */
static void body_stdout_reader_gone(int live)
{
    int fds[2];
    if (pipe(fds) != 0 || dup2(fds[1], 1) < 0)
        _exit(3);
    close(fds[0]);
    printf("to nobody\n");
    overflow_then_exit(live);
}

static void body_stdout_gone_free(void) { body_stdout_reader_gone(0); }
static void body_stdout_gone_exit(void) { body_stdout_reader_gone(1); }

static void test_exit_reports_with_stdout_reader_gone(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug"};
    for (int m = 0; m < 2; m++) {
        run_report_case(modes[m], body_stdout_gone_free, &r);
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error (buffer "
                               "overflow: 1); exit status 1\n");
        env_case x = {modes[m], NULL, NULL, body_stdout_gone_exit};
        run_case(&x, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end of "
                               "a 10-byte block");
        if (pm_t_cur_failed)
            fprintf(stderr, "mode %s: %s\n", modes[m], r.output);
    }
}

/* Many damaged registry-or-pool blocks in a row, each written 40 bytes
 * past its end into the next one's header: each is one overflow, none of
 * the victims an underflow of its own. */
static void body_many_in_a_row(void)
{
    enum { N = 160 };
    static unsigned char *q[N];
    for (int i = 0; i < N; i++)
        q[i] = pm_mem_malloc(24);
    for (int i = 0; i + 1 < N; i++)
        if (q[i + 1] != q[i] + 64) {
            printf("not in a row\n");
            exit(0);
        }
    for (int i = 0; i < N; i += 2)
        memset(q[i] + 24, 'O', 40);
    exit(0);
}

/* Hundreds of blocks reported and leaked, then one damaged and never
 * freed: the reported ones take no room from it at exit. */
static void body_many_reported_then_one(void)
{
    int err = dup(2), null = open("/dev/null", O_WRONLY);
    if (err < 0 || null < 0 || dup2(null, 2) < 0) /* 600 reports: not into the pipe */
        _exit(3);
    for (int i = 0; i < 600; i++) {
        unsigned char *p = pm_mem_malloc(24);
        p[24] = 0;
        pm_mem_free(p);
    }
    if (dup2(err, 2) < 0)
        _exit(3);
    unsigned char *q = pm_mem_malloc(40);
    q[40] = 0;
    exit(0);
}

/* Damage found at exit in blocks reported before (PYMALLOC_ON_ERROR=report:
 * each reported and kept live): what is new is reported, what was told is
 * not. a: its overflow reported by pm_check_block, then written before its
 * start (an underflow, new). b: its overflow reported, mended (a check
 * finds it whole), then written past its end again. c: its overflow
 * reported, nothing since (not again). d: its overflow reported by its
 * free, which leaked it, then written before its start. Before, the check
 * at exit left out every block reported once, whatever was written since. */
static unsigned char *since_kept[4];
static void body_damage_since_report(void)
{
    unsigned char *a = pm_mem_malloc(24), *b = pm_mem_malloc(32), *c = pm_mem_malloc(16);
    unsigned char *d = pm_mem_malloc(40);
    since_kept[0] = a, since_kept[1] = b, since_kept[2] = c, since_kept[3] = d;
    a[24] = 0;
    (void)pm_check_block(a);
    a[-1] = 0;
    b[32] = 0;
    (void)pm_check_block(b);
    b[32] = 0xFD;
    if (pm_check_block(b) != 0)
        _exit(7);
    b[33] = 0;
    c[16] = 0;
    (void)pm_check_block(c);
    d[40] = 0;
    pm_mem_free(d);
    d[-1] = 0;
    say("done\n");
    exit(0);
}

static void test_exit_reports_damage_since_report(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug", "debug"};
    for (int m = 0; m < 3; m++) {
        run_report_case(modes[m], body_damage_since_report, &r);
        PM_CHECK_STR(r.output, "done\n");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer underflow: 1 byte written before the start "
                               "of a 24-byte block");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: ");
        PM_CHECK_STR(r.output, "past the end of a 32-byte block");
        PM_CHECK(strstr(r.output, "exit: buffer overflow: 1 byte written past the end of a "
                                  "16-byte block") == NULL);
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer underflow: 1 byte written before the start "
                               "of a 40-byte block");
        PM_CHECK_STR(r.output, "The program freed it before: that free reported it");
        PM_CHECK_STR(r.output, "pymalloc: exit: 2 damaged blocks, never freed, and 1 freed by "
                               "the program, leaked by that free's report, damaged again, among "
                               "the 4 live blocks checked; 1 damaged block reported before, not "
                               "again\n");
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 7 heap errors (buffer "
                               "overflow: 5, buffer underflow: 2); exit status 1\n");
        if (pm_t_cur_failed)
            fprintf(stderr, "mode %s: %s\n", modes[m], r.output);
    }
}

/* More damage since a report, each in a process of its own (found by a
 * review): 0, a block's overflow reported, mended, then written on into
 * the next block's header: one report at exit (it was two in
 * malloc_debug: the block met on its own and through the next one); 1, a
 * block's underflow reported, then the same overflow: the overflow, once,
 * not the next block's underflow; 2, a mended block's serial field's top
 * byte written: reported; 3, a damaged block freed through another API
 * (an API mismatch, which leaks it), then written before its start: the
 * underflow reported at exit. */
static int since_case;
static void body_since_report_more(void)
{
    unsigned char *a = pm_mem_malloc(24), *b = pm_mem_malloc(24);
    since_kept[0] = a, since_kept[1] = b;
    size_t gap = b > a ? (size_t)(b - a) : 0;
    /* (ASan's guards around the C library's blocks catch the write into
     * the next one first) */
    if (since_case <= 1 && (gap < 40 || gap > 128 || PM_T_ASAN)) {
        say("not neighbours\n");
        exit(0);
    }
    switch (since_case) {
    case 0:
        a[24] = 0;
        (void)pm_check_block(a);
        a[24] = 0xFD;
        if (pm_check_block(a) != 0)
            _exit(7);
        memset(a + 24, 0x41, gap - 24);
        break;
    case 1:
        a[-1] = 0;
        (void)pm_check_block(a);
        memset(a + 24, 0x41, gap - 24);
        break;
    case 2:
        a[24] = 0;
        (void)pm_check_block(a);
        a[24] = 0xFD;
        if (pm_check_block(a) != 0)
            _exit(7);
        a[24 + 8] ^= 0x5A;
        break;
    default:
        a[24] = 0;
        pm_raw_free(a);
        a[-1] = 0;
        break;
    }
    say("done\n");
    exit(0);
}

static void test_exit_reports_damage_since_report_more(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug", "debug"};
#define OVER_24 "pymalloc: exit: buffer overflow: at least 16 bytes written past the end of a 24-byte block (serial 1)"
    static const char *const exit_line[4] = {
        OVER_24,
        OVER_24,
        "pymalloc: exit: header corrupt: the serial field of a 24-byte block (serial 1) was overwritten",
        "pymalloc: exit: buffer underflow: 1 byte written before the start of a 24-byte block (serial 1)",
    };
#undef OVER_24
    static const char *const summary[4] = {
        "2 heap errors (buffer overflow: 2)",
        "2 heap errors (buffer overflow: 1, buffer underflow: 1)",
        "2 heap errors (buffer overflow: 1, header corrupt: 1)",
        "2 heap errors (buffer underflow: 1, API mismatch: 1)"};
    for (int m = 0; m < 3; m++) {
        for (since_case = 0; since_case < 4; since_case++) {
            env_case c = {modes[m], "report", NULL, body_since_report_more};
            run_case(&c, &r);
            if (strstr(r.output, "not neighbours\n") != NULL)
                continue;
            PM_CHECK(r.exited && r.exit_status == 1);
            PM_CHECK_STR(r.output, "done\n");
            const char *at = strstr(r.output, exit_line[since_case]);
            PM_CHECK(at != NULL && strstr(at + 1, "pymalloc: exit: buffer") == NULL &&
                     strstr(at + 1, "pymalloc: exit: header") == NULL);
            PM_CHECK(strstr(r.output, "exit: buffer underflow: at least") == NULL);
            PM_CHECK_STR(r.output, summary[since_case]);
            if (since_case == 3)
                PM_CHECK_STR(r.output, "The program freed it before: that free reported it");
            if (pm_t_cur_failed) {
                fprintf(stderr, "mode %s, case %d: %s\n", modes[m], since_case, r.output);
                return;
            }
        }
    }
}

/* A block reported by pm_check_block, mended, freed, then written after
 * its free: the malloc that takes it again reports the use after free
 * (a1725de silenced it: the block's address and serial had been reported,
 * by the check; only a report of its write after free, at exit, should
 * silence that malloc's). */
static void body_mended_freed_then_written(void)
{
    unsigned char *p = pm_mem_malloc(64);
    p[64] = 'x';
    (void)pm_check_block(p);
    p[64] = 0xFD;
    if (pm_check_block(p) != 0)
        _exit(7);
    pm_mem_free(p);
    p[10] = 1;
    void *q = pm_mem_malloc(64);
    say(q != NULL ? "done\n" : "no block\n");
    exit(0);
}

static void test_write_after_free_of_a_mended_block(void)
{
    static pm_death_result r;
    const char *modes[] = {"pymalloc_debug", "debug"};
    for (int m = 0; m < 2; m++) {
        run_report_case(modes[m], body_mended_freed_then_written, &r);
        PM_CHECK_STR(r.output, "done\n");
        PM_CHECK_STR(r.output, "pymalloc: pm_mem_malloc: use after free: the freed 64-byte block "
                               "(serial 1)");
        PM_CHECK_STR(r.output, "2 heap errors (buffer overflow: 1, use after free: 1)");
        if (pm_t_cur_failed)
            fprintf(stderr, "mode %s: %s\n", modes[m], r.output);
    }
}

/* A write past the end of a C library block A through its trailer into
 * the size word of the chunk after it (B's), PYMALLOC_ON_ERROR=report: the
 * overflow is reported and A and B are leaked; the program goes on, and
 * the free of the intact block below A is glibc's as usual. Before, B's
 * size word kept the damage, its PREV_INUSE bit clear: glibc's free of
 * that block took A for free, merged with it and aborted ("corrupted size
 * vs. prev_size", status 134, no summary). */
static void body_libc_overflow_then_free_below(void)
{
    unsigned char *lo = pm_raw_malloc(2000); /* past the tcache: glibc merges */
    unsigned char *a = pm_raw_malloc(1500), *b = pm_raw_malloc(1500);
    void *guard = pm_raw_malloc(100);
    if (atomic_load(&pm_i_libc_chunk_page) == 0) {
        say("unchecked\n");
        exit(0);
    }
    if (a - lo != 2048 || b - a != 1552) {
        say("not adjacent\n");
        exit(0);
    }
    memset(a + 1500, 'x', (size_t)(b - (a + 1500)) - 16); /* .. B's chunk size word */
    pm_raw_free(b); /* reported: A's overflow; both leaked */
    pm_raw_free(a);
    pm_raw_free(lo);
    pm_trim(); /* (the quarantine hands lo to glibc) */
    pm_raw_free(guard);
    say("end\n");
    exit(0);
}

/* The same with the block below A freed first, before any report: glibc's
 * free of it reads A's state in B's size word. The hooks put the bit back
 * before handing the block to glibc (libc_next_guard). */
static void body_libc_overflow_free_below_first(void)
{
    unsigned char *lo = pm_raw_malloc(2000);
    unsigned char *a = pm_raw_malloc(1500), *b = pm_raw_malloc(1500);
    void *guard = pm_raw_malloc(100);
    if (atomic_load(&pm_i_libc_chunk_page) == 0) {
        say("unchecked\n");
        exit(0);
    }
    if (a - lo != 2048 || b - a != 1552) {
        say("not adjacent\n");
        exit(0);
    }
    memset(a + 1500, 'x', (size_t)(b - (a + 1500)) - 16);
    pm_raw_free(lo); /* no report yet: A and B are live */
    pm_trim();
    pm_raw_free(b); /* reported: A's overflow */
    pm_raw_free(a);
    pm_raw_free(guard);
    say("end\n");
    exit(0);
}

static void test_libc_chunk_damage_then_free_below(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "debug", "pymalloc_debug"};
    int ran = 0;
    void (*bodies[])(void) = {body_libc_overflow_then_free_below,
                              body_libc_overflow_free_below_first};
    for (int k = 0; k < 6; k++) {
        int m = k % 3;
        env_case c = {modes[m], "report", NULL, bodies[k / 3]};
        run_case(&c, &r);
        if (strstr(r.output, "unchecked\n") != NULL || strstr(r.output, "not adjacent\n") != NULL)
            continue;
        ran++;
        PM_CHECK(r.exited && r.exit_status == 1);
        PM_CHECK_STR(r.output, "end\n");
        PM_CHECK_STR(r.output, "pymalloc: pm_raw_free: buffer overflow: at least 16 bytes written "
                               "past the end of a 1500-byte block (serial ");
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error (buffer "
                               "overflow: 1); exit status 1\n");
        if (pm_t_cur_failed) {
            fprintf(stderr, "case %d, mode %s: %s\n", k / 3, modes[m], r.output);
            return;
        }
    }
    if (ran == 0)
        PM_SKIP("glibc's chunk headers are not checked here, or the blocks were not neighbours");
}

static void test_exit_check_cases(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug"};
    for (int m = 0; m < 2; m++) {
        env_case h = {modes[m], NULL, NULL, body_never_freed_with_handler};
        run_case(&h, &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 5);
        PM_CHECK_STR(r.output, "exiting, 0 handler calls\n");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer underflow: 1 byte written before the start "
                               "of a 24-byte block");

        env_case f = {modes[m], NULL, NULL, body_fork_child_exit};
        run_case(&f, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT); /* the parent's own exit */
        PM_CHECK_STR(r.output, "child status 0\n");
        const char *rep = "pymalloc: exit: buffer overflow: 1 byte written past the end of a "
                          "24-byte block (serial 1)";
        const char *at = strstr(r.output, rep);
        PM_CHECK(at != NULL && strstr(at + 1, rep) == NULL); /* once: the parent's */

        env_case fi = {modes[m], NULL, NULL, body_fork_child_damages_inherited};
        run_case(&fi, &r);
        PM_CHECK(r.exited && r.exit_status == 0); /* the parent: its copies intact */
        PM_CHECK_STR(r.output, "child signal 6\n");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end of a "
                               "24-byte block (serial 1)");
        PM_CHECK_STR(r.output, "pymalloc: exit: use after free: the freed 40-byte block (serial 2) "
                               "at ");
        /* (Or "could not be read", where process_vm_readv is not allowed.) */
        PM_CHECK_STR(r.output, "The block was made before this process was forked (its parent has "
                               "it too)");
        if (pm_t_cur_failed)
            fprintf(stderr, "%s\n", r.output);

        env_case far = {modes[m], NULL, NULL, body_fork_child_damages_far};
        run_case(&far, &r);
        PM_CHECK(r.exited && r.exit_status == 0);
        PM_CHECK_STR(r.output, "child signal 6\n");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end of a "
                               "24-byte block (serial ");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end of a "
                               "600-byte block (serial ");
        PM_CHECK_STR(r.output, "pymalloc: exit: 2 damaged blocks, never freed, among the ");
        if (pm_t_cur_failed)
            fprintf(stderr, "%s\n", r.output);

        run_report_case(modes[m], body_same_address_again, &r);
        if (strstr(r.output, "same address: 1") != NULL)
            PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end "
                                   "of a 24-byte block (serial 2)");
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 2 heap errors (buffer "
                               "overflow: 2); exit status 1\n");

        env_case w = {modes[m], NULL, NULL, body_exit_no_wait};
        run_case(&w, &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, "exiting\n");
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end of a "
                               "40-byte block");

        env_case mr = {modes[m], "report", NULL, body_many_reported_then_one};
        run_case(&mr, &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 1);
        PM_CHECK_STR(r.output, "pymalloc: exit: buffer overflow: 1 byte written past the end of a "
                               "40-byte block");
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 601 heap errors (buffer "
                               "overflow: 601); exit status 1\n");

        env_case n = {modes[m], "report", NULL, body_many_in_a_row};
        run_case(&n, &r);
        if (strstr(r.output, "not in a row") != NULL)
            continue;
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 1);
        PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERROR=report: 80 heap errors (buffer "
                               "overflow: 80); exit status 1\n");
    }
}

static void body_clean(void)
{
    void *p = pm_mem_malloc(10);
    pm_mem_free(p);
    exit(0);
}

static void test_on_error_report_clean_run_exits_0(void)
{
    static pm_death_result r;
    env_case c = {"malloc_debug", "report", NULL, body_clean};
    run_case(&c, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
    PM_CHECK(strstr(r.output, "PYMALLOC_ON_ERROR") == NULL);
}

/* A child forked after the parent's errors counts its own: a clean child
 * exits 0 without the parent's summary, and the parent still sums up its
 * own errors. */
static void body_fork_after_error(void)
{
    unsigned char *p = pm_mem_malloc(10);
    p[10] = 0;
    pm_mem_free(p);
    fork_clean_child();
    exit(0);
}

static void test_on_error_report_fork(void)
{
    static pm_death_result r;
    const char *modes[] = {"malloc_debug", "pymalloc_debug"};
    for (int m = 0; m < 2; m++) {
        run_report_case(modes[m], body_fork_after_error, &r);
        PM_CHECK_STR(r.output, "child status 0\n");
        const char *sum = "pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error (buffer overflow: "
                          "1); exit status 1\n";
        const char *at = strstr(r.output, sum);
        PM_CHECK(at != NULL);
        PM_CHECK(at == NULL || strstr(at + 1, sum) == NULL); /* once: the parent's */
    }
}

static void test_invalid_values_are_fatal(void)
{
    static pm_death_result r;
    const char *bad_on_error[] = {"Abort", "reports", "1", " report"};
    for (int i = 0; i < 4; i++) {
        env_case c = {"malloc", bad_on_error[i], NULL, body_clean};
        run_case(&c, &r);
        PM_CHECK(r.exited && r.exit_status == 1);
        char want[128];
        snprintf(want, sizeof want,
                 "pymalloc: PYMALLOC_ON_ERROR=%s: unknown value (valid: abort, report)\n",
                 bad_on_error[i]);
        PM_CHECK_STR(r.output, want);
    }
    const char *bad_check[] = {"All", "yes", "1", "first "};
    for (int i = 0; i < 4; i++) {
        env_case c = {"pymalloc_debug", NULL, NULL, body_clean};
        setenv("PYMALLOC_CHECK_FREED", bad_check[i], 1); /* inherited by the child */
        run_case(&c, &r);
        unsetenv("PYMALLOC_CHECK_FREED");
        PM_CHECK(r.exited && r.exit_status == 1);
        char want[128];
        snprintf(want, sizeof want,
                 "pymalloc: PYMALLOC_CHECK_FREED=%s: unknown value (valid: first, all, off)\n",
                 bad_check[i]);
        PM_CHECK_STR(r.output, want);
    }
    const char *bad_quarantine[] = {"lots", "16MB", "-1", "1.5M", "1025G", "2T"};
    for (int i = 0; i < 6; i++) {
        env_case c = {"malloc_debug", NULL, NULL, body_clean};
        setenv("PYMALLOC_QUARANTINE", bad_quarantine[i], 1); /* inherited by the child */
        run_case(&c, &r);
        unsetenv("PYMALLOC_QUARANTINE");
        PM_CHECK(r.exited && r.exit_status == 1);
        char want[240];
        snprintf(want, sizeof want,
                 "pymalloc: PYMALLOC_QUARANTINE=%s: not a size (valid: a size in bytes up to "
#if SIZE_MAX > UINT32_MAX
                 "1T, with an optional K, M, G or T suffix (or k, m, g, t), 0 or off: none)\n",
#else
                 "4294967295 (4G - 1, in a 32-bit build), with an optional K, M or G suffix "
                 "(or k, m, g), 0 or off: none)\n",
#endif
                 bad_quarantine[i]);
        PM_CHECK_STR(r.output, want);
    }
    /* 2^48 and more: serials are matched on their low 48 bits. */
    const char *bad_serial[] = {"0", "-1", "x", "12a", "99999999999999999999",
                                "281474976710656", "281474976710659"};
    for (int i = 0; i < 7; i++) {
        env_case c = {"malloc_debug", NULL, bad_serial[i], body_clean};
        run_case(&c, &r);
        PM_CHECK(r.exited && r.exit_status == 1);
        char want[128];
        snprintf(want, sizeof want, "pymalloc: PYMALLOC_BREAK_SERIAL=%s: not a serial number",
                 bad_serial[i]);
        PM_CHECK_STR(r.output, want);
    }
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_serials_stable);
    PM_RUN(test_break_serial);
    PM_RUN(test_break_serial_before_report);
    PM_RUN(test_on_error_report);
    PM_RUN(test_on_error_report_summary_last);
    PM_RUN(test_exit_check);
    PM_RUN(test_exit_not_held_by_stdin_reader);
    PM_RUN(test_report_of_a_cancelled_thread);
    PM_RUN(test_exit_reports_with_stdout_reader_gone);
    PM_RUN(test_exit_check_abort);
    PM_RUN(test_exit_check_cases);
    PM_RUN(test_exit_reports_damage_since_report);
    PM_RUN(test_exit_reports_damage_since_report_more);
    PM_RUN(test_write_after_free_of_a_mended_block);
    PM_RUN(test_fork_child_parent_took_block_again);
    PM_RUN(test_libc_chunk_damage_then_free_below);
    PM_RUN(test_on_error_report_clean_run_exits_0);
    PM_RUN(test_on_error_report_fork);
    PM_RUN(test_invalid_values_are_fatal);
    return pm_test_done();
}
