/*
 * cli_dev.c - sluice dev up / down: a whole development stack in the
 * background (DESIGN.md, "Development stack"): the dev broker, a throwaway
 * PostgreSQL cluster, the scripted model, N workers and the approver.
 *
 * Everything lives in one folder, SLUICE_DEV_DIR, holding NAME.pid and
 * NAME.log for each process. The env file names that folder from the first
 * moment, so `down` also cleans what a crashed `up` left.
 */
#include "cli.h"
#include "sl_db.h"
#include "sl_keys.h"
#include "sl_http.h"
#include "sl_kafka.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MARKER ".sluice-dev"
#define MAX_WORKERS 64
#define MAX_KAFKA_NODES 5

typedef struct stack {
	char *dir;
	char *env_file;
	char *bindir;
	char *pgbin;
	bool as_postgres; /* PostgreSQL runs as the postgres user (we are root) */
	int pg_port;
} stack;

static int usage(void)
{
	fprintf(stderr, "usage: sluice dev up --env-file FILE [--agents FILE] [--workers N]\n"
	                "                     [--kafka mock|apache] [--kafka-nodes N]\n"
	                "       sluice dev down --env-file FILE\n");
	return 2;
}

static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static bool write_file(const char *path, const char *text)
{
	char *tmp = sl_asprintf("%s.tmp", path);
	/* the env file holds the admin token: readable by its owner only */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	bool ok = f && fputs(text, f) >= 0;

	if (fd >= 0 && !f)
		close(fd);
	if (f && fclose(f))
		ok = false;
	ok = ok && rename(tmp, path) == 0;
	if (!ok)
		unlink(tmp);
	free(tmp);
	return ok;
}

/* Reads KEY from a KEY=VALUE env file; returns a new string or NULL. */
static char *env_file_get(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char line[4096], *val = NULL;
	size_t klen = strlen(key);

	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, klen) && line[klen] == '=') {
			line[strcspn(line, "\n")] = '\0';
			free(val);
			val = sl_strdup(line + klen + 1);
		}
	}
	fclose(f);
	return val;
}

/*
 * Starts argv in the background in its own session, stdout and stderr to
 * DIR/NAME.log, and records DIR/NAME.pid. Returns the pid or -1.
 */
static pid_t spawn(stack *s, const char *name, char *const argv[])
{
	char *log = sl_asprintf("%s/%s.log", s->dir, name);
	char *pidf = sl_asprintf("%s/%s.pid", s->dir, name);
	char pidtext[32];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	pid_t pid = -1;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
	rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc) {
		fprintf(stderr, "sluice dev: cannot start %s: %s\n", argv[0], strerror(rc));
		pid = -1;
	} else {
		snprintf(pidtext, sizeof(pidtext), "%d\n", (int)pid);
		write_file(pidf, pidtext);
	}
	free(log);
	free(pidf);
	return pid;
}

/* Runs argv in the foreground, output to DIR/NAME.log; true on exit 0. */
static bool run(stack *s, const char *name, char *const argv[])
{
	pid_t pid = spawn(s, name, argv);
	char *pidf = sl_asprintf("%s/%s.pid", s->dir, name);
	int status = 0;

	if (pid > 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	unlink(pidf);
	free(pidf);
	return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool alive(pid_t pid)
{
	int status;

	/* reap our own exited children so they do not look alive */
	if (waitpid(pid, &status, WNOHANG) == pid)
		return false;
	return kill(pid, 0) == 0;
}

static void show_log(stack *s, const char *name)
{
	char *path = sl_asprintf("%s/%s.log", s->dir, name);
	FILE *f = fopen(path, "r");
	char line[1024];
	long size;

	fprintf(stderr, "--- last lines of %s ---\n", path);
	if (f) {
		fseek(f, 0, SEEK_END);
		size = ftell(f);
		fseek(f, size > 4000 ? size - 4000 : 0, SEEK_SET);
		while (fgets(line, sizeof(line), f))
			fputs(line, stderr);
		fclose(f);
	}
	free(path);
}

static bool wait_http(const char *url, pid_t pid, long timeout_ms)
{
	long long deadline = sl_mono_ms() + timeout_ms;

	while (sl_mono_ms() < deadline && alive(pid)) {
		sl_http_response r;
		if (sl_http_request("GET", url, NULL, NULL, 65536, 1000, &r, NULL, 0) == SL_OK) {
			long status = r.status;
			sl_http_response_free(&r);
			if (status == 200)
				return true;
		}
		sl_sleep_ms(50);
	}
	return false;
}

/* Starts argv as name and waits up to timeout_ms for it to answer 200 on
 * http://listen/healthz; false, with its log shown, when it does not. */
static bool start_http(stack *s, const char *name, char *const argv[], const char *listen,
                       long timeout_ms)
{
	pid_t pid = spawn(s, name, argv);
	char *health = sl_asprintf("http://%s/healthz", listen);
	bool up = pid > 0 && wait_http(health, pid, timeout_ms);

	free(health);
	if (!up) {
		fprintf(stderr, "sluice dev: the %s did not start\n", name);
		show_log(s, name);
	}
	return up;
}

static char *find_pgbin(void)
{
	glob_t g;
	char *best = NULL;

	if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) == 0) {
		/* the highest version; glob sorts, but "9" > "15" as text */
		long bestv = -1;
		for (size_t i = 0; i < g.gl_pathc; i++) {
			long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
			if (v > bestv) {
				bestv = v;
				free(best);
				best = sl_strndup(g.gl_pathv[i],
				                  strlen(g.gl_pathv[i]) - strlen("/pg_ctl"));
			}
		}
	}
	globfree(&g);
	return best;
}

