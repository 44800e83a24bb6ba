/*
 * tests/test_debug_quarantine.c - the debug hooks' quarantine: freed blocks
 * of the C library (malloc_debug's, the raw domain's, blocks over 512
 * bytes) held, filled with 0xDD, before they go back to it:
 *  - while a block is held its address is not handed out again, and a
 *    second free of it is a double free, with its size and serial;
 *  - a write into a held block is found when it leaves (pm_trim, or the
 *    frees that push it out): its first 64 bytes are checked; reported as a
 *    use after free of that block with size, serial and offset; the block
 *    is leaked and stays freed;
 *  - a write that stops in a held block's C library chunk header (its own
 *    bytes intact) is reported when it leaves, never handed to glibc,
 *    whose free aborted on it (death test);
 *  - at exit every held block is checked whole (death test);
 *  - PYMALLOC_QUARANTINE bounds the bytes held (a small budget: blocks
 *    leave in order, the write found by a free), 0 and off turn it off;
 *  - a realloc moves such a block (the old one held: a write through the
 *    old pointer is found);
 *  - threads freeing and trimming at once: no false report;
 *  - when the C library runs out of memory the held blocks go back and the
 *    allocation is tried again (RLIMIT_AS, in a child).
 * The budget cases run the test again with PYMALLOC_QUARANTINE set.
 * Skipped (77) without debug hooks, and under valgrind (memcheck: no
 * quarantine, it reports the write itself).
 */
#include "debug_layout.h"
#include "domains.h"
#include "harness.h"
#include "recorder.h"
#include "quarantine.h"
#include "pm_debug.h"
#include "pm_internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define NEED()                                                                      \
    do {                                                                            \
        if (!pm_debug_enabled())                                                    \
            PM_SKIP("no debug hooks in this mode");                                 \
        if (pm_t_under_valgrind())                                                  \
            PM_SKIP("no quarantine under memcheck, which reports such writes");     \
    } while (0)

/* Whether block p (a live block of the hooks) is the C library's: not a
 * pool block. */
static int libc_block(const unsigned char *p) { return !pm_i_pool_owns(p - 16); }


/* n with a comma every three digits, as the statistics write it. */
static void thousands(char *out, size_t cap, size_t n)
{
    char d[32];
    int len = snprintf(d, sizeof d, "%zu", n), k = 0;
    for (int i = 0; i < len && (size_t)k + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            out[k++] = ',';
        out[k++] = d[i];
    }
    out[k] = '\0';
}

/* pm_print_stats's text, read back through a temporary file. */
static void stats_text(char *out, size_t cap)
{
    FILE *f = tmpfile();
    out[0] = '\0';
    if (f == NULL)
        return;
    pm_print_stats(fileno(f));
    rewind(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
}

static void *nothing(void *arg) { return arg; }

/* The statistics show the blocks and bytes held and the budget. */
static void test_stats_lines(void)
{
    NEED();
    start();
    unsigned char *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = pm_raw_malloc(1000);
    for (int i = 0; i < 3; i++)
        pm_raw_free(p[i]);
    size_t n, bytes;
    pm_i_debug_quarantine_held(&n, &bytes);
    PM_CHECK_EQ(n, 3);
    PM_CHECK(bytes >= 3 * 1032);
    static char text[8192];
    stats_text(text, sizeof text);
    char want[128];
    snprintf(want, sizeof want, "\n# blocks held in the quarantine    = %20s\n", "3");
    PM_CHECK_STR(text, want);
    char num[32];
    thousands(num, sizeof num, bytes);
    snprintf(want, sizeof want, "# bytes held in the quarantine     = %20s\n", num);
    PM_CHECK_STR(text, want);
    PM_CHECK_STR(text, "# bytes of the quarantine's budget =            1,048,576\n");
    /* After a fork (whose handlers take and release the quarantine's
     * lock), in the child and in the parent, the lines are there (not
     * "busy"). A thread was made first: a process that never had one
     * forks without taking the locks. */
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, nothing, NULL), 0);
    pthread_join(t, NULL);
    pid_t pid = pm_t_fork();
    if (pid == 0) {
        stats_text(text, sizeof text);
        _exit(strstr(text, "# blocks held in the quarantine") != NULL ? 0 : 1);
    }
    int status = pm_t_wait(pid);
    PM_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    stats_text(text, sizeof text);
    PM_CHECK_STR(text, "# blocks held in the quarantine");
    PM_CHECK(strstr(text, "busy") == NULL);
    start();
}

