#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# `openssl s_client` and `s_server` as the TLS peer of a kdist node,
# sending KeyUpdates (TLS 1.3) and renegotiations (TLS 1.2) on command between
# batches of echoed messages: section 4 of tests/ktls/e2e.sh, which
# tests/vm/run also runs on kernels with kernel TLS. Here, without the
# tls ULP, every case takes the user-space path and must pass. Skips,
# with the reason, without python3 or the openssl command.
command -v openssl >/dev/null 2>&1 ||
	{ echo "skip openssl_rekey: the openssl command is not installed"; exit 77; }
KDIST_KTLS_SECTIONS=4 KDIST_KTLS_TEST=openssl_rekey \
	exec "$(dirname "$0")/../ktls/e2e.sh" "$@"
