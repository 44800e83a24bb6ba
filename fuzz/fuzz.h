/*
 * fuzz/fuzz.h - what the fuzz targets share: the libFuzzer entry points, an
 * input reader that never runs past the end, and the oracle's failure path.
 *
 * Each target (operations.c, options.c) defines LLVMFuzzerTestOneInput and is
 * linked twice: with libFuzzer's main (clang, -fsanitize=fuzzer,...) and with
 * fuzz/replay.c, a plain main() that runs every file of a corpus.
 *
 * The harness is not library code: it may use stdio and libc malloc freely.
 * An oracle failure prints one "fuzz oracle:" line and aborts, which
 * libFuzzer records as a crash (input saved) and replay reports as a failure.
 */
#ifndef PM_FUZZ_H
#define PM_FUZZ_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define FZ_HAVE_SINGLE_THREADED 1
#endif
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Whether this process has had a second thread (glibc's
 * __libc_single_threaded, which the library reads: its fast paths differ).
 * libFuzzer runs with a thread of its own (the RSS limit's, unless
 * -rss_limit_mb=0); replay runs single-threaded unless --threads. */
static inline int fz_threaded(void)
{
#ifdef FZ_HAVE_SINGLE_THREADED
    return __libc_single_threaded == 0;
#else
    return 1;
#endif
}

/* How to replay the input that failed, in the state this process was in. */
static inline void fz_replay_hint(void)
{
    fprintf(stderr, "fuzz oracle: the process was %s: replay with replay_<target>%s FILE\n",
            fz_threaded() ? "multi-threaded" : "single-threaded",
            fz_threaded() ? " --threads" : "");
}

#define FZ_FAIL(...)                                                                \
    do {                                                                            \
        fprintf(stderr, "fuzz oracle: %s:%d: ", __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                        \
        fz_replay_hint();                                                           \
        fflush(stderr);                                                             \
        abort();                                                                    \
    } while (0)

/* libFuzzer only, in LLVMFuzzerInitialize after the first allocation: the
 * debug hooks install a SIGABRT handler (the check of the heap at abort)
 * when no handler is set, and libFuzzer, which sets its handlers after
 * LLVMFuzzerInitialize, keeps a handler it finds: an oracle's abort() then
 * killed the process without libFuzzer's "deadly signal" report, and the
 * input was never saved as a crash. SIGABRT goes back to its default, for
 * libFuzzer to take (the hooks install their handler once per process). */
static inline void fz_abort_to_libfuzzer(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGABRT, &dfl, NULL);
}

/* Tests of the harness itself (fuzz/check_crash_saved.sh): with
 * PM_FUZZ_SELFTEST_FAIL set, every input fails the oracle, so that a test
 * can check that libFuzzer saves the failing input as a crash. */
static inline void fz_selftest(void)
{
    static int on = -1;
    if (on < 0)
        on = getenv("PM_FUZZ_SELFTEST_FAIL") != NULL;
    if (on)
        FZ_FAIL("PM_FUZZ_SELFTEST_FAIL is set: every input fails");
}

/* Reading the input: past the end every read gives 0 and fz_done says so. */
typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline int fz_done(const fz_in *in) { return in->n == 0; }

static inline uint8_t fz_u8(fz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in *in)
{
    uint16_t lo = fz_u8(in);
    return (uint16_t)(lo | (uint16_t)fz_u8(in) << 8);
}

static inline uint32_t fz_u32(fz_in *in)
{
    uint32_t lo = fz_u16(in);
    return lo | (uint32_t)fz_u16(in) << 16;
}

#endif
