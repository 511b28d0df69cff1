/*
 * cli_main.c - the sluice command: submit runs, read and decide
 * requirements and approvals over the approver's HTTP API, migrate, and run
 * the development stack.
 */
#include "cli.h"
#include "sl_db.h"
#include "sl_event.h"
#include "sl_http.h"
#include "sl_kafka.h"
#include "sl_keys.h"
#include "sl_log.h"
#include "sl_outbox.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
	fprintf(
	    stderr,
	    "usage: sluice COMMAND [ARGS]\n"
	    "  submit --agent ID --input TEXT [--run-id ID] [--session-id ID] [--user-id ID]\n"
	    "                            publish a sluice.run.requested event; prints the run id\n"
	    "  runs get RUN_ID           show a run, its requirements and output\n"
	    "  requirements list [--status S] [--run-id ID] [--limit N] [--page N]\n"
	    "  requirements confirm|reject ID [--note TEXT] [--grant JSON]\n"
	    "                            --grant "
	    "{\"scope\":\"run\"|\"session\",\"ttl_s\":N,\"args\":{...}}:\n"
	    "                            approve later calls of the tool there too\n"
	    "  grants list [--run-id ID] [--session-id ID] [--active true]\n"
	    "  grants revoke ID\n"
	    "  requirements decide --filter JSON --decision confirm|reject [--note TEXT] "
	    "[--dry-run]\n"
	    "                            decide every pending requirement the filter picks (at\n"
	    "                            most 500 a call), each as if alone; --dry-run counts\n"
	    "  requirements input ID --values JSON      fill in a user-input tool's fields\n"
	    "  requirements result ID --result TEXT     the result of an external tool\n"
	    "  runs cancel RUN_ID [--reason TEXT]\n"
	    "  approvals resolve ID --status approved|rejected [--resolution-data JSON]\n"
	    "  approvals list [--status S] [--approval-type T] [--run-id ID] [--limit N] ...\n"
	    "  approvals get ID\n"
	    "  migrate [--dir DIR]       apply pending database migrations\n"
	    "  audit verify [--keys JWKS]                check the audit ledger and its\n"
	    "                            signed checkpoints in the database\n"
	    "  audit verify --file EXPORT --keys JWKS    the same, offline\n"
	    "  audit export [--since TIME] [--until TIME]  the ledger as NDJSON\n"
	    "  policy test --tool NAME --args JSON [--agent ID] [--user-id ID] [--session-id ID]\n"
	    "                            which policy of the agents file would decide such a\n"
	    "                            call (none: a person decides)\n"
	    "  keys new --kid ID --private-key FILE --jwks FILE\n"
	    "                            an Ed25519 key pair: the approver's signing key and\n"
	    "                            its public key added to a JWKS\n"
	    "  token new NAME [--roles LIST]\n"
	    "                            a new API token and its access-file entry (SHA-256 only)\n"
	    "  topics create [--partitions N] [--replication-factor R]\n"
	    "                            create the five topics (8 partitions, the brokers'\n"
	    "                            default replication factor unless given)\n"
	    "  prune                     delete sent outbox rows older than " SL_OUTBOX_KEEP_SENT
	    "\n"
	    "                            and processed events older than " SL_INBOX_KEEP "\n"
	    "  dev up --env-file FILE [--agents FILE] [--workers N]\n"
	    "  dev down --env-file FILE\n"
	    "Configuration comes from SLUICE_* environment variables or --kafka-brokers,\n"
	    "--database-url, --topic-prefix, --approver-url, --api-token flags.\n");
	return 2;
}

