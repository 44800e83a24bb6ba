/*
 * pm_debug.h - what the debug hooks' files share (modes/debug.c,
 * modes/debug_registry.c, src/report.c). Nothing outside them needs it; the
 * few entry points the rest of the library calls are in pm_internal.h.
 */
#ifndef PM_DEBUG_H
#define PM_DEBUG_H

#include "pm_internal.h"

/* The fill bytes (the Windows CRT debug heap's, as in CPython). */
#define PM_I_CLEANBYTE 0xCD     /* new data (malloc, grown realloc) */
#define PM_I_DEADBYTE 0xDD      /* a freed block, header and trailer too */
#define PM_I_FORBIDDENBYTE 0xFD /* the guard bytes around the data */

/* Bytes the debug layer adds around each block: a 16-byte header (size, API
 * id, 7 pad bytes) and a 16-byte trailer (8 pad bytes, serial). */
#define PM_I_DEBUG_HEAD 16
#define PM_I_DEBUG_TAIL 16
#define PM_I_DEBUG_EXTRA (PM_I_DEBUG_HEAD + PM_I_DEBUG_TAIL)

/* ---------------------------------------------------------------------------
 * The registry of debug blocks (modes/debug_registry.h).
 *
 * Every block the debug layer hands out without a side word (a pool block
 * has one: modes/pool.h) is recorded by its data address, so
 * that free, realloc and pm_check_block can tell a live block from a freed
 * one or from a pointer that was never ours before reading a single byte of
 * it. Freed blocks are remembered (FIFO, bounded) so that a second free is
 * named a double free while the address has not been handed out again.
 */
enum {
    PM_I_REG_EMPTY = 0,
    PM_I_REG_LIVE = 1,
    PM_I_REG_FREED = 2,
    PM_I_REG_DELETED = 3 /* a hole left by a forgotten freed block */
};

typedef struct pm_i_reg_info {
    size_t size;      /* bytes requested (N) */
    uint64_t serial;  /* low 48 bits of the block's serial number */
    size_t offset;    /* data - base: 16, or the alignment of an aligned block */
    char api;         /* 'r', 'm' or 'o' */
    int state;        /* PM_I_REG_LIVE or PM_I_REG_FREED; EMPTY if unknown */
    int held;         /* freed, and its memory held by the quarantine */
} pm_i_reg_info;

#define PM_I_SERIAL_MASK ((UINT64_C(1) << 48) - 1)

/* The operations (modes/debug_registry.h, included by modes/debug.c only)
 * run with the lock of the address's stripe held: pm_i_reg_lock(data)
 * returns the stripe, pm_i_reg_unlock releases it. pm_i_reg_lookup gives
 * the record of an address (live or freed) or NULL; pm_i_reg_insert records
 * a live block (replacing a freed record of the same address; -1 if no
 * metadata memory could be had); pm_i_reg_mark_freed turns a live record
 * into a freed one; pm_i_reg_remove forgets a record. */
typedef struct pm_i_reg_entry pm_i_reg_entry;

/* Bytes of metadata the registry holds (tables and FIFOs), and in *records
 * (if not NULL) how many records (live and remembered freed) it has. */
size_t pm_i_reg_metadata_bytes(size_t *records);

/* ---------------------------------------------------------------------------
 * Reports (src/report.c).
 */

