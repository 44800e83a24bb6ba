/*
 * fuzz/corruption.c - the `corruption` fuzz target: heap errors made on
 * purpose in the debug modes, and the reports they must give.
 *
 * The input:
 *
 *   byte 0     the mode: the names of pm_mode_names() that contain "debug",
 *              in registry order; byte % their count picks one
 *   then cases of CASE_BYTES bytes each (reads past the end give 0), at most
 *   MAX_CASES:
 *     kind dom alloc sizesel size_lo size_hi trigger a0 a1 a2 a3
 *
 * Each case allocates one block through domain `dom` (% 5: raw, mem, obj,
 * the malloc family, or the malloc family by glibc's __libc_* names; see
 * `domains`) (malloc, calloc, malloc + realloc to the size, or an aligned
 * allocation; sizes 0..63, 64..575 or 0..65535), does one thing to it, then
 * calls one `trigger`
 * (free, realloc, pm_check_block or usable_size) and checks, through an
 * error handler that records into static storage, what was reported:
 *
 *   INBOUNDS  write a byte inside the data            no report
 *   DAMAGE    change one byte of the 16-byte header   buffer underflow (API id,
 *             or of the 16-byte trailer                 pad), header corrupt
 *                                                       (size, serial field),
 *                                                       buffer overflow (pad)
 *             (the same value as before: no report; a guard byte written
 *             with 0xFD is undetectable by design)
 *   AFTER     free the block, then use it again       double free (free, by
 *             through any domain                        any domain), use after
 *                                                       free (the others)
 *   INVALID   pass an interior pointer (p-16..p+N+15), invalid pointer (NULL:
 *             a stack or global address, a wild         nothing; free(NULL) is
 *             value or NULL                             a no-op)
 *   MISMATCH  free or realloc through another domain  API mismatch
 *
 * Every report must come exactly once, with the class, entry point
 * ("pm_mem_free", "pm_check_block", "malloc_usable_size", ...), address,
 * size, serial (read from the trailer at p+N+8, the documented layout, before
 * any damage), offset of the damaged byte and both API ids expected, and
 * pm_error_count must go up by one (in total and for the class); a case that
 * must not report must leave the counts alone. A damaged block is leaked by
 * the library: the harness restores the byte and frees it again, which must
 * not report (so LeakSanitizer stays quiet). Nothing may crash in the library.
 *
 * One ambiguity is modelled: the registry remembers recently freed blocks by
 * address, so a pointer that is not a live block but is the address of a
 * block freed earlier (an interior pointer of a new block that reuses the
 * memory, say) is named a double free / use after free of that old block.
 * The harness keeps the addresses it freed (and has not got back since) with
 * the old block's size and serial, at least the last GEN_NOTES of them, and
 * accepts that report for those addresses only, with exactly those values.
 *
 * One mode per process, as in operations.c: under libFuzzer the mode is
 * PYMALLOC_MODE's (unset: "debug"); an input naming another debug mode is
 * rejected. Under libFuzzer the reports' text on stderr is discarded (it
 * would cost more than the rest of the run); replay prints it.
 */
#include "fuzz.h"
#include "../src/pm_debug.h"
#include "../src/pm_internal.h"
#include "../src/pm_override.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#ifndef PM_O_PREFIX
#error "corruption.c calls the renamed copy of the override: build it with -DPM_O_PREFIX=pm_fz_"
#endif

#define MAX_CASES 16
#define CASE_BYTES 11

/* ---------------------------------------------------------------------------
 * Failing, and the reports' text.
 */
static int quiet_fd = -1, saved_stderr = -1;

/* Reports go to /dev/null while a trigger runs (libFuzzer only). */
static void quiet(void)
{
    if (quiet_fd >= 0)
        dup2(quiet_fd, 2);
}

static void loud(void)
{
    if (saved_stderr >= 0)
        dup2(saved_stderr, 2);
}

static struct {
    unsigned step;
    const char *kind, *trigger, *dom, *mode;
    size_t size;
    const void *p;
} C;

#define CZ_FAIL(...)                                                                         \
    do {                                                                                     \
        loud();                                                                              \
        fprintf(stderr, "fuzz oracle: %s:%d: case %u (%s, trigger %s), mode %s, %s block %p " \
                        "of %zu bytes: ",                                                    \
                __FILE__, __LINE__, C.step, C.kind, C.trigger, C.mode, C.dom, C.p, C.size);  \
        fprintf(stderr, __VA_ARGS__);                                                        \
        fputc('\n', stderr);                                                                 \
        fz_replay_hint();                                                                    \
        fflush(stderr);                                                                      \
        abort();                                                                             \
    } while (0)

/* ---------------------------------------------------------------------------
 * The error handler: records into static storage, never allocates.
 */
#define MAX_RECORDS 4

static struct {
    int n; /* reports seen, even past MAX_RECORDS */
    pm_error_report r[MAX_RECORDS];
    char msg[MAX_RECORDS][512];
} R;

static void handler(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    if (R.n < MAX_RECORDS) {
        R.r[R.n] = *r;
        size_t len = r->message != NULL ? strlen(r->message) : 0;
        if (len >= sizeof R.msg[0])
            len = sizeof R.msg[0] - 1;
        if (len > 0)
            memcpy(R.msg[R.n], r->message, len);
        R.msg[R.n][len] = '\0';
        R.r[R.n].message = r->message != NULL ? R.msg[R.n] : NULL;
    }
    R.n++;
}

/* What one call must report. */
typedef struct expect {
    pm_error_class error; /* PM_ERR_NONE: nothing */
    const char *entry;
    const void *address;
    size_t size;
    uint64_t serial;
    ptrdiff_t offset;
    char api_expected, api_found;
    ptrdiff_t last; /* last damaged byte (0: the same as offset) */
    int freed_link;  /* use after free: a freed pool block's link written */
    /* invalid pointer: the live block it points into (NULL: none) */
    const unsigned char *inside;
    size_t inside_n;
    uint64_t inside_serial;
    char inside_api; /* the API it was allocated with */
    int freed_data; /* use after free: a freed pool block's data written
                       (at offset; it was filled with 0xDD) */
    int last_set;   /* last is meant as it is, even 0 (a freed block's range) */
    unsigned link_changed; /* freed_link: bit k, byte p-16+k changed */
    /* freed_link: the reported bytes (the line's " at p-A .. p-B" where a
       word of the pair still holds a link the pool could hold, else
       ", somewhere in p-A .. p-B"), read back from the line */
    const char *link_range;
} expect;