static int submit(sl_config *cfg, int argc, char **argv)
{
	static const char *required[] = {"SLUICE_KAFKA_BROKERS", NULL};
	const char *agent = NULL, *input = NULL, *run_id = NULL, *session_id = NULL,
	           *user_id = NULL;
	char generated[37], errbuf[512];
	char *source, *topic, *payload;
	json_t *event;
	rd_kafka_t *producer;
	sl_kafka_out out;
	sl_status st;

	for (int i = 0; i < argc; i++) {
		const char **dst = !strcmp(argv[i], "--agent")        ? &agent
		                   : !strcmp(argv[i], "--input")      ? &input
		                   : !strcmp(argv[i], "--run-id")     ? &run_id
		                   : !strcmp(argv[i], "--session-id") ? &session_id
		                   : !strcmp(argv[i], "--user-id")    ? &user_id
		                                                      : NULL;
		if (!dst || i + 1 >= argc)
			return usage();
		*dst = argv[++i];
	}
	if (!agent || !input)
		return usage();
	if (sl_config_require(cfg, required, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice submit: %s\n", errbuf);
		return 2;
	}
	if (!run_id) {
		sl_uuid_v7(generated);
		run_id = generated;
	}
	source = sl_event_source("cli");
	event = sl_event_new(SL_EVENT_RUN_REQUESTED, source, run_id,
	                     json_pack("{s:s, s:s?, s:s, s:s?, s:s}", "run_id", run_id,
	                               "session_id", session_id, "agent_id", agent, "user_id",
	                               user_id, "input", input));
	payload = json_dumps(event, JSON_COMPACT);
	topic = sl_config_topic(cfg, "runs");
	out = (sl_kafka_out){
	    .topic = topic, .key = run_id, .payload = payload, .len = strlen(payload)};
	producer = sl_kafka_producer_new(cfg, errbuf, sizeof(errbuf));
	st = producer ? sl_kafka_produce_batch(producer, &out, 1, 30000, errbuf, sizeof(errbuf))
	              : SL_FATAL;
	if (st)
		fprintf(stderr, "sluice submit: %s\n", errbuf);
	else
		printf("%s\n", run_id);
	if (producer)
		rd_kafka_destroy(producer);
	json_decref(event);
	free(payload);
	free(topic);
	free(source);
	return st ? 1 : 0;
}

/* Sends one API request and prints the JSON answer. Exit code 0 on 2xx,
 * 1 otherwise (the error body is printed to stderr). */
static int api(sl_config *cfg, const char *method, const char *path, const char *body)
{
	static const char *required[] = {"SLUICE_APPROVER_URL", "SLUICE_API_TOKEN", NULL};
	char errbuf[512];
	char *url, *auth;
	const char *headers[3];
	sl_http_response r;
	sl_status st;

	if (sl_config_require(cfg, required, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice: %s\n", errbuf);
		return 2;
	}
	url = sl_asprintf("%s%s", cfg->approver_url, path);
	auth = sl_asprintf("Authorization: Bearer %s", cfg->api_token);
	headers[0] = auth;
	headers[1] = "Content-Type: application/json";
	headers[2] = NULL;
	st = sl_http_request(method, url, headers, body, 64 * 1024 * 1024, 30000, &r, errbuf,
	                     sizeof(errbuf));
	free(url);
	free(auth);
	if (st) {
		fprintf(stderr, "sluice: %s\n", errbuf);
		return 1;
	}
	fprintf(r.status >= 200 && r.status < 300 ? stdout : stderr, "%s\n", r.body);
	st = r.status >= 200 && r.status < 300 ? SL_OK : SL_INVALID;
	sl_http_response_free(&r);
	return st ? 1 : 0;
}

/* POSTs body (stolen) as JSON to path (freed) and prints the answer. */
static int post_json(sl_config *cfg, char *path, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	int rc = api(cfg, "POST", path, text);

	free(text);
	free(path);
	json_decref(body);
	return rc;
}

/* Turns "--flag-name VALUE" pairs into "?flag_name=VALUE&..." (escaped). */
static char *query(int argc, char **argv, bool *ok)
{
	sl_buf q;
	char *out;

	*ok = true;
	sl_buf_init(&q, 1 << 16);
	for (int i = 0; i < argc; i++) {
		char *esc;
		if (strncmp(argv[i], "--", 2) || i + 1 >= argc) {
			*ok = false;
			break;
		}
		sl_buf_append(&q, q.len ? "&" : "?", 1);
		for (const char *c = argv[i] + 2; *c; c++)
			sl_buf_append(&q, *c == '-' ? "_" : c, 1);
		esc = curl_easy_escape(NULL, argv[++i], 0);
		sl_buf_append(&q, "=", 1);
		sl_buf_append(&q, esc, strlen(esc));
		curl_free(esc);
	}
	out = sl_buf_steal(&q);
	return out;
}

static int list(sl_config *cfg, const char *base, int argc, char **argv)
{
	bool ok;
	char *q = query(argc, argv, &ok), *path;
	int rc;

	if (!ok) {
		free(q);
		return usage();
	}
	path = sl_asprintf("%s%s", base, q);
	rc = api(cfg, "GET", path, NULL);
	free(path);
	free(q);
	return rc;
}

static int decide(sl_config *cfg, const char *verb, int argc, char **argv)
{
	json_t *body = json_object();

	if (argc < 1 || !sl_event_id_valid(argv[0])) {
		json_decref(body);
		return usage();
	}
	for (int i = 1; i < argc; i++) {
		json_t *grant;

		if (!strcmp(argv[i], "--note") && i + 1 < argc) {
			json_object_set_new(body, "note", json_string(argv[++i]));
		} else if (!strcmp(argv[i], "--grant") && i + 1 < argc &&
		           !strcmp(verb, "confirm")) {
			if (!(grant = json_loads(argv[++i], 0, NULL)) || !json_is_object(grant)) {
				fprintf(stderr, "sluice: --grant must be a JSON object\n");
				json_decref(grant);
				json_decref(body);
				return 2;
			}
			json_object_set_new(body, "grant", grant);
		} else {
			json_decref(body);
			return usage();
		}
	}
	return post_json(cfg, sl_asprintf("/v1/requirements/%s/%s", argv[0], verb), body);
}

/* sluice requirements decide --filter JSON --decision confirm|reject
 * [--note TEXT] [--dry-run] */
static int decide_many(sl_config *cfg, int argc, char **argv)
{
	json_t *body = json_object(), *filter = NULL;
	const char *decision = NULL;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--dry-run")) {
			json_object_set_new(body, "dry_run", json_true());
		} else if (i + 1 < argc && !strcmp(argv[i], "--note")) {
			json_object_set_new(body, "note", json_string(argv[++i]));
		} else if (i + 1 < argc && !strcmp(argv[i], "--decision")) {
			decision = argv[++i];
		} else if (i + 1 < argc && !strcmp(argv[i], "--filter") && !filter) {
			if (!(filter = json_loads(argv[++i], 0, NULL)) || !json_is_object(filter)) {
				fprintf(stderr, "sluice: --filter must be a JSON object\n");
				json_decref(filter);
				json_decref(body);
				return 2;
			}
		} else {
			json_decref(filter);
			json_decref(body);
			return usage();
		}
	}
	if (!filter || !decision) {
		json_decref(filter);
		json_decref(body);
		return usage();
	}
	json_object_set_new(body, "filter", filter);
	json_object_set_new(body, "decision", json_string(decision));
	return post_json(cfg, sl_strdup("/v1/requirements/decide"), body);
}

