/*
 * tests/test_debug.c - the debug hooks name every heap bug, in every domain:
 * death tests (a forked child must die with SIGABRT after printing the
 * expected report) and the same bugs in-process through an error handler
 * (class, entry, address, size, serial, offset, APIs). Skipped (77) in a
 * mode without debug hooks.
 */
#include "pin_env.h"
#include "debug_cases.h"
#include "pm_debug.h"
#include "pm_internal.h"
#include "sanitizers.h"

#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <stdarg.h>

static void print_expect(const dcase_expect *x)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "EXPECT: %s\n", x->line);
    if (write(2, buf, (size_t)n) < 0)
        _exit(3);
}

typedef struct death_arg {
    const dcase *c;
    int d, other;
} death_arg;

static void death_child(void *arg)
{
    death_arg *a = arg;
    dcase_expect x;
    memset(&x, 0, sizeof x);
    dcase_ready = print_expect;
    a->c->run(a->d, a->other, &x);
    _exit(0); /* the report did not abort */
}

static void test_death_every_class_every_domain(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    static pm_death_result r;
    for (size_t i = 0; i < NDCASES; i++) {
        for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
            death_arg a = {&dcases[i], d, (d + 1) % PM_DOMAIN_COUNT};
            pm_death(death_child, &a, &r);
            int ok = !r.exited && r.signal == SIGABRT;
            const char *e = strstr(r.output, "EXPECT: ");
            char want[512] = "";
            if (e != NULL) {
                const char *nl = strchr(e, '\n');
                size_t len = nl ? (size_t)(nl - e - 8) : strlen(e + 8);
                snprintf(want, sizeof want, "\n%.*s", (int)len, e + 8);
            }
            ok = ok && want[0] != '\0' && strstr(e + 8, want) != NULL;
            if (!ok) {
                fprintf(stderr, "case '%s', domain %s: exited=%d status=%d signal=%d\n",
                        dcases[i].name, pm_t_domains[d].name, r.exited, r.exit_status,
                        r.signal);
                fprintf(stderr, "--- output:\n%s---\n", r.output);
            }
            PM_CHECK(ok);
        }
    }
}

/* ---------------------------------------------------------------------------
 * In-process, through an error handler.
 */

typedef struct seen {
    int calls;
    pm_error_report r;
    char message[512];
    char entry[64];
} seen;

static void record(const pm_error_report *r, void *ctx)
{
    seen *s = ctx;
    s->calls++;
    s->r = *r;
    snprintf(s->message, sizeof s->message, "%s", r->message);
    snprintf(s->entry, sizeof s->entry, "%s", r->entry);
}

static void test_handler_every_class_every_domain(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    for (size_t i = 0; i < NDCASES; i++) {
        for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
            seen s;
            memset(&s, 0, sizeof s);
            dcase_expect x;
            memset(&x, 0, sizeof x);
            unsigned long before = pm_error_count(PM_ERR_NONE);
            pm_set_error_handler(record, &s);
            dcases[i].run(d, (d + 1) % PM_DOMAIN_COUNT, &x);
            pm_set_error_handler(NULL, NULL);
            if (s.calls != 1 || s.r.error != x.error)
                fprintf(stderr, "case '%s', domain %s: %d reports, class %s\n",
                        dcases[i].name, pm_t_domains[d].name, s.calls,
                        pm_error_class_name(s.r.error));
            PM_CHECK_EQ(s.calls, 1);
            PM_CHECK_EQ(s.r.error, x.error);
            PM_CHECK(strcmp(s.entry, x.entry) == 0);
            PM_CHECK(s.r.address == x.address);
            PM_CHECK_EQ(s.r.size, x.size);
            PM_CHECK_EQ(s.r.serial, x.serial);
            PM_CHECK_EQ(s.r.offset, x.offset);
            PM_CHECK_EQ(s.r.api_expected, x.api_expected);
            PM_CHECK_EQ(s.r.api_found, x.api_found);
            PM_CHECK(strstr(s.message, x.line) == s.message); /* the line starts so */
            PM_CHECK(strchr(s.message, '\n') == NULL);
            PM_CHECK_EQ(pm_error_count(PM_ERR_NONE), before + 1);
        }
    }
}

static void test_error_class_names(void)
{
    PM_CHECK(strcmp(pm_error_class_name(PM_ERR_BUFFER_OVERFLOW), "buffer overflow") == 0);
    PM_CHECK(strcmp(pm_error_class_name(PM_ERR_DOUBLE_FREE), "double free") == 0);
    PM_CHECK(strcmp(pm_error_class_name(PM_ERR_API_MISMATCH), "API mismatch") == 0);
    PM_CHECK(strcmp(pm_error_class_name((pm_error_class)999), "unknown error") == 0);
    PM_CHECK(strcmp(pm_error_class_name((pm_error_class)-1), "unknown error") == 0);
    for (int c = 1; c < PM_ERR_CLASS_COUNT; c++)
        PM_CHECK(strcmp(pm_error_class_name((pm_error_class)c), "unknown error") != 0);
}

