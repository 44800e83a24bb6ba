/*
 * src/report.c - heap error reports, the error handler, PYMALLOC_ON_ERROR.
 *
 * One error path (the debug hooks call pm_i_debug_report): format one line
 * naming the error class, the entry point, the block and its serial, then a
 * CPython-style dump of the block, into a stack buffer, out with write(2) to
 * stderr (never through anything that allocates); count the error; then the
 * handler: a user's (pm_set_error_handler), else abort(), or with
 * PYMALLOC_ON_ERROR=report nothing (the caller goes on and leaks the block).
 *
 * Reports from several threads never interleave: a spinlock is held while
 * one is written. A thread that reports while it is already writing one (a
 * signal handler that frees a damaged block) does not wait for itself.
 *
 * PYMALLOC_ON_ERROR=report and the exit status: at exit(), after the
 * program's own atexit handlers and every destructor (at_exit_checks,
 * below), one summary line is printed when errors were reported, stdio
 * flushed and the process ended with _exit(PM_I_REPORT_EXIT_STATUS), so
 * that a test run with heap errors can never pass silently. (A process
 * that ends by _exit(), quick_exit() or a signal skips it; the override's
 * _exit and quick_exit handler print the summary for a status of 0. A heap
 * error reported after that work found none ends the process with the
 * summary at once: end_after_exit_work.)
 */
#include "pm_debug.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#if defined(__GLIBC__)
#include <link.h>
#endif
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if PM_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(a, n) 0
#endif

#define PM_I_STR2(x) #x
#define PM_I_STR(x) PM_I_STR2(x)

int pm_i_debug_on_error_report;
uint64_t pm_i_debug_break_serial;
int pm_i_debug_check_freed = 1;
size_t pm_i_debug_quarantine = PM_I_QUARANTINE_DEFAULT;
int pm_i_debug_quarantine_pools;

static _Atomic(pm_error_handler) handler_fn;
static _Atomic(void *) handler_ctx;
static atomic_ulong counts[PM_ERR_CLASS_COUNT];
/* The process whose memory holds counts: the one that ran the set-up, or a
 * fork() child (reset, below). A child made without the fork handlers has
 * another pid: a vfork() (CLONE_VM) child, which shares counts with its
 * parent, or a child of _Fork() or a raw fork system call, which has a copy.
 * The errors such a child counts are also counted in claimed, which
 * claim_pid owns: its _exit(0) sums them up (and takes them out of counts,
 * which a vfork child shares with its parent), its exec passes them on
 * (likewise); with any other status, a vfork child's errors are left to its
 * parent's exit. */
static _Atomic long counts_pid;
static atomic_ulong claimed[PM_ERR_CLASS_COUNT];
static _Atomic long claim_pid;
/* The errors a child made without the fork handlers counted itself
 * (claimed) and its exec handed on: taken out of claimed and of counts
 * (which a vfork child shares with its parent) when the entry is made, put
 * back if the exec returns (pm_i_debug_exec_failed). */
static unsigned long handed[PM_ERR_CLASS_COUNT];
static _Atomic long handed_by; /* the child's pid */
/* The child's total that its handoff line was last written for, as
 * line_total (0 again when another child claims). */
static _Atomic unsigned long claim_line_total;

static _Atomic int report_lock;
static __thread int in_report __attribute__((tls_model("initial-exec")));

int pm_i_debug_reporting_here(void) { return in_report > 0; }

static const char *const class_names[PM_ERR_CLASS_COUNT] = {
    "no error",     "buffer overflow", "buffer underflow", "double free",
    "invalid pointer", "API mismatch", "use after free",   "header corrupt",
    "stray write",
};

static const char *class_name(pm_error_class c)
{
    if ((unsigned)c >= PM_ERR_CLASS_COUNT)
        return "unknown error";
    return class_names[c];
}

const char *pm_error_class_name(pm_error_class c) { return class_name(c); }

static void lock_reports(void);
static void unlock_reports(void);

/* The handler and its ctx change together under the reports' lock, and a
 * report reads both under it: a handler is never called with another's
 * ctx. */
void pm_set_error_handler(pm_error_handler fn, void *ctx)
{
    lock_reports();
    atomic_store_explicit(&handler_ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&handler_fn, fn, memory_order_relaxed);
    unlock_reports();
}

unsigned long pm_error_count(pm_error_class c)
{
    if ((unsigned)c >= PM_ERR_CLASS_COUNT)
        return 0;
    return atomic_load(&counts[c]);
}

/* Other copies of the library in the process (see pm_i_debug_others_summary):
 * their pm_error_count, the first definition in the global scope if it is
 * not this copy's (the program's), and the one after this copy. Set by the
 * override's constructor (pm_i_debug_find_other_copies); looked up again
 * at exit by another_copy. */
typedef unsigned long (*count_fn)(pm_error_class);
static count_fn other_copies[2];

/* This copy's pm_error_count, by an address no other definition takes. */
extern unsigned long pm_i_error_count_here(pm_error_class c)
    __attribute__((alias("pm_error_count"), visibility("hidden")));

static int other_copies_now(count_fn out[2])
{
    count_fn here = pm_i_error_count_here;
    void *own; /* (POSIX: function and data pointers convert) */
    memcpy(&own, &here, sizeof own);
    void *found[2] = {dlsym(RTLD_DEFAULT, "pm_error_count"), dlsym(RTLD_NEXT, "pm_error_count")};
    int n = 0;
    for (int i = 0; i < 2; i++) {
        out[i] = NULL;
        if (found[i] != NULL && found[i] != own && (i == 0 || found[1] != found[0])) {
            memcpy(&out[i], &found[i], sizeof out[i]);
            n++;
        }
    }
    return n;
}

void pm_i_debug_find_other_copies(void) { (void)other_copies_now(other_copies); }

/* The other copies' counts are this process's: this copy's fork handlers
 * ran in it (theirs did too), or it ran the set-up. Not in a vfork()
 * child, whose other copies count in its parent's memory, nor in a child
 * made without the fork handlers, whose copies of them its parent sums
 * up. */
static int others_are_mine(void)
{
    return atomic_load_explicit(&counts_pid, memory_order_relaxed) == (long)getpid();
}

/* Errors of class c (PM_ERR_NONE: all) the other copies counted. */
static unsigned long others_count(pm_error_class c)
{
    unsigned long n = 0;
    for (int i = 0; i < 2; i++)
        if (other_copies[i] != NULL)
            n += other_copies[i](c);
    return n;
}

/* Errors counted before an exec, passed on to the new program in its
 * environment (pm_i_debug_exec_handoff, below) as
 * PYMALLOC_ERRORS_BEFORE_EXEC=<pid>.<start time>:<count of class 1>,...,<count of class 8>
 * (a list of another length from another version of pymalloc: see later,
 * below), and taken here, at set-up, when <pid> and <start time> are this
 * process's: a process that inherited the variable from its parent (another
 * pid) ignores it, and so does one that was given the pid later, after the
 * process that had it ended (the variable lives on in the environment of
 * the children that process left behind, and pids are reused). They count
 * as this program's own, in any mode: the summary and exit status 1 at its
 * exit. */
static unsigned long inherited;

/* The counts of classes this version does not know, passed on by a later
 * pymalloc (classes are only ever added after the others, so a count's
 * place names its class in every version): kept in their places, counted
 * as heap errors in the summary, and passed on again by an exec. A list
 * from an earlier pymalloc, with fewer classes, counts 0 for the others.
 * (Before, a list of another length was ignored: an exec between versions
 * lost the errors.) */
#define LATER_CLASSES 24
static unsigned long later[LATER_CLASSES];
static int n_later;

static unsigned long later_total(void)
{
    unsigned long t = 0;
    for (int i = 0; i < n_later; i++)
        t += later[i];
    return t;
}

/* Heap errors end this program with the summary and status 1: reported in
 * PYMALLOC_ON_ERROR=report, or passed on to it by an exec. */
static inline int sums_up(void) { return pm_i_debug_on_error_report || inherited != 0; }
/* The total of errors that pm_i_debug_exec_handoff's line was last written
 * for (0 again in a fork child, whose counts start over). */
static _Atomic unsigned long line_total;

/* One decimal number at *v, ended by the character end: *v is moved past
 * that character; -1 (malformed) if there is no number, or it does not fit
 * in 64 bits, or another character ends it. */
static int number_field(const char **v, char end, uint64_t *out)
{
    char digits[24];
    size_t k = 0;
    const char *s = *v;
    while (*s >= '0' && *s <= '9' && k < sizeof digits - 1)
        digits[k++] = *s++;
    digits[k] = '\0';
    if (k == 0 || *s != end || pm_i_parse_u64(digits, out) != 0)
        return -1;
    *v = s + 1;
    return 0;
}

/* This process's start time, in clock ticks after boot (the 22nd field of
 * /proc/self/stat): exec keeps it, a later process with the same pid has
 * another. 0 where it cannot be read (no /proc, no free file descriptor):
 * the pid alone tells then, when neither side could read it.
 * open, read, close: no lock, no allocation (exec may be called in a
 * signal handler); errno is kept (set-up is inside an allocation). */
static uint64_t start_time(void)
{
    int saved = errno;
    char s[1024];
    ssize_t n = 0, r;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        while (n < (ssize_t)sizeof s - 1 && (r = read(fd, s + n, sizeof s - 1 - n)) != 0)
            if (r > 0)
                n += r;
            else if (errno != EINTR)
                break;
        close(fd);
    }
    errno = saved;
    s[n] = '\0';
    /* After the command name, in parentheses (it may hold any byte but a
     * NUL: the last ')'), field 3 after one space, the 22nd after 20. */
    const char *p = strrchr(s, ')');
    if (p == NULL)
        return 0;
    for (int spaces = 0; spaces < 20; p++)
        if (*p == '\0')
            return 0;
        else if (*p == ' ')
            spaces++;
    uint64_t t;
    return number_field(&p, ' ', &t) == 0 ? t : 0;
}

/* start_time() of this process, read once (at set-up in report mode, in
 * a fork child at its first error counted, or at the first need) and kept
 * with the pid it was read for: an exec made when no file descriptor is
 * free (the program's descriptors all taken) still passes the true start
 * time on. Forgotten in a fork child (pm_i_debug_reports_fork_child).
 * Threads that read it at once store the same values. Never
 * called in a vfork child or one made without the fork handlers, which
 * may share this memory with their parent (pm_i_debug_exec_handoff). */
static _Atomic long start_pid;
static _Atomic uint64_t start_ticks;
static uint64_t own_start_time(void)
{
    long pid = (long)getpid();
    if (atomic_load_explicit(&start_pid, memory_order_acquire) == pid)
        return atomic_load_explicit(&start_ticks, memory_order_relaxed);
    uint64_t t = start_time();
    if (t != 0) {
        atomic_store_explicit(&start_ticks, t, memory_order_relaxed);
        atomic_store_explicit(&start_pid, pid, memory_order_release);
    }
    return t;
}

