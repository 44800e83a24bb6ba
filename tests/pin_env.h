/*
 * tests/pin_env.h - pm_t_pin_env: the PYMALLOC_* variables a test runs with
 * (harness.h includes it; the tests without the harness include it alone).
 */
#ifndef PM_TEST_PIN_ENV_H
#define PM_TEST_PIN_ENV_H

#include <stdlib.h>
#include <string.h>

/* The environment a test runs with: every PYMALLOC_* variable but
 * PYMALLOC_MODE (which the test x mode matrix sets) is removed, then each
 * "NAME=value" of `set` (a NULL-terminated list; NULL: none) is set. Called
 * at the start of main(), before the first allocation (pymalloc reads its
 * variables once, then), so that a test meets the defaults it assumes (a
 * budget of 1 MiB, pool blocks not held, abort on error, no start-up line)
 * whatever the environment it was started from: a developer's
 * PYMALLOC_QUARANTINE_POOLS=on made test_debug_blame fail, for one. The
 * children it forks or execs inherit this environment, and what it sets
 * for them afterwards. (CTest pins them too: tests/CMakeLists.txt.) */
extern char **environ;
static inline void pm_t_pin_env(const char *const *set)
{
    static const char prefix[] = "PYMALLOC_";
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; e != NULL && *e != NULL; e++) {
            const char *eq = strchr(*e, '=');
            size_t len = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
            char name[128];
            if (strncmp(*e, prefix, sizeof prefix - 1) != 0 || len >= sizeof name ||
                (len == strlen("PYMALLOC_MODE") && strncmp(*e, "PYMALLOC_MODE", len) == 0))
                continue;
            memcpy(name, *e, len);
            name[len] = '\0';
            unsetenv(name); /* (changes environ: scan it again) */
            again = 1;
            break;
        }
    }
    for (int i = 0; set != NULL && set[i] != NULL; i++)
        putenv((char *)set[i]);
}

#endif
