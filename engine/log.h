/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Engine logging. One line per start, stop, retry or handled error, each
 * leading with its subject ("epmd: ...", "conn foo@host: ..."). The hot path
 * never logs: it bumps counters instead. Never pass a secret to these calls.
 */
#ifndef KD_LOG_H
#define KD_LOG_H

#include <stdarg.h>

enum kd_log_level {
	KD_LOG_ERROR = 0,
	KD_LOG_WARN = 1,
	KD_LOG_INFO = 2,
	KD_LOG_DEBUG = 3,
};

typedef void (*kd_log_sink_fn)(void *user, enum kd_log_level level,
			       const char *line);

/* Routes log lines to @sink (NULL restores stderr) and drops those above
 * @max_level. Safe from any thread; meant to be called before start-up. */
void kd_log_configure(kd_log_sink_fn sink, void *user,
		      enum kd_log_level max_level);

void kd_log(enum kd_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void kd_vlog(enum kd_log_level level, const char *fmt, va_list ap);

#define kd_err(...) kd_log(KD_LOG_ERROR, __VA_ARGS__)
#define kd_warn(...) kd_log(KD_LOG_WARN, __VA_ARGS__)
#define kd_info(...) kd_log(KD_LOG_INFO, __VA_ARGS__)
#define kd_debug(...) kd_log(KD_LOG_DEBUG, __VA_ARGS__)

#endif
