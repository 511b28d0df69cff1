/*
 * sl_db.c - PostgreSQL helpers.
 */
#include "sl_db.h"

#include <libpq-events.h>

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int prepared_event(PGEventId id, void *info, void *pass);

PGconn *sl_db_connect(const char *url, char *errbuf, size_t errsize)
{
	return sl_db_connect_with(url, NULL, errbuf, errsize);
}

PGconn *sl_db_connect_with(const char *url, const char *options, char *errbuf, size_t errsize)
{
	const char *keys[] = {"dbname", options ? "options" : NULL, NULL};
	const char *values[] = {url, options, NULL};
	PGconn *conn = PQconnectdbParams(keys, values, 1);

	if (PQstatus(conn) != CONNECTION_OK) {
		sl_err(errbuf, errsize, SL_RETRY, "cannot connect to PostgreSQL: %s",
		       PQerrorMessage(conn));
		/* libpq messages end with a newline */
		if (errbuf && errsize && strlen(errbuf) && errbuf[strlen(errbuf) - 1] == '\n')
			errbuf[strlen(errbuf) - 1] = '\0';
		PQfinish(conn);
		return NULL;
	}
	/* Keep server notices (e.g. "relation already exists") out of our logs. */
	PQsetNoticeProcessor(conn, NULL, NULL);
	if (!PQregisterEventProc(conn, prepared_event, "sluice prepared statements", NULL)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot register a libpq event procedure");
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/*
 * Statements with parameters are prepared once per connection and then run
 * by name, so PostgreSQL parses and plans them once. Each connection owns
 * the set of statements it prepared, as libpq instance data (libpq-events):
 * emptied when the connection is reset, freed with it by PQfinish(). A
 * statement's name is its hash; a name the server no longer knows (26000,
 * e.g. after DISCARD ALL) is prepared again.
 */
#define PREPARED_MAX 256

typedef struct prepared_set {
	size_t n;
	uint64_t hash[PREPARED_MAX];
} prepared_set;

static int prepared_event(PGEventId id, void *info, void *pass)
{
	(void)pass;
	switch (id) {
	case PGEVT_REGISTER: {
		PGEventRegister *e = info;
		return PQsetInstanceData(e->conn, prepared_event,
		                         sl_calloc(1, sizeof(prepared_set)));
	}
	case PGEVT_CONNRESET: {
		PGEventConnReset *e = info;
		prepared_set *set = PQinstanceData(e->conn, prepared_event);
		if (set)
			set->n = 0;
		return 1;
	}
	case PGEVT_CONNDESTROY: {
		PGEventConnDestroy *e = info;
		free(PQinstanceData(e->conn, prepared_event));
		return 1;
	}
	default: return 1;
	}
}

static prepared_set *prepared_of(const PGconn *conn)
{
	return PQinstanceData(conn, prepared_event);
}

static bool prepared_has(const prepared_set *set, uint64_t hash)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->hash[i] == hash)
			return true;
	return false;
}

static void prepared_forget(const PGconn *conn)
{
	prepared_set *set = prepared_of(conn);

	if (set)
		set->n = 0;
}

static uint64_t sql_hash(const char *sql)
{
	uint64_t h = 14695981039346656037ull;

	for (; *sql; sql++)
		h = (h ^ (unsigned char)*sql) * 1099511628211ull;
	return h;
}

/* Prepares sql on conn as name unless it is already; false when it cannot
 * be (the caller then runs it unprepared, which reports real errors). */
static bool prepare(PGconn *conn, const char *sql, int nparams, char *name, size_t size)
{
	prepared_set *set = prepared_of(conn);
	uint64_t hash = sql_hash(sql);
	PGresult *r;

	snprintf(name, size, "sl_%016llx", (unsigned long long)hash);
	if (!set)
		return false;
	if (prepared_has(set, hash))
		return true;
	if (set->n == PREPARED_MAX)
		return false;
	r = PQprepare(conn, name, sql, nparams, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		PQclear(r);
		return false;
	}
	PQclear(r);
	set->hash[set->n++] = hash;
	return true;
}

static bool unknown_statement(const PGresult *r)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	return PQresultStatus(r) == PGRES_FATAL_ERROR && state && !strcmp(state, "26000");
}

/* Runs sql prepared when it can, unprepared otherwise. */
static PGresult *exec(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
	char name[32];
	PGresult *r;

	if (nparams == 0 || !prepare(conn, sql, nparams, name, sizeof(name)))
		return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	r = PQexecPrepared(conn, name, nparams, params, NULL, NULL, 0);
	if (unknown_statement(r)) {
		/* unknown prepared statement: the server forgot it */
		PQclear(r);
		prepared_forget(conn);
		return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	}
	return r;
}

