# Sluice build. `make` builds build/bin/*, `make test` builds the sanitizer
# variant in build/asan and runs every test, `make demo` runs the seed
# scenario end to end.

CC ?= cc
BUILD ?= build
CPPFLAGS += -D_GNU_SOURCE -Ishared $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
CFLAGS ?= -O2 -g
CFLAGS += -std=c17 -Wall -Wextra -Wstrict-prototypes -Werror -pthread
LDLIBS = -lrdkafka -lpq -lcurl -ljansson -lmicrohttpd -luuid -lcrypto -lpthread

SHARED_SRC := $(wildcard shared/*.c)
WORKER_SRC := $(wildcard worker/*.c)
APPROVER_SRC := $(wildcard approver/*.c)
CLI_SRC := $(wildcard cli/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB := $(BUILD)/lib/libsluice.a
BINS := $(BUILD)/bin/sluice $(BUILD)/bin/sluice-worker $(BUILD)/bin/sluice-approver \
	$(BUILD)/bin/sluice-dev-broker $(BUILD)/bin/sluice-scripted-model

.PHONY: all deps test unit e2e demo lint clean bench
all: $(BINS)

deps:
	@scripts/install-deps

$(BUILD)/obj/%.o: %.c $(wildcard shared/*.h) $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(call obj,$(SHARED_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/sluice: $(call obj,$(CLI_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/sluice-worker: $(call obj,$(WORKER_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/sluice-approver: $(call obj,$(APPROVER_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/sluice-dev-broker: $(call obj,dev/broker.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/sluice-scripted-model: $(call obj,dev/scripted_model.c dev/scripted.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests (cmocka), one binary per tests/unit/test_*.c.
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
$(BUILD)/tests/test_scripted: $(call obj,dev/scripted.c)
$(BUILD)/tests/%: $(call obj,tests/unit/%.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

unit-bins: $(UNIT_BINS)

SAN := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

test: deps
	$(MAKE) BUILD=build/asan CFLAGS="$(SAN)" all unit-bins
	tests/run build/asan

demo: deps all
	scripts/demo

lint:
	scripts/lint

clean:
	rm -rf build
