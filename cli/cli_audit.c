/*
 * cli_audit.c - the audit ledger from the command line:
 *   sluice audit verify [--keys JWKS]               against the database
 *   sluice audit verify --file EXPORT --keys JWKS   offline
 *   sluice audit export [--since TIME] [--until TIME]
 * Verification recomputes the hash chain (sl_ledger.h), checks every
 * signed checkpoint against the keys and the chain, and names the first
 * entry that does not match.
 */
#include "cli.h"
#include "sl_db.h"
#include "sl_ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Entries read from the database at a time. */
#define PAGE "10000"
/* A line of an export: an entry's body is bounded by its row. */
#define MAX_LINE (64 * 1024 * 1024)

/* A checkpoint, opened: its size and head, who signed it. */
typedef struct point {
	long long size;
	char head[65];
} point;

/* What a verification has seen so far. */
typedef struct audit {
	sl_ledger_check chain;
	const sl_keyset *keys; /* NULL: no checkpoint may be given */
	point *points;         /* sorted by size */
	size_t npoints, next;  /* next: the first not yet reached */
	bool failed;
	char why[1024];
} audit;

static int by_size(const void *a, const void *b)
{
	const point *x = a, *y = b;

	return x->size < y->size ? -1 : x->size > y->size;
}

/* Opens a checkpoint note; false (a.why) when it does not verify. */
static bool add_point(audit *a, const char *note)
{
	char errbuf[512];
	point p;

	if (!a->keys) {
		snprintf(a->why, sizeof(a->why),
		         "the ledger has signed checkpoints: give the keys (--keys JWKS or "
		         "SLUICE_RECEIPT_KEYS) to check them");
		return false;
	}
	if (sl_ledger_checkpoint_open(a->keys, note, &p.size, p.head, errbuf, sizeof(errbuf))) {
		snprintf(a->why, sizeof(a->why), "%s", errbuf);
		return false;
	}
	a->points = sl_realloc(a->points, (a->npoints + 1) * sizeof(*a->points));
	a->points[a->npoints++] = p;
	return true;
}

/* After the checkpoints are in: sorted, those before the first entry to
 * come skipped (an export that starts later). */
static void points_ready(audit *a)
{
	if (a->npoints)
		qsort(a->points, a->npoints, sizeof(*a->points), by_size);
	while (a->next < a->npoints && a->points[a->next].size <= a->chain.seq)
		a->next++;
}

/* The next entry: the chain, then any checkpoint of its size. */
static bool add_entry(audit *a, long long seq, const char *kind, const char *at, const char *run_id,
                      const char *requirement_id, const char *actor, const char *body,
                      const char *hash)
{
	if (!sl_ledger_check_next(&a->chain, seq, kind, at, run_id, requirement_id, actor, body,
	                          hash)) {
		snprintf(a->why, sizeof(a->why), "%s", a->chain.err);
		return false;
	}
	for (; a->next < a->npoints && a->points[a->next].size == seq; a->next++)
		if (strcmp(a->points[a->next].head, a->chain.head)) {
			snprintf(
			    a->why, sizeof(a->why),
			    "entry %lld does not match the checkpoint signed for %lld entries: the "
			    "ledger was rewritten at or before entry %lld",
			    seq, seq, seq);
			return false;
		}
	return true;
}

/* The verdict, once every entry is in; the exit code. */
static int finish(audit *a, bool ok)
{
	if (ok && a->next < a->npoints) {
		snprintf(a->why, sizeof(a->why),
		         "the ledger ends at entry %lld, but a checkpoint was signed for %lld "
		         "entries: entries after %lld were removed",
		         a->chain.seq, a->points[a->npoints - 1].size, a->chain.seq);
		ok = false;
	}
	if (!ok) {
		printf("ledger: %s\n", a->why);
		return 1;
	}
	printf("ledger: %lld entries, every hash holds, %zu signed checkpoint(s) match; head %s\n",
	       a->chain.seq, a->npoints, a->chain.head);
	return 0;
}

