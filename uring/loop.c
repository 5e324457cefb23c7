// SPDX-License-Identifier: Apache-2.0
/*
 * Data loop threads: one io_uring per thread, a command queue plus an
 * eventfd for work from other threads, and the life cycle of a link from
 * attach to its closed callback.
 */
#include "loop_int.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "ktls.h"
#include "log.h"
#include "thread.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define KD_HAVE_VALGRIND_H 1
#endif
#endif

/* The data thread running on this thread, NULL elsewhere. */
static __thread struct kd_thread *current_thread;

static const char *const path_names[] = {
	[KD_PATH_PLAIN] = "plain",
	[KD_PATH_KERNEL_TLS] = "kernel TLS",
	[KD_PATH_USER_TLS] = "user-space TLS",
};

/* Ring set-ups to try, fastest first; older kernels reject the flags. */
static const struct {
	unsigned flags;
	const char *name;
} ring_modes[] = {
	{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_TASKRUN_FLAG,
	  "single issuer, deferred task work" },
	{ IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
	  "cooperative task work" },
	{ 0, "no set-up flags" },
};

uint64_t kd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Returns a free SQE, submitting the full queue first when needed. */
struct io_uring_sqe *kd_thread_sqe(struct kd_thread *t)
{
	struct io_uring_sqe *sqe;

	sqe = io_uring_get_sqe(&t->ring);
	while (!sqe) {
		io_uring_submit(&t->ring);
		atomic_fetch_add_explicit(&t->syscalls, 1,
					  memory_order_relaxed);
		sqe = io_uring_get_sqe(&t->ring);
	}
	return sqe;
}

/*
 * valgrind runs one thread at a time and does not know that
 * io_uring_enter() can block, so a data thread waiting there would keep
 * every other thread from running. Under valgrind, or with
 * KDIST_URING_WAIT=poll, the thread sleeps in poll() on the ring instead,
 * which valgrind lets other threads run through.
 */
static bool want_poll_wait(void)
{
	const char *s = getenv("KDIST_URING_WAIT");

#ifdef KD_HAVE_VALGRIND_H
	if (RUNNING_ON_VALGRIND)
		return true;
#endif
	return s && strcmp(s, "poll") == 0;
}

static int ring_init(struct kd_thread *t)
{
	size_t nmodes = sizeof(ring_modes) / sizeof(ring_modes[0]);
	struct io_uring_params p;
	size_t i = 0;
	int ret = -EINVAL;

	/* Deferred or cooperative task work would not wake a thread that
	 * sleeps in poll(); only the plain set-up signals it. */
	t->poll_wait = want_poll_wait();
	if (t->poll_wait)
		i = nmodes - 1;
	for (; i < nmodes; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = ring_modes[i].flags | IORING_SETUP_CQSIZE;
		p.cq_entries = KD_RING_CQ_ENTRIES;
		ret = io_uring_queue_init_params(KD_RING_SQ_ENTRIES, &t->ring,
						 &p);
		if (ret == 0) {
			t->taskrun_flag = ring_modes[i].flags &
					  IORING_SETUP_TASKRUN_FLAG;
			kd_info("loop: data thread %u: io_uring with %s%s",
				t->index, ring_modes[i].name,
				t->poll_wait ? ", waiting in poll()" : "");
			return 0;
		}
		if (ret != -EINVAL)
			break;
	}
	kd_err("loop: data thread %u: io_uring_queue_init_params failed: %s",
	       t->index, strerror(-ret));
	return ret;
}

static void wake_arm(struct kd_thread *t)
{
	struct io_uring_sqe *sqe = kd_thread_sqe(t);

	io_uring_prep_read(sqe, t->wake_fd, &t->wake_val,
			   sizeof(t->wake_val), 0);
	io_uring_sqe_set_data64(sqe, KD_REQ_WAKE);
}

