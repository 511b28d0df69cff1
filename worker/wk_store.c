/*
 * wk_store.c - the worker's statements (wk_store.h): all its SQL, and the
 * reading of their results by column name into typed rows.
 *
 * Plans: a batch is a few rows joined to tables by their keys, and must
 * stay index probes however big the tables grow. PostgreSQL guesses 100
 * rows for jsonb_to_recordset(), and with that it scans and hashes a whole
 * table (or all of a consumer's processed events) until the table is far
 * bigger than 100 probes - a cost that grows with the table. So the rows
 * come through sluice_batch() (migration 0004: estimated at 10), the
 * processed-event check is kept a probe per row ("OFFSET 0" stops it being
 * turned into a join), and the worker's connections do not choose
 * sequential scans (SL_DB_KEY_LOOKUPS): a plan prepared while a table was small
 * would otherwise scan it for ever after.
 */
#include "wk_store.h"
#include "sl_db.h"
#include "sl_event.h"
#include "sl_outbox.h"

#include <stdlib.h>
#include <string.h>

/* Starts. A request whose event id was processed already starts nothing:
 * it was either redelivered (its run exists) or reuses another request's
 * id (no run: the caller dead-letters it). (OFFSET 0, as in the other
 * statements: a probe of the key per row, never an anti-join over the
 * whole table.) */
static const char *const starts_sql =
    "INSERT INTO runs (run_id, session_id, agent_id, user_id, status, input, messages) "
    "SELECT run_id, session_id, agent_id, user_id, 'running', input, messages "
    "FROM jsonb_to_recordset($1::jsonb) AS x(run_id text, session_id text, agent_id text, "
    "user_id text, input text, messages jsonb, event_id text) "
    "WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = $2 AND "
    "p.event_id = x.event_id OFFSET 0) "
    "ON CONFLICT (run_id) DO NOTHING RETURNING run_id";

/* The advisory locks of the agents with a limit: (WK_GATE_LOCK, the
 * hash of the agent id). */
#define WK_GATE_LOCK "7355611"

/* The agents whose runs a batch of starts holds to a limit ($1: their ids,
 * a JSON list), locked in one order: their counts below are then the last
 * word until the commit. */
#define GATE_LOCK_SQL                                                                        \
	"SELECT count(pg_advisory_xact_lock(" WK_GATE_LOCK ", hashtext(a))) FROM (SELECT a " \
	"FROM jsonb_array_elements_text($1::jsonb) AS a ORDER BY a) a"

/* Starts of agents with max_pending_approvals among others ("gate": the
 * agent's limit; "stack_gate": the whole stack's), after GATE_LOCK_SQL: of
 * an agent's new runs, only as many start as its limit leaves room for
 * beside its pending requirements and its runs started and not yet paused
 * or finished (run_gate, which each start joins); of all, only as many as
 * the stack's limit leaves room for beside every agent's; the rest are
 * answered "deferred". */
