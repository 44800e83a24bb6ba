/*
 * pymalloc.h - the whole public API of pymalloc, a debugging memory allocator.
 *
 * pymalloc is CPython's memory manager taken out of CPython: three allocator
 * domains (raw, mem, obj), each an allocator {ctx, malloc, calloc, realloc,
 * free} that can be read, replaced and wrapped by hooks, and a set of modes
 * chosen by the PYMALLOC_MODE environment variable or pm_set_mode().
 *
 * Every function here is thread-safe.
 */
#ifndef PYMALLOC_H
#define PYMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PYMALLOC_VERSION_MAJOR 0
#define PYMALLOC_VERSION_MINOR 3
#define PYMALLOC_VERSION_PATCH 0
#define PYMALLOC_VERSION_STRING "0.3.0"
/* One number for comparisons: 0xMMmmpp. */
#define PYMALLOC_VERSION \
    ((PYMALLOC_VERSION_MAJOR << 16) | (PYMALLOC_VERSION_MINOR << 8) | PYMALLOC_VERSION_PATCH)

#if defined(PYMALLOC_STATIC_DEFINE)
#define PM_API
#elif defined(__GNUC__)
#define PM_API __attribute__((visibility("default")))
#else
#define PM_API
#endif

/* The three allocator domains, as in CPython. */
typedef enum pm_domain {
    PM_DOMAIN_RAW = 0, /* CPython: PyMem_RawMalloc */
    PM_DOMAIN_MEM = 1, /* CPython: PyMem_Malloc */
    PM_DOMAIN_OBJ = 2  /* CPython: PyObject_Malloc */
} pm_domain;

#define PM_DOMAIN_COUNT 3

/*
 * An allocator. The entry points below handle the edge cases before they
 * dispatch, so an allocator is called with:
 *   malloc:  0 <= n <= PTRDIFF_MAX (n == 0 must give a unique non-NULL pointer)
 *   calloc:  nelem * elsize does not overflow and is <= PTRDIFF_MAX
 *   realloc: p is never NULL; n may be 0 (must return a valid block, never free)
 *   free:    p is never NULL
 */
typedef struct pm_allocator {
    void *ctx;
    void *(*malloc)(void *ctx, size_t n);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *p, size_t n);
    void (*free)(void *ctx, void *p);
} pm_allocator;

/*
 * Read or replace a domain's allocator. A hook wraps the current allocator by
 * getting it into its own ctx and setting itself; it then calls down through
 * the saved copy. Both return 0 on success; an invalid domain, a NULL
 * pointer, or an allocator with a NULL function gives -1 with errno = EINVAL
 * and changes nothing. Reading or setting an allocator first installs the
 * mode chosen by PYMALLOC_MODE, so a hook wraps that mode.
 * These two, pm_set_mode and pm_setup_debug_hooks hold one lock while they
 * read or change the table: called by a signal handler that interrupted
 * its thread inside one of them, they return -1 with errno = EDEADLK and
 * change nothing, instead of waiting for ever.
 */
PM_API int pm_get_allocator(pm_domain domain, pm_allocator *out);
PM_API int pm_set_allocator(pm_domain domain, const pm_allocator *allocator);

/*
 * Entry points. Size 0 gives a distinct non-NULL pointer; a size above
 * PTRDIFF_MAX, or a calloc whose product overflows, gives NULL with
 * errno = ENOMEM; free(NULL) does nothing; realloc(NULL, n) is malloc(n);
 * realloc(p, 0) returns a valid minimal block and never frees p.
 * A block must be freed (or reallocated) through the domain that made it.
 */
PM_API void *pm_raw_malloc(size_t n);
PM_API void *pm_raw_calloc(size_t nelem, size_t elsize);
PM_API void *pm_raw_realloc(void *p, size_t n);
PM_API void pm_raw_free(void *p);

