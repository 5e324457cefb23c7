# kdist build. `make` builds the library, the CLI and the unit tests;
# `make test` installs what is missing, then runs unit, integration and VM tests;
# `make demo` runs the main job against a real erl node.

CC      ?= cc
EI_DIR  := $(firstword $(wildcard /usr/lib/erlang/lib/erl_interface-*))
BUILD   := build$(if $(filter 1,$(ASAN)),-asan)$(if $(filter 1,$(UBSAN)),-ubsan)$(if $(filter 1,$(TSAN)),-tsan)

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-format-truncation \
	   -D_GNU_SOURCE -fno-strict-aliasing -pthread
CPPFLAGS += -Iinclude -Iengine -Iuring -Iktls -I$(EI_DIR)/include
LDLIBS  += -L$(EI_DIR)/lib -lei -lssl -lcrypto -luring -pthread

ifeq ($(ASAN),1)
CFLAGS  += -fsanitize=address -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address
endif
ifeq ($(UBSAN),1)
CFLAGS  += -fsanitize=undefined -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=undefined
endif
ifeq ($(TSAN),1)
CFLAGS  += -fsanitize=thread
LDFLAGS += -fsanitize=thread
endif

LIB_SRC  := $(wildcard engine/*.c uring/*.c ktls/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)

.PHONY: all lib cli unit tools deps test test-unit test-integration test-vm demo \
	bench clean format format-check

all: lib cli unit tools

lib: $(BUILD)/libkdist.a
cli: $(BUILD)/kdist
unit: $(UNIT_BIN)
tools: $(TOOL_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libkdist.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/kdist: $(CLI_OBJ) $(BUILD)/libkdist.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libkdist.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libkdist.a \
		$(LDLIBS) -lcmocka -o $@

# test_cli_opts compiles the CLI's parser into itself.
$(BUILD)/tests/test_cli_opts: cli/opts.c cli/opts.h

$(BUILD)/tools/%: tests/tools/%.c tests/tools/peer.h \
		tests/tools/common/sanitizer_options.c $(BUILD)/libkdist.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) $< \
		tests/tools/common/sanitizer_options.c $(BUILD)/libkdist.a \
		$(LDLIBS) -o $@

deps:
	.ci/install-deps

test: deps
	$(MAKE) all
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) test-vm

test-unit: unit
	tests/run-unit $(UNIT_BIN)

# The suite runs the binaries of this build: `make test ASAN=1 UBSAN=1`
# tests the sanitized kdist (reports checked by SAN_WRAP, mk/sanitize.mk).
test-integration: all
	$(SAN_WRAP) env KDIST=$(CURDIR)/$(BUILD)/kdist \
		KDIST_TOOLS=$(CURDIR)/$(BUILD)/tools $(SAN_ENV) \
		tests/integration/run-all

test-vm: all
ifeq ($(ASAN)$(UBSAN)$(TSAN),)
	tests/vm/run
else
	@echo "test-vm: skipped: the VM runs the normal build; run make test-vm"
endif

demo: deps
	$(MAKE) all
	demo/run

bench: deps
	$(MAKE) all
	bench/run

format:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(UNIT_SRC) include/*.h engine/*.h \
		uring/*.h ktls/*.h

format-check:
	clang-format --dry-run --Werror $(LIB_SRC) $(CLI_SRC) $(UNIT_SRC) \
		include/*.h engine/*.h uring/*.h ktls/*.h

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
-include mk/*.mk