/* A double free is named so while the address has not been reused; once
 * another block lives there, freeing it is simply correct. */
static void test_double_free_after_reuse(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    seen s;
    memset(&s, 0, sizeof s);
    pm_set_error_handler(record, &s);
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        void *p = D->malloc(40);
        D->free(p);
        void *q = NULL;
        for (int k = 0; k < 100 && q != p; k++) {
            void *t = D->malloc(40);
            if (t != p) {
                D->free(t);
                continue;
            }
            q = t;
        }
        if (q == p) {
            D->free(q); /* a live block again: no report */
            PM_CHECK_EQ(s.calls, 0);
        }
    }
    pm_set_error_handler(NULL, NULL);
}

/* Many frees later a freed block of the registry is forgotten (memory stays
 * bounded: it remembers about the last 16,000 distinct addresses freed): a
 * second free is then still an error, named an invalid pointer. A pool
 * block has a side word instead, which keeps the free until its memory is
 * handed out again: still a double free, with size and serial. */
static void test_forgotten_free_is_invalid_pointer(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    enum { MANY = 100000 };
    static void *many[MANY];
    unsigned char *p = pm_mem_malloc(24);
    int side = pm_i_pool_owns(p - 16); /* pymalloc_debug: a pool block */
    uint64_t serial = trailer_serial(p, 24);
    for (int i = 0; i < MANY; i++)
        many[i] = pm_mem_malloc(24);
    pm_mem_free(p);
    for (int i = 0; i < MANY; i++)
        pm_mem_free(many[i]); /* nothing is allocated: p's address stays free */
    seen s;
    memset(&s, 0, sizeof s);
    pm_set_error_handler(record, &s);
    pm_mem_free(p);
    PM_CHECK_EQ(s.calls, 1);
    if (side) {
        PM_CHECK_EQ(s.r.error, PM_ERR_DOUBLE_FREE);
        PM_CHECK_EQ(s.r.size, 24);
        PM_CHECK_EQ(s.r.serial, serial);
    } else {
        PM_CHECK_EQ(s.r.error, PM_ERR_INVALID_POINTER);
    }
    pm_set_error_handler(NULL, NULL);
}

/* The temporaries of a loop (one address freed, reused, freed again,
 * thousands of times, in the pages of the freed block) do not push a freed
 * block out of the registry's memory: its second free is still named a
 * double free, with its size and serial, in every domain. */
static void test_churn_keeps_freed_blocks(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    seen s;
    memset(&s, 0, sizeof s);
    pm_set_error_handler(record, &s);
    int checked = 0;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        void *pin = D->malloc(24); /* keeps p's pool in use (pool modes) */
        unsigned char *p = D->malloc(24);
        uint64_t serial = trailer_serial(p, 24);
        D->free(p);
        int reused = 0;
        for (int k = 0; k < 5000; k++) {
            unsigned char *t = D->malloc(40 + (size_t)(k % 3) * 24);
            reused |= t == p;
            t[0] = 1;
            D->free(t);
        }
        if (!reused) { /* other sizes: p's memory is normally not handed out */
            checked++;
            memset(&s, 0, sizeof s);
            D->free(p);
            PM_CHECK_EQ(s.calls, 1);
            PM_CHECK_EQ(s.r.error, PM_ERR_DOUBLE_FREE);
            PM_CHECK_EQ(s.r.size, 24);
            PM_CHECK_EQ(s.r.serial, serial);
        }
        D->free(pin);
    }
    PM_CHECK(checked >= 1); /* the raw domain (libc blocks in the registry) at least */
    pm_set_error_handler(NULL, NULL);
}

/* A handler that frees, reallocates or checks the block it is handed (a
 * handler that logs and frees: the same error again, reported inside it)
 * is not called again for that block: the call inside it is reported and
 * counted, and goes on as in report mode. Before, each call reported the
 * block again and called the handler again, until the stack ran out
 * (SIGSEGV). A handler left by longjmp is called again for the same block
 * later, at any depth, and for a new block at the same address; so is a
 * handler for another block inside it. */
typedef struct again {
    const pm_t_domain *D;
    int calls, op, nested_rc, limit;
    void *other; /* a damaged block the handler frees too, once */
    pm_error_class classes[8];
    jmp_buf *jump;
} again;

static void handle_again(const pm_error_report *r, void *ctx)
{
    again *a = ctx;
    if (a->calls < 8)
        a->classes[a->calls] = r->error;
    if (++a->calls > a->limit) /* the recursion this test is about */
        return;
    if (a->jump != NULL)
        longjmp(*a->jump, 1);
    void *p = (void *)r->address;
    if (a->other != NULL) {
        void *o = a->other;
        a->other = NULL;
        a->D->free(o); /* another block: its handler call, nested */
    }
    switch (a->op) {
    case 0: a->D->free(p); break;
    case 1: a->nested_rc = a->D->realloc(p, 100) == NULL ? -1 : 0; break;
    default: a->nested_rc = pm_check_block(p); break;
    }
}