static unsigned long count_before[PM_ERR_CLASS_COUNT];

static void arm(void)
{
    memset(&R, 0, sizeof R);
    for (int c = 0; c < PM_ERR_CLASS_COUNT; c++)
        count_before[c] = pm_error_count((pm_error_class)c);
    quiet();
}

static void check_counts(pm_error_class c)
{
    for (int k = 0; k < PM_ERR_CLASS_COUNT; k++) {
        unsigned long want = count_before[k] + (c != PM_ERR_NONE && (k == 0 || k == (int)c));
        if (pm_error_count((pm_error_class)k) != want)
            CZ_FAIL("pm_error_count(%s) is %lu, expected %lu", pm_error_class_name(k),
                    pm_error_count((pm_error_class)k), want);
    }
}

static void expect_none(const char *what)
{
    loud();
    if (R.n != 0)
        CZ_FAIL("%s: unexpected report: %s", what, R.msg[0]);
    check_counts(PM_ERR_NONE);
}

/* The one-line report the library must write for x (README: "Reports"),
 * built here from the expectation alone. A single damaged byte: its
 * offset is also the last damaged one; "at least" where the damage reaches
 * a field whose bytes may hide more of it (the serial, the size field). */
static const char *api_text(char api)
{
    return api == 'r' ? "pm_raw_*" : api == 'm' ? "pm_mem_*" : api == 'o' ? "pm_obj_*" : "?";
}

static void expected_line(const expect *x, char *out, size_t cap)
{
    char what[256];
    char block[64];
    snprintf(block, sizeof block, "%zu-byte block (serial %llu)", x->size,
             (unsigned long long)x->serial);
    switch (x->error) {
    case PM_ERR_BUFFER_OVERFLOW: {
        ptrdiff_t last = x->last != 0 ? x->last : x->offset;
        size_t n = (size_t)last - x->size + 1;
        snprintf(what, sizeof what, "%s%zu byte%s written past the end of a %s",
                 last >= (ptrdiff_t)x->size + 7 ? "at least " : "", n, n == 1 ? "" : "s",
                 block);
        break;
    }
    case PM_ERR_BUFFER_UNDERFLOW:
        snprintf(what, sizeof what, "%s%td byte%s written before the start of a %s",
                 x->offset <= -8 ? "at least " : "", -x->offset, x->offset == -1 ? "" : "s",
                 block);
        break;
    case PM_ERR_HEADER_CORRUPT:
        snprintf(what, sizeof what, "the %s field of a %s was overwritten",
                 x->offset < 0 ? "size" : "serial", block);
        break;
    case PM_ERR_DOUBLE_FREE:
        snprintf(what, sizeof what, "the %s at %p was already freed", block, x->address);
        break;
    case PM_ERR_USE_AFTER_FREE:
        if (x->freed_link)
            snprintf(what, sizeof what,
                     "the freed %s at %p was written after its free (the pool's free-list "
                     "link in its first 16 bytes was overwritten%s)",
                     block, x->address, x->link_range != NULL ? x->link_range : "?");
        else if (x->freed_data) {
            char range[64];
            if ((x->last != 0 || x->last_set) && x->last != x->offset)
                snprintf(range, sizeof range, "p%+td .. p%+td", x->offset, x->last);
            else
                snprintf(range, sizeof range, "p%+td", x->offset);
            snprintf(what, sizeof what,
                     "the freed %s at %p was written after its free (the 0xDD its free wrote "
                     "at %s was overwritten)",
                     block, x->address, range);
        }
        else
            snprintf(what, sizeof what, "the %s at %p is freed", block, x->address);
        break;
    case PM_ERR_INVALID_POINTER:
        if (x->inside != NULL) {
            ptrdiff_t d = (const unsigned char *)x->address - x->inside;
            /* At or past the end of the data: named so, not "into". */
            int past = d >= 0 && (size_t)d >= x->inside_n;
            ptrdiff_t k = d < 0 ? -d : past ? d - (ptrdiff_t)x->inside_n : d;
            char where[64];
            if (past && k == 0)
                snprintf(where, sizeof where, "just past the end of");
            else
                snprintf(where, sizeof where, "%td byte%s %s", k, k == 1 ? "" : "s",
                         d < 0 ? "before" : past ? "past the end of" : "into");
            snprintf(what, sizeof what,
                     "%p is not a block allocated by pymalloc: it points %s the "
                     "live %zu-byte block (serial %llu) at %p, allocated with API '%c' (%s): "
                     "offset %c%td from its data start%s",
                     x->address, where, x->inside_n, (unsigned long long)x->inside_serial,
                     (const void *)x->inside, x->inside_api, api_text(x->inside_api),
                     d < 0 ? '-' : '+', d < 0 ? -d : d,
                     d < 0 ? ", in its header" : past ? ", in its trailer" : "");
            break;
        }
        snprintf(what, sizeof what,
                 "%p is not a block allocated by pymalloc (a stack or global address, an "
                 "interior pointer, or a block freed long ago)",
                 x->address);
        break;
    case PM_ERR_API_MISMATCH:
        snprintf(what, sizeof what,
                 "the %s was allocated with API '%c' (%s) and released with API '%c' (%s)",
                 block, x->api_found, api_text(x->api_found), x->api_expected,
                 api_text(x->api_expected));
        break;
    default:
        snprintf(what, sizeof what, "?");
        break;
    }
    snprintf(out, cap, "pymalloc: %s: %s: %s", x->entry, pm_error_class_name(x->error), what);
}

