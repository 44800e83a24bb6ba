/*
 * tests/sanitizers.h - PM_T_ASAN and PM_T_TSAN: 1 in a build with that
 * sanitizer, else 0 (gcc says so with __SANITIZE_*__, clang with
 * __has_feature). harness.h includes it; the tests without the harness
 * include it alone.
 */
#ifndef PM_TEST_SANITIZERS_H
#define PM_TEST_SANITIZERS_H

#if defined(__SANITIZE_ADDRESS__)
#define PM_T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PM_T_ASAN 1
#endif
#endif
#ifndef PM_T_ASAN
#define PM_T_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define PM_T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PM_T_TSAN 1
#endif
#endif
#ifndef PM_T_TSAN
#define PM_T_TSAN 0
#endif

#endif