static __attribute__((noinline)) void free_deeper(const pm_t_domain *D, void *p, int depth)
{
    if (depth > 0)
        free_deeper(D, p, depth - 1);
    else
        D->free(p);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

/* free made some 16 KiB deeper on the stack */
static __attribute__((noinline)) void free_far_deeper(const pm_t_domain *D, void *p, int depth)
{
    char pad[2048];
    __asm__ volatile("" : : "r"(pad) : "memory"); /* kept, unwritten */
    if (depth > 0)
        free_far_deeper(D, p, depth - 1);
    else
        D->free(p);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

static void test_handler_same_block_again(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        for (int op = 0; op < 3; op++) {
            again a;
            memset(&a, 0, sizeof a);
            a.D = &pm_t_domains[d];
            a.op = op;
            a.limit = 20;
            a.nested_rc = 1;
            unsigned char *p = a.D->malloc(24);
            p[24] = 'x';
            unsigned long before = pm_error_count(PM_ERR_BUFFER_OVERFLOW);
            /* (the call inside the handler is on a block the program
             * freed: a double free, or a use after free) */
            pm_error_class then = op == 0 ? PM_ERR_DOUBLE_FREE : PM_ERR_USE_AFTER_FREE;
            unsigned long then_before = pm_error_count(then);
            pm_set_error_handler(handle_again, &a);
            a.D->free(p);
            pm_set_error_handler(NULL, NULL);
            PM_CHECK_EQ(a.calls, 1);
            PM_CHECK_EQ(pm_error_count(PM_ERR_BUFFER_OVERFLOW) - before, 1);
            PM_CHECK_EQ(pm_error_count(then) - then_before, 1);
            if (op > 0)
                PM_CHECK_EQ(a.nested_rc, -1);
            p[24] = 0xFD;
            a.D->free(p);
        }
        /* Inside the handler for one block, another damaged block: its own
         * handler call; then the first block again: none. */
        again a;
        memset(&a, 0, sizeof a);
        a.D = &pm_t_domains[d];
        a.limit = 20;
        unsigned char *p = a.D->malloc(24), *q = a.D->malloc(40);
        p[-1] = 'x';
        q[40] = 'x';
        a.other = q;
        pm_set_error_handler(handle_again, &a);
        a.D->free(p);
        pm_set_error_handler(NULL, NULL);
        PM_CHECK_EQ(a.calls, 2);
        PM_CHECK_EQ(a.classes[0], PM_ERR_BUFFER_UNDERFLOW);
        PM_CHECK_EQ(a.classes[1], PM_ERR_BUFFER_OVERFLOW);
        p[-1] = 0xFD;
        q[40] = 0xFD;
        a.D->free(p);
        a.D->free(q);
        /* Left by longjmp: the same block later, at the same depth,
         * calls the handler each time; handlers left at ever deeper frames
         * (entries left behind) do not stop it for a new block. */
        jmp_buf jb;
        memset(&a, 0, sizeof a);
        a.D = &pm_t_domains[d];
        a.limit = 20;
        a.jump = &jb;
        unsigned char *volatile v = a.D->malloc(24);
        v[24] = 'x';
        pm_set_error_handler(handle_again, &a);
        for (volatile int k = 0; k < 3; k++)
            if (setjmp(jb) == 0)
                a.D->free(v);
        PM_CHECK_EQ(a.calls, 3);
        enum { DEEP = 40 };
        unsigned char *volatile w[DEEP];
        for (volatile int k = 0; k < DEEP; k++) {
            w[k] = a.D->malloc(24);
            w[k][24] = 'x';
            if (setjmp(jb) == 0)
                free_deeper(a.D, w[k], k);
        }
        PM_CHECK_EQ(a.calls, 3 + DEEP);
        /* A handler left by longjmp (a double free), then a new block made
         * at that address (where the allocator hands it back) and reported
         * from deeper in the stack: the handler is called for it (before
         * 2026-12-07 it was taken for the block of the first call: not
         * called). */
        a.limit = a.calls + 2; /* (left by longjmp both times) */
        unsigned char *volatile x = a.D->malloc(24);
        a.D->free(x);
        if (setjmp(jb) == 0)
            a.D->free(x);
        unsigned char *volatile y = a.D->malloc(24);
        y[24] = 'x';
        if (setjmp(jb) == 0)
            free_far_deeper(a.D, y, 8);
        PM_CHECK_EQ(a.calls, 3 + DEEP + 2);
        y[24] = 0xFD;
        a.D->free(y);
        pm_set_error_handler(NULL, NULL);
        v[24] = 0xFD;
        a.D->free(v);
        for (int k = 0; k < DEEP; k++) {
            w[k][24] = 0xFD;
            a.D->free(w[k]);
        }
    }
}

/* A handler for a double free that allocates (a log line: the pool, or the
 * C library with no quarantine, hands back the freed block's address) and
 * then checks the block it was given: the check finds the handler's own
 * freed block there, a new serial each time. Before, that report called
 * the handler again, which did the same, until the stack ran out
 * (SIGSEGV in pymalloc_debug, found by an audit): the block is matched by
 * its address. And a handler whose every allocation is a heap error of its
 * own is called 64 deep, then those reports are printed and counted
 * without it, with one line saying so. (Run before the test of handlers
 * left by longjmp from ever deeper frames, which count toward the 64.) */
typedef struct nest {
    const pm_t_domain *D;
    int calls;
    void *made[80]; /* the handler's damaged blocks, leaked: repaired after */
} nest;

static void handle_check_after_alloc(const pm_error_report *r, void *ctx)
{
    nest *n = ctx;
    if (++n->calls > 1000) /* the recursion this test is about */
        return;
    n->D->free(n->D->malloc(5));
    pm_check_block(r->address);
}

static void handle_overflow_own(const pm_error_report *r, void *ctx)
{
    (void)r;
    nest *n = ctx;
    if (++n->calls > 1000)
        return;
    unsigned char *q = n->D->malloc(24);
    if (n->calls <= 80)
        n->made[n->calls - 1] = q;
    q[24] = 'x';
    n->D->free(q);
}

static void test_handler_nesting_bounded(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        nest n;
        memset(&n, 0, sizeof n);
        n.D = &pm_t_domains[d];
        void *p = n.D->malloc(5);
        n.D->free(p);
        unsigned long before = pm_error_count(PM_ERR_NONE);
        pm_set_error_handler(handle_check_after_alloc, &n);
        n.D->free(p);
        pm_set_error_handler(NULL, NULL);
        PM_CHECK_EQ(n.calls, 1);
        PM_CHECK(pm_error_count(PM_ERR_NONE) - before <= 2);

        /* The reports, about 70 KB, to a file: the last line is read back. */
        int saved;
        int fd = capture_begin(&saved);
        PM_CHECK(fd >= 0);
        if (fd < 0)
            return;
        memset(&n, 0, sizeof n);
        n.D = &pm_t_domains[d];
        unsigned char *b = n.D->malloc(24);
        b[24] = 'x';
        before = pm_error_count(PM_ERR_BUFFER_OVERFLOW);
        pm_set_error_handler(handle_overflow_own, &n);
        n.D->free(b);
        pm_set_error_handler(NULL, NULL);
        char *text = capture_end(saved, fd);
        PM_CHECK_EQ(n.calls, 64);
        PM_CHECK_EQ(pm_error_count(PM_ERR_BUFFER_OVERFLOW) - before, 65);
        PM_CHECK(text != NULL);
        if (text == NULL)
            return;
        const char *line = "pymalloc: the error handler is not called for this report: it is "
                           "running 64 deep in its own reports\n";
        char *at = strstr(text, line);
        PM_CHECK(at != NULL);
        PM_CHECK(at == NULL || strstr(at + 1, line) == NULL); /* once */
        free(text);
        b[24] = 0xFD;
        n.D->free(b);
        for (int i = 0; i < 64 && i < 80; i++) {
            unsigned char *q = n.made[i];
            q[24] = 0xFD;
            n.D->free(q);
        }
    }
}

