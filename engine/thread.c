// SPDX-License-Identifier: Apache-2.0
#include "thread.h"

#include <signal.h>

int kd_thread_create(pthread_t *tid, const pthread_attr_t *attr,
		     void *(*fn)(void *), void *arg)
{
	/* Signals raised by a fault in the thread itself stay deliverable. */
	static const int synchronous[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL,
					   SIGTRAP, SIGABRT, SIGSYS };
	sigset_t block, saved;
	int ret;

	sigfillset(&block);
	for (unsigned i = 0; i < sizeof(synchronous) / sizeof(synchronous[0]);
	     i++)
		sigdelset(&block, synchronous[i]);
	/* The new thread inherits the mask of the thread that creates it. */
	pthread_sigmask(SIG_SETMASK, &block, &saved);
	ret = pthread_create(tid, attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	return ret;
}