#define GATED_STARTS_SQL                                                                         \
	"WITH x AS (SELECT x.*, o.n FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS "    \
	"o(r, n), jsonb_to_record(o.r) AS x(run_id text, session_id text, agent_id text, "       \
	"user_id text, input text, messages jsonb, event_id text, gate int, stack_gate int)), "  \
	"fresh AS (SELECT x.*, row_number() OVER (PARTITION BY x.agent_id ORDER BY x.n) AS k "   \
	"FROM x WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = $2 AND "   \
	"p.event_id = x.event_id OFFSET 0) AND NOT EXISTS (SELECT 1 FROM runs u WHERE "          \
	"u.run_id = x.run_id OFFSET 0)), "                                                       \
	"room AS (SELECT a.agent_id, max(a.gate) - (SELECT count(*) FROM run_gate g WHERE "      \
	"g.agent_id = a.agent_id AND g.started_at > now() - interval '15 minutes') - "           \
	"(SELECT count(*) FROM requirements q JOIN runs u ON u.run_id = q.run_id WHERE "         \
	"q.status = 'pending' AND u.agent_id = a.agent_id) AS places FROM x a WHERE a.gate IS "  \
	"NOT NULL GROUP BY a.agent_id), "                                                        \
	"stack_room AS (SELECT max(stack_gate) - (SELECT count(*) FROM run_gate g WHERE "        \
	"g.started_at > now() - interval '15 minutes') - (SELECT count(*) FROM requirements q "  \
	"WHERE q.status = 'pending') AS places FROM x WHERE stack_gate IS NOT NULL), "           \
	"agent_ok AS (SELECT f.*, row_number() OVER (ORDER BY f.n) AS kall FROM fresh f LEFT "   \
	"JOIN room r ON r.agent_id = f.agent_id WHERE f.gate IS NULL OR f.k <= r.places), "      \
	"admit AS (SELECT a.* FROM agent_ok a WHERE a.stack_gate IS NULL OR a.kall <= "          \
	"(SELECT places FROM stack_room)), "                                                     \
	"ins AS (INSERT INTO runs (run_id, session_id, agent_id, user_id, status, input, "       \
	"messages) SELECT run_id, session_id, agent_id, user_id, 'running', input, messages "    \
	"FROM admit ON CONFLICT (run_id) DO NOTHING RETURNING run_id, agent_id), "               \
	"held AS (INSERT INTO run_gate (run_id, agent_id) SELECT i.run_id, i.agent_id FROM "     \
	"ins i JOIN admit a ON a.run_id = i.run_id WHERE a.gate IS NOT NULL OR a.stack_gate IS " \
	"NOT NULL) "                                                                             \
	"SELECT run_id, false AS deferred FROM ins UNION ALL SELECT f.run_id, true FROM "        \
	"fresh f WHERE (f.gate IS NOT NULL OR f.stack_gate IS NOT NULL) AND NOT EXISTS "         \
	"(SELECT 1 FROM admit a WHERE a.run_id = f.run_id)"

sl_status wk_store_starts(PGconn *db, const char *rows, const char *gated, json_t **started,
                          json_t **deferred, char *errbuf, size_t errsize)
{
	const char *p[] = {rows, WK_CONSUMER};
	PGresult *res = NULL;
	sl_status st;

	*started = *deferred = NULL;
	if (!gated) {
		st = sl_db_exec(db, starts_sql, 2, p, &res, errbuf, errsize);
	} else if (!(st = sl_db_begin(db, errbuf, errsize)) &&
	           !(st = sl_db_exec(db, GATE_LOCK_SQL, 1, &gated, NULL, errbuf, errsize)) &&
	           !(st = sl_db_exec(db, GATED_STARTS_SQL, 2, p, &res, errbuf, errsize))) {
		st = sl_db_commit(db, errbuf, errsize);
	}
	if (gated)
		sl_db_rollback(db); /* nothing, after the commit */
	if (st) {
		PQclear(res);
		return st;
	}
	*started = json_object();
	*deferred = json_object();
	for (int i = 0; i < PQntuples(res); i++)
		json_object_set_new(gated && sl_db_bool(res, i, 1) ? *deferred : *started,
		                    PQgetvalue(res, i, 0), json_true());
	PQclear(res);
	return SL_OK;
}

sl_status wk_store_run_lock(PGconn *db, const char *run_id, bool *found, wk_stored_run *out,
                            char *errbuf, size_t errsize)
{
	static const char *const names[] = {"status", "agent_id", "messages"};
	const char *p[] = {run_id};
	int at[3];
	PGresult *res;
	sl_status st;

	memset(out, 0, sizeof(*out));
	*found = false;
	st = sl_db_exec(db,
	                "SELECT status, messages, agent_id FROM runs WHERE run_id = $1 FOR UPDATE",
	                1, p, &res, errbuf, errsize);
	if (st)
		return st;
	if (PQntuples(res) == 1 && !(st = sl_db_columns(res, names, 3, at, errbuf, errsize))) {
		*found = true;
		out->status = sl_db_value(res, 0, at[0]);
		out->agent_id = sl_db_value(res, 0, at[1]);
		out->messages = sl_db_value(res, 0, at[2]);
	}
	PQclear(res);
	return st;
}

