# libcprof — build, dependencies, demo, tests, benchmarks.
#
#   make            build preload/libcprof.so and tools/cprof
#   make deps       install the Debian packages below (root), or print the line
#   make demo       build, run the demo under the shim, show its profiles
#   make test       build, run every test; ends with "N passed, N failed"
#   make bench      overhead against the unprofiled run and the peer tools
#   make install PREFIX=/usr/local
#
# Every package the project needs, for building, testing and benchmarking,
# is named here and nowhere else.
DEBIAN_PACKAGES := gcc g++ make libc6-dev binutils \
	libunwind-dev zlib1g-dev libprotobuf-c-dev protobuf-c-compiler \
	libdw-dev libelf-dev libcmocka-dev golang-go \
	libgoogle-perftools4 google-perftools heaptrack \
	clang libclang-rt-14-dev libc6-dbg libmicrohttpd-dev \
	chromium libxml2-utils netpbm strace python3

PREFIX ?= /usr/local
CC ?= cc
CFLAGS_EXTRA ?=
OPT ?= -O2

BUILD := build
GEN := $(BUILD)/gen
OBJ := $(BUILD)/obj

# -Wvla: nothing of the shim's may size its stack use at run time (the
# program's stack may be a small one: README, "Stack use").
WARN := -Wall -Wextra -Werror -Wshadow -Wvla -Wno-missing-field-initializers
BASE_CFLAGS := -std=gnu11 -g $(OPT) -fPIC -fvisibility=hidden \
	-ftls-model=initial-exec -fno-omit-frame-pointer -D_GNU_SOURCE \
	-I$(GEN) -Ipreload -Iinclude $(CFLAGS_EXTRA)
LIBS := -lunwind -lprotobuf-c -lz -ldl -lpthread

# The parts every profile kind shares, linked into the shim, the tests and
# (the writer/reader half) the cprof tool.
CORE_SRC := preload/util.c preload/config.c preload/stacks.c preload/unwind.c preload/walk.c \
	preload/symbolize.c preload/pprof.c preload/clock.c preload/labels.c preload/http_route.c \
	preload/sources.c preload/thread_self.c
# The parts that exist only inside a process wearing the shim.
SHIM_SRC := preload/init.c preload/real.c preload/cpu.c preload/signals.c \
	preload/dump.c preload/heap.c preload/mutex.c preload/block.c \
	preload/sigmask.c preload/exec.c preload/http.c preload/threads.c
PROTO_C := $(GEN)/profile.pb-c.c
PROTO_H := $(GEN)/profile.pb-c.h

CORE_OBJ := $(CORE_SRC:preload/%.c=$(OBJ)/%.o) $(OBJ)/profile.pb-c.o
SHIM_OBJ := $(SHIM_SRC:preload/%.c=$(OBJ)/%.o)

SHIM := preload/libcprof.so
CORE_LIB := $(BUILD)/libcprof_core.a
TOOL := tools/cprof
# The reading, merging and diff maths the tool's commands and the unit tests share.
TOOL_LIB_SRC := tools/profile_read.c tools/profile_merge.c tools/profile_set.c
TOOL_LIB_H := tools/profile_read.h tools/profile_merge.h
TOOL_SRC := tools/cprof.c tools/run.c tools/diff.c tools/merge.c tools/flame.c tools/threads.c \
	$(TOOL_LIB_SRC)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
