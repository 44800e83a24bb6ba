/*
 * tests/recorder.h - an error handler that records the last report (and
 * its line) and counts the calls, for single-threaded tests of the debug
 * hooks: watch() installs it with a clean record.
 */
#ifndef PM_TEST_RECORDER_H
#define PM_TEST_RECORDER_H

#include <pymalloc.h>
#include <stdio.h>
#include <string.h>

static struct {
    int calls;
    pm_error_report r; /* message and entry cleared: valid only in the call */
    char message[512];
} S;

static void record(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    S.calls++;
    S.r = *r;
    snprintf(S.message, sizeof S.message, "%s", r->message);
    S.r.message = NULL;
    S.r.entry = NULL;
}

static void watch(void)
{
    memset(&S, 0, sizeof S);
    pm_set_error_handler(record, NULL);
}

#endif