void wk_stored_run_clear(wk_stored_run *r)
{
	free(r->status);
	free(r->agent_id);
	free(r->messages);
	memset(r, 0, sizeof(*r));
}

/*
 * What a continue reads: the requirements of its run's pause with their
 * decisions (one row each, in order; one row with a NULL req_id when there
 * are none) and on each row the run. Both reads name these columns, so
 * both are read alike (read_continue).
 */
#define CONTINUE_COLUMNS(run)                                                            \
	"q.id AS req_id, q.tool_call_id AS call_id, q.tool_name, q.tool_args, "          \
	"q.status AS req_status, q.confirmed, q.note, q.user_input, q.external_result, " \
	"q.edited_args, q.receipt, " run ".status AS run_status, " run ".messages, " run \
	".pause_seq, " run ".agent_id, " run ".session_id, " run ".user_id, " run ".claim_event"

enum {
	C_REQ_ID,
	C_CALL_ID,
	C_TOOL_NAME,
	C_TOOL_ARGS,
	C_REQ_STATUS,
	C_CONFIRMED,
	C_NOTE,
	C_USER_INPUT,
	C_EXTERNAL_RESULT,
	C_EDITED_ARGS,
	C_RECEIPT,
	C_RUN_STATUS,
	C_MESSAGES,
	C_PAUSE_SEQ,
	C_AGENT_ID,
	C_SESSION_ID,
	C_USER_ID,
	C_CLAIM_EVENT,
	C_PROCESSED,
	C_CLAIMED_TOOLS, /* the batched claim's only */
	C_I,
	C_N
};

static const char *const continue_names[C_N] = {
    "req_id",     "call_id",    "tool_name",   "tool_args",       "req_status",
    "confirmed",  "note",       "user_input",  "external_result", "edited_args",
    "receipt",    "run_status", "messages",    "pause_seq",       "agent_id",
    "session_id", "user_id",    "claim_event", "processed",       "claimed_tools",
    "i"};

/* Reads rows [from, to) of res (columns at at) into c. */
static void read_continue(const PGresult *res, const int *at, int from, int to, wk_continue *c)
{
	memset(c, 0, sizeof(*c));
	c->run_status = sl_db_value(res, from, at[C_RUN_STATUS]);
	c->messages = sl_db_value(res, from, at[C_MESSAGES]);
	c->pause_seq = sl_db_value(res, from, at[C_PAUSE_SEQ]);
	c->agent_id = sl_db_value(res, from, at[C_AGENT_ID]);
	c->session_id = sl_db_value(res, from, at[C_SESSION_ID]);
	c->user_id = sl_db_value(res, from, at[C_USER_ID]);
	c->claim_event = sl_db_value(res, from, at[C_CLAIM_EVENT]);
	c->processed = sl_db_bool(res, from, at[C_PROCESSED]);
	if (PQgetisnull(res, from, at[C_REQ_ID]))
		return; /* a pause without requirements */
	c->decisions = sl_calloc((size_t)(to - from), sizeof(*c->decisions));
	for (int row = from; row < to; row++) {
		wk_decision *d = &c->decisions[c->ndecisions++];
		d->id = sl_db_value(res, row, at[C_REQ_ID]);
		d->call_id = sl_db_value(res, row, at[C_CALL_ID]);
		d->tool_name = sl_db_value(res, row, at[C_TOOL_NAME]);
		d->tool_args = sl_db_value(res, row, at[C_TOOL_ARGS]);
		d->status = sl_db_value(res, row, at[C_REQ_STATUS]);
		d->confirmed = sl_db_bool(res, row, at[C_CONFIRMED]);
		d->note = sl_db_value(res, row, at[C_NOTE]);
		d->user_input = sl_db_value(res, row, at[C_USER_INPUT]);
		d->external_result = sl_db_value(res, row, at[C_EXTERNAL_RESULT]);
		d->edited_args = sl_db_value(res, row, at[C_EDITED_ARGS]);
		d->receipt = sl_db_value(res, row, at[C_RECEIPT]);
	}
}