static const size_t sizes[] = {0, 1, 40, 100, 600, 5000, 70000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* Every domain and size whose blocks are the C library's: a write after
 * the free, at the first and the last byte checked, found by pm_trim; the
 * block stays freed (a second free is a double free). */
static void test_write_found_on_leaving(void)
{
    NEED();
    int cases = 0;
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        for (size_t k = 0; k < NSIZES; k++) {
            size_t n = sizes[k];
            size_t last = (n + 16 < 64 ? n + 16 : 64) - 1; /* the last byte checked */
            /* its header's first and last bytes (filled by its free too,
             * checked while held), its data's first byte, the last checked */
            ptrdiff_t at[4] = {-16, -1, 0, (ptrdiff_t)last};
            for (int w = 0; w < 4; w++) {
                start();
                unsigned char *p = D->malloc(n);
                PM_CHECK(p != NULL);
                if (p == NULL || !libc_block(p)) {
                    D->free(p);
                    break; /* a pool block: test_debug_freed's */
                }
                cases++;
                memset(p, 'a', n);
                uint64_t serial = trailer_serial(p, n);
                D->free(p);
                PM_CHECK_EQ(held_blocks(), 1);
                PM_CHECK_EQ(count_not(p, n + 16, 0xDD), 0);
                /* not handed out again while held */
                unsigned char *q = D->malloc(n);
                PM_CHECK(q != NULL && q != p);
                D->free(q);
                p[at[w]] = 'x';
                int saved = quiet_begin();
                int r = pm_trim();
                quiet_end(saved);
                PM_CHECK_EQ(r, 1); /* q went back */
                PM_CHECK_EQ(S.calls, 1);
                PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
                PM_CHECK(S.r.address == p);
                PM_CHECK_EQ(S.r.size, n);
                PM_CHECK_EQ(S.r.serial, serial);
                PM_CHECK_EQ(S.r.offset, at[w]);
                PM_CHECK_EQ(S.r.api_found, D->name[0]);
                PM_CHECK_EQ(S.r.api_expected, D->name[0]); /* pm_trim has no API: the block's */
                char line[200];
                snprintf(line, sizeof line,
                         "pymalloc: pm_trim: use after free: the freed %zu-byte block (serial "
                         "%llu) at %p was written after its free (the 0xDD its free wrote at "
                         "p%+td was overwritten)",
                         n, (unsigned long long)serial, (void *)p, at[w]);
                PM_CHECK_STR(S.message, line);
                PM_CHECK_EQ(held_blocks(), 0);
                keep(p);
                /* leaked, and still freed */
                saved = quiet_begin();
                D->free(p);
                quiet_end(saved);
                PM_CHECK_EQ(S.calls, 2);
                PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
                PM_CHECK_EQ(S.r.serial, serial);
            }
        }
    }
    PM_CHECK(cases >= 2 * 7); /* the raw domain's, at least */
    pm_set_error_handler(NULL, NULL);
}

/* Bytes past the first 64 are checked at exit only (below); rewritten
 * with 0xDD they leave no trace; an untouched block goes back silently. */
static void test_only_first_bytes_on_leaving(void)
{
    NEED();
    start();
    unsigned char *p = pm_raw_malloc(600), *q = pm_raw_malloc(600), *u = pm_raw_malloc(600);
    pm_raw_free(p);
    pm_raw_free(q);
    pm_raw_free(u);
    p[64] = 'x';
    p[600 + 15] = 'x';
    q[3] = 'x';
    q[3] = 0xDD;
    PM_CHECK_EQ(held_blocks(), 3);
    PM_CHECK_EQ(pm_trim(), 1);
    PM_CHECK_EQ(S.calls, 0);
    PM_CHECK_EQ(held_blocks(), 0);
    pm_set_error_handler(NULL, NULL);
}

/* A second free of a held block, however many blocks of its size were
 * made since, is a double free; so is one in another domain (named by
 * the record, not the bytes). */
