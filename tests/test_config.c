/*
 * tests/test_config.c - the PYMALLOC_* variables with odd values, read by a
 * real program (the bundled demo, argv[1], linked with libpymalloc_api):
 * each value either works (the demo exits 0; what it set shows in
 * PYMALLOC_STATS's table or the start-up line) or stops the program at
 * start-up with status 1 and one line naming the variable, the value and
 * what is valid. Empty means the default for every variable; the size
 * suffixes take lower case too (1m, 64k); booleans are the words of
 * PYMALLOC_VERBOSE, in lower case only; numbers too large, negative, with
 * spaces or junk are refused.
 *
 * Runs once (label "config"), not per mode: each case runs the demo in a
 * child whose PYMALLOC_* variables are only the case's (pm_t_pin_env),
 * PYMALLOC_MODE malloc_debug unless the case sets it.
 */
#include "harness.h"

#include <sys/wait.h>

static const char *demo;

/* Run the demo with the "NAME=value" entries of env (NULL-terminated),
 * stderr and stdout captured: its exit status in r. */
struct run_arg {
    const char *const *env;
};

static void run_demo(void *arg)
{
    const struct run_arg *a = arg;
    static const char *const base[] = {"PYMALLOC_MODE=malloc_debug", NULL};
    pm_t_pin_env(base);
    for (int i = 0; a->env[i] != NULL; i++)
        putenv((char *)a->env[i]);
    execl(demo, "pymalloc-demo", (char *)NULL);
    _exit(127);
}

static void run(pm_death_result *r, const char *e1, const char *e2, const char *e3)
{
    const char *env[4] = {e1, e2, e3, NULL};
    struct run_arg a = {env};
    pm_death(run_demo, &a, r);
}

/* The demo ran to its end: exit status 0, and its mode line. */
static int ran(const pm_death_result *r)
{
    return r->exited && r->exit_status == 0 && strstr(r->output, "active mode: ") != NULL;
}

/* "NAME=value" refused: status 1, the output one line, which begins
 * "pymalloc: NAME=value: " and says what is valid. */
static void refused(const char *assignment)
{
    pm_death_result r;
    run(&r, assignment, NULL, NULL);
    char want[256];
    snprintf(want, sizeof want, "pymalloc: %s: ", assignment);
    int ok = r.exited && r.exit_status == 1 && strncmp(r.output, want, strlen(want)) == 0 &&
             strstr(r.output, "valid: ") != NULL && strchr(r.output, '\n') != NULL &&
             strchr(r.output, '\n')[1] == '\0' && strstr(r.output, "active mode: ") == NULL;
    if (!ok)
        fprintf(stderr, "%s: exited %d status %d signal %d:\n%s\n", assignment, r.exited,
                r.exit_status, r.signal, r.output);
    PM_CHECK(ok);
}

/* "NAME=value" accepted: the demo runs to its end. */
static void accepted(const char *assignment)
{
    pm_death_result r;
    run(&r, assignment, NULL, NULL);
    if (!ran(&r))
        fprintf(stderr, "%s: exited %d status %d signal %d:\n%s\n", assignment, r.exited,
                r.exit_status, r.signal, r.output);
    PM_CHECK(ran(&r));
}

static void test_empty_is_the_default(void)
{
    static const char *const vars[] = {
        "PYMALLOC_VERBOSE=",      "PYMALLOC_ON_ERROR=", "PYMALLOC_BREAK_SERIAL=",
        "PYMALLOC_CHECK_FREED=",  "PYMALLOC_QUARANTINE=", "PYMALLOC_QUARANTINE_POOLS=",
        "PYMALLOC_STATS=",        "PYMALLOC_ERRORS_BEFORE_EXEC=", NULL};
    for (int i = 0; vars[i] != NULL; i++)
        accepted(vars[i]);
    pm_death_result r;
    run(&r, "PYMALLOC_MODE=", NULL, NULL);
    PM_CHECK(ran(&r));
    PM_CHECK_STR(r.output, "active mode: pymalloc\n"); /* (the default mode's) */
    /* an empty budget is the default one */
    run(&r, "PYMALLOC_QUARANTINE=", "PYMALLOC_STATS=1", NULL);
    PM_CHECK(ran(&r));
    PM_CHECK_STR(r.output, "# bytes of the quarantine's budget =            1,048,576\n");
}

