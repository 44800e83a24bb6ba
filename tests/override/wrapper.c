/*
 * tests/override/wrapper.c - a malloc wrapper of the kind preloaded in
 * front of an allocator (glibc's libmemusage.so, heaptrack): it counts the
 * calls and passes them on to the next malloc (dlsym(RTLD_NEXT, ...)). With
 * libpymalloc.so preloaded after it, pymalloc serves every call.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

static void *(*next_malloc)(size_t);
static void (*next_free)(void *);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);

/* dlsym may calloc before next_calloc is known: from this static buffer. */
static _Alignas(16) char early[4096];
static size_t early_used;

static void resolve(void)
{
    if (next_malloc != NULL)
        return;
    void *m = dlsym(RTLD_NEXT, "malloc"), *f = dlsym(RTLD_NEXT, "free"),
         *c = dlsym(RTLD_NEXT, "calloc"), *r = dlsym(RTLD_NEXT, "realloc");
    memcpy(&next_free, &f, sizeof f);
    memcpy(&next_calloc, &c, sizeof c);
    memcpy(&next_realloc, &r, sizeof r);
    memcpy(&next_malloc, &m, sizeof m);
}

static int is_early(const void *p)
{
    return (const char *)p >= early && (const char *)p < early + sizeof early;
}

void *malloc(size_t n)
{
    resolve();
    return next_malloc(n);
}

void free(void *p)
{
    if (is_early(p))
        return;
    resolve();
    next_free(p);
}

void *calloc(size_t a, size_t b)
{
    if (next_calloc == NULL) { /* inside resolve's dlsym */
        size_t n = (a * b + 15) & ~(size_t)15;
        if (b != 0 && a > (size_t)-1 / b)
            return NULL;
        if (n > sizeof early - early_used)
            return NULL;
        void *p = early + early_used;
        early_used += n;
        return p; /* static memory: zero */
    }
    return next_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    resolve();
    return next_realloc(p, n);
}
