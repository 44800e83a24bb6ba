/*
 * bench/debug_churn.c - the cost of the debug hooks over the mode they wrap.
 *
 * Churn: `live` slots hold blocks of 1..512 bytes (pymalloc's small sizes) in
 * the mem and obj domains; each step frees a random slot and allocates a new
 * block there, writing its first and last byte. Run it in two modes and
 * compare (wall time is noisy on a shared machine; for repeatable figures
 * compare instruction counts under `valgrind --tool=callgrind`):
 *
 *   PYMALLOC_MODE=malloc       build/bench/pymalloc-debug-churn 2000000 10000
 *   PYMALLOC_MODE=malloc_debug build/bench/pymalloc-debug-churn 2000000 10000
 *
 * Prints the mode, ns per step, and in a debug mode the registry's metadata.
 */
#include "pymalloc.h"
#include "pm_debug.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 2000000;
    long live = argc > 2 ? atol(argv[2]) : 10000;
    if (steps <= 0 || live <= 0) {
        fprintf(stderr, "usage: %s [steps] [live blocks]\n", argv[0]);
        return 2;
    }
    unsigned char **slot = calloc((size_t)live, sizeof *slot);
    uint64_t s = 88172645463325252u;
    unsigned long sum = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < steps; i++) {
        long k = (long)(rnd(&s) % (uint64_t)live);
        int obj = k & 1;
        if (slot[k] != NULL) {
            sum += slot[k][0];
            (obj ? pm_obj_free : pm_mem_free)(slot[k]);
        }
        size_t n = 1 + (size_t)(rnd(&s) % 512);
        unsigned char *p = (obj ? pm_obj_malloc : pm_mem_malloc)(n);
        p[0] = (unsigned char)i;
        p[n - 1] = (unsigned char)n;
        slot[k] = p;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
                (double)steps;
    printf("mode %s: %ld steps, %ld live blocks: %.1f ns/step (checksum %lu)\n",
           pm_mode_name(), steps, live, ns, sum);
    if (pm_debug_enabled()) {
        size_t records = 0, bytes = pm_i_reg_metadata_bytes(&records);
        printf("registry: %zu records (live blocks and recently freed ones), %zu bytes of "
               "metadata (%.1f per record; pool blocks have side words instead)\n",
               records, bytes, records ? (double)bytes / (double)records : 0.0);
    }
    for (long k = 0; k < live; k++)
        if (slot[k] != NULL)
            ((k & 1) ? pm_obj_free : pm_mem_free)(slot[k]);
    free(slot);
    return 0;
}