/* What is known about the block when an error is reported. */
typedef struct pm_i_err {
    pm_error_class error;
    const char *entry;     /* "pm_mem_free" */
    const void *address;   /* the pointer passed in */
    int known;             /* 1: the registry knows the block (size, serial, api) */
    int readable;          /* 1: the block is live and ours: dump its bytes */
    size_t size;
    uint64_t serial;
    ptrdiff_t offset;      /* first damaged byte, relative to data */
    ptrdiff_t last;        /* last damaged byte, relative to data */
    char api_expected;     /* the API of the call */
    char api_found;        /* the API the block was allocated with */
    int below_header;      /* underflow: the C library's chunk header before
                              the block is damaged (offset), our bytes are not */
    int freed_link;        /* use after free: the freed pool block's first 16
                              bytes (the pool's free-list link and its check
                              word, at p-16) were overwritten: link_bytes */
    unsigned char link_bytes[16];
    int link_exact;        /* freed_link, stray write: offset..last are the
                              bytes written (one word of the pair still holds
                              a link of the pool's); else the damage lies
                              somewhere in offset..last */
    int freed_data;        /* use after free: the data or trailer of the freed
                              pool block at address (size), which its free
                              filled with DEADBYTE, differ at offset..last;
                              the block is leaked, its bytes readable */
    int quarantined;       /* a freed block the quarantine holds (the C
                              library's), not a pool block; with freed_data
                              its bytes were found written */
    /* The damage was found in the header of the block after this one (the
       block operated on: not handed back), by a write that went on from
       this block's end: that block's address and serial (0: none). */
    const void *next_block;
    uint64_t next_serial;
    /* Blocks between this one and next_block that the write ran over whole
       (their headers from below and their trailers damaged) on its way. */
    unsigned run_over;
    /* 1: this block's own header was written from below too (run over
       whole), and the search for the writer stopped here: the write may
       have come from further down. */
    int further_down;
    /* 1: next_block is the block before this one in memory instead, whose
       serial field (its last 8 bytes) alone this block's underflow reached,
       going down through this block's header. */
    int next_below;
    /* An invalid pointer into a block of ours (its header, data or
       trailer): that block's address, size, serial, the API it was
       allocated with, and whether it is freed (a pool block's slot
       remembers); inside NULL: none found. */
    const void *inside;
    size_t inside_size;
    uint64_t inside_serial;
    char inside_api;
    int inside_freed;
    /* A stray write (PM_ERR_STRAY_WRITE): the free-list link of the free
       pool slot at address (its data address, as a block's would be; size:
       the slot's bytes) was overwritten (link_bytes); stray_unused: no
       block was handed out there since its pool took its size class. The
       block below it in memory, live or freed (near NULL: none known). */
    int stray_unused;
    const void *near;
    size_t near_size;
    uint64_t near_serial;
    char near_api;
    int near_freed;
    /* Found by a call nested in another of its thread (a signal handler's,
       modes/debug.c), which may hold locks: the error handler runs as a
       nested call too (pm_i_debug_busy stays set). */
    int nested;
    /* Found at exit in a fork child: the block was made by its parent
       before the fork, and the pages of the damage were written since
       (modes/debug.c: exit_keep): 1 the parent's copy does not have the
       damage, 2 it could not be read, 3 the parent has changed the block
       since (parents_damage). */
    int before_fork;
    /* A double free (use after free) of a block the program freed before,
       whose free found it damaged, reported it and leaked it: readable,
       offset and last are its damage. */
    int freed_damaged;
} pm_i_err;

/* Print the one-line report and the dump, count the error, then call the
 * handler (default: abort(); PYMALLOC_ON_ERROR=report: go on). Returns if the
 * caller must go on (the damaged block is then leaked). */
void pm_i_debug_report(const pm_i_err *e);
/* The same, calling written(arg) once the report is written, before the
 * handler or abort(). */
void pm_i_debug_report_then(const pm_i_err *e, void (*written)(void *), void *arg);

/* Print the report of e (line and dump) and nothing else: not counted, no
 * handler. For the check of the heap at abort (modes/debug.c). */
void pm_i_debug_report_print(const pm_i_err *e);

/* The check of the heap at exit (modes/debug.c), run first by the work at
 * exit, after every destructor (src/report.c). */
void pm_i_debug_exit_check(void);
/* For it: count e (as pm_i_debug_report does, and note its blocks as
 * reported), whether block p of that serial was reported damaged before
 * (noted by pm_i_debug_report), and whether the program set an error
 * handler. */
void pm_i_debug_count_at_exit(const pm_i_err *e);
int pm_i_debug_was_reported(const void *p, uint64_t serial);
int pm_i_debug_has_handler(void);
/* Report e, about to be made, names a block found damaged through the
 * one after it (its write went on into that block's header, or a freed
 * pool block's link), not through a call on the block itself. 1 if that
 * block was reported before (the same address and serial): the block
 * after it is noted as reported too (it is leaked: not reported again at
 * exit), and the report is not made again (one bug, one report, as at
 * exit). Else 0, and the block is noted as found that way: its own free,
 * finding its overflow, then says nothing more (pm_i_debug_was_blamed). */
int pm_i_debug_reported_before(const pm_i_err *e);
int pm_i_debug_was_blamed(const void *p, uint64_t serial);
/* The flags the reported set keeps of a block: the classes of damage
 * reported of it, whether the program freed it since (a free that found
 * it damaged, which leaked it), and whether it was found whole since. */
#define PM_I_REP_OVERFLOW 1u
#define PM_I_REP_UNDERFLOW 2u
#define PM_I_REP_HEADER 4u
#define PM_I_REP_CLASSES 7u
#define PM_I_REP_FREED 0x40u
#define PM_I_REP_MENDED 0x20u
#define PM_I_REP_FREED_WRITTEN 0x10u /* freed, and reported written after its free */
/* The damage live block e->address has now (e: known and readable, with
 * its size, serial and API): a PM_I_REP_* flag for each class (underflow:
 * the API id or the pad before the data; overflow: the pad after it;
 * header: the size or serial field alone), and each class's first and
 * last damaged offsets in lo[i], hi[i] (i: 0 overflow, 1 underflow, 2
 * header). */
