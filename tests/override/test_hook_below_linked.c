/*
 * tests/override/test_hook_below_linked.c - a hook of the program's own on
 * the raw domain, wrapped by the debug hooks, in a program linked with
 * libpymalloc.a, whose hook calls strdup and free (the override's malloc
 * and free, the mem domain): those are the program's calls, served and
 * checked by the mem domain's debug hooks (before 2026-12-06 they were
 * taken for a signal handler's: unchecked early-arena blocks). The hooks
 * go in at the start of main, before anything is allocated, over the mode
 * this test runs under without its debug hooks (malloc for malloc and
 * malloc_debug, else pymalloc). Exit status 0, or 1 after a line.
 */
#define _GNU_SOURCE 1
#include "pymalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pm_allocator below;
static char *note;
static int notes;

static void *h_malloc(void *c, size_t n)
{
    (void)c;
    free(note);
    note = strdup("note"); /* 5 bytes */
    notes += note != NULL;
    return below.malloc(below.ctx, n);
}
static void *h_calloc(void *c, size_t k, size_t n) { (void)c; return below.calloc(below.ctx, k, n); }
static void *h_realloc(void *c, void *p, size_t n) { (void)c; return below.realloc(below.ctx, p, n); }
static void h_free(void *c, void *p) { (void)c; below.free(below.ctx, p); }

/* A mem domain hook with a guard against its own recursion (its strdup
 * comes back to it, through the override's malloc), as hooks that log or
 * record in the heap have: its note is made while the program's malloc
 * is under way, and is the program's too (before 2026-12-06 the
 * override took it for a signal handler's: an early-arena block). */
static pm_allocator mem_below;
static __thread volatile int in_hook; /* (volatile: the compiler may not drop the stores around strdup, which comes back here) */
static char *mem_note;
static int mem_notes;

static void *m_malloc(void *c, size_t n)
{
    (void)c;
    if (!in_hook) {
        in_hook = 1;
        free(mem_note);
        mem_note = strdup("mem note"); /* 9 bytes */
        mem_notes += mem_note != NULL;
        in_hook = 0;
    }
    return mem_below.malloc(mem_below.ctx, n);
}
static void *m_calloc(void *c, size_t k, size_t n) { (void)c; return mem_below.calloc(mem_below.ctx, k, n); }
static void *m_realloc(void *c, void *p, size_t n) { (void)c; return mem_below.realloc(mem_below.ctx, p, n); }
static void m_free(void *c, void *p) { (void)c; mem_below.free(mem_below.ctx, p); }

static pm_error_report seen;
static int n_seen;
static void keep(const pm_error_report *r, void *ctx)
{
    (void)ctx;
    seen = *r;
    n_seen++;
}

int main(void)
{
    const char *m = getenv("PYMALLOC_MODE");
    const char *base = m != NULL && strncmp(m, "malloc", 6) == 0 ? "malloc" : "pymalloc";
    pm_allocator hook = {NULL, h_malloc, h_calloc, h_realloc, h_free};
    pm_allocator mem_hook = {NULL, m_malloc, m_calloc, m_realloc, m_free};
    if (pm_set_mode(base) != 0 || pm_get_allocator(PM_DOMAIN_RAW, &below) != 0 ||
        pm_set_allocator(PM_DOMAIN_RAW, &hook) != 0 ||
        pm_get_allocator(PM_DOMAIN_MEM, &mem_below) != 0 ||
        pm_set_allocator(PM_DOMAIN_MEM, &mem_hook) != 0 || pm_setup_debug_hooks() != 0) {
        fprintf(stderr, "set-up failed (something allocated before main?)\n");
        return 1;
    }
    pm_set_error_handler(keep, NULL);
    /* 20,000 notes of 5 bytes made and freed, 64 live at most: more than
     * the early arena would hold if they were never freed. */
    for (int i = 0; i < 20000; i++)
        pm_raw_free(pm_raw_malloc(40));
    int checked = note != NULL && pm_check_block(note) == 0 && n_seen == 0;
    /* The note is a checked mem block: one byte past it is found by free. */
    ((volatile char *)note)[5] = 'x';
    free(note);
    int found = n_seen == 1 && seen.error == PM_ERR_BUFFER_OVERFLOW && seen.size == 5 &&
                seen.offset == 5 && seen.entry != NULL && strcmp(seen.entry, "free") == 0;
    if (notes != 20000 || !checked || !found) {
        fprintf(stderr, "FAIL: notes %d, checked %d, overflow found %d (%d reports, entry %s)\n",
                notes, checked, found, n_seen, n_seen ? seen.entry : "-");
        return 1;
    }
    /* The same through the program's malloc and the mem domain's hook. */
    n_seen = 0;
    for (int i = 0; i < 20000; i++)
        free(malloc(40));
    checked = mem_note != NULL && pm_check_block(mem_note) == 0 && n_seen == 0;
    ((volatile char *)mem_note)[9] = 'x';
    char *last = mem_note;
    mem_note = NULL;
    free(last);
    found = n_seen == 1 && seen.error == PM_ERR_BUFFER_OVERFLOW && seen.size == 9 &&
            seen.offset == 9 && seen.entry != NULL && strcmp(seen.entry, "free") == 0;
    if (mem_notes < 20000 || !checked || !found) {
        fprintf(stderr, "FAIL: mem notes %d, checked %d, overflow found %d (%d reports, entry %s)\n",
                mem_notes, checked, found, n_seen, n_seen ? seen.entry : "-");
        return 1;
    }
    puts("ok");
    return 0;
}
