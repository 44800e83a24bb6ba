/*
 * fuzz/options.c - the `options` fuzz target: arbitrary PYMALLOC_* values
 * through the library's pure parsers, each against an independent oracle.
 *
 * The whole input is the value (with embedded NULs: the C-string parsers see
 * the part before the first NUL, pm_i_mode_find sees every byte). Each input
 * goes through:
 *   - pm_i_mode_find(bytes, len): non-NULL exactly when the bytes equal one
 *     of pm_mode_names() (exact, case-sensitive, no trimming), and then a
 *     canonical entry (alias_of == NULL) whose name is the input itself or,
 *     for an alias, the name the alias stands for;
 *   - pm_set_mode(string): 0 and that canonical mode installed for a valid
 *     name (nothing is ever allocated in this process, so any mode may be
 *     installed), -1 with EINVAL otherwise and the mode unchanged;
 *   - pm_i_parse_bool(string): 1 or 0 for the nine accepted spellings, -1
 *     for anything else;
 *   - pm_i_parse_u64(string): compared with a reference parser;
 *     the output is untouched on error;
 *   - pm_i_getenv: the input split at its first '=' becomes a variable
 *     PYMALLOC_FUZZ_<name>=<value>; pm_i_getenv must find exactly it (not a
 *     variable whose name merely starts the same) and agree with getenv();
 *   - pm_i_buf_shown(string, max), as a bad value is shown in a message:
 *     no control byte, and decoding its escapes gives back the first max
 *     bytes, then "..." exactly when there were more.
 */
#include "fuzz.h"
#include "../src/pm_internal.h"

#include <errno.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * Reference implementations (written differently from the library's).
 */

static int ref_bool(const char *s, size_t len)
{
    static const struct {
        const char *text;
        int value;
    } table[] = {{"", 0},     {"0", 0},    {"no", 0},  {"false", 0}, {"off", 0},
                 {"1", 1},    {"yes", 1},  {"on", 1},  {"true", 1}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (len == strlen(table[i].text) && memcmp(s, table[i].text, len) == 0)
            return table[i].value;
    return -1;
}

/* 0 and *out on success, -1 on an empty string, a non-digit or overflow
 * (detected by the compiler's checked arithmetic, not by a bound). */
static int ref_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!(s[i] >= '0' && s[i] <= '9'))
            return -1;
        if (__builtin_mul_overflow(v, 10u, &v) ||
            __builtin_add_overflow(v, (unsigned)(s[i] - '0'), &v))
            return -1;
    }
    *out = v;
    return 0;
}