unsigned pm_i_debug_damage(const pm_i_err *e, ptrdiff_t lo[3], ptrdiff_t hi[3]);
/* Whether c is a class of damage to a block's guard bytes (the ones
 * pm_i_debug_damage reads). */
static inline int pm_i_err_is_damage(pm_error_class c)
{
    return c == PM_ERR_BUFFER_OVERFLOW || c == PM_ERR_BUFFER_UNDERFLOW || c == PM_ERR_HEADER_CORRUPT;
}
/* Adds flags to block (p, serial)'s entry in the reported set (made if
 * need be) and returns its flags before (0 if it has none, or none could
 * be made). */
unsigned pm_i_debug_flags_add(const void *p, uint64_t serial, unsigned flags);
/* Block (p, serial) was run over by a write reported through another
 * block: noted as reported, without classes (see blame). */
void pm_i_debug_note_passed(const void *p, uint64_t serial);
/* Block (p, serial)'s flags in the reported set (0: not noted). */
unsigned pm_i_debug_flags(const void *p, uint64_t serial);
/* Block p (serial) was checked and found whole: damage reported before
 * was mended (its classes cleared, PM_I_REP_MENDED set until its next
 * report), and new damage is reported again, by its free or by the check
 * at exit or abort. */
void pm_i_debug_repaired(const void *p, uint64_t serial);

/* 1 while this thread is inside a part of the debug hooks that holds, or may
 * wait for, a lock (a registry stripe's, the C library's allocator's, the
 * pools' through them): a call of the hooks made meanwhile is a signal
 * handler's, nested in it, and is served without waiting for any lock
 * (modes/debug.c). The error handler is called with it cleared, unless the
 * report was made by a nested call (pm_i_err.nested). */
typedef union {
    struct {
        unsigned char busy;     /* the mark above */
        unsigned char handling; /* the error handler runs (or was left by
                                 * longjmp): src/report.c's handling */
    } b;
    uint16_t any; /* one load tells the fast paths that neither is set */
} pm_i_debug_state_t;
extern __thread pm_i_debug_state_t pm_i_debug_state __attribute__((tls_model("initial-exec")));
#define pm_i_debug_busy (pm_i_debug_state.b.busy)

/* This thread's error handler has entries in src/report.c's handling list:
 * those of handlers left by longjmp, made at or below frame `here` (a
 * call of the hooks made higher on the stack is not inside them), are
 * dropped, and the mark cleared with the last. */
void pm_i_debug_handling_drop(uintptr_t here);

/* malloc_usable_size(p) for the malloc override, made while this thread is
 * inside another call of the malloc family (a signal handler's): never
 * waits for a lock the interrupted call may hold (modes/debug.c). */
size_t pm_i_debug_usable_size_nested(void *p);

/* The check of the heap at abort is a SIGABRT handler of the debug layer's
 * (modes/debug.c), installed where the program's action is the default.
 * The malloc override's sigaction and signal (src/signal.c) show the
 * program the action it would see without it; the debug layer itself
 * reaches the C library's sigaction through pm_i_real_sigaction, past
 * them. pm_i_debug_abort_handler is the handler; pm_i_debug_abort_prev the
 * action it replaced (the default, with the flags and mask it had), set
 * before pm_i_debug_abort_installed. */
struct sigaction;
#if defined(__GLIBC__)
int __sigaction(int sig, const struct sigaction *act, struct sigaction *old);
#define pm_i_real_sigaction __sigaction
#else
#define pm_i_real_sigaction sigaction
#endif
void pm_i_debug_abort_handler(int sig);
/* Waits while another thread of this process runs the check at abort
 * (which ends the process): called by every way to exit, before and after
 * the work at exit, and before report mode's summary. */
void pm_i_debug_abort_wait(void);
/* Whether this thread holds the reports' lock (src/report.c). */
int pm_i_debug_reporting_here(void);
/* Install the handler as SIGABRT's action (past the override's sigaction):
 * sigaction's result. */
int pm_i_debug_abort_set(void);
extern struct sigaction pm_i_debug_abort_prev;
extern _Atomic int pm_i_debug_abort_installed; /* set before the handler goes in */

/* Set just before the debug layer calls abort() itself, after its report:
 * the check of the heap at abort then has nothing to add. */
extern _Atomic int pm_i_debug_aborting;

/* For tests: the next serial handed out is `next` (to reach serials past
 * 2^48, where the fast paths hand over to the full check). */
void pm_i_debug_set_next_serial(uint64_t next);

/* In the child after fork(): its counts start at zero, and (locks: the
 * fork handlers took the locks) reports may be written again. */