void wk_decisions_free(wk_decision *d, int n)
{
	for (int i = 0; i < n; i++) {
		free(d[i].id);
		free(d[i].call_id);
		free(d[i].tool_name);
		free(d[i].tool_args);
		free(d[i].status);
		free(d[i].note);
		free(d[i].user_input);
		free(d[i].external_result);
		free(d[i].edited_args);
		free(d[i].receipt);
	}
	free(d);
}

void wk_continue_clear(wk_continue *c)
{
	free(c->run_status);
	free(c->messages);
	free(c->pause_seq);
	free(c->agent_id);
	free(c->session_id);
	free(c->user_id);
	free(c->claim_event);
	wk_decisions_free(c->decisions, c->ndecisions);
	json_decref(c->claimed_tools);
	memset(c, 0, sizeof(*c));
}

/*
 * Continues' claims, several in one statement. Each row of $1 claims its
 * run as wk_store_claims() says; of two continues of one run, one claims
 * it. The run moves to running and the tool runs its decisions make are
 * claimed in tool_executions (confirmed, not expired, no external result,
 * the tool configured for the agent: $3). Returns, for each claimed row,
 * the continue's columns, the call ids claimed and i.
 */
static const char *const claims_sql =
    "WITH x AS (SELECT x.* FROM sluice_batch($1::jsonb) AS b(r), jsonb_to_record(b.r) AS "
    "x(i int, run_id text, event_id text, ids jsonb)), "
    "u AS (SELECT x.i, x.event_id, u.run_id, u.pause_seq FROM x JOIN runs u "
    "ON u.run_id = x.run_id WHERE u.status = 'paused' "
    "AND jsonb_typeof(u.messages) = 'array' AND $3::jsonb ? u.agent_id "
    "AND NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = $2 "
    "AND p.event_id = x.event_id OFFSET 0) "
    "AND NOT EXISTS (SELECT 1 FROM requirements q WHERE q.run_id = u.run_id "
    "AND q.pause_seq = u.pause_seq AND (q.status = 'pending' OR NOT x.ids ? q.id)) "
    "AND (SELECT count(*) FROM requirements q WHERE q.run_id = u.run_id "
    "AND q.pause_seq = u.pause_seq) = jsonb_array_length(x.ids) "
    "AND (SELECT count(DISTINCT e) FROM jsonb_array_elements_text(x.ids) AS e) = "
    "jsonb_array_length(x.ids)), "
    "c AS (UPDATE runs r SET status = 'running', claim_event = u.event_id, "
    "version = r.version + 1, updated_at = now() FROM u WHERE r.run_id = u.run_id "
    "AND r.status = 'paused' AND r.pause_seq = u.pause_seq "
    "RETURNING u.i, r.run_id, r.status, r.messages, r.pause_seq, r.agent_id, r.session_id, "
    "r.user_id, r.claim_event), "
    "t AS (INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status) "
    "SELECT q.run_id, q.tool_call_id, q.tool_name, 'started' FROM c JOIN requirements q "
    "ON q.run_id = c.run_id AND q.pause_seq = c.pause_seq WHERE q.status <> 'expired' "
    "AND q.confirmed AND q.external_result IS NULL AND ($3::jsonb -> c.agent_id) ? q.tool_name "
    "ON CONFLICT DO NOTHING RETURNING run_id, tool_call_id) "
    "SELECT " CONTINUE_COLUMNS(
        "c") ", false AS processed, "
             "(SELECT coalesce(json_agg(t.tool_call_id), '[]') FROM t WHERE t.run_id = c.run_id) "
             "AS claimed_tools, c.i "
             "FROM c LEFT JOIN requirements q ON q.run_id = c.run_id AND q.pause_seq = c.pause_seq "
             "ORDER BY c.i, q.position";

