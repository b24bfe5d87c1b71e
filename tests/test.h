/* A minimal test harness: TEST(name) registers a function at load time; CHECK records a failure
 * and goes on, REQUIRE records a failure and leaves the test. test_main.c runs every test (or
 * those whose names contain one of the command-line arguments) and prints "N passed, N failed".
 * Sizes of stress tests come from test_param("VMS_STRESS_OPS", default), so CI can scale them. */
#ifndef VMS_TEST_H
#define VMS_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *what);
long test_param(const char *env_name, long default_value);
uint64_t test_rand(uint64_t *state); /* splitmix64 */

#define TEST(name)                                                                               \
    static void name(void);                                                                      \
    __attribute__((constructor)) static void name##_register(void) { test_register(#name, name); } \
    static void name(void)

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) test_fail(__FILE__, __LINE__, #cond);                                       \
    } while (0)

#define REQUIRE(cond)                                                                            \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            test_fail(__FILE__, __LINE__, #cond);                                                \
            return;                                                                              \
        }                                                                                        \
    } while (0)

#define CHECK_EQ(a, b)                                                                           \
    do {                                                                                         \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                    \
        if (va_ != vb_) {                                                                        \
            char m_[256];                                                                        \
            snprintf(m_, sizeof m_, "%s == %s (%lld vs %lld)", #a, #b, va_, vb_);                \
            test_fail(__FILE__, __LINE__, m_);                                                   \
        }                                                                                        \
    } while (0)

#endif
