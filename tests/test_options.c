/*
 * tests/test_options.c - PYMALLOC_* parsing and the start-up errors.
 *
 * Runs once, not per mode: each case sets the environment itself in a forked
 * child, before pymalloc is set up there. argv[1], if given, is a program
 * linked with pymalloc (the bundled example) to run with a bad mode.
 */
#include "harness.h"
#include "../src/pm_internal.h"

#include <stdint.h>

static void test_parse_bool(void)
{
    const char *t[] = {"1", "yes", "true", "on"};
    const char *f[] = {"", "0", "no", "false", "off"};
    const char *bad[] = {"2", "YES", "True", " 1", "1 ", "maybe", "-1", "01"};
    for (size_t i = 0; i < 4; i++)
        PM_CHECK_EQ(pm_i_parse_bool(t[i]), 1);
    for (size_t i = 0; i < 5; i++)
        PM_CHECK_EQ(pm_i_parse_bool(f[i]), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        PM_CHECK_EQ(pm_i_parse_bool(bad[i]), -1);
    PM_CHECK_EQ(pm_i_parse_bool(NULL), 0);
}

static void test_parse_u64(void)
{
    uint64_t v = 99;
    PM_CHECK(pm_i_parse_u64("0", &v) == 0 && v == 0);
    PM_CHECK(pm_i_parse_u64("17", &v) == 0 && v == 17);
    PM_CHECK(pm_i_parse_u64("18446744073709551615", &v) == 0 && v == UINT64_MAX);
    v = 5;
    PM_CHECK_EQ(pm_i_parse_u64("18446744073709551616", &v), -1);
    PM_CHECK_EQ(pm_i_parse_u64("", &v), -1);
    PM_CHECK_EQ(pm_i_parse_u64(NULL, &v), -1);
    PM_CHECK_EQ(pm_i_parse_u64("-1", &v), -1);
    PM_CHECK_EQ(pm_i_parse_u64("1x", &v), -1);
    PM_CHECK_EQ(pm_i_parse_u64(" 1", &v), -1);
    PM_CHECK_EQ(v, 5); /* untouched on error */
}

static void test_parse_size(void)
{
    uint64_t v = 99;
    PM_CHECK(pm_i_parse_size("0", &v) == 0 && v == 0);
    PM_CHECK(pm_i_parse_size("4096", &v) == 0 && v == 4096);
    PM_CHECK(pm_i_parse_size("64K", &v) == 0 && v == 65536);
    PM_CHECK(pm_i_parse_size("64k", &v) == 0 && v == 65536);
    PM_CHECK(pm_i_parse_size("16M", &v) == 0 && v == UINT64_C(16) << 20);
    PM_CHECK(pm_i_parse_size("3g", &v) == 0 && v == UINT64_C(3) << 30);
    PM_CHECK(pm_i_parse_size("1T", &v) == 0 && v == UINT64_C(1) << 40);
    PM_CHECK(pm_i_parse_size("16777215T", &v) == 0 && v == UINT64_C(16777215) << 40);
    v = 5;
    PM_CHECK_EQ(pm_i_parse_size("16777216T", &v), -1); /* 2^64 */
    PM_CHECK_EQ(pm_i_parse_size("18446744073709551616", &v), -1);
    PM_CHECK_EQ(pm_i_parse_size("", &v), -1);
    PM_CHECK_EQ(pm_i_parse_size(NULL, &v), -1);
    PM_CHECK_EQ(pm_i_parse_size("K", &v), -1);
    PM_CHECK_EQ(pm_i_parse_size("1KB", &v), -1);
    PM_CHECK_EQ(pm_i_parse_size("1.5M", &v), -1);
    PM_CHECK_EQ(pm_i_parse_size("-1", &v), -1);
    PM_CHECK_EQ(pm_i_parse_size("1 M", &v), -1);
    PM_CHECK_EQ(pm_i_parse_size("12345678901234567890123M", &v), -1); /* too long */
    PM_CHECK_EQ(v, 5); /* untouched on error */
}

static void test_getenv_exact(void)
{
    setenv("PYMALLOC_TEST_VARX", "long", 1);
    unsetenv("PYMALLOC_TEST_VAR");
    PM_CHECK(pm_i_getenv("PYMALLOC_TEST_VAR") == NULL);
    setenv("PYMALLOC_TEST_VAR", "a=b", 1);
    PM_CHECK(pm_i_getenv("PYMALLOC_TEST_VAR") && strcmp(pm_i_getenv("PYMALLOC_TEST_VAR"), "a=b") == 0);
    setenv("PYMALLOC_TEST_VAR", "", 1);
    PM_CHECK(pm_i_getenv("PYMALLOC_TEST_VAR") && *pm_i_getenv("PYMALLOC_TEST_VAR") == '\0');
    PM_CHECK(pm_i_getenv("PYMALLOC_TEST") == NULL);
    PM_CHECK(pm_i_getenv(NULL) == NULL);
    /* (not left for the children of the cases below: pymalloc names
     * PYMALLOC_* variables it does not know) */
    unsetenv("PYMALLOC_TEST_VARX");
    unsetenv("PYMALLOC_TEST_VAR");
}

/* Children that set the environment, then allocate. */
static const char *child_env_name, *child_env_value;

static void child_alloc_with_env(void *arg)
{
    (void)arg;
    setenv(child_env_name, child_env_value, 1);
    void *p = pm_mem_malloc(16);
    printf("allocated in mode %s\n", pm_mode_name());
    pm_mem_free(p);
}

static void run_with_env(const char *name, const char *value, pm_death_result *r)
{
    child_env_name = name;
    child_env_value = value;
    pm_death(child_alloc_with_env, NULL, r);
}

static void test_unknown_mode_exits_1(void)
{
    const char *bad[] = {"nonsense", "MALLOC", " malloc", "malloc ", "Default", "debug!"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pm_death_result r;
        run_with_env("PYMALLOC_MODE", bad[i], &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 1);
        char want[128];
        snprintf(want, sizeof want, "pymalloc: PYMALLOC_MODE=%s: unknown mode (valid: default, malloc", bad[i]);
        PM_CHECK_STR(r.output, want);
        PM_CHECK(strstr(r.output, "allocated in mode") == NULL);
        /* Exactly one line. */
        PM_CHECK(strchr(r.output, '\n') == r.output + strlen(r.output) - 1);
    }
}

/* A bad value is shown escaped and cut short: the message stays one line,
 * written at once, with no control byte of the value reaching stderr. */
static void test_bad_value_shown_on_one_line(void)
{
    static char long_value[5001];
    memset(long_value, 'x', sizeof long_value - 1);
    const struct {
        const char *name, *value, *want;
    } cases[] = {
        {"PYMALLOC_MODE", "debug\nfoo", "pymalloc: PYMALLOC_MODE=debug\\nfoo: unknown mode (valid: "},
        {"PYMALLOC_MODE", "\033[31mred\tx\\", "pymalloc: PYMALLOC_MODE=\\x1b[31mred\\tx\\\\: unknown"},
        {"PYMALLOC_VERBOSE", "1\r", "pymalloc: PYMALLOC_VERBOSE=1\\x0d: not a boolean"},
        {"PYMALLOC_MODE", long_value,
         "pymalloc: PYMALLOC_MODE=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...: "
         "unknown mode (valid: default, malloc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pm_death_result r;
        run_with_env(cases[i].name, cases[i].value, &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 1);
        PM_CHECK_STR(r.output, cases[i].want);
        PM_CHECK(strchr(r.output, '\n') == r.output + strlen(r.output) - 1);
        for (const char *c = r.output; *c != '\0'; c++)
            PM_CHECK(*c == '\n' || ((unsigned char)*c >= 0x20 && *c != 0x7f));
    }
}

static void test_every_valid_mode_accepted(void)
{
    const char *const *names = pm_mode_names();
    for (int i = 0; names[i] != NULL; i++) {
        pm_death_result r;
        run_with_env("PYMALLOC_MODE", names[i], &r);
        PM_CHECK(r.exited && r.exit_status == 0);
        char want[128];
        snprintf(want, sizeof want, "allocated in mode %s\n",
                 pm_i_mode_find(names[i], strlen(names[i]))->name);
        PM_CHECK_STR(r.output, want);
    }
}

static void test_empty_mode_is_default(void)
{
    pm_death_result r;
    run_with_env("PYMALLOC_MODE", "", &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    char want[128];
    snprintf(want, sizeof want, "allocated in mode %s\n", pm_i_mode_find("default", 7)->name);
    PM_CHECK_STR(r.output, want);
}

static void test_verbose(void)
{
    pm_death_result r;
    setenv("PYMALLOC_MODE", "malloc", 1);
    run_with_env("PYMALLOC_VERBOSE", "1", &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK_STR(r.output, "pymalloc " PYMALLOC_VERSION_STRING ": mode malloc (PYMALLOC_MODE=malloc)");
    PM_CHECK_STR(r.output, "PYMALLOC_VERBOSE=1");
    run_with_env("PYMALLOC_VERBOSE", "0", &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK(strstr(r.output, "pymalloc ") == NULL);
    run_with_env("PYMALLOC_VERBOSE", "maybe", &r);
    PM_CHECK(r.exited && r.exit_status == 1);
    PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_VERBOSE=maybe: not a boolean");
    unsetenv("PYMALLOC_MODE");
    unsetenv("PYMALLOC_VERBOSE");
}

/* A PYMALLOC_* variable pymalloc does not read (a misspelling) is named in
 * one line at set-up and ignored: PYMALLOC_ON_ERRORS=report ran in abort
 * mode without a word. PYMALLOC_LIBRARY (pymalloc-run's) is known. */
static void test_unknown_variable_named(void)
{
    pm_death_result r;
    run_with_env("PYMALLOC_ON_ERRORS", "report", &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_ON_ERRORS: not a variable pymalloc reads: ignored "
                           "(known: PYMALLOC_MODE, PYMALLOC_VERBOSE, PYMALLOC_ON_ERROR, ");
    PM_CHECK_STR(r.output, "PYMALLOC_STATS; PYMALLOC_LIBRARY is pymalloc-run's)\n");
    PM_CHECK_STR(r.output, "allocated in mode");
    /* a name shown escaped, on one line */
    run_with_env("PYMALLOC_\x1b[1m", "1", &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_\\x1b[1m: not a variable pymalloc reads");
    for (const char *c = r.output; *c != '\0'; c++)
        PM_CHECK(*c == '\n' || ((unsigned char)*c >= 0x20 && *c != 0x7f));
    const char *known[] = {"PYMALLOC_LIBRARY", "PYMALLOC_MODE", "PYMALLOC_QUARANTINE_POOLS",
                           "PYMALLOC_ERRORS_BEFORE_EXEC"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        run_with_env(known[i], "", &r);
        PM_CHECK(r.exited && r.exit_status == 0);
        PM_CHECK(strstr(r.output, "not a variable") == NULL);
    }
    /* other prefixes are not pymalloc's */
    run_with_env("PYMALLOCX", "1", &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK(strstr(r.output, "not a variable") == NULL);
}

/* PYMALLOC_STATS=1 prints the pool statistics at a normal exit. */
static void child_stats_exit(void *arg)
{
    setenv("PYMALLOC_STATS", (const char *)arg, 1);
    void *p = pm_obj_malloc(24);
    printf("allocated in mode %s\n", pm_mode_name());
    fflush(stdout);
    (void)p; /* still live at exit: it shows in the statistics */
    exit(0);
}

static void test_stats_at_exit(void)
{
    pm_death_result r;
    setenv("PYMALLOC_MODE", "pymalloc", 1);
    pm_death(child_stats_exit, "1", &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK_STR(r.output, "Small block threshold = 512, in 32 size classes.");
    PM_CHECK_STR(r.output, "    1     32           1");
    PM_CHECK_STR(r.output, "# arenas allocated current         =                    1\n");
    PM_CHECK_STR(r.output, "Total                              =            1,048,576\n");
    pm_death(child_stats_exit, "0", &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    PM_CHECK(strstr(r.output, "Small block") == NULL);
    pm_death(child_stats_exit, "maybe", &r);
    PM_CHECK(r.exited && r.exit_status == 1);
    PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_STATS=maybe: not a boolean");
    PM_CHECK(strstr(r.output, "allocated in mode") == NULL);
    unsetenv("PYMALLOC_MODE");
    unsetenv("PYMALLOC_STATS");
}

static const char *example_path;

static void child_exec_example(void *arg)
{
    (void)arg;
    setenv("PYMALLOC_MODE", "nonsense", 1);
    execl(example_path, example_path, (char *)NULL);
    _exit(99);
}

static void test_example_with_bad_mode(void)
{
    if (example_path == NULL)
        PM_SKIP("no example program given");
    pm_death_result r;
    pm_death(child_exec_example, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 1);
    PM_CHECK_STR(r.output, "pymalloc: PYMALLOC_MODE=nonsense: unknown mode (valid: default, malloc");
}

int main(int argc, char **argv)
{
    pm_t_pin_env(NULL);
    example_path = argc > 1 ? argv[1] : NULL;
    unsetenv("PYMALLOC_VERBOSE");
    unsetenv("PYMALLOC_STATS");
    PM_RUN(test_parse_bool);
    PM_RUN(test_parse_u64);
    PM_RUN(test_parse_size);
    PM_RUN(test_getenv_exact);
    PM_RUN(test_unknown_mode_exits_1);
    PM_RUN(test_bad_value_shown_on_one_line);
    PM_RUN(test_every_valid_mode_accepted);
    PM_RUN(test_empty_mode_is_default);
    PM_RUN(test_verbose);
    PM_RUN(test_unknown_variable_named);
    PM_RUN(test_stats_at_exit);
    PM_RUN(test_example_with_bad_mode);
    return pm_test_done();
}
