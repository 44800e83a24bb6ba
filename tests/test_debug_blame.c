/*
 * tests/test_debug_blame.c - which block a report names when a write went
 * from one block into another (modes/debug.c: blame). The block found
 * damaged is not always the one with the bug:
 *  - an underflow of block B reaching down into the serial field of the
 *    block A before it, its pad bytes intact: B's underflow, reported once,
 *    whichever block is freed first (before, A's "header corrupt" was
 *    reported instead, and B's bug never; until 2026-12-06, A's free
 *    first reported A's "header corrupt", and B's free then B's
 *    underflow, two reports for one write); the same into a freed block
 *    A, found when a malloc takes it again or it leaves the quarantine
 *    (before, also a use after free of A);
 *  - an overflow of A whose first byte is 0xFD (no trace on A's first pad
 *    byte) into B's header: A's overflow;
 *  - a write past the end of A through the whole of the next block B into
 *    the header of C, freed: A's overflow, with B and C live, or freed
 *    (their free-list links damaged: pool blocks);
 *  - a write past the end of the last block of a pool, through the next
 *    pool's header, into the first block of that pool: the last block's
 *    overflow, not an underflow of the first (pool blocks);
 *  - zeros written past the end of a 0-byte block into the next 0-byte
 *    block's header (whose size field, all zeros, keeps no trace): the
 *    first block's overflow;
 *  - an overflow found at the free of the block that overflowed and
 *    through the block after it, in either order: reported once;
 *  - an overflow of A that stops inside its serial field and an underflow
 *    of B above it, or an overflow of A and an underflow of C with B
 *    between them intact: two bugs, each block's own.
 * In-process through an error handler (the damaged blocks are leaked), in a
 * forked child where a pool's header is damaged (nothing may run on after).
 * Skipped under valgrind and ASan, whose guards catch the planted writes.
 */
#include "debug_layout.h"
#include "harness.h"
#include "pm_internal.h"

#include "pymalloc.h"

static struct {
    int calls;
    pm_error_class error;
    size_t size;
    uint64_t serial;
    ptrdiff_t offset;
    const void *address;
    char message[512];
} S;

static void record(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    S.calls++;
    S.error = r->error;
    S.size = r->size;
    S.serial = r->serial;
    S.offset = r->offset;
    S.address = r->address;
    snprintf(S.message, sizeof S.message, "%s", r->message);
}

static void watch(void)
{
    memset(&S, 0, sizeof S);
    pm_set_error_handler(record, NULL);
}

/* The one report since watch() names block p's overflow (n bytes, serial). */
static void reported_overflow_of(const unsigned char *p, size_t n, uint64_t serial)
{
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.error, PM_ERR_BUFFER_OVERFLOW);
    PM_CHECK(S.address == p);
    PM_CHECK_EQ(S.size, n);
    PM_CHECK_EQ(S.serial, serial);
}

/* The one report since watch() names block p's underflow (n bytes, serial). */
static void reported_underflow_of(const unsigned char *p, size_t n, uint64_t serial)
{
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.error, PM_ERR_BUFFER_UNDERFLOW);
    PM_CHECK(S.address == p);
    PM_CHECK_EQ(S.size, n);
    PM_CHECK_EQ(S.serial, serial);
}

#define NEED_DEBUG()                                                                 \
    do {                                                                             \
        if (!pm_debug_enabled())                                                     \
            PM_SKIP("no debug hooks in this mode");                                  \
        if (pm_t_under_valgrind() || PM_T_ASAN)                                      \
            PM_SKIP("memcheck's and ASan's guards catch the planted writes first");  \
    } while (0)

/* a, b: two fresh n-byte blocks 64 bytes apart (n + 32 bytes: 64-byte
 * pool blocks, or 64-byte glibc chunks; damaged blocks are leaked), or the
 * test is skipped. */