/* sluice requirements input ID --values JSON | result ID --result TEXT */
static int decide_with(sl_config *cfg, const char *verb, const char *flag, bool json_value,
                       int argc, char **argv)
{
	json_t *body, *v;

	if (argc != 3 || !sl_event_id_valid(argv[0]) || strcmp(argv[1], flag))
		return usage();
	v = json_value ? json_loads(argv[2], 0, NULL) : json_string(argv[2]);
	if (!v) {
		fprintf(stderr, "sluice: %s must be JSON\n", flag);
		return 2;
	}
	body = json_pack("{s:o}", flag + 2, v);
	return post_json(cfg, sl_asprintf("/v1/requirements/%s/%s", argv[0], verb), body);
}

/* sluice runs cancel ID [--reason TEXT] */
static int cancel_run(sl_config *cfg, int argc, char **argv)
{
	json_t *body = json_object();

	if (argc < 1 || !sl_event_id_valid(argv[0]) ||
	    (argc > 1 && (argc != 3 || strcmp(argv[1], "--reason")))) {
		json_decref(body);
		return usage();
	}
	if (argc == 3)
		json_object_set_new(body, "reason", json_string(argv[2]));
	return post_json(cfg, sl_asprintf("/v1/runs/%s/cancel", argv[0]), body);
}

/* sluice approvals resolve ID --status approved|rejected [--resolution-data JSON] */
static int resolve_approval(sl_config *cfg, int argc, char **argv)
{
	json_t *body = json_object();

	if (argc < 1 || !sl_event_id_valid(argv[0]))
		goto usage;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--status") && i + 1 < argc)
			json_object_set_new(body, "status", json_string(argv[++i]));
		else if (!strcmp(argv[i], "--resolution-data") && i + 1 < argc) {
			json_t *d = json_loads(argv[++i], 0, NULL);
			if (!d) {
				fprintf(stderr, "sluice: --resolution-data must be JSON\n");
				json_decref(body);
				return 2;
			}
			json_object_set_new(body, "resolution_data", d);
		} else
			goto usage;
	}
	return post_json(cfg, sl_asprintf("/v1/approvals/%s/resolve", argv[0]), body);
usage:
	json_decref(body);
	return usage();
}

static int get(sl_config *cfg, const char *base, int argc, char **argv)
{
	char *path;
	int rc;

	if (argc != 1 || !sl_event_id_valid(argv[0]))
		return usage();
	path = sl_asprintf("%s/%s", base, argv[0]);
	rc = api(cfg, "GET", path, NULL);
	free(path);
	return rc;
}

