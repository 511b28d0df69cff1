# Sluice build. `make` builds build/bin/*, `make test` builds the sanitizer
# variant in build/asan and runs every test, `make demo` runs the seed
# scenario end to end.

CC ?= cc
BUILD ?= build

# librdkafka, static, as scripts/build-librdkafka builds it (Debian 13's
# release: Debian 12's cannot log in to Kafka 4 with SASL/SCRAM; the script
# says why). One copy for every build variant.
RDKAFKA := build/librdkafka
RDKAFKA_STAMP := $(RDKAFKA)/STAMP
RDKAFKA_LIBS = $(shell PKG_CONFIG_PATH=$(RDKAFKA)/lib/pkgconfig pkg-config --libs rdkafka-static)

CPPFLAGS += -D_GNU_SOURCE -Ishared -isystem $(RDKAFKA)/include $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
CFLAGS ?= -O2 -g
override CFLAGS += -std=c17 -Wall -Wextra -Wstrict-prototypes -Werror -pthread
LDLIBS = $(RDKAFKA_LIBS) -lpq -lcurl -ljansson -lmicrohttpd -luuid -lcrypto -lpthread -lm

SHARED_SRC := $(wildcard shared/*.c)
WORKER_SRC := $(wildcard worker/*.c)
APPROVER_SRC := $(wildcard approver/*.c)
CLI_SRC := $(wildcard cli/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB := $(BUILD)/lib/libsluice.a
BINS := $(BUILD)/bin/sluice $(BUILD)/bin/sluice-worker $(BUILD)/bin/sluice-approver \
	$(BUILD)/bin/sluice-dev-broker $(BUILD)/bin/sluice-scripted-model \
	$(BUILD)/bin/sluice-bench-loadgen

.PHONY: all deps test unit-bins demo lint clean fuzz bench chaos tsan tsan-bins
all: $(BINS)

deps:
	@scripts/install-deps

$(RDKAFKA_STAMP): scripts/build-librdkafka
	scripts/build-librdkafka $(RDKAFKA)

$(BUILD)/obj/%.o: %.c $(wildcard shared/*.h) $(wildcard */*.h) $(RDKAFKA_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(call obj,$(SHARED_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/sluice: $(call obj,$(CLI_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

$(BUILD)/bin/sluice-worker: $(call obj,$(WORKER_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

# cjose (JOSE, for OIDC bearer tokens) is the approver's alone.
$(BUILD)/bin/sluice-approver $(BUILD)/tests/test_access $(BUILD)/tests/test_oidc \
	build/fuzz/fuzz_api: LDLIBS += -lcjose
$(BUILD)/bin/sluice-approver: $(call obj,$(APPROVER_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

$(BUILD)/bin/sluice-dev-broker: $(call obj,dev/broker.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

$(BUILD)/bin/sluice-scripted-model: $(call obj,dev/scripted_model.c dev/scripted.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

$(BUILD)/bin/sluice-bench-loadgen: $(call obj,bench/loadgen.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

# Unit tests (cmocka), one binary per tests/unit/test_*.c.
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
$(BUILD)/tests/test_scripted: $(call obj,dev/scripted.c worker/wk_model.c)
$(BUILD)/tests/test_flight: $(call obj,worker/wk_flight.c)
$(BUILD)/tests/test_pool: $(call obj,worker/wk_pool.c)
$(BUILD)/tests/test_fetch: $(call obj,worker/wk_fetch.c)
$(BUILD)/tests/test_tool: $(call obj,worker/wk_tool.c)
$(BUILD)/tests/test_access: $(call obj,approver/ap_access.c approver/ap_oidc.c)
$(BUILD)/tests/test_oidc: $(call obj,approver/ap_oidc.c)
$(BUILD)/tests/%: $(call obj,tests/unit/%.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS) -lcmocka

unit-bins: $(UNIT_BINS)

SAN := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# ThreadSanitizer: the modules that hand work between threads (the queue,
# the pools, the fetch thread, tool processes), each alone in its unit
# test. The services themselves cannot run under it: librdkafka starts its
# threads with C11 thrd_create(), which this TSan does not intercept, and
# they crash in its allocator (test_flight, on the mock cluster, shows it).
TSAN := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
TSAN_TESTS := test_queue test_pool test_fetch test_tool
tsan-bins:
	$(MAKE) BUILD=build/tsan CFLAGS="$(TSAN)" $(addprefix build/tsan/tests/,$(TSAN_TESTS))

tsan: tsan-bins
	@for t in $(TSAN_TESTS); do TSAN_OPTIONS=halt_on_error=1 build/tsan/tests/$$t || exit 1; done

# Lint, bounded fuzzing, then every unit and end-to-end test under
# AddressSanitizer + UBSan, and the threaded modules' unit tests under
# ThreadSanitizer; tests/run prints the closing summary line.
test: deps
	scripts/lint
	$(MAKE) fuzz
	$(MAKE) BUILD=build/asan CFLAGS="$(SAN)" all unit-bins
	$(MAKE) tsan-bins
	tests/run build/asan build/tsan

demo: deps all
	scripts/demo

# The fault suite of RELIABILITY.md: 1,000 runs under kill -9s, restarts
# and a network partition, judged from outside (tests/chaos/faults --help).
chaos: deps all
	tests/chaos/faults --runs 1000

# The benchmark of BENCHMARKS.md (bench/run --help for its options).
bench: deps all
	bench/run

lint:
	scripts/lint

clean:
	rm -rf build

# Fuzz targets (libFuzzer, clang) for every parser of untrusted input, run
# for FUZZ_SECONDS each by `make fuzz` (and by `make test`).
FUZZ_SECONDS ?= 15
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -Ishared -g -O1 -fsanitize=fuzzer,address,undefined
FUZZ_LIBS := -ljansson -luuid -lcrypto
build/fuzz/fuzz_event: tests/fuzz/fuzz_event.c shared/sl_event.c shared/sl_common.c $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) $(FUZZ_LIBS)
build/fuzz/fuzz_agents: tests/fuzz/fuzz_agents.c shared/sl_agents.c shared/sl_policy.c shared/sl_event.c shared/sl_common.c $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) $(FUZZ_LIBS)
build/fuzz/fuzz_policy: tests/fuzz/fuzz_policy.c shared/sl_agents.c shared/sl_policy.c shared/sl_event.c shared/sl_common.c $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) $(FUZZ_LIBS)
build/fuzz/fuzz_model: tests/fuzz/fuzz_model.c worker/wk_model.c dev/scripted.c shared/sl_common.c shared/sl_http.c $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) $(FUZZ_LIBS) -lcurl

build/fuzz/fuzz_stdio: tests/fuzz/fuzz_stdio.c worker/wk_stdio.c shared/sl_log.c shared/sl_text.c shared/sl_queue.c shared/sl_common.c $(wildcard shared/*.h) $(wildcard worker/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -Iworker -o $@ $(filter %.c,$^) $(FUZZ_LIBS) -lpthread

# The approver's request handling over loopback, through libmicrohttpd and
# the routes, as the server runs it (its database unreachable).
API_FUZZ_SRC := $(filter-out approver/ap_main.c,$(APPROVER_SRC)) $(SHARED_SRC)
build/fuzz/fuzz_api: tests/fuzz/fuzz_api.c $(API_FUZZ_SRC) $(wildcard shared/*.h) $(wildcard approver/*.h) $(RDKAFKA_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $(CPPFLAGS) -Iapprover -o $@ $(filter %.c,$^) $(LDLIBS)

build/fuzz/fuzz_jcs: tests/fuzz/fuzz_jcs.c shared/sl_jcs.c shared/sl_common.c $(wildcard shared/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) $(FUZZ_LIBS)

# OIDC tokens, their claims and JWKS documents (ap_oidc.c, included).
build/fuzz/fuzz_oidc: tests/fuzz/fuzz_oidc.c approver/ap_oidc.c shared/sl_http.c shared/sl_log.c shared/sl_text.c shared/sl_common.c $(wildcard shared/*.h) approver/ap_oidc.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_oidc.c $(filter shared/%.c,$^) $(FUZZ_LIBS) -lcurl -lcjose -lpthread

FUZZERS := build/fuzz/fuzz_event build/fuzz/fuzz_agents build/fuzz/fuzz_model build/fuzz/fuzz_stdio \
	build/fuzz/fuzz_api build/fuzz/fuzz_oidc build/fuzz/fuzz_jcs build/fuzz/fuzz_policy
fuzz: $(FUZZERS)
	@for f in $(FUZZERS); do \
	  name=$$(basename $$f | sed 's/^fuzz_//'); \
	  mkdir -p build/fuzz/corpus-$$name; \
	  echo "# fuzz $$name for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=0 \
	    build/fuzz/corpus-$$name tests/fuzz/corpus/$$name 2>build/fuzz/$$name.log || \
	    { tail -50 build/fuzz/$$name.log; exit 1; }; \
	  grep -E '^#[0-9]+.*DONE' build/fuzz/$$name.log | tail -1; \
	done