/* PYMALLOC_QUARANTINE's suffixes in either case, read by the demo's
 * statistics; 0 and off hold nothing (no quarantine lines). */
static void test_quarantine_sizes(void)
{
    static const struct {
        const char *value, *budget;
    } ok[] = {
        {"64k", "65,536"},
        {"64K", "65,536"},
        {"1m", "1,048,576"},
        {"3m", "3,145,728"},
        {"2g", "2,147,483,648"},
#if SIZE_MAX > UINT32_MAX
        {"1t", "1,099,511,627,776"},
        {"1024G", "1,099,511,627,776"},
#else /* a 32-bit build: up to SIZE_MAX */
        {"4294967295", "4,294,967,295"},
        {"4194303k", "4,294,966,272"},
#endif
        {"4096", "4,096"},
        {"007k", "7,168"},
        /* zeros before the digits, any number of them (more than 23 were
         * refused before 2026-12-07) */
        {"000000000000000000000000064k", "65,536"},
        {"0000000000000000000000000000000", NULL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char set[64], want[128];
        snprintf(set, sizeof set, "PYMALLOC_QUARANTINE=%s", ok[i].value);
        pm_death_result r;
        run(&r, set, "PYMALLOC_STATS=1", NULL);
        PM_CHECK(ran(&r));
        if (ok[i].budget == NULL) { /* 0: none */
            PM_CHECK(strstr(r.output, "quarantine") == NULL);
            continue;
        }
        snprintf(want, sizeof want, "# bytes of the quarantine's budget = %20s\n", ok[i].budget);
        PM_CHECK_STR(r.output, want);
    }
    static const char *const none[] = {"PYMALLOC_QUARANTINE=0", "PYMALLOC_QUARANTINE=off",
                                       "PYMALLOC_QUARANTINE=0k"};
    for (int i = 0; i < 3; i++) {
        pm_death_result r;
        run(&r, none[i], "PYMALLOC_STATS=1", NULL);
        PM_CHECK(ran(&r));
        PM_CHECK(strstr(r.output, "quarantine") == NULL);
    }
    static const char *const bad[] = {
        "PYMALLOC_QUARANTINE=-1",    "PYMALLOC_QUARANTINE=-1m", "PYMALLOC_QUARANTINE=1mb",
        "PYMALLOC_QUARANTINE=1MiB",  "PYMALLOC_QUARANTINE=on",  "PYMALLOC_QUARANTINE=1.5m",
        "PYMALLOC_QUARANTINE= 1m",   "PYMALLOC_QUARANTINE=1m ", "PYMALLOC_QUARANTINE=k",
        "PYMALLOC_QUARANTINE=1025g", "PYMALLOC_QUARANTINE=2t",  "PYMALLOC_QUARANTINE=1p",
        "PYMALLOC_QUARANTINE=99999999999999999999",
        "PYMALLOC_QUARANTINE=18446744073709551615", "PYMALLOC_QUARANTINE=OFF",
#if SIZE_MAX <= UINT32_MAX
        "PYMALLOC_QUARANTINE=1t", "PYMALLOC_QUARANTINE=4g", "PYMALLOC_QUARANTINE=4294967296",
#endif
        NULL};
    for (int i = 0; bad[i] != NULL; i++)
        refused(bad[i]);
}

/* The booleans (PYMALLOC_VERBOSE, PYMALLOC_STATS): the words in lower case,
 * 1 and 0; anything else refused. */
static void test_booleans(void)
{
    static const char *const yes[] = {"1", "on", "yes", "true"};
    static const char *const no[] = {"0", "off", "no", "false", ""};
    for (int i = 0; i < 4; i++) {
        char set[64];
        pm_death_result r;
        snprintf(set, sizeof set, "PYMALLOC_VERBOSE=%s", yes[i]);
        run(&r, set, NULL, NULL);
        PM_CHECK(ran(&r));
        PM_CHECK_STR(r.output, "pymalloc 0");
        PM_CHECK_STR(r.output, ": mode malloc_debug (PYMALLOC_MODE=malloc_debug)\n");
        snprintf(set, sizeof set, "PYMALLOC_STATS=%s", yes[i]);
        run(&r, set, NULL, NULL);
        PM_CHECK(ran(&r));
        PM_CHECK_STR(r.output, "# bytes of the quarantine's budget");
    }
    for (int i = 0; i < 5; i++) {
        char set[64];
        pm_death_result r;
        snprintf(set, sizeof set, "PYMALLOC_VERBOSE=%s", no[i]);
        run(&r, set, NULL, NULL);
        PM_CHECK(ran(&r));
        PM_CHECK(strstr(r.output, ": mode malloc_debug") == NULL);
        snprintf(set, sizeof set, "PYMALLOC_STATS=%s", no[i]);
        run(&r, set, NULL, NULL);
        PM_CHECK(ran(&r));
        PM_CHECK(strstr(r.output, "quarantine's budget") == NULL);
    }
    static const char *const bad[] = {"PYMALLOC_VERBOSE=ON",  "PYMALLOC_VERBOSE=2",
                                      "PYMALLOC_VERBOSE=-1",  "PYMALLOC_VERBOSE=y",
                                      "PYMALLOC_STATS=True",  "PYMALLOC_STATS=01",
                                      "PYMALLOC_STATS= 1",    NULL};
    for (int i = 0; bad[i] != NULL; i++)
        refused(bad[i]);
}

/* The variables of a few words: those words only (lower case); on, off, 1
 * and 0 where they are not among them are refused, not guessed. */
static void test_words(void)
{
    static const char *const ok[] = {
        "PYMALLOC_ON_ERROR=abort",        "PYMALLOC_ON_ERROR=report",
        "PYMALLOC_CHECK_FREED=first",     "PYMALLOC_CHECK_FREED=all",
        "PYMALLOC_CHECK_FREED=off",       "PYMALLOC_QUARANTINE_POOLS=on",
        "PYMALLOC_QUARANTINE_POOLS=off",  "PYMALLOC_MODE=debug",
        "PYMALLOC_MODE=malloc",           NULL};
    for (int i = 0; ok[i] != NULL; i++)
        accepted(ok[i]);
    static const char *const bad[] = {
        "PYMALLOC_ON_ERROR=on",          "PYMALLOC_ON_ERROR=1",
        "PYMALLOC_ON_ERROR=REPORT",      "PYMALLOC_CHECK_FREED=on",
        "PYMALLOC_CHECK_FREED=1",        "PYMALLOC_CHECK_FREED=0",
        "PYMALLOC_CHECK_FREED=ALL",      "PYMALLOC_QUARANTINE_POOLS=1",
        "PYMALLOC_QUARANTINE_POOLS=0",   "PYMALLOC_QUARANTINE_POOLS=ON",
        "PYMALLOC_QUARANTINE_POOLS=yes", "PYMALLOC_MODE=DEBUG",
        "PYMALLOC_MODE=off",             NULL};
    for (int i = 0; bad[i] != NULL; i++)
        refused(bad[i]);
}

/* PYMALLOC_BREAK_SERIAL: 1 .. 2^48 - 1 (one the demo never reaches runs
 * it to its end); 0, negative, suffixed, too large or junk refused. */
static void test_break_serial(void)
{
    accepted("PYMALLOC_BREAK_SERIAL=281474976710655");
    static const char *const bad[] = {
        "PYMALLOC_BREAK_SERIAL=0",   "PYMALLOC_BREAK_SERIAL=-1",
        "PYMALLOC_BREAK_SERIAL=1k",  "PYMALLOC_BREAK_SERIAL=on",
        "PYMALLOC_BREAK_SERIAL=281474976710656",
        "PYMALLOC_BREAK_SERIAL=99999999999999999999", "PYMALLOC_BREAK_SERIAL=0x10", NULL};
    for (int i = 0; bad[i] != NULL; i++)
        refused(bad[i]);
}

/* A variable pymalloc does not read is named once and ignored. */
static void test_unknown_variable(void)
{
    pm_death_result r;
    run(&r, "PYMALLOC_CHECK_ALL=on", NULL, NULL);
    PM_CHECK(ran(&r));
    PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_CHECK_ALL: not a variable pymalloc reads: ignored");
}

int main(int argc, char **argv)
{
    pm_t_pin_env(NULL);
    demo = argc > 1 ? argv[1] : NULL;
    if (demo == NULL || access(demo, X_OK) != 0) {
        fprintf(stderr, "usage: test_config path/to/pymalloc-demo\n");
        return 77;
    }
    PM_RUN(test_empty_is_the_default);
    PM_RUN(test_quarantine_sizes);
    PM_RUN(test_booleans);
    PM_RUN(test_words);
    PM_RUN(test_break_serial);
    PM_RUN(test_unknown_variable);
    return pm_test_done();
}
