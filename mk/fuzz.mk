# libFuzzer targets (fuzz/fuzz_*.c). `make fuzz` builds them with clang into
# build/fuzz/, apart from the normal build, and runs each for FUZZ_SECONDS.
# New inputs go to build/fuzz/corpus/<target>/; the seeds in
# fuzz/corpus/<target>/ and fuzz/regressions/<target>/ are only read.
# Crashes are written to build/fuzz/artifacts/<target>/.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -g -O1 -std=gnu11 -D_GNU_SOURCE -pthread \
		-fno-omit-frame-pointer -Wall -Wno-unused-parameter \
		-Wno-unused-function
FUZZ_CPPFLAGS := -Iinclude -Iengine -Ifuzz -I$(EI_DIR)/include

# The engine files the targets reach; uring/ and ktls/ are not needed.
FUZZ_LIB_SRC := $(addprefix engine/,frame.c handshake.c control.c term.c \
		tls_config.c epmd.c epmd_server.c error.c log.c thread.c)
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

# -max_len per target, in bytes: packets and files as large as the parsers
# meet in practice, small enough that each run stays fast.
FUZZ_MAX_LEN_frame        := 65536
FUZZ_MAX_LEN_handshake    := 2048
FUZZ_MAX_LEN_control      := 16384
FUZZ_MAX_LEN_frag         := 16384
FUZZ_MAX_LEN_term         := 8192
FUZZ_MAX_LEN_tls_config   := 8192
FUZZ_MAX_LEN_epmd_client  := 1024
FUZZ_MAX_LEN_epmd_server  := 8192

.PHONY: fuzz fuzz-build $(FUZZ_TARGETS:%=fuzz-%)

fuzz-build: $(FUZZ_BIN)

fuzz: $(FUZZ_TARGETS:%=fuzz-%)

$(FUZZ_BUILD)/engine/%.o: engine/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(FUZZ_SAN) \
		-fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libkdist-fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# The archive goes last, so a target that compiles an engine file itself
# (fuzz_epmd_server.c) does not pull in that file's object again.
$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_BUILD)/libkdist-fuzz.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(FUZZ_SAN) \
		-fsanitize=fuzzer -MMD -MP $< $(FUZZ_BUILD)/libkdist-fuzz.a \
		$(LDLIBS) -lm -o $@

$(FUZZ_TARGETS:%=fuzz-%): fuzz-%: $(FUZZ_BUILD)/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/artifacts/$*
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$*) \
		-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_BUILD)/artifacts/$*/ \
		$(FUZZ_BUILD)/corpus/$* \
		$(wildcard fuzz/corpus/$* fuzz/regressions/$*)

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_BIN:=.d)
