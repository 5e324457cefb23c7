/* SPDX-License-Identifier: Apache-2.0 */
/* The calling thread's last error, as a sentence for kdist_strerror(). */
#ifndef KD_ERROR_H
#define KD_ERROR_H

/* Stores the sentence and returns -@err, so callers can write
 * "return kd_fail(EINVAL, "...", ...);". */
int kd_fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const char *kd_last_error(void);

#endif
