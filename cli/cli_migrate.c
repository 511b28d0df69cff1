/*
 * cli_migrate.c - numbered SQL migrations, applied in order inside one
 * transaction under an advisory lock, recorded with SHA-256 checksums in
 * schema_migrations. An applied file that changed is an error. The service
 * roles' passwords are set from the environment when it gives them.
 */
#include "cli.h"
#include "sl_db.h"

#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIGRATION_MAX_BYTES (4 * 1024 * 1024)
#define MIGRATE_LOCK_KEY "7355608"

char *cli_bindir(void)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

	if (n <= 0)
		return sl_strdup(".");
	path[n] = '\0';
	return sl_strdup(dirname(path));
}

char *cli_migrations_dir(void)
{
	const char *env = getenv("SLUICE_MIGRATIONS");
	char *bindir, *guess;

	if (env && *env)
		return sl_strdup(env);
	bindir = cli_bindir();
	guess = sl_asprintf("%s/../../migrations", bindir);
	free(bindir);
	if (access(guess, R_OK) == 0)
		return guess;
	free(guess);
	return sl_strdup("migrations");
}

static int is_migration(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 9 && d->d_name[0] >= '0' && d->d_name[0] <= '9' && strchr(d->d_name, '_') &&
	       !strcmp(d->d_name + n - 4, ".sql");
}

static char *read_file(const char *path, char *errbuf, size_t errsize)
{
	FILE *f = fopen(path, "rb");
	char chunk[8192];
	size_t n;
	sl_buf b;

	if (!f) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot read %s: %m", path);
		return NULL;
	}
	sl_buf_init(&b, MIGRATION_MAX_BYTES);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (sl_buf_append(&b, chunk, n)) {
			fclose(f);
			sl_buf_free(&b);
			sl_err(errbuf, errsize, SL_INVALID, "%s is over %d bytes", path,
			       MIGRATION_MAX_BYTES);
			return NULL;
		}
	}
	fclose(f);
	return sl_buf_steal(&b);
}

