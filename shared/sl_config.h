/*
 * sl_config.h - the configuration of DESIGN.md: environment variables, each
 * overridable by a flag of the same name (SLUICE_KAFKA_BROKERS is
 * --kafka-brokers, OPENAI_BASE_URL is --openai-base-url).
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include "sl_common.h"

typedef struct sl_config {
	char *kafka_brokers;
	char *kafka_fetch_wait_ms; /* consumers' fetch.wait.max.ms */
	char *database_url;
	char *topic_prefix;
	char *agents;
	char *approver_listen;
	char *access;        /* the approver's access file (SLUICE_ACCESS) */
	char *signing_key;   /* the approver's Ed25519 private key, PEM (sl_keys.h) */
	char *receipt_keys;  /* the JWKS of public keys receipts and checkpoints are checked with */
	char *worker_listen; /* the worker's probes (wk_health.h); NULL: none */
	char *approver_url;
	char *api_tokens;
	char *api_token;
	char *openai_api_key;
	char *openai_base_url;
	char *worker_concurrency;              /* database threads and connections of a worker */
	char *worker_max_in_flight;            /* messages a worker works on at once */
	char *worker_tool_threads;             /* tool executions a worker runs at once */
	char *approver_threads;                /* HTTP threads of the approver, a connection each */
	char *approver_max_connections;        /* HTTP connections at once, in all */
	char *approver_max_client_connections; /* ... from one client address */
	char *approver_request_timeout_s;      /* for a request to arrive whole */
	char *relay_poll_ms;                   /* how often an outbox relay looks unwoken */
	char *webhooks;   /* the approver's webhooks file (SLUICE_WEBHOOKS); NULL: none */
	char *public_url; /* the inbox's address as people reach it (links in notifications) */
} sl_config;

/* Fills c from the environment, with the documented defaults. */
void sl_config_from_env(sl_config *c);

/*
 * Applies "--name value" / "--name=value" flags from argv[first..argc) that
 * name configuration variables. Other arguments are left, in order, in
 * rest (which must hold argc entries); *nrest receives their count.
 * Returns SL_INVALID when a configuration flag has no value.
 */
sl_status sl_config_from_args(sl_config *c, int argc, char **argv, int first, char **rest,
                              int *nrest, char *errbuf, size_t errsize);

/* Fails with SL_INVALID naming the first of the listed settings that is
 * missing: names are the environment names ("SLUICE_KAFKA_BROKERS"). */
sl_status sl_config_require(const sl_config *c, const char *const *names, char *errbuf,
                            size_t errsize);

/* Reads the number setting name, as in the environment
 * ("SLUICE_WORKER_CONCURRENCY"), into *out. When it is not a whole number
 * within the range the settings' table gives it, logs "NAME must be a
 * number from LO to HI" and returns false. */
bool sl_config_long(const sl_config *c, const char *name, long *out);

/* Returns a newly allocated full topic name: prefix + name ("runs"). */
char *sl_config_topic(const sl_config *c, const char *name);

void sl_config_free(sl_config *c);

#endif