#define NEIGHBOURS(a, b, n)                                                          \
    unsigned char *a = block_run(n, 64, 2);                                          \
    if (a == NULL)                                                                   \
        PM_SKIP("no two " #n "-byte blocks 64 bytes apart");                         \
    unsigned char *b = a + 64

/* A pool block of the debug layer. */
static int pool_block(const unsigned char *p) { return pm_i_pool_owns(p - 16); }


static void test_underflow_into_the_block_below(void)
{
    NEED_DEBUG();
    for (int a_first = 0; a_first <= 1; a_first++) {
        for (size_t len = 25; len <= 32; len++) { /* through a's serial, not its pad bytes */
            /* a fresh pair each time (the damaged blocks are leaked) */
            NEIGHBOURS(a, b, 24);
            uint64_t sb = trailer_serial(b, 24);
            unsigned long before = pm_error_count(PM_ERR_NONE);
            watch();
            memset(b - len, 'U', len);
            pm_mem_free(a_first ? a : b);
            reported_underflow_of(b, 24, sb);
            pm_mem_free(a_first ? b : a); /* the same write: no second report */
            PM_CHECK_EQ(S.calls, 1);
            PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 1);
        }
    }
    pm_set_error_handler(NULL, NULL);
}

/* The same write down into the serial field of a freed block below (the
 * 0xDD its free wrote there), found when a malloc takes the pool block
 * again, or when the C library block leaves the quarantine: B's underflow,
 * once (before, also a use after free of A, which nothing wrote after its
 * free). 20-byte blocks, whose serial field (p+28 .. p+35) a malloc
 * taking the block again checks (its first 32 bytes). */
static void test_underflow_into_a_freed_block_below(void)
{
    NEED_DEBUG();
    NEIGHBOURS(a, b, 20);
    uint64_t sb = trailer_serial(b, 20);
    unsigned long before = pm_error_count(PM_ERR_NONE);
    void *taken = NULL;
    watch();
    pm_mem_free(a);
    memset(a + 20 + 8, 'U', 64 - 28); /* from a's serial field up to b */
    if (pool_block(b))
        taken = pm_mem_malloc(20); /* a again (the thread's cache: last in, first out) */
    else
        (void)pm_trim(); /* a leaves the quarantine */
    reported_underflow_of(b, 20, sb);
    PM_CHECK(strstr(S.message, "use after free") == NULL);
    pm_mem_free(b); /* the same write: no second report */
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 1);
    pm_set_error_handler(NULL, NULL);
    pm_mem_free(taken);
}

/* A (8 bytes: 48-byte pool blocks) written 80 bytes past its end, through
 * B into C's header; C freed (B and C live), or B and C freed first and C
 * taken again by malloc (its link damaged). */
static void overflow_through_a_block(int freed)
{
    unsigned char *a = block_run(8, 48, 3);
    if (a == NULL || (freed && !pool_block(a))) /* freed: their free-list links */
        PM_SKIP(freed ? "no three pool blocks in a row" : "no three blocks in a row");
    unsigned char *b = a + 48, *c = a + 96;
    uint64_t sa = trailer_serial(a, 8);
    watch();
    if (freed) {
        pm_mem_free(b);
        pm_mem_free(c);
    }
    memset(a + 8, 'A', 80);
    if (freed) {
        /* The thread cache gives c back first (last in, first out); without
         * one (under memcheck: not run here) the pool's list does too. */
        for (int k = 0; k < 4 && S.calls == 0; k++)
            (void)pm_mem_malloc(8);
    } else {
        pm_mem_free(c);
    }
    reported_overflow_of(a, 8, sa);
    pm_set_error_handler(NULL, NULL);
}

/* realloc(NULL, n) is a malloc: a damaged free-list link it meets is
 * reported under the name the program called (it said pm_mem_malloc). */
static void test_realloc_null_names_itself(void)
{
    NEED_DEBUG();
    unsigned char *p = pm_mem_malloc(24);
    if (!pool_block(p) || pm_i_pool_valgrind(NULL)) {
        pm_mem_free(p);
        PM_SKIP("not a pool block (its free-list link is the pool's)");
    }
    pm_mem_free(p);
    watch();
    p[-16] ^= 0x55; /* the freed block's link */
    for (int k = 0; k < 4 && S.calls == 0; k++)
        (void)pm_mem_realloc(NULL, 24);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(S.error, PM_ERR_USE_AFTER_FREE);
    PM_CHECK(strncmp(S.message, "pymalloc: pm_mem_realloc: use after free", 40) == 0);
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", S.message);
    pm_set_error_handler(NULL, NULL);
}

