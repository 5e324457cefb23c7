// SPDX-License-Identifier: Apache-2.0
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

#include "kdist.h"

static __thread char last_error[768];

int kd_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err > 0 ? -err : err;
}

const char *kd_last_error(void)
{
	return last_error;
}

const char *kdist_strerror(void)
{
	return last_error[0] ? last_error : "no error";
}