PM_API void *pm_mem_malloc(size_t n);
PM_API void *pm_mem_calloc(size_t nelem, size_t elsize);
PM_API void *pm_mem_realloc(void *p, size_t n);
PM_API void pm_mem_free(void *p);

PM_API void *pm_obj_malloc(size_t n);
PM_API void *pm_obj_calloc(size_t nelem, size_t elsize);
PM_API void *pm_obj_realloc(void *p, size_t n);
PM_API void pm_obj_free(void *p);

/*
 * Modes. pm_set_mode installs the named mode on all three domains (replacing
 * any hooks, also when it names the mode already installed). It returns 0 on
 * success; -1 with errno = EINVAL for an unknown name (NULL included); -1
 * with errno = EBUSY once any block has been allocated in a different mode
 * (a live block must always be freed by the allocator that made it). Once a
 * block has been allocated, setting the mode that is installed changes
 * nothing (any hooks stay) and returns 0.
 *
 * pm_mode_name returns the canonical name of the installed mode: "default"
 * and "debug" are aliases and report the mode they stand for. Hooks set
 * over it (pm_setup_debug_hooks included) do not change the name:
 * pm_debug_enabled tells whether the debug hooks are on.
 * pm_mode_names returns the accepted names, NULL-terminated, in the order
 * they are listed in error messages.
 */
PM_API int pm_set_mode(const char *name);
PM_API const char *pm_mode_name(void);
PM_API const char *const *pm_mode_names(void);

/*
 * Debug hooks (modes malloc_debug, pymalloc_debug, debug). Every block gets
 * guard bytes, an API id and a serial number; free, realloc and
 * pm_check_block check them and report a heap error: one line naming the
 * error, the entry point, the block and its serial, then a dump of the
 * block. What happens next is the error handler's choice: by default the
 * process aborts (or, with PYMALLOC_ON_ERROR=report, counts the error and
 * goes on, and exits non-zero at the end).
 */
typedef enum pm_error_class {
    PM_ERR_NONE = 0,
    PM_ERR_BUFFER_OVERFLOW,  /* bytes written past the end of a block */
    PM_ERR_BUFFER_UNDERFLOW, /* bytes written before the start of a block */
    PM_ERR_DOUBLE_FREE,      /* free of a block already freed */
    PM_ERR_INVALID_POINTER,  /* not a block of ours (stack, global, interior) */
    PM_ERR_API_MISMATCH,     /* freed through another domain than it came from */
    PM_ERR_USE_AFTER_FREE,   /* realloc or check of a freed block, or a freed
                                block written after its free */
    PM_ERR_HEADER_CORRUPT,   /* size or serial field damaged, guards intact */
    PM_ERR_STRAY_WRITE,      /* free pool memory no block was handed out from
                                written (a slot's free-list link): a write
                                past a block's end that skipped its guard
                                bytes, or through a dangling or wild pointer */
    /* (A new class goes here: the numbers above never change, as the
     * counts passed on across an exec, PYMALLOC_ERRORS_BEFORE_EXEC, are
     * read by place by every version.) */
    PM_ERR_CLASS_COUNT
} pm_error_class;

/* "buffer overflow", "double free", ...; "unknown error" out of range. */
PM_API const char *pm_error_class_name(pm_error_class c);

typedef struct pm_error_report {
    pm_error_class error;
    const char *entry;     /* the entry point, e.g. "pm_mem_free" */
    const void *address;   /* the block the report is about: the pointer
                              passed to it, or the block found to be the
                              cause (a buffer overflow found in the header
                              of the block after it, passed in; a freed pool
                              block whose free-list link a malloc met; for
                              a stray write, the free slot's data address,
                              as a block's would be) */
    size_t size;           /* bytes requested for the block (0 if unknown;
                              for a stray write, the slot's bytes) */
    uint64_t serial;       /* its serial number (0 if unknown) */
    ptrdiff_t offset;      /* first damaged byte relative to address: N for
                              one byte past an N-byte block, -1 for one byte
                              before it; 0 when no byte is damaged (also
                              one byte past a 0-byte block: tell them apart
                              by `error`) */
    char api_expected;     /* API of the call: 'r', 'm' or 'o'; for
                              pm_check_block, which has none, the block's
                              (0 for a pointer that is no block) */
    char api_found;        /* API the block was allocated with, 0 if unknown */
    const char *message;   /* the one-line report, without the newline:
                              valid only during the handler's call (copy
                              it to keep it); entry is a static string */
} pm_error_report;