/* One bug, one report, and each call named for what it is: a damaged
 * block's free reports it and leaks it, so the program's next free of it
 * is a double free, and its realloc or pm_check_block a use after free,
 * not the damage again; the free of a block whose damage pm_check_block
 * or a failed realloc reported says nothing (the program was told: two
 * reports and two errors counted before, for one overflow). Damage mended
 * (a pm_check_block finds the block whole) and written again is reported
 * again, and so is other damage (another class) written after a report. */
static void test_reported_block_freed(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    static const size_t sizes[] = {24, 2000};
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t k = 0; k < 2; k++) {
            size_t n = sizes[k];
            seen s;
            memset(&s, 0, sizeof s);
            unsigned long all = pm_error_count(PM_ERR_NONE);
            pm_set_error_handler(record, &s);

            /* pm_check_block, then free: one report. */
            unsigned char *p = D->malloc(n);
            p[n] = 'x';
            PM_CHECK_EQ(pm_check_block(p), -1);
            PM_CHECK_EQ(s.calls, 1);
            PM_CHECK_EQ(s.r.error, PM_ERR_BUFFER_OVERFLOW);
            D->free(p);
            PM_CHECK_EQ(s.calls, 1);
            PM_CHECK_EQ(pm_error_count(PM_ERR_NONE), all + 1);

            /* A failed realloc, then free: one report. */
            p = D->malloc(n);
            p[-2] = 'x';
            PM_CHECK(D->realloc(p, n + 100) == NULL);
            PM_CHECK_EQ(s.calls, 2);
            PM_CHECK_EQ(s.r.error, PM_ERR_BUFFER_UNDERFLOW);
            D->free(p);
            PM_CHECK_EQ(s.calls, 2);
            PM_CHECK_EQ(pm_error_count(PM_ERR_NONE), all + 2);

            /* free, free again, realloc, pm_check_block. */
            p = D->malloc(n);
            p[n + 3] = 'x';
            D->free(p);
            PM_CHECK_EQ(s.calls, 3);
            PM_CHECK_EQ(s.r.error, PM_ERR_BUFFER_OVERFLOW);
            PM_CHECK_EQ(s.r.offset, (ptrdiff_t)n + 3);
            uint64_t serial = s.r.serial;
            D->free(p);
            PM_CHECK_EQ(s.calls, 4);
            PM_CHECK_EQ(s.r.error, PM_ERR_DOUBLE_FREE);
            PM_CHECK(s.r.address == p);
            PM_CHECK_EQ(s.r.size, n);
            PM_CHECK_EQ(s.r.serial, serial);
            PM_CHECK(strstr(s.message, ": double free: ") != NULL);
            PM_CHECK(D->realloc(p, 10) == NULL);
            PM_CHECK_EQ(s.calls, 5);
            PM_CHECK_EQ(s.r.error, PM_ERR_USE_AFTER_FREE);
            PM_CHECK_EQ(s.r.serial, serial);
            PM_CHECK_EQ(pm_check_block(p), -1);
            PM_CHECK_EQ(s.calls, 6);
            PM_CHECK_EQ(s.r.error, PM_ERR_USE_AFTER_FREE);
            PM_CHECK_EQ(pm_error_count(PM_ERR_DOUBLE_FREE) > 0, 1);

            /* Mended, then damaged again: reported again by its free. */
            p = D->malloc(n);
            p[n] = 'x';
            PM_CHECK_EQ(pm_check_block(p), -1);
            PM_CHECK_EQ(s.calls, 7);
            p[n] = 0xFD;
            PM_CHECK_EQ(pm_check_block(p), 0);
            p[n + 1] = 'x';
            D->free(p);
            PM_CHECK_EQ(s.calls, 8);
            PM_CHECK_EQ(s.r.error, PM_ERR_BUFFER_OVERFLOW);
            PM_CHECK_EQ(s.r.offset, (ptrdiff_t)n + 1);

            /* Other damage after the report: reported by the free. */
            p = D->malloc(n);
            p[n] = 'x';
            PM_CHECK_EQ(pm_check_block(p), -1);
            PM_CHECK_EQ(s.calls, 9);
            p[-1] = 'y';
            D->free(p);
            PM_CHECK_EQ(s.calls, 10);
            PM_CHECK_EQ(s.r.error, PM_ERR_BUFFER_UNDERFLOW);

            /* The other order: an underflow reported (the check names it
             * first), then an overflow written: the free names the
             * overflow (before the fix of the audit: nothing at all). */
            p = D->malloc(n);
            p[-1] = 'y';
            PM_CHECK_EQ(pm_check_block(p), -1);
            PM_CHECK_EQ(s.calls, 11);
            PM_CHECK_EQ(s.r.error, PM_ERR_BUFFER_UNDERFLOW);
            p[n + 2] = 'x';
            D->free(p);
            PM_CHECK_EQ(s.calls, 12);
            PM_CHECK_EQ(s.r.error, PM_ERR_BUFFER_OVERFLOW);
            PM_CHECK_EQ(s.r.offset, (ptrdiff_t)n + 2);

            /* A damaged block freed, then freed through another domain:
             * a double free, not an API mismatch. */
            const pm_t_domain *O = &pm_t_domains[(d + 1) % PM_DOMAIN_COUNT];
            p = D->malloc(n);
            p[n] = 'x';
            D->free(p);
            PM_CHECK_EQ(s.calls, 13);
            O->free(p);
            PM_CHECK_EQ(s.calls, 14);
            PM_CHECK_EQ(s.r.error, PM_ERR_DOUBLE_FREE);
            PM_CHECK_EQ(s.r.offset, (ptrdiff_t)n);
            pm_set_error_handler(NULL, NULL);
            PM_CHECK_EQ(pm_error_count(PM_ERR_NONE), all + 14);
        }
    }
}

