/*
 * src/options.c - reading PYMALLOC_* from the environment without allocating.
 *
 * The library reads its options from inside malloc, possibly before libc has
 * finished starting up, so it scans `environ` itself (as mimalloc does)
 * instead of calling getenv(), and every parser is a pure function of its
 * string so that it can be unit-tested and fuzzed on its own.
 */
#include "pm_internal.h"

#include <string.h>

extern char **environ;

const char *const pm_i_option_names[] = {
    "PYMALLOC_MODE",
    "PYMALLOC_VERBOSE",
    "PYMALLOC_ON_ERROR",
    "PYMALLOC_BREAK_SERIAL",
    "PYMALLOC_CHECK_FREED",
    "PYMALLOC_QUARANTINE",
    "PYMALLOC_QUARANTINE_POOLS",
    "PYMALLOC_STATS",
    "PYMALLOC_ERRORS_BEFORE_EXEC", /* set by pymalloc before an exec (src/exec.c) */
    NULL,
};

const char *pm_i_getenv(const char *name)
{
    char **env = environ;
    if (name == NULL || env == NULL)
        return NULL;
    size_t len = strlen(name);
    for (; *env != NULL; env++) {
        const char *e = *env;
        if (strncmp(e, name, len) == 0 && e[len] == '=')
            return e + len + 1;
    }
    return NULL;
}

int pm_i_parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"", "0", "no", "false", "off"};
    if (s == NULL)
        return 0;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcmp(s, yes[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcmp(s, no[i]) == 0)
            return 0;
    return -1;
}

int pm_i_parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned digit = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

int pm_i_parse_size(const char *s, uint64_t *out)
{
    char digits[24];
    size_t len = s != NULL ? strlen(s) : 0;
    unsigned shift = 0;
    if (len > 0) {
        switch (s[len - 1]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: break;
        }
    }
    if (shift != 0)
        len--;
    while (len > 1 && s[0] == '0') { /* leading zeros: any number of them */
        s++;
        len--;
    }
    if (len == 0 || len >= sizeof digits)
        return -1;
    memcpy(digits, s, len);
    digits[len] = '\0';
    uint64_t v;
    if (pm_i_parse_u64(digits, &v) != 0 || v > (UINT64_MAX >> shift))
        return -1;
    *out = v << shift;
    return 0;
}