sl_status wk_store_claims(PGconn *db, const char *rows, const char *agent_tools, size_t n,
                          wk_continue *out, bool *claimed, char *errbuf, size_t errsize)
{
	const char *p[] = {rows, WK_CONSUMER, agent_tools};
	int at[C_N];
	PGresult *res;
	sl_status st;

	for (size_t i = 0; i < n; i++)
		claimed[i] = false;
	if ((st = sl_db_exec(db, claims_sql, 3, p, &res, errbuf, errsize)))
		return st;
	if (PQntuples(res) && (st = sl_db_columns(res, continue_names, C_N, at, errbuf, errsize))) {
		PQclear(res);
		return st;
	}
	for (int row = 0; row < PQntuples(res);) {
		long i = strtol(PQgetvalue(res, row, at[C_I]), NULL, 10);
		int end = row + 1;

		while (end < PQntuples(res) &&
		       !strcmp(PQgetvalue(res, end, at[C_I]), PQgetvalue(res, row, at[C_I])))
			end++;
		if (i >= 0 && (size_t)i < n && !claimed[i]) {
			read_continue(res, at, row, end, &out[i]);
			out[i].claimed_tools =
			    json_loads(PQgetvalue(res, row, at[C_CLAIMED_TOOLS]), 0, NULL);
			claimed[i] = true;
		}
		row = end;
	}
	PQclear(res);
	return SL_OK;
}

sl_status wk_store_continue_lock(PGconn *db, const char *run_id, const char *event_id, bool *found,
                                 wk_continue *out, char *errbuf, size_t errsize)
{
	const char *p[] = {run_id, WK_CONSUMER, event_id};
	int at[C_N];
	PGresult *res;
	sl_status st;

	memset(out, 0, sizeof(*out));
	*found = false;
	/* whoever is changing the run finishes first, and the read (a
	 * statement of its own) sees what they did */
	if ((st = sl_db_exec(db, "SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE", 1, p, NULL,
	                     errbuf, errsize)))
		return st;
	st = sl_db_exec(
	    db,
	    "SELECT " CONTINUE_COLUMNS(
	        "u") ", EXISTS (SELECT 1 FROM processed_events "
	             "WHERE consumer = $2 AND event_id = $3) AS processed "
	             "FROM runs u LEFT JOIN requirements q ON q.run_id = u.run_id "
	             "AND q.pause_seq = u.pause_seq WHERE u.run_id = $1 ORDER BY q.position",
	    3, p, &res, errbuf, errsize);
	if (st)
		return st;
	if (PQntuples(res) &&
	    !(st = sl_db_columns(res, continue_names, C_PROCESSED + 1, at, errbuf, errsize))) {
		read_continue(res, at, 0, PQntuples(res), out);
		*found = true;
	}
	PQclear(res);
	return st;
}

/* The claim of a continue checked under its run's lock. */
static const char *const claim_sql =
    "WITH c AS (UPDATE runs u SET status = 'running', claim_event = $3, "
    "version = u.version + 1, updated_at = now() "
    "WHERE u.run_id = $1 AND u.status = 'paused' AND u.pause_seq = $2::int "
    "RETURNING u.run_id), "
    "t AS (INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status) "
    "SELECT c.run_id, y.call_id, y.tool_name, 'started' FROM c, "
    "jsonb_to_recordset($4::jsonb) AS y(call_id text, tool_name text) "
    "ON CONFLICT DO NOTHING RETURNING tool_call_id) "
    "SELECT (SELECT coalesce(json_agg(tool_call_id), '[]') FROM t) FROM c";

