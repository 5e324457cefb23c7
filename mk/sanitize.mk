# Sanitized unit-test runs, each in its own build directory so that no
# instrumented object is mixed into build/ or the other way round:
#
#   make test-asan   ASan and UBSan, into build-asan-ubsan/
#   make test-tsan   TSan, into build-tsan/
#
# `make test-unit ASAN=1 UBSAN=1` also works, but builds into $(BUILD),
# which the top Makefile sets to build/, shared with the normal build.
# The objects there are not rebuilt when only the flags change, so run
# such a build only after removing build/, or use the targets above.

SAN_ASAN_BUILD := build-asan-ubsan
SAN_TSAN_BUILD := build-tsan

.PHONY: test-asan test-tsan

# halt_on_error makes the first report fail the test binary.
test-asan:
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MAKE) test-unit ASAN=1 UBSAN=1 BUILD=$(SAN_ASAN_BUILD)

# io_uring's completion ring is shared memory that TSan cannot follow, so
# reports from inside liburing need reading with that in mind.
test-tsan:
	TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 \
	$(MAKE) test-unit TSAN=1 BUILD=$(SAN_TSAN_BUILD)

ifneq ($(ASAN)$(UBSAN)$(TSAN),)
ifeq ($(BUILD),build)
$(warning sanitizer flags with BUILD=build: objects built earlier without \
them are reused; use make test-asan or make test-tsan)
endif
endif

# The integration suite against instrumented kdist binaries. The tests
# stop kdist with SIGTERM and do not read its exit status, so reports go
# to files that are checked after the run.
#
#   make test-integration-asan   kdist built with ASan and UBSan
#   make test-valgrind           kdist run under valgrind's memcheck
#
# The test peers (build/tools) and erl are not instrumented.
SAN_REPORTS := $(CURDIR)/$(SAN_ASAN_BUILD)/reports
VG_REPORTS  := $(CURDIR)/build/valgrind

.PHONY: test-integration-asan test-valgrind

test-integration-asan: tools
	$(MAKE) cli ASAN=1 UBSAN=1 BUILD=$(SAN_ASAN_BUILD)
	rm -rf $(SAN_REPORTS)
	mkdir -p $(SAN_REPORTS)
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:log_path=$(SAN_REPORTS)/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(SAN_REPORTS)/ubsan \
	KDIST=$(CURDIR)/$(SAN_ASAN_BUILD)/kdist tests/integration/run-all
	@if ls $(SAN_REPORTS)/* >/dev/null 2>&1; then \
		echo "sanitizer reports:"; head -n 40 $(SAN_REPORTS)/*; exit 1; \
	else echo "sanitizers: no reports"; fi

# Under valgrind kdist waits in poll() rather than io_uring_enter() (see
# uring/loop.c). VG_TESTS picks tests; the default is the whole suite.
test-valgrind: cli tools
	rm -rf $(VG_REPORTS)
	KDIST=$(CURDIR)/tests/valgrind/kdist KDIST_VG_LOGS=$(VG_REPORTS) \
	KDIST_STOP_GRACE=20 tests/integration/run-all $(VG_TESTS)
	tests/valgrind/check $(VG_REPORTS)