/* Called after the report is printed, in the thread that found the error,
 * with the ctx installed with it; no lock of the library is held. If it
 * returns, the call that found the error goes on: the damaged block is
 * leaked (never freed), a realloc returns NULL. It may allocate, report
 * errors itself, or leave by longjmp (the call it interrupts does not
 * finish: the damaged block is leaked). A report made inside it about the
 * block it is handling (a handler that frees or checks the block it was
 * given; a block it allocated at that address is taken as the same) is
 * printed and counted, but does not call it again: that call goes on as in
 * PYMALLOC_ON_ERROR=report. Nor is it called more than 64 deep in itself
 * (a handler whose own heap errors keep calling it). */
typedef void (*pm_error_handler)(const pm_error_report *report, void *ctx);

/* Install fn (NULL: the default, abort() or PYMALLOC_ON_ERROR=report). */
PM_API void pm_set_error_handler(pm_error_handler fn, void *ctx);

/* Errors reported so far in this process, of one class (PM_ERR_NONE: all);
 * a child made by fork() starts at 0. After an exec, they include those
 * the program before it counted and passed on (PYMALLOC_ERRORS_BEFORE_EXEC,
 * with PYMALLOC_ON_ERROR=report). */
PM_API unsigned long pm_error_count(pm_error_class c);

/* Check one live block allocated through any domain: 0 if intact, -1 after
 * reporting the error (entry "pm_check_block"). NULL gives 0. A block of a
 * domain without the debug hooks is an invalid pointer to it. With no debug
 * hooks on any domain nothing can be checked: -1 with errno = ENOTSUP, no
 * report. */
PM_API int pm_check_block(const void *p);

/* Wrap every domain's current allocator with the debug hooks. Only possible
 * before the first allocation (a live block must be freed by the allocator
 * that made it): returns 0 if the hooks are installed (or already were),
 * -1 with errno = EBUSY once something has been allocated without them.
 * pm_set_mode() replaces them like any hook, and so does pm_set_allocator(),
 * unless the domain's allocator was read with pm_get_allocator() while they
 * were installed (a hook calling down to them); setting a copy of the hooks
 * themselves puts them back. */
PM_API int pm_setup_debug_hooks(void);
/* 1 if the debug hooks are installed on all three domains, else 0. */
PM_API int pm_debug_enabled(void);

/*
 * Statistics of the pool allocator (pymalloc mode), as CPython's
 * sys._debugmallocstats. Valid in every mode: the pool figures are zero
 * while no pool was ever used. Blocks sitting in thread caches are counted
 * as allocated (their pools handed them out) and also reported on their own.
 * The byte figures balance:
 *   bytes_allocated_blocks + bytes_available_blocks + bytes_unused_pools +
 *   bytes_pool_headers + bytes_quantization + bytes_arena_alignment
 *     == arenas_current * arena_size
 */
#define PM_STATS_NCLASSES 34

