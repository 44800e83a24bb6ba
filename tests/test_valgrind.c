/*
 * tests/test_valgrind.c - pool blocks under valgrind memcheck.
 *
 * Runs tests/pool_victim.c under `valgrind --leak-check=full` in pymalloc
 * mode and checks that memcheck reports each bug at the faulting line (an
 * overflow into the next pool block, a read and a write of a freed block, a
 * write past a shrunk block, a leaked block) and reports nothing
 * for a correct program. argv[1] is the victim. Skips (77) where valgrind
 * is absent, where the client requests were not compiled in, and in
 * sanitizer builds (valgrind cannot run sanitized programs).
 */
#include "harness.h"
#include "pm_internal.h"

static const char *victim;

struct victim_run {
    const char *mode, *which;
};

static void child_run(void *arg)
{
    const struct victim_run *v = arg;
    const char *which = v->which;
    setenv("PYMALLOC_MODE", v->mode, 1);
    /* --vex-guest-chase=no: valgrind 3.19 otherwise attributes a fault in a
     * tiny leaf function it chased into to the caller's call instruction. */
    execlp("valgrind", "valgrind", "-q", "--vex-guest-chase=no", "--leak-check=full",
           "--error-exitcode=99",
           "--errors-for-leak-kinds=definite", victim, which, (char *)NULL);
    _exit(98);
}

/* A frame's file name without its directories, "(pool_victim.c:38)":
 * valgrind prints the line table's name, a bare name from gcc's and a
 * path from clang's ("tests/pool_victim.c"). */
static void strip_frame_dirs(char *s)
{
    char *out = s;
    for (const char *in = s; *in != '\0';) {
        *out++ = *in++;
        if (in[-1] != '(')
            continue;
        const char *end = in, *last = NULL;
        while (*end != '\0' && *end != ')' && *end != ' ' && *end != '(') {
            if (*end == '/')
                last = end;
            end++;
        }
        if (last != NULL && *end == ')')
            in = last + 1;
    }
    *out = '\0';
}

/* The victim's case `which` under memcheck in `mode`. */
static void run_in(const char *mode, const char *which, pm_death_result *r)
{
    struct victim_run v = {mode, which};
    pm_death(child_run, &v, r);
    strip_frame_dirs(r->output);
    if (!r->exited || r->exit_status == 98)
        fprintf(stderr, "valgrind did not run: %s\n", r->output);
}

static void run(const char *which, pm_death_result *r) { run_in("pymalloc", which, r); }

/* run_in, for a case that must exit with status (99: memcheck's errors),
 * and memcheck's output shown if a check of it fails later. */
static void run_expect(const char *mode, const char *which, int status, pm_death_result *r)
{
    run_in(mode, which, r);
    PM_CHECK(r->exited);
    PM_CHECK_EQ(r->exit_status, status);
}

/* How many times needle is in hay. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *s = hay; (s = strstr(s, needle)) != NULL; s++)
        n++;
    return n;
}

static void show_if_failed(const char *mode, const pm_death_result *r)
{
    if (pm_t_cur_failed)
        fprintf(stderr, "mode %s:\n%s\n", mode, r->output);
}

static int have_valgrind(void)
{
    return system("valgrind --version >/dev/null 2>&1") == 0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PM_SANITIZED 1
#else
#define PM_SANITIZED 0
#endif

#define NEED_VALGRIND()                                                                 \
    do {                                                                                \
        int compiled_;                                                                  \
        if (PM_SANITIZED)                                                               \
            PM_SKIP("valgrind cannot run sanitizer builds");                            \
        pm_i_pool_valgrind(&compiled_);                                                 \
        if (!compiled_)                                                                 \
            PM_SKIP("built without PYMALLOC_VALGRIND");                                 \
        if (!have_valgrind())                                                           \
            PM_SKIP("valgrind is not installed");                                       \
    } while (0)

static void test_clean_program_has_no_reports(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run("clean", &r);
    PM_CHECK(r.exited);
    PM_CHECK_EQ(r.exit_status, 0);
    PM_CHECK_STR(r.output, "clean ");
    PM_CHECK(strstr(r.output, "==") == NULL); /* -q: memcheck prints only errors */
}

