/*
 * wk_write.c - writes made together (wk_write.h). A write waits in the
 * queue until a flush job on a database thread takes it with the others
 * waiting then (the first WRITE_BATCH; another job takes the rest
 * meanwhile), makes those of each kind in one statement, and hands each
 * back with its result.
 */
#include "wk_write.h"
#include "sl_db.h"
#include "sl_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most writes one flush takes. */
#define WRITE_BATCH 128

/* A flush job is queued on the database pool by the write that finds the
 * queue empty, and by a flush that leaves some. */
struct wk_writes {
	wk_writes_config cfg;
	sl_queue q;
};

wk_writes *wk_writes_new(const wk_writes_config *cfg)
{
	wk_writes *ws = sl_calloc(1, sizeof(*ws));

	ws->cfg = *cfg;
	sl_queue_init(&ws->q, NULL, NULL);
	return ws;
}

/* Gives up the queued writes (the worker is stopping). */
static void writes_drop(void *arg)
{
	wk_writes *ws = arg;
	sl_queue_node *node = sl_queue_take_all(&ws->q);

	while (node) {
		wk_write *w = sl_queue_entry(node, wk_write, node);
		node = node->next;
		json_decref(w->row);
		w->row = NULL;
		ws->cfg.drop(w);
	}
}

void wk_writes_free(wk_writes *ws)
{
	if (!ws)
		return;
	writes_drop(ws);
	sl_queue_destroy(&ws->q);
	free(ws);
}

static void flush_job(void *arg, void *state);

void wk_write_queue(wk_writes *ws, wk_write *w)
{
	bool first;

	w->st = SL_OK;
	w->err[0] = '\0';
	w->written = w->claimed = w->deferred = false;
	if (!sl_queue_push(&ws->q, &w->node, &first)) {
		ws->cfg.drop(w); /* never closed: cannot be */
		return;
	}
	if (first && !wk_pool_push(ws->cfg.db, flush_job, writes_drop, ws))
		writes_drop(ws);
}

/* Orders writes by run id. */
static int by_run_id(const void *a, const void *b)
{
	const wk_write *x = *(wk_write *const *)a, *y = *(wk_write *const *)b;

	return strcmp(x->run_id, y->run_id);
}

/* Ends n writes with the failure st. */
static void fail_all(wk_write **ws, size_t n, sl_status st, const char *why)
{
	for (size_t i = 0; i < n; i++) {
		ws[i]->st = st;
		snprintf(ws[i]->err, sizeof(ws[i]->err), "%s", why);
	}
}

/*
 * Makes n writes, all of kind, in one statement and fills in their
 * results. A statement that fails transiently fails every write; one that
 * fails otherwise is tried again one write at a time, so that a bad write
 * fails alone.
 */
