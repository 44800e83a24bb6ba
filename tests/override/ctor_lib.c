/*
 * tests/override/ctor_lib.c - a library that allocates in its constructor,
 * before main and possibly before anything else has called malloc: the
 * allocator must already work (or set itself up) here, with getenv, setenv
 * (which allocates the new environment) and dlsym/dlerror (which calloc).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *blocks[6];
static char report[128];

__attribute__((constructor)) static void ctor_allocate(void)
{
    blocks[0] = malloc(24);
    if (blocks[0] != NULL)
        strcpy(blocks[0], "ctor malloc");
    blocks[1] = strdup(getenv("PATH") != NULL ? "ctor strdup" : "ctor strdup (no PATH)");
    blocks[2] = calloc(10, 10);
    setenv("PM_T_CTOR_LIB", "set in a constructor", 1);
    /* dlsym of a missing name: dlerror's state is calloc'ed */
    void *none = dlsym(RTLD_DEFAULT, "pm_t_no_such_symbol_anywhere");
    const char *err = dlerror();
    blocks[3] = realloc(strdup("ctor realloc"), 4000);
    void *al = NULL;
    blocks[4] = posix_memalign(&al, 64, 64) == 0 ? al : NULL;
    snprintf(report, sizeof report, "ctor: %s, %s, calloc=%d, dlerror=%s, env=%s",
             blocks[0] ? blocks[0] : "?", blocks[1] ? blocks[1] : "?",
             blocks[2] != NULL && blocks[2][99] == 0, (none == NULL && err != NULL) ? "yes" : "no",
             getenv("PM_T_CTOR_LIB") ? "yes" : "no");
}

const char *pm_t_ctor_report(void) { return report; }

void pm_t_ctor_release(void)
{
    for (int i = 0; i < 6; i++) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
}
