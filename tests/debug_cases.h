/*
 * tests/debug_cases.h - the heap bugs the debug hooks must name, as
 * functions, each used twice: in a forked child that must die with SIGABRT
 * and the expected report (death tests), and in-process with an error
 * handler that must receive the expected class, size, serial and offset.
 */
#ifndef PM_TEST_DEBUG_CASES_H
#define PM_TEST_DEBUG_CASES_H

#include "debug_layout.h"
#include "domains.h"
#include "harness.h"
#include "pymalloc.h"

#include <stdint.h>

/* What a case expects to be reported. */
typedef struct dcase_expect {
    pm_error_class error;
    char entry[32];
    const void *address;
    size_t size;
    uint64_t serial;
    ptrdiff_t offset;
    char api_expected, api_found;
    char line[384]; /* text the one-line report must contain */
} dcase_expect;

/* A case: commit the bug through domain d (other = another domain), fill in
 * what must be reported; after the report, if the handler returned, repair
 * what can be repaired so that nothing leaks. */
typedef struct dcase {
    const char *name;
    void (*run)(int d, int other, dcase_expect *x);
} dcase;

static const char dom_api[PM_DOMAIN_COUNT] = {'r', 'm', 'o'};

/* Called by each case just before it commits its bug, with what it expects
 * (the death tests print it, for the parent to match). */
static void (*dcase_ready)(const dcase_expect *x);
#define READY(x) do { if (dcase_ready != NULL) dcase_ready(x); } while (0)

static inline void set_entry(dcase_expect *x, int d, const char *op)
{
    snprintf(x->entry, sizeof x->entry, "pm_%s_%s", pm_t_domains[d].name, op);
}

static unsigned char *new_block(int d, dcase_expect *x)
{
    unsigned char *p = pm_t_domains[d].malloc(24);
    x->address = p;
    x->size = 24;
    x->serial = trailer_serial(p, 24);
    x->api_expected = x->api_found = dom_api[d];
    return p;
}

static void case_overflow1(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_BUFFER_OVERFLOW;
    x->offset = 24;
    set_entry(x, d, "free");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: buffer overflow: 1 byte written past the end of a 24-byte "
             "block (serial %llu)", x->entry, (unsigned long long)x->serial);
    READY(x);
    p[24] = 'x';
    pm_t_domains[d].free(p);
    p[24] = 0xFD; /* the handler returned: the block was leaked, repair and free */
    pm_t_domains[d].free(p);
}

static void case_overflow8(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_BUFFER_OVERFLOW;
    x->offset = 24;
    set_entry(x, d, "free");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: buffer overflow: at least 8 bytes written past the end of a 24-byte "
             "block (serial %llu)", x->entry, (unsigned long long)x->serial);
    READY(x);
    memset(p + 24, 'x', 8);
    pm_t_domains[d].free(p);
    memset(p + 24, 0xFD, 8);
    pm_t_domains[d].free(p);
}

static void case_underflow1(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_BUFFER_UNDERFLOW;
    x->offset = -1;
    set_entry(x, d, "free");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: buffer underflow: 1 byte written before the start of a "
             "24-byte block (serial %llu)", x->entry, (unsigned long long)x->serial);
    READY(x);
    p[-1] = 'x';
    pm_t_domains[d].free(p);
    p[-1] = 0xFD;
    pm_t_domains[d].free(p);
}

static void case_double_free(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_DOUBLE_FREE;
    x->offset = 0;
    set_entry(x, d, "free");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: double free: the 24-byte block (serial %llu) at %p was "
             "already freed", x->entry, (unsigned long long)x->serial, (void *)p);
    READY(x);
    pm_t_domains[d].free(p);
    pm_t_domains[d].free(p);
}

static void expect_invalid(int d, dcase_expect *x, const void *p)
{
    x->error = PM_ERR_INVALID_POINTER;
    x->address = p;
    x->size = 0;
    x->serial = 0;
    x->offset = 0;
    x->api_expected = dom_api[d];
    x->api_found = 0;
    set_entry(x, d, "free");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: invalid pointer: %p is not a block allocated by pymalloc",
             x->entry, p);
}