static void test_overflow_into_next_block(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run("overflow", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    PM_CHECK_STR(r.output, "Invalid write of size 1");
    PM_CHECK_STR(r.output, "overflow_into_next (pool_victim.c:");
    PM_CHECK_STR(r.output, "0 bytes after a block of size 32 alloc'd");
}

/* One past the end of a pool block is "0 bytes after" it, never "before"
 * the block after it with that block's allocation stack (before, with a
 * byte of slack between them, memcheck named whichever of the two it
 * found first: three of these twelve sizes were named wrong); and 16 bytes
 * past the end is caught (it was the next block's first byte), as with
 * memcheck's own malloc's redzones. */
static void test_overflow_named_after_its_own_block(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run("overflow-sizes", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    static const int sizes[] = {7, 27, 37, 64, 97, 111, 127, 152, 202, 255, 383, 480};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char want[80];
        snprintf(want, sizeof want, "0 bytes after a block of size %d alloc'd", sizes[i]);
        PM_CHECK_STR(r.output, want);
    }
    PM_CHECK_EQ(count_of(r.output, "Invalid write of size 1"), 12);
    PM_CHECK(strstr(r.output, "bytes before") == NULL);
    show_if_failed("pymalloc", &r);
    run("overflow-at=32,48", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    PM_CHECK_STR(r.output, "Invalid write of size 1");
    PM_CHECK_STR(r.output, "16 bytes after a block of size 32 alloc'd");
    show_if_failed("pymalloc", &r);
}

/* Up to 16 bytes past the end of a pool block is "k bytes after" it, for
 * the large classes too: memcheck names an address by a 24-byte margin
 * around each block (its effective redzone on amd64), and with 32 bytes
 * of slack p[n + 8] past a 448-byte block was within the next block's:
 * "24 bytes before a block of size 448", with the wrong allocation
 * stack. (479 bytes: memcheck's own block, beside the pools.) */
static void test_overflow_far_named_after_its_own_block(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run("overflow-far", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    PM_CHECK_EQ(count_of(r.output, "Invalid write of size 1"), 6);
    PM_CHECK_STR(r.output, "8 bytes after a block of size 448 alloc'd");
    PM_CHECK_STR(r.output, "8 bytes after a block of size 464 alloc'd");
    PM_CHECK_STR(r.output, "15 bytes after a block of size 472 alloc'd");
    PM_CHECK_STR(r.output, "15 bytes after a block of size 440 alloc'd");
    PM_CHECK_STR(r.output, "12 bytes after a block of size 455 alloc'd");
    PM_CHECK_STR(r.output, "15 bytes after a block of size 479 alloc'd");
    PM_CHECK(strstr(r.output, "bytes before") == NULL);
    show_if_failed("pymalloc", &r);
}

/* A realloc always moves a block under memcheck, as memcheck's own
 * realloc does: a read through the pointer passed to it is a use after
 * free, in every mode (a 20-byte pool block grown to 24 stayed in place,
 * CPython's rule, and the read went unseen in the pool modes). */
static void test_realloc_moves_as_memchecks(void)
{
    NEED_VALGRIND();
    const char *modes[] = {"pymalloc", "debug", "pymalloc_debug", "malloc_debug"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        pm_death_result r;
        run_expect(modes[i], "realloc-stale", 99, &r);
        PM_CHECK_STR(r.output, "Invalid read of size 1");
        PM_CHECK_STR(r.output, "read_after_realloc (pool_victim.c:");
        PM_CHECK_STR(r.output, " free'd");
        show_if_failed(modes[i], &r);
    }
}

static void test_use_after_free(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run("uaf-read", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    PM_CHECK_STR(r.output, "Invalid read of size 1");
    PM_CHECK_STR(r.output, "read_after_free (pool_victim.c:");
    PM_CHECK_STR(r.output, "8 bytes inside a block of size 40 free'd");
    run("uaf-write", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    PM_CHECK_STR(r.output, "Invalid write of size 1");
    PM_CHECK_STR(r.output, "write_after_free (pool_victim.c:");
    PM_CHECK_STR(r.output, "3 bytes inside a block of size 40 free'd");
}

/* A write through a stale pointer after later mallocs of the same size:
 * the freed block is kept from reuse (quarantined) under memcheck, as
 * memcheck's own free queue keeps libc's blocks; in the pool modes the
 * LIFO free list handed it out again at the next malloc, and the write
 * went unseen. */
static void test_use_after_free_and_reuse(void)
{
    NEED_VALGRIND();
    const char *modes[] = {"pymalloc", "debug", "pymalloc_debug", "malloc_debug"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        pm_death_result r;
        run_expect(modes[i], "uaf-reused", 99, &r);
        PM_CHECK_STR(r.output, "Invalid write of size 1");
        PM_CHECK_STR(r.output, "write_after_reuse (pool_victim.c:");
        show_if_failed(modes[i], &r);
    }
}

/* A read of heap bytes the program never wrote (after malloc, past a
 * realloc's old size) is reported as under libc's malloc, in every mode:
 * in the debug modes, memcheck was told nothing of the CLEANBYTE fill
 * (0xCD, defined to it), and reported nothing. The bytes written stay
 * defined across the realloc. */
static void test_uninitialised_reads(void)
{
    NEED_VALGRIND();
    const char *modes[] = {"pymalloc", "debug", "malloc_debug", "pymalloc_debug"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        pm_death_result r;
        run_expect(modes[i], "uninit", 99, &r);
        PM_CHECK_STR(r.output, "branch_on_new (pool_victim.c:");
        PM_CHECK_STR(r.output, "branch_on_grown (pool_victim.c:");
        PM_CHECK_EQ(count_of(r.output, "Conditional jump"), 3);
        show_if_failed(modes[i], &r);
    }
}

static void test_write_past_shrunk_block(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run("shrink", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    PM_CHECK_STR(r.output, "Invalid write of size 1");
    PM_CHECK_STR(r.output, "write_past_shrunk (pool_victim.c:");
    PM_CHECK_STR(r.output, "5 bytes after a block of size 90");
}

static void test_leak(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run("leak", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    PM_CHECK_STR(r.output, "100 bytes in 1 blocks are definitely lost");
    PM_CHECK_STR(r.output, "leak_one (pool_victim.c:");
}

/* The bytes and blocks of memcheck's "definitely lost" records in out,
 * summed (one record per allocation stack: clang's build of the victim
 * gives each block of a loop its own). */
static void definitely_lost(const char *out, unsigned long *bytes, unsigned long *blocks)
{
    *bytes = *blocks = 0;
    for (const char *l = out; l != NULL && *l != '\0'; l = strchr(l, '\n'), l = l ? l + 1 : l) {
        const char *eol = strchr(l, '\n'), *at = strstr(l, "== ");
        const char *lost = strstr(l, " blocks are definitely lost");
        if (at == NULL || lost == NULL || (eol != NULL && (at > eol || lost > eol)))
            continue;
        unsigned long by, bl;
        if (sscanf(at + 3, "%lu bytes in %lu blocks", &by, &bl) == 2) {
            *bytes += by;
            *blocks += bl;
        }
    }
}

/* Blocks lost after pm_trim gave the quarantined ones back are
 * "definitely lost", in every mode (the quarantine's ring kept the
 * addresses it gave back, and memcheck's leak check, which scans it as a
 * root, called blocks made there later "still reachable"). In the debug
 * modes each is its 24 bytes and the debug layer's 32. */
static void test_leak_after_trim(void)
{
    NEED_VALGRIND();
    const char *modes[] = {"pymalloc", "debug", "pymalloc_debug", "malloc_debug"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        pm_death_result r;
        run_expect(modes[i], "leak-after-trim", 99, &r);
        unsigned long bytes, blocks;
        definitely_lost(r.output, &bytes, &blocks);
        PM_CHECK_EQ(bytes, (i == 0 ? 192ul : 448ul));
        PM_CHECK_EQ(blocks, 8ul);
        PM_CHECK_STR(r.output, "leak_after_trim (pool_victim.c:");
        show_if_failed(modes[i], &r);
    }
}

/* Leaked blocks that only other leaked pool blocks point to are lost too,
 * as with libc's malloc (while arenas were mappings of their own, memcheck
 * scanned them as roots: the list was its head alone, the cycle nothing). */
static void test_leak_linked(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run("leak-linked", &r);
    PM_CHECK_EQ(r.exit_status, 99);
    PM_CHECK_STR(r.output, "480 (48 direct, 432 indirect) bytes in 1 blocks are definitely lost");
    PM_CHECK_STR(r.output, "leak_list (pool_victim.c:");
    PM_CHECK_STR(r.output, "128 (64 direct, 64 indirect) bytes in 1 blocks are definitely lost");
    PM_CHECK_STR(r.output, "leak_cycle (pool_victim.c:");
}

/* In the debug modes a lost block of the registry is "definitely lost",
 * as a lost pool block is: the registry keeps no pointer into it (its keys
 * were the blocks' data addresses, 16 bytes in: "possibly lost", which
 * --errors-for-leak-kinds=definite does not count). Memcheck sees the
 * debug layer's blocks: N + 32 bytes. */
static void test_leak_in_debug_modes(void)
{
    NEED_VALGRIND();
    const char *modes[] = {"debug", "malloc_debug", "pymalloc_debug"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        pm_death_result r;
        run_expect(modes[i], "leak-registry", 99, &r);
        PM_CHECK_STR(r.output, "1,032 bytes in 1 blocks are definitely lost");
        PM_CHECK_STR(r.output, "132 bytes in 1 blocks are definitely lost");
        PM_CHECK_STR(r.output, "leak_registry (pool_victim.c:");
        PM_CHECK(strstr(r.output, "possibly lost in loss record") == NULL);
        show_if_failed(modes[i], &r);
    }
}

/* Memcheck reports each of these bugs once, at the program's line, and
 * the program goes on correctly, as with libc's allocator: the pool does
 * not act on a free it did not hand out, nor follow a link the program
 * overwrote (each of these used to corrupt the pool: live bytes
 * overwritten, a block handed out twice, a crash inside the pool). */
static void test_program_goes_on_after_bug(void)
{
    NEED_VALGRIND();
    const struct {
        const char *which, *error, *where;
    } cases[] = {
        {"double-free", "Invalid free() / delete / delete[] / realloc()", "free_twice (pool_victim.c:"},
        {"interior-free", "Invalid free() / delete / delete[] / realloc()",
         "free_interior (pool_victim.c:"},
        {"realloc-freed", "Invalid free() / delete / delete[] / realloc()",
         "realloc_freed (pool_victim.c:"},
        {"link-after-free", "Invalid write of size", "write_link_after_free (pool_victim.c:"},
        /* The same frees deferred to the end of a slow path (a signal
         * handler's there): the deferral wrote its link over the free
         * block's, or over the live block's bytes (test_deferred_free). */
        {"deferred-double-free", "Invalid free() / delete / delete[] / realloc()",
         "free_twice_deferred (pool_victim.c:"},
        {"deferred-interior-free", "Invalid free() / delete / delete[] / realloc()",
         "free_interior_deferred (pool_victim.c:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pm_death_result r;
        run_expect("pymalloc", cases[i].which, 99, &r);
        PM_CHECK_STR(r.output, cases[i].error);
        PM_CHECK_STR(r.output, cases[i].where);
        PM_CHECK_STR(r.output, "ok\n");
        /* One error: the bug's own (memcheck prints "Invalid" once per error). */
        PM_CHECK_EQ(count_of(r.output, "== Invalid"), 1);
        PM_CHECK(strstr(r.output, "Mismatched") == NULL);
        if (pm_t_cur_failed)
            fprintf(stderr, "case %s:\n%s\n", cases[i].which, r.output);
    }
}

/* A free deferred to the end of a slow path (a signal handler's free
 * there) leaves the block as a free the direct way does: its whole slot
 * inaccessible (the deferral's 8-byte link stayed addressable, so a write
 * past a block of fewer than 8 bytes after its free went unseen). A second
 * free, or a free of an interior pointer, that way: test_program_goes_on_
 * after_bug's cases deferred-*. */
static void test_deferred_free(void)
{
    NEED_VALGRIND();
    pm_death_result r;
    run_expect("pymalloc", "deferred-tiny", 99, &r);
    PM_CHECK_STR(r.output, "Invalid write of size 1");
    PM_CHECK_STR(r.output, "write_past_tiny_freed (pool_victim.c:");
    show_if_failed("pymalloc", &r);
}

/* In the debug modes, the blocks of calls nested inside the hooks (a
 * signal handler's, served from the early arena) are heap blocks to
 * memcheck: their bugs are reported as a pool block's are. They were
 * static memory to memcheck, and the early arena has no debug checks:
 * no one reported any of these. */
static void test_nested_blocks(void)
{
    NEED_VALGRIND();
    const char *modes[] = {"debug", "malloc_debug", "pymalloc_debug"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        pm_death_result r;
        run_expect(modes[i], "nested", 99, &r);
        PM_CHECK_STR(r.output, "nested ok");
        PM_CHECK_STR(r.output, "Invalid write of size 1");
        PM_CHECK_STR(r.output, "overflow_nested (pool_victim.c:");
        PM_CHECK_STR(r.output, "0 bytes after a block of size 24 alloc'd");
        PM_CHECK_STR(r.output, "Invalid read of size 1");
        PM_CHECK_STR(r.output, "read_nested_after_free (pool_victim.c:");
        PM_CHECK_STR(r.output, "Invalid free() / delete / delete[] / realloc()");
        PM_CHECK_STR(r.output, "free_nested_twice (pool_victim.c:");
        PM_CHECK_STR(r.output, "72 bytes in 1 blocks are definitely lost");
        PM_CHECK_STR(r.output, "leak_nested (pool_victim.c:");
        show_if_failed(modes[i], &r);
    }
}

/* pm_trim gives the quarantine back while a signal handler allocates:
 * the handler's malloc and free do not wait for the class lock the
 * interrupted flush holds. Before, the process hung. Also in
 * pymalloc_debug, where under memcheck every debug block is a registry
 * block: the handler's pm_obj_* call waited for the registry stripe its
 * interrupted malloc held until the debug hooks guarded calls nested in
 * their own thread's (test_signal_nested). */
/* pool_victim's case `which` in pymalloc and pymalloc_debug: it exits 0
 * and says "<which> done" (its watchdog kills it after 60 s). */
static void runs_to_done(const char *which)
{
    static const char *const modes[] = {"pymalloc", "pymalloc_debug"};
    char done[64];
    snprintf(done, sizeof done, "%s done", which);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        pm_death_result r;
        run_expect(modes[i], which, 0, &r);
        PM_CHECK_STR(r.output, done);
        show_if_failed(modes[i], &r);
    }
}

static void test_trim_with_allocating_signal_handler(void)
{
    NEED_VALGRIND();
    runs_to_done("trim-signal");
}

/* The same handler while the program reallocates a pool block (moved:
 * see test_realloc_moves_as_memchecks) and asks its usable size: under
 * memcheck both read the block's
 * requested size under its class lock, which the handler's malloc of the
 * class waited for on its own thread (the process hung: 3 runs of 3 on
 * the previous library, and test_signal_nested once in CI); the handler
 * also reallocs a block made outside it, which inside a slow path of its
 * thread may find the lock taken (then ENOMEM, not a wait). */
static void test_realloc_with_allocating_signal_handler(void)
{
    NEED_VALGRIND();
    runs_to_done("realloc-signal");
}

int main(int argc, char **argv)
{
    pm_t_pin_env(NULL);
    victim = argc > 1 ? argv[1] : NULL;
    if (victim == NULL) {
        fprintf(stderr, "usage: test_valgrind <pool_victim>\n");
        return 2;
    }
    PM_RUN(test_clean_program_has_no_reports);
    PM_RUN(test_overflow_into_next_block);
    PM_RUN(test_overflow_named_after_its_own_block);
    PM_RUN(test_overflow_far_named_after_its_own_block);
    PM_RUN(test_realloc_moves_as_memchecks);
    PM_RUN(test_use_after_free);
    PM_RUN(test_use_after_free_and_reuse);
    PM_RUN(test_uninitialised_reads);
    PM_RUN(test_write_past_shrunk_block);
    PM_RUN(test_leak);
    PM_RUN(test_leak_linked);
    PM_RUN(test_leak_after_trim);
    PM_RUN(test_leak_in_debug_modes);
    PM_RUN(test_program_goes_on_after_bug);
    PM_RUN(test_deferred_free);
    PM_RUN(test_nested_blocks);
    PM_RUN(test_trim_with_allocating_signal_handler);
    PM_RUN(test_realloc_with_allocating_signal_handler);
    return pm_test_done();
}