static void take_handoff(void)
{
    const char *v = pm_i_getenv(PM_I_HANDOFF_NAME);
    if (v == NULL)
        return;
    enum { KNOWN = PM_ERR_CLASS_COUNT - 1 };
    uint64_t got[KNOWN + LATER_CLASSES] = {0}, pid = 0, start = 0;
    if (number_field(&v, '.', &pid) != 0 || number_field(&v, ':', &start) != 0)
        return; /* not ours to read: ignored */
    int n = 0; /* the counts of classes 1, 2, ..., n, each ended by ',' or the end */
    for (char end = ','; end == ',';) {
        const char *s = v;
        while (*s >= '0' && *s <= '9')
            s++;
        end = *s;
        if (n == KNOWN + LATER_CLASSES || (end != ',' && end != '\0') ||
            number_field(&v, end, &got[n++]) != 0)
            return;
    }
    /* The pid and the start time (read at set-up in report mode, so an
     * exec made with every file descriptor taken still passes it on:
     * before, it passed 0, and the new program dropped the counts). A
     * later process given the same pid, which inherited the variable,
     * has another start time. */
    if (pid != (uint64_t)getpid() || start != own_start_time())
        return;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        total += got[i];
        if (i < KNOWN)
            atomic_fetch_add(&counts[i + 1], (unsigned long)got[i]);
        else
            later[i - KNOWN] = (unsigned long)got[i];
    }
    n_later = n > KNOWN ? n - KNOWN : 0;
    atomic_fetch_add(&counts[PM_ERR_NONE], (unsigned long)total);
    inherited = (unsigned long)total;
}

void pm_i_debug_read_options(void)
{
    atomic_store_explicit(&counts_pid, (long)getpid(), memory_order_relaxed);
    take_handoff();
    const char *v = pm_i_getenv("PYMALLOC_ON_ERROR");
    if (v == NULL || *v == '\0' || strcmp(v, "abort") == 0) {
        pm_i_debug_on_error_report = 0;
    } else if (strcmp(v, "report") == 0) {
        pm_i_debug_on_error_report = 1;
        (void)own_start_time(); /* (for an exec that passes errors on) */
    } else {
        static const char *const valid[] = {"abort", "report", NULL};
        pm_i_fatal_option("PYMALLOC_ON_ERROR", v, "unknown value", valid);
    }
    const char *b = pm_i_getenv("PYMALLOC_BREAK_SERIAL");
    uint64_t n = 0;
    /* Serials are compared on their low 48 bits (what a block's record
     * keeps), so larger values are refused rather than matched wrongly. */
    if (b != NULL && *b != '\0' &&
        (pm_i_parse_u64(b, &n) != 0 || n == 0 || n > PM_I_SERIAL_MASK)) {
        static const char *const valid[] = {"a serial number from 1 to 281474976710655 (2^48 - 1)",
                                            NULL};
        pm_i_fatal_option("PYMALLOC_BREAK_SERIAL", b, "not a serial number", valid);
    }
    pm_i_debug_break_serial = n;
    const char *c = pm_i_getenv("PYMALLOC_CHECK_FREED");
    if (c == NULL || *c == '\0' || strcmp(c, "first") == 0) {
        pm_i_debug_check_freed = 1;
    } else if (strcmp(c, "all") == 0) {
        pm_i_debug_check_freed = 2;
    } else if (strcmp(c, "off") == 0) {
        pm_i_debug_check_freed = 0;
    } else {
        static const char *const valid[] = {"first", "all", "off", NULL};
        pm_i_fatal_option("PYMALLOC_CHECK_FREED", c, "unknown value", valid);
    }
    const char *qs = pm_i_getenv("PYMALLOC_QUARANTINE");
    uint64_t qn = PM_I_QUARANTINE_DEFAULT;
    if (qs == NULL || *qs == '\0') {
        /* the default */
    } else if (strcmp(qs, "off") == 0) {
        qn = 0;
    } else if (pm_i_parse_size(qs, &qn) != 0 || qn > PM_I_QUARANTINE_MAX || qn > SIZE_MAX) {
        static const char *const valid[] = {
#if SIZE_MAX > 0xffffffffu
            "a size in bytes up to 1T, with an optional K, M, G or T suffix (or k, m, g, t)",
#else /* a 32-bit build: up to SIZE_MAX */
            "a size in bytes up to 4294967295 (4G - 1, in a 32-bit build), with an optional "
            "K, M or G suffix (or k, m, g)",
#endif
            "0 or off: none", NULL};
        pm_i_fatal_option("PYMALLOC_QUARANTINE", qs, "not a size", valid);
    }
    pm_i_debug_quarantine = (size_t)qn;
    const char *qp = pm_i_getenv("PYMALLOC_QUARANTINE_POOLS");
    if (qp == NULL || *qp == '\0' || strcmp(qp, "off") == 0) {
        pm_i_debug_quarantine_pools = 0;
    } else if (strcmp(qp, "on") == 0) {
        pm_i_debug_quarantine_pools = 1;
    } else {
        static const char *const valid[] = {"on", "off", NULL};
        pm_i_fatal_option("PYMALLOC_QUARANTINE_POOLS", qp, "unknown value", valid);
    }
}

/* ---------------------------------------------------------------------------
 * Formatting.
 */

static const char *api_domain(char api)
{
    switch (api) {
    case 'r': return "pm_raw_*";
    case 'm': return "pm_mem_*";
    case 'o': return "pm_obj_*";
    default: return "unknown API";
    }
}

static void plural(pm_i_buf *b, uint64_t n, const char *what)
{
    pm_i_buf_u64(b, n);
    pm_i_buf_char(b, ' ');
    pm_i_buf_str(b, what);
    if (n != 1)
        pm_i_buf_char(b, 's');
}

/* "the live 64-byte block (serial 7) at 0x..." (or "the freed ..."). */
static void named_block(pm_i_buf *b, int freed, size_t size, uint64_t serial, const void *at)
{
    pm_i_buf_str(b, freed ? "the freed " : "the live ");
    pm_i_buf_u64(b, (uint64_t)size);
    pm_i_buf_str(b, "-byte block (serial ");
    pm_i_buf_u64(b, serial);
    pm_i_buf_str(b, ") at ");
    pm_i_buf_ptr(b, at);
}

/* ", allocated with API 'm' (pm_mem_*)" */
static void allocated_with(pm_i_buf *b, char api)
{
    pm_i_buf_str(b, ", allocated with API '");
    pm_i_buf_char(b, api);
    pm_i_buf_str(b, "' (");
    pm_i_buf_str(b, api_domain(api));
    pm_i_buf_char(b, ')');
}

static void block_words(pm_i_buf *b, const pm_i_err *e)
{
    pm_i_buf_u64(b, e->size);
    pm_i_buf_str(b, "-byte block (serial ");
    pm_i_buf_u64(b, e->serial);
    pm_i_buf_char(b, ')');
}

/* An offset from the block's address: "p+8", "p-1". */
static void offset_words(pm_i_buf *b, ptrdiff_t off)
{
    pm_i_buf_str(b, off < 0 ? "p-" : "p+");
    pm_i_buf_u64(b, off < 0 ? (uint64_t)-off : (uint64_t)off);
}

/* Where a free-list link's pair was written (pm_i_err: link_exact):
 * " at p-3 .. p-1", or " somewhere in p-16 .. p-1". */
static void link_where(pm_i_buf *b, const pm_i_err *e)
{
    pm_i_buf_str(b, e->link_exact ? " at " : ", somewhere in ");
    offset_words(b, e->offset);
    if (e->last != e->offset) {
        pm_i_buf_str(b, " .. ");
        offset_words(b, e->last);
    }
}

