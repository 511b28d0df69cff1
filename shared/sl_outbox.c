/*
 * sl_outbox.c - outbox writes, the relay, and processed_events.
 */
#include "sl_outbox.h"
#include "sl_db.h"
#include "sl_kafka.h"
#include "sl_log.h"

#include <stdlib.h>
#include <string.h>

sl_status sl_outbox_put(PGconn *conn, const char *topic, const char *key, const json_t *event,
                        char *errbuf, size_t errsize)
{
	char *payload = json_dumps(event, JSON_COMPACT);
	const char *params[] = {topic, key, payload};
	sl_status st;

	st = sl_db_exec(conn, "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)", 3,
	                params, NULL, errbuf, errsize);
	if (st == SL_OK)
		st = sl_db_exec(conn, "NOTIFY sluice_outbox", 0, NULL, NULL, errbuf, errsize);
	free(payload);
	return st;
}

sl_status sl_outbox_relay(PGconn *conn, rd_kafka_t *producer, int max, int *sent, char *errbuf,
                          size_t errsize)
{
	char limit[16];
	const char *params[1] = {limit};
	PGresult *res = NULL;
	sl_kafka_out *msgs = NULL;
	sl_buf ids;
	sl_status st;
	int n;

	*sent = 0;
	sl_buf_init(&ids, (size_t)-1);
	snprintf(limit, sizeof(limit), "%d", max);
	if ((st = sl_db_begin(conn, errbuf, errsize)))
		return st;
	st = sl_db_exec(conn,
	                "SELECT id, topic, key, payload FROM outbox WHERE sent_at IS NULL "
	                "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
	                1, params, &res, errbuf, errsize);
	if (st)
		goto out;
	n = PQntuples(res);
	if (n == 0)
		goto out;
	msgs = sl_calloc((size_t)n, sizeof(*msgs));
	for (int i = 0; i < n; i++) {
		msgs[i].topic = PQgetvalue(res, i, 1);
		msgs[i].key = PQgetvalue(res, i, 2);
		msgs[i].payload = PQgetvalue(res, i, 3);
		msgs[i].len = (size_t)PQgetlength(res, i, 3);
	}
	/* Failures are counted per message below; rows not delivered stay. */
	sl_kafka_produce_batch(producer, msgs, (size_t)n, 10000, NULL, 0);
	sl_buf_append(&ids, "{", 1);
	for (int i = 0; i < n; i++) {
		if (!msgs[i].delivered)
			continue;
		if (*sent)
			sl_buf_append(&ids, ",", 1);
		sl_buf_append(&ids, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
		(*sent)++;
	}
	sl_buf_append(&ids, "}", 1);
	if (*sent) {
		const char *p[] = {ids.data};
		if ((st = sl_db_exec(
		         conn, "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", 1,
		         p, NULL, errbuf, errsize)))
			goto out;
	}
	if (*sent < n)
		st = sl_err(errbuf, errsize, SL_RETRY, "%d of %d outbox events not delivered",
		            n - *sent, n);
out:
	if (st == SL_OK || *sent) {
		char cerr[256];
		sl_status cst = sl_db_commit(conn, cerr, sizeof(cerr));
		if (cst) {
			/* Delivered but not marked: they go out again, and the consumers'
			 * processed_events make the repeat harmless. */
			st = sl_err(errbuf, errsize, cst, "%s", cerr);
		}
	}
	sl_db_rollback(conn);
	PQclear(res);
	free(msgs);
	sl_buf_free(&ids);
	return st;
}

sl_status sl_inbox_claim(PGconn *conn, const char *consumer, const char *event_id, bool *fresh,
                         char *errbuf, size_t errsize)
{
	const char *params[] = {consumer, event_id};
	PGresult *res;
	sl_status st;

	st = sl_db_exec(conn,
	                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
	                "ON CONFLICT DO NOTHING",
	                2, params, &res, errbuf, errsize);
	if (st)
		return st;
	*fresh = !strcmp(PQcmdTuples(res), "1");
	PQclear(res);
	return SL_OK;
}
