/* tests/raw_label.h - the statistics table as text (pm_t_stats_text),
 * and its line of the blocks sent to libc, which names the requests that
 * go there as the program sees them, in every pool mode ("# raw blocks
 * (0, >512, aligned)" in pymalloc mode): the largest request it names as
 * pooled is a pool block, one byte more is a raw block, and a request of
 * 0 is one if and only if the label lists it (by raw_blocks_total, which
 * only counts up: raw_blocks_current may sit at 0, clamped, after frees of
 * libc blocks the pools never made). Checked through domain D, whose
 * allocations must reach the pools. */
#ifndef PM_TEST_RAW_LABEL_H
#define PM_TEST_RAW_LABEL_H

#include "domains.h"
#include "harness.h"

/* pm_print_stats' table, as a string (a static buffer: the next call
 * overwrites it). */
static const char *pm_t_stats_text(void)
{
    static char out[16384];
    int fds[2];
    PM_CHECK_EQ(pipe(fds), 0);
    pm_print_stats(fds[1]);
    close(fds[1]);
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fds[0]);
    return out;
}

static void pm_t_check_raw_label(const pm_t_domain *D)
{
    const char *out = pm_t_stats_text();
    static const char head[] = "# raw blocks (";
    const char *l = strstr(out, head);
    PM_CHECK(l != NULL);
    if (l == NULL)
        return;
    l += sizeof head - 1;
    int zero = strncmp(l, "0, ", 3) == 0;
    if (zero)
        l += 3;
    PM_CHECK(*l == '>');
    char *end;
    size_t largest = (size_t)strtoul(l + 1, &end, 10);
    PM_CHECK(strncmp(end, ", aligned)", 10) == 0);
    PM_CHECK(largest >= 16);
    const size_t sizes[] = {0, largest, largest + 1};
    const int raw[] = {zero, 0, 1};
    for (int i = 0; i < 3; i++) {
        struct pm_stats before, after;
        PM_CHECK_EQ(pm_get_stats(&before), 0);
        void *p = D->malloc(sizes[i]);
        PM_CHECK(p != NULL);
        PM_CHECK_EQ(pm_get_stats(&after), 0);
        if ((int)(after.raw_blocks_total - before.raw_blocks_total) != raw[i])
            fprintf(stderr, "a request of %zu bytes: %s raw block, by the label '%.40s'\n",
                    sizes[i], raw[i] ? "not a" : "a", strstr(out, head));
        PM_CHECK_EQ(after.raw_blocks_total - before.raw_blocks_total, raw[i]);
        D->free(p);
    }
}

#endif
