/*
 * ap_chain.c - the ledger's chainer.
 */
#include "ap_chain.h"

#include "sl_db.h"
#include "sl_ledger.h"
#include "sl_log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ap_chain {
	char *url;
	const sl_signer *signer;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	bool stopping; /* mu */
};

/* The queue's oldest entries, with the time their hash covers. */
#define TAKE_SQL                                                                           \
	"SELECT id, kind, to_char(at AT TIME ZONE 'UTC', "                                 \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), run_id, requirement_id, actor, body::text " \
	"FROM ledger_queue ORDER BY id LIMIT $1"

/* The chained entries, their bodies copied as they were queued, and the
 * queue rid of them, in one statement. */
#define PUT_SQL                                                                               \
	"WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, seq bigint, " \
	"at text, hash text)), "                                                              \
	"ins AS (INSERT INTO ledger (seq, kind, at, run_id, requirement_id, actor, body, "    \
	"hash) SELECT x.seq, q.kind, x.at, q.run_id, q.requirement_id, q.actor, q.body, "     \
	"x.hash FROM x JOIN ledger_queue q ON q.id = x.id) "                                  \
	"DELETE FROM ledger_queue q USING x WHERE q.id = x.id"

/* The ledger's head: its last entry's number and hash. */
static sl_status head(PGconn *conn, long long *seq, char hash[65], char *errbuf, size_t errsize)
{
	PGresult *res;
	sl_status st = sl_db_exec(conn, "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", 0,
	                          NULL, &res, errbuf, errsize);

	if (st)
		return st;
	*seq = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	snprintf(hash, 65, "%s", PQntuples(res) ? PQgetvalue(res, 0, 1) : SL_LEDGER_GENESIS);
	PQclear(res);
	return SL_OK;
}

/* Numbers and hashes the rows of res after (seq, hash): the rows PUT_SQL
 * takes. An entry whose body cannot be read stops the batch there (it
 * cannot happen: bodies are jsonb objects). */
static sl_status chain(const PGresult *res, long long seq, char hash[65], json_t *out, char *errbuf,
                       size_t errsize)
{
	for (int i = 0; i < PQntuples(res); i++) {
		const char *body = PQgetvalue(res, i, 6);
		json_t *b = sl_ledger_body(body, strlen(body));
		char next[65];
		bool ok =
		    b && sl_ledger_hash(hash, seq + 1, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
		                        sl_db_text(res, i, 3), sl_db_text(res, i, 4),
		                        PQgetvalue(res, i, 5), b, next);

		json_decref(b);
		if (!ok)
			return sl_err(
			    errbuf, errsize, SL_FATAL,
			    "ledger entry %s (queued) cannot be chained: its body is not a "
			    "JSON object",
			    PQgetvalue(res, i, 0));
		seq++;
		memcpy(hash, next, 65);
		json_array_append_new(out, json_pack("{s:s, s:I, s:s, s:s}", "id",
		                                     PQgetvalue(res, i, 0), "seq", (json_int_t)seq,
		                                     "at", PQgetvalue(res, i, 2), "hash", hash));
	}
	return SL_OK;
}

/* A checkpoint of the head (seq, hash), unless one of that size is there. */
static sl_status checkpoint(PGconn *conn, const sl_signer *signer, long long seq, const char *hash,
                            bool *signed_, char *errbuf, size_t errsize)
{
	char size[24], *note;
	sl_status st;
	PGresult *res;

	snprintf(size, sizeof(size), "%lld", seq);
	if (seq == 0)
		return SL_OK;
	if (!(note = sl_ledger_checkpoint(signer, seq, hash)))
		return sl_err(errbuf, errsize, SL_FATAL, "cannot sign a checkpoint");
	st = sl_db_exec(conn,
	                "INSERT INTO ledger_checkpoints (tree_size, head, kid, note) "
	                "VALUES ($1::bigint, $2, $3, $4) ON CONFLICT DO NOTHING",
	                4, (const char *[]){size, hash, signer->kid, note}, &res, errbuf, errsize);
	if (!st) {
		*signed_ = !strcmp(PQcmdTuples(res), "1");
		PQclear(res);
	}
	free(note);
	return st;
}

