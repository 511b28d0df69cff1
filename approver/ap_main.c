/*
 * ap_main.c - sluice-approver: consumes sluice.approvals (group
 * "sluice-approver"), serves the HTTP API on its own threads (each with a
 * database connection for reads; decisions go to the decision thread and
 * its connection, ap_decide.h), and relays its outbox (the continue events).
 */
#include "ap_api.h"
#include "ap_chain.h"
#include "ap_store.h"
#include "sl_config.h"
#include "sl_consume.h"
#include "sl_db.h"
#include "sl_event.h"
#include "sl_http.h"
#include "sl_kafka.h"
#include "sl_log.h"
#include "sl_relay.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static sl_stop_flag stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

typedef struct approver {
	sl_config cfg;
	rd_kafka_t *consumer;
	rd_kafka_t *producer;
	ap_store store; /* the consumer's; the HTTP thread has its own */
	ap_api api;
	sl_httpd *httpd;
	ap_decider *decider; /* the API's decisions, in batches */
	sl_relay *relay;
	ap_chain *chain;   /* the ledger's chainer */
	sl_signer signer;  /* SLUICE_SIGNING_KEY: checkpoints (and receipts) */
	sl_agents *agents; /* SLUICE_AGENTS, for the tools' policies; NULL: none */
	ap_hooks *hooks;   /* SLUICE_WEBHOOKS; NULL: none */
	char *timers;      /* the tools' reminders and escalations (ap_store_timers) */
	ap_hooks_sender *sender;
	char *public_url;
	bool run_events; /* a webhook wants run.completed or run.failed: results consumed */
	bool signing;    /* signer is loaded */
	char *source;
	char *topic_approvals;
	char *topic_continues;
	char *topic_results;
	char *topic_runs; /* runs submitted over HTTP */
	long threads, relay_poll_ms;
	sl_httpd_limits limits;
	bool api_ready; /* ap_api_init() was called */
} approver;

static sl_status on_event(void *ud, const sl_event *ev, char *errbuf, size_t errsize)
{
	approver *a = ud;
	sl_status st = sl_db_ensure(a->store.db, errbuf, errsize);

	if (st)
		return st;
	if (!strcmp(ev->type, SL_EVENT_RUN_PAUSED))
		return ap_store_record_paused(&a->store, ev, errbuf, errsize);
	return ap_store_record_result(&a->store, ev, errbuf, errsize);
}

static void handle(approver *a, const rd_kafka_message_t *m)
{
	/* the results topic is consumed only for the webhooks (start_consuming) */
	static const char *paused[] = {SL_EVENT_RUN_PAUSED, NULL};
	static const char *results[] = {SL_EVENT_RUN_COMPLETED, SL_EVENT_RUN_FAILED, NULL};
	bool is_result = !strcmp(rd_kafka_topic_name(m->rkt), a->topic_results);
	sl_status st = sl_consume(a->consumer, a->producer, &a->cfg, m,
	                          is_result ? results : paused, on_event, a, &stopping);

	if (st == SL_OK || st == SL_INVALID)
		ap_api_count_event(st == SL_INVALID);
}

/* Acts on requirements past their expires_at (fail safe: rejections,
 * unless their tool or a policy says otherwise), then on the reminders and
 * escalations due. */
static void expire(approver *a)
{
	char errbuf[512];
	int n;

	if (sl_db_ensure(a->store.db, errbuf, sizeof(errbuf)) ||
	    ap_store_expire_due(&a->store, &n, errbuf, sizeof(errbuf)))
		sl_warn("expiry: %s", errbuf);
	else if (ap_store_remind_due(&a->store, &n, errbuf, sizeof(errbuf)))
		sl_warn("reminders: %s", errbuf);
}

/* SLUICE_RECEIPT_KEYS (the public keys, served at GET /v1/keys) and
 * SLUICE_SIGNING_KEY (the approver's, among them): both needed; false,
 * logged, when one is missing or cannot be used. */
static bool load_keys(approver *a)
{
	char errbuf[1024];

	if (a->cfg.receipt_keys && *a->cfg.receipt_keys &&
	    sl_keyset_load(&a->api.keys, a->cfg.receipt_keys, errbuf, sizeof(errbuf))) {
		sl_error("SLUICE_RECEIPT_KEYS: %s", errbuf);
		return false;
	}
	if (!a->cfg.signing_key || !*a->cfg.signing_key) {
		sl_error(
		    "SLUICE_SIGNING_KEY is not set: the approver signs every decision's receipt "
		    "(and the ledger's checkpoints) with it; sluice keys new makes one");
		return false;
	}
	if (!a->api.keys.n) {
		sl_error(
		    "SLUICE_SIGNING_KEY needs SLUICE_RECEIPT_KEYS, the JWKS its public key is in");
		return false;
	}
	if (sl_signer_load(&a->signer, a->cfg.signing_key, &a->api.keys, errbuf, sizeof(errbuf))) {
		sl_error("SLUICE_SIGNING_KEY: %s", errbuf);
		return false;
	}
	a->signing = true;
	a->store.signer = a->api.store.signer = &a->signer;
	return true;
}

