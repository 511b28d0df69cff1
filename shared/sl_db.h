/*
 * sl_db.h - PostgreSQL access: connections, parameterised statements,
 * transactions, and the mapping of server errors onto sl_status.
 */
#ifndef SL_DB_H
#define SL_DB_H

#include "sl_common.h"

#include <jansson.h>
#include <libpq-fe.h>

/* Connects to url (a libpq URI). Returns NULL with the reason in errbuf. */
PGconn *sl_db_connect(const char *url, char *errbuf, size_t errsize);

/* As sl_db_connect, with server settings for the session in options
 * (libpq's "options", e.g. "-c name=value"); they last through resets. */
PGconn *sl_db_connect_with(const char *url, const char *options, char *errbuf, size_t errsize);

/* Makes sure conn is usable, resetting it when the server went away.
 * Returns SL_RETRY when it still is not. */
sl_status sl_db_ensure(PGconn *conn, char *errbuf, size_t errsize);

/*
 * Runs one parameterised statement (text parameters, NULL for SQL NULL).
 * On SL_OK, *res (when res is not NULL) holds the result: PQclear() it.
 * Errors are classed: lost connection, serialization failure and deadlock are
 * SL_RETRY; unique violations SL_CONFLICT; bad data SL_INVALID; the rest
 * SL_FATAL.
 */
sl_status sl_db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                     PGresult **res, char *errbuf, size_t errsize);

sl_status sl_db_begin(PGconn *conn, char *errbuf, size_t errsize);
sl_status sl_db_commit(PGconn *conn, char *errbuf, size_t errsize);
/* Rolls back whatever transaction is open; never fails loudly. */
void sl_db_rollback(PGconn *conn);

/* Returns a newly allocated copy of row 0 column col, or NULL when NULL. */
char *sl_db_value(const PGresult *res, int row, int col);

/* Runs sql with params and parses its single text column (row 0) as JSON.
 * Returns SL_NOT_FOUND when no row comes back. */
sl_status sl_db_query_json(PGconn *conn, const char *sql, int nparams, const char *const *params,
                           json_t **out, char *errbuf, size_t errsize);

#endif
