/*
 * wk_flight.c - per-partition offset windows and per-key queues.
 */
#include "wk_flight.h"
#include "sl_common.h"
#include "sl_kafka.h"
#include "sl_log.h"

#include <pthread.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

/* The offsets in flight of one partition, ascending, from head. */
typedef struct window {
	char *topic;
	int32_t partition;
	struct slot {
		int64_t offset;
		bool done;
	} * slots;
	size_t head, n, cap;
} window;

/* Messages with one key: the one in progress and the ones waiting. */
typedef struct keyq {
	void *key;
	size_t len;
	struct waiting {
		struct waiting *next;
		rd_kafka_message_t *m;
	} * head, *tail;
} keyq;

struct wk_flight {
	rd_kafka_t *consumer;
	pthread_mutex_t mu;
	window *windows;
	size_t nwindows;
	void *keys; /* tsearch tree of keyq */
	size_t count;
};

static int keyq_cmp(const void *a, const void *b)
{
	const keyq *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

wk_flight *wk_flight_new(rd_kafka_t *consumer)
{
	wk_flight *f = sl_calloc(1, sizeof(*f));

	f->consumer = consumer;
	pthread_mutex_init(&f->mu, NULL);
	return f;
}

static window *window_of(wk_flight *f, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);

	for (size_t i = 0; i < f->nwindows; i++)
		if (f->windows[i].partition == m->partition && !strcmp(f->windows[i].topic, topic))
			return &f->windows[i];
	f->windows = sl_realloc(f->windows, (f->nwindows + 1) * sizeof(window));
	memset(&f->windows[f->nwindows], 0, sizeof(window));
	f->windows[f->nwindows].topic = sl_strdup(topic);
	f->windows[f->nwindows].partition = m->partition;
	return &f->windows[f->nwindows++];
}

/* Inserts offset in order; a redelivered offset after a rebalance may come
 * below ones already there. */
static void window_add(window *w, int64_t offset)
{
	size_t i;

	if (w->head > 0 && w->head + w->n == w->cap) {
		memmove(w->slots, w->slots + w->head, w->n * sizeof(*w->slots));
		w->head = 0;
	}
	if (w->head + w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 64;
		w->slots = sl_realloc(w->slots, w->cap * sizeof(*w->slots));
	}
	i = w->head + w->n;
	while (i > w->head && w->slots[i - 1].offset > offset) {
		w->slots[i] = w->slots[i - 1];
		i--;
	}
	w->slots[i].offset = offset;
	w->slots[i].done = false;
	w->n++;
}

/* Marks offset done; returns the offset to store, or -1 when the lowest
 * is still unfinished. */
static int64_t window_done(window *w, int64_t offset)
{
	int64_t store = -1;

	for (size_t i = w->head; i < w->head + w->n; i++)
		if (w->slots[i].offset == offset && !w->slots[i].done) {
			w->slots[i].done = true;
			break;
		}
	while (w->n && w->slots[w->head].done) {
		store = w->slots[w->head].offset + 1;
		w->head++;
		w->n--;
	}
	if (!w->n)
		w->head = 0;
	return store;
}

rd_kafka_message_t *wk_flight_add(wk_flight *f, rd_kafka_message_t *m)
{
	rd_kafka_message_t *start = m;

	pthread_mutex_lock(&f->mu);
	f->count++;
	window_add(window_of(f, m), m->offset);
	if (m->key && m->key_len) {
		keyq probe = {.key = m->key, .len = m->key_len};
		keyq **found = tfind(&probe, &f->keys, keyq_cmp);

		if (found) {
			struct waiting *w = sl_malloc(sizeof(*w));
			w->next = NULL;
			w->m = m;
			if ((*found)->tail)
				(*found)->tail->next = w;
			else
				(*found)->head = w;
			(*found)->tail = w;
			start = NULL;
		} else {
			keyq *q = sl_calloc(1, sizeof(*q));
			q->key = sl_malloc(m->key_len);
			memcpy(q->key, m->key, m->key_len);
			q->len = m->key_len;
			tsearch(q, &f->keys, keyq_cmp);
		}
	}
	pthread_mutex_unlock(&f->mu);
	return start;
}

rd_kafka_message_t *wk_flight_done(wk_flight *f, rd_kafka_message_t *m)
{
	rd_kafka_message_t *next = NULL;
	int64_t store;

	pthread_mutex_lock(&f->mu);
	f->count--;
	store = window_done(window_of(f, m), m->offset);
	if (store >= 0) {
		rd_kafka_resp_err_t err = sl_kafka_store_offset(
		    f->consumer, rd_kafka_topic_name(m->rkt), m->partition, store);
		/* a partition revoked meanwhile: its new owner redelivers */
		if (err)
			sl_info("offset %lld of %s[%d] not stored: %s (the partition's owner "
			        "now delivers it again)",
			        (long long)store, rd_kafka_topic_name(m->rkt), (int)m->partition,
			        rd_kafka_err2str(err));
	}
	if (m->key && m->key_len) {
		keyq probe = {.key = m->key, .len = m->key_len};
		keyq **found = tfind(&probe, &f->keys, keyq_cmp);

		if (found && (*found)->head) {
			struct waiting *w = (*found)->head;
			(*found)->head = w->next;
			if (!(*found)->head)
				(*found)->tail = NULL;
			next = w->m;
			free(w);
		} else if (found) {
			keyq *q = *found;
			tdelete(q, &f->keys, keyq_cmp);
			free(q->key);
			free(q);
		}
	}
	pthread_mutex_unlock(&f->mu);
	rd_kafka_message_destroy(m);
	return next;
}

bool wk_flight_owns(wk_flight *f, const rd_kafka_message_t *m)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	bool owns = true; /* when the consumer cannot say: as before */

	if (rd_kafka_assignment(f->consumer, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		owns = rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt),
		                                          m->partition) != NULL;
		rd_kafka_topic_partition_list_destroy(parts);
	}
	return owns;
}

size_t wk_flight_count(wk_flight *f)
{
	size_t n;

	pthread_mutex_lock(&f->mu);
	n = f->count;
	pthread_mutex_unlock(&f->mu);
	return n;
}

static void keyq_free(void *p)
{
	keyq *q = p;

	while (q->head) {
		struct waiting *w = q->head;
		q->head = w->next;
		rd_kafka_message_destroy(w->m);
		free(w);
	}
	free(q->key);
	free(q);
}

void wk_flight_free(wk_flight *f)
{
	if (!f)
		return;
	tdestroy(f->keys, keyq_free);
	for (size_t i = 0; i < f->nwindows; i++) {
		free(f->windows[i].topic);
		free(f->windows[i].slots);
	}
	free(f->windows);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
