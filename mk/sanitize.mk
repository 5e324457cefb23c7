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