/* Builds an argv that runs prog as the postgres user when we are root. */
static char **pg_argv(stack *s, const char *prog, char **args)
{
	char **argv = sl_calloc(32, sizeof(char *));
	int n = 0;

	if (s->as_postgres) {
		argv[n++] = "/sbin/runuser";
		argv[n++] = "-u";
		argv[n++] = "postgres";
		argv[n++] = "--";
	}
	argv[n++] = sl_asprintf("%s/%s", s->pgbin, prog);
	for (; *args && n < 31; args++)
		argv[n++] = *args;
	return argv;
}

static void free_pg_argv(stack *s, char **argv)
{
	free(argv[s->as_postgres ? 4 : 0]);
	free(argv);
}

static bool pg_run(stack *s, const char *name, const char *prog, char **args)
{
	char **argv = pg_argv(s, prog, args);
	bool ok = run(s, name, argv);

	free_pg_argv(s, argv);
	return ok;
}

static bool start_postgres(stack *s, char **url)
{
	int port = free_port();
	char *pgdata = sl_asprintf("%s/pg", s->dir);
	/* SLUICE_DEV_PG_OPTIONS: more server options, for profiling (see
	 * BENCHMARKS.md) */
	const char *extra = getenv("SLUICE_DEV_PG_OPTIONS");
	char *portopt = sl_asprintf("-p %d -k %s -c listen_addresses=127.0.0.1 %s", port, s->dir,
	                            extra ? extra : "");
	char *logf = sl_asprintf("%s/postgres.log", s->dir);
	char *admin = NULL;
	char *initdb_args[] = {"-D", pgdata, "-U",        "postgres", "--auth=trust",
	                       "-E", "UTF8", "--no-sync", NULL};
	char *start_args[] = {"-D", pgdata, "-l", logf,    "-o", portopt,
	                      "-w", "-t",   "60", "start", NULL};
	char errbuf[512];
	PGconn *c = NULL;
	bool ok = false;

	s->pgbin = find_pgbin();
	if (!s->pgbin) {
		fprintf(stderr,
		        "sluice dev: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin)\n");
		goto out;
	}
	if (mkdir(pgdata, 0700)) {
		fprintf(stderr, "sluice dev: mkdir %s: %s\n", pgdata, strerror(errno));
		goto out;
	}
	if (s->as_postgres) {
		struct passwd *pw = getpwnam("postgres");
		if (!pw || chown(pgdata, pw->pw_uid, pw->pw_gid) ||
		    chown(s->dir, pw->pw_uid, pw->pw_gid)) {
			fprintf(stderr, "sluice dev: cannot give %s to the postgres user\n",
			        pgdata);
			goto out;
		}
		/* the log file is opened by pg_ctl as postgres */
	}
	if (!pg_run(s, "initdb", "initdb", initdb_args)) {
		fprintf(stderr, "sluice dev: initdb failed\n");
		show_log(s, "initdb");
		goto out;
	}
	if (!pg_run(s, "pg_ctl", "pg_ctl", start_args)) {
		fprintf(stderr, "sluice dev: PostgreSQL did not start\n");
		show_log(s, "pg_ctl");
		show_log(s, "postgres");
		goto out;
	}
	admin = sl_asprintf("postgresql://postgres@127.0.0.1:%d/postgres", port);
	c = sl_db_connect(admin, errbuf, sizeof(errbuf));
	if (!c || sl_db_exec(c, "CREATE DATABASE sluice", 0, NULL, NULL, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice dev: %s\n", errbuf);
		goto out;
	}
	*url = sl_asprintf("postgresql://postgres@127.0.0.1:%d/sluice", port);
	s->pg_port = port;
	ok = true;
out:
	if (c)
		PQfinish(c);
	free(admin);
	free(logf);
	free(portopt);
	free(pgdata);
	return ok;
}

static bool running(int pid);

static void stop_postgres(stack *s)
{
	char *pgdata = sl_asprintf("%s/pg", s->dir);
	char *pidfile = sl_asprintf("%s/postmaster.pid", pgdata);
	char *stop_args[] = {"-D", pgdata, "-m", "immediate", "-w", "-t", "30", "stop", NULL};
	FILE *f = fopen(pidfile, "r");
	int pid = 0;

	if (f && fscanf(f, "%d", &pid) == 1 && pid > 0) {
		long long deadline = sl_mono_ms() + 10000;

		s->pgbin = s->pgbin ? s->pgbin : find_pgbin();
		if (!s->pgbin || !pg_run(s, "pg_ctl-stop", "pg_ctl", stop_args))
			kill(pid, SIGKILL);
		/* pg_ctl returns when the pid file is gone, a moment before the
		 * postmaster itself */
		while (running(pid) && sl_mono_ms() < deadline)
			sl_sleep_ms(10);
		if (running(pid))
			kill(pid, SIGKILL);
	}
	if (f)
		fclose(f);
	free(pidfile);
	free(pgdata);
}

/* True while pid runs; a zombie (exited, not yet reaped by a parent that is
 * not us) counts as stopped. */
static bool running(int pid)
{
	char path[64], buf[512];
	FILE *f;
	char *paren;
	bool zombie = false;

	if (kill(pid, 0) != 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f) && (paren = strrchr(buf, ')')) && paren[1] == ' ')
		zombie = paren[2] == 'Z';
	if (f)
		fclose(f);
	return !zombie;
}