/* The one line, without "pymalloc: " and the newline. */
static void format_line(pm_i_buf *b, const pm_i_err *e)
{
    pm_i_buf_str(b, "pymalloc: ");
    pm_i_buf_str(b, e->entry);
    pm_i_buf_str(b, ": ");
    pm_i_buf_str(b, class_name(e->error));
    pm_i_buf_str(b, ": ");
    switch (e->error) {
    case PM_ERR_BUFFER_OVERFLOW:
        /* Damage that reaches the last pad byte may go on: into serial
         * bytes that happen to hold the value written (the serial's high
         * bytes are zeros: a NUL or memset(0) overrun is invisible there)
         * and past the trailer, where nothing is checked. */
        if (e->last >= (ptrdiff_t)e->size + 7)
            pm_i_buf_str(b, "at least ");
        plural(b, (uint64_t)(e->last - (ptrdiff_t)e->size + 1), "byte");
        pm_i_buf_str(b, " written past the end of a ");
        block_words(b, e);
        break;
    case PM_ERR_BUFFER_UNDERFLOW:
        if (e->below_header) {
            pm_i_buf_str(b, "the C library's chunk header ");
            plural(b, (uint64_t)-e->offset, "byte");
            pm_i_buf_str(b, e->quarantined ? " before the start of a freed " : " before the start of a ");
            block_words(b, e);
            if (e->quarantined)
                pm_i_buf_str(b, ", held in the quarantine,");
            pm_i_buf_str(b, " was overwritten (by a write past the end of the block before it?)");
            break;
        }
        /* Likewise before the start: the size field's high bytes are zeros,
         * and nothing before p-16 is checked. */
        if (e->offset <= -8)
            pm_i_buf_str(b, "at least ");
        plural(b, (uint64_t)-e->offset, "byte");
        pm_i_buf_str(b, " written before the start of a ");
        block_words(b, e);
        break;
    case PM_ERR_DOUBLE_FREE:
        pm_i_buf_str(b, "the ");
        block_words(b, e);
        pm_i_buf_str(b, " at ");
        pm_i_buf_ptr(b, e->address);
        pm_i_buf_str(b, " was already freed");
        break;
    case PM_ERR_USE_AFTER_FREE:
        if (e->freed_link || e->freed_data) {
            pm_i_buf_str(b, "the freed ");
            if (e->known)
                block_words(b, e);
            else
                pm_i_buf_str(b, "block");
            pm_i_buf_str(b, " at ");
            pm_i_buf_ptr(b, e->address);
            /* Past its trailer, in the rest of its slot: a pool block
             * that a realloc shrank in place into a slot of a larger
             * class (no smaller block could be had); the 0xDD there is
             * that realloc's, and the write may have been made while
             * the block was live. */
            int past = !e->freed_link && e->offset >= (ptrdiff_t)(e->size + PM_I_DEBUG_TAIL);
            pm_i_buf_str(b, past ? " was written past its end (" : " was written after its free (");
            if (e->freed_link) {
                pm_i_buf_str(b, "the pool's free-list link in its first 16 bytes was "
                                "overwritten");
                link_where(b, e);
                pm_i_buf_char(b, ')');
                break;
            }
            pm_i_buf_str(b, past ? "the 0xDD past its end, in its slot, at "
                                 : "the 0xDD its free wrote at ");
            offset_words(b, e->offset);
            if (e->last != e->offset) {
                pm_i_buf_str(b, " .. ");
                offset_words(b, e->last);
            }
            pm_i_buf_str(b, past ? " was overwritten: after its free, or past its end while it "
                                   "was live)"
                                 : " was overwritten)");
            break;
        }
        pm_i_buf_str(b, "the ");
        block_words(b, e);
        pm_i_buf_str(b, " at ");
        pm_i_buf_ptr(b, e->address);
        pm_i_buf_str(b, " is freed");
        break;
    case PM_ERR_INVALID_POINTER:
        pm_i_buf_ptr(b, e->address);
        if (e->inside != NULL) {
            /* an interior pointer of a block of ours */
            ptrdiff_t d = (const char *)e->address - (const char *)e->inside;
            pm_i_buf_str(b, " is not a block allocated by pymalloc: it points ");
            if (d >= 0 && (size_t)d == e->inside_size) {
                pm_i_buf_str(b, "just past the end of");
            } else {
                /* Before the data, into it, or past its end (into the 16
                 * bytes after it: "1 byte into the 0-byte block" said
                 * before, of p+1 of a 0-byte block). */
                int past = d > 0 && (size_t)d > e->inside_size;
                uint64_t k = d < 0 ? (uint64_t)-d : past ? (uint64_t)d - e->inside_size
                                                          : (uint64_t)d;
                pm_i_buf_u64(b, k);
                pm_i_buf_str(b, k == 1 ? " byte" : " bytes");
                pm_i_buf_str(b, d < 0 ? " before" : past ? " past the end of" : " into");
            }
            pm_i_buf_char(b, ' ');
            named_block(b, e->inside_freed, e->inside_size, e->inside_serial, e->inside);
            /* What the block's records say of it: the API it was allocated
             * with, and the pointer's offset from its data start, signed
             * (negative: in its header). */
            allocated_with(b, e->inside_api);
            pm_i_buf_str(b, ": offset ");
            pm_i_buf_char(b, d < 0 ? '-' : '+');
            pm_i_buf_u64(b, (uint64_t)(d < 0 ? -d : d));
            pm_i_buf_str(b, " from its data start");
            if (d < 0)
                pm_i_buf_str(b, ", in its header");
            else if ((size_t)d >= e->inside_size)
                pm_i_buf_str(b, ", in its trailer");
            break;
        }
        pm_i_buf_str(b, " is not a block allocated by pymalloc (a stack or global address, "
                        "an interior pointer, or a block freed long ago)");
        break;
    case PM_ERR_API_MISMATCH:
        pm_i_buf_str(b, "the ");
        block_words(b, e);
        pm_i_buf_str(b, " was allocated with API '");
        pm_i_buf_char(b, e->api_found);
        pm_i_buf_str(b, "' (");
        pm_i_buf_str(b, api_domain(e->api_found));
        pm_i_buf_str(b, ") and released with API '");
        pm_i_buf_char(b, e->api_expected);
        pm_i_buf_str(b, "' (");
        pm_i_buf_str(b, api_domain(e->api_expected));
        pm_i_buf_char(b, ')');
        break;
    case PM_ERR_HEADER_CORRUPT:
        pm_i_buf_str(b, e->offset < 0 ? "the size field of a " : "the serial field of a ");
        block_words(b, e);
        pm_i_buf_str(b, " was overwritten");
        break;
    case PM_ERR_STRAY_WRITE:
        pm_i_buf_str(b, "the free-list link of the ");
        pm_i_buf_str(b, e->stray_unused ? "unused " : "free ");
        pm_i_buf_u64(b, (uint64_t)e->size);
        pm_i_buf_str(b, "-byte pool slot at ");
        pm_i_buf_ptr(b, e->address);
        if (e->stray_unused)
            pm_i_buf_str(b, " (no block was handed out there since its pool took that size)");
        pm_i_buf_str(b, " was overwritten");
        link_where(b, e);
        if (e->near != NULL) {
            /* Where the damage (its first byte) lies from the end of the
             * block below. */
            uint64_t past = (uint64_t)((const char *)e->address + e->offset -
                                       ((const char *)e->near + e->near_size));
            pm_i_buf_str(b, e->link_exact ? ", " : ", at least ");
            plural(b, past, "byte");
            pm_i_buf_str(b, " past the end of ");
            named_block(b, e->near_freed, e->near_size, e->near_serial, e->near);
            if (!e->near_freed)
                pm_i_buf_str(b, ", whose guard bytes are intact");
        }
        break;
    default:
        break;
    }
}

/* The n data bytes at p, in hex. Under memcheck the debug hooks
 * mark a block's data bytes never written as undefined (they hold
 * CLEANBYTE): they are dumped from a copy made defined, so that the
 * report itself is no use of uninitialised values. */
static void hex_bytes(pm_i_buf *b, const unsigned char *p, size_t n)
{
    unsigned char copy[16];
    for (size_t done = 0; done < n; done += sizeof copy) {
        size_t k = n - done < sizeof copy ? n - done : sizeof copy;
        memcpy(copy, p + done, k);
        (void)VALGRIND_MAKE_MEM_DEFINED(copy, k);
        for (size_t i = 0; i < k; i++) {
            pm_i_buf_char(b, ' ');
            pm_i_buf_hex(b, copy[i], 2);
        }
    }
}

/* The pad bytes from..from+n-1 (offsets relative to p), CPython-style. */
static void dump_pad(pm_i_buf *b, const unsigned char *p, ptrdiff_t from, int n,
                     const char *where)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += p[from + i] != PM_I_FORBIDDENBYTE;
    pm_i_buf_str(b, "    The ");
    pm_i_buf_u64(b, (uint64_t)n);
    pm_i_buf_str(b, " pad bytes at ");
    pm_i_buf_str(b, where);
    if (bad == 0) {
        pm_i_buf_str(b, " are FORBIDDENBYTE, as expected.\n");
        return;
    }
    pm_i_buf_str(b, " are not all FORBIDDENBYTE (0xfd):\n");
    for (int i = 0; i < n; i++) {
        unsigned char c = p[from + i];
        pm_i_buf_str(b, "        at ");
        offset_words(b, from + i);
        pm_i_buf_str(b, ": 0x");
        pm_i_buf_hex(b, c, 2);
        if (c != PM_I_FORBIDDENBYTE)
            pm_i_buf_str(b, " *** OUCH");
        pm_i_buf_char(b, '\n');
    }
}

/* "    Freed <what> at p=...: API 'm', 24 bytes, serial 5". */
static void freed_words(pm_i_buf *b, const char *what, const pm_i_err *e)
{
    pm_i_buf_str(b, "    Freed ");
    pm_i_buf_str(b, what);
    pm_i_buf_str(b, " at p=");
    pm_i_buf_ptr(b, e->address);
    pm_i_buf_str(b, ": API '");
    pm_i_buf_char(b, e->api_found);
    pm_i_buf_str(b, "', ");
    plural(b, e->size, "byte");
    pm_i_buf_str(b, ", serial ");
    pm_i_buf_u64(b, e->serial);
}

/* One line per object whose malloc family is the C library's, past the
 * override (a library opened with dlopen(..., RTLD_DEEPBIND)): a block of
 * the C library's that reached pymalloc, or the reverse, came from there. */
enum { BYPASS_LINES = 3 };
struct bypass_out {
    pm_i_buf *b;
    const char *lead, *then;
    int n;
};

static void bypass_line(void *ctx, const char *path, const char *names)
{
    struct bypass_out *o = ctx;
    if (o->n++ >= BYPASS_LINES)
        return;
    pm_i_buf_str(o->b, o->lead);
    if (path[0] != '\0')
        pm_i_buf_shown(o->b, path, 128);
    else
        pm_i_buf_str(o->b, "the program");
    pm_i_buf_str(o->b, " calls the C library's ");
    pm_i_buf_str(o->b, names);
    pm_i_buf_str(o->b, ", not pymalloc's (as a library opened with "
                       "dlopen(..., RTLD_DEEPBIND) does): ");
    pm_i_buf_str(o->b, o->then);
    pm_i_buf_str(o->b, ".\n");
}

/* Each "<lead><path> calls the C library's <names>, not pymalloc's ...: <then>.",
 * at most BYPASS_LINES, and a count of the rest; nothing when none. */
static void bypass_lines(pm_i_buf *b, const char *lead, const char *then)
{
    struct bypass_out o = {b, lead, then, 0};
    pm_i_libc_bypassers(bypass_line, &o);
    if (o.n > BYPASS_LINES) {
        pm_i_buf_str(b, lead);
        pm_i_buf_str(b, "(and ");
        pm_i_buf_u64(b, (uint64_t)(o.n - BYPASS_LINES));
        pm_i_buf_str(b, o.n - BYPASS_LINES == 1 ? " more such object)\n" : " more such objects)\n");
    }
}

/* The dump's lines of a free pool block's or slot's damaged link: what,
 * its address, and its first 16 bytes. */
static void link_lines(pm_i_buf *b, const char *what, const pm_i_err *e)
{
    pm_i_buf_str(b, what);
    pm_i_buf_ptr(b, e->address);
    pm_i_buf_str(b, "; its first 16 bytes (p-16 .. p-1: the free-list link, then its "
                    "complement) hold:\n       ");
    hex_bytes(b, e->link_bytes, 16);
    pm_i_buf_char(b, '\n');
}

/* Live block e's damage of the classes its line does not name (the line
 * names the first in the check's order: a block written before its start
 * and past its end showed only the underflow, the overflow in the dump's
 * bytes alone: found by an audit), one line each, with its bytes. For an
 * API mismatch, whatever damage its header and trailer have: an API id
 * byte written over is an underflow. */
static void also_damaged(pm_i_buf *b, const pm_i_err *e)
{
    static const char *const what[3] = {
        "the 8 pad bytes after the data (a buffer overflow)",
        "the API id and pad bytes before the data (a buffer underflow)",
        "the size or serial field (header damage)"};
    static const pm_error_class named[3] = {PM_ERR_BUFFER_OVERFLOW, PM_ERR_BUFFER_UNDERFLOW,
                                            PM_ERR_HEADER_CORRUPT};
    if (!e->known || !e->readable || e->freed_link || e->freed_data || e->below_header ||
        (e->error != PM_ERR_API_MISMATCH && e->error != PM_ERR_BUFFER_OVERFLOW &&
         e->error != PM_ERR_BUFFER_UNDERFLOW && e->error != PM_ERR_HEADER_CORRUPT))
        return;
    ptrdiff_t lo[3], hi[3];
    unsigned mask = pm_i_debug_damage(e, lo, hi);
    for (int i = 0; i < 3; i++) {
        if (!(mask & (1u << i)) || named[i] == e->error)
            continue;
        pm_i_buf_str(b, "    Also damaged: ");
        pm_i_buf_str(b, what[i]);
        pm_i_buf_str(b, ", at ");
        offset_words(b, lo[i]);
        if (hi[i] != lo[i]) {
            pm_i_buf_str(b, " .. ");
            offset_words(b, hi[i]);
        }
        pm_i_buf_str(b, ".\n");
    }
}