/* The second free of a damaged block the first free reported: abort()
 * with a double free report whose dump says why the block is still there. */
static void double_free_after_report_child(void *arg)
{
    const pm_t_domain *D = arg;
    seen s;
    memset(&s, 0, sizeof s);
    unsigned char *p = D->malloc(24);
    p[24] = 'x';
    pm_set_error_handler(record, &s);
    D->free(p);
    pm_set_error_handler(NULL, NULL);
    fprintf(stderr, "FIRST: %s\n", s.message);
    D->free(p);
    _exit(0);
}

static void test_double_free_after_report(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    static pm_death_result r;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        pm_death(double_free_after_report_child, (void *)&pm_t_domains[d], &r);
        PM_CHECK(!r.exited && r.signal == SIGABRT);
        PM_CHECK_STR(r.output, "FIRST: pymalloc: pm_");
        PM_CHECK_STR(r.output, "_free: buffer overflow: 1 byte written past the end of a 24-byte block");
        PM_CHECK_STR(r.output, "_free: double free: the 24-byte block (serial ");
        PM_CHECK_STR(r.output, "    The program freed it before: that free reported it "
                               "(damaged, or an API\n    mismatch), and the block was leaked "
                               "then, never handed back to the\n    allocator.\n");
        PM_CHECK_STR(r.output, "    First damaged byte at p+24, last at p+24.\n");
    }
}

