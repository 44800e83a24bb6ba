/*
 * tests/test_modes.c - the mode registry and pm_set_mode.
 *
 * pm_set_mode's answer depends on whether anything was allocated, so each of
 * those tests runs in a forked child of a parent that never touched pymalloc.
 */
#include "domains.h"
#include "harness.h"
#include "../src/pm_internal.h"

static const pm_i_mode *find(const char *s) { return pm_i_mode_find(s, strlen(s)); }

static void test_parser_exact_names(void)
{
    const char *const *names = pm_mode_names();
    int n = 0;
    for (; names[n] != NULL; n++) {
        const pm_i_mode *m = find(names[n]);
        PM_CHECK(m != NULL);
        PM_CHECK(m != NULL && m->alias_of == NULL); /* aliases resolve */
    }
    PM_CHECK(n >= 2);
    PM_CHECK(find("default") != NULL);
    PM_CHECK(find("malloc") != NULL && strcmp(find("malloc")->name, "malloc") == 0);
    /* Exact, case-sensitive, no trimming, no prefixes. */
    const char *bad[] = {"", "MALLOC", "Malloc", " malloc", "malloc ", "mallo", "malloc\n",
                         "mallocx", "debug2", "pymalloc-debug", "nonsense", "defaul"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (find(bad[i]) != NULL)
            fprintf(stderr, "accepted: '%s'\n", bad[i]);
        PM_CHECK(find(bad[i]) == NULL);
    }
    /* The length bounds the name: "malloc" within "mallocXYZ". */
    PM_CHECK(pm_i_mode_find("mallocXYZ", 6) != NULL);
    PM_CHECK(pm_i_mode_find(NULL, 0) == NULL);
}

static void test_default_is_an_alias(void)
{
    const pm_i_mode *d = find("default");
    PM_CHECK(d != NULL && strcmp(d->name, "default") != 0);
}

/* pm_mode_name reports the canonical name of what PYMALLOC_MODE chose. */
static void test_mode_name_matches_env(void)
{
    const pm_i_mode *want = find(pm_t_env_mode());
    PM_CHECK(want != NULL);
    PM_CHECK(want != NULL && strcmp(pm_mode_name(), want->name) == 0);
}

static void child_set_modes_before_use(void *arg)
{
    (void)arg;
    const char *const *names = pm_mode_names();
    for (int i = 0; names[i] != NULL; i++) {
        if (pm_set_mode(names[i]) != 0)
            _exit(10 + i);
        if (strcmp(pm_mode_name(), find(names[i])->name) != 0)
            _exit(40 + i);
    }
    _exit(0);
}

static void test_set_mode_before_allocation(void)
{
    pm_death_result r;
    pm_death(child_set_modes_before_use, NULL, &r);
    PM_CHECK(r.exited && r.exit_status == 0);
    if (!(r.exited && r.exit_status == 0))
        fprintf(stderr, "child: exited=%d status=%d signal=%d\n%s", r.exited, r.exit_status,
                r.signal, r.output);
}

static void child_set_mode_invalid(void *arg)
{
    (void)arg;
    errno = 0;
    if (pm_set_mode("nonsense") != -1 || errno != EINVAL)
        _exit(1);
    errno = 0;
    if (pm_set_mode(NULL) != -1 || errno != EINVAL)
        _exit(2);
    errno = 0;
    if (pm_set_mode("MALLOC") != -1 || errno != EINVAL)
        _exit(3);
    _exit(0);
}

static void test_set_mode_invalid(void)
{
    pm_death_result r;
    pm_death(child_set_mode_invalid, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
}

/* After an allocation, only the installed mode may be set again. */
static void child_set_mode_after_allocation(void *arg)
{
    int d = *(int *)arg;
    void *p = pm_t_domains[d].malloc(10);
    const char *now = pm_mode_name();
    if (pm_set_mode(now) != 0) /* same mode: fine */
        _exit(1);
    const char *const *names = pm_mode_names();
    for (int i = 0; names[i] != NULL; i++) {
        const char *canon = find(names[i])->name;
        errno = 0;
        int rc = pm_set_mode(names[i]);
        if (strcmp(canon, now) == 0 ? rc != 0 : (rc != -1 || errno != EBUSY))
            _exit(10 + i);
    }
    if (strcmp(pm_mode_name(), now) != 0)
        _exit(2);
    pm_t_domains[d].free(p);
    _exit(0);
}

static void test_set_mode_after_allocation_is_busy(void)
{
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        pm_death_result r;
        pm_death(child_set_mode_after_allocation, &d, &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 0);
    }
}