/* bypass: lines made by bypass_lines for e, or NULL. */
static void dump_block(pm_i_buf *b, const pm_i_err *e, const char *bypass)
{
    const unsigned char *p = e->address;
    if (e->error == PM_ERR_STRAY_WRITE) {
        link_lines(b, "    Free pool slot at p=", e);
        if (e->near != NULL) {
            pm_i_buf_str(b, "    The block below it in memory: ");
            named_block(b, e->near_freed, e->near_size, e->near_serial, e->near);
            allocated_with(b, e->near_api);
            pm_i_buf_str(b, e->near_freed
                                ? ".\n    A write past its end through a pointer kept after "
                                  "its free, or through another dangling or wild pointer?\n"
                                : ".\n    Its trailer (the 16 bytes after its data) is intact: "
                                  "a write past its end that skipped it (an index or stride too "
                                  "large), or one through a dangling or wild pointer?\n");
        } else {
            pm_i_buf_str(b, "    No block of the debug hooks is below it in memory: a write "
                            "through a dangling or wild pointer?\n");
        }
        pm_i_buf_str(b, "    The slot and the blocks after it in the pool's free list are "
                        "leaked, never handed out again.\n");
        return;
    }
    if (!e->known) {
        pm_i_buf_str(b, "    No block of pymalloc's debug hooks starts at p=");
        pm_i_buf_ptr(b, p);
        pm_i_buf_str(b, "; its memory was not read.\n");
        if (bypass != NULL)
            pm_i_buf_str(b, bypass);
        return;
    }
    if (e->freed_link) {
        link_lines(b, "    Freed pool block at p=", e);
        pm_i_buf_str(b, "    The block and the blocks after it in the pool's free list are "
                        "leaked, never handed out again.\n");
        return;
    }
    if (e->below_header && e->quarantined) {
        /* A held block leaving the quarantine, its own bytes intact (its
         * memory is still held: readable), the C library's chunk header
         * below them damaged (modes/debug.c: q_chunk_ok). */
        ptrdiff_t at = e->offset - 8; /* the chunk header: prev_size, then size */
        uint64_t word;
        memcpy(&word, p + e->offset, 8);
        freed_words(b, "block, held in the quarantine,", e);
        pm_i_buf_str(b, ".\n    Its own header and bytes were not found written after its free; "
                        "the C library's\n    chunk header below them, ");
        offset_words(b, at);
        pm_i_buf_str(b, " .. ");
        offset_words(b, e->last);
        pm_i_buf_str(b, " (prev_size, then size):");
        hex_bytes(b, p + at, 16);
        pm_i_buf_str(b, "\n    Its size word at ");
        offset_words(b, e->offset);
        pm_i_buf_str(b, " holds 0x");
        pm_i_buf_hex(b, word, 16);
        pm_i_buf_str(b, ", which glibc's free would misread (not the size of a chunk\n"
                        "    holding this block, or its PREV_INUSE bit clear while the chunk "
                        "before is in use).\n"
                        "    The block is leaked, never handed back to the C library.\n");
        return;
    }
    if (e->freed_data) {
        /* A held block's header was filled too (and checked); a pool
         * block's in its pool holds the free-list link. */
        ptrdiff_t len = (ptrdiff_t)(e->size + PM_I_DEBUG_TAIL);
        ptrdiff_t from = e->offset < 0 ? -(ptrdiff_t)PM_I_DEBUG_HEAD : e->offset & ~(ptrdiff_t)15;
        /* (the bytes shown reach the damage past the trailer, if any) */
        ptrdiff_t shown = e->last + 1 > len ? e->last + 1 : len;
        size_t k = shown - from < 32 ? (size_t)(shown - from) : 32;
        freed_words(b, e->quarantined ? "block, held in the quarantine," : "pool block", e);
        pm_i_buf_str(b, ".\n    Its free filled ");
        offset_words(b, e->quarantined ? -(ptrdiff_t)PM_I_DEBUG_HEAD : 0);
        pm_i_buf_str(b, " .. ");
        offset_words(b, len - 1);
        pm_i_buf_str(b, e->quarantined ? " (its header, its data and the 16 bytes after)"
                                       : " (its data and the 16 bytes after)");
        pm_i_buf_str(b, " with 0xDD; ");
        /* (The check of the heap at exit or abort names itself, and the
         * process is ending: the block stays where it is.) */
        int at_end = !e->quarantined && e->entry != NULL &&
                     (strcmp(e->entry, "exit") == 0 || strcmp(e->entry, "abort") == 0);
        if (e->quarantined)
            pm_i_buf_str(b, "the quarantine's check\n    found other bytes from ");
        else if (at_end) {
            pm_i_buf_str(b, "the check of the heap at ");
            pm_i_buf_str(b, e->entry);
            pm_i_buf_str(b, "\n    found other bytes from ");
        } else
            pm_i_buf_str(b, "a malloc taking it\n    again found other bytes from ");
        offset_words(b, e->offset);
        pm_i_buf_str(b, " to ");
        offset_words(b, e->last);
        pm_i_buf_str(b, ".\n    Bytes at ");
        offset_words(b, from);
        pm_i_buf_char(b, ':');
        hex_bytes(b, p + from, k);
        if (at_end) {
            pm_i_buf_char(b, '\n');
            return;
        }
        pm_i_buf_str(b, "\n    The block is leaked, never handed ");
        pm_i_buf_str(b, e->quarantined ? "back to the allocator.\n" : "out again.\n");
        return;
    }
    if (!e->readable) {
        freed_words(b, "block", e);
        pm_i_buf_str(b, e->quarantined ? "; the quarantine holds its memory (not read).\n"
                                       : "; its memory belongs to the allocator again and was "
                                         "not read.\n");
        return;
    }
    size_t n = e->size;
    pm_i_buf_str(b, "Debug memory block at address p=");
    pm_i_buf_ptr(b, p);
    pm_i_buf_str(b, ": API '");
    if (p[-8] >= 0x20 && p[-8] < 0x7f)
        pm_i_buf_char(b, (char)p[-8]);
    else {
        pm_i_buf_str(b, "\\x");
        pm_i_buf_hex(b, p[-8], 2);
    }
    pm_i_buf_str(b, "'\n    ");
    plural(b, n, "byte");
    pm_i_buf_str(b, " originally requested");
    uint64_t field = 0;
    for (int i = 0; i < 8; i++)
        field = (field << 8) | p[i - 16];
    if (field != n) {
        pm_i_buf_str(b, " (the size field at p-16 says ");
        pm_i_buf_u64(b, field);
        pm_i_buf_char(b, ')');
    }
    pm_i_buf_char(b, '\n');
    dump_pad(b, p, -7, 7, "p-7");
    char tailname[48];
    pm_i_buf tb;
    pm_i_buf_init(&tb, tailname, sizeof tailname - 1, -1);
    pm_i_buf_str(&tb, "tail=");
    pm_i_buf_ptr(&tb, p + n);
    tailname[tb.len] = '\0';
    dump_pad(b, p, (ptrdiff_t)n, 8, tailname);
    pm_i_buf_str(b, "    The block was made by call #");
    pm_i_buf_u64(b, e->serial);
    pm_i_buf_str(b, " to debug malloc/realloc.\n");
    if (e->freed_damaged)
        pm_i_buf_str(b, "    The program freed it before: that free reported it (damaged, or an API\n"
                        "    mismatch), and the block was leaked then, never handed back to the\n"
                        "    allocator.\n");
    if (e->error != PM_ERR_API_MISMATCH) {
        pm_i_buf_str(b, "    First damaged byte at ");
        offset_words(b, e->offset);
        pm_i_buf_str(b, ", last at ");
        offset_words(b, e->last);
        pm_i_buf_str(b, ".\n");
    }
    also_damaged(b, e);
    if (e->below_header) {
        uint64_t word;
        memcpy(&word, p + e->offset, 8);
        pm_i_buf_str(b, "    The C library's chunk header at ");
        offset_words(b, e->offset);
        pm_i_buf_str(b, " holds 0x");
        pm_i_buf_hex(b, word, 16);
        pm_i_buf_str(b, ",\n    which glibc's free would misread (not the size of a chunk holding this block,\n"
                        "    or its PREV_INUSE bit clear while the chunk before is in use): the block\n"
                        "    was not handed back to the C library.\n");
    }
    if (e->next_block != NULL) {
        if (e->next_below) {
            pm_i_buf_str(b, "    The write went on down into the serial field of the block before it, at ");
        } else if (e->run_over != 0) {
            pm_i_buf_str(b, "    The write went on over the ");
            if (e->run_over == 1) {
                pm_i_buf_str(b, "block after it (whole: its header and trailer\n    damaged)");
            } else {
                pm_i_buf_u64(b, e->run_over);
                pm_i_buf_str(b, " blocks after it (whole: their headers and trailers\n    damaged)");
            }
            pm_i_buf_str(b, " into the header of the block at ");
        } else {
            pm_i_buf_str(b, "    The write went on into the header of the block after it, at ");
        }
        pm_i_buf_ptr(b, e->next_block);
        pm_i_buf_str(b, " (serial ");
        pm_i_buf_u64(b, e->next_serial);
        pm_i_buf_str(b, "), which is why it\n    was found: that block was not handed back to the "
                        "allocator.\n");
        if (e->further_down)
            pm_i_buf_str(b, "    This block's own header was written from below too: the write may "
                            "have come\n    from further down (the search for its start stops "
                            "here).\n");
    }
    pm_i_buf_str(b, "    Data at p:");
    if (n <= 32) {
        hex_bytes(b, p, n);
    } else {
        hex_bytes(b, p, 16);
        pm_i_buf_str(b, " ...");
        hex_bytes(b, p + n - 16, 16);
    }
    pm_i_buf_char(b, '\n');
}

/* ---------------------------------------------------------------------------
 * The error path.
 */

/* A report is written whole, and its lock always released: a thread that
 * has a cancellation request pending (pthread_cancel) would act on it at
 * the report's first write(2), a cancellation point, and unwind out of the
 * free with the lock taken (the report lost; every later one, and the
 * exit summary, waiting for ever). Cancellation is off from the lock to
 * its release; a request is acted on at the program's next cancellation
 * point. */
static __thread int report_cancel_state __attribute__((tls_model("initial-exec")));

