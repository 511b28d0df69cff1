/*
 * sl_outbox.c - outbox writes, one pass of the publishing relay, pruning,
 * and processed_events.
 */
#include "sl_outbox.h"
#include "sl_config.h"
#include "sl_db.h"
#include "sl_kafka.h"
#include "sl_log.h"

#include <stdlib.h>
#include <string.h>

sl_status sl_outbox_put(PGconn *conn, const char *topic, const char *key, const json_t *event,
                        PGresult **row, char *errbuf, size_t errsize)
{
	char *payload = json_dumps(event, JSON_COMPACT);
	const char *params[] = {topic, key, payload, SL_OUTBOX_LEASE};
	sl_status st;

	st = sl_db_exec(
	    conn,
	    "INSERT INTO outbox (topic, key, payload, relay_after) "
	    "VALUES ($1, $2, $3, now() + $4::interval) RETURNING id, topic, key, payload",
	    4, params, row, errbuf, errsize);
	free(payload);
	return st;
}

/*
 * Takes up to $1 unsent rows, oldest first, by marking them sent in the
 * transaction that stays open while they are produced: it commits only once
 * they are delivered, so a crash before then leaves them unsent. Rows
 * another relay holds, and rows still left to their writer (a lease not
 * over), are skipped. One statement where a locking read and an update by
 * id were two.
 */
#define RELAY_TAKE_SQL                                                                      \
	"UPDATE outbox o SET sent_at = now() FROM (SELECT id FROM outbox WHERE sent_at IS " \
	"NULL AND (relay_after IS NULL OR relay_after <= now()) "                           \
	"ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) b WHERE o.id = b.id "                 \
	"RETURNING o.id, o.topic, o.key, o.payload"

/* A taken row: its id and where it is in the result. */
typedef struct taken {
	long long id;
	int row;
} taken;

static int by_id(const void *a, const void *b)
{
	long long x = ((const taken *)a)->id, y = ((const taken *)b)->id;

	return (x > y) - (x < y);
}

sl_status sl_outbox_relay(PGconn *conn, rd_kafka_t *producer, int max, int *sent, char *errbuf,
                          size_t errsize)
{
	char limit[16];
	sl_db_stmt q[2] = {{"BEGIN", 0, NULL}, {RELAY_TAKE_SQL, 1, (const char *[]){limit}}};
	PGresult *res[2] = {NULL, NULL};
	sl_kafka_out *msgs = NULL;
	taken *order = NULL;
	sl_buf ids;
	char cerr[256];
	sl_status st, cst;
	int n;

	*sent = 0;
	sl_buf_init(&ids, (size_t)max * 24 + 8); /* max ids of 20 digits and a comma */
	snprintf(limit, sizeof(limit), "%d", max);
	if ((st = sl_db_pipeline(conn, 2, q, res, errbuf, errsize)))
		goto out;
	if ((n = PQntuples(res[1])) == 0)
		goto out;
	/* RETURNING keeps no order: produced in id order, so that one run's
	 * events stay in the order they were written. */
	order = sl_calloc((size_t)n, sizeof(*order));
	for (int i = 0; i < n; i++)
		order[i] = (taken){strtoll(PQgetvalue(res[1], i, 0), NULL, 10), i};
	qsort(order, (size_t)n, sizeof(*order), by_id);
	msgs = sl_calloc((size_t)n, sizeof(*msgs));
	for (int i = 0; i < n; i++) {
		int row = order[i].row;
		msgs[i].topic = PQgetvalue(res[1], row, 1);
		msgs[i].key = PQgetvalue(res[1], row, 2);
		msgs[i].payload = PQgetvalue(res[1], row, 3);
		msgs[i].len = (size_t)PQgetlength(res[1], row, 3);
	}
	/* Failures are counted per message below; rows not delivered stay. */
	sl_kafka_produce_batch(producer, msgs, (size_t)n, 10000, NULL, 0);
	for (int i = 0; i < n; i++) {
		if (msgs[i].delivered)
			(*sent)++;
		else
			sl_db_ids_add(&ids, order[i].id);
	}
	sl_db_ids_end(&ids);
	if (*sent < n) {
		const char *p[] = {ids.data};

		st = sl_err(errbuf, errsize, SL_RETRY, "%d of %d outbox events not delivered",
		            n - *sent, n);
		if (*sent == 0) /* the rollback below leaves them unsent */
			goto out;
		if (sl_db_exec(conn,
		               "UPDATE outbox SET sent_at = NULL WHERE id = ANY($1::bigint[])", 1,
		               p, NULL, cerr, sizeof(cerr)))
			goto out; /* all go out again */
	}
	/* Delivered but not marked when this fails: they go out again, and the
	 * consumers' processed_events make the repeat harmless. */
	if ((cst = sl_db_commit(conn, cerr, sizeof(cerr))))
		st = sl_err(errbuf, errsize, cst, "%s", cerr);
out:
	sl_db_rollback(conn);
	PQclear(res[0]);
	PQclear(res[1]);
	free(msgs);
	free(order);
	sl_buf_free(&ids);
	return st;
}

sl_status sl_inbox_claim(PGconn *conn, const char *consumer, const char *event_id, bool *fresh,
                         char *errbuf, size_t errsize)
{
	const char *params[] = {consumer, event_id};

	return sl_db_insert_once(
	    conn,
	    "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
	    "ON CONFLICT DO NOTHING",
	    2, params, fresh, errbuf, errsize);
}

/* Rows deleted per statement when pruning: short transactions. */
#define PRUNE_BATCH 5000

/* Runs a prune statement ($1: rows a batch, $2: how long rows are kept)
 * until a batch comes back short. */
static sl_status prune(PGconn *conn, const char *sql, const char *keep, long *n, char *errbuf,
                       size_t errsize)
{
	char batch[16];
	const char *p[] = {batch, keep};
	sl_status st;
	long got;

	*n = 0;
	snprintf(batch, sizeof(batch), "%d", PRUNE_BATCH);
	do {
		PGresult *res;
		if ((st = sl_db_exec(conn, sql, 2, p, &res, errbuf, errsize)))
			return st;
		got = strtol(PQcmdTuples(res), NULL, 10);
		*n += got;
		PQclear(res);
	} while (got == PRUNE_BATCH);
	return SL_OK;
}

sl_status sl_outbox_prune(PGconn *conn, long *outbox, long *inbox, char *errbuf, size_t errsize)
{
	sl_status st;

	*outbox = *inbox = 0;
	/* created_at and processed_at have BRIN indexes: rows are appended in
	 * time order. A row is sent soon after it is written; one never sent
	 * stays. */
	st = prune(conn,
	           "DELETE FROM outbox WHERE ctid = ANY (ARRAY (SELECT ctid FROM outbox "
	           "WHERE created_at < now() - $2::interval AND sent_at IS NOT NULL LIMIT $1))",
	           SL_OUTBOX_KEEP_SENT, outbox, errbuf, errsize);
	if (st)
		return st;
	return prune(conn,
	             "DELETE FROM processed_events WHERE ctid = ANY (ARRAY (SELECT ctid FROM "
	             "processed_events WHERE processed_at < now() - $2::interval LIMIT $1))",
	             SL_INBOX_KEEP, inbox, errbuf, errsize);
}