sl_status wk_store_claim(PGconn *db, const char *run_id, const char *pause_seq,
                         const char *event_id, const char *tools, json_t **claimed, char *errbuf,
                         size_t errsize)
{
	const char *p[] = {run_id, pause_seq, event_id, tools};
	PGresult *res;
	sl_status st;

	*claimed = NULL;
	if ((st = sl_db_exec(db, claim_sql, 4, p, &res, errbuf, errsize)))
		return st;
	if (PQntuples(res) == 1)
		*claimed = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	PQclear(res);
	return SL_OK;
}

sl_status wk_store_tool_claim(PGconn *db, const char *run_id, const char *call_id,
                              const char *tool_name, bool *run, char **result, char *errbuf,
                              size_t errsize)
{
	const char *p[] = {run_id, call_id, tool_name};
	PGresult *res;
	sl_status st;

	*result = NULL;
	st = sl_db_insert_once(
	    db,
	    "INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status) "
	    "VALUES ($1, $2, $3, 'started') ON CONFLICT DO NOTHING",
	    3, p, run, errbuf, errsize);
	if (st || *run)
		return st;
	st = sl_db_exec(db,
	                "SELECT result FROM tool_executions "
	                "WHERE run_id = $1 AND tool_call_id = $2 AND status = 'done'",
	                2, p, &res, errbuf, errsize);
	if (st)
		return st;
	*result = sl_db_value(res, 0, 0);
	if (PQntuples(res) && !*result)
		*result = sl_strdup(""); /* done, with no output */
	PQclear(res);
	return SL_OK;
}

/* Who the worker's ledger entries name. */
#define WK_LEDGER_ACTOR "'sluice-worker'"

/* Each result recorded, and for a gated call (one with a requirement) a
 * tool.executed ledger entry with the SHA-256 of its result. */
static const char *const tool_results_sql =
    "WITH d AS (UPDATE tool_executions e SET status = 'done', result = x.result, "
    "finished_at = now() FROM sluice_batch($1::jsonb) AS b(r), "
    "jsonb_to_record(b.r) AS x(run_id text, call_id text, result text) "
    "WHERE e.run_id = x.run_id AND e.tool_call_id = x.call_id AND e.status = 'started' "
    "RETURNING e.run_id, e.tool_call_id, e.tool_name, e.result) "
    "INSERT INTO ledger_queue (kind, run_id, requirement_id, actor, body) "
    "SELECT 'tool.executed', d.run_id, q.id, " WK_LEDGER_ACTOR ", jsonb_build_object("
    "'tool_call_id', d.tool_call_id, 'tool_name', d.tool_name, 'result_sha256', "
    "encode(sha256(convert_to(coalesce(d.result, ''), 'UTF8')), 'hex')) "
    "FROM d JOIN requirements q ON q.run_id = d.run_id AND q.tool_call_id = d.tool_call_id";

/*
 * Tool results, several in one statement, committed durably (the commit
 * waits for the disk). The tool has acted: a result lost in a crash of
 * PostgreSQL would leave the call claimed and unrecorded, and the run
 * would go on as if it might not have run. Committed without waiting, 34
 * calls that had run were reported so after six kill -9s of PostgreSQL
 * under load; waiting costs a run alone about 1 ms and a saturated worker
 * nothing measurable (the flush is shared by the batch; BENCHMARKS.md).
 */
sl_status wk_store_tool_refused(PGconn *db, const char *run_id, const char *call_id,
                                const char *requirement_id, const char *tool_name,
                                const char *output, const char *why, char *errbuf, size_t errsize)
{
	const char *p[] = {run_id, call_id, output, requirement_id, tool_name, why};

	return sl_db_exec(db,
	                  "WITH d AS (UPDATE tool_executions SET status = 'done', result = $3, "
	                  "finished_at = now() WHERE run_id = $1 AND tool_call_id = $2 AND "
	                  "status = 'started' RETURNING run_id) "
	                  "INSERT INTO ledger_queue (kind, run_id, requirement_id, actor, body) "
	                  "SELECT 'tool.refused', $1, $4, " WK_LEDGER_ACTOR ", jsonb_build_object("
	                  "'tool_call_id', $2::text, 'tool_name', $5::text, 'reason', $6::text) "
	                  "FROM d",
	                  6, p, NULL, errbuf, errsize);
}