/* Take the reports' lock: 1. With max_ms >= 0, waited for about that many
 * milliseconds at most, then 0 (not taken). */
static int lock_reports_within(long max_ms)
{
    if (in_report++ > 0)
        return 1; /* this thread is already writing one */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &report_cancel_state);
    for (long spins = 0;; spins++) {
        if (pm_i_spin_try(&report_lock))
            return 1;
        if (max_ms >= 0 && spins > 64) {
            if (spins - 64 > max_ms) {
                in_report--;
                pthread_setcancelstate(report_cancel_state, NULL);
                return 0;
            }
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        } else if (spins > 64) {
            sched_yield();
        }
    }
}

static void lock_reports(void) { (void)lock_reports_within(-1); }

/* fork: a report being written by another thread when fork() was called
 * would leave the lock taken forever in the child. The child starts with no
 * errors counted: the parent's are the parent's to sum up at its exit (a
 * clean child exiting 1 with the parent's summary would blame the wrong
 * process, say the wrong test of a harness that forks one per test). */
void pm_i_debug_reports_fork_child(int locks)
{
    if (locks) { /* (else one thread: a report it was writing goes on) */
        atomic_store_explicit(&report_lock, 0, memory_order_relaxed);
        in_report = 0;
    }
    for (int c = 0; c < PM_ERR_CLASS_COUNT; c++) {
        atomic_store_explicit(&counts[c], 0, memory_order_relaxed);
        atomic_store_explicit(&claimed[c], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&counts_pid, (long)getpid(), memory_order_relaxed);
    atomic_store_explicit(&claim_pid, 0, memory_order_relaxed);
    inherited = 0;
    n_later = 0;
    atomic_store_explicit(&line_total, 0, memory_order_relaxed);
    atomic_store_explicit(&claim_line_total, 0, memory_order_relaxed);
    atomic_store_explicit(&handed_by, 0, memory_order_relaxed);
    /* The parent's start time is not the child's, even where the pid is
     * the same (pid 1 of a new pid namespace forking into one of its own):
     * read again when needed. */
    atomic_store_explicit(&start_pid, 0, memory_order_relaxed);
}

int pm_i_debug_counts_are_mine(void)
{
    long owner = atomic_load_explicit(&counts_pid, memory_order_relaxed), me = (long)getpid();
    return owner == 0 || owner == me || atomic_load(&claim_pid) == me;
}

static void unlock_reports(void)
{
    if (--in_report > 0)
        return;
    atomic_store_explicit(&report_lock, 0, memory_order_release);
    pthread_setcancelstate(report_cancel_state, NULL);
}

_Atomic int pm_i_debug_aborting;

/* The line and the dump, in one write(2) (about 1.5 KB; a pipe keeps a
 * write of up to 4 KiB whole): reports of processes that share stderr do
 * not interleave. The caller holds the report lock, which keeps this
 * process's threads apart, and so owns report_storage: not on the stack,
 * which may be a thread's 16 KiB with a signal frame or two on it (abort's
 * SIGABRT). A report made inside another in the same thread (from a
 * signal handler) writes through a smaller buffer, in more writes. */
static char report_storage[4096];
static void write_report(const char *line, size_t len, const pm_i_err *e, const char *bypass)
{
    char nested[512];
    pm_i_buf b;
    if (in_report == 1)
        pm_i_buf_init(&b, report_storage, sizeof report_storage, PM_I_STDERR);
    else
        pm_i_buf_init(&b, nested, sizeof nested, PM_I_STDERR);
    pm_i_buf_mem(&b, line, len);
    pm_i_buf_char(&b, '\n');
    dump_block(&b, e, bypass);
    if (e->before_fork == 1)
        pm_i_buf_str(&b, "    The block was made before this process was forked (its parent "
                         "has it too); the parent's\n    copy does not have this damage: it was "
                         "written here, after the fork.\n");
    else if (e->before_fork == 2)
        pm_i_buf_str(&b, "    The block was made before this process was forked (its parent "
                         "has it too), and the\n    parent's copy could not be read: the damage "
                         "may be the parent's, made before the fork.\n");
    else if (e->before_fork == 3)
        pm_i_buf_str(&b, "    The block was made before this process was forked (its parent "
                         "has it too), and the\n    parent has freed it or taken it again "
                         "since, over the damage: the damage\n    may be the parent's, made "
                         "before the fork.\n");
    pm_i_buf_flush(&b);
}

void pm_i_debug_report_print(const pm_i_err *e)
{
    char line[512];
    pm_i_buf lb;
    pm_i_buf_init(&lb, line, sizeof line - 1, -1);
    format_line(&lb, e);
    lock_reports();
    write_report(line, lb.len, e, NULL);
    unlock_reports();
}

/* Blocks reported damaged, which stay live (leaked): the check at exit
 * does not report them again. An open-addressed set of (address, serial)
 * keys, so that a block at the same address later (the reported one
 * repaired and freed) is not taken for it. A key that finds no free slot
 * among REPORTED_PROBES is not noted: that block may be reported again
 * (past tens of thousands of reports). 512 KiB of zero pages, touched only
 * as blocks are noted. A slot holds the key's top 56 bits and a byte of
 * flags: REP_NOTED always, the damage classes reported of the block
 * itself (PM_I_REP_CLASSES), whether the program freed it since
 * (PM_I_REP_FREED), and whether a check found it whole since its last
 * report (PM_I_REP_MENDED). */
#define REPORTED_SLOTS 65536u
#define REPORTED_PROBES 64u
#define REP_KEY_MASK (~(uint64_t)0xFF)
#define REP_NOTED 0x80u
static _Atomic uint64_t reported[REPORTED_SLOTS];
/* Set once a block was noted: pm_i_debug_repaired looks only then. */
static _Atomic int any_noted;

/* (The serial's low 48 bits, which the block's record holds: the full
 * serial is rebuilt from the counter, which tests may set back.) */
static uint64_t reported_key(const void *p, uint64_t serial)
{
    return ((uint64_t)(uintptr_t)p * UINT64_C(0x9E3779B97F4A7C15)) ^
           ((serial & PM_I_SERIAL_MASK) * UINT64_C(0xC2B2AE3D27D4EB4F));
}

/* The slot of key k (its flags bits aside), or NULL; insert: put it there
 * (flags REP_NOTED) if it is not. */
static _Atomic uint64_t *reported_slot(uint64_t k, int insert)
{
    k = (k & REP_KEY_MASK) | REP_NOTED;
    size_t h = (size_t)(k >> 48);
    for (size_t i = 0; i < REPORTED_PROBES; i++) {
        _Atomic uint64_t *s = &reported[(h + i) & (REPORTED_SLOTS - 1)];
        uint64_t cur = atomic_load(s);
        if (cur == 0) {
            if (!insert)
                return NULL;
            if (atomic_compare_exchange_strong(s, &cur, k)) {
                atomic_store_explicit(&any_noted, 1, memory_order_relaxed);
                return s;
            }
        }
        if ((cur & REP_KEY_MASK) == (k & REP_KEY_MASK))
            return s;
    }
    return NULL;
}

static int reported_has(uint64_t k, int insert)
{
    return reported_slot(k, insert) != NULL;
}

/* The flag of error class c in a slot: the classes a damaged block is
 * reported as (0 for the others). */
static unsigned class_flag(pm_error_class c)
{
    switch (c) {
    case PM_ERR_BUFFER_OVERFLOW: return PM_I_REP_OVERFLOW;
    case PM_ERR_BUFFER_UNDERFLOW: return PM_I_REP_UNDERFLOW;
    case PM_ERR_HEADER_CORRUPT: return PM_I_REP_HEADER;
    default: return 0;
    }
}

/* Slot s's flags become (its flags | set) & ~clear, in one step; its
 * flags before are returned. */
static unsigned slot_flags_change(_Atomic uint64_t *s, unsigned set, unsigned clear)
{
    uint64_t cur = atomic_load(s);
    while (!atomic_compare_exchange_weak(s, &cur, (cur | set) & ~(uint64_t)clear))
        ;
    return (unsigned)(cur & 0xFF);
}

unsigned pm_i_debug_flags_add(const void *p, uint64_t serial, unsigned flags)
{
    _Atomic uint64_t *s = reported_slot(reported_key(p, serial), 1);
    if (s == NULL)
        return 0;
    /* (damage reported again: no longer mended) */
    return slot_flags_change(s, flags, flags & PM_I_REP_CLASSES ? PM_I_REP_MENDED : 0);
}

unsigned pm_i_debug_flags(const void *p, uint64_t serial)
{
    if (PM_I_LIKELY(!atomic_load_explicit(&any_noted, memory_order_relaxed)))
        return 0;
    _Atomic uint64_t *s = reported_slot(reported_key(p, serial), 0);
    return s != NULL ? (unsigned)(atomic_load(s) & 0xFF) : 0;
}

/* Block e->address (e->serial) reported as damaged (e->error): the
 * classes of damage it has now (its own report, a readable block), else
 * e->error's. */
static void note_reported_as(const pm_i_err *e)
{
    ptrdiff_t lo[3], hi[3];
    unsigned mask = e->known && e->readable ? pm_i_debug_damage(e, lo, hi) : 0;
    (void)pm_i_debug_flags_add(e->address, e->serial, mask | class_flag(e->error));
}

void pm_i_debug_repaired(const void *p, uint64_t serial)
{
    if (!atomic_load_explicit(&any_noted, memory_order_relaxed))
        return;
    _Atomic uint64_t *s = reported_slot(reported_key(p, serial), 0);
    if (s != NULL)
        (void)slot_flags_change(s, PM_I_REP_MENDED, PM_I_REP_CLASSES);
}

/* The first KEPT_BLOCKS blocks leaked on purpose (damaged), pointed to
 * from here: a leak checker (LeakSanitizer, valgrind's memcheck) finds
 * them reachable, as it did through the debug registry's keys before they
 * were stored inverted, rather than lost (pymalloc reported them). Not
 * the reported set above, whose keys are hashed. */
#define KEPT_BLOCKS 4096u
static const void *_Atomic kept_blocks[KEPT_BLOCKS];
static _Atomic unsigned kept_count;

static void note_reported(const void *p, uint64_t serial)
{
    if (p == NULL)
        return;
    (void)reported_has(reported_key(p, serial), 1);
    unsigned i = atomic_fetch_add_explicit(&kept_count, 1, memory_order_relaxed);
    if (i < KEPT_BLOCKS)
        atomic_store_explicit(&kept_blocks[i], p, memory_order_relaxed);
}

void pm_i_debug_note_passed(const void *p, uint64_t serial) { note_reported(p, serial); }

int pm_i_debug_was_reported(const void *p, uint64_t serial)
{
    return reported_has(reported_key(p, serial), 0);
}

/* The key of block (p, serial) in the reported set as one found damaged
 * through the block after it (pm_i_debug_reported_before). */
static uint64_t blamed_key(const void *p, uint64_t serial)
{
    return reported_key(p, serial) ^ UINT64_C(0x2545F4914F6CDD1D);
}

int pm_i_debug_reported_before(const pm_i_err *e)
{
    if (!pm_i_debug_was_reported(e->address, e->serial)) {
        (void)reported_has(blamed_key(e->address, e->serial), 1);
        return 0;
    }
    note_reported(e->next_block, e->next_serial);
    return 1;
}

int pm_i_debug_was_blamed(const void *p, uint64_t serial)
{
    return reported_has(blamed_key(p, serial), 0);
}

int pm_i_debug_has_handler(void) { return atomic_load(&handler_fn) != NULL; }

static void count_error(const pm_i_err *e)
{
    atomic_fetch_add(&counts[e->error], 1);
    atomic_fetch_add(&counts[PM_ERR_NONE], 1);
    long me = (long)getpid(), owner = atomic_load(&counts_pid);
    if (owner == me && pm_i_debug_on_error_report)
        (void)own_start_time(); /* (a fork child's, for an exec that passes this on) */
    if (owner != 0 && owner != me) { /* a child made without our fork handlers */
        if (atomic_exchange(&claim_pid, me) != me) {
            for (int c = 0; c < PM_ERR_CLASS_COUNT; c++)
                atomic_store(&claimed[c], 0);
            atomic_store(&claim_line_total, 0);
        }
        atomic_fetch_add(&claimed[e->error], 1);
        atomic_fetch_add(&claimed[PM_ERR_NONE], 1);
    }
}

void pm_i_debug_count_at_exit(const pm_i_err *e)
{
    count_error(e);
    note_reported(e->address, e->serial);
    /* (its classes too: the block met again in this check, through the
     * block it overflowed into, or a free after the check, say nothing
     * more) */
    if (e->known && e->readable && !e->freed_data && !e->quarantined)
        note_reported_as(e);
    else if (e->freed_data || e->quarantined) /* (written, or its chunk header: held) */
        (void)pm_i_debug_flags_add(e->address, e->serial, PM_I_REP_FREED_WRITTEN);
    note_reported(e->next_block, e->next_serial);
}

/* The blocks this thread's error handler is running for, innermost last:
 * the block's address, the frame of the report that called the handler,
 * and how deep that call is in the handler's own calls. A handler left by
 * longjmp does not come back to remove its entry: an entry is taken as
 * live only while the report looking at it, or any call of the debug
 * hooks (pm_i_debug_state.b.handling, set while there are entries, sends
 * them to pm_i_debug_handling_drop), runs deeper on the stack (at a lower
 * address) than the frame that called the handler; one at or above that
 * frame is made after the handler was left, and drops it. (A report made
 * deeper after a longjmp, about the same block, with no call of the hooks
 * made higher since, is taken as made inside the handler. A block made at
 * the same address since was made by a call higher on the stack, unless
 * the program called the hooks only from deeper frames since. An entry
 * left behind only ever matches its own block: past HANDLING_MAX the
 * oldest is forgotten, its depth kept.)
 *
 * The block is matched by its address alone: a block the handler
 * allocates there (the freed block it was given, taken again) and checks
 * is the same memory, and its report, with a new serial each time, called
 * the handler again, which did the same, until the stack ran out. A
 * handler whose own heap errors keep calling it (one that overflows every
 * block it allocates) is not called past HANDLER_NEST_MAX deep: those
 * reports are printed and counted as in report mode, with one line more. */
#define HANDLING_MAX 16
#define HANDLER_NEST_MAX 64
static __thread struct handling {
    const void *address;
    uintptr_t frame;
    unsigned depth;
    int alt; /* made on the alternate signal stack */
} handling[HANDLING_MAX] __attribute__((tls_model("initial-exec")));
static __thread int handling_n __attribute__((tls_model("initial-exec")));

/* This thread's alternate signal stack, as last seen armed (0, 0: never). */
static __thread uintptr_t alt_lo, alt_hi __attribute__((tls_model("initial-exec")));

/* Whether this thread runs on its alternate signal stack, frame `here`
 * being this call's: sigaltstack's SS_ONSTACK, or, where the stack was
 * installed with SS_AUTODISARM (disarmed inside its signal handlers, which
 * then see it disabled), `here` inside its range as last seen armed (the
 * report that made the entry saw it). errno kept. */
static int on_alt_stack(uintptr_t here)
{
    stack_t ss;
    int saved = errno;
    int alt = 0;
    if (sigaltstack(NULL, &ss) == 0) {
        if ((ss.ss_flags & SS_DISABLE) == 0) {
            alt_lo = (uintptr_t)ss.ss_sp;
            alt_hi = alt_lo + ss.ss_size;
            alt = (ss.ss_flags & SS_ONSTACK) != 0;
        } else {
            alt = here >= alt_lo && here < alt_hi;
        }
    }
    errno = saved;
    return alt;
}

/* Drop the entries of handlers left by longjmp, as seen from a call at
 * frame `here` (alt: on the alternate signal stack; -1: not asked yet).
 * An entry made on the same stack is left when the call is as high as the
 * frame that called its handler, or higher; one made on the alternate
 * stack, when the call is on another (the signal handler was left); one
 * made on another stack than the alternate one never, from the alternate
 * stack (a signal handler interrupting the handler: before 2026-12-07 one
 * on an alternate stack above the handler's that allocated dropped its
 * entry, and the handler's own free of its block called it again, until
 * the stack ran out). sigaltstack is asked only when an entry may go. (A
 * coroutine's stack above the handler's is taken for the same stack: a
 * handler that switches to one that allocates may be called again for its
 * block.) */
static void drop_left(uintptr_t here, int alt)
{
    while (handling_n > 0) {
        const struct handling *e = &handling[handling_n - 1];
        if (!e->alt && e->frame > here)
            break; /* deeper than a live one's frame, on any stack: kept */
        if (alt < 0)
            alt = on_alt_stack(here);
        if (alt && !(e->alt && e->frame <= here))
            break;
        handling_n--;
    }
    if (handling_n == 0)
        pm_i_debug_state.b.handling = 0;
}

void pm_i_debug_handling_drop(uintptr_t here) { drop_left(here, -1); }

enum { HANDLER_CALL, HANDLER_SAME_BLOCK, HANDLER_TOO_DEEP };

/* Called in the report's own frame (inlined, so that frame is the one the
 * handler is called from): HANDLER_CALL if the handler is to be called for
 * the block at p, which is then entered; HANDLER_SAME_BLOCK if it is
 * running for that block already; HANDLER_TOO_DEEP if it is running
 * HANDLER_NEST_MAX deep in its own calls. */
static inline __attribute__((always_inline)) int handling_enter(const void *p)
{
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    int alt = on_alt_stack(here);
    drop_left(here, alt); /* those left by longjmp */
    for (int i = 0; i < handling_n; i++)
        if (handling[i].address == p)
            return HANDLER_SAME_BLOCK;
    unsigned depth = handling_n > 0 ? handling[handling_n - 1].depth + 1 : 1;
    if (depth > HANDLER_NEST_MAX)
        return HANDLER_TOO_DEEP;
    if (handling_n == HANDLING_MAX) {
        memmove(&handling[0], &handling[1], (HANDLING_MAX - 1) * sizeof handling[0]);
        handling_n--;
    }
    handling[handling_n++] = (struct handling){p, here, depth, alt};
    pm_i_debug_state.b.handling = 1;
    return HANDLER_CALL;
}

static void handler_too_deep(void)
{
    char text[160];
    pm_i_buf b;
    lock_reports();
    pm_i_buf_init(&b, text, sizeof text, PM_I_STDERR);
    pm_i_buf_str(&b, "pymalloc: the error handler is not called for this report: it is "
                     "running ");
    pm_i_buf_u64(&b, HANDLER_NEST_MAX);
    pm_i_buf_str(&b, " deep in its own reports\n");
    pm_i_buf_flush(&b);
    unlock_reports();
}

/* The handler called by this frame returned: its entry goes (the one this
 * frame made: `here`), and so do those above it, of handlers nested in it
 * that were left by longjmp. */
static inline __attribute__((always_inline)) void handling_leave(void)
{
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    for (int i = handling_n - 1; i >= 0; i--)
        if (handling[i].frame == here) {
            handling_n = i;
            break;
        }
    if (handling_n == 0)
        pm_i_debug_state.b.handling = 0;
}

static void end_after_exit_work(const pm_i_err *e);

void pm_i_debug_report(const pm_i_err *e) { pm_i_debug_report_then(e, NULL, NULL); }

static void report_then(const pm_i_err *e, void (*written)(void *), void *arg,
                        const char *bypass);

/* An invalid pointer that is no block of ours: the objects that call the C
 * library's allocator past the override (one made its block, maybe) are
 * found before the report lock is taken. The look-up takes the loader's
 * lock, which a thread holds while its dl_iterate_phdr callback runs: such
 * a callback making a report would wait for the report lock, held by a
 * thread waiting for the loader's lock. */
static __attribute__((noinline)) void report_unknown(const pm_i_err *e,
                                                    void (*written)(void *), void *arg)
{
    char text[1536]; /* 3 lines (about 300 bytes as a rule; a longer text is cut) */
    pm_i_buf tb;
    pm_i_buf_init(&tb, text, sizeof text - 1, -1);
    bypass_lines(&tb, "    ", "if the block came from it, it is a block of the C "
                                         "library's, not of pymalloc's");
    if (tb.len == tb.cap) /* (cut: the dump's lines end with a newline) */
        text[tb.len - 1] = '\n';
    text[tb.len] = '\0';
    report_then(e, written, arg, text);
}

void pm_i_debug_report_then(const pm_i_err *e, void (*written)(void *), void *arg)
{
    if (PM_I_UNLIKELY(e->error == PM_ERR_INVALID_POINTER && !e->known && e->inside == NULL))
        report_unknown(e, written, arg);
    else
        report_then(e, written, arg, NULL);
}

static void report_then(const pm_i_err *e, void (*written)(void *), void *arg,
                        const char *bypass)
{
    char line[512];
    pm_i_buf lb;
    pm_i_buf_init(&lb, line, sizeof line - 1, -1);
    format_line(&lb, e);
    line[lb.len] = '\0';

    /* A damaged block stays live (leaked), and so does the next block whose
     * header a write from it reached. */
    if (pm_i_err_is_damage(e->error)) {
        note_reported(e->address, e->serial);
        note_reported_as(e);
        note_reported(e->next_block, e->next_serial);
    }

    /* Counted under the lock, with its report: the summary at exit, which
     * keeps the lock, sums up the reports written, no more. */
    lock_reports();
    count_error(e);
    write_report(line, lb.len, e, bypass);
    pm_error_handler fn = atomic_load_explicit(&handler_fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&handler_ctx, memory_order_relaxed);
    unlock_reports();
    if (written != NULL)
        written(arg);

    if (fn != NULL) {
        pm_error_report r = {
            .error = e->error,
            .entry = e->entry,
            .address = e->address,
            .size = e->size,
            .serial = e->serial,
            .offset = e->offset,
            .api_expected = e->api_expected,
            .api_found = e->api_found,
            .message = line,
        };
        /* A report about the block this thread's handler is handling,
         * made inside that handler (a handler that frees or checks the
         * block it was given: the same error again), does not call it
         * again, which would never end: the call that found it goes on as
         * in report mode. */
        int call = handling_enter(e->address);
        if (call != HANDLER_CALL) {
            if (call == HANDLER_TOO_DEEP)
                handler_too_deep();
            return;
        }
        /* The malloc override's hint of the entry point being run (set
         * around its call into the table) is not the handler's: a report
         * made inside the handler names its own entry point, and so does
         * one made after the handler left by longjmp (which skips the
         * override's reset of the hint). */
        const char *entry = pm_i_debug_entry;
        pm_i_debug_entry = NULL;
        /* Nor is the debug hooks' mark of a call holding locks: the handler
         * runs with no lock of ours held, and may allocate as it likes
         * (and leave by longjmp: the mark stays cleared). A report made by
         * a nested call (a signal handler's, whose thread may hold them)
         * keeps it: the handler's calls are nested too. */
        int busy = pm_i_debug_busy;
        if (!e->nested)
            pm_i_debug_busy = 0;
        fn(&r, ctx);
        pm_i_debug_busy = busy;
        pm_i_debug_entry = entry;
        handling_leave();
        return;
    }
    if (pm_i_debug_on_error_report) {
        end_after_exit_work(e);
        return;
    }
    atomic_store(&pm_i_debug_aborting, 1); /* reported: no check of the heap at abort */
    abort();
}

/* "pymalloc: PYMALLOC_ON_ERROR=report: N heap errors (class: n, ...)";
 * with_later: and the count of the classes a later pymalloc passed on. */
static void counts_line(pm_i_buf *b, atomic_ulong *k, unsigned long total, int with_later)
{
    pm_i_buf_str(b, "pymalloc: PYMALLOC_ON_ERROR=report: ");
    plural(b, total, "heap error");
    pm_i_buf_str(b, " (");
    int first = 1;
    for (int c = 1; c < PM_ERR_CLASS_COUNT; c++) {
        unsigned long n = atomic_load(&k[c]);
        if (n == 0)
            continue;
        if (!first)
            pm_i_buf_str(b, ", ");
        first = 0;
        pm_i_buf_str(b, class_names[c]);
        pm_i_buf_str(b, ": ");
        pm_i_buf_u64(b, n);
    }
    unsigned long n = with_later ? later_total() : 0;
    if (n != 0) {
        pm_i_buf_str(b, first ? "" : ", ");
        pm_i_buf_str(b, "of classes a later pymalloc knows: ");
        pm_i_buf_u64(b, n);
    }
    pm_i_buf_str(b, ")");
}

/* An exec is about to replace this program: if it counted heap errors (with
 * PYMALLOC_ON_ERROR=report, or passed on to it by an exec before), the
 * environment entry that passes them on to the new program (see
 * take_handoff), in static storage, after a line on stderr that says so
 * (once for the same errors); else NULL. In a child made without the fork
 * handlers, the errors it counted itself (claimed): a _Fork() or raw clone
 * child's copy of its parent's counts holds its parent's errors too, and a
 * vfork() child shares them; those stay with the parent (before
 * 2026-12-06 such a child passed nothing on, and a _Fork() child's own
 * errors were lost). No lock, no allocation: exec may be called in a vfork
 * child or a signal handler. */
const char *pm_i_debug_exec_handoff(void)
{
    static char entry[sizeof PM_I_HANDOFF_NAME + 24 * (PM_ERR_CLASS_COUNT + 1 + LATER_CLASSES)];
    long me = (long)getpid();
    int own = atomic_load_explicit(&counts_pid, memory_order_relaxed) == me;
    if (!own && atomic_load(&claim_pid) != me)
        return NULL;
    /* This copy's counts, and in a process of its own the other copies'
     * too: the exec ends them all. */
    atomic_ulong k[PM_ERR_CLASS_COUNT];
    for (int c = 0; c < PM_ERR_CLASS_COUNT; c++)
        atomic_init(&k[c], atomic_load(own ? &counts[c] : &claimed[c]) +
                               (own && others_are_mine() ? others_count((pm_error_class)c) : 0));
    unsigned long total = atomic_load(&k[PM_ERR_NONE]);
    if (total == 0 || !sums_up())
        return NULL;
    /* Once for these errors: an exec that fails returns, and a program
     * may try one path after another (its own search of PATH, as Python's
     * os.execvp does: a line for each directory tried, before). */
    if (atomic_exchange(own ? &line_total : &claim_line_total, total) != total) {
        char storage[512];
        pm_i_buf b;
        pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
        counts_line(&b, k, total, own);
        pm_i_buf_str(&b, " before exec: passed on to the new program in " PM_I_HANDOFF_NAME
                         " (if pymalloc runs in it, it ends with exit status "
                         PM_I_STR(PM_I_REPORT_EXIT_STATUS) ")\n");
        pm_i_buf_flush(&b);
    }
    pm_i_buf e;
    pm_i_buf_init(&e, entry, sizeof entry - 1, -1);
    pm_i_buf_str(&e, PM_I_HANDOFF_NAME "=");
    pm_i_buf_u64(&e, (uint64_t)me);
    pm_i_buf_char(&e, '.');
    /* (a vfork or raw child's is read, not kept: the memory kept in may
     * be its parent's) */
    pm_i_buf_u64(&e, own ? own_start_time() : start_time());
    for (int c = 1; c < PM_ERR_CLASS_COUNT; c++) {
        pm_i_buf_char(&e, c == 1 ? ':' : ',');
        pm_i_buf_u64(&e, atomic_load(&k[c]));
    }
    for (int i = 0; own && i < n_later; i++) {
        pm_i_buf_char(&e, ',');
        pm_i_buf_u64(&e, later[i]);
    }
    entry[e.len] = '\0';
    if (!own) {
        for (int c = 0; c < PM_ERR_CLASS_COUNT; c++) {
            handed[c] = atomic_exchange(&claimed[c], 0);
            atomic_fetch_sub(&counts[c], handed[c]);
        }
        atomic_store(&handed_by, me);
    }
    return entry;
}

void pm_i_debug_exec_failed(void)
{
    /* (A vfork child's exec that succeeded left its pid here, in memory
     * it shared with this parent.) */
    long me = (long)getpid();
    if (atomic_load(&handed_by) != me)
        return;
    atomic_store(&handed_by, 0);
    for (int c = 0; c < PM_ERR_CLASS_COUNT; c++) {
        atomic_fetch_add(&claimed[c], handed[c]);
        atomic_fetch_add(&counts[c], handed[c]);
    }
}

/* PYMALLOC_ON_ERROR=report: the summary line, if errors were counted (1),
 * else nothing (0). One write(2), no allocation: also from _exit, which may
 * be called from a signal handler. The process ends right after it: the
 * reports' lock is taken first and kept, so that the line is the last
 * (before, other threads still making heap errors wrote reports after it)
 * and its counts are those of the reports written (a report is counted
 * under the lock). A report that another thread keeps writing for about a
 * second (a stderr nobody reads) is not waited for longer. Not kept by a
 * child that shares its parent's memory (vfork): the parent goes on. */
#define SUMMARY_WAIT_MS 1000
int pm_i_debug_summary(void)
{
    /* A child's own errors (claimed), or all that this memory counted. */
    int child = atomic_load(&claim_pid) == (long)getpid();
    atomic_ulong *k = child ? claimed : counts;
    if (!sums_up() || atomic_load(&k[PM_ERR_NONE]) == 0)
        return 0;
    if (!child)
        (void)lock_reports_within(SUMMARY_WAIT_MS);
    unsigned long total = atomic_load(&k[PM_ERR_NONE]);
    char storage[512];
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
    counts_line(&b, k, total, !child);
    if (!child && inherited != 0) {
        pm_i_buf_str(&b, ", ");
        pm_i_buf_u64(&b, inherited);
        pm_i_buf_str(&b, " before exec");
    }
    pm_i_buf_str(&b, "; exit status " PM_I_STR(PM_I_REPORT_EXIT_STATUS) "\n");
    pm_i_buf_flush(&b);
    if (child) /* summed up here: not again at a vfork parent's exit */
        for (int c = 0; c < PM_ERR_CLASS_COUNT; c++)
            atomic_fetch_sub(&counts[c], atomic_exchange(&claimed[c], 0));
    return 1;
}

int pm_i_debug_others_summary(void)
{
    if (!sums_up() || !others_are_mine())
        return 0;
    unsigned long total = others_count(PM_ERR_NONE);
    if (total == 0)
        return 0;
    char storage[256];
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
    pm_i_buf_str(&b, "pymalloc: PYMALLOC_ON_ERROR=report: ");
    plural(&b, total, "heap error");
    pm_i_buf_str(&b, " counted by another copy of the library in this process (its reports "
                     "above); exit status " PM_I_STR(PM_I_REPORT_EXIT_STATUS) "\n");
    pm_i_buf_flush(&b);
    return 1;
}

/* fflush(NULL) takes each stream's lock, and waits for ever on one that a
 * thread holds in a read that never ends (stdin's reader): exit() itself
 * locks none (glibc's _IO_cleanup). So, with glibc: every stream with
 * output pending (its list is public, _IO_list_all through _chain), taken
 * when it is free, waited for up to about 100 ms when it is not, then
 * flushed as exit() would flush it, locked or not; streams with nothing to
 * write (a reader's) are left alone. Elsewhere, fflush(NULL).
 * The list itself is read under its lock (list_lock: _IO_list_lock, as
 * exit()'s own flush takes it, and fopen and fclose): an fclose in another
 * thread unlinks its stream and frees it, and before 2026-12-06 the walk,
 * unlocked, read such a freed stream (0xDD in the debug modes) and died
 * with SIGSEGV at exit under PYMALLOC_STATS=1. Not by a report made inside
 * an allocation (end_after_exit_work), which may run in stdio holding a
 * stream's lock that a thread holding the list's lock waits for
 * (fflush(NULL)): that walk reads the list unlocked, as before.
 * The weak declaration makes the compiler load the list's head through the
 * GOT: a plain one let an executable linking the static library copy the
 * variable at start-up (a copy relocation), and glibc, which uses its own,
 * never updated the copy (fopen's streams were missing). */
#if defined(__GLIBC__)
extern FILE *_IO_list_all __attribute__((weak));
extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));
#endif
#define FLUSH_WAIT_STEPS 100 /* x 1 ms */
static void flush_pending(int list_lock)
{
#if defined(__GLIBC__)
    if (&_IO_list_all == NULL) {
        fflush(NULL);
        return;
    }
    /* (no cancellation in the waits below while the list's lock is held) */
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    int locked_list = list_lock && _IO_list_lock != NULL && _IO_list_unlock != NULL;
    if (locked_list)
        _IO_list_lock();
    for (FILE *fp = _IO_list_all; fp != NULL; fp = fp->_chain) {
        /* _mode > 0: wide-oriented (its pending output is not visible
         * here: flushed) */
        if (fp->_mode <= 0 && fp->_IO_write_ptr <= fp->_IO_write_base)
            continue;
        int locked = 0;
        for (int i = 0; i < FLUSH_WAIT_STEPS && !(locked = ftrylockfile(fp) == 0); i++) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        fflush_unlocked(fp);
        if (locked)
            funlockfile(fp);
    }
    if (locked_list)
        _IO_list_unlock();
    pthread_setcancelstate(cancel_state, NULL);
#else
    (void)list_lock;
    fflush(NULL);
#endif
}