static void write_batch(wk_writes *ws, PGconn *db, wk_write **w, size_t n, wk_write_kind kind)
{
	const wk_writes_config *cfg = &ws->cfg;
	json_t *rows = json_array(), *written = NULL, *deferred = NULL, *gated = NULL;
	wk_continue *read = NULL;
	bool *claimed = NULL;
	PGresult *res = NULL;
	char errbuf[512];
	char *text, *gated_text = NULL;
	sl_status st;

	/* Claims lock paused runs, as the approver's decisions do: both in run
	 * id order (the statement takes its rows in the order given), so that
	 * neither waits for the other in a cycle. */
	if (kind == WR_CLAIM)
		qsort(w, n, sizeof(*w), by_run_id);
	for (size_t i = 0; i < n; i++) {
		if (kind == WR_CLAIM) /* a claim's place in the batch names its rows */
			json_object_set_new(w[i]->row, "i", json_integer((json_int_t)i));
		json_array_append(rows, w[i]->row);
		if (kind == WR_START && (json_object_get(w[i]->row, "gate") ||
		                         json_object_get(w[i]->row, "stack_gate"))) {
			if (!gated)
				gated = json_object();
			/* the locks: the agent's, and "*" the whole stack's */
			if (json_object_get(w[i]->row, "gate"))
				json_object_set_new(
				    gated,
				    json_string_value(json_object_get(w[i]->row, "agent_id")),
				    json_true());
			if (json_object_get(w[i]->row, "stack_gate"))
				json_object_set_new(gated, "*", json_true());
		}
	}
	if (gated) {
		json_t *list = json_array();
		const char *agent;
		json_t *v;

		json_object_foreach (gated, agent, v)
			json_array_append_new(list, json_string(agent));
		gated_text = json_dumps(list, JSON_COMPACT);
		json_decref(list);
	}
	text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	switch (kind) {
	case WR_START:
		st = wk_store_starts(db, text, gated_text, &written, &deferred, errbuf,
		                     sizeof(errbuf));
		break;
	case WR_CLAIM:
		read = sl_calloc(n, sizeof(*read));
		claimed = sl_calloc(n, sizeof(*claimed));
		st = wk_store_claims(db, text, cfg->agent_tools, n, read, claimed, errbuf,
		                     sizeof(errbuf));
		break;
	case WR_TOOL: st = wk_store_tool_results(db, text, errbuf, sizeof(errbuf)); break;
	case WR_PAUSE:
		st = wk_store_pauses(db, text, cfg->topic_paused, &res, errbuf, sizeof(errbuf));
		break;
	default:
		st = wk_store_finishes(db, text, cfg->topic_results, &res, errbuf, sizeof(errbuf));
		break;
	}
	free(text);
	if (st == SL_OK && kind == WR_CLAIM) {
		for (size_t i = 0; i < n; i++) {
			w[i]->claimed = claimed[i];
			w[i]->read = read[i]; /* the caller's now */
		}
	} else if (st == SL_OK && kind == WR_START) {
		for (size_t i = 0; i < n; i++) {
			/* a run id twice in one batch: the first inserts it, the
			 * second finds it */
			w[i]->written = json_object_get(written, w[i]->run_id) != NULL;
			w[i]->deferred = !w[i]->written && json_object_get(deferred, w[i]->run_id);
			json_object_del(written, w[i]->run_id);
		}
	} else if (st == SL_OK && (kind == WR_PAUSE || kind == WR_FINISH)) {
		/* an event in the outbox for each row written, which goes out now */
		sl_relay_publish(cfg->relay, db, res, 1);
		written = json_object();
		for (int i = 0; i < PQntuples(res); i++)
			json_object_set_new(written, PQgetvalue(res, i, 0), json_true());
		for (size_t i = 0; i < n; i++)
			w[i]->written = json_object_get(written, w[i]->event_id) != NULL;
	} else if (st == SL_OK) {
		for (size_t i = 0; i < n; i++)
			w[i]->written = true;
	} else if (st != SL_RETRY && n > 1) {
		sl_warn("%zu writes could not be made together (%s); one at a time", n, errbuf);
		for (size_t i = 0; i < n; i++)
			write_batch(ws, db, &w[i], 1, kind);
	} else {
		fail_all(w, n, st, errbuf);
	}
	if (st && read)
		for (size_t i = 0; i < n; i++)
			wk_continue_clear(&read[i]);
	free(read);
	free(claimed);
	PQclear(res);
	json_decref(written);
	json_decref(deferred);
	json_decref(gated);
	free(gated_text);
}

/* On a database thread: makes the queued writes, WRITE_BATCH at a time,
 * those of each kind in one statement, then hands each back. */
static void flush_job(void *arg, void *state)
{
	/* starts, claims and tool results first: their runs go on */
	static const wk_write_kind order[] = {WR_START, WR_CLAIM, WR_TOOL, WR_PAUSE, WR_FINISH};
	wk_writes *ws = arg;
	PGconn *db = ((wk_db *)state)->conn;
	sl_queue_node *taken[WRITE_BATCH];
	wk_write *batch[5][WRITE_BATCH];
	size_t n, left, nb[5] = {0};
	char errbuf[256];
	sl_status st;

	n = sl_queue_pop(&ws->q, taken, WRITE_BATCH, false, &left);
	/* the rest goes to another thread while this one writes */
	if (left && !wk_pool_push(ws->cfg.db, flush_job, writes_drop, ws))
		writes_drop(ws);
	/* sorted by kind before any is handed back (and may be gone) */
	for (size_t i = 0; i < n; i++) {
		wk_write *w = sl_queue_entry(taken[i], wk_write, node);
		for (size_t k = 0; k < 5; k++)
			if (w->kind == order[k])
				batch[k][nb[k]++] = w;
	}
	st = sl_db_ensure(db, errbuf, sizeof(errbuf));
	for (size_t k = 0; k < 5; k++) {
		if (nb[k] == 0)
			continue;
		if (st)
			fail_all(batch[k], nb[k], st, errbuf);
		else
			write_batch(ws, db, batch[k], nb[k], order[k]);
		for (size_t i = 0; i < nb[k]; i++) {
			json_decref(batch[k][i]->row);
			batch[k][i]->row = NULL;
			ws->cfg.written(batch[k][i], state);
		}
	}
}