sl_status wk_store_tool_results(PGconn *db, const char *rows, char *errbuf, size_t errsize)
{
	PGresult *res;
	sl_status st =
	    sl_db_exec(db, tool_results_sql, 1, (const char *[]){rows}, &res, errbuf, errsize);

	if (st == SL_OK)
		PQclear(res);
	return st;
}

/*
 * Pauses and finishes: one statement (one implicit transaction) writes the
 * outcomes of several runs at once - group commit. For each run: its new
 * state, the consumed event and the outbox row, and for a pause its
 * requirements and a pending approval for each of type "required" (an
 * "audit" one is written only when it is resolved). A run whose event had
 * its effect before, or that is no longer running, is left alone. The
 * outbox row has a lease ($4, SL_OUTBOX_LEASE) within which its writer
 * publishes it.
 */
static const char *const pauses_sql =
    "WITH x AS (SELECT x.* FROM sluice_batch($1::jsonb) AS b(r), jsonb_to_record(b.r) AS "
    "x(run_id text, messages jsonb, "
    "event_id text, payload text, reqs jsonb, gated boolean)), "
    "ungate AS (DELETE FROM run_gate g USING x WHERE x.gated AND g.run_id = x.run_id), "
    "upd AS (UPDATE runs r SET status = 'paused', messages = x.messages, "
    "pause_seq = r.pause_seq + 1, version = r.version + 1, updated_at = now() FROM x "
    "WHERE r.run_id = x.run_id AND r.status = 'running' AND NOT EXISTS "
    "(SELECT 1 FROM processed_events p WHERE p.consumer = $2 AND p.event_id = x.event_id "
    "OFFSET 0) "
    "RETURNING r.run_id, r.session_id, r.agent_id, r.user_id, r.status, r.pause_seq, "
    "x.event_id, x.payload, x.reqs), "
    "claim AS (INSERT INTO processed_events (consumer, event_id) SELECT $2, event_id FROM upd), "
    "reqs AS (INSERT INTO requirements (id, run_id, pause_seq, position, tool_call_id, "
    "tool_name, tool_args, needs_confirmation, needs_user_input, user_input_schema, "
    "external_execution, approval_type, expires_at, tool_schema, deciders) "
    "SELECT q.id, upd.run_id, upd.pause_seq, q.position, q.tool_call_id, q.tool_name, "
    "q.tool_args, q.needs_confirmation, q.needs_user_input, q.user_input_schema, "
    "q.external_execution, q.approval_type, now() + make_interval(secs => q.timeout_s), "
    "q.tool_schema, q.deciders FROM upd, jsonb_to_recordset(upd.reqs) AS q(id text, "
    "position int, tool_call_id text, tool_name text, tool_args jsonb, needs_confirmation "
    "boolean, needs_user_input boolean, user_input_schema jsonb, external_execution "
    "boolean, approval_type text, timeout_s int, tool_schema jsonb, deciders jsonb) "
    "RETURNING id, run_id, approval_type, pause_type, tool_name, tool_args, expires_at, "
    "tool_call_id), "
    "led AS (INSERT INTO ledger_queue (kind, run_id, requirement_id, actor, body) "
    "SELECT 'requirement.created', q.run_id, q.id, " WK_LEDGER_ACTOR ", "
    "jsonb_build_object('tool_call_id', q.tool_call_id, 'tool_name', q.tool_name, "
    "'tool_args', q.tool_args, 'pause_type', q.pause_type, 'approval_type', "
    "q.approval_type, 'expires_at', q.expires_at) FROM reqs q), "
    "aid AS (SELECT q.id, q.approval_id FROM upd, jsonb_to_recordset(upd.reqs) AS "
    "q(id text, approval_id text)), "
    "appr AS (INSERT INTO approvals (id, run_id, session_id, requirement_id, agent_id, "
    "user_id, approval_type, pause_type, status, tool_name, tool_args, expires_at, "
    "run_status) SELECT aid.approval_id, q.run_id, upd.session_id, q.id, "
    "upd.agent_id, upd.user_id, 'required', q.pause_type, 'pending', q.tool_name, "
    "q.tool_args, q.expires_at, upd.status FROM reqs q JOIN upd ON upd.run_id = q.run_id "
    "JOIN aid ON aid.id = q.id "
    "WHERE q.approval_type = 'required'), "
    "ob AS (INSERT INTO outbox (topic, key, payload, relay_after) SELECT $3, run_id, payload, "
    "now() + $4::interval FROM upd RETURNING id, topic, key, payload) "
    "SELECT upd.event_id, ob.id, ob.topic, ob.key, ob.payload FROM upd "
    "JOIN ob ON ob.key = upd.run_id";

