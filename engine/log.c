// SPDX-License-Identifier: Apache-2.0
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

static kd_log_sink_fn log_sink;
static void *log_user;
static enum kd_log_level log_max = KD_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
	[KD_LOG_ERROR] = "error",
	[KD_LOG_WARN] = "warning",
	[KD_LOG_INFO] = "info",
	[KD_LOG_DEBUG] = "debug",
};

void kd_log_configure(kd_log_sink_fn sink, void *user,
		      enum kd_log_level max_level)
{
	pthread_mutex_lock(&log_lock);
	log_sink = sink;
	log_user = user;
	log_max = max_level;
	pthread_mutex_unlock(&log_lock);
}

void kd_vlog(enum kd_log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;

	if (level > log_max)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);

	pthread_mutex_lock(&log_lock);
	if (log_sink) {
		log_sink(log_user, level, line);
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		fprintf(stderr, "%02d:%02d:%02d.%03ld kdist %s: %s\n",
			tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			level_names[level], line);
	}
	pthread_mutex_unlock(&log_lock);
}

void kd_log(enum kd_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kd_vlog(level, fmt, ap);
	va_end(ap);
}