/*
 * Whether the server ended conn while it was idle (a restart, an
 * administrator's pg_terminate_backend): it then sent its last words (a
 * FATAL error, which libpq takes as a notice between queries) and closed
 * the socket, which looking at the socket tells without a round trip. A
 * connection in a transaction or a pipeline is in use and left alone.
 */
static bool ended_by_server(PGconn *conn)
{
	struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};

	if (PQtransactionStatus(conn) != PQTRANS_IDLE || PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
		return false;
	if (p.fd < 0)
		return true;
	/* each read takes what is there: the last words, then the end (a few
	 * reads at most; notifications can keep coming, hence the bound) */
	for (int reads = 0; reads < 4 && poll(&p, 1, 0) > 0; reads++)
		if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK)
			return true;
	return false;
}

sl_status sl_db_ensure(PGconn *conn, char *errbuf, size_t errsize)
{
	if (PQstatus(conn) == CONNECTION_OK && !ended_by_server(conn))
		return SL_OK;
	PQreset(conn); /* (its prepared statements are forgotten: prepared_event) */
	if (PQstatus(conn) == CONNECTION_OK)
		return SL_OK;
	return sl_err(errbuf, errsize, SL_RETRY, "PostgreSQL connection lost: %s",
	              PQerrorMessage(conn));
}

static sl_status classify(PGconn *conn, const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (PQstatus(conn) != CONNECTION_OK || !state)
		return SL_RETRY;
	if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strncmp(state, "08", 2) ||
	    !strncmp(state, "57P", 3) || !strcmp(state, "53300"))
		return SL_RETRY;
	if (!strcmp(state, "23505"))
		return SL_CONFLICT;
	if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2))
		return SL_INVALID;
	return SL_FATAL;
}

/* Hands r over as the outcome of a statement. */
static sl_status outcome(PGconn *conn, PGresult *r, PGresult **res, char *errbuf, size_t errsize)
{
	ExecStatusType es = PQresultStatus(r);
	sl_status st;

	if (res)
		*res = NULL;
	if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
		if (res)
			*res = r;
		else
			PQclear(r);
		return SL_OK;
	}
	st = classify(conn, r);
	sl_err(errbuf, errsize, st, SL_DB_ERROR_PREFIX "%s",
	       r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
	if (errbuf && errsize) {
		size_t n = strlen(errbuf);
		while (n && (errbuf[n - 1] == '\n' || errbuf[n - 1] == ' '))
			errbuf[--n] = '\0';
	}
	PQclear(r);
	return st;
}

sl_status sl_db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                     PGresult **res, char *errbuf, size_t errsize)
{
	return outcome(conn, exec(conn, sql, nparams, params), res, errbuf, errsize);
}

sl_status sl_db_pipeline(PGconn *conn, size_t n, const sl_db_stmt *stmts, PGresult **res,
                         char *errbuf, size_t errsize)
{
	char(*names)[32] = sl_calloc(n, sizeof(*names)); /* "" when sent unprepared */
	sl_status st = SL_OK;
	size_t got = 0;
	PGresult *r;

	for (size_t i = 0; i < n; i++)
		res[i] = NULL;
	/* Preparing is a round trip of its own, not allowed in a pipeline:
	 * done first (once per connection and statement). The statements and
	 * their results are small (a few kB each), so sending them all before
	 * reading cannot fill both directions' socket buffers. */
	for (size_t i = 0; i < n; i++)
		if (stmts[i].nparams == 0 ||
		    !prepare(conn, stmts[i].sql, stmts[i].nparams, names[i], sizeof(names[i])))
			names[i][0] = '\0';
	if (!PQenterPipelineMode(conn)) {
		free(names);
		return sl_err(errbuf, errsize, SL_RETRY, "cannot enter pipeline mode: %s",
		              PQerrorMessage(conn));
	}
	for (size_t i = 0; i < n; i++) {
		const sl_db_stmt *q = &stmts[i];
		int ok;

		if (names[i][0])
			ok = PQsendQueryPrepared(conn, names[i], q->nparams, q->params, NULL, NULL,
			                         0);
		else
			ok = PQsendQueryParams(conn, q->sql, q->nparams, NULL, q->params, NULL,
			                       NULL, 0);
		if (!ok) {
			st = sl_err(errbuf, errsize, SL_RETRY, "cannot send a statement: %s",
			            PQerrorMessage(conn));
			break;
		}
	}
	if (!PQpipelineSync(conn) && !st)
		st = sl_err(errbuf, errsize, SL_RETRY, "cannot send a statement: %s",
		            PQerrorMessage(conn));
	/* Each statement's result and the NULL that ends it; then the sync's.
	 * Two NULLs in a row: nothing more is coming (the sync was not sent). */
	for (int nulls = 0; nulls < 2;) {
		ExecStatusType es;

		if (!(r = PQgetResult(conn))) {
			nulls++;
			continue;
		}
		nulls = 0;
		es = PQresultStatus(r);
		if (es == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			break;
		}
		if (got >= n) { /* not ours: cannot happen with one sync */
			PQclear(r);
			continue;
		}
		if (es == PGRES_PIPELINE_ABORTED) {
			PQclear(r);
			got++;
			continue;
		}
		if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
			bool unknown = unknown_statement(r);

			if (unknown)
				prepared_forget(conn); /* prepared again next time */
			if (st == SL_OK) {
				st = outcome(conn, r, NULL, errbuf, errsize);
				if (unknown)
					st = SL_RETRY;
			} else {
				PQclear(r);
			}
			got++;
			continue;
		}
		res[got++] = r;
	}
	if (!PQexitPipelineMode(conn) && st == SL_OK)
		st = sl_err(errbuf, errsize, SL_RETRY, "pipeline: %s", PQerrorMessage(conn));
	if (st == SL_OK && got < n)
		st = sl_err(errbuf, errsize, SL_RETRY, "PostgreSQL connection lost: %s",
		            PQerrorMessage(conn));
	if (st)
		for (size_t i = 0; i < n; i++) {
			PQclear(res[i]);
			res[i] = NULL;
		}
	free(names);
	return st;
}