static void flush_streams(int list_lock)
{
    pm_i_nopipe g; /* a reader gone must not end the process before the report */
    pm_i_nopipe_begin(&g);
    flush_pending(list_lock);
    pm_i_nopipe_end(&g);
}

void pm_i_flush_streams(void) { flush_streams(1); }

/* At exit: the check of the heap (modes/debug.c), then PYMALLOC_STATS's
 * table, then, with PYMALLOC_ON_ERROR=report, fail the process if errors
 * were seen. Once per process (a pid, not a flag: a vfork child shares
 * this memory). */
static _Atomic long exit_work_pid;
/* The process whose work at exit found no error to sum up and went on
 * (set before the counts are read: see end_after_exit_work). */
static _Atomic long exit_clean_pid;
static pthread_t exit_clean_thread; /* the thread that ran that work */

/* Report mode, error e reported and counted after this process's work at
 * exit found none (another thread still running while the process ends,
 * during the C library's last flush of stdio, say; a handler that runs
 * after the work, or a signal's): the work's summary is past, and the
 * process would end with the program's status. It ends here instead, as
 * the work does with errors: the summary, status 1. Before, such an error
 * was reported and the process exited 0. Stdio is flushed first only by
 * the thread that ran the work, outside a signal handler (whose thread
 * may hold locks): another thread may find the exiting one in the middle
 * of exit's own flush of a stream (which takes no lock), and flushing
 * that stream again would write its output twice, or wait on it while
 * the process ends with status 0; what that flush had not written yet is
 * lost.
 * The store of exit_clean_pid comes before the work reads the counts, and
 * the count of e before this load (both sequentially consistent): the
 * work sees e's count, or this sees the store. */
