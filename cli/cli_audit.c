/*
 * cli_audit.c - sluice audit verify: recomputes the ledger's hash chain
 * from the database (sl_ledger.h) and names the first entry that does not
 * match.
 */
#include "cli.h"
#include "sl_db.h"
#include "sl_ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Entries read at a time. */
#define PAGE "10000"

static const char *value(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* Checks the whole chain on db; 0 when it holds, 1 when it does not. */
static int verify_db(PGconn *db)
{
	sl_ledger_check c;
	char errbuf[512], after[24];
	bool ok = true;
	int got;

	sl_ledger_check_init(&c);
	do {
		const char *p[] = {after};
		PGresult *res;

		snprintf(after, sizeof(after), "%lld", c.seq);
		if (sl_db_exec(
		        db,
		        "SELECT seq, kind, at, run_id, requirement_id, actor, body::text, hash "
		        "FROM ledger WHERE seq > $1::bigint ORDER BY seq LIMIT " PAGE,
		        1, p, &res, errbuf, sizeof(errbuf))) {
			fprintf(stderr, "sluice audit verify: %s\n", errbuf);
			return 2;
		}
		got = PQntuples(res);
		for (int i = 0; i < got && ok; i++)
			ok = sl_ledger_check_next(
			    &c, strtoll(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1),
			    PQgetvalue(res, i, 2), value(res, i, 3), value(res, i, 4),
			    PQgetvalue(res, i, 5), PQgetvalue(res, i, 6), PQgetvalue(res, i, 7));
		PQclear(res);
	} while (ok && got > 0);
	if (!ok) {
		printf("ledger: %s; the %lld entries before it hold\n", c.err, c.seq);
		return 1;
	}
	printf("ledger: %lld entries, every hash holds; head %s\n", c.seq, c.head);
	return 0;
}

int cli_audit(sl_config *cfg, int argc, char **argv)
{
	static const char *required[] = {"SLUICE_DATABASE_URL", NULL};
	char errbuf[512];
	PGconn *db;
	int rc;

	if (argc != 1 || strcmp(argv[0], "verify")) {
		fprintf(stderr, "usage: sluice audit verify\n");
		return 2;
	}
	if (sl_config_require(cfg, required, errbuf, sizeof(errbuf)) ||
	    !(db = sl_db_connect(cfg->database_url, errbuf, sizeof(errbuf)))) {
		fprintf(stderr, "sluice audit verify: %s\n", errbuf);
		return 2;
	}
	rc = verify_db(db);
	PQfinish(db);
	return rc;
}