/* An overflow of A whose first byte is 0xFD (its first pad byte keeps its
 * value) into B's header: A's overflow all the same. */
static void test_overflow_starting_with_a_pad_byte(void)
{
    NEED_DEBUG();
    NEIGHBOURS(a, b, 24);
    uint64_t sa = trailer_serial(a, 24);
    watch();
    a[24] = 0xFD;
    memset(a + 25, 'X', 64 - 25 - 8); /* up to b's API id */
    pm_mem_free(b);
    reported_overflow_of(a, 24, sa);
    PM_CHECK_EQ(S.offset, 25);
    pm_set_error_handler(NULL, NULL);
}

static void test_overflow_through_a_live_block(void)
{
    NEED_DEBUG();
    overflow_through_a_block(0);
}

static void test_overflow_through_a_freed_block(void)
{
    NEED_DEBUG();
    overflow_through_a_block(1);
}

static void note(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "handler: %d %zu %llu\n", (int)r->error, r->size,
            (unsigned long long)r->serial);
}

/* The last 24-byte block of a pool (64-byte blocks: 255 a pool, 16 spare
 * bytes at the pool's end) and the first of the pool after it. */
static void overflow_across_pools(void *arg)
{
    (void)arg;
    enum { MANY = 1200 };
    static unsigned char *q[MANY];
    for (int i = 0; i < MANY; i++)
        q[i] = pm_mem_malloc(24);
    for (int i = 0; i < MANY; i++) {
        uintptr_t base = (uintptr_t)(q[i] - 16);
        if ((base & 16383) != 48 + 254 * 64)
            continue;
        unsigned char *next = (unsigned char *)((base & ~(uintptr_t)16383) + 16384 + 48 + 16);
        for (int j = 0; j < MANY; j++)
            if (q[j] == next) {
                fprintf(stderr, "serial %llu\n", (unsigned long long)trailer_serial(q[i], 24));
                pm_set_error_handler(note, NULL);
                memset(q[i] + 24, 'O', 100); /* its trailer, the spare bytes, the next
                                                pool's header, 12 bytes of next's */
                pm_mem_free(next);
                _exit(0);
            }
    }
    _exit(77);
}

static void test_overflow_into_the_next_pool(void)
{
    NEED_DEBUG();
    unsigned char *probe = pm_mem_malloc(24);
    int pooled = pool_block(probe);
    pm_mem_free(probe);
    if (!pooled)
        PM_SKIP("no pool blocks under the debug hooks in this mode");
    pm_death_result r;
    pm_death(overflow_across_pools, NULL, &r);
    if (r.exited && r.exit_status == 77)
        PM_SKIP("no two pools of 24-byte blocks next to each other");
    PM_CHECK(r.exited && r.exit_status == 0);
    unsigned long long serial = 0;
    const char *s = strstr(r.output, "serial ");
    PM_CHECK(s != NULL && sscanf(s, "serial %llu", &serial) == 1);
    char want[200];
    snprintf(want, sizeof want,
             "pymalloc: pm_mem_free: buffer overflow: at least 16 bytes written past the end "
             "of a 24-byte block (serial %llu)",
             serial);
    PM_CHECK_STR(r.output, want);
    snprintf(want, sizeof want, "handler: %d 24 %llu", (int)PM_ERR_BUFFER_OVERFLOW, serial);
    PM_CHECK_STR(r.output, want);
}

/* A write past the end of a C library block A into the chunk header of an
 * aligned block B above it, through the free chunk glibc's memalign cut off
 * below B's chunk (up to the alignment + 32 bytes): A's overflow. Before,
 * the search for the block below went 64 bytes down from B's chunk only, so
 * B's header damage was reported as its own underflow whenever the cut-off
 * chunk was longer. A's size is varied until the cut-off chunk is, and the
 * bytes written over are put back afterwards (glibc's too). */