static void case_invalid_stack(int d, int other, dcase_expect *x)
{
    (void)other;
    volatile long local[4] = {1, 2, 3, 4};
    expect_invalid(d, x, (const void *)&local[2]);
    READY(x);
    pm_t_domains[d].free((void *)&local[2]);
}

static long pm_t_global_array[8];

static void case_invalid_global(int d, int other, dcase_expect *x)
{
    (void)other;
    expect_invalid(d, x, &pm_t_global_array[2]);
    READY(x);
    pm_t_domains[d].free(&pm_t_global_array[2]);
}

/* The end of an invalid pointer's report when it points into live block p
 * (n bytes, domain d) at offset off from its data start: the block, the API
 * it was allocated with, and the offset, signed (in its header: negative). */
static void expect_inside(int d, dcase_expect *x, const unsigned char *p, size_t n, ptrdiff_t off)
{
    size_t len = strlen(x->line);
    /* At or past the end of the data: "just past the end of", "K bytes past
     * the end of"; before it: "K bytes before"; else "K bytes into". */
    int past = off >= 0 && (size_t)off >= n;
    ptrdiff_t k = off < 0 ? -off : past ? off - (ptrdiff_t)n : off;
    char where[64];
    if (past && k == 0)
        snprintf(where, sizeof where, "just past the end of");
    else
        snprintf(where, sizeof where, "%td byte%s %s", k, k == 1 ? "" : "s",
                 off < 0 ? "before" : past ? "past the end of" : "into");
    snprintf(x->line + len, sizeof x->line - len,
             ": it points %s the live %zu-byte block (serial %llu) at %p, allocated "
             "with API '%c' (pm_%s_*): offset %c%td from its data start%s",
             where, n, (unsigned long long)trailer_serial(p, n),
             (const void *)p, dom_api[d], pm_t_domains[d].name, off < 0 ? '-' : '+',
             off < 0 ? -off : off,
             off < 0 ? ", in its header" : (size_t)off >= n ? ", in its trailer" : "");
}

/* The free of p + off, for an n-byte block p of domain d: the report names
 * the live block it points into, and where in it the pointer falls. */
static void invalid_inside(int d, dcase_expect *x, size_t n, ptrdiff_t off)
{
    unsigned char *p = pm_t_domains[d].malloc(n);
    expect_invalid(d, x, p + off);
    expect_inside(d, x, p, n, off);
    READY(x);
    pm_t_domains[d].free(p + off);
    pm_t_domains[d].free(p);
}

/* An interior pointer, into a block's data. */
static void case_invalid_interior(int d, int other, dcase_expect *x)
{
    (void)other;
    invalid_inside(d, x, 64, 16);
}

/* A pointer into a block's header, before its data. */
static void case_invalid_header(int d, int other, dcase_expect *x)
{
    (void)other;
    invalid_inside(d, x, 40, -8);
}

/* A pointer into a block's trailer, past its data. */
static void case_invalid_trailer(int d, int other, dcase_expect *x)
{
    (void)other;
    invalid_inside(d, x, 40, 44);
}

/* The realloc of an interior pointer: the same report, from realloc. */
static void case_invalid_interior_realloc(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = pm_t_domains[d].malloc(64);
    expect_invalid(d, x, p + 24);
    set_entry(x, d, "realloc");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: invalid pointer: %p is not a block allocated by pymalloc", x->entry,
             (const void *)(p + 24));
    expect_inside(d, x, p, 64, 24);
    READY(x);
    PM_CHECK(pm_t_domains[d].realloc(p + 24, 100) == NULL);
    pm_t_domains[d].free(p);
}

static void case_invalid_small(int d, int other, dcase_expect *x)
{
    (void)other;
    expect_invalid(d, x, (const void *)(uintptr_t)1);
    READY(x);
    pm_t_domains[d].free((void *)(uintptr_t)1);
}

