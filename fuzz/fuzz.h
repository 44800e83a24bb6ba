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

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_FAIL(...)                                                                \
    do {                                                                            \
        fprintf(stderr, "fuzz oracle: %s:%d: ", __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                        \
        fflush(stderr);                                                             \
        abort();                                                                    \
    } while (0)

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