sl_status ap_chain_batch(PGconn *conn, const sl_signer *signer, int *n, bool *signed_, char *errbuf,
                         size_t errsize)
{
	PGresult *res = NULL;
	json_t *rows = json_array();
	char hash[65], batch[16], *text = NULL;
	long long seq;
	sl_status st;

	*n = 0;
	*signed_ = false;
	snprintf(batch, sizeof(batch), "%d", AP_CHAIN_BATCH);
	if ((st = sl_db_begin(conn, errbuf, errsize)) ||
	    (st = sl_db_exec(conn, "SELECT pg_try_advisory_xact_lock(" SL_LEDGER_LOCK ")", 0, NULL,
	                     &res, errbuf, errsize)))
		goto out;
	if (!sl_db_bool(res, 0, 0))
		goto out; /* another chainer's turn */
	PQclear(res);
	res = NULL;
	if ((st = head(conn, &seq, hash, errbuf, errsize)) ||
	    (st = sl_db_exec(conn, TAKE_SQL, 1, (const char *[]){batch}, &res, errbuf, errsize)) ||
	    (st = chain(res, seq, hash, rows, errbuf, errsize)))
		goto out;
	if (json_array_size(rows)) {
		text = json_dumps(rows, JSON_COMPACT);
		if ((st = sl_db_exec(conn, PUT_SQL, 1, (const char *[]){text}, NULL, errbuf,
		                     errsize)))
			goto out;
		seq += (long long)json_array_size(rows);
	}
	if ((signer && (st = checkpoint(conn, signer, seq, hash, signed_, errbuf, errsize))) ||
	    (st = sl_db_commit(conn, errbuf, errsize)))
		goto out;
	*n = (int)json_array_size(rows);
out:
	sl_db_rollback(conn); /* nothing, after a commit */
	PQclear(res);
	free(text);
	json_decref(rows);
	return st;
}

/* Waits ms, or until stopped; whether it is stopping. */
static bool nap(ap_chain *c, int ms)
{
	struct timespec until;
	bool stopping;

	sl_deadline_ms(&until, ms);
	pthread_mutex_lock(&c->mu);
	if (!c->stopping)
		pthread_cond_timedwait(&c->wake, &c->mu, &until);
	stopping = c->stopping;
	pthread_mutex_unlock(&c->mu);
	return stopping;
}

static void *chain_main(void *arg)
{
	ap_chain *c = arg;
	PGconn *conn = NULL;
	char errbuf[1024];
	bool failing = false, signed_ = false;
	long long next_checkpoint = sl_mono_ms() + AP_CHECKPOINT_MS;
	int n = 0, wait_ms;

	do {
		/* a checkpoint when one is due (the batch signs it if the ledger grew) */
		const sl_signer *signer = sl_mono_ms() >= next_checkpoint ? c->signer : NULL;

		if (!conn && !(conn = sl_db_connect(c->url, errbuf, sizeof(errbuf)))) {
			n = -1;
		} else if (ap_chain_batch(conn, signer, &n, &signed_, errbuf, sizeof(errbuf))) {
			n = -1;
			PQfinish(conn); /* a fresh connection next time */
			conn = NULL;
		}
		if (n < 0 && !failing)
			sl_warn("ledger chainer: %s; trying again every second", errbuf);
		else if (n >= 0 && failing)
			sl_info("ledger chainer: working again");
		failing = n < 0;
		if (signer && n >= 0)
			next_checkpoint = sl_mono_ms() + AP_CHECKPOINT_MS;
		wait_ms = n < 0 ? 1000 : n < AP_CHAIN_BATCH ? AP_CHAIN_IDLE_MS : 0;
	} while (!nap(c, wait_ms));
	if (conn)
		PQfinish(conn);
	return NULL;
}

ap_chain *ap_chain_start(const char *database_url, const sl_signer *signer, char *errbuf,
                         size_t errsize)
{
	ap_chain *c = sl_calloc(1, sizeof(*c));

	c->signer = signer;
	c->url = sl_strdup(database_url);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->wake, NULL);
	if (pthread_create(&c->thread, NULL, chain_main, c)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot start the ledger chainer's thread");
		pthread_cond_destroy(&c->wake);
		pthread_mutex_destroy(&c->mu);
		free(c->url);
		free(c);
		return NULL;
	}
	return c;
}

void ap_chain_stop(ap_chain *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->mu);
	free(c->url);
	free(c);
}
