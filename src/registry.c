/*
 * src/registry.c - the modes, by name, as data.
 *
 * A mode says which base allocator each domain gets and which decorator (if
 * any) wraps them. Adding a mode is one entry here plus its allocator in
 * modes/. Aliases name another entry: `default` is the build's default mode,
 * `debug` is "every domain reset to its default, then wrapped by the debug
 * hooks".
 */
#include "pm_internal.h"

#include <pthread.h>
#include <string.h>

#define R (&pm_i_raw_base)
#define P (&pm_i_pool_base)

/* The build's default mode. */
#define PM_I_DEFAULT_MODE "pymalloc"
/* What `debug` installs: every domain reset to its default, then wrapped by
 * the debug hooks. */
#define PM_I_DEFAULT_DEBUG_MODE "pymalloc_debug"

static const pm_i_mode modes[] = {
    {"default", PM_I_DEFAULT_MODE, {NULL, NULL, NULL}, NULL},
    {"malloc", NULL, {R, R, R}, NULL},
    {"debug", PM_I_DEFAULT_DEBUG_MODE, {NULL, NULL, NULL}, NULL},
    {"malloc_debug", NULL, {R, R, R}, pm_i_debug_decorate},
    {"pymalloc", NULL, {R, P, P}, NULL},
    {"pymalloc_debug", NULL, {R, P, P}, pm_i_debug_decorate},
};

#define PM_I_NMODES (sizeof modes / sizeof modes[0])

/* The names in registry order (the order of error messages), NULL-terminated,
 * filled once from modes[]. */
static const char *mode_names[PM_I_NMODES + 1];
static pthread_once_t mode_names_once = PTHREAD_ONCE_INIT;

static void fill_mode_names(void)
{
    for (size_t i = 0; i < PM_I_NMODES; i++)
        mode_names[i] = modes[i].name;
    mode_names[PM_I_NMODES] = NULL;
}

const char *const *pm_i_mode_names(void)
{
    pthread_once(&mode_names_once, fill_mode_names);
    return mode_names;
}

static const pm_i_mode *find_exact(const char *name, size_t len)
{
    for (size_t i = 0; i < PM_I_NMODES; i++) {
        if (strlen(modes[i].name) == len && memcmp(modes[i].name, name, len) == 0)
            return &modes[i];
    }
    return NULL;
}

const pm_i_mode *pm_i_mode_find(const char *name, size_t len)
{
    if (name == NULL)
        return NULL;
    const pm_i_mode *m = find_exact(name, len);
    /* Aliases point at canonical entries; follow at most a short chain. */
    for (int hops = 0; m != NULL && m->alias_of != NULL && hops < 4; hops++)
        m = find_exact(m->alias_of, strlen(m->alias_of));
    return (m != NULL && m->alias_of == NULL) ? m : NULL;
}