/* Settings, arguments, identities, number settings and topic names; false,
 * logged, when one is not valid. */
static bool configure(approver *a, int argc, char **argv)
{
	static const char *required[] = {"SLUICE_KAFKA_BROKERS", "SLUICE_DATABASE_URL", NULL};
	char **rest = sl_calloc((size_t)argc + 1, sizeof(char *));
	long max_conns, max_client_conns, request_s;
	char errbuf[1024];
	bool ok = false;
	int nrest;

	sl_config_from_env(&a->cfg);
	if (sl_config_from_args(&a->cfg, argc, argv, 1, rest, &nrest, errbuf, sizeof(errbuf)) ||
	    sl_config_require(&a->cfg, required, errbuf, sizeof(errbuf)) ||
	    ap_access_load(&a->api.access, a->cfg.access, a->cfg.api_tokens, errbuf,
	                   sizeof(errbuf))) {
		sl_error("%s", errbuf);
		goto out;
	}
	if (nrest) {
		sl_error("unknown argument %s", rest[0]);
		goto out;
	}
	/* The tools' policies decide requirements: a file that cannot be
	 * read, or a rule that is wrong, stops the approver. */
	if (a->cfg.agents && *a->cfg.agents &&
	    sl_agents_load(a->cfg.agents, &a->agents, errbuf, sizeof(errbuf))) {
		sl_error("SLUICE_AGENTS: %s", errbuf);
		goto out;
	}
	a->store.agents = a->api.store.agents = a->agents;
	a->timers = ap_store_timers(a->agents);
	a->store.timers = a->api.store.timers = a->timers;
	/* webhooks: a file that cannot be read, a secret not set, stops it */
	if (a->cfg.webhooks && *a->cfg.webhooks &&
	    ap_hooks_load(a->cfg.webhooks, &a->hooks, errbuf, sizeof(errbuf))) {
		sl_error("SLUICE_WEBHOOKS: %s", errbuf);
		goto out;
	}
	a->run_events =
	    ap_hooks_urls(a->hooks, AP_HOOK_COMPLETED) || ap_hooks_urls(a->hooks, AP_HOOK_FAILED);
	a->public_url = a->cfg.public_url && *a->cfg.public_url
	                    ? sl_strdup(a->cfg.public_url)
	                    : sl_asprintf("http://%s", a->cfg.approver_listen);
	/* no trailing slash: links append "/?requirement=ID" */
	while (*a->public_url && a->public_url[strlen(a->public_url) - 1] == '/')
		a->public_url[strlen(a->public_url) - 1] = '\0';
	a->store.hooks = a->api.store.hooks = a->hooks;
	a->store.public_url = a->api.store.public_url = a->public_url;
	if (!sl_config_long(&a->cfg, "SLUICE_APPROVER_THREADS", &a->threads) ||
	    !sl_config_long(&a->cfg, "SLUICE_APPROVER_MAX_CONNECTIONS", &max_conns) ||
	    !sl_config_long(&a->cfg, "SLUICE_APPROVER_MAX_CLIENT_CONNECTIONS", &max_client_conns) ||
	    !sl_config_long(&a->cfg, "SLUICE_APPROVER_REQUEST_TIMEOUT_S", &request_s) ||
	    !sl_config_long(&a->cfg, "SLUICE_RELAY_POLL_MS", &a->relay_poll_ms))
		goto out;
	a->limits.max_connections = (unsigned)max_conns;
	a->limits.max_client_connections = (unsigned)max_client_conns;
	a->limits.request_s = (unsigned)request_s;
	a->source = sl_event_source("approver");
	a->topic_approvals = sl_config_topic(&a->cfg, "approvals");
	a->topic_continues = sl_config_topic(&a->cfg, "continues");
	a->topic_results = sl_config_topic(&a->cfg, "results");
	a->store.source = a->api.store.source = a->source;
	a->store.topic_continues = a->api.store.topic_continues = a->topic_continues;
	a->store.topic_results = a->api.store.topic_results = a->topic_results;
	a->topic_runs = sl_config_topic(&a->cfg, "runs");
	a->store.topic_runs = a->api.store.topic_runs = a->topic_runs;
	a->api.database_url = a->cfg.database_url;
	if (!load_keys(a))
		goto out;
	ok = true;
out:
	free(rest);
	return ok;
}