static void expect_report(const expect *x, const char *what)
{
    loud();
    if (R.n != 1)
        CZ_FAIL("%s: %d reports, expected one %s", what, R.n, pm_error_class_name(x->error));
    const pm_error_report *r = &R.r[0];
    if (r->error != x->error)
        CZ_FAIL("%s: reported %s, expected %s (%s)", what, pm_error_class_name(r->error),
                pm_error_class_name(x->error), R.msg[0]);
    if (r->entry == NULL || strcmp(r->entry, x->entry) != 0)
        CZ_FAIL("%s: entry %s, expected %s", what, r->entry ? r->entry : "(null)", x->entry);
    if (r->address != x->address)
        CZ_FAIL("%s: address %p, expected %p", what, r->address, x->address);
    if (r->size != x->size || r->serial != x->serial)
        CZ_FAIL("%s: size %zu serial %llu, expected size %zu serial %llu (%s)", what, r->size,
                (unsigned long long)r->serial, x->size, (unsigned long long)x->serial, R.msg[0]);
    expect xr = *x;
    if (x->freed_link) {
        /* The bytes named: p-16 .. p-1, the first the offset, at least one
         * of them changed (which word of the pair was written is told by
         * the other's holding a link the pool could hold: not modelled). */
        const char *m = r->message != NULL ? strstr(r->message, "was overwritten") : NULL;
        long a = 0, b = 0;
        int n = 0;
        if (m != NULL) {
            m += strlen("was overwritten");
            xr.link_range = m;
            if (sscanf(m, " at p-%ld .. p-%ld)%n", &a, &b, &n) == 2 ||
                sscanf(m, ", somewhere in p-%ld .. p-%ld)%n", &a, &b, &n) == 2) {
            } else if (sscanf(m, " at p-%ld)%n", &a, &n) == 1 ||
                       sscanf(m, ", somewhere in p-%ld)%n", &a, &n) == 1) {
                b = a;
            } else {
                n = 0;
            }
        }
        if (n == 0 || a > 16 || b < 1 || b > a || -a != r->offset)
            CZ_FAIL("%s: offset %td, and no range of the link's bytes from it (%s)", what,
                    r->offset, R.msg[0]);
        unsigned named = 0;
        for (long k = 16 - a; k <= 16 - b; k++)
            named |= 1u << k;
        if ((named & x->link_changed) == 0)
            CZ_FAIL("%s: none of the bytes named was changed (changed: %#x) (%s)", what,
                    x->link_changed, R.msg[0]);
        static char range[64];
        snprintf(range, sizeof range, "%.*s", n - 1 > 0 ? n - 1 : 0, m);
        xr.link_range = range;
        xr.offset = r->offset;
    }
    x = &xr;
    if (r->offset != x->offset)
        CZ_FAIL("%s: offset %td, expected %td (%s)", what, r->offset, x->offset, R.msg[0]);
    if (r->api_expected != x->api_expected || r->api_found != x->api_found)
        CZ_FAIL("%s: APIs expected '%c' found '%c', should be '%c' and '%c'", what,
                r->api_expected ? r->api_expected : '0', r->api_found ? r->api_found : '0',
                x->api_expected ? x->api_expected : '0', x->api_found ? x->api_found : '0');
    char want[512];
    expected_line(x, want, sizeof want);
    if (r->message == NULL || strcmp(r->message, want) != 0)
        CZ_FAIL("%s: message \"%s\", expected \"%s\"", what, r->message ? r->message : "(null)",
                want);
    check_counts(x->error);
}

/* ---------------------------------------------------------------------------
 * Domains.
 */
typedef struct cz_domain {
    const char *name;
    char api;
    pm_domain d;
    int family; /* the malloc family (the override's copy, pm_fz_*) */
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    const char *free_name, *realloc_name, *malloc_name;
} cz_domain;

/* The pm_* domains first, at their pm_domain values, so that an input
 * written for three domains decodes as before whenever its domain bytes
 * are below 3. Then the malloc family (src/override.c's code, renamed:
 * operations.c tells why), by its own names and by glibc's other ones, with
 * the API of MEM ('m'): each report names the function called. Its
 * realloc(p, 0) frees (glibc's rule): the harness asks it for 1 byte
 * instead (fam_size), which keeps one model for all five. */
enum { NDOM = 5 };
static const cz_domain domains[NDOM] = {
    {"raw", 'r', PM_DOMAIN_RAW, 0, pm_raw_malloc, pm_raw_calloc, pm_raw_realloc, pm_raw_free,
     "pm_raw_free", "pm_raw_realloc", "pm_raw_malloc"},
    {"mem", 'm', PM_DOMAIN_MEM, 0, pm_mem_malloc, pm_mem_calloc, pm_mem_realloc, pm_mem_free,
     "pm_mem_free", "pm_mem_realloc", "pm_mem_malloc"},
    {"obj", 'o', PM_DOMAIN_OBJ, 0, pm_obj_malloc, pm_obj_calloc, pm_obj_realloc, pm_obj_free,
     "pm_obj_free", "pm_obj_realloc", "pm_obj_malloc"},
    {"malloc family", 'm', PM_DOMAIN_MEM, 1, pm_fz_malloc, pm_fz_calloc, pm_fz_realloc,
     pm_fz_free, "free", "realloc", "malloc"},
    {"glibc's names", 'm', PM_DOMAIN_MEM, 1, pm_fz___libc_malloc, pm_fz___libc_calloc,
     pm_fz___libc_realloc, pm_fz___libc_free, "__libc_free", "__libc_realloc", "__libc_malloc"},
};

/* The size a realloc through D is asked for: n, or 1 for 0 in the malloc
 * family (whose realloc(p, 0) is a free). */
static size_t fam_size(const cz_domain *D, size_t n) { return D->family && n == 0 ? 1 : n; }

/* ---------------------------------------------------------------------------
 * Addresses this process freed through the debug layer (and has not been
 * given again), with the freed block's size and serial: the registry may
 * remember any of them (see the top of the file).
 */
typedef struct freed_rec {
    uintptr_t addr; /* 0: empty slot */
    size_t size;
    uint64_t serial;
    char api;
    int freed; /* 0: the address was handed out again since */
} freed_rec;

/* Two generations of open-addressing tables: notes go into the current one;
 * when it holds GEN_NOTES addresses the previous one is dropped. So the last
 * GEN_NOTES frees at least are always known: far more than the registry can
 * remember (256 per stripe, 64 stripes), while memory stays bounded (ASan's
 * quarantine makes nearly every address new). */
#define GEN_NOTES (512u * 1024u)
#define GEN_CAP (2u * GEN_NOTES) /* a power of two; half full at most */

typedef struct freed_gen {
    freed_rec *tab;
    size_t used;
} freed_gen;

static freed_gen gens[2]; /* [0] current, [1] previous */

static freed_rec *freed_slot(freed_gen *g, uintptr_t a)
{
    size_t mask = GEN_CAP - 1;
    size_t i = (size_t)((a >> 4) * UINT64_C(0x9E3779B97F4A7C15) >> 20) & mask;
    while (g->tab[i].addr != 0 && g->tab[i].addr != a)
        i = (i + 1) & mask;
    return &g->tab[i];
}