/*
 * sluice token new NAME [--roles LIST]: a new random API token for NAME,
 * and the access file's entry for it, which holds only its SHA-256. The
 * token is printed once and kept nowhere.
 */
static int token_new(int argc, char **argv)
{
	const char *roles = "approver";
	unsigned char raw[32], md[32];
	unsigned int mdlen = 0;
	char token[65], hash[65];
	json_t *principal, *list;
	char *line, *save = NULL, *copy, *role;

	if (argc < 1 || (argc != 1 && (argc != 3 || strcmp(argv[1], "--roles"))))
		return usage();
	if (argc == 3)
		roles = argv[2];
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		fprintf(stderr, "sluice token new: no random bytes\n");
		return 1;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(token + 2 * i, 3, "%02x", raw[i]);
	EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL);
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(hash + 2 * i, 3, "%02x", md[i]);
	list = json_array();
	copy = sl_strdup(roles);
	for (role = strtok_r(copy, ",", &save); role; role = strtok_r(NULL, ",", &save))
		json_array_append_new(list, json_string(role));
	free(copy);
	principal =
	    json_pack("{s:s, s:s, s:o}", "name", argv[0], "token_sha256", hash, "roles", list);
	line = principal ? json_dumps(principal, JSON_COMPACT) : NULL;
	if (!line) {
		fprintf(stderr, "sluice token new: the name must be UTF-8 text\n");
		json_decref(principal);
		return 2;
	}
	printf("token        %s\n"
	       "token_sha256 %s\n"
	       "principal    %s\n",
	       token, hash, line);
	fprintf(stderr,
	        "Give the token to %s: it is shown once and kept nowhere. Add the "
	        "principal to the access file (SLUICE_ACCESS).\n",
	        argv[0]);
	free(line);
	json_decref(principal);
	return 0;
}

/* What the relays do every minute, now. */
static int prune(sl_config *cfg, int argc)
{
	static const char *required[] = {"SLUICE_DATABASE_URL", NULL};
	char errbuf[512];
	long outbox, inbox;
	PGconn *db;
	sl_status st;

	if (argc != 1)
		return usage();
	if (sl_config_require(cfg, required, errbuf, sizeof(errbuf)) ||
	    !(db = sl_db_connect(cfg->database_url, errbuf, sizeof(errbuf)))) {
		fprintf(stderr, "sluice: %s\n", errbuf);
		return 1;
	}
	st = sl_outbox_prune(db, &outbox, &inbox, errbuf, sizeof(errbuf));
	PQfinish(db);
	if (st) {
		fprintf(stderr, "sluice: prune: %s\n", errbuf);
		return 1;
	}
	printf("pruned %ld sent outbox rows and %ld processed events\n", outbox, inbox);
	return 0;
}

static void topic_report(const char *topic, const char *outcome)
{
	printf("%s %s\n", outcome, topic);
}

/* The deployment's topics, through Kafka's admin API. */
static int topics_create(sl_config *cfg, int argc, char **argv)
{
	static const char *required[] = {"SLUICE_KAFKA_BROKERS", NULL};
	long partitions = 8, replication = -1; /* -1: the brokers' default */
	char errbuf[512];

	for (int i = 0; i < argc; i++) {
		long *dst = !strcmp(argv[i], "--partitions")           ? &partitions
		            : !strcmp(argv[i], "--replication-factor") ? &replication
		                                                       : NULL;
		if (!dst || i + 1 >= argc || !sl_parse_long(argv[++i], 1, 10000, dst))
			return usage();
	}
	if (sl_config_require(cfg, required, errbuf, sizeof(errbuf)) ||
	    sl_kafka_topics_create(cfg, (int)partitions, (int)replication, topic_report, errbuf,
	                           sizeof(errbuf))) {
		fprintf(stderr, "sluice topics create: %s\n", errbuf);
		return 1;
	}
	return 0;
}