/* stderr a pipe in non-blocking mode (O_NONBLOCK, as a reader sharing
 * the file description may set it) that is full when the report is made,
 * its reader slow: the report waits for room, as it would on a blocking
 * pipe, and the process then aborts. Before, the write failed with EAGAIN
 * and the process aborted without a word. */
static void test_report_to_full_nonblocking_pipe(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        int out[2], sync[2];
        PM_CHECK(pipe(out) == 0 && pipe(sync) == 0);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(out[0]);
            close(sync[0]);
            dup2(out[1], 2);
            close(out[1]);
            signal(SIGABRT, SIG_DFL);
            unsigned char *p = pm_t_domains[d].malloc(24);
            fcntl(2, F_SETFL, fcntl(2, F_GETFL) | O_NONBLOCK);
            static char dots[4096];
            memset(dots, '.', sizeof dots);
            while (write(2, dots, sizeof dots) > 0 || errno == EINTR) {
            }
            while (write(2, dots, 1) > 0 || errno == EINTR) {
            }
            if (write(sync[1], "f", 1) != 1)
                _exit(3);
            p[24] = 'x';
            pm_t_domains[d].free(p);
            _exit(0);
        }
        close(out[1]);
        close(sync[1]);
        char c;
        PM_CHECK_EQ(read(sync[0], &c, 1), 1); /* the pipe is full */
        close(sync[0]);
        struct timespec ms50 = {0, 50 * 1000 * 1000};
        nanosleep(&ms50, NULL);
        static char text[1 << 17];
        size_t len = 0;
        ssize_t n;
        while ((n = read(out[0], text + len, sizeof text - 1 - len)) > 0 ||
               (n < 0 && errno == EINTR))
            len += n > 0 ? (size_t)n : 0;
        text[len] = '\0';
        close(out[0]);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        PM_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
        char want[64];
        snprintf(want, sizeof want, "pymalloc: pm_%s_free: buffer overflow: 1 byte",
                 pm_t_domains[d].name);
        const char *rep = strstr(text, want);
        PM_CHECK(rep != NULL);
        if (rep != NULL)
            PM_CHECK_STR(rep, "Data at p: cd cd");
    }
}

static void stall_tick(int sig) { (void)sig; }

/* The same full non-blocking stderr, its reader stopped for good: in report
 * mode (the process goes on) eight reports wait one second in all, not
 * one each; and a timer signal every 20 ms does not restart the wait. Before,
 * eight reports took eight seconds, and with the timer one report never
 * ended (poll interrupted, and called again for a whole second). The
 * bound leaves room for a slow launcher (valgrind). */
static void test_reports_to_stalled_nonblocking_pipe(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    for (int timer = 0; timer < 2; timer++) {
        int out[2], took[2];
        PM_CHECK(pipe(out) == 0);
        PM_CHECK(pipe(took) == 0);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(out[0]);
            close(took[0]);
            dup2(out[1], 2);
            close(out[1]);
            pm_i_debug_on_error_report = 1;
            fcntl(2, F_SETFL, fcntl(2, F_GETFL) | O_NONBLOCK);
            static char dots[4096];
            memset(dots, '.', sizeof dots);
            while (write(2, dots, sizeof dots) > 0 || errno == EINTR) {
            }
            while (write(2, dots, 1) > 0 || errno == EINTR) {
            }
            if (timer) {
                struct sigaction sa;
                memset(&sa, 0, sizeof sa);
                sa.sa_handler = stall_tick;
                sigemptyset(&sa.sa_mask);
                sigaction(SIGALRM, &sa, NULL);
                struct itimerval it = {{0, 20000}, {0, 20000}};
                setitimer(ITIMER_REAL, &it, NULL);
            }
            /* Only the reports are timed: the fork, the filling of the
             * pipe and a slow launcher's start-up are not theirs. */
            struct timespec r0, r1;
            clock_gettime(CLOCK_MONOTONIC, &r0);
            for (int i = 0; i < 8; i++) {
                unsigned char *p = pm_mem_malloc(24);
                p[24] = 'x';
                pm_mem_free(p);
            }
            clock_gettime(CLOCK_MONOTONIC, &r1);
            double rs = (double)(r1.tv_sec - r0.tv_sec) + (r1.tv_nsec - r0.tv_nsec) / 1e9;
            if (write(took[1], &rs, sizeof rs) != (ssize_t)sizeof rs)
                _exit(3);
            _exit(0);
        }
        close(out[1]);
        close(took[1]);
        int status = 0, done = 0;
        for (int k = 0; k < 1200 && !done; k++) { /* up to 60 s */
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) {
                done = 1;
                break;
            }
            struct timespec ms50 = {0, 50 * 1000 * 1000};
            nanosleep(&ms50, NULL);
        }
        if (!done) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        close(out[0]);
        double s = 99.0;
        if (!done || read(took[0], &s, sizeof s) != (ssize_t)sizeof s)
            s = 99.0;
        close(took[0]);
        if (!(done && s < 5.0))
            fprintf(stderr, "timer %d: done %d after %.2f s\n", timer, done, s);
        PM_CHECK(done && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        PM_CHECK(s < 5.0);
    }
}