static void end_after_exit_work(const pm_i_err *e)
{
    if (atomic_load(&exit_clean_pid) != (long)getpid() || !pm_i_debug_counts_are_mine())
        return;
    if (!e->nested && pthread_equal(pthread_self(), exit_clean_thread))
        flush_streams(0); /* (inside an allocation: see flush_pending) */
    pm_i_debug_abort_wait();
    if (pm_i_debug_summary())
        _exit(PM_I_REPORT_EXIT_STATUS);
}

/* Another copy of the library is in the process's global scope now (at
 * exit, outside any lock of ours: dlsym may allocate, through the mode's
 * malloc). An API-only copy (libpymalloc_api.a) has no override to have
 * looked at load. */
static int another_copy(void)
{
    count_fn now[2];
    return other_copies_now(now) != 0;
}

/* With another copy of the library in the process, report mode's summary
 * at exit says which copy it is of: each copy prints its own. */
static void copy_line(void)
{
    const char *name = "";
#if defined(__GLIBC__)
    struct link_map *m = pm_i_object_of((const void *)(uintptr_t)&other_copies);
    if (m != NULL && m->l_name != NULL)
        name = m->l_name;
#endif
    char storage[512];
    pm_i_buf b;
    pm_i_buf_init(&b, storage, sizeof storage, PM_I_STDERR);
    pm_i_buf_str(&b, "pymalloc: this process has another copy of the library, with blocks, a "
                     "check at exit and a summary of its own; the lines above are of the copy in ");
    if (name[0] != '\0')
        pm_i_buf_shown(&b, name, 256);
    else
        pm_i_buf_str(&b, "the program");
    pm_i_buf_str(&b, "\n");
    pm_i_buf_flush(&b);
}

