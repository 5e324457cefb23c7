#!/bin/sh
# The kernel TLS end-to-end suite (tests/ktls/e2e.sh). On a kernel without
# the tls ULP every connection takes the user-space path and the suite
# prints why it skips the kernel-only checks.
exec "$(dirname "$0")/../ktls/e2e.sh" "$@"
