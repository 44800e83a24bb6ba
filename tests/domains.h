/* tests/domains.h - the three domains' entry points as a table, for loops. */
#ifndef PM_TEST_DOMAINS_H
#define PM_TEST_DOMAINS_H

#include "pymalloc.h"

typedef struct pm_t_domain {
    const char *name;
    pm_domain domain;
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
} pm_t_domain;

static const pm_t_domain pm_t_domains[PM_DOMAIN_COUNT] = {
    {"raw", PM_DOMAIN_RAW, pm_raw_malloc, pm_raw_calloc, pm_raw_realloc, pm_raw_free},
    {"mem", PM_DOMAIN_MEM, pm_mem_malloc, pm_mem_calloc, pm_mem_realloc, pm_mem_free},
    {"obj", PM_DOMAIN_OBJ, pm_obj_malloc, pm_obj_calloc, pm_obj_realloc, pm_obj_free},
};

#endif
