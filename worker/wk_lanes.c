/*
 * wk_lanes.c - one thread and one FIFO queue per lane.
 */
#include "wk_lanes.h"
#include "sl_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct item {
	struct item *next;
	rd_kafka_message_t *m;
} item;

typedef struct lane {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	item *head, *tail;
	struct wk_lanes *owner;
	int index;
} lane;

struct wk_lanes {
	lane *lanes;
	int n, started;
	wk_lane_fn fn;
	void *ud;
	atomic_bool stop;
	atomic_size_t backlog;
	struct route {
		char *topic;
		int32_t partition;
		int lane;
	} * routes;
	size_t nroutes;
};

static void *lane_main(void *arg)
{
	lane *ln = arg;
	wk_lanes *l = ln->owner;

	for (;;) {
		item *it;

		pthread_mutex_lock(&ln->mu);
		while (!ln->head && !atomic_load(&l->stop))
			pthread_cond_wait(&ln->cv, &ln->mu);
		if (atomic_load(&l->stop)) {
			pthread_mutex_unlock(&ln->mu);
			break;
		}
		it = ln->head;
		ln->head = it->next;
		if (!ln->head)
			ln->tail = NULL;
		pthread_mutex_unlock(&ln->mu);
		l->fn(l->ud, ln->index, it->m);
		rd_kafka_message_destroy(it->m);
		free(it);
		atomic_fetch_sub(&l->backlog, 1);
	}
	return NULL;
}

wk_lanes *wk_lanes_start(int n, wk_lane_fn fn, void *ud)
{
	wk_lanes *l = sl_calloc(1, sizeof(*l));

	l->n = n;
	l->fn = fn;
	l->ud = ud;
	l->lanes = sl_calloc((size_t)n, sizeof(lane));
	for (int i = 0; i < n; i++) {
		lane *ln = &l->lanes[i];
		ln->owner = l;
		ln->index = i;
		pthread_mutex_init(&ln->mu, NULL);
		pthread_cond_init(&ln->cv, NULL);
	}
	for (int i = 0; i < n; i++) {
		if (pthread_create(&l->lanes[i].thread, NULL, lane_main, &l->lanes[i])) {
			wk_lanes_stop(l);
			return NULL;
		}
		l->started++;
	}
	return l;
}

/*
 * The lane of a message's topic-partition: partitions get lanes in turn as
 * they are first seen, so that they spread evenly. Only the poll thread
 * calls this, so the table needs no lock.
 */
static int lane_of(wk_lanes *l, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);

	for (size_t i = 0; i < l->nroutes; i++)
		if (l->routes[i].partition == m->partition && !strcmp(l->routes[i].topic, topic))
			return l->routes[i].lane;
	l->routes = sl_realloc(l->routes, (l->nroutes + 1) * sizeof(*l->routes));
	l->routes[l->nroutes].topic = sl_strdup(topic);
	l->routes[l->nroutes].partition = m->partition;
	l->routes[l->nroutes].lane = (int)(l->nroutes % (size_t)l->n);
	return l->routes[l->nroutes++].lane;
}

void wk_lanes_push(wk_lanes *l, rd_kafka_message_t *m)
{
	lane *ln = &l->lanes[lane_of(l, m)];
	item *it = sl_malloc(sizeof(*it));

	it->next = NULL;
	it->m = m;
	atomic_fetch_add(&l->backlog, 1);
	pthread_mutex_lock(&ln->mu);
	if (ln->tail)
		ln->tail->next = it;
	else
		ln->head = it;
	ln->tail = it;
	pthread_cond_signal(&ln->cv);
	pthread_mutex_unlock(&ln->mu);
}

size_t wk_lanes_backlog(wk_lanes *l)
{
	return atomic_load(&l->backlog);
}

void wk_lanes_stop(wk_lanes *l)
{
	if (!l)
		return;
	atomic_store(&l->stop, true);
	for (int i = 0; i < l->started; i++) {
		pthread_mutex_lock(&l->lanes[i].mu);
		pthread_cond_broadcast(&l->lanes[i].cv);
		pthread_mutex_unlock(&l->lanes[i].mu);
	}
	for (int i = 0; i < l->started; i++)
		pthread_join(l->lanes[i].thread, NULL);
	for (int i = 0; i < l->n; i++) {
		item *it = l->lanes[i].head;
		while (it) {
			item *next = it->next;
			rd_kafka_message_destroy(it->m);
			free(it);
			it = next;
		}
		pthread_mutex_destroy(&l->lanes[i].mu);
		pthread_cond_destroy(&l->lanes[i].cv);
	}
	for (size_t i = 0; i < l->nroutes; i++)
		free(l->routes[i].topic);
	free(l->routes);
	free(l->lanes);
	free(l);
}
