/*
 * sl_db.h - PostgreSQL access: connections, parameterised statements,
 * transactions, and the mapping of server errors onto sl_status.
 */
#ifndef SL_DB_H
#define SL_DB_H

#include "sl_common.h"

#include <jansson.h>
#include <libpq-fe.h>

/*
 * Session settings (sl_db_connect_with) for a connection whose statements
 * all find rows by key. Statements are prepared once per connection: a plan
 * made while the tables were small (a sequential scan is then the cheaper
 * guess) would be kept as they grow, and cost ever more. With sequential
 * scans off, plans probe indexes whatever the size. JIT is off too: a
 * statement that can only scan (none should) would otherwise carry the
 * planner's penalty cost and be JIT-compiled on every run (over 100 ms
 * each, measured), and a key lookup never gains from it.
 */
#define SL_DB_KEY_LOOKUPS "-c enable_seqscan=off -c jit=off"

/* Connects to url (a libpq URI). Returns NULL with the reason in errbuf.
 * The connection owns the statements it prepared (freed by PQfinish). */
PGconn *sl_db_connect(const char *url, char *errbuf, size_t errsize);

/* As sl_db_connect, with server settings for the session in options
 * (libpq's "options", e.g. "-c name=value"); they last through resets. */
PGconn *sl_db_connect_with(const char *url, const char *options, char *errbuf, size_t errsize);

/* Makes sure conn is usable, resetting it when the server went away or
 * ended it while it was idle (a restart: seen on the socket, no round
 * trip), so a request after a restart is not the one that finds out.
 * Returns SL_RETRY when it still is not usable. */
sl_status sl_db_ensure(PGconn *conn, char *errbuf, size_t errsize);

/*
 * Runs one parameterised statement (text parameters, NULL for SQL NULL).
 * On SL_OK, *res (when res is not NULL) holds the result: PQclear() it.
 * Errors are classed: lost connection, serialization failure and deadlock are
 * SL_RETRY; unique violations SL_CONFLICT; bad data SL_INVALID; the rest
 * SL_FATAL. The server's message comes after SL_DB_ERROR_PREFIX in errbuf:
 * it is for logs, not for a client.
 */
#define SL_DB_ERROR_PREFIX "database: "

sl_status sl_db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                     PGresult **res, char *errbuf, size_t errsize);

/* One statement of a pipeline: as sl_db_exec()'s arguments. */
typedef struct sl_db_stmt {
	const char *sql;
	int nparams;
	const char *const *params;
} sl_db_stmt;

/*
 * Runs n statements in one round trip (libpq's pipeline mode), in order, as
 * if each had been run by sl_db_exec(). On SL_OK res[i] holds each result
 * (PQclear() them). On failure every res[i] is NULL and the first error is
 * returned, classed as sl_db_exec() does; the statements after the failed
 * one did not run, and a transaction the pipeline opened is left aborted
 * (sl_db_rollback() ends it).
 */
sl_status sl_db_pipeline(PGconn *conn, size_t n, const sl_db_stmt *stmts, PGresult **res,
                         char *errbuf, size_t errsize);

/* Runs an INSERT ... ON CONFLICT DO NOTHING of one row; *inserted says
 * whether it inserted it (false: the row was there already). */
sl_status sl_db_insert_once(PGconn *conn, const char *sql, int nparams, const char *const *params,
                            bool *inserted, char *errbuf, size_t errsize);

sl_status sl_db_begin(PGconn *conn, char *errbuf, size_t errsize);
sl_status sl_db_commit(PGconn *conn, char *errbuf, size_t errsize);
/* Rolls back whatever transaction is open; never fails loudly. */
void sl_db_rollback(PGconn *conn);

/* Reads columns by name: at[i] is the place of column names[i] of res.
 * SL_FATAL, naming it, when one is missing (a statement that does not say
 * what its reader reads). */
sl_status sl_db_columns(const PGresult *res, const char *const *names, int n, int *at, char *errbuf,
                        size_t errsize);

/* A boolean value: true for "t", false for "f" and NULL. */
bool sl_db_bool(const PGresult *res, int row, int col);

/* The text of row, col, or NULL when NULL (it lives as long as res). */
const char *sl_db_text(const PGresult *res, int row, int col);

/* Returns a newly allocated copy of row 0 column col, or NULL when NULL. */
char *sl_db_value(const PGresult *res, int row, int col);

/* Runs sql with params and parses its single text column (row 0) as JSON.
 * Returns SL_NOT_FOUND when no row comes back. */
sl_status sl_db_query_json(PGconn *conn, const char *sql, int nparams, const char *const *params,
                           json_t **out, char *errbuf, size_t errsize);

/* Appends id to b, a bigint[] literal ("{1,2,3}") for an array parameter,
 * which sl_db_ids_end() closes; b's limit must hold 21 bytes an id. */
void sl_db_ids_add(sl_buf *b, long long id);
void sl_db_ids_end(sl_buf *b);

#endif