/* The name a valid mode name installs, by the documented rule, or NULL. */
static const char *ref_mode(const uint8_t *s, size_t len)
{
    const char *const *names = pm_mode_names();
    for (size_t i = 0; names[i] != NULL; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return names[i];
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Checks.
 */

static void check_mode_find(const uint8_t *data, size_t size)
{
    const char *valid = ref_mode(data, size);
    const pm_i_mode *m = pm_i_mode_find((const char *)data, size);
    if ((m != NULL) != (valid != NULL))
        FZ_FAIL("pm_i_mode_find(%zu bytes) gave %s, but the input %s a valid name", size,
                m ? m->name : "NULL", valid ? "is" : "is not");
    if (m == NULL)
        return;
    if (m->alias_of != NULL)
        FZ_FAIL("pm_i_mode_find(\"%s\") gave the alias %s, not a canonical mode", valid,
                m->name);
    if (ref_mode((const uint8_t *)m->name, strlen(m->name)) == NULL)
        FZ_FAIL("pm_i_mode_find(\"%s\") gave %s, which is not an accepted name", valid,
                m->name);
    /* The canonical mode an input leads to finds itself. */
    if (pm_i_mode_find(m->name, strlen(m->name)) != m)
        FZ_FAIL("the canonical mode %s (from \"%s\") does not find itself", m->name, valid);
}

static void check_set_mode(const char *s, size_t len)
{
    const char *before = pm_mode_name();
    const char *valid = ref_mode((const uint8_t *)s, len);
    errno = 0;
    int rc = pm_set_mode(s);
    if (valid == NULL) {
        if (rc != -1 || errno != EINVAL)
            FZ_FAIL("pm_set_mode(\"%s\") gave %d, errno %d; expected -1, EINVAL", s, rc, errno);
        if (strcmp(pm_mode_name(), before) != 0)
            FZ_FAIL("a rejected pm_set_mode(\"%s\") changed the mode from %s to %s", s, before,
                    pm_mode_name());
        return;
    }
    if (rc != 0)
        FZ_FAIL("pm_set_mode(\"%s\") gave %d, errno %d; expected 0", s, rc, errno);
    const char *want = pm_i_mode_find(s, len)->name;
    if (strcmp(pm_mode_name(), want) != 0)
        FZ_FAIL("pm_set_mode(\"%s\") installed %s, expected %s", s, pm_mode_name(), want);
}

static void check_parsers(const char *s, size_t len)
{
    int b = pm_i_parse_bool(s), rb = ref_bool(s, len);
    if (b != rb)
        FZ_FAIL("pm_i_parse_bool(\"%s\") gave %d, expected %d", s, b, rb);

    uint64_t got = 0x5A5A5A5A5A5A5A5Au, want = 0;
    int rc = pm_i_parse_u64(s, &got), rrc = ref_u64(s, len, &want);
    if (rc != rrc)
        FZ_FAIL("pm_i_parse_u64(\"%s\") gave %d, expected %d", s, rc, rrc);
    if (rc == 0 && got != want)
        FZ_FAIL("pm_i_parse_u64(\"%s\") gave %llu, expected %llu", s, (unsigned long long)got,
                (unsigned long long)want);
    if (rc != 0 && got != 0x5A5A5A5A5A5A5A5Au)
        FZ_FAIL("pm_i_parse_u64(\"%s\") failed but wrote its output", s);
}

static int valid_env_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_';
}

static void check_getenv(const char *s, size_t len)
{
    const char *eq = memchr(s, '=', len);
    size_t nlen = eq ? (size_t)(eq - s) : len;
    const char *value = eq ? eq + 1 : "";
    char name[64] = "PYMALLOC_FUZZ_";
    size_t base = strlen(name);
    if (nlen > sizeof name - base - 1)
        nlen = sizeof name - base - 1;
    for (size_t i = 0; i < nlen; i++)
        name[base + i] = valid_env_name_char(s[i]) ? s[i] : '_';
    name[base + nlen] = '\0';

    /* putenv with our own string, freed below, not setenv: glibc's setenv
     * keeps every distinct string it ever made (its known-values tree), so
     * the fuzzer's memory would grow with every new input. */
    size_t elen = strlen(name) + 1 + strlen(value) + 1;
    char *entry = malloc(elen);
    if (entry == NULL)
        FZ_FAIL("harness out of memory");
    snprintf(entry, elen, "%s=%s", name, value);
    if (putenv(entry) != 0)
        FZ_FAIL("putenv(%s) failed", name);
    const char *got = pm_i_getenv(name), *libc = getenv(name);
    if (got == NULL || libc == NULL || strcmp(got, value) != 0 || got != libc)
        FZ_FAIL("pm_i_getenv(%s) gave \"%s\", expected \"%s\" (getenv: %p, ours %p)", name,
                got ? got : "(null)", value, (const void *)libc, (const void *)got);
    /* A proper prefix of the name is another variable, unset here. */
    char prefix[64];
    for (size_t cut = base; cut < base + nlen; cut++) {
        memcpy(prefix, name, cut);
        prefix[cut] = '\0';
        if (getenv(prefix) == NULL && pm_i_getenv(prefix) != NULL)
            FZ_FAIL("pm_i_getenv(%s) matched the longer variable %s", prefix, name);
    }
    unsetenv(name);
    if (pm_i_getenv(name) != NULL)
        FZ_FAIL("pm_i_getenv(%s) still finds it after unsetenv", name);
    free(entry);
}

static int hexval(char c) { return c >= 'a' ? c - 'a' + 10 : c - '0'; }

static void check_shown(const char *s, size_t len)
{
    size_t max = 64, cap = 4 * max + 8;
    char out[4 * 64 + 8];
    pm_i_buf b;
    pm_i_buf_init(&b, out, cap, -1); /* no descriptor: kept in out */
    pm_i_buf_shown(&b, s, max);
    char back[64];
    size_t n = 0, i = 0, keep = len < max ? len : max;
    while (i < b.len && n < keep) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f)
            FZ_FAIL("pm_i_buf_shown wrote control byte 0x%02x", c);
        if (c != '\\') {
            back[n++] = (char)c;
            i++;
        } else if (i + 1 < b.len && (out[i + 1] == 'n' || out[i + 1] == 't' || out[i + 1] == '\\')) {
            back[n++] = out[i + 1] == 'n' ? '\n' : out[i + 1] == 't' ? '\t' : '\\';
            i += 2;
        } else if (i + 3 < b.len && out[i + 1] == 'x') {
            back[n++] = (char)(hexval(out[i + 2]) << 4 | hexval(out[i + 3]));
            i += 4;
        } else {
            FZ_FAIL("pm_i_buf_shown: a bad escape at %zu", i);
        }
    }
    if (n != keep || memcmp(back, s, keep) != 0)
        FZ_FAIL("pm_i_buf_shown did not show the first %zu bytes of the value", keep);
    const char *rest = len > max ? "..." : "";
    if (b.len - i != strlen(rest) || memcmp(out + i, rest, b.len - i) != 0)
        FZ_FAIL("pm_i_buf_shown: %zu bytes after the value, expected \"%s\"", b.len - i, rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int checked_names;
    if (!checked_names) {
        for (size_t i = 0; pm_i_option_names[i] != NULL; i++)
            if (strncmp(pm_i_option_names[i], "PYMALLOC_", 9) != 0)
                FZ_FAIL("option %s does not start with PYMALLOC_", pm_i_option_names[i]);
        checked_names = 1;
    }

    fz_selftest();
    check_mode_find(data, size);

    /* The C-string view: up to the first NUL. */
    char *s = malloc(size + 1);
    if (s == NULL)
        FZ_FAIL("harness out of memory");
    memcpy(s, data, size);
    s[size] = '\0';
    size_t len = strlen(s);
    check_set_mode(s, len);
    check_parsers(s, len);
    check_getenv(s, len);
    check_shown(s, len);
    free(s);
    return 0;
}