/* The error handler, running for a double-freed block, is interrupted by a
 * signal whose handler runs on an alternate stack above the handler's own
 * and allocates; then it frees the block it was given again: that report
 * does not call it again. Before 2026-12-07 (8745b04 of that day) the
 * signal handler's call, higher on the stack, was taken as made after the
 * handler was left by longjmp, its entry was dropped, and the handler was
 * called again for its own free, and again, until the stack ran out. The
 * thread runs on a stack of static storage (low), the alternate stack is
 * either mapped (far above) or static storage just above it, installed
 * with SS_AUTODISARM or not. */
static struct {
    unsigned char thread[256 << 10];
    unsigned char alt[64 << 10];
} alt_stacks __attribute__((aligned(4096)));
#ifndef SS_AUTODISARM
#define SS_AUTODISARM ((int)(1U << 31)) /* Linux 4.7's, where the C library has none */
#endif
static int alt_far, alt_autodisarm;
static volatile int alt_calls, alt_signalled;

static void alt_on_usr1(int sig)
{
    (void)sig;
    void *p = pm_mem_malloc(200);
    pm_mem_free(p);
    alt_signalled = 1;
}

static void alt_handler(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    if (++alt_calls > 3) /* the recursion this test is about */
        return;
    raise(SIGUSR1);
    pm_mem_free((void *)r->address); /* the block it was given: again */
}

static void *alt_body(void *arg)
{
    (void)arg;
    stack_t ss = {.ss_size = sizeof alt_stacks.alt};
    ss.ss_sp = alt_far ? mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                       : (void *)alt_stacks.alt;
    if (alt_autodisarm)
        ss.ss_flags = SS_AUTODISARM; /* (the handler sees it disabled) */
    if (ss.ss_sp == MAP_FAILED)
        return (void *)1;
    if (sigaltstack(&ss, NULL) != 0)
        return (void *)(uintptr_t)(alt_autodisarm && errno == EINVAL ? 3 : 1);
    void *b = pm_mem_malloc(32);
    pm_mem_free(b);
    pm_mem_free(b); /* a double free: the handler is called */
    return NULL;
}

static void child_alt_stack(void *arg)
{
    alt_far = ((uintptr_t)arg & 1) != 0;
    alt_autodisarm = ((uintptr_t)arg & 2) != 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alt_on_usr1;
    sa.sa_flags = SA_ONSTACK;
    PM_CHECK_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    pm_set_error_handler(alt_handler, NULL);
    pthread_attr_t at;
    pthread_attr_init(&at);
    PM_CHECK_EQ(pthread_attr_setstack(&at, alt_stacks.thread, sizeof alt_stacks.thread), 0);
    pthread_t t;
    void *rc = (void *)2;
    PM_CHECK_EQ(pthread_create(&t, &at, alt_body, NULL), 0);
    PM_CHECK_EQ(pthread_join(t, &rc), 0);
    if (rc == (void *)3)
        return; /* a kernel before 4.7: no SS_AUTODISARM */
    PM_CHECK(rc == NULL);
    PM_CHECK(alt_signalled);
    PM_CHECK_EQ(alt_calls, 1);
}

/* A test harness's handler that leaves by siglongjmp, for errors made in
 * signal handlers on the alternate stack: each is called (70 of them,
 * past the 64 that entries left behind would count), and so is one for
 * a double free in the program after them, of a block at the address of
 * one the handler was given. Before 2026-12-07 (115fab4 of that day) the
 * entries made on the alternate stack were never dropped: from the 65th
 * error on, the handler was not called (found by a review). */
static sigjmp_buf alt_env;
static void *volatile alt_block;
static void alt_leaving_handler(const pm_error_report *r, void *ctx)
{
    (void)r;
    (void)ctx;
    alt_calls++;
    siglongjmp(alt_env, 1);
}

static void alt_bad_free(int sig)
{
    (void)sig;
    pm_mem_free(alt_block); /* a double free, on the alternate stack */
}

