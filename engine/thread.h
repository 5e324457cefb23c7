/* SPDX-License-Identifier: Apache-2.0 */
/* Threads that kdist starts: the control thread, resolvers, data threads
 * and the EPMD server. */
#ifndef KD_THREAD_H
#define KD_THREAD_H

#include <pthread.h>

/*
 * Starts @fn(@arg) as pthread_create() does, with every asynchronous signal
 * blocked in the new thread. Signals then reach the application's threads,
 * and a write to a socket the peer has closed returns EPIPE instead of
 * raising SIGPIPE, which would end a program that kept its default action.
 * Returns 0 or the pthread_create() error number.
 */
int kd_thread_create(pthread_t *tid, const pthread_attr_t *attr,
		     void *(*fn)(void *), void *arg);

#endif
