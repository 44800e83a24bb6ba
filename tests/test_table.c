/* tests/test_table.c - the allocator table: get/set, hooks chained over the mode. */
#include "counting_hook.h"
#include "domains.h"
#include "harness.h"

static void test_get_set_roundtrip(void)
{
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        pm_allocator a, b;
        PM_CHECK_EQ(pm_get_allocator((pm_domain)d, &a), 0);
        PM_CHECK(a.malloc && a.calloc && a.realloc && a.free);
        PM_CHECK_EQ(pm_set_allocator((pm_domain)d, &a), 0);
        PM_CHECK_EQ(pm_get_allocator((pm_domain)d, &b), 0);
        PM_CHECK(memcmp(&a, &b, sizeof a) == 0);
    }
}

static void test_invalid_arguments(void)
{
    pm_allocator a;
    PM_CHECK_EQ(pm_get_allocator(PM_DOMAIN_MEM, &a), 0);
    errno = 0;
    PM_CHECK_EQ(pm_get_allocator((pm_domain)3, &a), -1);
    PM_CHECK_EQ(errno, EINVAL);
    errno = 0;
    PM_CHECK_EQ(pm_get_allocator((pm_domain)-1, &a), -1);
    PM_CHECK_EQ(errno, EINVAL);
    errno = 0;
    PM_CHECK_EQ(pm_get_allocator(PM_DOMAIN_MEM, NULL), -1);
    PM_CHECK_EQ(errno, EINVAL);
    errno = 0;
    PM_CHECK_EQ(pm_set_allocator(PM_DOMAIN_MEM, NULL), -1);
    PM_CHECK_EQ(errno, EINVAL);
    errno = 0;
    PM_CHECK_EQ(pm_set_allocator((pm_domain)7, &a), -1);
    PM_CHECK_EQ(errno, EINVAL);
    pm_allocator broken = a;
    broken.free = NULL;
    errno = 0;
    PM_CHECK_EQ(pm_set_allocator(PM_DOMAIN_MEM, &broken), -1);
    PM_CHECK_EQ(errno, EINVAL);
    /* Nothing changed. */
    pm_allocator now;
    pm_get_allocator(PM_DOMAIN_MEM, &now);
    PM_CHECK(memcmp(&a, &now, sizeof a) == 0);
}

/* A counting hook over every domain of the installed mode sees every call,
 * and the blocks still work. */
static void test_counting_hook_over_mode(void)
{
    static counting_hook hooks[PM_DOMAIN_COUNT];
    for (int d = 0; d < PM_DOMAIN_COUNT; d++)
        PM_CHECK_EQ(counting_hook_install(&hooks[d], (pm_domain)d), 0);

    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        char *p = D->malloc(100);
        PM_CHECK(p != NULL);
        memset(p, 'x', 100);
        char *q = D->calloc(10, 10);
        PM_CHECK(q != NULL && q[0] == 0 && q[99] == 0);
        p = D->realloc(p, 300);
        PM_CHECK(p != NULL && p[0] == 'x' && p[99] == 'x');
        char *r = D->realloc(NULL, 5); /* realloc(NULL) is a malloc */
        PM_CHECK(r != NULL);
        D->free(p);
        D->free(q);
        D->free(r);
        D->free(NULL); /* never reaches the allocator */
        PM_CHECK_EQ(atomic_load(&hooks[d].mallocs), 2);
        PM_CHECK_EQ(atomic_load(&hooks[d].callocs), 1);
        PM_CHECK_EQ(atomic_load(&hooks[d].reallocs), 1);
        PM_CHECK_EQ(atomic_load(&hooks[d].frees), 3);
    }
    /* Each domain's hook saw only its own domain's calls. */
    for (int d = PM_DOMAIN_COUNT - 1; d >= 0; d--)
        PM_CHECK_EQ(counting_hook_remove(&hooks[d], (pm_domain)d), 0);
    char *p = pm_mem_malloc(8);
    pm_mem_free(p);
    PM_CHECK_EQ(atomic_load(&hooks[PM_DOMAIN_MEM].mallocs), 2);
}

/* Two hooks stacked on one domain: both see the call, outer first. */
static void test_hooks_stack(void)
{
    static counting_hook inner, outer;
    PM_CHECK_EQ(counting_hook_install(&inner, PM_DOMAIN_OBJ), 0);
    PM_CHECK_EQ(counting_hook_install(&outer, PM_DOMAIN_OBJ), 0);
    void *p = pm_obj_malloc(24);
    PM_CHECK(p != NULL);
    pm_obj_free(p);
    PM_CHECK_EQ(atomic_load(&inner.mallocs), 1);
    PM_CHECK_EQ(atomic_load(&outer.mallocs), 1);
    PM_CHECK_EQ(atomic_load(&inner.frees), 1);
    PM_CHECK_EQ(atomic_load(&outer.frees), 1);
    PM_CHECK_EQ(counting_hook_remove(&outer, PM_DOMAIN_OBJ), 0);
    PM_CHECK_EQ(counting_hook_remove(&inner, PM_DOMAIN_OBJ), 0);
}

/* Setting a hook does not change the reported mode. */
static void test_mode_name_stable_under_hooks(void)
{
    const char *before = pm_mode_name();
    static counting_hook h;
    counting_hook_install(&h, PM_DOMAIN_RAW);
    PM_CHECK(strcmp(pm_mode_name(), before) == 0);
    counting_hook_remove(&h, PM_DOMAIN_RAW);
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_get_set_roundtrip);
    PM_RUN(test_invalid_arguments);
    PM_RUN(test_counting_hook_over_mode);
    PM_RUN(test_hooks_stack);
    PM_RUN(test_mode_name_stable_under_hooks);
    return pm_test_done();
}