sl_status sl_db_insert_once(PGconn *conn, const char *sql, int nparams, const char *const *params,
                            bool *inserted, char *errbuf, size_t errsize)
{
	PGresult *res;
	sl_status st = sl_db_exec(conn, sql, nparams, params, &res, errbuf, errsize);

	*inserted = false;
	if (st)
		return st;
	*inserted = !strcmp(PQcmdTuples(res), "1");
	PQclear(res);
	return SL_OK;
}

sl_status sl_db_begin(PGconn *conn, char *errbuf, size_t errsize)
{
	return sl_db_exec(conn, "BEGIN", 0, NULL, NULL, errbuf, errsize);
}

sl_status sl_db_commit(PGconn *conn, char *errbuf, size_t errsize)
{
	return sl_db_exec(conn, "COMMIT", 0, NULL, NULL, errbuf, errsize);
}

void sl_db_rollback(PGconn *conn)
{
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		PQclear(PQexec(conn, "ROLLBACK"));
}

sl_status sl_db_columns(const PGresult *res, const char *const *names, int n, int *at, char *errbuf,
                        size_t errsize)
{
	for (int i = 0; i < n; i++)
		if ((at[i] = PQfnumber(res, names[i])) < 0)
			return sl_err(errbuf, errsize, SL_FATAL,
			              "a statement's result has no column %s", names[i]);
	return SL_OK;
}

bool sl_db_bool(const PGresult *res, int row, int col)
{
	return !PQgetisnull(res, row, col) && !strcmp(PQgetvalue(res, row, col), "t");
}

const char *sl_db_text(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

char *sl_db_value(const PGresult *res, int row, int col)
{
	if (row >= PQntuples(res) || PQgetisnull(res, row, col))
		return NULL;
	return sl_strdup(PQgetvalue(res, row, col));
}

sl_status sl_db_query_json(PGconn *conn, const char *sql, int nparams, const char *const *params,
                           json_t **out, char *errbuf, size_t errsize)
{
	PGresult *res;
	json_error_t jerr;
	sl_status st;

	*out = NULL;
	if ((st = sl_db_exec(conn, sql, nparams, params, &res, errbuf, errsize)))
		return st;
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		PQclear(res);
		return sl_err(errbuf, errsize, SL_NOT_FOUND, "no row");
	}
	*out = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
	PQclear(res);
	if (!*out)
		return sl_err(errbuf, errsize, SL_FATAL, "database returned bad JSON: %s",
		              jerr.text);
	return SL_OK;
}

void sl_db_ids_add(sl_buf *b, long long id)
{
	char text[24];

	snprintf(text, sizeof(text), "%s%lld", b->len ? "," : "{", id);
	sl_buf_append(b, text, strlen(text));
}

void sl_db_ids_end(sl_buf *b)
{
	sl_buf_append(b, b->len ? "}" : "{}", b->len ? 1 : 2);
}