/* The consumer's connection and the Kafka clients. */
static bool start_consuming(approver *a)
{
	const char *topics[] = {a->topic_approvals, a->run_events ? a->topic_results : NULL, NULL};
	char errbuf[1024];

	/* the paused events' checks and the expiry: all by key */
	a->store.db =
	    sl_db_connect_with(a->cfg.database_url, SL_DB_KEY_LOOKUPS, errbuf, sizeof(errbuf));
	if (!a->store.db) {
		sl_error("%s", errbuf);
		return false;
	}
	if (!(a->producer = sl_kafka_producer_new(&a->cfg, errbuf, sizeof(errbuf)))) {
		sl_error("kafka producer: %s", errbuf);
		return false;
	}
	if (!sl_kafka_topics_ready(a->producer, &a->cfg))
		return false;
	a->consumer =
	    sl_kafka_consumer_new(&a->cfg, "sluice-approver", topics, errbuf, sizeof(errbuf));
	if (!a->consumer) {
		sl_error("kafka consumer: %s", errbuf);
		return false;
	}
	return true;
}

/* The relay, the decider and the HTTP API. Decisions arrive over HTTP:
 * their continue events go out as soon as their transactions commit (the
 * stores hand them to the relay, or wake it for a cancel's result). */
static bool start_serving(approver *a)
{
	char errbuf[1024];

	if (!(a->relay = sl_relay_start(&a->cfg, (int)a->relay_poll_ms, errbuf, sizeof(errbuf)))) {
		sl_error("outbox relay: %s", errbuf);
		return false;
	}
	a->store.relay = a->api.store.relay = a->relay;
	ap_api_init(&a->api);
	a->api_ready = true;
	a->decider = ap_decider_start(a->cfg.database_url, &a->api.store, errbuf, sizeof(errbuf));
	if (!a->decider) {
		sl_error("%s", errbuf);
		return false;
	}
	a->api.decider = a->decider;
	if (!(a->chain = ap_chain_start(a->cfg.database_url, a->signing ? &a->signer : NULL, errbuf,
	                                sizeof(errbuf)))) {
		sl_error("%s", errbuf);
		return false;
	}
	if (a->hooks &&
	    !(a->sender = ap_hooks_start(a->hooks, a->cfg.database_url, errbuf, sizeof(errbuf)))) {
		sl_error("%s", errbuf);
		return false;
	}
	a->api.kafka = a->producer;
	a->httpd = sl_httpd_start(a->cfg.approver_listen, AP_API_MAX_BODY, (unsigned)a->threads,
	                          &a->limits, ap_api_handle, &a->api, errbuf, sizeof(errbuf));
	if (!a->httpd) {
		sl_error("%s", errbuf);
		return false;
	}
	atomic_store(&a->api.httpd, a->httpd);
	return true;
}

/* Stops and frees whatever was started. Decisions in progress are answered
 * before the server stops; those that come in meanwhile get 503. */
static void stop_all(approver *a)
{
	ap_decider_stop(a->decider);
	sl_httpd_stop(a->httpd);
	ap_decider_free(a->decider);
	if (a->api_ready)
		ap_api_fini(&a->api);
	ap_chain_stop(a->chain);
	ap_hooks_stop(a->sender);
	sl_relay_stop(a->relay);
	if (a->consumer) {
		rd_kafka_consumer_close(a->consumer);
		rd_kafka_destroy(a->consumer);
	}
	if (a->producer) {
		rd_kafka_flush(a->producer, 5000);
		rd_kafka_destroy(a->producer);
	}
	if (a->store.db)
		PQfinish(a->store.db);
	ap_access_free(&a->api.access);
	sl_signer_free(&a->signer);
	sl_keyset_free(&a->api.keys);
	free(a->source);
	free(a->topic_approvals);
	free(a->topic_continues);
	free(a->topic_results);
	free(a->topic_runs);
	sl_agents_free(a->agents);
	ap_hooks_free(a->hooks);
	free(a->timers);
	free(a->public_url);
	sl_config_free(&a->cfg);
}

int main(int argc, char **argv)
{
	approver a;
	long long next_expiry = 0;
	int rc = 1;

	memset(&a, 0, sizeof(a));
	sl_log_init("sluice-approver");
	sl_http_global_init();
	if (!configure(&a, argc, argv) || !start_consuming(&a))
		goto out;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (!start_serving(&a))
		goto out;
	sl_info("approver started: HTTP API on %s (%ld threads), %zu identities, consuming %s",
	        a.cfg.approver_listen, a.threads, a.api.access.n, a.topic_approvals);
	while (!stopping) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(a.consumer, 20);

		if (m) {
			if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				sl_warn("kafka: %s", rd_kafka_message_errstr(m));
			else if (!m->err)
				handle(&a, m);
			rd_kafka_message_destroy(m);
		}
		if (sl_mono_ms() >= next_expiry) {
			expire(&a);
			next_expiry = sl_mono_ms() + 1000;
		}
	}
	sl_info("approver stopping");
	rc = 0;
out:
	stop_all(&a);
	return rc;
}