static int verify_db(PGconn *db, audit *a)
{
	char errbuf[512], after[24];
	PGresult *res;
	bool ok = true;
	int got;

	if (sl_db_exec(db, "SELECT note FROM ledger_checkpoints ORDER BY tree_size", 0, NULL, &res,
	               errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice audit verify: %s\n", errbuf);
		return 2;
	}
	for (int i = 0; i < PQntuples(res) && ok; i++)
		ok = add_point(a, PQgetvalue(res, i, 0));
	PQclear(res);
	if (!ok)
		return finish(a, false);
	points_ready(a);
	do {
		snprintf(after, sizeof(after), "%lld", a->chain.seq);
		if (sl_db_exec(
		        db,
		        "SELECT seq, kind, at, run_id, requirement_id, actor, body::text, hash "
		        "FROM ledger WHERE seq > $1::bigint ORDER BY seq LIMIT " PAGE,
		        1, (const char *[]){after}, &res, errbuf, sizeof(errbuf))) {
			fprintf(stderr, "sluice audit verify: %s\n", errbuf);
			return 2;
		}
		got = PQntuples(res);
		for (int i = 0; i < got && ok; i++)
			ok = add_entry(
			    a, strtoll(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1),
			    PQgetvalue(res, i, 2), sl_db_text(res, i, 3), sl_db_text(res, i, 4),
			    PQgetvalue(res, i, 5), PQgetvalue(res, i, 6), PQgetvalue(res, i, 7));
		PQclear(res);
	} while (ok && got > 0);
	return finish(a, ok);
}

/* The lines of an export, each parsed; NULL at the end. */
static json_t *next_line(FILE *f, char **buf, size_t *size, long *lineno, bool *bad)
{
	ssize_t n;

	while ((n = getline(buf, size, f)) > 0) {
		json_t *v;
		(*lineno)++;
		if (n == 1)
			continue;
		if (n > MAX_LINE ||
		    !(v = json_loadb(*buf, (size_t)n, JSON_DECODE_INT_AS_REAL, NULL)) ||
		    !json_is_object(v)) {
			*bad = true;
			return NULL;
		}
		return v;
	}
	return NULL;
}

static const char *text_of(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* An export: a start line, the entries in order, then the checkpoints. */
static int verify_file(const char *path, audit *a)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t size = 0;
	long lineno = 0;
	bool bad = false, ok = true;
	json_t *v, **entries = NULL;
	size_t n = 0;
	int rc;

	if (!f) {
		perror(path);
		return 2;
	}
	while (ok && (v = next_line(f, &buf, &size, &lineno, &bad))) {
		const char *type = text_of(v, "type");
		if (type && !strcmp(type, "start") && lineno == 1 &&
		    json_is_number(json_object_get(v, "after_seq")) && text_of(v, "prev_hash") &&
		    strlen(text_of(v, "prev_hash")) == 64) {
			a->chain.seq =
			    (long long)json_number_value(json_object_get(v, "after_seq"));
			snprintf(a->chain.head, sizeof(a->chain.head), "%s",
			         text_of(v, "prev_hash"));
			json_decref(v);
		} else if (type && !strcmp(type, "checkpoint") && text_of(v, "note")) {
			ok = add_point(a, text_of(v, "note"));
			json_decref(v);
		} else if (type && !strcmp(type, "entry")) {
			entries = sl_realloc(entries, (n + 1) * sizeof(*entries));
			entries[n++] = v;
		} else {
			json_decref(v);
			bad = true;
			break;
		}
	}
	fclose(f);
	free(buf);
	if (bad) {
		fprintf(stderr, "sluice audit verify: %s: line %ld is not a line of an export\n",
		        path, lineno);
		rc = 2;
		goto out;
	}
	if (ok) {
		points_ready(a);
		for (size_t i = 0; i < n && ok; i++) {
			const json_t *e = entries[i];
			char *body = json_dumps(json_object_get(e, "body"), JSON_COMPACT);
			ok = add_entry(a, (long long)json_number_value(json_object_get(e, "seq")),
			               text_of(e, "kind") ? text_of(e, "kind") : "",
			               text_of(e, "at") ? text_of(e, "at") : "",
			               text_of(e, "run_id"), text_of(e, "requirement_id"),
			               text_of(e, "actor") ? text_of(e, "actor") : "",
			               body ? body : "null",
			               text_of(e, "hash") ? text_of(e, "hash") : "");
			free(body);
		}
	}
	rc = finish(a, ok);
out:
	for (size_t i = 0; i < n; i++)
		json_decref(entries[i]);
	free(entries);
	return rc;
}

/* Writes the entries from the first at or after since to the last before
 * until (contiguous: an entry's time is when it was queued), after a start
 * line, then the checkpoints of their sizes. */
static int export(PGconn *db, const char *since, const char *until)
{
	const char *p[] = {since, until};
	char errbuf[512], first[24], last[24];
	PGresult *res;
	long long from, to, seq;

	if (sl_db_exec(db,
	               "SELECT coalesce((SELECT min(seq) FROM ledger WHERE $1::timestamptz IS NULL "
	               "OR at::timestamptz >= $1::timestamptz), 0), "
	               "coalesce((SELECT max(seq) FROM ledger WHERE $2::timestamptz IS NULL OR "
	               "at::timestamptz < $2::timestamptz), 0)",
	               2, p, &res, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice audit export: %s\n", errbuf);
		return 2;
	}
	from = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	to = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (from == 0 || to < from) {
		from = 1;
		to = 0; /* nothing */
	}
	snprintf(first, sizeof(first), "%lld", from - 1);
	if (sl_db_exec(db, "SELECT hash FROM ledger WHERE seq = $1::bigint", 1,
	               (const char *[]){first}, &res, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice audit export: %s\n", errbuf);
		return 2;
	}
	printf("{\"type\":\"start\",\"after_seq\":%lld,\"prev_hash\":\"%s\"}\n", from - 1,
	       PQntuples(res) ? PQgetvalue(res, 0, 0) : SL_LEDGER_GENESIS);
	PQclear(res);
	for (seq = from - 1; seq < to;) {
		snprintf(first, sizeof(first), "%lld", seq);
		snprintf(last, sizeof(last), "%lld", to);
		if (sl_db_exec(
		        db,
		        "SELECT json_build_object('type', 'entry', 'seq', seq, 'kind', kind, "
		        "'at', at, 'run_id', run_id, 'requirement_id', requirement_id, "
		        "'actor', actor, 'body', body, 'hash', hash)::text, seq FROM ledger "
		        "WHERE seq > $1::bigint AND seq <= $2::bigint ORDER BY seq LIMIT " PAGE,
		        2, (const char *[]){first, last}, &res, errbuf, sizeof(errbuf))) {
			fprintf(stderr, "sluice audit export: %s\n", errbuf);
			return 2;
		}
		for (int i = 0; i < PQntuples(res); i++)
			printf("%s\n", PQgetvalue(res, i, 0));
		if (!PQntuples(res)) {
			PQclear(res);
			break;
		}
		seq = strtoll(PQgetvalue(res, PQntuples(res) - 1, 1), NULL, 10);
		PQclear(res);
	}
	snprintf(first, sizeof(first), "%lld", from);
	snprintf(last, sizeof(last), "%lld", to);
	if (sl_db_exec(db,
	               "SELECT json_build_object('type', 'checkpoint', 'tree_size', tree_size, "
	               "'kid', kid, 'at', at, 'note', note)::text FROM ledger_checkpoints "
	               "WHERE tree_size BETWEEN $1::bigint AND $2::bigint ORDER BY tree_size",
	               2, (const char *[]){first, last}, &res, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice audit export: %s\n", errbuf);
		return 2;
	}
	for (int i = 0; i < PQntuples(res); i++)
		printf("%s\n", PQgetvalue(res, i, 0));
	PQclear(res);
	return fflush(stdout) ? 2 : 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: sluice audit verify [--keys JWKS]\n"
	                "       sluice audit verify --file EXPORT --keys JWKS\n"
	                "       sluice audit export [--since TIME] [--until TIME]\n");
	return 2;
}

int cli_audit(sl_config *cfg, int argc, char **argv)
{
	static const char *required[] = {"SLUICE_DATABASE_URL", NULL};
	const char *file = NULL, *keys_path = cfg->receipt_keys, *since = NULL, *until = NULL;
	bool verify = argc > 0 && !strcmp(argv[0], "verify");
	char errbuf[512];
	sl_keyset keys = {0};
	audit a = {0};
	PGconn *db = NULL;
	int rc;

	if (!verify && (argc < 1 || strcmp(argv[0], "export")))
		return usage();
	for (int i = 1; i < argc; i++) {
		const char **slot = !strcmp(argv[i], "--file")    ? &file
		                    : !strcmp(argv[i], "--keys")  ? &keys_path
		                    : !strcmp(argv[i], "--since") ? &since
		                    : !strcmp(argv[i], "--until") ? &until
		                                                  : NULL;
		if (!slot || i + 1 >= argc || (verify != (slot == &file || slot == &keys_path)))
			return usage();
		*slot = argv[++i];
	}
	if (keys_path && *keys_path && verify &&
	    sl_keyset_load(&keys, keys_path, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice audit verify: keys: %s\n", errbuf);
		return 2;
	}
	sl_ledger_check_init(&a.chain);
	a.keys = keys.n ? &keys : NULL;
	if (file) {
		rc = verify_file(file, &a);
		goto out;
	}
	if (sl_config_require(cfg, required, errbuf, sizeof(errbuf)) ||
	    !(db = sl_db_connect(cfg->database_url, errbuf, sizeof(errbuf)))) {
		fprintf(stderr, "sluice audit: %s\n", errbuf);
		rc = 2;
		goto out;
	}
	rc = verify ? verify_db(db, &a) : export(db, since, until);
out:
	if (db)
		PQfinish(db);
	free(a.points);
	sl_keyset_free(&keys);
	return rc;
}
