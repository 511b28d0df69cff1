/*
 * wk_pool.h - a fixed set of threads taking jobs from one FIFO queue. The
 * worker has two: database threads, each with its own PostgreSQL
 * connection, and tool threads, which run tool processes. A job is one step
 * of a run; a run waiting for anything holds no thread.
 */
#ifndef WK_POOL_H
#define WK_POOL_H

#include "sl_queue.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct wk_pool wk_pool;

/* A job: runs on one of the pool's threads, with that thread's state. */
typedef void (*wk_job_fn)(void *arg, void *thread_state);

/* Frees what a job that never ran was given. */
typedef void (*wk_drop_fn)(void *arg);

/*
 * Starts n threads; thread i gets states[i] (may be NULL) as its
 * thread_state. Returns NULL when a thread cannot be started.
 */
wk_pool *wk_pool_start(int n, void **states);

/* Queues a job; drop(arg) is called instead if the pool stops before it
 * runs. Returns false when the pool is stopping: the caller keeps arg. */
bool wk_pool_push(wk_pool *p, wk_job_fn fn, wk_drop_fn drop, void *arg);

/* A job embedded in what it works on (a task), so that what is handed from
 * thread to thread carries its own place in a queue, and is in one queue at
 * a time (sl_queue asserts it). */
typedef struct wk_job {
	sl_queue_node node;
	wk_job_fn fn;
	wk_drop_fn drop;
	void *arg;
	bool owned; /* the pool's, freed once run or dropped (wk_pool_push) */
} wk_job;

/* As wk_pool_push, with the caller's job j (zeroed before its first use;
 * not in a queue): the pool never frees it. */
bool wk_pool_push_job(wk_pool *p, wk_job *j, wk_job_fn fn, wk_drop_fn drop, void *arg);

/*
 * Stops the pool: jobs being run finish, jobs still queued go to drop().
 * Frees p; NULL is fine.
 */
void wk_pool_stop(wk_pool *p);

#endif