/* pm_get_allocator does not fix the mode; an allocation does. */
static void child_get_allocator_then_set(void *arg)
{
    (void)arg;
    pm_allocator a;
    pm_get_allocator(PM_DOMAIN_MEM, &a);
    if (pm_set_mode("malloc") != 0)
        _exit(1);
    _exit(strcmp(pm_mode_name(), "malloc") == 0 ? 0 : 2);
}

static void test_get_allocator_does_not_fix_mode(void)
{
    pm_death_result r;
    pm_death(child_get_allocator_then_set, NULL, &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
}

/* The pools' two wide classes (528, 544) are the debug hooks' alone: a
 * mode installed after pymalloc_debug (or after pm_setup_debug_hooks), before
 * anything was allocated, serves 513..544 bytes from libc again. */
static void child_wide_classes_follow_the_mode(void *arg)
{
    int via_hooks = *(const int *)arg;
    if (via_hooks ? pm_set_mode("pymalloc") != 0 || pm_setup_debug_hooks() != 0
                  : pm_set_mode("pymalloc_debug") != 0)
        _exit(1);
    struct pm_stats st;
    if (pm_get_stats(&st) != 0 || st.small_threshold != 544)
        _exit(2);
    if (pm_set_mode("pymalloc") != 0 || pm_debug_enabled())
        _exit(3);
    if (pm_get_stats(&st) != 0 || st.small_threshold != 512)
        _exit(4);
    void *p = pm_mem_malloc(520), *c = pm_obj_calloc(1, 544);
    if (p == NULL || c == NULL || pm_i_pool_owns(p) || pm_i_pool_owns(c))
        _exit(5);
    pm_mem_free(p);
    pm_obj_free(c);
    _exit(0);
}

static void test_wide_classes_follow_the_mode(void)
{
    for (int via_hooks = 0; via_hooks < 2; via_hooks++) {
        pm_death_result r;
        pm_death(child_wide_classes_follow_the_mode, &via_hooks, &r);
        PM_CHECK(r.exited);
        PM_CHECK_EQ(r.exit_status, 0);
    }
}

static void test_version(void)
{
    PM_CHECK(strcmp(pm_version(), PYMALLOC_VERSION_STRING) == 0);
    PM_CHECK_EQ(PYMALLOC_VERSION, (PYMALLOC_VERSION_MAJOR << 16) |
                                      (PYMALLOC_VERSION_MINOR << 8) | PYMALLOC_VERSION_PATCH);
    /* The header's numbers are the project's (CMakeLists.txt). */
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", PYMALLOC_VERSION_MAJOR, PYMALLOC_VERSION_MINOR,
             PYMALLOC_VERSION_PATCH);
    PM_CHECK(strcmp(v, PM_T_PROJECT_VERSION) == 0);
    PM_CHECK(strcmp(PYMALLOC_VERSION_STRING, PM_T_PROJECT_VERSION) == 0);
}

int main(void)
{
    pm_t_pin_env(NULL);
    /* Children first: the parent must not have set pymalloc up yet. */
    PM_RUN(test_set_mode_before_allocation);
    PM_RUN(test_set_mode_invalid);
    PM_RUN(test_set_mode_after_allocation_is_busy);
    PM_RUN(test_get_allocator_does_not_fix_mode);
    PM_RUN(test_wide_classes_follow_the_mode);
    PM_RUN(test_parser_exact_names);
    PM_RUN(test_default_is_an_alias);
    PM_RUN(test_mode_name_matches_env);
    PM_RUN(test_version);
    return pm_test_done();
}