static void test_overflow_into_an_aligned_block(void)
{
    NEED_DEBUG();
    if (atomic_load(&pm_i_libc_chunk_page) == 0)
        PM_SKIP("the C library's chunk headers are not checked here");
    enum { ALIGN = 256, BN = 700 };
    for (size_t an = 600; an < 600 + ALIGN + 64; an += 16) {
        unsigned char *a = pm_mem_malloc(an);
        unsigned char *b = pm_i_domain_memalign(PM_DOMAIN_MEM, ALIGN, BN);
        PM_CHECK(a != NULL && b != NULL);
        uintptr_t a_end = (uintptr_t)a + an + 16, chunk = (uintptr_t)b - ALIGN - 16;
        if (pool_block(a) || b < a || chunk < a_end + 80 || chunk > a_end + ALIGN + 40) {
            pm_mem_free(b);
            pm_mem_free(a);
            continue;
        }
        size_t len = chunk + 16 - (uintptr_t)(a + an);
        unsigned char saved[ALIGN + 128];
        PM_CHECK(len <= sizeof saved);
        memcpy(saved, a + an, len);
        uint64_t serial = trailer_serial(a, an);
        watch();
        memset(a + an, 'x', len); /* A's trailer, the cut-off chunk, B's chunk header */
        pm_mem_free(b);
        pm_set_error_handler(NULL, NULL);
        fprintf(stderr, "  %s\n", S.message);
        reported_overflow_of(a, an, serial);
        memcpy(a + an, saved, len);
        pm_mem_free(b); /* whole again: leaked by the report, freed now */
        pm_mem_free(a);
        return;
    }
    PM_SKIP("no aligned block came right after the block below it");
}

static void test_zeros_into_a_zero_size_block(void)
{
    NEED_DEBUG();
    unsigned char *a = NULL;
    ptrdiff_t step = 32; /* 0 + 32 bytes: its class, or a glibc chunk of 48 */
    for (; step <= 64 && (a = block_run(0, step, 2)) == NULL; step += 16)
        ;
    if (a == NULL)
        PM_SKIP("no two 0-byte blocks next to each other");
    unsigned char *b = a + step;
    uint64_t sa = trailer_serial(a, 0);
    watch();
    memset(a, 0, (size_t)step); /* a's trailer, spare bytes, b's whole header */
    pm_mem_free(b);
    reported_overflow_of(a, 0, sa);
    pm_set_error_handler(NULL, NULL);
}

/* The 600-byte cases below write over the C library's chunk headers: they
 * clear PREV_INUSE in the next chunk's size word, and in malloc_debug the
 * quarantine's releases of the chunks around to glibc tripped over it
 * later (glibc's own abort, "corrupted size vs. prev_size", in a later
 * test), so they ran only where the pools serve the small blocks. The
 * hooks now mend those bits (libc_mend_above, libc_next_guard in
 * modes/debug.c), where they check glibc's chunk headers (64-bit glibc,
 * no sanitizer, not under valgrind); elsewhere the cases still run only
 * beside the pools. */
static int libc_chunks_mended(void)
{
    if (atomic_load(&pm_i_libc_chunk_page) != 0)
        return 1;
    unsigned char *p = pm_mem_malloc(24);
    int pooled = pool_block(p);
    pm_mem_free(p);
    return pooled;
}

/* A's overflow into B's header, A with an underflow of its own (a[-1]):
 * A's overflow, found through B (before 2026-12-07 A was passed over, its
 * first damage an underflow, and B was reported as an underflow of its
 * own, "at least 16 bytes written before the start"). */