static const char *const finishes_sql =
    "WITH x AS (SELECT x.* FROM sluice_batch($1::jsonb) AS b(r), jsonb_to_record(b.r) AS "
    "x(run_id text, status text, "
    "output text, error text, messages jsonb, event_id text, payload text, gated boolean)), "
    "ungate AS (DELETE FROM run_gate g USING x WHERE x.gated AND g.run_id = x.run_id), "
    "upd AS (UPDATE runs r SET status = x.status, output = x.output, error = x.error, "
    "messages = x.messages, version = r.version + 1, updated_at = now() FROM x "
    "WHERE r.run_id = x.run_id AND r.status = 'running' AND NOT EXISTS "
    "(SELECT 1 FROM processed_events p WHERE p.consumer = $2 AND p.event_id = x.event_id "
    "OFFSET 0) "
    "RETURNING r.run_id, x.event_id, x.payload), "
    "claim AS (INSERT INTO processed_events (consumer, event_id) SELECT $2, event_id FROM upd), "
    "ob AS (INSERT INTO outbox (topic, key, payload, relay_after) SELECT $3, run_id, "
    "jsonb_set(payload::jsonb, '{data,decisions}', " SL_DECISIONS_JSON(
        "upd.run_id") ")::text, now() + $4::interval FROM upd RETURNING id, topic, key, payload) "
                      "SELECT upd.event_id, ob.id, ob.topic, ob.key, ob.payload FROM upd "
                      "JOIN ob ON ob.key = upd.run_id";

static sl_status write_outcomes(PGconn *db, const char *sql, const char *rows, const char *topic,
                                PGresult **res, char *errbuf, size_t errsize)
{
	const char *p[] = {rows, WK_CONSUMER, topic, SL_OUTBOX_LEASE};

	return sl_db_exec(db, sql, 4, p, res, errbuf, errsize);
}

sl_status wk_store_pauses(PGconn *db, const char *rows, const char *topic, PGresult **res,
                          char *errbuf, size_t errsize)
{
	return write_outcomes(db, pauses_sql, rows, topic, res, errbuf, errsize);
}

sl_status wk_store_finishes(PGconn *db, const char *rows, const char *topic, PGresult **res,
                            char *errbuf, size_t errsize)
{
	return write_outcomes(db, finishes_sql, rows, topic, res, errbuf, errsize);
}

sl_status wk_store_processed(PGconn *db, const char *event_id, bool *processed, char *errbuf,
                             size_t errsize)
{
	const char *p[] = {WK_CONSUMER, event_id};
	PGresult *res;
	sl_status st;

	*processed = false;
	st = sl_db_exec(db, "SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2",
	                2, p, &res, errbuf, errsize);
	if (st)
		return st;
	*processed = PQntuples(res) > 0;
	PQclear(res);
	return SL_OK;
}