/* The end of the work at exit in report mode with errors counted: the
 * summary, then status 1. With another copy of the library in the
 * process, from its exit handler, by exit() called again: glibc goes on
 * with the exit handlers still to run, the other copy's work among them
 * (whose check, with its own reports, _exit skipped before: the second
 * copy's damaged blocks went unreported), then ends with that status (by
 * its own _exit, not the override's: glibc's exit runs the handlers left
 * and takes the status of the last call, by design). Else, and from a
 * destructor (where exit() would skip the destructors still to run), by
 * _exit: the summary is the last line. */
static __attribute__((noreturn)) void exit_failed(int from_handler)
{
    int others = another_copy();
    if (others)
        copy_line();
    pm_i_debug_abort_wait(); /* (not once the summary holds the reports' lock) */
    pm_i_debug_summary();
#if defined(__GLIBC__) /* (whose exit() is made to be called again so: musl's would wait for ever) */
    if (others && from_handler)
        exit(PM_I_REPORT_EXIT_STATUS);
#endif
    _exit(PM_I_REPORT_EXIT_STATUS); /* (the override's _exit: no second line) */
}

static void exit_work_run(int from_handler);

/* The work at exit runs with cancellation off: a thread running exit()
 * with a cancellation request pending (pthread_cancel, deferred) acted on
 * it at the work's first cancellation point (a fork child's read of
 * /proc/self/pagemap, the statistics' wait for a lock, a write) and
 * unwound out of it holding a registry stripe's or a pool's lock: the
 * check and the summary lost, and the other threads' next malloc waiting
 * for ever (found by an audit). A request is acted on at exit's next
 * cancellation point after the work. */
static void exit_work(int from_handler)
{
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    exit_work_run(from_handler);
    /* An abort() in another thread while the work ran (the check at exit
     * reads the whole heap): its check at abort is waited for here too,
     * before glibc's exit goes on to its own _exit. */
    pm_i_debug_abort_wait();
    pthread_setcancelstate(cancel_state, NULL);
}

static void exit_work_run(int from_handler)
{
    pm_i_debug_abort_wait();
    if (atomic_exchange(&exit_work_pid, (long)getpid()) == (long)getpid())
        return;
    /* The options the set-up read (PYMALLOC_ON_ERROR, the errors passed
     * on by an exec: sums_up) are plain variables. The set-up may have run
     * on another thread than this one, which may never have allocated (a
     * test's main whose threads use pm_*): acquire what it published, as
     * every entry point does (a data race under TSan before, in the modes
     * without the debug hooks, whose check below did not). */
    (void)atomic_load_explicit(&pm_i_state, memory_order_acquire);
    pm_i_debug_exit_check(); /* first: its errors are counted too */
    exit_clean_thread = pthread_self();
    atomic_store(&exit_clean_pid, (long)getpid());
    if (sums_up() &&
        atomic_load(&counts[PM_ERR_NONE]) != 0 && pm_i_debug_counts_are_mine()) {
        /* The program's output still in stdio's buffers first (at exit,
         * outside any allocation: stdio is safe here), then PYMALLOC_STATS's,
         * then the summary, last. */
        pm_i_flush_streams();
        pm_i_stats_at_exit_now();
        exit_failed(from_handler); /* the summary, status 1 */
    }
    /* PYMALLOC_STATS's table after the program's output still in stdio's
     * buffers, here too: through a pipe or into a file (2>&1), glibc's exit
     * wrote that output after the table. A reader gone ends the process
     * as at exit's own flush, but after the table: the SIGPIPE the flush
     * raised is held until then, and delivered when the mask is put back. */
    if (!atomic_load(&pm_i_stats_at_exit)) {
        pm_i_stats_at_exit_now();
        return;
    }
    pm_i_nopipe g;
    pm_i_nopipe_begin(&g);
    flush_pending(1);
    pm_i_stats_at_exit_now();
    if (g.masked)
        pthread_sigmask(SIG_SETMASK, &g.old, NULL);
}

static void exit_work_handler(void *arg)
{
    (void)arg;
    exit_work(1);
}

/* A destructor of this library runs before those of the program's own
 * libraries when it is preloaded (the loader runs the destructors in load
 * order, the executable's first, and a preload comes right after it), and
 * libpymalloc.a's, in the executable, before every library's: a heap error
 * made in a later destructor would come after the summary (the process
 * exiting 0), and a damaged block that one frees would be reported by the
 * check as never freed. So the destructor only registers the work as an
 * exit handler of its own: the destructors are run by one exit handler
 * (glibc's _dl_fini, registered first, so run last), and a handler
 * registered while they run is run after it returns (glibc's exit starts
 * its list over when a handler registers another; registered now, it is
 * the list's only entry left). In no library's name (d = NULL): with this
 * library's handle, its own __cxa_finalize, in its last destructor, would
 * run it at once; the shared libraries are linked -z nodelete, so its code
 * is still there then. If it cannot be registered (exit's handlers are all
 * done, or no memory), the work is done now. A handler registered in no
 * library's name (on_exit; atexit in an executable that is not PIE) by a
 * destructor run before this one runs after the work: a heap error it
 * makes ends the process there (end_after_exit_work). */
extern int __cxa_atexit(void (*fn)(void *), void *arg, void *d);
/* Registered at load time instead (pm_i_exit_work_at_load): a shared copy
 * loaded at start-up runs its constructors before the program's entry
 * point, where glibc's __libc_start_main registers the exit handler that
 * runs the destructors (_dl_fini), so a handler it registers then runs
 * after that one: after every destructor, and after the handlers those
 * register (in any name). It is also reached when a destructor calls
 * exit() itself: exit() run again goes on with the handlers still to run,
 * and _dl_fini, the one running, is not one of them. Before, a destructor
 * of the program's that ran before this library's (the executable's run
 * first) and called exit(0) after a heap error ended the process with
 * status 0, without the check or the summary. */
static int exit_work_early;
int pm_i_exit_work_at_load(void)
{
    if (__cxa_atexit(exit_work_handler, NULL, NULL) == 0)
        exit_work_early = 1;
    return exit_work_early;
}

__attribute__((destructor)) static void at_exit_checks(void)
{
    if (exit_work_early)
        return;
    if (__cxa_atexit(exit_work_handler, NULL, NULL) != 0)
        exit_work(0);
}