static void test_overflow_of_a_block_with_its_own_underflow(void)
{
    NEED_DEBUG();
    static const size_t sizes[] = {24, 600};
    for (int k = 0; k < 2; k++) {
        size_t n = sizes[k];
        ptrdiff_t step = k == 0 ? 64 : 640; /* (n + 32: a pool class, or glibc's chunk) */
        if (k == 1 && !libc_chunks_mended())
            continue;
        unsigned char *a = block_run(n, step, 2);
        if (a == NULL)
            continue;
        unsigned char *b = a + step;
        uint64_t sa = trailer_serial(a, n);
        watch();
        a[-1] = 0;
        memset(a + n, 'X', (size_t)step - n - 8); /* a's trailer, up to b's API id */
        pm_mem_free(b);
        reported_overflow_of(a, n, sa);
        if (pm_t_cur_failed)
            fprintf(stderr, "%zu bytes: %s\n", n, S.message);
        pm_set_error_handler(NULL, NULL);
    }
}

/* Overflows in three blocks in a row, A into all of B's header and B into
 * C's (a loop over an array of buffers, or one write from A over B): B
 * run over whole, its header from below and its trailer: one report, A's
 * overflow, which went on over B into C (before 2026-12-07, for blocks of
 * the C library, C's underflow); B's free and A's then say nothing more.
 * (A write from A that stops in B's size field leaves B's overflow its
 * own: two reports.) */
static void test_overflows_in_a_row(void)
{
    NEED_DEBUG();
    static const size_t sizes[] = {24, 600};
    for (int k = 0; k < 2; k++) {
        size_t n = sizes[k];
        ptrdiff_t step = k == 0 ? 64 : 640;
        if (k == 1 && !libc_chunks_mended())
            continue;
        unsigned char *a = block_run(n, step, 3);
        if (a == NULL || (n == 24 && !pool_block(a)))
            continue;
        unsigned char *b = a + step, *c = b + step;
        uint64_t sa = trailer_serial(a, n);
        unsigned long before = pm_error_count(PM_ERR_NONE);
        watch();
        memset(a, 'a', (size_t)step);     /* a's data, trailer, all of b's header */
        memset(b, 'b', (size_t)step - 8); /* b's data, trailer, c's size field */
        pm_mem_free(c);
        reported_overflow_of(a, n, sa);
        pm_mem_free(b);
        pm_mem_free(a);
        PM_CHECK_EQ(S.calls, 1);
        PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 1);
        if (pm_t_cur_failed)
            fprintf(stderr, "%zu bytes: %s\n", n, S.message);
        pm_set_error_handler(NULL, NULL);
    }
}

/* A byte that none of serial's bytes is (a write of it over the serial
 * field leaves a trace on each). */
static unsigned char fill_not_in(uint64_t serial)
{
    unsigned char f = 'x';
    for (int i = 0; i < 64; i += 8)
        if ((unsigned char)(serial >> i) == f)
            f++, i = -8;
    return f;
}

/* Two bugs side by side: A written 9 bytes past its end (its pad bytes and
 * the first byte of its serial field), and B, the block above it, 9 bytes
 * before its start (its pad bytes, API id and the last byte of its size
 * field). The rest of A's serial field is intact, so A's write stopped
 * there: each block's own bug, reported at its own free, in either order
 * (before, B's underflow was named A's overflow, or with A freed first
 * not reported at all: found by an audit). */
static void test_two_bugs_side_by_side(void)
{
    NEED_DEBUG();
    for (int a_first = 0; a_first <= 1; a_first++) {
        NEIGHBOURS(a, b, 24);
        uint64_t sa = trailer_serial(a, 24), sb = trailer_serial(b, 24);
        unsigned long before = pm_error_count(PM_ERR_NONE);
        memset(a + 24, fill_not_in(sa), 9);
        memset(b - 9, 'y', 9);
        for (int k = 0; k < 2; k++) { /* each free reports its own block's bug */
            int of_a = (k == 0) == a_first;
            watch();
            pm_mem_free(of_a ? a : b);
            if (of_a)
                reported_overflow_of(a, 24, sa);
            else
                reported_underflow_of(b, 24, sb);
            PM_CHECK_EQ(S.offset, of_a ? 24 : -9);
        }
        PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 2);
        if (pm_t_cur_failed)
            fprintf(stderr, "a freed first: %d: %s\n", a_first, S.message);
        pm_set_error_handler(NULL, NULL);
    }
}