struct pm_stats {
    size_t arena_size;             /* 1 MiB */
    size_t pool_size;              /* 16 KiB */
    size_t small_threshold;        /* the largest request served from pools:
                                      512 (CPython's), or 544 once the debug
                                      hooks wrap the pools (pymalloc_debug:
                                      requests of up to 512 bytes plus their
                                      32 debug bytes); classes = this / 16 */
    size_t arenas_allocated_total; /* ever mapped */
    size_t arenas_reclaimed;       /* returned to the OS */
    size_t arenas_highwater;       /* most at once */
    size_t arenas_current;         /* mapped now */
    size_t bytes_allocated_blocks; /* blocks out (users and thread caches) */
    size_t bytes_available_blocks; /* free blocks in used pools, carved or not */
    size_t unused_pools;           /* empty pools in mapped arenas */
    size_t bytes_unused_pools;     /* unused_pools * pool_size */
    size_t bytes_pool_headers;     /* 48 per pool in use */
    size_t bytes_quantization;     /* pool tails too small for a block */
    size_t bytes_arena_alignment;  /* the partial pool of unaligned arenas */
    size_t blocks_in_thread_caches;
    size_t bytes_in_thread_caches; /* included in bytes_allocated_blocks */
    size_t raw_blocks_current;     /* live blocks sent to libc (0, > small_threshold,
                                      aligned);
                                      libc blocks freed through pm count down too;
                                      under the debug hooks, blocks their
                                      quarantine holds count as live */
    size_t raw_blocks_total;
    struct pm_stats_class {
        size_t size;             /* block size: 16 * (index + 1); the last two
                                    classes (528, 544) only in use under the
                                    debug hooks */
        size_t pools;            /* pools in use (used or full) */
        size_t blocks_in_use;    /* includes blocks in thread caches */
        size_t blocks_available; /* free blocks of those pools */
        size_t blocks_cached;    /* in thread caches (under memcheck: quarantined) */
    } classes[PM_STATS_NCLASSES];
    /* Pools in use whose header was overwritten (a write past the end of
     * the last block of the pool before it): left out of the figures above,
     * which cannot be read from it; their bytes make the byte lines add up
     * to arenas x 1 MiB (a header written to zeros, count and all, reads
     * as an empty pool's: such pools are told by the arena's count of
     * empty ones). The debug hooks stop the program at any other damaged
     * header. */
    size_t pools_damaged;
    size_t bytes_damaged_pools; /* pools_damaged * pool_size */
    /* The ownership map (CPython's "arena map"): a static root of
     * pointers and 256 KiB leaves mapped as arenas need them, never
     * freed; the debug hooks' side map (a word per block slot, the pools'
     * record of their blocks) has the same shape, 8 bytes per entry. */
    size_t arena_map_leaves;
    size_t bytes_arena_map_root;
    size_t bytes_arena_map_leaves;
    size_t side_map_leaves;
    size_t bytes_side_map_root;
    size_t bytes_side_map_leaves;
};

/* Fill *out (0), or -1 with errno = EINVAL for NULL. A consistent snapshot
 * of the pools; the thread-cache counts are read without stopping threads.
 * Called by a signal handler that interrupted its thread inside the pools
 * (which may hold one of their locks): -1 with errno = EDEADLK, at once. */
PM_API int pm_get_stats(struct pm_stats *out);

/* Write the statistics to fd in CPython's _debugmallocstats format, without
 * allocating (in a signal handler that interrupted the pools, one line
 * saying so instead). PYMALLOC_STATS=1 prints them to stderr at exit. */
PM_API void pm_print_stats(int fd);

/* Give the calling thread's cached pool blocks back to their pools, so that
 * arenas kept mapped only by them are returned to the system (a thread's
 * cache holds up to a pool's worth of blocks per size class, and one cached
 * block keeps its whole arena mapped). Other threads' caches are flushed
 * when they exit. Under the debug hooks it also empties their quarantine
 * (PYMALLOC_QUARANTINE): each freed block held there is checked for writes
 * after its free, then given back to the C library. 1 if memory was
 * returned, else 0 (as malloc_trim). The malloc override's malloc_trim()
 * empties the quarantine, calls glibc's, then gives the pools back. */
PM_API int pm_trim(void);

/* The library's version string, e.g. "0.3.0" (may differ from the header's). */
PM_API const char *pm_version(void);

#ifdef __cplusplus
}
#endif

#endif /* PYMALLOC_H */