void pm_i_debug_reports_fork_child(int locks);

/* Options, read by pm_i_debug_read_options at start-up. */
extern int pm_i_debug_on_error_report; /* PYMALLOC_ON_ERROR=report */
/* Write PYMALLOC_ON_ERROR=report's summary line if errors were counted: 1,
 * else 0; the process must end right after it (the reports' lock is kept).
 * No allocation (the override's _exit calls it). */
int pm_i_debug_summary(void);
/* This process has errors of its own to sum up (src/report.c: counts_pid,
 * claim_pid): 0 in a vfork() (CLONE_VM) child that counted none, which
 * shares its parent's counts. Async-signal-safe. */
int pm_i_debug_counts_are_mine(void);
/* Another copy of the library in the process (a program linked with
 * libpymalloc.a or libpymalloc_api.a, which export pm_*, with
 * libpymalloc.so preloaded, say) counts its own errors, and an _exit(0),
 * quick_exit(0) or exec reaches one copy's override only. The override
 * finds the others' pm_error_count when it loads (find_other_copies: by
 * dlsym, which may allocate).
 * pm_i_debug_others_summary writes, in report mode, a line with the
 * errors they counted if any: 1, else 0. Async-signal-safe, no
 * allocation (as pm_i_debug_summary, which it follows). An exec passes
 * their errors on with this copy's (pm_i_debug_exec_handoff). */
void pm_i_debug_find_other_copies(void);
int pm_i_debug_others_summary(void);
/* exec (src/exec.c): the environment entry that passes this program's
 * counted heap errors on to the program exec starts, after a line on
 * stderr, or NULL (none to pass on). No lock, no allocation. */
#define PM_I_HANDOFF_NAME "PYMALLOC_ERRORS_BEFORE_EXEC"
const char *pm_i_debug_exec_handoff(void);
/* The exec that pm_i_debug_exec_handoff made an entry for returned (it
 * failed): errors a child handed on are its own again. */
void pm_i_debug_exec_failed(void);
/* At exit, before a report that ends the process (abort, or report mode's
 * _exit): write what stdio streams still hold, as exit() would, without
 * waiting for ever on a stream another thread holds; the list of streams
 * read under the C library's lock of it. Not from inside an allocation.
 * No lock of ours may be held (a stream's write may allocate). */
void pm_i_flush_streams(void);
/* The work at exit (the check of the heap, PYMALLOC_STATS's table, report
 * mode's summary) registered as an exit handler now, by the override's
 * load-time constructor in a shared copy loaded at start-up before the C
 * library (src/override.c), where it runs after every destructor and every
 * handler registered later, and after a destructor's own exit() too; the
 * destructor then registers nothing. 1 if registered. */
int pm_i_exit_work_at_load(void);
/* The status of a process that ends with errors counted in report mode. */
#define PM_I_REPORT_EXIT_STATUS 1
extern uint64_t pm_i_debug_break_serial; /* 0: none */
/* PYMALLOC_CHECK_FREED: what a malloc taking a freed pool block again
 * checks of it (modes/debug.c): 0 off, 1 its first bytes (the default),
 * 2 all of them. */
extern int pm_i_debug_check_freed;

/* PYMALLOC_QUARANTINE: the most bytes of freed registry blocks the debug
 * hooks hold before they go back to the allocator below
 * (modes/debug_quarantine.h); 0: none held. */
#define PM_I_QUARANTINE_DEFAULT ((size_t)1 << 20)
#define PM_I_QUARANTINE_MAX (UINT64_C(1) << 40)
extern size_t pm_i_debug_quarantine;
/* PYMALLOC_QUARANTINE_POOLS=on: freed pool blocks (the mem and obj
 * domains of pymalloc_debug and debug) go to the quarantine too; 0: off
 * (the default). */
extern int pm_i_debug_quarantine_pools;

/* The blocks the quarantine holds now, and their underlying bytes. */
void pm_i_debug_quarantine_held(size_t *blocks, size_t *bytes);
/* For the fuzz oracle and tests: fn(base, arg) for every block the
 * quarantine holds, base its underlying block (the pools' or the C
 * library's), each shard's lock held meanwhile (fn must not allocate).
 * Returns the number of shards that stayed busy and were not read. */
unsigned pm_i_debug_quarantine_each(void (*fn)(const void *base, void *arg), void *arg);
/* For the statistics: 1 and the blocks and underlying bytes the quarantine
 * holds, and its budget, if a domain's debug hooks hold freed blocks in
 * it; 0 if none does. Takes no lock, never allocates (a signal handler
 * may call it). */
int pm_i_debug_quarantine_stats(size_t *blocks, size_t *bytes, size_t *budget);

#endif /* PM_DEBUG_H */