static void child_left_from_alt_stack(void *arg)
{
    (void)arg;
    stack_t ss = {.ss_size = sizeof alt_stacks.alt};
    ss.ss_sp = mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    PM_CHECK(ss.ss_sp != MAP_FAILED && sigaltstack(&ss, NULL) == 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alt_bad_free;
    sa.sa_flags = SA_ONSTACK;
    PM_CHECK_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    pm_set_error_handler(alt_leaving_handler, NULL);
    enum { ROUNDS = 70 };
    for (volatile int i = 0; i < ROUNDS; i++) {
        alt_block = pm_mem_malloc(32);
        pm_mem_free(alt_block);
        if (sigsetjmp(alt_env, 1) == 0)
            raise(SIGUSR1);
    }
    PM_CHECK_EQ(alt_calls, ROUNDS);
    void *volatile b = pm_mem_malloc(32); /* the pools: alt_block's address again */
    pm_mem_free(b);
    if (sigsetjmp(alt_env, 1) == 0)
        pm_mem_free(b);
    PM_CHECK_EQ(alt_calls, ROUNDS + 1);
}

/* A handler left by longjmp from a double free 80 MiB deep in a recursion
 * (a thread with a stack of 256 MiB): a new block at that address double
 * freed at the top calls it. Before 2026-12-07 (115fab4 of that day) a
 * call more than 64 MiB above an entry was taken for another stack's, the
 * entry stayed, and the handler was not called (found by a review). */
static jmp_buf deep_env;
static void deep_leaving_handler(const pm_error_report *r, void *ctx)
{
    (void)r;
    (void)ctx;
    alt_calls++;
    longjmp(deep_env, 1);
}

static __attribute__((noinline)) void free_mib_deeper(void *p, int mib)
{
    char pad[1 << 20];
    __asm__ volatile("" : : "r"(pad) : "memory"); /* kept, unwritten */
    if (mib > 0)
        free_mib_deeper(p, mib - 1);
    else
        pm_mem_free(p);
    __asm__ volatile("" ::: "memory"); /* not a tail call */
}

static void *deep_body(void *arg)
{
    (void)arg;
    void *volatile b = pm_mem_malloc(32);
    pm_mem_free(b);
    if (setjmp(deep_env) == 0)
        free_mib_deeper(b, 80);
    for (int i = 0; i < 10; i++)
        pm_mem_free(pm_mem_malloc(100)); /* calls of the hooks at the top */
    void *volatile c = pm_mem_malloc(32);
    pm_mem_free(c);
    if (setjmp(deep_env) == 0)
        pm_mem_free(c);
    return NULL;
}

static void child_left_from_deep(void *arg)
{
    (void)arg;
    pm_set_error_handler(deep_leaving_handler, NULL);
    pthread_attr_t at;
    pthread_attr_init(&at);
    PM_CHECK_EQ(pthread_attr_setstacksize(&at, (size_t)256 << 20), 0);
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, &at, deep_body, NULL), 0);
    PM_CHECK_EQ(pthread_join(t, NULL), 0);
    PM_CHECK_EQ(alt_calls, 2);
}

static void test_handler_left_on_other_stacks(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    if (PM_T_ASAN || PM_T_TSAN)
        PM_SKIP("the sanitizers keep their own view of a thread's stack");
    PM_CHECK(pm_t_child_within(child_left_from_alt_stack, NULL, 20));
    if (sizeof(void *) == 8 && !pm_t_under_valgrind()) /* (256 MiB of address space) */
        PM_CHECK(pm_t_child_within(child_left_from_deep, NULL, 20));
}

static void test_handler_signal_on_higher_alt_stack(void)
{
    if (!pm_debug_enabled())
        PM_SKIP("no debug hooks in this mode");
    if (PM_T_ASAN || PM_T_TSAN)
        PM_SKIP("the sanitizers keep their own view of a thread's stack");
    PM_CHECK(pm_t_child_within(child_alt_stack, NULL, 20));
    PM_CHECK(pm_t_child_within(child_alt_stack, (void *)1, 20));
    /* Installed with SS_AUTODISARM, near and far: in the signal handler
     * sigaltstack says disabled (before 2026-12-07, 1cb8984 of that day,
     * the handler was called again, until the stack ran out) */
    PM_CHECK(pm_t_child_within(child_alt_stack, (void *)2, 20));
    PM_CHECK(pm_t_child_within(child_alt_stack, (void *)3, 20));
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_error_class_names);
    PM_RUN(test_death_every_class_every_domain);
    PM_RUN(test_handler_every_class_every_domain);
    PM_RUN(test_double_free_after_reuse);
    PM_RUN(test_forgotten_free_is_invalid_pointer);
    PM_RUN(test_churn_keeps_freed_blocks);
    PM_RUN(test_handler_nesting_bounded); /* before the handlers left by longjmp */
    PM_RUN(test_handler_same_block_again);
    PM_RUN(test_handler_signal_on_higher_alt_stack);
    PM_RUN(test_handler_left_on_other_stacks);
    PM_RUN(test_reported_block_freed);
    PM_RUN(test_double_free_after_report);
    PM_RUN(test_report_to_full_nonblocking_pipe);
    PM_RUN(test_reports_to_stalled_nonblocking_pipe);
    return pm_test_done();
}