static void case_api_mismatch(int d, int other, dcase_expect *x)
{
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_API_MISMATCH;
    x->offset = 0;
    x->api_expected = dom_api[other];
    set_entry(x, other, "free");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: API mismatch: the 24-byte block (serial %llu) was allocated "
             "with API '%c' (pm_%s_*) and released with API '%c' (pm_%s_*)",
             x->entry, (unsigned long long)x->serial, dom_api[d], pm_t_domains[d].name,
             dom_api[other], pm_t_domains[other].name);
    READY(x);
    pm_t_domains[other].free(p);
    pm_t_domains[d].free(p);
}

static void case_realloc_freed(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_USE_AFTER_FREE;
    x->offset = 0;
    set_entry(x, d, "realloc");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: use after free: the 24-byte block (serial %llu) at %p is freed",
             x->entry, (unsigned long long)x->serial, (void *)p);
    READY(x);
    pm_t_domains[d].free(p);
    errno = 0;
    void *q = pm_t_domains[d].realloc(p, 48);
    if (q != NULL || errno != ENOMEM) /* a realloc that reported fails */
        fprintf(stderr, "realloc of a freed block returned %p (errno %d)\n", q, errno);
}

static void case_realloc_overflow(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_BUFFER_OVERFLOW;
    x->offset = 24;
    set_entry(x, d, "realloc");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: buffer overflow: 2 bytes written past the end of a 24-byte "
             "block (serial %llu)", x->entry, (unsigned long long)x->serial);
    READY(x);
    p[24] = p[25] = 0;
    void *q = pm_t_domains[d].realloc(p, 100);
    if (q != NULL)
        fprintf(stderr, "realloc of a damaged block returned %p\n", q);
    p[24] = p[25] = 0xFD;
    pm_t_domains[d].free(p);
}

static void case_size_field(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_HEADER_CORRUPT;
    x->offset = -9;
    set_entry(x, d, "free");
    snprintf(x->line, sizeof x->line,
             "pymalloc: %s: header corrupt: the size field of a 24-byte block (serial %llu) "
             "was overwritten", x->entry, (unsigned long long)x->serial);
    READY(x);
    p[-9] ^= 0x40; /* the size's low byte: 24 -> 88 */
    pm_t_domains[d].free(p);
    p[-9] ^= 0x40;
    pm_t_domains[d].free(p);
}

static void case_check_block(int d, int other, dcase_expect *x)
{
    (void)other;
    unsigned char *p = new_block(d, x);
    x->error = PM_ERR_BUFFER_OVERFLOW;
    x->offset = 24;
    snprintf(x->entry, sizeof x->entry, "pm_check_block");
    snprintf(x->line, sizeof x->line,
             "pymalloc: pm_check_block: buffer overflow: 1 byte written past the end of a "
             "24-byte block (serial %llu)", (unsigned long long)x->serial);
    READY(x);
    if (pm_check_block(p) != 0)
        fprintf(stderr, "pm_check_block failed on an intact block\n");
    p[24] = 0;
    if (pm_check_block(p) != -1)
        fprintf(stderr, "pm_check_block passed a damaged block\n");
    p[24] = 0xFD;
    pm_t_domains[d].free(p);
}

static const dcase dcases[] = {
    {"overflow by 1", case_overflow1},
    {"overflow by 8", case_overflow8},
    {"underflow by 1", case_underflow1},
    {"double free", case_double_free},
    {"invalid pointer (stack)", case_invalid_stack},
    {"invalid pointer (global)", case_invalid_global},
    {"invalid pointer (interior)", case_invalid_interior},
    {"invalid pointer (into the header)", case_invalid_header},
    {"invalid pointer (into the trailer)", case_invalid_trailer},
    {"invalid pointer (interior, realloc)", case_invalid_interior_realloc},
    {"invalid pointer (address 1)", case_invalid_small},
    {"API mismatch", case_api_mismatch},
    {"realloc of a freed block", case_realloc_freed},
    {"overflow found by realloc", case_realloc_overflow},
    {"size field overwritten", case_size_field},
    {"pm_check_block", case_check_block},
};

#define NDCASES (sizeof dcases / sizeof dcases[0])

#endif