PROG_C := $(filter-out tests/progs/plugin%.c,$(wildcard tests/progs/*.c))
PROG_CXX := $(wildcard tests/progs/*.cc)
PROG_BIN := $(PROG_C:tests/progs/%.c=$(BUILD)/progs/%) \
	$(PROG_CXX:tests/progs/%.cc=$(BUILD)/progs/%) $(BUILD)/progs/sig_child_static

.PHONY: all deps deps-check demo test unit e2e bench install clean
.DEFAULT_GOAL := all

all: deps-check $(SHIM) $(TOOL)

# ---- dependencies ------------------------------------------------------

# Cheap when everything is installed: one dpkg-query.
deps-check:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then $(MAKE) --no-print-directory deps; fi

deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all installed"; exit 0; fi; \
	echo "deps: missing:" $$missing; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "deps: not root; run as root:"; \
		echo "  apt-get update && apt-get install -y" $$missing; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q && apt-get install -y -q --no-install-recommends $$missing

# ---- build -------------------------------------------------------------

$(PROTO_C) $(PROTO_H): preload/profile.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Ipreload preload/profile.proto

$(OBJ)/profile.pb-c.o: $(PROTO_C) $(PROTO_H)
	@mkdir -p $(OBJ)
	$(CC) $(filter-out -Werror,$(BASE_CFLAGS)) -c $< -o $@

$(OBJ)/%.o: preload/%.c preload/cprof_internal.h include/cprof.h $(PROTO_H)
	@mkdir -p $(OBJ)
	$(CC) $(BASE_CFLAGS) $(WARN) -c $< -o $@

$(OBJ)/mutex.o $(OBJ)/block.o $(OBJ)/clock.o $(OBJ)/init.o $(OBJ)/sigmask.o \
	$(OBJ)/exec.o: preload/wait.h
$(OBJ)/http.o $(OBJ)/http_route.o $(OBJ)/config.o: preload/http_route.h
$(OBJ)/heap.o $(OBJ)/block.o $(OBJ)/unwind.o: preload/unwind_here.h

# The test build's shim: every walk of walk.c's, a wrapper's or a signal
# handler's, checked against libunwind's of the same stack
# (tests/e2e/walk.sh). The files that walk, built again with the check;
# the rest as in the shim.
CHECK := $(BUILD)/check
CHECK_SRC := preload/heap.c preload/block.c preload/walk.c preload/unwind.c
CHECK_OBJ := $(CHECK_SRC:preload/%.c=$(CHECK)/%.o)
CHECK_SHIM := $(CHECK)/libcprof.so

$(CHECK)/%.o: preload/%.c preload/cprof_internal.h preload/unwind_here.h preload/wait.h \
		include/cprof.h $(PROTO_H)
	@mkdir -p $(CHECK)
	$(CC) $(BASE_CFLAGS) $(WARN) -DCPROF_WALK_CHECK -c $< -o $@

$(CHECK_SHIM): $(CHECK_OBJ) $(filter-out $(OBJ)/heap.o $(OBJ)/block.o,$(SHIM_OBJ)) $(CORE_LIB) \
		preload/exports.map
	$(CC) -shared -Wl,-z,defs -Wl,-z,now -Wl,--version-script=preload/exports.map \
		-o $@ $(CHECK_OBJ) $(filter-out $(OBJ)/heap.o $(OBJ)/block.o,$(SHIM_OBJ)) \
		$(CORE_LIB) $(LIBS)

$(CORE_LIB): $(CORE_OBJ)
	rm -f $@; ar rcs $@ $^

$(SHIM): $(SHIM_OBJ) $(CORE_LIB) preload/exports.map
	$(CC) -shared -Wl,-z,defs -Wl,-z,now -Wl,--version-script=preload/exports.map \
		-o $@ $(SHIM_OBJ) $(CORE_LIB) $(LIBS)

$(TOOL): $(TOOL_SRC) $(TOOL_LIB_H) tools/cprof_command.h $(CORE_LIB) $(PROTO_H)
	$(CC) $(BASE_CFLAGS) $(WARN) -fvisibility=default -Itools -o $@ \
		$(TOOL_SRC) $(CORE_LIB) $(LIBS) -lm

# ---- tests -------------------------------------------------------------

$(BUILD)/tests/%: tests/unit/%.c $(CORE_LIB) $(TOOL_LIB_SRC) $(TOOL_LIB_H)
	@mkdir -p $(BUILD)/tests
	$(CC) $(BASE_CFLAGS) $(WARN) -fvisibility=default -Itools -o $@ $< \
		$(TOOL_LIB_SRC) $(CORE_LIB) $(LIBS) -lcmocka -lm

# Test programs: plain builds with debug information, as users build.
$(BUILD)/progs/%: tests/progs/%.c include/cprof.h
	@mkdir -p $(BUILD)/progs
	$(CC) -std=gnu11 -g -O1 -Iinclude -Wall -o $@ $< -lpthread -ldl -lm

$(BUILD)/progs/%: tests/progs/%.cc
	@mkdir -p $(BUILD)/progs
	$(CXX) -g -O1 -Wall -o $@ $< -lpthread -ldl

# The same child, static: a program the shim cannot enter (as a setuid one).
$(BUILD)/progs/sig_child_static: tests/progs/sig_child.c
	@mkdir -p $(BUILD)/progs
	$(CC) -std=gnu11 -g -O1 -Wall -static -o $@ $<

# Bound at load time (-z now), as a program that runs handlers on an
# alternate stack of the kernel's minimum size must be: a first call through
# a lazy PLT entry in the handler (siglongjmp) runs the loader's resolver,
# which saves the vector registers there (xsave, 3.1 KiB with AVX-512) and
# overflowed the 5.4 KiB stack with or without the shim (measured: 6,088
# bytes used of it unprofiled; 3,000 bound now, 3,528 under the shim).
$(BUILD)/progs/altstack_guard: tests/progs/altstack_guard.c include/cprof.h
	@mkdir -p $(BUILD)/progs
	$(CC) -std=gnu11 -g -O1 -Iinclude -Wall -Wl,-z,now -o $@ $< -lpthread -ldl -lm

$(BUILD)/progs/lib%.so: tests/progs/%.c
	@mkdir -p $(BUILD)/progs
	$(CC) -g -O1 -shared -fPIC -o $@ $< -lpthread

PLUGINS := $(patsubst tests/progs/%.c,$(BUILD)/progs/lib%.so,$(wildcard tests/progs/plugin*.c))

test: all $(UNIT_BIN) $(PROG_BIN) $(PLUGINS) $(CHECK_SHIM)
	@bash tests/run.sh

bench: all
	@bash bench/run.sh

# The demo service (demo/service.c), built as a user builds: -O2 with
# debug information. demo/demo.sh profiles it and prints what it finds.
demo: all
	@mkdir -p $(BUILD)/demo
	$(CC) -std=gnu11 -g -O2 -Wall -Wextra -Werror -pthread -o $(BUILD)/demo/service demo/service.c
	@bash demo/demo.sh

# ---- fuzzing -----------------------------------------------------------

# libFuzzer on the profile reader (tests/fuzz/fuzz_profile_read.c), with
# AddressSanitizer and UBSan. Seeds: tests/fuzz/corpus/ (kept small); the
# inputs it finds go to build/fuzz/corpus. `make fuzz FUZZ_SECONDS=600`.
FUZZ_SECONDS ?= 300
FUZZ_BIN := $(BUILD)/fuzz/fuzz_profile_read

.PHONY: fuzz
fuzz: deps-check $(FUZZ_BIN)
	@mkdir -p $(BUILD)/fuzz/corpus
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2560 \
		-max_len=16384 -print_final_stats=1 $(BUILD)/fuzz/corpus tests/fuzz/corpus

$(FUZZ_BIN): tests/fuzz/fuzz_profile_read.c tools/profile_read.c tools/profile_read.h \
		$(PROTO_C) $(PROTO_H)
	@mkdir -p $(BUILD)/fuzz
	clang -std=gnu11 -g -O1 -D_GNU_SOURCE -I$(GEN) -Itools \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-o $@ tests/fuzz/fuzz_profile_read.c tools/profile_read.c $(PROTO_C) \
		-lprotobuf-c -lz -ldl -lm

# libFuzzer on the endpoint's routing, query, symbol-body, token and
# address parsing (tests/fuzz/fuzz_http_route.c); seeds in
# tests/fuzz/corpus_http/. `make fuzz-http FUZZ_SECONDS=180`.
FUZZ_HTTP_BIN := $(BUILD)/fuzz/fuzz_http_route

.PHONY: fuzz-http
fuzz-http: deps-check $(FUZZ_HTTP_BIN)
	@mkdir -p $(BUILD)/fuzz/corpus_http
	$(FUZZ_HTTP_BIN) -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2560 \
		-max_len=4096 -print_final_stats=1 $(BUILD)/fuzz/corpus_http tests/fuzz/corpus_http

$(FUZZ_HTTP_BIN): tests/fuzz/fuzz_http_route.c preload/http_route.c preload/http_route.h
	@mkdir -p $(BUILD)/fuzz
	clang -std=gnu11 -g -O1 -D_GNU_SOURCE -Ipreload \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-o $@ tests/fuzz/fuzz_http_route.c preload/http_route.c

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include
	install -m 0755 $(SHIM) $(DESTDIR)$(PREFIX)/lib/libcprof.so
	install -m 0755 $(TOOL) $(DESTDIR)$(PREFIX)/bin/cprof
	install -m 0644 include/cprof.h $(DESTDIR)$(PREFIX)/include/cprof.h

clean:
	rm -rf $(BUILD) $(SHIM) $(TOOL)
