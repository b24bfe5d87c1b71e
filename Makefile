# vmstitch build. `make` builds the library, the CLI and the tests into build/;
# `make test` runs every CPU test, then the reliability checks (sanitizers, fuzzing, leak
# checks: tests/reliability.mk); `make demo` compares the policies on the bundled traces.
CC      ?= cc
CXX     ?= c++
PREFIX  ?= /usr/local
BUILD   ?= build
VERSION := 0.1.0
SOVER   := 0

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS  ?= -O2 -g
# SANITIZE: extra compile and link flags of the sanitizer builds (set by the targets below).
SANITIZE ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) -Iinclude -Isrc -pthread $(SANITIZE)
LDLIBS  := -lz -ldl -lpthread -lm

LIB_SRC := $(wildcard src/*.c) $(wildcard src/backend/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_SRC := $(wildcard tools/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
# The replay engine's parser and policies are linked into the tests as well (all but main).
CLI_LIB_OBJ := $(filter-out $(BUILD)/obj/tools/main.o,$(CLI_OBJ))

.PHONY: all test test-unit demo bench install clean gpu-test gpu-bench format
all: $(BUILD)/libvmstitch.so $(BUILD)/libvmstitch.a $(BUILD)/vmstitch $(BUILD)/vms_tests $(BUILD)/libvmstitch_torch.so

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libvmstitch.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libvmstitch.so.$(VERSION): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libvmstitch.so.$(SOVER) -o $@ $^ $(LDLIBS)

$(BUILD)/libvmstitch.so: $(BUILD)/libvmstitch.so.$(VERSION)
	ln -sf libvmstitch.so.$(VERSION) $(BUILD)/libvmstitch.so.$(SOVER)
	ln -sf libvmstitch.so.$(VERSION) $@

# The PyTorch entry points: a tiny C++ shim (PyTorch needs a C++ exception on OOM) with the
# core linked in statically, so Python loads one self-contained file.
$(BUILD)/libvmstitch_torch.so: python/vmstitch/torch_shim.cpp $(LIB_OBJ)
	$(CXX) -O2 -g -std=c++17 -fPIC -shared -fvisibility=hidden -Wall -Wextra -Werror -Iinclude \
	    -o $@ python/vmstitch/torch_shim.cpp $(LIB_OBJ) $(LDLIBS)

$(BUILD)/vmstitch: $(CLI_OBJ) $(BUILD)/libvmstitch.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libvmstitch.a $(LDLIBS)

$(BUILD)/vms_tests: $(TEST_OBJ) $(CLI_LIB_OBJ) $(BUILD)/libvmstitch.a
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(CLI_LIB_OBJ) $(BUILD)/libvmstitch.a $(LDLIBS)

test: test-unit test-reliability

# The plain build's tests: every unit, integration, stress, fault and thread test, and the CLI.
test-unit: all
	$(BUILD)/vms_tests
	sh tests/cli_test.sh $(BUILD)/vmstitch
	python3 tests/bench/test_bench_tools.py

demo: $(BUILD)/vmstitch
	$(BUILD)/vmstitch compare --svg $(BUILD)/demo.svg data/traces/*.trace.gz

bench: $(BUILD)/vmstitch
	sh bench/replay_bench.sh $(BUILD)/vmstitch
	python3 bench/batch_replay.py --cli $(BUILD)/vmstitch

gpu-test: all
	sh tests/gpu/run.sh $(BUILD)

# The GPU benchmark (bench/gpu/README.md): tables in $(BUILD)/gpu-bench/bench_gpu.md. Parts
# that do not fit its time budget (--budget-s, 420 s) are skipped with a note; all of it takes
# about 20 minutes: GPU_BENCH_ARGS="--budget-s 1500", or parts, e.g. --lockstep-workloads "".
gpu-bench: all
	python3 bench/gpu/run_all.py --build $(BUILD) --out $(BUILD)/gpu-bench $(GPU_BENCH_ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/vmstitch.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(BUILD)/libvmstitch.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libvmstitch.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libvmstitch.so.$(SOVER)
	ln -sf libvmstitch.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libvmstitch.so
	install -m 644 $(BUILD)/libvmstitch.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/vmstitch $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' vmstitch.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/vmstitch.pc

format:
	clang-format -i include/*.h src/*.[ch] src/backend/*.[ch] tools/*.[ch] tests/*.[ch] tests/fuzz/*.c

clean:
	rm -rf $(BUILD)

include tests/reliability.mk

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