static void wake_thread(struct kd_thread *t)
{
	uint64_t one = 1;

	if (write(t->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		kd_warn("loop: data thread %u: eventfd write failed: %s",
			t->index, strerror(errno));
}

/*
 * Hands @op to the link's data thread. Only the caller that finds no op
 * pending queues the link, so a link is queued at most once and a burst
 * of sends costs one eventfd write.
 */
void kd_link_schedule(struct kd_link *l, unsigned op)
{
	struct kd_thread *t = l->thread;
	bool was_empty;

	if (atomic_fetch_or(&l->ops, op) != 0)
		return;

	kd_link_hold(l);
	l->cmd_next = NULL;
	if (current_thread == t) {
		l->cmd_next = t->ready;
		t->ready = l;
		return;
	}

	pthread_mutex_lock(&t->cmd_lock);
	was_empty = !t->cmd_head;
	if (t->cmd_tail)
		t->cmd_tail->cmd_next = l;
	else
		t->cmd_head = l;
	t->cmd_tail = l;
	pthread_mutex_unlock(&t->cmd_lock);
	if (was_empty)
		wake_thread(t);
}

static void list_add(struct kd_link **head, struct kd_link *l)
{
	l->prev = NULL;
	l->next = *head;
	if (*head)
		(*head)->prev = l;
	*head = l;
}

static void list_del(struct kd_link **head, struct kd_link *l)
{
	if (l->prev)
		l->prev->next = l->next;
	else
		*head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	l->prev = l->next = NULL;
}

/* Starts the orderly close of kd_loop_drain() on @l. */
static void link_start_drain(struct kd_link *l)
{
	if (l->dead || l->draining)
		return;
	l->draining = true;
	pthread_mutex_lock(&l->sendq_lock);
	l->q_closed = true;
	pthread_mutex_unlock(&l->sendq_lock);
	kd_sendq_flush(l);
}

static void link_attach_run(struct kd_link *l)
{
	struct kd_thread *t = l->thread;

	list_add(&t->links, l);
	l->attached = true;
	kd_info("link %s: attached to data thread %u, %s path%s", l->peer,
		t->index, path_names[l->path],
		l->zc_remote ? ", zero-copy sends" : "");

	if (t->stopping) {
		kd_link_fail(l, -ESHUTDOWN, "data loop is shutting down");
		return;
	}
	kd_recv_arm(l);
	if (l->pending_len > 0) {
		kd_rx_parse(l, l->pending, l->pending_len);
		free(l->pending);
		l->pending = NULL;
		l->pending_len = 0;
	}
	if (t->draining)
		link_start_drain(l);
}

/* Cancels everything the link has on the ring; the CQEs finish it. */
static void link_start_close(struct kd_link *l, int err, const char *reason)
{
	struct io_uring_sqe *sqe;

	if (l->dead)
		return;
	l->dead = true;
	atomic_store(&l->closing, true);
	l->err = err;
	snprintf(l->reason, sizeof(l->reason), "%s", reason);

	if (l->inflight > 0) {
		sqe = kd_thread_sqe(l->thread);
		io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l |
						     KD_REQ_CANCEL);
		l->inflight++;
	}
	kd_link_maybe_finish(l);
}

/* Starts closing @l from its data thread with a formatted reason. */
void kd_link_fail(struct kd_link *l, int err, const char *fmt, ...)
{
	char reason[KD_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	link_start_close(l, err, reason);
}

static void link_run_ops(struct kd_link *l)
{
	unsigned ops = atomic_exchange(&l->ops, 0);
	int err;

	if (ops & KD_OP_ATTACH)
		link_attach_run(l);
	if (l->finished)
		return;
	if (ops & KD_OP_SEND)
		kd_sendq_flush(l);
	if (ops & KD_OP_CLOSE) {
		pthread_mutex_lock(&l->sendq_lock);
		err = l->req_err;
		pthread_mutex_unlock(&l->sendq_lock);
		link_start_close(l, err, l->req_reason);
	}
}

/* Closes every link of @t. After a drain, the links still open are those
 * whose peer did not close before the node's stop timeout. */
static void thread_stop_links(struct kd_thread *t)
{
	const char *reason = t->draining ?
		"node stopping: the peer did not close within the stop timeout" :
		"data loop is shutting down";
	struct kd_link *l, *next;

	for (l = t->links; l; l = next) {
		next = l->next;
		link_start_close(l, -ESHUTDOWN, reason);
	}
}

static void thread_drain_links(struct kd_thread *t)
{
	struct kd_link *l, *next;

	t->draining = true;
	for (l = t->links; l; l = next) {
		next = l->next;
		link_start_drain(l);
	}
}

static void thread_run_commands(struct kd_thread *t)
{
	struct kd_link *l, *next;
	bool stop, drain;

	pthread_mutex_lock(&t->cmd_lock);
	l = t->cmd_head;
	t->cmd_head = t->cmd_tail = NULL;
	stop = t->stop_requested;
	drain = t->drain_requested;
	pthread_mutex_unlock(&t->cmd_lock);

	for (; l; l = next) {
		next = l->cmd_next;
		link_run_ops(l);
		kd_link_release(l);
	}
	if (drain && !t->draining && !t->stopping)
		thread_drain_links(t);
	if (stop && !t->stopping) {
		t->stopping = true;
		thread_stop_links(t);
	}
}

static void thread_run_ready(struct kd_thread *t)
{
	struct kd_link *l;

	while ((l = t->ready)) {
		t->ready = l->cmd_next;
		link_run_ops(l);
		kd_link_release(l);
	}
}

static void link_finish(struct kd_link *l)
{
	struct kd_thread *t = l->thread;
	size_t unsent = atomic_load(&l->queued);
	struct kd_link_stats st;

	l->finished = true;
	list_del(&t->links, l);
	close(l->fd);
	l->fd = -1;
	if (l->ktls)
		kd_ktls_state_free(l->ktls);
	l->ktls = NULL;
	kd_user_tls_free(l);
	kd_sendq_free(l);
	atomic_fetch_sub(&t->nlinks, 1);

	kd_link_get_stats(l, &st);
	kd_info("link %s: closed: %s (%llu bytes in, %llu bytes out)",
		l->peer, l->reason, (unsigned long long)st.bytes_in,
		(unsigned long long)st.bytes_out);
	if (unsent > 0)
		kd_warn("link %s: %zu queued bytes were not sent: %s", l->peer,
			unsent, l->reason);
	l->cb.closed(l->user, l, l->err, l->reason);

	if (l->notifs > 0) {
		list_add(&t->zombies, l);
		return;
	}
	kd_link_release(l);
}

/* Finishes a closing link once its last request has completed. */
void kd_link_maybe_finish(struct kd_link *l)
{
	if (l->dead && !l->finished && l->inflight == 0)
		link_finish(l);
}

/* Drops the loop's reference once a finished link's last zero-copy
 * notification has arrived. */
void kd_link_settle_notif(struct kd_link *l)
{
	if (!l->finished || l->notifs > 0)
		return;
	list_del(&l->thread->zombies, l);
	kd_link_release(l);
}

static void thread_complete(struct kd_thread *t, struct io_uring_cqe *cqe)
{
	uint64_t data = io_uring_cqe_get_data64(cqe);
	void *ptr = (void *)(uintptr_t)(data & ~KD_REQ_MASK);
	struct kd_link *l = ptr;

	switch (data & KD_REQ_MASK) {
	case KD_REQ_WAKE:
		if (cqe->res < 0 && cqe->res != -ECANCELED)
			kd_warn("loop: data thread %u: eventfd read failed: %s",
				t->index, strerror(-cqe->res));
		wake_arm(t);
		thread_run_commands(t);
		break;
	case KD_REQ_RECV:
		kd_recv_complete(l, cqe);
		break;
	case KD_REQ_SEND:
		kd_sendq_complete(l, cqe->res);
		break;
	case KD_REQ_SEND_ZC:
		kd_sendq_complete_zc(ptr, cqe);
		break;
	case KD_REQ_CANCEL:
		l->inflight--;
		kd_link_maybe_finish(l);
		break;
	}
}

static void thread_reap(struct kd_thread *t)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&t->ring, head, cqe) {
		thread_complete(t, cqe);
		n++;
	}
	io_uring_cq_advance(&t->ring, n);
	if (n > 0 && KD_BUSY_POLL_NS > 0)
		t->last_active_ns = kd_now_ns();
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Completions to reap, or task work that io_uring_enter() turns into some. */
static bool thread_has_events(struct kd_thread *t)
{
	return io_uring_cq_ready(&t->ring) > 0 ||
	       (IO_URING_READ_ONCE(*t->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

/*
 * Submits, then spins until a completion or task work is ready, for at
 * most KD_BUSY_POLL_NS after the last reap that found completions. A
 * quick reply then costs no sleep and wake-up in io_uring_enter().
 * Needs IORING_SQ_TASKRUN: with deferred task work nothing reaches the
 * completion queue before the thread enters the kernel.
 */
static void thread_busy_poll(struct kd_thread *t)
{
	uint64_t until = t->last_active_ns + KD_BUSY_POLL_NS;

	if (KD_BUSY_POLL_NS == 0 || !t->taskrun_flag || t->ready)
		return;
	if (kd_now_ns() >= until)
		return;
	if (io_uring_sq_ready(&t->ring) > 0) {
		io_uring_submit(&t->ring);
		atomic_fetch_add_explicit(&t->syscalls, 1,
					  memory_order_relaxed);
	}
	while (!thread_has_events(t) && kd_now_ns() < until)
		cpu_relax();
}

/* The wait of the poll_wait mode: submit without waiting, then sleep in
 * poll() until a completion is posted. */
static int thread_poll_wait(struct kd_thread *t)
{
	struct pollfd pfd = { .fd = t->ring.ring_fd, .events = POLLIN };
	int ret;

	ret = io_uring_submit(&t->ring);
	if (ret < 0 || thread_has_events(t))
		return ret;
	if (poll(&pfd, 1, -1) < 0)
		return -errno;
	return 0;
}

static int thread_setup(struct kd_thread *t)
{
	int ret;

	ret = ring_init(t);
	if (ret < 0)
		return ret;
	ret = kd_bufs_init(t);
	if (ret < 0)
		goto err_exit_ring;
	wake_arm(t);
	return 0;

err_exit_ring:
	io_uring_queue_exit(&t->ring);
	return ret;
}

/*
 * Empties the command queues once the ring is gone. Only an attach that
 * raced with kd_loop_destroy() can be left; it gets its closed callback.
 */
static void thread_drop_commands(struct kd_thread *t)
{
	struct kd_link *l, *next;

	pthread_mutex_lock(&t->cmd_lock);
	l = t->cmd_head;
	t->cmd_head = t->cmd_tail = NULL;
	pthread_mutex_unlock(&t->cmd_lock);
	for (; l; l = next) {
		next = l->cmd_next;
		if ((atomic_exchange(&l->ops, 0) & KD_OP_ATTACH) && !l->attached) {
			l->attached = true;
			l->dead = true;
			l->err = -ESHUTDOWN;
			snprintf(l->reason, sizeof(l->reason),
				 "data loop is shutting down");
			list_add(&t->links, l);
			link_finish(l);
		}
		kd_link_release(l);
	}
	t->ready = NULL;
}

static void thread_teardown(struct kd_thread *t)
{
	struct kd_link *l;

	io_uring_queue_exit(&t->ring);
	kd_bufs_free(t);
	/* The pinned pages of a zero-copy send outlive the ring, so the
	 * memory of links still waiting for notifications can go now. */
	while ((l = t->zombies)) {
		list_del(&t->zombies, l);
		kd_link_release(l);
	}
	thread_drop_commands(t);
}

static void *thread_main(void *arg)
{
	struct kd_thread *t = arg;
	int ret;

	current_thread = t;
	t->setup_err = thread_setup(t);
	sem_post(&t->started);
	if (t->setup_err < 0)
		return NULL;

	for (;;) {
		thread_run_ready(t);
		if (t->stopping && !t->links)
			break;
		thread_busy_poll(t);
		if (t->poll_wait)
			ret = thread_poll_wait(t);
		else
			ret = io_uring_submit_and_wait(&t->ring, 1);
		atomic_fetch_add_explicit(&t->syscalls, 1,
					  memory_order_relaxed);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN &&
		    ret != -EBUSY && ret != -ETIME) {
			kd_err("loop: data thread %u: io_uring_submit_and_wait failed: %s",
			       t->index, strerror(-ret));
			break;
		}
		thread_reap(t);
	}
	thread_teardown(t);
	return NULL;
}

static int thread_start(struct kd_loop *loop, unsigned i)
{
	struct kd_thread *t = &loop->threads[i];
	int ret;

	t->loop = loop;
	t->index = i;
	pthread_mutex_init(&t->cmd_lock, NULL);
	sem_init(&t->started, 0, 0);
	t->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (t->wake_fd < 0)
		return kd_fail(errno, "loop: eventfd failed: %s",
			       strerror(errno));

	ret = kd_thread_create(&t->tid, NULL, thread_main, t);
	if (ret != 0) {
		close(t->wake_fd);
		return kd_fail(ret, "loop: pthread_create failed: %s",
			       strerror(ret));
	}
	sem_wait(&t->started);
	if (t->setup_err < 0) {
		pthread_join(t->tid, NULL);
		close(t->wake_fd);
		return kd_fail(t->setup_err,
			       "loop: data thread %u set-up failed: %s", i,
			       strerror(-t->setup_err));
	}
	return 0;
}

static void thread_stop(struct kd_thread *t)
{
	pthread_mutex_lock(&t->cmd_lock);
	t->stop_requested = true;
	pthread_mutex_unlock(&t->cmd_lock);
	wake_thread(t);
	pthread_join(t->tid, NULL);
	close(t->wake_fd);
	pthread_mutex_destroy(&t->cmd_lock);
	sem_destroy(&t->started);
}

bool kd_loop_on_data_thread(void)
{
	return current_thread != NULL;
}

int kd_loop_create(unsigned nthreads, struct kd_loop **out)
{
	struct kd_loop *loop;
	unsigned i;
	int ret;

	if (nthreads == 0 || nthreads > 256)
		return kd_fail(EINVAL,
			       "loop: %u data threads requested; use 1 to 256",
			       nthreads);
	loop = calloc(1, sizeof(*loop));
	if (!loop)
		return kd_fail(ENOMEM, "loop: out of memory");
	loop->threads = calloc(nthreads, sizeof(*loop->threads));
	if (!loop->threads) {
		ret = kd_fail(ENOMEM, "loop: out of memory");
		goto err_free_loop;
	}

	for (i = 0; i < nthreads; i++) {
		ret = thread_start(loop, i);
		if (ret < 0)
			goto err_stop_threads;
		loop->nthreads++;
	}
	*out = loop;
	return 0;

err_stop_threads:
	for (i = 0; i < loop->nthreads; i++)
		thread_stop(&loop->threads[i]);
	free(loop->threads);
err_free_loop:
	free(loop);
	return ret;
}

void kd_loop_destroy(struct kd_loop *loop)
{
	unsigned i;

	if (!loop)
		return;
	atomic_store(&loop->destroyed, true);
	for (i = 0; i < loop->nthreads; i++)
		thread_stop(&loop->threads[i]);
	free(loop->threads);
	free(loop);
}

void kd_loop_drain(struct kd_loop *loop, int err, const char *reason)
{
	unsigned i;

	for (i = 0; i < loop->nthreads; i++) {
		struct kd_thread *t = &loop->threads[i];

		pthread_mutex_lock(&t->cmd_lock);
		t->drain_requested = true;
		t->drain_err = err;
		snprintf(t->drain_reason, sizeof(t->drain_reason), "%s", reason);
		pthread_mutex_unlock(&t->cmd_lock);
		wake_thread(t);
	}
}

unsigned kd_loop_links(struct kd_loop *loop)
{
	unsigned i, n = 0;

	for (i = 0; i < loop->nthreads; i++)
		n += atomic_load(&loop->threads[i].nlinks);
	return n;
}

static struct kd_thread *least_loaded(struct kd_loop *loop)
{
	struct kd_thread *best = &loop->threads[0];
	unsigned i;

	for (i = 1; i < loop->nthreads; i++)
		if (atomic_load(&loop->threads[i].nlinks) <
		    atomic_load(&best->nlinks))
			best = &loop->threads[i];
	return best;
}

static int check_params(const struct kd_link_params *p)
{
	if (p->fd < 0)
		return kd_fail(EINVAL, "loop: attach: invalid fd %d", p->fd);
	if ((unsigned)p->path > KD_PATH_USER_TLS)
		return kd_fail(EINVAL, "loop: attach: unknown record path %d",
			       (int)p->path);
	if (p->path != KD_PATH_PLAIN && !p->ssl)
		return kd_fail(EINVAL,
			       "loop: attach: the %s path needs the SSL connection",
			       path_names[p->path]);
	if (p->path == KD_PATH_KERNEL_TLS && !p->ktls)
		return kd_fail(EINVAL,
			       "loop: attach: the kernel TLS path needs its key state");
	if (!p->cb.packet || !p->cb.closed)
		return kd_fail(EINVAL,
			       "loop: attach: the packet and closed callbacks are required");
	if (p->pending_len > 0 && !p->pending)
		return kd_fail(EINVAL,
			       "loop: attach: %zu pending bytes without a buffer",
			       p->pending_len);
	return 0;
}

static void link_init(struct kd_link *l, const struct kd_link_params *p)
{
	l->fd = p->fd;
	l->path = p->path;
	l->ssl = p->ssl;
	l->ktls = p->ktls;
	l->max_packet = p->max_packet ? p->max_packet : KD_DEFAULT_MAX_PACKET;
	l->send_queue_limit = p->send_queue_limit ? p->send_queue_limit :
						    KD_DEFAULT_QUEUE_LIMIT;
	snprintf(l->peer, sizeof(l->peer), "%s", p->peer ? p->peer : "?");
	l->cb = p->cb;
	l->user = p->user;
	atomic_init(&l->refs, 2); /* the caller's and the loop's */
	pthread_mutex_init(&l->sendq_lock, NULL);
	l->alert_sent = l->alert_received = -1;
	if (l->path == KD_PATH_KERNEL_TLS)
		l->rx_msg.msg_controllen = CMSG_SPACE(sizeof(uint8_t));
}

int kd_loop_attach(struct kd_loop *loop, const struct kd_link_params *p,
		   struct kd_link **out)
{
	struct kd_link *l;
	int ret;

	if (atomic_load(&loop->destroyed))
		return kd_fail(ESHUTDOWN, "loop: attach after kd_loop_destroy");
	ret = check_params(p);
	if (ret < 0)
		return ret;
	l = calloc(1, sizeof(*l));
	if (!l)
		return kd_fail(ENOMEM, "loop: out of memory");
	link_init(l, p);

	if (p->pending_len > 0) {
		l->pending = malloc(p->pending_len);
		if (!l->pending) {
			ret = kd_fail(ENOMEM, "loop: out of memory");
			goto err_free_link;
		}
		memcpy(l->pending, p->pending, p->pending_len);
		l->pending_len = p->pending_len;
	}
	if (l->path == KD_PATH_USER_TLS) {
		ret = kd_user_tls_init(l);
		if (ret < 0)
			goto err_free_pending;
		l->zc_remote = !kd_peer_is_local(l->fd);
	}

	l->thread = least_loaded(loop);
	atomic_fetch_add(&l->thread->nlinks, 1);
	*out = l;
	kd_link_schedule(l, KD_OP_ATTACH);
	return 0;

err_free_pending:
	free(l->pending);
err_free_link:
	pthread_mutex_destroy(&l->sendq_lock);
	free(l);
	return ret;
}

void kd_link_close(struct kd_link *l, int err, const char *reason)
{
	pthread_mutex_lock(&l->sendq_lock);
	if (atomic_load(&l->closing)) {
		pthread_mutex_unlock(&l->sendq_lock);
		return;
	}
	l->req_err = err;
	snprintf(l->req_reason, sizeof(l->req_reason), "%s",
		 reason ? reason : "closed locally");
	atomic_store(&l->closing, true);
	pthread_mutex_unlock(&l->sendq_lock);
	kd_link_schedule(l, KD_OP_CLOSE);
}

void kd_link_get_stats(struct kd_link *l, struct kd_link_stats *st)
{
	st->bytes_in = atomic_load_explicit(&l->bytes_in, memory_order_relaxed);
	st->msgs_in = atomic_load_explicit(&l->msgs_in, memory_order_relaxed);
	st->ticks_in = atomic_load_explicit(&l->ticks_in, memory_order_relaxed);
	st->last_rx_ns = atomic_load_explicit(&l->last_rx_ns,
					      memory_order_relaxed);
	st->bytes_out = atomic_load_explicit(&l->bytes_out,
					     memory_order_relaxed);
	st->msgs_out = atomic_load_explicit(&l->msgs_out, memory_order_relaxed);
	st->ticks_out = atomic_load_explicit(&l->ticks_out,
					     memory_order_relaxed);
	st->last_tx_ns = atomic_load_explicit(&l->last_tx_ns,
					      memory_order_relaxed);
	st->queued_bytes = atomic_load(&l->queued);
	st->syscalls = atomic_load_explicit(&l->thread->syscalls,
					    memory_order_relaxed);
}

void kd_link_hold(struct kd_link *l)
{
	atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
}

void kd_link_release(struct kd_link *l)
{
	unsigned i;

	if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
		return;
	kd_sendq_free(l);
	kd_user_tls_free(l);
	for (i = 0; i < KD_CT_BUFS; i++)
		free(l->ct[i].data);
	free(l->rx.buf);
	free(l->pending);
	pthread_mutex_destroy(&l->sendq_lock);
	free(l);
}
