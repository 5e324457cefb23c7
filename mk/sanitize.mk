# Sanitized and memcheck runs. ASAN=1, UBSAN=1 and TSAN=1 each give the
# build directory a suffix, so no instrumented object is mixed into
# build/ or the other way round:
#
#   make test-asan       unit and integration tests, ASan and UBSan,
#                        in build-asan-ubsan/ (as make test ASAN=1 UBSAN=1)
#   make test-tsan       unit tests under TSan, in build-tsan/
#   make test-valgrind   integration tests with kdist under memcheck
#   make test-hardening  all three, after make fuzz (CI runs this)
#
# The integration tests stop kdist with SIGTERM and do not read its exit
# status, so in sanitized builds the reports go to files, which
# tests/sanitizer-reports checks after the run. The test peers and erl
# are not instrumented.

SAN_ASAN_BUILD := build-asan-ubsan
SAN_TSAN_BUILD := build-tsan

.PHONY: test-asan test-tsan test-valgrind test-hardening

# halt_on_error makes the first report fail the test binary.
test-asan:
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MAKE) test-unit ASAN=1 UBSAN=1 BUILD=$(SAN_ASAN_BUILD)
	$(MAKE) test-integration ASAN=1 UBSAN=1 BUILD=$(SAN_ASAN_BUILD)

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


# Sanitized builds: RSS limits are not checked (shadow memory and the
# quarantine of freed blocks count in RSS).
ifneq ($(ASAN)$(UBSAN)$(TSAN),)
SAN_ENV := KDIST_RSS_CHECKS=0
endif
ifneq ($(ASAN)$(UBSAN),)
SAN_WRAP := tests/sanitizer-reports $(CURDIR)/$(BUILD)/reports
endif

# Under valgrind kdist waits in poll() rather than io_uring_enter() (see
# uring/loop.c). VG_TESTS picks tests; the default is the whole suite,
# against OTP 25 peers only (VG_OTPS), which keeps the run near 15 minutes
# on 2 cores.
VG_REPORTS := $(CURDIR)/build/valgrind
VG_OTPS    ?= 25

test-valgrind: cli tools
	rm -rf $(VG_REPORTS)
	KDIST=$(CURDIR)/tests/valgrind/kdist KDIST_VG_LOGS=$(VG_REPORTS) \
	KDIST_STOP_GRACE=20 KDIST_RSS_CHECKS=0 KDIST_TIME_SCALE=5 \
	KDIST_OTPS=$(VG_OTPS) tests/integration/run-all $(VG_TESTS); \
	suite=$$?; tests/valgrind/check $(VG_REPORTS) && exit $$suite

# Each target runs even when an earlier one failed; the first failure
# still fails the whole run.
test-hardening:
	status=0; \
	for t in fuzz test-asan test-tsan test-valgrind; do \
		echo "== make $$t"; \
		$(MAKE) -j2 $$t || { echo "FAILED: make $$t"; status=1; }; \
	done; \
	exit $$status