/* Stops a process recorded in DIR/NAME.pid: TERM, then KILL after 10 s. */
static void stop_pidfile(const char *dir, const char *file, int sig)
{
	char *path = sl_asprintf("%s/%s", dir, file);
	FILE *f = fopen(path, "r");
	int pid = 0;

	if (f && fscanf(f, "%d", &pid) == 1 && pid > 1 && kill(pid, sig) == 0) {
		long long deadline = sl_mono_ms() + 10000;
		while (running(pid) && sl_mono_ms() < deadline) {
			waitpid(pid, NULL, WNOHANG);
			sl_sleep_ms(20);
		}
		if (running(pid)) {
			fprintf(stderr, "sluice dev: %s did not stop in 10 s; killing it\n", file);
			kill(pid, SIGKILL);
		}
	}
	if (f)
		fclose(f);
	unlink(path);
	free(path);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Stops everything recorded in dir, in order, and removes dir. */
static void teardown(stack *s)
{
	/* "" last: whatever else a crashed `up` left running (initdb, pg_ctl) */
	static const char *order[] = {"worker", "approver", "scripted-model", "broker", "kafka",
	                              "",       NULL};
	char *marker = sl_asprintf("%s/%s", s->dir, MARKER);
	struct dirent *e;
	DIR *d;

	if (access(marker, F_OK) != 0) {
		fprintf(stderr, "sluice dev: %s is not a sluice dev folder; left alone\n", s->dir);
		free(marker);
		return;
	}
	free(marker);
	for (const char **o = order; *o; o++) {
		d = opendir(s->dir);
		while (d && (e = readdir(d))) {
			size_t n = strlen(e->d_name);
			if (n > 4 && !strcmp(e->d_name + n - 4, ".pid") &&
			    !strncmp(e->d_name, *o, strlen(*o)) &&
			    strcmp(e->d_name, "postgres.pid"))
				/* Apache Kafka's nodes are killed: a node stopped
				 * politely waits for a controller quorum the others'
				 * stops take away, and its data goes with the folder */
				stop_pidfile(s->dir, e->d_name,
				             !strcmp(*o, "kafka") ? SIGKILL : SIGTERM);
		}
		if (d)
			closedir(d);
	}
	s->as_postgres = geteuid() == 0;
	stop_postgres(s);
	/* A server that was still starting may write a last file or two. */
	for (int i = 0; i < 50 && access(s->dir, F_OK) == 0; i++) {
		nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		if (access(s->dir, F_OK) == 0)
			sl_sleep_ms(100);
	}
	if (access(s->dir, F_OK) == 0)
		fprintf(stderr, "sluice dev: could not remove %s\n", s->dir);
}

static void export(const char *key, const char *value, sl_buf *env)
{
	setenv(key, value, 1);
	sl_buf_append(env, key, strlen(key));
	sl_buf_append(env, "=", 1);
	sl_buf_append(env, value, strlen(value));
	sl_buf_append(env, "\n", 1);
}

static char *default_agents(void)
{
	char *bindir = cli_bindir();
	char *guess = sl_asprintf("%s/../../examples/agents.json", bindir);

	free(bindir);
	if (access(guess, R_OK) == 0)
		return guess;
	free(guess);
	return sl_strdup("examples/agents.json");
}

/* Makes the stack's folder (logs, pid files, PostgreSQL's data and
 * socket) and names it in env_file, from when on `down` can clean up
 * whatever happens. */
static bool open_stack(stack *s, const char *env_file)
{
	char tmpl[] = "/tmp/sluice-dev-XXXXXX";
	char *path, *line;
	bool ok;

	/* the folder is its owner's only: the user who runs the stack, or
	 * PostgreSQL's user when that is root (root passes anyway) */
	if (!mkdtemp(tmpl) || chmod(tmpl, 0700)) {
		fprintf(stderr, "sluice dev: cannot create a folder in /tmp: %s\n",
		        strerror(errno));
		return false;
	}
	s->dir = sl_strdup(tmpl);
	s->env_file = sl_strdup(env_file);
	s->bindir = cli_bindir();
	s->as_postgres = geteuid() == 0;
	path = sl_asprintf("%s/%s", s->dir, MARKER);
	write_file(path, "sluice dev stack\n");
	free(path);
	line = sl_asprintf("SLUICE_DEV_DIR=%s\n", s->dir);
	ok = write_file(env_file, line);
	free(line);
	if (!ok)
		fprintf(stderr, "sluice dev: cannot write %s: %s\n", env_file, strerror(errno));
	return ok;
}

/* 1. The dev broker; its address, or NULL. */
static char *start_broker(stack *s, const sl_config *cfg)
{
	char *bin = sl_asprintf("%s/sluice-dev-broker", s->bindir);
	char *addr_file = sl_asprintf("%s/broker.addr", s->dir);
	char *argv[] = {bin, "--addr-file", addr_file, "--topic-prefix", cfg->topic_prefix, NULL};
	pid_t pid = spawn(s, "broker", argv);
	long long deadline = sl_mono_ms() + 15000;
	char *addr = NULL;

	while (pid > 0 && alive(pid) && access(addr_file, R_OK) != 0 && sl_mono_ms() < deadline)
		sl_sleep_ms(20);
	if (access(addr_file, R_OK) == 0) {
		FILE *f = fopen(addr_file, "r");
		char line[512] = "";
		if (f && fgets(line, sizeof(line), f))
			line[strcspn(line, "\n")] = '\0';
		if (f)
			fclose(f);
		addr = sl_strdup(line);
	}
	free(bin);
	free(addr_file);
	if (!addr || !*addr) {
		fprintf(stderr, "sluice dev: the dev broker did not start\n");
		show_log(s, "broker");
		free(addr);
		return NULL;
	}
	return addr;
}

/* The folder of Apache Kafka's jars (scripts/install-deps copies them from
 * Maven Central, dev/kafka/pom.xml): SLUICE_KAFKA_LIBS, or build/kafka/libs
 * beside the programs' folder (build/bin or build/asan/bin). */
static char *kafka_libs(const stack *s)
{
	const char *env = getenv("SLUICE_KAFKA_LIBS");
	const char *rel[] = {"../kafka/libs", "../../kafka/libs", NULL};

	if (env && *env)
		return sl_strdup(env);
	for (const char **r = rel; *r; r++) {
		char *pattern = sl_asprintf("%s/%s/kafka_2.13-*.jar", s->bindir, *r);
		glob_t g;
		bool there = glob(pattern, 0, NULL, &g) == 0;

		if (there)
			globfree(&g);
		free(pattern);
		if (there)
			return sl_asprintf("%s/%s", s->bindir, *r);
	}
	return NULL;
}

/* The JDK's java: JAVA_HOME's, or the first on PATH. */
static char *find_java(void)
{
	const char *home = getenv("JAVA_HOME"), *path = getenv("PATH");
	char *java;

	if (home && *home) {
		java = sl_asprintf("%s/bin/java", home);
		if (access(java, X_OK) == 0)
			return java;
		free(java);
	}
	for (const char *p = path; p && *p;) {
		size_t n = strcspn(p, ":");
		java = sl_asprintf("%.*s/java", (int)n, p);
		if (n && access(java, X_OK) == 0)
			return java;
		free(java);
		p += n + (p[n] == ':');
	}
	return NULL;
}

/* Runs argv to its end; whether it exited 0 (its output in DIR/NAME.log). */
static bool run_tool(stack *s, const char *name, char *const argv[])
{
	pid_t pid = spawn(s, name, argv);
	char *pidf = sl_asprintf("%s/%s.pid", s->dir, name);
	int status = 0;

	if (pid > 0)
		waitpid(pid, &status, 0);
	unlink(pidf);
	free(pidf);
	return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * 1. Apache Kafka in KRaft mode instead of the dev broker: nodes combined
 * broker+controller processes on free loopback ports, each with its folder
 * and log, formatted and started with the machine's JDK (heap bounded for
 * a small machine), then the topics created (`sluice topics create`'s
 * way). Three nodes or more: replication factor 3, min.insync.replicas 2.
 * Its bootstrap servers, or NULL.
 */
static char *start_apache_kafka(stack *s, const sl_config *cfg, long nodes)
{
	char *libs = kafka_libs(s), *java = find_java(), *cp = NULL, *log4j = NULL;
	char *voters = NULL, *servers = NULL, *result = NULL;
	int bport[MAX_KAFKA_NODES], cport[MAX_KAFKA_NODES];
	long rf = nodes >= 3 ? 3 : nodes, isr = nodes >= 3 ? 2 : 1;
	char cluster[23], errbuf[512];
	sl_buf vb, sb;

	if (!libs || !java) {
		fprintf(stderr, "sluice dev: %s\n",
		        !libs ? "Apache Kafka is not installed: run `make deps` (it fetches it "
		                "from Maven Central into build/kafka/libs)"
		              : "no java on PATH or in JAVA_HOME");
		goto out;
	}
	cp = sl_asprintf("%s/*", libs);
	log4j = sl_asprintf("%s/kafka-log4j2.properties", s->dir);
	write_file(log4j, "appender.out.type = Console\n"
	                  "appender.out.name = out\n"
	                  "appender.out.layout.type = PatternLayout\n"
	                  "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
	                  "rootLogger.level = WARN\n"
	                  "rootLogger.appenderRef.out.ref = out\n"
	                  "logger.server.name = kafka.server.KafkaRaftServer\n"
	                  "logger.server.level = INFO\n");
	sl_kafka_cluster_id(cluster);
	sl_buf_init(&vb, 1 << 16);
	sl_buf_init(&sb, 1 << 16);
	for (long i = 0; i < nodes; i++) {
		char voter[64], server[64];
		bport[i] = free_port();
		cport[i] = free_port();
		snprintf(voter, sizeof(voter), "%s%ld@127.0.0.1:%d", i ? "," : "", i + 1, cport[i]);
		snprintf(server, sizeof(server), "%s127.0.0.1:%d", i ? "," : "", bport[i]);
		sl_buf_append(&vb, voter, strlen(voter));
		sl_buf_append(&sb, server, strlen(server));
	}
	voters = sl_buf_steal(&vb);
	servers = sl_buf_steal(&sb);
	for (long i = 0; i < nodes; i++) {
		char name[32], *props, *text, *fmt_name, *log_opt;
		bool ok;

		snprintf(name, sizeof(name), "kafka-%ld", i + 1);
		props = sl_asprintf("%s/%s.properties", s->dir, name);
		text = sl_asprintf(
		    "process.roles=broker,controller\n"
		    "node.id=%ld\n"
		    "listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d\n"
		    "advertised.listeners=PLAINTEXT://127.0.0.1:%d\n"
		    "controller.listener.names=CONTROLLER\n"
		    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
		    "inter.broker.listener.name=PLAINTEXT\n"
		    "controller.quorum.voters=%s\n"
		    "log.dirs=%s/%s\n"
		    "num.partitions=8\n"
		    "default.replication.factor=%ld\n"
		    "min.insync.replicas=%ld\n"
		    "offsets.topic.replication.factor=%ld\n"
		    "transaction.state.log.replication.factor=%ld\n"
		    "transaction.state.log.min.isr=%ld\n"
		    "share.coordinator.state.topic.replication.factor=%ld\n"
		    "share.coordinator.state.topic.min.isr=%ld\n"
		    "auto.create.topics.enable=false\n"
		    "group.initial.rebalance.delay.ms=0\n"
		    /* as the dev broker: the tests send messages over Kafka's
		     * 1 MiB default, to see them refused */
		    "message.max.bytes=4194304\n"
		    "replica.fetch.max.bytes=4194304\n",
		    i + 1, bport[i], cport[i], bport[i], voters, s->dir, name, rf, isr, rf, rf, isr,
		    rf, isr);
		write_file(props, text);
		free(text);
		fmt_name = sl_asprintf("%s-format", name);
		ok = run_tool(s, fmt_name,
		              (char *[]){java, "-Xmx256m", "-cp", cp, "kafka.tools.StorageTool",
		                         "format", "-t", cluster, "-c", props, NULL});
		/* a small heap and the serial collector: two cores, several nodes */
		log_opt = sl_asprintf("-Dlog4j2.configurationFile=%s", log4j);
		if (ok)
			ok = spawn(s, name,
			           (char *[]){java, "-Xmx512m", "-Xms128m", "-XX:+UseSerialGC",
			                      "-XX:TieredStopAtLevel=1", log_opt, "-cp", cp,
			                      "kafka.Kafka", props, NULL}) > 0;
		free(log_opt);
		if (!ok) {
			fprintf(stderr, "sluice dev: Apache Kafka node %ld did not start\n", i + 1);
			show_log(s, ok ? name : fmt_name);
		}
		free(fmt_name);
		free(props);
		if (!ok)
			goto out;
	}
	/* Up once it takes the topics (every node registered, for the
	 * replication factor). */
	{
		sl_config c = *cfg;
		long long deadline = sl_mono_ms() + 90000;
		sl_status st;

		c.kafka_brokers = servers;
		while (
		    (st = sl_kafka_topics_create(&c, 8, (int)rf, NULL, errbuf, sizeof(errbuf))) &&
		    sl_mono_ms() < deadline)
			sl_sleep_ms(500);
		if (st) {
			fprintf(stderr, "sluice dev: Apache Kafka did not take the topics: %s\n",
			        errbuf);
			show_log(s, "kafka-1");
			goto out;
		}
	}
	result = servers;
	servers = NULL;
out:
	free(libs);
	free(java);
	free(cp);
	free(log4j);
	free(voters);
	free(servers);
	return result;
}

/* 2. PostgreSQL, migrated; its URL, or NULL. */
static char *start_database(stack *s, const char *migrations)
{
	char *url = NULL, *pidfile;
	char errbuf[1024], line[32] = "";
	FILE *f;

	if (!start_postgres(s, &url))
		return NULL;
	/* its pid where `down` looks for every process's */
	pidfile = sl_asprintf("%s/pg/postmaster.pid", s->dir);
	if ((f = fopen(pidfile, "r"))) {
		if (fgets(line, sizeof(line), f)) {
			char *pp = sl_asprintf("%s/postgres.pid", s->dir);
			write_file(pp, line);
			free(pp);
		}
		fclose(f);
	}
	free(pidfile);
	if (cli_migrate_apply(url, migrations, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice dev: migrate: %s\n", errbuf);
		free(url);
		return NULL;
	}
	return url;
}

/* 3. The scripted model, unless a real endpoint is configured; the
 * model's base URL, or NULL. *scripted says which. */
static char *start_model(stack *s, const sl_config *cfg, bool *scripted)
{
	char listen[64];
	char *bin;
	bool up;

	*scripted = false;
	if (getenv("OPENAI_BASE_URL") || getenv("OPENAI_API_KEY")) {
		printf("using the model endpoint %s\n", cfg->openai_base_url);
		return sl_strdup(cfg->openai_base_url);
	}
	bin = sl_asprintf("%s/sluice-scripted-model", s->bindir);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
	up = start_http(s, "scripted-model", (char *[]){bin, "--listen", listen, NULL}, listen,
	                15000);
	free(bin);
	if (!up)
		return NULL;
	*scripted = true;
	return sl_asprintf("http://%s/v1", listen);
}

/* Who the services started next connect to PostgreSQL as: each service
 * as its own role (migrations/0009_service_roles.sql); the env file keeps
 * the owner's URL, for migrations and psql. */
static void as_role(const stack *s, const char *role)
{
	char *url = sl_asprintf("postgresql://%s@127.0.0.1:%d/sluice", role, s->pg_port);

	setenv("SLUICE_DATABASE_URL", url, 1);
	free(url);
}

/* The stack's signing key pair (sl_keys.h), in its folder: the JWKS is
 * exported to everyone, the private key only to the approver (and the env
 * file); false when it cannot be made. */
static bool make_keys(stack *s, sl_buf *env, char **private_key)
{
	char *jwks = sl_asprintf("%s/receipt-keys.json", s->dir);
	char errbuf[512];
	bool ok;

	*private_key = sl_asprintf("%s/signing-key.pem", s->dir);
	ok = !sl_keys_new("dev-1", *private_key, jwks, errbuf, sizeof(errbuf));
	if (!ok)
		fprintf(stderr, "sluice dev: keys: %s\n", errbuf);
	else
		export("SLUICE_RECEIPT_KEYS", jwks, env);
	free(jwks);
	return ok;
}

/* 4. The approver, with a new admin token (exported to env, never to the
 * workers) and the signing key; its URL, or NULL. */
static char *start_approver(stack *s, sl_buf *env, const char *signing_key)
{
	char *bin = sl_asprintf("%s/sluice-approver", s->bindir);
	char token[37], listen[64];
	char *tokens, *url;
	bool up;

	sl_uuid_v4(token);
	tokens = sl_asprintf("admin:%s", token);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
	url = sl_asprintf("http://%s", listen);
	export("SLUICE_APPROVER_URL", url, env);
	export("SLUICE_API_TOKEN", token, env);
	setenv("SLUICE_APPROVER_LISTEN", listen, 1);
	setenv("SLUICE_API_TOKENS", tokens, 1);
	setenv("SLUICE_SIGNING_KEY", signing_key, 1);
	as_role(s, "sluice_approver");
	up = start_http(s, "approver", (char *[]){bin, NULL}, listen, 30000);
	/* The workers (and so their tools) get no API token. */
	unsetenv("SLUICE_API_TOKENS");
	unsetenv("SLUICE_API_TOKEN");
	unsetenv("SLUICE_APPROVER_LISTEN");
	unsetenv("SLUICE_SIGNING_KEY");
	as_role(s, "postgres");
	free(tokens);
	free(bin);
	if (!up) {
		free(url);
		return NULL;
	}
	return url;
}

/* 5. The workers; false when one cannot start or refuses its settings
 * (it then exits at once). */
static bool start_workers(stack *s, long workers)
{
	char *bin = sl_asprintf("%s/sluice-worker", s->bindir);
	pid_t pids[MAX_WORKERS];
	char name[32];
	bool ok = true;

	as_role(s, "sluice_worker");
	for (long i = 0; i < workers && ok; i++) {
		snprintf(name, sizeof(name), "worker-%ld", i + 1);
		pids[i] = spawn(s, name, (char *[]){bin, NULL});
		ok = pids[i] > 0;
	}
	as_role(s, "postgres");
	free(bin);
	if (!ok)
		return false;
	sl_sleep_ms(300);
	for (long i = 0; i < workers; i++) {
		if (!alive(pids[i])) {
			snprintf(name, sizeof(name), "worker-%ld", i + 1);
			fprintf(stderr, "sluice dev: %s exited at start-up\n", name);
			show_log(s, name);
			return false;
		}
	}
	return true;
}

static int dev_up(sl_config *cfg, const char *env_file, const char *agents, long workers,
                  long kafka_nodes)
{
	stack s = {0};
	sl_buf env;
	char *existing = env_file_get(env_file, "SLUICE_DEV_DIR");
	char *addr = NULL, *url = NULL, *model_url = NULL, *approver_url = NULL;
	char *agents_abs = NULL, *migrations = NULL, *signing_key = NULL;
	bool scripted = false;
	int rc = 1;

	if (existing && access(existing, F_OK) == 0) {
		fprintf(stderr,
		        "sluice dev: %s already names a running stack (%s); run `sluice dev down "
		        "--env-file %s` first\n",
		        env_file, existing, env_file);
		free(existing);
		return 1;
	}
	free(existing);
	agents_abs = realpath(agents, NULL);
	if (!agents_abs) {
		fprintf(stderr, "sluice dev: agents file %s: %s\n", agents, strerror(errno));
		return 1;
	}
	sl_buf_init(&env, 1 << 20);
	migrations = cli_migrations_dir();
	if (!open_stack(&s, env_file)) {
		if (!s.dir)
			goto out; /* no folder: nothing to clean */
		goto fail;
	}
	addr = kafka_nodes ? start_apache_kafka(&s, cfg, kafka_nodes) : start_broker(&s, cfg);
	if (!addr || !(url = start_database(&s, migrations)))
		goto fail;
	export("SLUICE_KAFKA_BROKERS", addr, &env);
	/* The dev broker (librdkafka's mock cluster) answers an empty fetch only
	 * after the whole fetch wait, which would be added to every hop; a
	 * Kafka broker answers as soon as data arrives. */
	export("SLUICE_KAFKA_FETCH_WAIT_MS", kafka_nodes ? "100" : "1", &env);
	export("SLUICE_DATABASE_URL", url, &env);
	export("SLUICE_TOPIC_PREFIX", cfg->topic_prefix, &env);
	export("SLUICE_AGENTS", agents_abs, &env);
	if (!(model_url = start_model(&s, cfg, &scripted)))
		goto fail;
	export("OPENAI_BASE_URL", model_url, &env);
	if (!make_keys(&s, &env, &signing_key) ||
	    !(approver_url = start_approver(&s, &env, signing_key)) || !start_workers(&s, workers))
		goto fail;
	/* in the env file, for an approver started by hand; never in the
	 * workers' environment */
	sl_buf_append(&env, "SLUICE_SIGNING_KEY=", strlen("SLUICE_SIGNING_KEY="));
	sl_buf_append(&env, signing_key, strlen(signing_key));
	sl_buf_append(&env, "\n", 1);
	export("SLUICE_DEV_DIR", s.dir, &env);
	if (!write_file(env_file, env.data)) {
		fprintf(stderr, "sluice dev: cannot write %s\n", env_file);
		goto fail;
	}
	printf("sluice dev stack is up: %s %s, PostgreSQL %s, approver %s, %ld worker(s)%s\n"
	       "environment written to %s; logs in %s\n",
	       kafka_nodes ? "Apache Kafka" : "broker", addr, url, approver_url, workers,
	       scripted ? ", scripted model" : "", env_file, s.dir);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "sluice dev: up failed; stopping what was started\n");
	teardown(&s);
	unlink(env_file);
out:
	sl_buf_free(&env);
	free(s.dir);
	free(s.env_file);
	free(s.bindir);
	free(s.pgbin);
	free(addr);
	free(url);
	free(model_url);
	free(agents_abs);
	free(migrations);
	free(approver_url);
	free(signing_key);
	return rc;
}

static int dev_down(const char *env_file)
{
	stack s = {0};

	s.dir = env_file_get(env_file, "SLUICE_DEV_DIR");
	if (!s.dir) {
		fprintf(stderr, "sluice dev: %s names no stack (no SLUICE_DEV_DIR)\n", env_file);
		return 1;
	}
	if (access(s.dir, F_OK) == 0)
		teardown(&s);
	unlink(env_file);
	printf("sluice dev stack in %s is down\n", s.dir);
	free(s.dir);
	free(s.pgbin);
	return 0;
}

int cli_dev(sl_config *cfg, int argc, char **argv)
{
	const char *env_file = NULL, *kafka = "mock";
	char *agents = NULL;
	long workers = 1, kafka_nodes = 1;
	int rc;

	if (argc < 1)
		return usage();
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--env-file") && i + 1 < argc)
			env_file = argv[++i];
		else if (!strcmp(argv[i], "--agents") && i + 1 < argc) {
			free(agents);
			agents = sl_strdup(argv[++i]);
		} else if (!strcmp(argv[i], "--kafka") && i + 1 < argc) {
			kafka = argv[++i];
			if (strcmp(kafka, "mock") && strcmp(kafka, "apache")) {
				fprintf(stderr, "sluice dev: --kafka is mock or apache\n");
				free(agents);
				return 2;
			}
		} else if (!strcmp(argv[i], "--kafka-nodes") && i + 1 < argc) {
			if (!sl_parse_long(argv[++i], 1, MAX_KAFKA_NODES, &kafka_nodes)) {
				fprintf(stderr, "sluice dev: --kafka-nodes must be 1 to %d\n",
				        MAX_KAFKA_NODES);
				free(agents);
				return 2;
			}
		} else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
			if (!sl_parse_long(argv[++i], 1, MAX_WORKERS, &workers)) {
				fprintf(stderr, "sluice dev: --workers must be 1 to %d\n",
				        MAX_WORKERS);
				free(agents);
				return 2;
			}
		} else {
			free(agents);
			return usage();
		}
	}
	if (!env_file) {
		free(agents);
		return usage();
	}
	if (!strcmp(argv[0], "up")) {
		/* --agents is also the SLUICE_AGENTS flag, which main() applies */
		if (!agents)
			agents = cfg->agents ? sl_strdup(cfg->agents) : default_agents();
		rc = dev_up(cfg, env_file, agents, workers,
		            strcmp(kafka, "apache") ? 0 : kafka_nodes);
	} else if (!strcmp(argv[0], "down")) {
		rc = dev_down(env_file);
	} else {
		rc = usage();
	}
	free(agents);
	return rc;
}
