# Reliability checks, included by the Makefile (docs/RELIABILITY.md says what each one proves):
#   test-asan      the whole test suite and the CLI tests built with AddressSanitizer (+ its
#                  LeakSanitizer) and UndefinedBehaviorSanitizer; any report fails the run
#   test-tsan      the concurrency tests (every test whose name contains "threads") under
#                  ThreadSanitizer
#   fuzz           the libFuzzer targets in tests/fuzz, each for a bounded time from its seed
#                  corpus, plus a self-test: a build with a planted bug must crash on the seeds
#   test-valgrind  the plain test binary under valgrind's memcheck with a full leak check
# `make test` runs all of them after the plain tests. Everything runs on the CPU (host and sim
# backends). The sanitizer builds and libFuzzer need clang (SAN_CC) and its runtime libraries.

SAN_CC             ?= clang
SAN_STRESS_OPS     ?= 20000
TSAN_STRESS_OPS    ?= 200000
VALGRIND_STRESS_OPS ?= 2000
FUZZ_SECONDS       ?= 60
FUZZ_TRACE_SECONDS ?= 30

ASAN_DIR := $(BUILD)/asan
TSAN_DIR := $(BUILD)/tsan
FUZZ_DIR := $(BUILD)/fuzz

ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
FUZZ_BASE  := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
              -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude -Isrc -Itests -pthread
FUZZ_FLAGS := $(FUZZ_BASE) -fsanitize=fuzzer

# exitcode 23 is LeakSanitizer's; halt_on_error turns every UBSan report into a failure.
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1 \
           UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
           LSAN_OPTIONS=exitcode=23
TSAN_ENV := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:exitcode=66

.PHONY: test-reliability test-asan test-tsan asan-build tsan-build fuzz fuzz-build test-valgrind

test-reliability: test-asan test-tsan fuzz test-valgrind

# The sanitizer builds are the ordinary build in their own directory, with SANITIZE added to
# every compile and link. CFLAGS comes through the environment so that the Makefile's
# `CFLAGS +=` still adds the warnings and include paths.
asan-build:
	CFLAGS="-O1 -g" $(MAKE) --no-print-directory BUILD=$(ASAN_DIR) CC=$(SAN_CC) \
	    SANITIZE="$(ASAN_FLAGS)" $(ASAN_DIR)/vms_tests $(ASAN_DIR)/vmstitch

tsan-build:
	CFLAGS="-O1 -g" $(MAKE) --no-print-directory BUILD=$(TSAN_DIR) CC=$(SAN_CC) \
	    SANITIZE="$(TSAN_FLAGS)" $(TSAN_DIR)/vms_tests

# One process per test file, so that one report does not hide the other files' results.
test-asan: asan-build
	rc=0; \
	$(SAN_ENV) VMS_STRESS_OPS=$(SAN_STRESS_OPS) sh tests/run_groups.sh $(ASAN_DIR)/vms_tests || rc=1; \
	$(SAN_ENV) sh tests/cli_test.sh $(ASAN_DIR)/vmstitch || rc=1; \
	exit $$rc

test-tsan: tsan-build
	$(TSAN_ENV) VMS_STRESS_OPS=$(TSAN_STRESS_OPS) sh tests/run_groups.sh $(TSAN_DIR)/vms_tests threads

# valgrind (3.19) copes with host backends of bounded capacity, but not reliably with the
# default one, whose two arenas reserve twice the machine's memory each: after a few such
# allocators its address space manager refuses the next reservation. So memcheck runs every
# sim test (names containing "sim") and the files whose host tests all bound the capacity;
# the stress sizes are cut down and the fault sweeps take every 7th k (memcheck is ~30x slower).
VALGRIND_GROUPS ?= sim faults_ badinput_ threads_ core_ replay_
test-valgrind: $(BUILD)/vms_tests
	VMS_STRESS_OPS=$(VALGRIND_STRESS_OPS) VMS_FAULT_SWEEP_STRIDE=7 sh tests/run_groups.sh \
	    "valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
	    --errors-for-leak-kinds=definite,indirect $(BUILD)/vms_tests" $(VALGRIND_GROUPS)

FUZZ_DEPS := $(wildcard include/*.h src/*.h src/backend/*.h tests/*.h tools/*.h)
# The checkers (vms_check, the stamps, the fault wrapper) are built without coverage
# instrumentation: their branches are not worth exploring, and vms_check after every operation
# would otherwise take most of the time (measured: 3x fewer executions).
FUZZ_NOCOV := src/check.c tests/fault_backend.c tests/live_check.c
FUZZ_NOCOV_OBJ := $(FUZZ_NOCOV:%.c=$(FUZZ_DIR)/nocov/%.o)
FUZZ_COMMON := $(filter-out $(FUZZ_NOCOV),$(LIB_SRC)) $(FUZZ_NOCOV_OBJ)

$(FUZZ_DIR)/nocov/%.o: %.c $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(FUZZ_BASE) -c $< -o $@

$(FUZZ_DIR)/fuzz_alloc: tests/fuzz/fuzz_alloc.c $(FUZZ_COMMON) $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_alloc.c $(FUZZ_COMMON) $(LDLIBS)

# The same target with the planted bug (test_plant_overlap) enabled: it must crash.
$(FUZZ_DIR)/fuzz_alloc_planted: tests/fuzz/fuzz_alloc.c $(FUZZ_COMMON) $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(FUZZ_FLAGS) -DFUZZ_PLANT_BUG=1 -o $@ tests/fuzz/fuzz_alloc.c $(FUZZ_COMMON) $(LDLIBS)

$(FUZZ_DIR)/fuzz_trace: tests/fuzz/fuzz_trace.c tools/trace.c tools/idmap.c tools/idset.c \
                        tools/ordset.c $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(FUZZ_FLAGS) -Itools -o $@ tests/fuzz/fuzz_trace.c tools/trace.c tools/idmap.c \
	    tools/idset.c tools/ordset.c $(LDLIBS)

fuzz-build: $(FUZZ_DIR)/fuzz_alloc $(FUZZ_DIR)/fuzz_alloc_planted $(FUZZ_DIR)/fuzz_trace

fuzz: fuzz-build
	sh tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TRACE_SECONDS)
