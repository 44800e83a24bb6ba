// tests/override/cxx_heapbug.cpp - heap bugs made through C++ new/delete,
// for the debug modes' reports (check_heapbug.sh): each dies with SIGABRT
// and a report of its class.
//   cxx_heapbug overflow | underflow | double-delete | interior | aligned-overflow
//               | dtor-overflow
#include <cstdio>
#include <cstring>
#include <new>

static char *volatile sink; // keeps the compiler from eliding new/delete pairs

static void overflow_new_array()
{
    char *p = new char[24];
    sink = p;
    sink[24] = 1;
    delete[] sink;
}

// A static object's destructor, run at exit after main returned.
struct Late {
    bool armed = false;
    ~Late()
    {
        if (armed)
            overflow_new_array();
    }
};
static Late late;

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    const char *what = argv[1];
    if (std::strcmp(what, "overflow") == 0) {
        overflow_new_array();
    } else if (std::strcmp(what, "underflow") == 0) {
        sink = new char[40];
        sink[-1] = 1;
        delete[] sink;
    } else if (std::strcmp(what, "double-delete") == 0) {
        int *p = new int[10];
        sink = reinterpret_cast<char *>(p);
        delete[] reinterpret_cast<int *>(sink);
        delete[] reinterpret_cast<int *>(sink);
    } else if (std::strcmp(what, "interior") == 0) {
        int *p = new int[10];
        sink = reinterpret_cast<char *>(p + 2);
        ::operator delete(sink);
    } else if (std::strcmp(what, "aligned-overflow") == 0) {
        // 100 bytes at 64: libstdc++ asks for 128 (a multiple of the
        // alignment), so the byte past the end is p[128].
        sink = static_cast<char *>(::operator new(100, std::align_val_t{64}));
        sink[128] = 1;
        ::operator delete(sink, std::align_val_t{64});
    } else if (std::strcmp(what, "dtor-overflow") == 0) {
        late.armed = true;
        return 0;
    } else {
        return 2;
    }
    std::puts("not reported");
    return 0;
}
