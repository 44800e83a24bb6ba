// tests/override/cxx_new.cpp - every form of operator new/delete through the
// override (run by run_compare.sh: its output and exit status must match the
// plain run's, in each mode): plain, array, nothrow, sized delete, C++17
// aligned new/delete from 32 bytes to above the page size, a huge new
// throwing std::bad_alloc (never an abort or a report) after calling the
// new_handler, std::pmr resources, exceptions thrown in many threads, and
// static and thread_local destructors that allocate and free at exit.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory_resource>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

static int fails;
static void fail(const char *what, std::size_t a, std::size_t b)
{
    std::printf("FAIL %s %zu %zu\n", what, a, b);
    fails++;
}

static int handler_calls;
static void handler()
{
    handler_calls++;
    std::set_new_handler(nullptr); // the next failure throws
}

// Destructors run at exit, after main: they allocate and free.
struct AtExit {
    std::vector<std::string> v;
    AtExit() { for (int i = 0; i < 50; i++) v.emplace_back(20 + i * 13, 'g'); }
    ~AtExit()
    {
        v.clear();
        for (int i = 0; i < 50; i++)
            delete[] new char[static_cast<std::size_t>(i) * 37 + 1];
    }
};
static AtExit at_exit_object;

struct PerThread {
    std::vector<std::string> v;
    ~PerThread()
    {
        std::string s(300, 't');
        v.push_back(s);
        v.clear();
    }
};
thread_local PerThread per_thread;

// Sized delete, where the compiler has it (clang 14 only with
// -fsized-deallocation); else the unsized form, which reaches the same free.
static void sized_delete(void *p, std::size_t n)
{
#ifdef __cpp_sized_deallocation
    ::operator delete(p, n);
#else
    (void)n;
    ::operator delete(p);
#endif
}

static void sized_delete(void *p, std::size_t n, std::align_val_t a)
{
#ifdef __cpp_sized_deallocation
    ::operator delete(p, n, a);
#else
    (void)n;
    ::operator delete(p, a);
#endif
}

int main()
{
    // Plain, array, nothrow, sized.
    for (std::size_t n : {0, 1, 24, 512, 513, 4096, 1 << 20}) {
        char *p = static_cast<char *>(::operator new(n));
        std::memset(p, 1, n);
        sized_delete(p, n);
        p = new char[n + 1];
        p[n] = 2;
        delete[] p;
        p = new (std::nothrow) char[n + 1];
        if (p == nullptr)
            fail("nothrow", n, 0);
        delete[] p;
    }
    // Aligned, each form, from 32 to above the page size.
    for (std::size_t al = 32; al <= (std::size_t(1) << 21); al *= 2)
        for (std::size_t n : {1, 100, 5000}) {
            std::align_val_t a{al};
            void *p = ::operator new(n, a);
            if (reinterpret_cast<std::uintptr_t>(p) % al != 0)
                fail("aligned new", al, n);
            std::memset(p, 3, n);
            sized_delete(p, n, a);
            p = ::operator new[](n, a, std::nothrow);
            if (p == nullptr || reinterpret_cast<std::uintptr_t>(p) % al != 0)
                fail("aligned nothrow new[]", al, n);
            ::operator delete[](p, a, std::nothrow);
        }
    // 2^62 (2^31 on a 32-bit build, past PTRDIFF_MAX there): no allocator
    // has that much. (Read through a volatile: gcc's -Walloc-size-larger-than
    // refuses the constant on a 32-bit build.)
    static volatile std::size_t huge_request = std::size_t(1)
                                               << (sizeof(std::size_t) == 8 ? 62 : 31);
    const std::size_t HUGE_REQUEST = huge_request;
    // PTRDIFF_MAX itself: no 64-bit allocator has that much; a 32-bit one
    // may (glibc's gives 2 GiB on i386): there, one byte more, refused by
    // every allocator.
    const std::size_t PAST_PTRDIFF =
        std::size_t(PTRDIFF_MAX) + (sizeof(std::size_t) == 8 ? 0 : 1);
    // Huge requests: std::bad_alloc, or NULL for nothrow. (Not SIZE_MAX
    // with an alignment: libstdc++ rounds the size up to a multiple of the
    // alignment, which wraps to 0, a request that succeeds.)
    for (std::size_t n : {HUGE_REQUEST, PAST_PTRDIFF, SIZE_MAX - 64, SIZE_MAX}) {
        try {
            void *p = ::operator new(n);
            fail("no bad_alloc", n, 0);
            ::operator delete(p);
        } catch (const std::bad_alloc &) {
        }
        try {
            void *p = ::operator new[](n);
            fail("no bad_alloc[]", n, 0);
            ::operator delete[](p);
        } catch (const std::bad_alloc &) {
        }
        if (::operator new(n, std::nothrow) != nullptr)
            fail("nothrow not NULL", n, 0);
        if (n <= std::size_t(PTRDIFF_MAX)) {
            try {
                void *p = ::operator new(n, std::align_val_t(4096));
                fail("no aligned bad_alloc", n, 0);
                ::operator delete(p, std::align_val_t(4096));
            } catch (const std::bad_alloc &) {
            }
        }
    }
    std::set_new_handler(handler);
    try {
        (void)::operator new(HUGE_REQUEST);
        fail("no bad_alloc after the handler", 0, 0);
    } catch (const std::bad_alloc &) {
    }
    std::set_new_handler(handler);
    try {
        (void)::operator new(HUGE_REQUEST, std::align_val_t(256));
        fail("no aligned bad_alloc after the handler", 0, 0);
    } catch (const std::bad_alloc &) {
    }
    if (handler_calls != 2)
        fail("new_handler calls", static_cast<std::size_t>(handler_calls), 2);

    // std::pmr.
    {
        std::pmr::monotonic_buffer_resource mono(64);
        std::pmr::vector<std::pmr::string> v(&mono);
        for (int i = 0; i < 1000; i++)
            v.emplace_back(static_cast<std::size_t>(i % 50), 'z');
        std::pmr::synchronized_pool_resource pool;
        void *p = pool.allocate(1000, 256);
        if (reinterpret_cast<std::uintptr_t>(p) % 256 != 0)
            fail("pmr alignment", 256, 0);
        pool.deallocate(p, 1000, 256);
        std::pmr::unsynchronized_pool_resource upool;
        std::pmr::vector<int> w(&upool);
        for (int i = 0; i < 10000; i++)
            w.push_back(i);
    }

    // Exceptions thrown and caught in many threads; containers made in one
    // thread and freed in another; thread_local destructors that allocate.
    std::atomic<int> caught{0};
    std::vector<std::vector<std::string>> moved(8);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; t++)
        threads.emplace_back([t, &caught, &moved] {
            per_thread.v.emplace_back(100, 'p');
            for (int i = 0; i < 500; i++) {
                try {
                    throw std::runtime_error(std::string(static_cast<std::size_t>(i % 200 + 1), 'x'));
                } catch (const std::exception &e) {
                    caught += e.what()[0] == 'x';
                }
                moved[static_cast<std::size_t>(t)].emplace_back(static_cast<std::size_t>(i % 70), 'm');
            }
        });
    for (auto &th : threads)
        th.join();
    std::thread freer([&moved] { moved.clear(); });
    freer.join();
    per_thread.v.emplace_back(10, 'q');

    std::printf("caught=%d fails=%d\n", caught.load(), fails);
    return fails != 0 || caught != 4000;
}