/* sluice keys new --kid ID --private-key FILE --jwks FILE */
static int keys_new(int argc, char **argv)
{
	const char *kid = NULL, *key = NULL, *jwks = NULL;
	char errbuf[512];

	for (int i = 0; i + 1 < argc; i += 2) {
		const char **slot = !strcmp(argv[i], "--kid")           ? &kid
		                    : !strcmp(argv[i], "--private-key") ? &key
		                    : !strcmp(argv[i], "--jwks")        ? &jwks
		                                                        : NULL;
		if (!slot)
			return usage();
		*slot = argv[i + 1];
	}
	if (argc % 2 || !kid || !*kid || !key || !jwks)
		return usage();
	if (sl_keys_new(kid, key, jwks, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice keys new: %s\n", errbuf);
		return 1;
	}
	printf("private key %s written (mode 0600: give it to the approver as "
	       "SLUICE_SIGNING_KEY); public key %s added to %s (SLUICE_RECEIPT_KEYS)\n",
	       key, kid, jwks);
	return 0;
}

static int dispatch(sl_config *cfg, int argc, char **argv)
{
	const char *cmd = argv[0], *sub = argc > 1 ? argv[1] : "";

	if (!strcmp(cmd, "submit"))
		return submit(cfg, argc - 1, argv + 1);
	if (!strcmp(cmd, "migrate"))
		return cli_migrate(cfg, argc - 1, argv + 1);
	if (!strcmp(cmd, "dev"))
		return cli_dev(cfg, argc - 1, argv + 1);
	if (!strcmp(cmd, "prune"))
		return prune(cfg, argc);
	if (!strcmp(cmd, "audit"))
		return cli_audit(cfg, argc - 1, argv + 1);
	if (!strcmp(cmd, "policy"))
		return cli_policy(cfg, argc - 1, argv + 1);
	if (!strcmp(cmd, "keys") && !strcmp(sub, "new"))
		return keys_new(argc - 2, argv + 2);
	if (!strcmp(cmd, "token") && !strcmp(sub, "new"))
		return token_new(argc - 2, argv + 2);
	if (!strcmp(cmd, "topics") && !strcmp(sub, "create"))
		return topics_create(cfg, argc - 2, argv + 2);
	if (!strcmp(cmd, "runs") && !strcmp(sub, "get"))
		return get(cfg, "/v1/runs", argc - 2, argv + 2);
	if (!strcmp(cmd, "runs") && !strcmp(sub, "cancel"))
		return cancel_run(cfg, argc - 2, argv + 2);
	if (!strcmp(cmd, "requirements") && !strcmp(sub, "input"))
		return decide_with(cfg, "input", "--values", true, argc - 2, argv + 2);
	if (!strcmp(cmd, "requirements") && !strcmp(sub, "result"))
		return decide_with(cfg, "result", "--result", false, argc - 2, argv + 2);
	if (!strcmp(cmd, "approvals") && !strcmp(sub, "resolve"))
		return resolve_approval(cfg, argc - 2, argv + 2);
	if (!strcmp(cmd, "grants") && !strcmp(sub, "list"))
		return list(cfg, "/v1/grants", argc - 2, argv + 2);
	if (!strcmp(cmd, "grants") && !strcmp(sub, "revoke") && argc == 3 &&
	    sl_event_id_valid(argv[2])) {
		char *path = sl_asprintf("/v1/grants/%s", argv[2]);
		int rc = api(cfg, "DELETE", path, NULL);

		free(path);
		return rc;
	}
	if (!strcmp(cmd, "requirements") && !strcmp(sub, "decide"))
		return decide_many(cfg, argc - 2, argv + 2);
	if (!strcmp(cmd, "requirements") && !strcmp(sub, "list"))
		return list(cfg, "/v1/requirements", argc - 2, argv + 2);
	if (!strcmp(cmd, "requirements") && (!strcmp(sub, "confirm") || !strcmp(sub, "reject")))
		return decide(cfg, sub, argc - 2, argv + 2);
	if (!strcmp(cmd, "approvals") && !strcmp(sub, "list"))
		return list(cfg, "/v1/approvals", argc - 2, argv + 2);
	if (!strcmp(cmd, "approvals") && !strcmp(sub, "get"))
		return get(cfg, "/v1/approvals", argc - 2, argv + 2);
	return usage();
}

int main(int argc, char **argv)
{
	sl_config cfg;
	char **rest = sl_calloc((size_t)argc + 1, sizeof(char *));
	char errbuf[512];
	int nrest, rc;

	sl_log_init("sluice");
	sl_http_global_init();
	sl_config_from_env(&cfg);
	if (sl_config_from_args(&cfg, argc, argv, 1, rest, &nrest, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice: %s\n", errbuf);
		rc = 2;
	} else if (nrest == 0 || !strcmp(rest[0], "--help") || !strcmp(rest[0], "help")) {
		rc = usage();
	} else {
		rc = dispatch(&cfg, nrest, rest);
	}
	sl_config_free(&cfg);
	free(rest);
	return rc;
}
