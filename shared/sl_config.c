/*
 * sl_config.c - environment and flag configuration.
 */
#include "sl_config.h"
#include "sl_log.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct field {
	const char *env;
	const char *flag;
	size_t off;
	const char *def;
	long lo, hi; /* a number setting's range; both 0 for text */
};

static const struct field fields[] = {
    {"SLUICE_KAFKA_BROKERS", "--kafka-brokers", offsetof(sl_config, kafka_brokers), NULL, 0, 0},
    {"SLUICE_KAFKA_FETCH_WAIT_MS", "--kafka-fetch-wait-ms",
     offsetof(sl_config, kafka_fetch_wait_ms), "100", 0, 0},
    {"SLUICE_DATABASE_URL", "--database-url", offsetof(sl_config, database_url), NULL, 0, 0},
    {"SLUICE_TOPIC_PREFIX", "--topic-prefix", offsetof(sl_config, topic_prefix), "sluice.", 0, 0},
    {"SLUICE_AGENTS", "--agents", offsetof(sl_config, agents), NULL, 0, 0},
    {"SLUICE_APPROVER_LISTEN", "--approver-listen", offsetof(sl_config, approver_listen),
     "127.0.0.1:8080", 0, 0},
    {"SLUICE_WORKER_LISTEN", "--worker-listen", offsetof(sl_config, worker_listen), NULL, 0, 0},
    {"SLUICE_APPROVER_URL", "--approver-url", offsetof(sl_config, approver_url),
     "http://127.0.0.1:8080", 0, 0},
    {"SLUICE_API_TOKENS", "--api-tokens", offsetof(sl_config, api_tokens), NULL, 0, 0},
    {"SLUICE_ACCESS", "--access", offsetof(sl_config, access), NULL, 0, 0},
    {"SLUICE_SIGNING_KEY", "--signing-key", offsetof(sl_config, signing_key), NULL, 0, 0},
    {"SLUICE_RECEIPT_KEYS", "--receipt-keys", offsetof(sl_config, receipt_keys), NULL, 0, 0},
    {"SLUICE_API_TOKEN", "--api-token", offsetof(sl_config, api_token), NULL, 0, 0},
    {"OPENAI_API_KEY", "--openai-api-key", offsetof(sl_config, openai_api_key), NULL, 0, 0},
    {"OPENAI_BASE_URL", "--openai-base-url", offsetof(sl_config, openai_base_url),
     "https://api.openai.com/v1", 0, 0},
    {"SLUICE_WORKER_CONCURRENCY", "--worker-concurrency", offsetof(sl_config, worker_concurrency),
     "4", 1, 256},
    {"SLUICE_WORKER_MAX_IN_FLIGHT", "--worker-max-in-flight",
     offsetof(sl_config, worker_max_in_flight), "2048", 1, 1000000},
    {"SLUICE_WORKER_TOOL_THREADS", "--worker-tool-threads",
     offsetof(sl_config, worker_tool_threads), "16", 1, 1024},
    {"SLUICE_APPROVER_THREADS", "--approver-threads", offsetof(sl_config, approver_threads), "4", 1,
     256},
    {"SLUICE_APPROVER_MAX_CONNECTIONS", "--approver-max-connections",
     offsetof(sl_config, approver_max_connections), "1024", 1, 60000},
    {"SLUICE_APPROVER_MAX_CLIENT_CONNECTIONS", "--approver-max-client-connections",
     offsetof(sl_config, approver_max_client_connections), "128", 1, 60000},
    {"SLUICE_APPROVER_REQUEST_TIMEOUT_S", "--approver-request-timeout-s",
     offsetof(sl_config, approver_request_timeout_s), "30", 1, 3600},
    {"SLUICE_RELAY_POLL_MS", "--relay-poll-ms", offsetof(sl_config, relay_poll_ms), "1000", 10,
     3600000},
    {"SLUICE_WEBHOOKS", "--webhooks", offsetof(sl_config, webhooks), NULL, 0, 0},
    {"SLUICE_PUBLIC_URL", "--public-url", offsetof(sl_config, public_url), NULL, 0, 0},
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static char **slot(sl_config *c, const struct field *f)
{
	return (char **)((char *)c + f->off);
}

static void set(sl_config *c, const struct field *f, const char *v)
{
	char **p = slot(c, f);

	free(*p);
	*p = v ? sl_strdup(v) : NULL;
}

void sl_config_from_env(sl_config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NFIELDS; i++) {
		const char *v = getenv(fields[i].env);
		set(c, &fields[i], v && *v ? v : fields[i].def);
	}
}

sl_status sl_config_from_args(sl_config *c, int argc, char **argv, int first, char **rest,
                              int *nrest, char *errbuf, size_t errsize)
{
	*nrest = 0;
	for (int i = first; i < argc; i++) {
		const struct field *f = NULL;
		const char *val = NULL;

		for (size_t k = 0; k < NFIELDS && !f; k++) {
			size_t n = strlen(fields[k].flag);
			if (!strncmp(argv[i], fields[k].flag, n) &&
			    (argv[i][n] == '\0' || argv[i][n] == '=')) {
				f = &fields[k];
				val = argv[i][n] == '=' ? argv[i] + n + 1 : NULL;
			}
		}
		if (!f) {
			rest[(*nrest)++] = argv[i];
			continue;
		}
		if (!val) {
			if (i + 1 >= argc)
				return sl_err(errbuf, errsize, SL_INVALID, "%s needs a value",
				              f->flag);
			val = argv[++i];
		}
		set(c, f, val);
	}
	return SL_OK;
}

sl_status sl_config_require(const sl_config *c, const char *const *names, char *errbuf,
                            size_t errsize)
{
	for (; *names; names++) {
		for (size_t k = 0; k < NFIELDS; k++) {
			if (strcmp(fields[k].env, *names))
				continue;
			if (!*slot((sl_config *)c, &fields[k]))
				return sl_err(errbuf, errsize, SL_INVALID,
				              "%s is not set (environment variable or %s flag)",
				              fields[k].env, fields[k].flag);
		}
	}
	return SL_OK;
}

char *sl_config_topic(const sl_config *c, const char *name)
{
	return sl_asprintf("%s%s", c->topic_prefix ? c->topic_prefix : "", name);
}

void sl_config_free(sl_config *c)
{
	for (size_t i = 0; i < NFIELDS; i++)
		set(c, &fields[i], NULL);
}

bool sl_config_long(const sl_config *c, const char *name, long *out)
{
	for (size_t k = 0; k < NFIELDS; k++) {
		const struct field *f = &fields[k];

		if (strcmp(f->env, name))
			continue;
		assert(f->hi > f->lo); /* a number setting */
		if (sl_parse_long(*slot((sl_config *)c, f), f->lo, f->hi, out))
			return true;
		sl_error("%s must be a number from %ld to %ld", name, f->lo, f->hi);
		return false;
	}
	assert(!"no such setting");
	return false;
}