/* One write from A's end into B's size field whose byte at the end of
 * A's serial field is the serial's own low byte (varied data, a strcpy of
 * text, does that 1 time in 256): A's overflow, one report (a first
 * version of the rule above named B's header damage and A's overflow, two
 * bugs: found by a review). */
static void test_overflow_holding_the_serials_low_byte(void)
{
    NEED_DEBUG();
    NEIGHBOURS(a, b, 24);
    uint64_t sa = trailer_serial(a, 24);
    unsigned char low = (unsigned char)sa, next = (unsigned char)(sa >> 8);
    unsigned long before = pm_error_count(PM_ERR_NONE);
    unsigned char *q = a + 24;
    for (int i = 0; q < b - 8; i++, q++) /* up to B's API id */
        *q = (unsigned char)('a' + i % 26);
    a[24 + 15] = low;                                   /* the serial's last byte, as it was */
    a[24 + 14] = next == 'X' ? 'Y' : 'X';                /* its byte before, changed */
    watch();
    pm_mem_free(b);
    reported_overflow_of(a, 24, sa);
    pm_mem_free(a);
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 1);
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", S.message);
    pm_set_error_handler(NULL, NULL);
}

/* A written past its end through its whole trailer, B (the block after
 * it) intact, and C (the block after B) written before its start into its
 * size field: C's own underflow (before, A's overflow was named for it
 * in the C library's blocks, B passed over). */
static void test_underflow_above_an_intact_block(void)
{
    NEED_DEBUG();
    unsigned char *a = block_run(24, 64, 3);
    if (a == NULL)
        PM_SKIP("no three 24-byte blocks 64 bytes apart");
    unsigned char *b = a + 64, *c = b + 64;
    uint64_t sa = trailer_serial(a, 24), sc = trailer_serial(c, 24);
    unsigned long before = pm_error_count(PM_ERR_NONE);
    memset(a + 24, 'x', 16);
    memset(c - 9, 'y', 9);
    watch();
    pm_mem_free(c);
    reported_underflow_of(c, 24, sc);
    watch();
    pm_mem_free(b); /* intact */
    PM_CHECK_EQ(S.calls, 0);
    pm_mem_free(a);
    reported_overflow_of(a, 24, sa);
    PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 2);
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", S.message);
    pm_set_error_handler(NULL, NULL);
}

/* A's header damaged from its size field on (by nothing the search can
 * find below it) and A written past its end into B's header: A's
 * overflow, named, its dump saying the write may have come from further
 * down (8510e92 noted A as a block passed and said nothing at all: B
 * freed, no report, exit status 0 in report mode). The C library's
 * 600-byte blocks. */
static void test_overflow_of_a_block_run_over_from_nowhere(void)
{
    NEED_DEBUG();
    if (!libc_chunks_mended())
        PM_SKIP("the C library's chunk headers are written, and not mended here");
    unsigned char *a = block_run(600, 640, 2);
    if (a == NULL)
        PM_SKIP("no two 600-byte blocks 640 bytes apart");
    unsigned char *b = a + 640;
    uint64_t sa = trailer_serial(a, 600);
    unsigned long before = pm_error_count(PM_ERR_NONE);
    watch();
    a[-12] = 'U';
    a[-1] = 'U';
    memset(a + 600, 'X', 640 - 600 - 8); /* a's trailer, b's chunk header, b's size field */
    pm_mem_free(b);
    reported_overflow_of(a, 600, sa);
    PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 1);
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", S.message);
    pm_set_error_handler(NULL, NULL);
}

/* One write from A over the 19 pool blocks after it into a 21st's header,
 * the blocks freed from the top down: one report, A's overflow (before,
 * with a search that stopped 16 blocks down, the 17th block, run over,
 * was named as the writer, and each block above the cap named another:
 * four reports). */