static void freed_note(const void *p, size_t size, uint64_t serial, char api)
{
    if (gens[0].tab == NULL || gens[0].used >= GEN_NOTES) {
        free(gens[1].tab);
        gens[1] = gens[0];
        gens[0].tab = calloc(GEN_CAP, sizeof(freed_rec));
        gens[0].used = 0;
        if (gens[0].tab == NULL)
            CZ_FAIL("out of memory for the harness");
    }
    freed_rec *r = freed_slot(&gens[0], (uintptr_t)p);
    if (r->addr == 0)
        gens[0].used++;
    *r = (freed_rec){(uintptr_t)p, size, serial, api, 1};
    if (gens[1].tab != NULL) { /* the newest note wins */
        freed_rec *o = freed_slot(&gens[1], (uintptr_t)p);
        if (o->addr != 0)
            o->freed = 0;
    }
}

static void freed_reused(const void *p)
{
    for (int k = 0; k < 2; k++) {
        if (gens[k].tab == NULL)
            continue;
        freed_rec *r = freed_slot(&gens[k], (uintptr_t)p);
        if (r->addr != 0)
            r->freed = 0;
    }
}

static const freed_rec *freed_find(const void *p)
{
    for (int k = 0; k < 2; k++) {
        if (gens[k].tab == NULL || p == NULL)
            continue;
        const freed_rec *r = freed_slot(&gens[k], (uintptr_t)p);
        if (r->addr != 0 && r->freed)
            return r;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------
 * Blocks.
 */
static uint64_t get_be64(const unsigned char *at)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | at[i];
    return v;
}

/* The serial of live block p of n bytes: the trailer's second word. */
static uint64_t serial_of(const unsigned char *p, size_t n) { return get_be64(p + n + 8); }

/* The serial of block p of n bytes that the library just made (malloc,
 * calloc, memalign, a successful realloc): every block gets a new serial
 * from one counter, bumped by each of them, and this process has one
 * thread, so serials only grow, from call to call and input to input. */
static uint64_t last_serial;
static uint64_t new_serial(const unsigned char *p, size_t n)
{
    uint64_t s = serial_of(p, n);
    if (s <= last_serial)
        CZ_FAIL("a new %zu-byte block got serial %llu, not above the last one, %llu", n,
                (unsigned long long)s, (unsigned long long)last_serial);
    last_serial = s;
    return s;
}

typedef struct block {
    unsigned char *p;
    size_t n;
    uint64_t serial;
    const cz_domain *D;
} block;

static size_t take_size(fz_in *in)
{
    uint8_t sel = fz_u8(in);
    uint16_t v = fz_u16(in);
    switch (sel % 3u) {
    case 0:
        return v % 64u;
    case 1:
        return 64u + v % 512u;
    default:
        return v;
    }
}

/* A new block, or 0 if the allocator had no memory (the case is skipped). */
static int alloc_block(block *b, const cz_domain *D, uint8_t how, size_t n)
{
    unsigned char *p;
    if (how % 4u == 2)
        n = fam_size(D, n); /* (made by a realloc) */
    b->D = D;
    b->n = n;
    arm();
    switch (how % 4u) {
    case 0:
        p = D->malloc(n);
        break;
    case 1:
        p = (how & 4) ? D->calloc(n, 1) : D->calloc(1, n);
        break;
    case 2: {
        unsigned char *q = D->malloc((size_t)how * 3u);
        if (q == NULL) {
            p = NULL;
            break;
        }
        freed_reused(q);
        uint64_t s = new_serial(q, (size_t)how * 3u);
        p = D->realloc(q, n);
        if (p == NULL)
            D->free(q);
        else if (p != q)
            freed_note(q, (size_t)how * 3u, s, D->api);
        break;
    }
    default: {
        size_t al = (size_t)32 << (how >> 2 & 7u);
        p = D->family ? pm_fz_memalign(al, n) : pm_i_domain_memalign(D->d, al, n);
        break;
    }
    }
    expect_none("allocation");
    if (p == NULL)
        return 0;
    freed_reused(p);
    b->p = p;
    b->serial = new_serial(p, n);
    C.p = p;
    C.size = n;
    C.dom = D->name;
    return 1;
}

/* Free a block that must be intact. */
static void free_clean(block *b, const char *what)
{
    arm();
    b->D->free(b->p);
    expect_none(what);
    freed_note(b->p, b->n, b->serial, b->D->api);
}

enum { T_FREE, T_REALLOC, T_CHECK, T_USABLE, T_COUNT };
static const char *const trigger_names[T_COUNT] = {"free", "realloc", "pm_check_block",
                                                   "usable_size"};

/* What the last usable-size trigger gave. */
static size_t last_usable;

/* Run trigger t on pointer q through domain D (n2: the size for realloc).
 * Returns what realloc gave (NULL otherwise). */
static void *run_trigger(int t, const cz_domain *D, void *q, size_t n2)
{
    void *r = NULL;
    arm();
    switch (t) {
    case T_FREE:
        D->free(q);
        break;
    case T_REALLOC:
        r = D->realloc(q, n2);
        break;
    case T_CHECK: {
        int rc = pm_check_block(q);
        loud();
        if (rc != (R.n ? -1 : 0))
            CZ_FAIL("pm_check_block gave %d after %d reports", rc, R.n);
        break;
    }
    default: {
        size_t u = last_usable =
            D->family ? pm_fz_malloc_usable_size(q) : pm_i_domain_usable_size(D->d, q);
        loud();
        if (R.n != 0 && u != 0)
            CZ_FAIL("usable_size gave %zu after a report", u);
        break;
    }
    }
    loud();
    return r;
}

static const char *entry_of(int t, const cz_domain *D)
{
    switch (t) {
    case T_FREE:
        return D->free_name;
    case T_REALLOC:
        return D->realloc_name;
    case T_CHECK:
        return "pm_check_block";
    default:
        return "malloc_usable_size";
    }
}

/* After a trigger that found nothing wrong with live block b: realloc gave
 * a new block (free it), free freed it, the others left it (free it). */
static void finish_clean(block *b, int t, unsigned char *r, size_t n2)
{
    if (t == T_FREE) {
        freed_note(b->p, b->n, b->serial, b->D->api);
        return;
    }
    if (t == T_REALLOC) {
        if (r == NULL) {
            free_clean(b, "free after a failed realloc");
            return;
        }
        if (r != b->p)
            freed_note(b->p, b->n, b->serial, b->D->api);
        freed_reused(r);
        block nb = {r, n2, new_serial(r, n2), b->D};
        free_clean(&nb, "free of the realloc'd block");
        return;
    }
    free_clean(b, "free after the check");
}

/* ---------------------------------------------------------------------------
 * The cases.
 */
static void case_inbounds(block *b, int t, const uint8_t *a, fz_in *in)
{
    (void)in;
    t %= T_COUNT;
    C.trigger = trigger_names[t];
    size_t n2 = fam_size(b->D, (size_t)a[3] * 3u);
    if (b->n == 0) {
        /* Nothing to write: the trigger alone must not report. */
    } else {
        size_t off = ((size_t)a[0] | (size_t)a[1] << 8) % b->n;
        b->p[off] = a[2];
    }
    unsigned char *r = run_trigger(t, b->D, b->p, n2);
    expect_none("an in-bounds write");
    if (t == T_REALLOC && r == NULL)
        CZ_FAIL("realloc to %zu bytes failed", n2);
    if (t == T_USABLE && last_usable != b->n) /* exactly the size asked for */
        CZ_FAIL("usable_size gave %zu", last_usable);
    finish_clean(b, t, r, n2);
}

static void case_damage(block *b, int t, const uint8_t *a, fz_in *in)
{
    (void)in;
    t %= 3; /* usable_size checks nothing */
    C.trigger = trigger_names[t];
    size_t n2 = fam_size(b->D, (size_t)a[3] * 3u);
    ptrdiff_t off = (a[0] & 1) ? (ptrdiff_t)b->n + (a[1] & 15) : -16 + (a[1] & 15);
    unsigned char old = b->p[off];
    unsigned char val = a[2];
    b->p[off] = val;

    expect x = {0};
    if (val != old) {
        x.entry = entry_of(t, b->D);
        x.address = b->p;
        x.size = b->n;
        x.serial = b->serial;
        x.offset = off;
        x.api_expected = b->D->api;
        x.api_found = b->D->api;
        if (off < -8)
            x.error = PM_ERR_HEADER_CORRUPT; /* the size field */
        else if (off < 0)
            x.error = PM_ERR_BUFFER_UNDERFLOW; /* API id, pad */
        else if (off < (ptrdiff_t)b->n + 8)
            x.error = PM_ERR_BUFFER_OVERFLOW; /* pad */
        else
            x.error = PM_ERR_HEADER_CORRUPT; /* the serial field */
    }
    unsigned char *r = run_trigger(t, b->D, b->p, n2);
    if (x.error == PM_ERR_NONE) {
        expect_none("a byte rewritten with its own value");
        finish_clean(b, t, r, n2);
        return;
    }
    expect_report(&x, "a damaged byte");
    if (r != NULL)
        CZ_FAIL("realloc of a damaged block gave %p, expected NULL", (void *)r);
    /* The library leaked the block: make it whole and free it. */
    b->p[off] = old;
    free_clean(b, "free of the repaired block");
}

/* Free b, then use its address again. */
static void case_after(block *b, int t, const uint8_t *a, fz_in *in)
{
    (void)in;
    t %= T_COUNT;
    C.trigger = trigger_names[t];
    free_clean(b, "the first free");
    const cz_domain *D2 = &domains[a[0] % NDOM];
    void *r = run_trigger(t, D2, b->p, fam_size(D2, a[3]));
    expect x = {t == T_FREE ? PM_ERR_DOUBLE_FREE : PM_ERR_USE_AFTER_FREE,
                entry_of(t, D2),
                b->p,
                b->n,
                b->serial,
                0,
                t == T_CHECK ? b->D->api : D2->api,
                b->D->api, 0, 0, NULL, 0, 0, 0, 0, 0, 0, NULL};
    expect_report(&x, "a use of a freed block");
    if (r != NULL)
        CZ_FAIL("realloc of a freed block gave %p", r);
}

static char global_buf[64];

static void case_invalid(block *b, int t, const uint8_t *a, fz_in *in)
{
    (void)in;
    t %= T_COUNT;
    C.trigger = trigger_names[t];
    char stack_buf[64];
#if UINTPTR_MAX > UINT32_MAX
#define WILD_TOP ((uintptr_t)1 << 47) /* the end of x86-64's user space */
#else
#define WILD_TOP ((uintptr_t)0xFFFF0000u) /* above a 32-bit process's stack */
#endif
    static const uintptr_t wild[] = {1, 2, 8, 16, 4096, UINTPTR_MAX, UINTPTR_MAX - 15,
                                     WILD_TOP, WILD_TOP - 16};
    uint16_t v = (uint16_t)(a[1] | a[2] << 8);
    void *q;
    int interior = 0;
    switch (a[0] % 5u) {
    case 0: { /* interior: p-16 .. p+N+15, not p */
        size_t span = b->n + 31;
        ptrdiff_t d = (ptrdiff_t)(v % span) - 16;
        if (d >= 0)
            d++;
        q = b->p + d;
        interior = 1;
        break;
    }
    case 1:
        q = stack_buf + v % sizeof stack_buf;
        break;
    case 2:
        q = global_buf + v % sizeof global_buf;
        break;
    case 3:
        q = (void *)(wild[v % (sizeof wild / sizeof wild[0])] + (uintptr_t)a[3] * 16u);
        break;
    default:
        q = NULL;
        break;
    }
    const cz_domain *D = b->D;
    size_t n2 = fam_size(D, a[3]);
    unsigned char *r = run_trigger(t, D, q, n2);
    if (q == NULL) {
        expect_none("NULL");
        if (t == T_REALLOC) { /* realloc(NULL, n) is malloc(n) */
            if (r == NULL)
                CZ_FAIL("realloc(NULL, %zu) failed", n2);
            freed_reused(r);
            block nb = {r, n2, new_serial(r, n2), D};
            free_clean(&nb, "free of realloc(NULL, n)");
        }
    } else {
        const freed_rec *f = freed_find(q);
        expect x = {PM_ERR_INVALID_POINTER, entry_of(t, D), q, 0, 0, 0,
                    t == T_CHECK ? 0 : D->api, 0, 0, 0,
                    /* the report names the block it points into */
                    interior ? b->p : NULL, b->n, b->serial, D->api, 0, 0, 0, NULL};
        if (f != NULL && R.n == 1 && R.r[0].error != PM_ERR_INVALID_POINTER) {
            /* A block freed earlier at this address, still remembered. */
            x.error = t == T_FREE ? PM_ERR_DOUBLE_FREE : PM_ERR_USE_AFTER_FREE;
            x.size = f->size;
            x.serial = f->serial;
            x.api_found = f->api;
            if (t == T_CHECK)
                x.api_expected = f->api;
        }
        expect_report(&x, "an invalid pointer");
        if (r != NULL)
            CZ_FAIL("realloc of an invalid pointer gave %p", (void *)r);
    }
    free_clean(b, "free of the block after an invalid pointer");
}

static void case_mismatch(block *b, int t, const uint8_t *a, fz_in *in)
{
    (void)in;
    t %= 2; /* free or realloc */
    C.trigger = trigger_names[t];
    /* a[0] picks among the domains of another API */
    const cz_domain *other[NDOM];
    unsigned nother = 0;
    for (unsigned i = 0; i < NDOM; i++)
        if (domains[i].api != b->D->api)
            other[nother++] = &domains[i];
    const cz_domain *D2 = other[a[0] % nother];
    unsigned char *r = run_trigger(t, D2, b->p, fam_size(D2, a[3]));
    expect x = {PM_ERR_API_MISMATCH, entry_of(t, D2), b->p, b->n, b->serial, 0, D2->api,
                b->D->api, 0, 0, NULL, 0, 0, 0, 0, 0, 0, NULL};
    expect_report(&x, "another domain");
    if (r != NULL)
        CZ_FAIL("realloc through another domain gave %p", (void *)r);
    free_clean(b, "free through the right domain");
}

/* Bytes of the header (p-16 .. p-1) and trailer (p+N .. p+N+15) changed at
 * once: any set of them (both pads, the size field and an overflow, ...),
 * each written with the input's value or with its own (no trace). The
 * report follows check_bytes' rules (modes/debug.c), restated here from
 * README's layout: damage reaching the API id or pad before the data is an
 * underflow from its first damaged byte; else damage of the pad after the
 * data an overflow, from its first to its last damaged byte (into the
 * serial: "at least"), even with the size field damaged too; else the size
 * field's, else the serial field's damage is a header corruption. Three
 * more bytes: the value, which masked bytes keep their value, realloc's
 * size. */
static void case_span(block *b, int t, const uint8_t *a, fz_in *in)
{
    t %= 3;
    C.trigger = trigger_names[t];
    uint32_t mask = (uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16 |
                    (uint32_t)a[3] << 24;
    uint8_t val = fz_u8(in), keep = fz_u8(in);
    size_t n2 = fam_size(b->D, (size_t)fz_u8(in) * 3u);
    unsigned char *at[32], orig[32];
    for (int k = 0; k < 32; k++) {
        at[k] = k < 16 ? b->p - 16 + k : b->p + b->n + (k - 16);
        orig[k] = *at[k];
    }
    for (int k = 0; k < 32; k++)
        if (mask >> k & 1)
            *at[k] = (keep >> (k & 7) & 1) ? orig[k] : val;

    int hlo = -1, hhi = -1, tlo = -1, thi = -1; /* damaged bytes, k */
    for (int k = 0; k < 32; k++) {
        if (*at[k] == orig[k])
            continue;
        if (k < 16) {
            if (hlo < 0)
                hlo = k;
            hhi = k;
        } else {
            if (tlo < 0)
                tlo = k;
            thi = k;
        }
    }
    ptrdiff_t n = (ptrdiff_t)b->n;
    expect x = {0};
    if (hlo >= 0 || tlo >= 0) {
        x.entry = entry_of(t, b->D);
        x.address = b->p;
        x.size = b->n;
        x.serial = b->serial;
        x.api_expected = x.api_found = b->D->api;
        if (hlo >= 0 && hhi >= 8) {
            x.error = PM_ERR_BUFFER_UNDERFLOW;
            x.offset = hlo - 16;
        } else if (tlo >= 0 && tlo < 24) {
            x.error = PM_ERR_BUFFER_OVERFLOW;
            x.offset = n + (tlo - 16);
            x.last = n + (thi - 16);
        } else if (hlo >= 0) {
            x.error = PM_ERR_HEADER_CORRUPT; /* the size field */
            x.offset = hlo - 16;
        } else {
            x.error = PM_ERR_HEADER_CORRUPT; /* the serial field */
            x.offset = n + (tlo - 16);
        }
    }
    unsigned char *r = run_trigger(t, b->D, b->p, n2);
    if (x.error == PM_ERR_NONE) {
        expect_none("bytes rewritten with their own values");
        finish_clean(b, t, r, n2);
        return;
    }
    expect_report(&x, "damaged bytes");
    if (r != NULL)
        CZ_FAIL("realloc of a damaged block gave %p, expected NULL", (void *)r);
    for (int k = 0; k < 32; k++) /* the library leaked the block: repair, free */
        *at[k] = orig[k];
    free_clean(b, "free of the repaired block");
}

static int case_waf_held(block *b, int t, const uint8_t *a);

/* A write into a freed block. A freed pool block (pymalloc_debug's mem and
 * obj blocks up to 512 bytes) holds the pool's free-list link and its
 * complement in its first 16 bytes (p-16 .. p-1): a change there must be
 * reported, once, as a use after free ("was written after its free") of
 * that block, its size and serial, by the malloc that meets it, which
 * still returns a block; the block is leaked, never handed out again.
 * Its data and trailer hold 0xDD: a change in their first bytes (16 for
 * blocks of up to 16 bytes, 32 up to 48, 64 above) is reported the same
 * way when the link is whole, with the offset; a change further on is
 * not checked by a malloc, never reported by one (the check of the heap
 * at exit reads every byte of a freed block no malloc took again: the
 * harness undoes its writes into a block the mallocs did not meet). Mallocs of the block's size through
 * its domain are made until one reports, gives the block back, or 256 have
 * been made (the block went back to a pool that is not the first: not
 * decided). Other blocks (glibc's memory, ASan's quarantine) are only
 * freed. Bytes: a 16-bit mask of the header bytes, the value, which keep
 * their value, and (bit 0 of the trigger byte) a write into the data at
 * a[3] % (N + 16). */
static void case_waf(block *b, int t, const uint8_t *a, fz_in *in)
{
    (void)in;
    C.trigger = "malloc";
    int pool = pm_i_pool_owns(b->p - 16);
    if (!pool || pm_i_debug_quarantine_pools) {
        if (!case_waf_held(b, t, a))
            free_clean(b, "the free");
        return;
    }
    free_clean(b, "the free");
    unsigned mask = (unsigned)a[0] | (unsigned)a[1] << 8;
    uint8_t val = a[2], keep = (uint8_t)(t >> 1);
    unsigned char orig[16];
    memcpy(orig, b->p - 16, 16);
    for (int k = 0; k < 16; k++)
        if (mask >> k & 1)
            b->p[k - 16] = (keep >> (k & 7) & 1) ? orig[k] : val;
    int changed = 0;
    unsigned changed_mask = 0;
    for (int k = 0; k < 16; k++)
        if (b->p[k - 16] != orig[k])
            changed++, changed_mask |= 1u << k;
    int link = changed != 0, at = -1, wrote = -1;
    if (t & 1) {
        wrote = at = (int)(a[3] % (b->n + 16));
        b->p[at] = val;
        /* What a malloc taking the block again checks of its 0xDD, by
         * PYMALLOC_CHECK_FREED: first (1), its first 16, 32 or 64 bytes;
         * all (2), every byte, the 16 after the data too; off (0), none. */
        size_t checked = pm_i_debug_check_freed == 2   ? b->n + 16
                         : pm_i_debug_check_freed == 0 ? 0
                         : b->n <= 16                  ? 16
                         : b->n <= 48                  ? 32
                                                       : 64;
        if ((size_t)at >= checked || val == 0xDD)
            at = -1; /* not checked, or unchanged */
    }
    int damaged = link || at >= 0;

    enum { WAF_MAX = 256 };
    static unsigned char *held[WAF_MAX];
    int nheld = 0, reported = 0;
    while (nheld < WAF_MAX) {
        arm();
        unsigned char *q = b->D->malloc(b->n);
        loud();
        if (q == NULL)
            CZ_FAIL("malloc(%zu) failed after a write into a freed block", b->n);
        freed_reused(q);
        if (R.n != 0) {
            expect x = {PM_ERR_USE_AFTER_FREE, b->D->malloc_name, b->p, b->n, b->serial, -16,
                        b->D->api, b->D->api, 0, 1, NULL, 0, 0, 0, 0, 0, 0, NULL};
            if (!damaged)
                CZ_FAIL("a malloc reported after bytes of a freed block were rewritten with "
                        "their own values or past the bytes checked: %s", R.msg[0]);
            x.link_changed = changed_mask;
            if (!link) {
                x.freed_link = 0;
                x.freed_data = 1;
                x.offset = at;
            }
            expect_report(&x, link ? "a write into a freed block's link"
                                   : "a write into a freed block's data");
            if (q == b->p)
                CZ_FAIL("the malloc that reported the freed block's damaged link gave it out");
            reported = 1;
        } else {
            check_counts(PM_ERR_NONE);
        }
        held[nheld++] = q;
        (void)new_serial(q, b->n);
        if (reported || q == b->p)
            break;
    }
    if (damaged && !reported && nheld > 0 && held[nheld - 1] == b->p)
        CZ_FAIL("the freed block's link (%d header bytes changed) or byte p+%d was written "
                "and a malloc gave the block out again without a report",
                changed, at);
    /* Not met (the block is on a pool's list the mallocs did not reach):
     * its link made whole again before the frees below, which may move it
     * (only a free rewrites a freed block's link), so no later case meets
     * it; and its data too, checked or not, unless a malloc took the block
     * again (and wrote it), so the check of the heap at exit, which reads
     * every byte, does not meet it either. */
    if (!reported && !(nheld > 0 && held[nheld - 1] == b->p)) {
        if (link)
            memcpy(b->p - 16, orig, 16);
        if (wrote >= 0)
            b->p[wrote] = 0xDD;
    }
    for (int i = 0; i < nheld; i++) {
        arm();
        b->D->free(held[i]);
        expect_none("free of a block taken after a write into a freed block");
        freed_note(held[i], b->n, serial_of(held[i], b->n), b->D->api);
    }
}

/* A write into a freed block the debug hooks' quarantine holds (the C
 * library's blocks: all of malloc_debug's, the raw domain's, those over
 * 512 bytes and the aligned ones of pymalloc_debug; pool blocks too with
 * PYMALLOC_QUARANTINE_POOLS=on), filled with 0xDD by its free. Each
 * byte of its header (p-16 .. p-1) the mask names is written (keep: with
 * its own value), and with t & 1 one byte of its data or trailer, at
 * a[3] % (the bytes checked when it leaves: N + 16, at most 64, all with
 * PYMALLOC_CHECK_FREED=2). The quarantine is emptied first (pm_trim, no
 * report), so the block is the oldest held. Then, t & 2: blocks of 64 KiB
 * (an eighth of the budget at most) are allocated and freed through the
 * domain a[2] % NDOM picks until it leaves, pushed out, when the free that
 * pushes it must report it; else (or if it never left) pm_trim must. A
 * changed byte is reported once as a use after free ("was written after
 * its free", the 0xDD at p+first .. p+last overwritten), with its size,
 * serial and the block's API (the free's as the expected one; pm_trim has
 * none: the block's); bytes written with 0xDD never are. The reported
 * block is leaked by the library: the harness keeps a pointer to it (for
 * LeakSanitizer), up to KEPT_BYTES a process, and past that only frees. */
#define KEPT_MAX 65536
#define KEPT_BYTES ((size_t)128 << 20)
static const void *kept[KEPT_MAX];
static size_t nkept, kept_bytes;

struct held_find {
    const void *base;
    int found;
};

static void held_one(const void *base, void *arg)
{
    struct held_find *h = arg;
    if (base == h->base)
        h->found = 1;
}

static int held_in_quarantine(const unsigned char *p)
{
    struct held_find h = {p - 16, 0};
    if (pm_i_debug_quarantine_each(held_one, &h) != 0)
        CZ_FAIL("a part of the quarantine stayed busy with no other thread running");
    return h.found;
}

/* Whether the case ran (the block was held and damaged, or not changed). */
static int case_waf_held(block *b, int t, const uint8_t *a)
{
    size_t q_blocks, q_bytes, budget;
    if (pm_i_debug_check_freed == 0 || !pm_i_debug_quarantine_stats(&q_blocks, &q_bytes, &budget) ||
        budget == 0 || nkept >= KEPT_MAX || kept_bytes > KEPT_BYTES)
        return 0;
    arm();
    pm_trim();
    expect_none("pm_trim before a block is held");
    free_clean(b, "the free");
    if (!held_in_quarantine(b->p))
        return 1; /* not held (too large, an aligned block's own base, ...): only freed */
    C.trigger = t & 2 ? "frees that push it out" : "pm_trim";
    unsigned mask = (unsigned)a[0] | (unsigned)a[1] << 8;
    uint8_t val = a[2], keep = (uint8_t)(t >> 2);
    for (int k = 0; k < 16; k++)
        if (mask >> k & 1 && !(keep >> (k & 7) & 1))
            b->p[k - 16] = val;
    size_t span = b->n + 16, checked = pm_i_debug_check_freed == 2 || span <= 64 ? span : 64;
    if (t & 1)
        b->p[a[3] % checked] = val;
    /* The damage, as the quarantine's check must find it. */
    ptrdiff_t first = 0, last = 0;
    int damaged = 0;
    for (ptrdiff_t i = -16; i < (ptrdiff_t)span; i++)
        if (b->p[i] != 0xDD) {
            if (!damaged)
                first = i;
            last = i;
            damaged = 1;
        }

    const cz_domain *D2 = &domains[a[2] % NDOM];
    size_t fill = (size_t)64 << 10;
    if (fill > budget / 8)
        fill = budget / 8;
    size_t rounds = (t & 2) && fill > 0 ? budget / fill + 4 : 0;
    const char *entry = "pm_trim";
    char api_expected = b->D->api;
    arm();
    for (size_t i = 0; i < rounds && R.n == 0; i++) {
        void *f = D2->malloc(fill);
        if (f == NULL)
            break;
        freed_reused(f);
        uint64_t s = serial_of(f, fill);
        if (s <= last_serial)
            CZ_FAIL("a new %zu-byte block got serial %llu, not above the last one, %llu", fill,
                    (unsigned long long)s, (unsigned long long)last_serial);
        last_serial = s;
        D2->free(f);
        freed_note(f, fill, s, D2->api);
        entry = D2->free_name;
        api_expected = D2->api;
    }
    if (R.n == 0) {
        entry = "pm_trim";
        api_expected = b->D->api;
        pm_trim();
    }
    loud();
    if (!damaged) {
        expect_none("bytes of a held block rewritten with 0xDD");
        return 1;
    }
    expect x = {PM_ERR_USE_AFTER_FREE, entry, b->p, b->n, b->serial, first, api_expected,
                b->D->api, last, 0, NULL, 0, 0, 0, 1, 1, 0, NULL};
    expect_report(&x, "a write into a block held in the quarantine");
    if (!pm_i_pool_owns(b->p - 16)) { /* the C library's memory: keep it reachable */
        kept[nkept++] = b->p - 16;
        kept_bytes += span + 16;
    }
    return 1;
}

enum { K_INBOUNDS, K_DAMAGE, K_AFTER, K_INVALID, K_MISMATCH, K_SPAN, K_WAF, K_COUNT };
static const char *const kind_names[K_COUNT] = {"in-bounds write", "damage", "use after free",
                                                "invalid pointer", "API mismatch",
                                                "damaged bytes", "write after free"};
static void (*const cases[K_COUNT])(block *, int, const uint8_t *, fz_in *) = {
    case_inbounds, case_damage, case_after, case_invalid, case_mismatch, case_span, case_waf};

/* ---------------------------------------------------------------------------
 * Entry points.
 */

/* The debug modes, in registry order: the names containing "debug". */
static size_t debug_modes(const char **out, size_t max)
{
    const char *const *names = pm_mode_names();
    size_t n = 0;
    for (size_t i = 0; names[i] != NULL && n < max; i++)
        if (strstr(names[i], "debug") != NULL)
            out[n++] = names[i];
    return n;
}

/* libFuzzer only: fix this process's mode (PYMALLOC_MODE, or "debug") and
 * send the reports' text to /dev/null. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (getenv("PYMALLOC_MODE") == NULL && pm_set_mode("debug") != 0) {
        perror("corruption: pm_set_mode(\"debug\")");
        exit(2);
    }
    pm_raw_free(pm_raw_malloc(1));
    fz_abort_to_libfuzzer();
    if (!pm_debug_enabled()) {
        fprintf(stderr, "corruption: mode %s has no debug hooks: set PYMALLOC_MODE to a debug "
                        "mode\n", pm_mode_name());
        exit(2);
    }
    if (getenv("CORRUPTION_VERBOSE") == NULL) {
        quiet_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        saved_stderr = fcntl(2, F_DUPFD_CLOEXEC, 3);
        if (quiet_fd < 0 || saved_stderr < 0) {
            perror("corruption: /dev/null");
            exit(2);
        }
    }
    fprintf(stderr, "corruption: this process runs mode %s (PYMALLOC_MODE); inputs naming "
                    "another mode are rejected; reports are discarded (CORRUPTION_VERBOSE=1 "
                    "prints them)\n", pm_mode_name());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *names[16];
    size_t n = debug_modes(names, 16);
    if (n == 0)
        FZ_FAIL("no mode name contains \"debug\"");
    const char *want = names[data[0] % n];
    if (pm_set_mode(want) != 0)
        return -1; /* another mode owns this process */
    memset(&C, 0, sizeof C);
    C.mode = pm_mode_name();
    if (!pm_debug_enabled())
        FZ_FAIL("mode %s (from \"%s\"): pm_debug_enabled() is 0", C.mode, want);
    fz_selftest();
    pm_set_error_handler(handler, NULL);

    fz_in in = {data + 1, size - 1};
    for (C.step = 1; !fz_done(&in) && C.step <= MAX_CASES; C.step++) {
        uint8_t kind = fz_u8(&in) % K_COUNT;
        const cz_domain *D = &domains[fz_u8(&in) % NDOM];
        uint8_t how = fz_u8(&in);
        size_t bytes = take_size(&in);
        int t = fz_u8(&in);
        uint8_t a[4] = {fz_u8(&in), fz_u8(&in), fz_u8(&in), fz_u8(&in)};
        C.kind = kind_names[kind];
        C.trigger = "allocation";
        C.p = NULL;
        C.size = bytes;
        C.dom = D->name;
        block b;
        if (!alloc_block(&b, D, how, bytes))
            continue;
        cases[kind](&b, t, a, &in);
    }
    pm_set_error_handler(NULL, NULL);
    return 0;
}