static void sha256_hex(const char *s, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The service roles (migrations/0009_service_roles.sql) and the variables
 * that may give their passwords. */
static const struct {
	const char *role, *env;
} service_roles[] = {
    {"sluice_worker", "SLUICE_WORKER_DB_PASSWORD"},
    {"sluice_approver", "SLUICE_APPROVER_DB_PASSWORD"},
    {"sluice_reader", "SLUICE_READER_DB_PASSWORD"},
};

/* Sets the password of each service role whose variable is set, hashed
 * here (SCRAM-SHA-256), so that the password itself never reaches the
 * server or its logs. */
static sl_status set_passwords(PGconn *conn, char *errbuf, size_t errsize)
{
	for (size_t i = 0; i < sizeof(service_roles) / sizeof(service_roles[0]); i++) {
		const char *pw = getenv(service_roles[i].env), *role = service_roles[i].role;
		char *hash, *literal = NULL, *sql;
		sl_status st;

		if (!pw || !*pw)
			continue;
		if (!(hash = PQencryptPasswordConn(conn, pw, role, "scram-sha-256")) ||
		    !(literal = PQescapeLiteral(conn, hash, strlen(hash)))) {
			PQfreemem(hash);
			return sl_err(errbuf, errsize, SL_FATAL, "%s: %s", service_roles[i].env,
			              PQerrorMessage(conn));
		}
		/* role names are ours: no quoting needed */
		sql = sl_asprintf("ALTER ROLE %s PASSWORD %s", role, literal);
		st = sl_db_exec(conn, sql, 0, NULL, NULL, errbuf, errsize);
		free(sql);
		PQfreemem(literal);
		PQfreemem(hash);
		if (st)
			return st;
		printf("set the password of %s (from %s)\n", role, service_roles[i].env);
	}
	return SL_OK;
}

sl_status cli_migrate_apply(const char *url, const char *dir, char *errbuf, size_t errsize)
{
	PGconn *conn = sl_db_connect(url, errbuf, errsize);
	struct dirent **list = NULL;
	int n = 0, applied = 0;
	sl_status st;

	if (!conn)
		return SL_RETRY;
	n = scandir(dir, &list, is_migration, alphasort);
	if (n < 0) {
		st = sl_err(errbuf, errsize, SL_FATAL, "cannot list migrations in %s: %m", dir);
		n = 0;
		goto out;
	}
	if ((st = sl_db_begin(conn, errbuf, errsize)) ||
	    (st = sl_db_exec(conn, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", 0, NULL,
	                     NULL, errbuf, errsize)) ||
	    (st = sl_db_exec(
	         conn,
	         "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
	         "name text NOT NULL, checksum text NOT NULL, "
	         "applied_at timestamptz NOT NULL DEFAULT now())",
	         0, NULL, NULL, errbuf, errsize)))
		goto out;
	for (int i = 0; i < n; i++) {
		const char *name = list[i]->d_name;
		char *version = sl_strndup(name, (size_t)(strchr(name, '_') - name));
		char *path = sl_asprintf("%s/%s", dir, name);
		char *sql = read_file(path, errbuf, errsize);
		char sum[65] = "";
		const char *p[] = {version, name, sum};
		PGresult *res = NULL;

		st = sql ? SL_OK : SL_FATAL;
		if (sql)
			sha256_hex(sql, sum);
		if (!st)
			st = sl_db_exec(conn,
			                "SELECT checksum FROM schema_migrations WHERE version = $1",
			                1, p, &res, errbuf, errsize);
		if (!st && PQntuples(res) == 1) {
			if (strcmp(PQgetvalue(res, 0, 0), sum))
				st = sl_err(errbuf, errsize, SL_FATAL,
				            "migration %s was changed after it was applied "
				            "(checksum %.12s, "
				            "recorded %.12s)",
				            name, sum, PQgetvalue(res, 0, 0));
		} else if (!st) {
			PGresult *r = PQexec(conn, sql);
			if (PQresultStatus(r) != PGRES_COMMAND_OK &&
			    PQresultStatus(r) != PGRES_TUPLES_OK)
				st = sl_err(errbuf, errsize, SL_FATAL, "migration %s failed: %s",
				            name, PQresultErrorMessage(r));
			PQclear(r);
			if (!st)
				st = sl_db_exec(
				    conn,
				    "INSERT INTO schema_migrations (version, name, checksum) "
				    "VALUES ($1, $2, $3)",
				    3, p, NULL, errbuf, errsize);
			if (!st) {
				printf("applied %s\n", name);
				applied++;
			}
		}
		PQclear(res);
		free(sql);
		free(path);
		free(version);
		if (st)
			goto out;
	}
	if ((st = set_passwords(conn, errbuf, errsize)) ||
	    (st = sl_db_commit(conn, errbuf, errsize)))
		goto out;
	if (applied == 0)
		printf("schema is up to date (%d migration(s))\n", n);
out:
	sl_db_rollback(conn);
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
	PQfinish(conn);
	return st;
}

int cli_migrate(sl_config *cfg, int argc, char **argv)
{
	static const char *required[] = {"SLUICE_DATABASE_URL", NULL};
	char *dir = NULL, errbuf[1024];
	sl_status st;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			free(dir);
			dir = sl_strdup(argv[++i]);
		} else {
			fprintf(stderr, "usage: sluice migrate [--dir DIR]\n");
			free(dir);
			return 2;
		}
	}
	if (sl_config_require(cfg, required, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice migrate: %s\n", errbuf);
		free(dir);
		return 2;
	}
	if (!dir)
		dir = cli_migrations_dir();
	st = cli_migrate_apply(cfg->database_url, dir, errbuf, sizeof(errbuf));
	if (st)
		fprintf(stderr, "sluice migrate: %s\n", errbuf);
	free(dir);
	return st ? 1 : 0;
}