static void test_overflow_over_many_blocks(void)
{
    NEED_DEBUG();
    enum { RUN = 22, OVER = 20 };
    unsigned char *a = block_run(24, 64, RUN);
    if (a == NULL || !pool_block(a))
        PM_SKIP("no 22 pool blocks in a row");
    uint64_t sa = trailer_serial(a, 24);
    unsigned long before = pm_error_count(PM_ERR_NONE);
    watch();
    memset(a, 'A', (size_t)OVER * 64); /* a's data on, up to the data of the 21st block */
    for (int i = RUN - 1; i >= 0; i--) {
        pm_mem_free(a + i * 64);
        if (i == OVER)
            reported_overflow_of(a, 24, sa);
    }
    PM_CHECK_EQ(S.calls, 1);
    PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 1);
    if (pm_t_cur_failed)
        fprintf(stderr, "%s\n", S.message);
    pm_set_error_handler(NULL, NULL);
}

/* A's overflow into the header of the block B after it, found at A's free
 * and through B, in either order: B freed while live (its header
 * damaged), or B freed before the write and met when a malloc takes it
 * again (a pool block's free-list link) or when it leaves the quarantine
 * (pm_trim). The same bug, reported and counted once (A and B leaked):
 * before, the second finding reported A's overflow again, and
 * PYMALLOC_ON_ERROR=report summed up two buffer overflows. */
static void overflow_met_again(int b_freed_first, int a_freed_last)
{
    watch();
    (void)pm_trim(); /* (damaged blocks earlier tests left held: reported now) */
    NEIGHBOURS(a, b, 24);
    uint64_t sa = trailer_serial(a, 24);
    unsigned long before = pm_error_count(PM_ERR_NONE);
    void *taken[4] = {NULL, NULL, NULL, NULL};
    watch();
    if (b_freed_first)
        pm_mem_free(b);
    memset(a + 24, 'X', 64 - 24 - 8); /* a's trailer, up to b's API id */
    for (int step = 0; step < 2; step++) {
        if (step == (a_freed_last ? 1 : 0)) {
            pm_mem_free(a);
        } else if (b_freed_first) {
            for (int k = 0; k < 4; k++)
                if (taken[k] == NULL)
                    taken[k] = pm_mem_malloc(24);
            (void)pm_trim();
        } else {
            pm_mem_free(b);
        }
        if (S.calls != 1)
            fprintf(stderr, "  step %d: %d reports; last: %s\n", step, S.calls, S.message);
        reported_overflow_of(a, 24, sa);
    }
    PM_CHECK_EQ(pm_error_count(PM_ERR_NONE) - before, 1);
    pm_set_error_handler(NULL, NULL);
    for (int k = 0; k < 4; k++)
        pm_mem_free(taken[k]);
}

static void test_overflow_met_again_through_a_live_block(void)
{
    NEED_DEBUG();
    overflow_met_again(0, 0);
    overflow_met_again(0, 1);
}

static void test_overflow_met_again_through_a_freed_block(void)
{
    NEED_DEBUG();
    overflow_met_again(1, 0);
    overflow_met_again(1, 1);
}

int main(void)
{
    pm_t_pin_env(NULL);
    PM_RUN(test_underflow_into_the_block_below);
    PM_RUN(test_underflow_into_a_freed_block_below);
    PM_RUN(test_overflow_starting_with_a_pad_byte);
    PM_RUN(test_overflow_through_a_live_block);
    PM_RUN(test_overflow_through_a_freed_block);
    PM_RUN(test_realloc_null_names_itself);
    PM_RUN(test_overflow_into_the_next_pool);
    PM_RUN(test_zeros_into_a_zero_size_block);
    PM_RUN(test_overflow_into_an_aligned_block);
    PM_RUN(test_overflow_met_again_through_a_live_block);
    PM_RUN(test_overflow_met_again_through_a_freed_block);
    PM_RUN(test_overflow_of_a_block_with_its_own_underflow);
    PM_RUN(test_overflows_in_a_row);
    PM_RUN(test_overflow_over_many_blocks);
    PM_RUN(test_overflow_of_a_block_run_over_from_nowhere);
    PM_RUN(test_two_bugs_side_by_side);
    PM_RUN(test_underflow_above_an_intact_block);
    PM_RUN(test_overflow_holding_the_serials_low_byte);
    return pm_test_done();
}