static void test_double_free_while_held(void)
{
    NEED();
    start();
    enum { N = 300 };
    static unsigned char *others[N];
    unsigned char *p = pm_raw_malloc(48);
    uint64_t serial = trailer_serial(p, 48);
    pm_raw_free(p);
    for (int i = 0; i < N; i++) {
        others[i] = pm_raw_malloc(48);
        PM_CHECK(others[i] != p);
    }
    int saved = quiet_begin();
    pm_raw_free(p);
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
    PM_CHECK(S.r.address == p);
    PM_CHECK_EQ(S.r.size, 48);
    PM_CHECK_EQ(S.r.serial, serial);
    PM_CHECK_STR(S.message, "pm_raw_free: double free: the 48-byte block (serial ");
    for (int i = 0; i < N; i++)
        pm_raw_free(others[i]);
    PM_CHECK_EQ(S.calls, 1);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* A realloc moves a C library block (the old one held): its bytes are
 * kept, and a write through the old pointer is found. */
static void test_realloc_holds_old_block(void)
{
    NEED();
    for (int d = 0; d < PM_DOMAIN_COUNT; d++) {
        const pm_t_domain *D = &pm_t_domains[d];
        start();
        unsigned char *p = D->malloc(700);
        PM_CHECK(p != NULL && libc_block(p));
        for (int i = 0; i < 700; i++)
            p[i] = (unsigned char)i;
        uint64_t serial = trailer_serial(p, 700);
        unsigned char *q = D->realloc(p, 650); /* a shrink in place below, without it */
        PM_CHECK(q != NULL && q != p);
        for (int i = 0; i < 650; i++)
            if (q[i] != (unsigned char)i) {
                PM_CHECK_EQ(q[i], (unsigned char)i);
                break;
            }
        PM_CHECK_EQ(held_blocks(), 1);
        p[10] = 'x';
        int saved = quiet_begin();
        pm_trim();
        quiet_end(saved);
        PM_CHECK_EQ(S.calls, 1);
        PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
        PM_CHECK(S.r.address == p);
        PM_CHECK_EQ(S.r.serial, serial);
        PM_CHECK_EQ(S.r.offset, 10);
        keep(p);
        PM_CHECK_EQ(pm_check_block(q), 0);
        D->free(q);
    }
    pm_set_error_handler(NULL, NULL);
}

/* At exit every held block is checked whole: a write past the first 64
 * bytes is found there, and the process aborts (the default). */
static void exit_child(void *arg)
{
    (void)arg;
    unsigned char *p = pm_raw_malloc(300);
    pm_raw_free(p);
    p[200] = 'x';
    exit(0);
}

static void test_found_at_exit(void)
{
    NEED();
    pm_death_result r;
    pm_death(exit_child, NULL, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: exit: use after free: the freed 300-byte block (serial ");
    PM_CHECK_STR(r.output, "was written after its free (the 0xDD its free wrote at p+200 was "
                           "overwritten)");
    PM_CHECK_STR(r.output, "    Freed block, held in the quarantine, at p=");
    PM_CHECK_STR(r.output, "found other bytes from p+200 to p+200.");
    PM_CHECK_STR(r.output, "Bytes at p+192: dd dd dd dd dd dd dd dd 78 dd");
    PM_CHECK_STR(r.output, "The block is leaked, never handed back to the allocator.");
    PM_CHECK_STR(r.output, "; 1 freed block written after its free among the ");
    PM_CHECK_STR(r.output, " held in the quarantine");
}

/* At abort every held block is checked whole too; glibc never reads a held
 * block, so the summary does not blame the damage for its abort. */
static struct sigaction abort_check; /* SIGABRT's action at start-up: the check */

static void abort_child(void *arg)
{
    (void)arg;
    sigaction(SIGABRT, &abort_check, NULL); /* pm_death set the default */
    unsigned char *p = pm_raw_malloc(300);
    pm_raw_free(p);
    p[200] = 'x';
    abort();
}

static void test_found_at_abort(void)
{
    NEED();
    pm_death_result r;
    pm_death(abort_child, NULL, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: abort: use after free: the freed 300-byte block (serial ");
    PM_CHECK_STR(r.output, "(the 0xDD its free wrote at p+200 was overwritten)");
    PM_CHECK_STR(r.output, "pymalloc: abort: 0 damaged blocks among the ");
    PM_CHECK_STR(r.output, "; 1 freed block written after its free among the ");
    PM_CHECK(strstr(r.output, "likely cause") == NULL);
}

/* A raw block of n bytes, freed and held (the quarantine empty before,
 * the recorder watching), with its serial. */
static unsigned char *held_raw_block(size_t n, uint64_t *serial)
{
    start();
    unsigned char *p = pm_raw_malloc(n);
    *serial = trailer_serial(p, n);
    pm_raw_free(p);
    PM_CHECK_EQ(held_blocks(), 1);
    return p;
}

/* pm_raw_free(p), its report's print sent away (the recorder has it). */
static void raw_free_quietly(void *p)
{
    int saved = quiet_begin();
    pm_raw_free(p);
    quiet_end(saved);
}

/* A block that left the quarantine intact (pm_trim) keeps its record among
 * the freed addresses: a second free is a double free, as without the
 * quarantine (before, its record was forgotten when it left: "invalid
 * pointer", size and serial unknown). */
static void test_double_free_after_leaving(void)
{
    NEED();
    uint64_t serial;
    unsigned char *p = held_raw_block(100000, &serial);
    PM_CHECK_EQ(pm_trim(), 1);
    PM_CHECK_EQ(held_blocks(), 0);
    raw_free_quietly(p);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
    PM_CHECK(S.r.address == p);
    PM_CHECK_EQ(S.r.size, 100000);
    PM_CHECK_EQ(S.r.serial, serial);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* A free of a pointer 8 bytes into a held block: an invalid pointer, whose
 * report names the freed block it points into (before, only "a stack or
 * global address, an interior pointer, or a block freed long ago"). */
static void test_interior_pointer_of_held_block(void)
{
    NEED();
    uint64_t serial;
    unsigned char *p = held_raw_block(600, &serial);
    raw_free_quietly(p + 8);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_INVALID_POINTER);
    PM_CHECK(S.r.address == p + 8);
    char want[160];
    snprintf(want, sizeof want,
             "it points 8 bytes into the freed 600-byte block (serial %llu) at %p, allocated "
             "with API 'r' (pm_raw_*): offset +8 from its data start",
             (unsigned long long)serial, (void *)p);
    PM_CHECK_STR(S.message, want);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* A C library block A (600 bytes: a 640-byte glibc chunk) written past its
 * end through the next chunk's size field into the header and first bytes
 * of B above it, which the quarantine holds: A's overflow, found when B
 * leaves (pm_trim), and at abort, once; not a use after free of B (before,
 * "use after free" of B, and at exit both reports for one bug). B is never
 * handed to the C library, whose size field for it was written over. */
static void test_overflow_into_held_block(void)
{
    NEED();
    if (overflow_into_held_found(600, 640) != 0)
        PM_SKIP("no two 600-byte blocks 640 bytes apart (not glibc's malloc below)");
}

static void overflow_into_held_at_abort(void *arg)
{
    (void)arg;
    sigaction(SIGABRT, &abort_check, NULL); /* pm_death set the default */
    uint64_t sa, sb;
    if (held_after_overflow(600, 640, &sa, &sb) == NULL)
        _exit(77);
    fprintf(stderr, "serials %llu %llu\n", (unsigned long long)sa, (unsigned long long)sb);
    abort();
}

static void test_overflow_into_held_block_at_abort(void)
{
    NEED();
    pm_death_result r;
    pm_death(overflow_into_held_at_abort, NULL, &r);
    if (r.exited && r.exit_status == 77)
        PM_SKIP("no two 600-byte blocks 640 bytes apart (not glibc's malloc below)");
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    /* once: met by the walk of the live blocks, and blamed for B's damage */
    overflow_into_held_output(r.output, 600, "abort");
}

/* Only the C library's chunk header of B, which the quarantine holds, is
 * written (B's own header and bytes stay 0xDD): by A's overflow through its
 * trailer and the size field (arg 0), or by a stray write into the size
 * field alone (arg 1). Then B leaves (pm_trim). Before, B went back to
 * glibc as it was, whose free aborted ("free(): invalid size") with no
 * report of pymalloc's; now the damage is reported (A's overflow, B named
 * as the block it ran into; or B's chunk header, with B's size and serial)
 * and B is not handed to glibc. Args 2 and 3: the stray write found by the
 * check at exit and at abort, whose totals line counts B as a freed block
 * (before 2026-12-06: "1 damaged block, never freed, among the 0 live
 * blocks checked"). */
static void overflow_into_held_chunk_header(void *arg)
{
    sigaction(SIGABRT, &abort_check, NULL); /* pm_death set the default */
    size_t n = 600, step = 640;
    unsigned char *a = block_run(n, (ptrdiff_t)step, 2);
    if (a == NULL)
        _exit(77);
    pm_trim(); /* the blocks block_run freed */
    unsigned char *b = a + step;
    fprintf(stderr, "serials %llu %llu at %p %p\n", (unsigned long long)trailer_serial(a, n),
            (unsigned long long)trailer_serial(b, n), (void *)a, (void *)b);
    pm_mem_free(b);
    if (arg == NULL)
        memset(a + n, 'A', step - n - 32 + 16); /* up to b-17: B's size field, not B's header */
    else
        memset(b - 32 + 8, 'A', 8); /* B's size field alone */
    if (arg == (void *)2)
        exit(0);
    if (arg == (void *)3)
        abort();
    pm_trim();
    fprintf(stderr, "trimmed\n");
}

static void test_overflow_into_held_chunk_header(void)
{
    NEED();
    if (atomic_load(&pm_i_libc_chunk_page) == 0)
        PM_SKIP("no check of glibc's chunk headers (not glibc's malloc, or a sanitizer's)");
    char want[300];
    for (int stray = 0; stray < 4; stray++) {
        pm_death_result r;
        pm_death(overflow_into_held_chunk_header, (void *)(intptr_t)stray, &r);
        if (r.exited && r.exit_status == 77)
            PM_SKIP("no two 600-byte blocks 640 bytes apart (not glibc's malloc below)");
        unsigned long long sa = 0, sb = 0;
        void *a = NULL, *b = NULL;
        const char *s = strstr(r.output, "serials ");
        PM_CHECK(s != NULL && sscanf(s, "serials %llu %llu at %p %p", &sa, &sb, &a, &b) == 4);
        PM_CHECK(!r.exited);
        PM_CHECK_EQ(r.signal, SIGABRT);
        PM_CHECK(strstr(r.output, "trimmed") == NULL);
        if (stray >= 2) {
            const char *at = stray == 2 ? "exit" : "abort";
            snprintf(want, sizeof want,
                     "pymalloc: %s: buffer underflow: the C library's chunk header 24 bytes "
                     "before the start of a freed 600-byte block (serial %llu), held in the "
                     "quarantine, was overwritten",
                     at, sb);
            PM_CHECK_STR(r.output, want);
            snprintf(want, sizeof want, "pymalloc: %s: 0 damaged blocks%s among the ", at,
                     stray == 2 ? ", never freed," : "");
            PM_CHECK_STR(r.output, want);
            PM_CHECK_STR(r.output, "; 1 freed block written after its free among the ");
            if (pm_t_cur_failed) {
                fprintf(stderr, "%s\n", r.output);
                return;
            }
            continue;
        }
        PM_CHECK(strstr(r.output, "free(): ") == NULL); /* glibc's */
        PM_CHECK(strstr(r.output, "double free or corruption") == NULL);
        PM_CHECK(strstr(r.output, "use after free") == NULL);
        if (!stray) {
            /* A's overflow, once (found by pm_trim; the check at abort
             * knows it was reported), B named as the block it ran into */
            snprintf(want, sizeof want,
                     "pymalloc: pm_trim: buffer overflow: at least 16 bytes written past the end of "
                     "a 600-byte block (serial %llu)",
                     sa);
            const char *first = strstr(r.output, want);
            PM_CHECK(first != NULL);
            PM_CHECK(first == NULL || strstr(first + 1, want) == NULL);
            snprintf(want, sizeof want, "into the header of the block after it, at %p (serial %llu)",
                     b, sb);
            PM_CHECK_STR(r.output, want);
        } else {
            snprintf(want, sizeof want,
                     "pymalloc: pm_trim: buffer underflow: the C library's chunk header 24 bytes "
                     "before the start of a freed 600-byte block (serial %llu), held in the "
                     "quarantine, was overwritten",
                     sb);
            PM_CHECK_STR(r.output, want);
            PM_CHECK_STR(r.output, "holds 0x4141414141414141");
            PM_CHECK_STR(r.output, "never handed back to the C library");
        }
        if (pm_t_cur_failed) {
            fprintf(stderr, "%s\n", r.output);
            return;
        }
    }
}

/* A double free of a held block: the dump says where its memory is. */
static void double_free_child(void *arg)
{
    (void)arg;
    unsigned char *p = pm_raw_malloc(48);
    pm_raw_free(p);
    pm_raw_free(p);
}

static void test_double_free_dump(void)
{
    NEED();
    pm_death_result r;
    pm_death(double_free_child, NULL, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: pm_raw_free: double free: the 48-byte block (serial ");
    PM_CHECK_STR(r.output, " bytes, serial ");
    PM_CHECK_STR(r.output, "; the quarantine holds its memory (not read).\n");
}

/* ---------------------------------------------------------------------------
 * The budget: the test run again with PYMALLOC_QUARANTINE set.
 */

/* `test_debug_quarantine budget`, PYMALLOC_QUARANTINE=64K: the bytes held
 * stay within it, and a damaged block leaves in its turn, found by the
 * free that pushed it out. 0, or the number of the step that failed. */
static int budget_64k(void)
{
    watch();
    unsigned char *p = pm_raw_malloc(100);
    uint64_t serial = trailer_serial(p, 100);
    pm_raw_free(p);
    p[5] = 'x';
    int i, saved = quiet_begin();
    for (i = 0; i < 100 && S.calls == 0; i++) {
        pm_raw_free(pm_raw_malloc(4000));
        if (held_bytes() > 64 * 1024)
            return 10;
    }
    quiet_end(saved);
    /* 64 KiB hold 16 blocks of 4000 + 32 bytes, with the first one's 132:
     * the 17th pushes it out */
    if (i != 17)
        return 20 + (i < 80 ? i : 80);
    if (S.calls != 1 || S.r.address != p || S.r.serial != serial || S.r.offset != 5 ||
        strstr(S.message, "pm_raw_free: use after free: the freed 100-byte block") == NULL)
        return 101;
    /* A block of more than an eighth of the budget is not held, its 32
     * debug bytes counted: 8192 - 32 bytes are, 8192 - 31 are not (the
     * quarantine emptied first, so that none is pushed out). */
    pm_trim();
    unsigned char *big = pm_raw_malloc(64 * 1024 / 8);
    size_t before = held_blocks();
    pm_raw_free(big);
    if (held_blocks() > before)
        return 102;
    big = pm_raw_malloc(64 * 1024 / 8 - 31);
    before = held_blocks();
    pm_raw_free(big);
    if (held_blocks() > before)
        return 103;
    big = pm_raw_malloc(64 * 1024 / 8 - 32);
    before = held_blocks();
    pm_raw_free(big);
    if (held_blocks() != before + 1)
        return 104;
    return 0;
}

/* `test_debug_quarantine grow`, PYMALLOC_QUARANTINE=64M (blocks of up to
 * 1 MiB held): a 900 KiB block realloc'd to 3 MiB moves by the hooks'
 * malloc, copy and free (the old one held); its grown bytes are 0xCD over
 * their first and last 64 KiB, as those of a realloc that moves by glibc's
 * (before 2026-12-03 the first 64 KiB held what glibc gave: zeros). */
static int grow(void)
{
    watch();
    const size_t old = 900 << 10, n = (size_t)3 << 20, edge = 64 << 10;
    unsigned char *p = pm_raw_malloc(old);
    if (p == NULL)
        return 10;
    memset(p, 0x11, old);
    size_t before = held_blocks();
    unsigned char *q = pm_raw_realloc(p, n);
    if (q == NULL)
        return 11;
    if (held_blocks() != before + 1)
        return 12; /* not the copy */
    if (count_not(q, old, 0x11) != 0)
        return 13;
    if (count_not(q + old, edge, 0xCD) != 0)
        return 14;
    if (count_not(q + n - edge, edge, 0xCD) != 0)
        return 15;
    if (pm_check_block(q) != 0)
        return 16;
    pm_raw_free(q);
    return S.calls == 0 ? 0 : 17;
}

/* `test_debug_quarantine off`, PYMALLOC_QUARANTINE=0 or off: nothing held,
 * so nothing found. */
static int budget_off(void)
{
    watch();
    unsigned char *p = pm_raw_malloc(100);
    pm_raw_free(p);
    if (held_blocks() != 0)
        return 10;
    static char text[8192];
    stats_text(text, sizeof text);
    if (strstr(text, "Small block threshold") == NULL || strstr(text, "quarantine") != NULL)
        return 12; /* no quarantine lines without one */
    return pm_trim() == 0 && S.calls == 0 ? 0 : 11;
}

/* `test_debug_quarantine oom`, PYMALLOC_QUARANTINE=64M: with the address
 * space limited to 32 MiB more than now, 200 blocks of 1 MiB - 64 bytes,
 * each freed, fit only if the held ones go back when glibc runs out. */
static int oom(void)
{
    struct rlimit rl;
    long kib = 0;
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmSize: %ld kB", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    if (kib == 0)
        return 10;
    rl.rlim_cur = rl.rlim_max = (rlim_t)(kib + 32 * 1024) * 1024;
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        return 11;
    watch();
    int held_some = 0;
    for (int i = 0; i < 200; i++) {
        unsigned char *p = pm_raw_malloc((1 << 20) - 64);
        if (p == NULL)
            return 12;
        pm_raw_free(p);
        held_some |= held_blocks() >= 8;
    }
    return held_some && S.calls == 0 ? 0 : 13;
}

/* Run the test again with PYMALLOC_QUARANTINE=value and argument arg
 * (in the current mode): its exit status. */
static int run_again(const char *value, const char *arg)
{
    pid_t pid = pm_t_fork();
    if (pid == 0) {
        setenv("PYMALLOC_QUARANTINE", value, 1);
        execl("/proc/self/exe", "test_debug_quarantine", arg, (char *)NULL);
        _exit(127);
    }
    int status = pm_t_wait(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_budget(void)
{
    NEED();
    PM_CHECK_EQ(run_again("64K", "budget"), 0);
    PM_CHECK_EQ(run_again("65536", "budget"), 0);
    PM_CHECK_EQ(run_again("0", "off"), 0);
    PM_CHECK_EQ(run_again("off", "off"), 0);
}

static void test_out_of_memory_gives_back(void)
{
    NEED();
    if (PM_T_ASAN || PM_T_TSAN)
        PM_SKIP("a sanitizer's shadow memory takes the address space");
    else
        PM_CHECK_EQ(run_again("64M", "oom"), 0);
}

static void test_big_grown_by_copy(void)
{
    NEED();
    PM_CHECK_EQ(run_again("64M", "grow"), 0);
}

/* ---------------------------------------------------------------------------
 * Threads: two free C library blocks (the raw domain's, 513 bytes to 8 KiB,
 * some freed by the other thread) while a third trims: no report, and the
 * blocks each thread checks stay whole.
 */
enum { T_ROUNDS = 4000, T_LIVE = 64 };
static _Atomic(unsigned char *) handoff[T_LIVE];

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    unsigned char *live[T_LIVE] = {0};
    size_t live_n[T_LIVE] = {0};
    for (int r = 0; r < T_ROUNDS; r++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 8) % T_LIVE);
        if (live[k] != NULL) {
            if (count_not(live[k], live_n[k], (unsigned char)k) != 0)
                return (void *)1;
            /* every other one freed by the other thread */
            if (r & 1)
                pm_raw_free(atomic_exchange(&handoff[k], live[k]));
            else
                pm_raw_free(live[k]);
        }
        size_t n = 513 + (seed >> 4) % 8000;
        live[k] = pm_raw_malloc(n);
        if (live[k] == NULL)
            return (void *)2;
        live_n[k] = n;
        memset(live[k], k, n);
    }
    for (int k = 0; k < T_LIVE; k++)
        pm_raw_free(live[k]);
    return NULL;
}

static void test_threads(void)
{
    NEED();
    start();
    PM_CHECK(churn_while_trimming(churn));
    for (int k = 0; k < T_LIVE; k++)
        pm_raw_free(atomic_exchange(&handoff[k], NULL));
    PM_CHECK_EQ(S.calls, 0);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* ---------------------------------------------------------------------------
 * Shards: each thread holds the blocks it frees in a shard of its own.
 */

/* A thread that frees the n raw blocks of blocks[], then ends. */
typedef struct freer {
    unsigned char *blocks[4];
    int n;
} freer;

static void *free_some(void *arg)
{
    freer *f = arg;
    for (int i = 0; i < f->n; i++)
        pm_raw_free(f->blocks[i]);
    return NULL;
}

static void free_in_thread(freer *f)
{
    pthread_t t;
    PM_CHECK_EQ(pthread_create(&t, NULL, free_some, f), 0);
    pthread_join(t, NULL);
}

/* Blocks another thread freed (it has ended) are held, in its shard: a
 * second free of one is a double free, and pm_trim checks and hands back
 * every shard's blocks, finding a write into one. */
static void test_shard_of_ended_thread(void)
{
    NEED();
    start();
    freer f = {.n = 3};
    for (int i = 0; i < 3; i++)
        f.blocks[i] = pm_raw_malloc(1000);
    uint64_t serial = trailer_serial(f.blocks[1], 1000);
    free_in_thread(&f);
    PM_CHECK_EQ(held_blocks(), 3);
    int saved = quiet_begin();
    pm_raw_free(f.blocks[0]);
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
    f.blocks[1][7] = 'x';
    saved = quiet_begin();
    PM_CHECK_EQ(pm_trim(), 1);
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 2);
    PM_CHECK_EQ(S.r.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK(S.r.address == f.blocks[1]);
    PM_CHECK_EQ(S.r.serial, serial);
    PM_CHECK_EQ(S.r.offset, 7);
    PM_CHECK_EQ(held_blocks(), 0);
    keep(f.blocks[1]);
    pm_set_error_handler(NULL, NULL);
}

/* After other threads freed blocks (and ended), this thread's shard still
 * grows to the whole budget (to within 2%, in at most 6,000 frees: it
 * takes its part of the room left, a quarter with four shards in use, at
 * each look at the whole, every 64 frees); with the quarantine full of its
 * blocks,
 * another thread frees one: it stays held (its shard holds less than its
 * share: the fullest shard's oldest go), and the whole stays within the
 * budget, give or take a block, while this thread frees on. */
static void test_shard_share(void)
{
    NEED();
    start();
    const size_t budget = (size_t)1 << 20, block = 1000 + 32;
    enum { N = 1200 }; /* 1200 x 1032 bytes: more than the budget */
    int frees = 0;
    while (frees < 5 * N && held_bytes() <= budget - budget / 50) {
        pm_raw_free(pm_raw_malloc(1000));
        frees++;
    }
    PM_CHECK(held_bytes() <= budget);
    PM_CHECK(held_bytes() > budget - budget / 50);
    freer f = {.n = 1};
    f.blocks[0] = pm_raw_malloc(1000);
    uint64_t serial = trailer_serial(f.blocks[0], 1000);
    free_in_thread(&f);
    for (int i = 0; i < N; i++) {
        pm_raw_free(pm_raw_malloc(1000));
        if (held_bytes() > budget + block) {
            PM_CHECK(held_bytes() <= budget + block);
            break;
        }
    }
    int saved = quiet_begin();
    pm_raw_free(f.blocks[0]);
    quiet_end(saved);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.r.error, PM_ERR_DOUBLE_FREE);
    PM_CHECK_EQ(S.r.serial, serial);
    start();
    pm_set_error_handler(NULL, NULL);
}

/* At exit the blocks of every shard are checked: one another thread freed
 * (it has ended), written after, is reported. */
static void shard_exit_child(void *arg)
{
    (void)arg;
    freer f = {.n = 1};
    f.blocks[0] = pm_raw_malloc(300);
    free_in_thread(&f);
    f.blocks[0][250] = 'x';
    exit(0);
}

static void test_shard_found_at_exit(void)
{
    NEED();
    pm_death_result r;
    pm_death(shard_exit_child, NULL, &r);
    PM_CHECK(!r.exited);
    PM_CHECK_EQ(r.signal, SIGABRT);
    PM_CHECK_STR(r.output, "pymalloc: exit: use after free: the freed 300-byte block (serial ");
    PM_CHECK_STR(r.output, "(the 0xDD its free wrote at p+250 was overwritten)");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "budget") == 0)
        return budget_64k();
    if (argc > 1 && strcmp(argv[1], "off") == 0)
        return budget_off();
    if (argc > 1 && strcmp(argv[1], "oom") == 0)
        return oom();
    if (argc > 1 && strcmp(argv[1], "grow") == 0)
        return grow();
    pm_t_pin_env(NULL);
    pm_debug_enabled(); /* the mode is installed, and the check at abort */
    sigaction(SIGABRT, NULL, &abort_check);
    PM_RUN(test_stats_lines);
    PM_RUN(test_write_found_on_leaving);
    PM_RUN(test_only_first_bytes_on_leaving);
    PM_RUN(test_double_free_while_held);
    PM_RUN(test_realloc_holds_old_block);
    PM_RUN(test_found_at_exit);
    PM_RUN(test_found_at_abort);
    PM_RUN(test_double_free_after_leaving);
    PM_RUN(test_interior_pointer_of_held_block);
    PM_RUN(test_overflow_into_held_block);
    PM_RUN(test_overflow_into_held_block_at_abort);
    PM_RUN(test_overflow_into_held_chunk_header);
    PM_RUN(test_double_free_dump);
    PM_RUN(test_budget);
    PM_RUN(test_out_of_memory_gives_back);
    PM_RUN(test_big_grown_by_copy);
    PM_RUN(test_threads);
    PM_RUN(test_shard_of_ended_thread);
    PM_RUN(test_shard_share);
    PM_RUN(test_shard_found_at_exit);
    return pm_test_done();
}
