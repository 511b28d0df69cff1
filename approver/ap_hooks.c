/*
 * ap_hooks.c - webhooks: their configuration, signatures and delivery.
 */
#include "ap_hooks.h"

#include "sl_agents.h"
#include "sl_db.h"
#include "sl_http.h"
#include "sl_keys.h"
#include "sl_log.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_HOOKS 32
#define MAX_URL 2048
#define MAX_SECRET 256
/* Rows one round of the sender takes, and how long it has them. */
#define SEND_BATCH 20
#define LEASE_S "300"
/* Attempts before a delivery is given up: about 8 hours of back-off. */
#define MAX_ATTEMPTS 60
#define MAX_BACKOFF_S 600
#define SEND_TIMEOUT_MS 10000
#define IDLE_MS 500

static const char *const event_names[AP_HOOK_NEVENTS] = {
    "requirement.pending", "requirement.decided", "requirement.expired", "run.completed",
    "run.failed"};

typedef struct hook {
	char *url;
	bool events[AP_HOOK_NEVENTS];
	unsigned char key[MAX_SECRET];
	size_t keylen;
} hook;

struct ap_hooks {
	hook *h;
	size_t n;
	char *urls[AP_HOOK_NEVENTS]; /* of the webhooks wanting each event, JSON; NULL: none */
};

const char *ap_hook_event_name(ap_hook_event e)
{
	return event_names[e];
}

/* The secret of the variable name: "whsec_" and base64 (Standard
 * Webhooks), into k. */
static sl_status secret(const char *name, hook *k, const char *where, char *errbuf, size_t errsize)
{
	const char *v = name && sl_env_name_valid(name, strlen(name)) ? getenv(name) : NULL;
	long n;

	if (!name || !sl_env_name_valid(name, strlen(name)))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field secret_env must name an environment variable", where);
	if (!v || !*v)
		return sl_err(errbuf, errsize, SL_INVALID, "%s: %s is not set", where, name);
	if (strncmp(v, "whsec_", 6) ||
	    (n = sl_b64_decode(v + 6, strlen(v + 6), k->key, sizeof(k->key))) < 16)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: %s must hold whsec_ and the base64 of at least 16 random bytes",
		              where, name);
	k->keylen = (size_t)n;
	return SL_OK;
}

static sl_status parse_hook(const json_t *o, size_t i, hook *k, char *errbuf, size_t errsize)
{
	const char *url = json_string_value(json_object_get(o, "url")), *key;
	const json_t *events = json_object_get(o, "events"), *v;
	char where[64];
	size_t j;

	snprintf(where, sizeof(where), "webhooks[%zu]", i);
	if (!json_is_object(o))
		return sl_err(errbuf, errsize, SL_INVALID, "%s must be an object", where);
	json_object_foreach ((json_t *)o, key, v)
		if (strcmp(key, "url") && strcmp(key, "events") && strcmp(key, "secret_env"))
			return sl_err(errbuf, errsize, SL_INVALID, "%s: unknown field %.64s", where,
			              key);
	if (!url || strlen(url) > MAX_URL ||
	    (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field url must be an http:// or https:// URL", where);
	if (!json_is_array(events) || !json_array_size(events))
		return sl_err(errbuf, errsize, SL_INVALID, "%s: field events must list events",
		              where);
	json_array_foreach (events, j, v) {
		int e = -1;

		for (int x = 0; x < AP_HOOK_NEVENTS && json_is_string(v); x++)
			if (!strcmp(json_string_value(v), event_names[x]))
				e = x;
		if (e < 0)
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: events[%zu] must be one of requirement.pending, "
			              "requirement.decided, requirement.expired, run.completed, "
			              "run.failed",
			              where, j);
		k->events[e] = true;
	}
	k->url = sl_strdup(url);
	return secret(json_string_value(json_object_get(o, "secret_env")), k, where, errbuf,
	              errsize);
}

sl_status ap_hooks_load(const char *path, ap_hooks **out, char *errbuf, size_t errsize)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *o;
	ap_hooks *h = sl_calloc(1, sizeof(*h));
	sl_status st = SL_OK;
	size_t i;

	*out = NULL;
	if (!root)
		st = sl_err(errbuf, errsize, SL_INVALID, "%s: line %d: %s", path, jerr.line,
		            jerr.text);
	else if (!json_is_array(root) || !json_array_size(root) ||
	         json_array_size(root) > MAX_HOOKS)
		st = sl_err(errbuf, errsize, SL_INVALID, "%s: must be a list of 1 to %d webhooks",
		            path, MAX_HOOKS);
	if (!st) {
		h->h = sl_calloc(json_array_size(root), sizeof(*h->h));
		json_array_foreach (root, i, o) {
			if ((st = parse_hook(o, i, &h->h[h->n++], errbuf, errsize)))
				break;
			for (size_t j = 0; j < i; j++)
				if (!strcmp(h->h[j].url, h->h[i].url)) {
					st = sl_err(errbuf, errsize, SL_INVALID,
					            "webhooks[%zu]: its url is given twice", i);
					break;
				}
			if (st)
				break;
		}
	}
	json_decref(root);
	if (st) {
		ap_hooks_free(h);
		return st;
	}
	for (int e = 0; e < AP_HOOK_NEVENTS; e++) {
		json_t *list = json_array();

		for (size_t i = 0; i < h->n; i++)
			if (h->h[i].events[e])
				json_array_append_new(list, json_string(h->h[i].url));
		if (json_array_size(list))
			h->urls[e] = json_dumps(list, JSON_COMPACT);
		json_decref(list);
	}
	*out = h;
	return SL_OK;
}

void ap_hooks_free(ap_hooks *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++) {
		free(h->h[i].url);
		OPENSSL_cleanse(h->h[i].key, sizeof(h->h[i].key));
	}
	for (int e = 0; e < AP_HOOK_NEVENTS; e++)
		free(h->urls[e]);
	free(h->h);
	free(h);
}

const char *ap_hooks_urls(const ap_hooks *h, ap_hook_event e)
{
	return h ? h->urls[e] : NULL;
}

char *ap_hooks_sign(const ap_hooks *h, const char *url, const char *id, long long timestamp,
                    const char *body)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char *content, *b64, *out;

	for (size_t i = 0; h && i < h->n; i++) {
		if (strcmp(h->h[i].url, url))
			continue;
		content = sl_asprintf("%s.%lld.%s", id, timestamp, body);
		HMAC(EVP_sha256(), h->h[i].key, (int)h->h[i].keylen, (unsigned char *)content,
		     strlen(content), mac, &maclen);
		free(content);
		b64 = sl_b64(mac, maclen);
		out = sl_asprintf("v1,%s", b64);
		free(b64);
		return out;
	}
	return NULL;
}

static atomic_long n_delivered, n_retried, n_failed;

void ap_hooks_counts(long *delivered, long *retried, long *failed)
{
	*delivered = atomic_load(&n_delivered);
	*retried = atomic_load(&n_retried);
	*failed = atomic_load(&n_failed);
}

struct ap_hooks_sender {
	const ap_hooks *hooks;
	char *url;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	bool stopping; /* mu */
};

/* The due deliveries, taken for LEASE_S (another approver's sender takes
 * them if this one stops meanwhile), oldest first. */
#define TAKE_SQL                                                                                \
	"UPDATE webhook_deliveries d SET next_at = now() + interval '" LEASE_S " seconds', "    \
	"attempts = d.attempts + 1 WHERE d.id IN (SELECT id FROM webhook_deliveries WHERE "     \
	"delivered_at IS NULL AND failed_at IS NULL AND next_at <= now() ORDER BY next_at, id " \
	"LIMIT $1::int FOR UPDATE SKIP LOCKED) RETURNING d.id, d.hook, d.msg_id, d.payload, "   \
	"d.attempts"

/* Sends one delivery; SL_OK on a 2xx, else the reason in errbuf. */
static sl_status send_one(const ap_hooks *h, const char *url, const char *id, const char *body,
                          char *errbuf, size_t errsize)
{
	long long ts = sl_now_ms() / 1000;
	char *sig = ap_hooks_sign(h, url, id, ts, body);
	char *hid = sl_asprintf("webhook-id: %s", id),
	     *hts = sl_asprintf("webhook-timestamp: %lld", ts);
	char *hsig = sig ? sl_asprintf("webhook-signature: %s", sig) : NULL;
	const char *headers[] = {"Content-Type: application/json", hid, hts, hsig, NULL};
	sl_http_response r = {0};
	sl_status st;

	if (!sig)
		st = sl_err(errbuf, errsize, SL_INVALID, "no webhook %s is configured any more",
		            url);
	else if (!(st = sl_http_request("POST", url, headers, body, 64 * 1024, SEND_TIMEOUT_MS, &r,
	                                errbuf, errsize)) &&
	         (r.status < 200 || r.status > 299))
		st = sl_err(errbuf, errsize, SL_RETRY, "answered %ld", r.status);
	sl_http_response_free(&r);
	free(sig);
	free(hid);
	free(hts);
	free(hsig);
	return st;
}

static bool stopping(ap_hooks_sender *s)
{
	bool stop;

	pthread_mutex_lock(&s->mu);
	stop = s->stopping;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/* One round: takes the due deliveries, sends each, records each outcome;
 * how many it took, or -1 when the database failed. Stopping, it sends no
 * more: the rest are sent once their lease is over. */
static int round_(ap_hooks_sender *s, PGconn *conn, char *errbuf, size_t errsize)
{
	char batch[8];
	PGresult *res = NULL;
	int n;

	snprintf(batch, sizeof(batch), "%d", SEND_BATCH);
	if (sl_db_exec(conn, TAKE_SQL, 1, (const char *[]){batch}, &res, errbuf, errsize))
		return -1;
	n = PQntuples(res);
	for (int i = 0; i < n && !stopping(s); i++) {
		const char *id = PQgetvalue(res, i, 0), *url = PQgetvalue(res, i, 1);
		long attempts = strtol(PQgetvalue(res, i, 4), NULL, 10);
		char why[256], wait[24];
		sl_status st = send_one(s->hooks, url, PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
		                        why, sizeof(why));
		long backoff = attempts >= 10 ? MAX_BACKOFF_S : 1L << (attempts - 1);

		if (backoff > MAX_BACKOFF_S)
			backoff = MAX_BACKOFF_S;
		snprintf(wait, sizeof(wait), "%ld", backoff);
		if (!st) {
			atomic_fetch_add(&n_delivered, 1);
			sl_db_exec(
			    conn,
			    "UPDATE webhook_deliveries SET delivered_at = now(), last_error = "
			    "NULL WHERE id = $1",
			    1, (const char *[]){id}, NULL, errbuf, errsize);
		} else if (attempts >= MAX_ATTEMPTS || st == SL_INVALID) {
			/* SL_INVALID: its webhook is no longer configured */
			atomic_fetch_add(&n_failed, 1);
			sl_warn("webhook %s: delivery %s given up after %ld attempts: %s", url, id,
			        attempts, why);
			sl_db_exec(
			    conn,
			    "UPDATE webhook_deliveries SET failed_at = now(), last_error = $2 "
			    "WHERE id = $1",
			    2, (const char *[]){id, why}, NULL, errbuf, errsize);
		} else {
			atomic_fetch_add(&n_retried, 1);
			if (attempts == 1)
				sl_info("webhook %s: delivery %s failed (%s); trying again with "
				        "back-off",
				        url, id, why);
			sl_db_exec(
			    conn,
			    "UPDATE webhook_deliveries SET next_at = now() + make_interval(secs "
			    "=> $2::int), last_error = $3 WHERE id = $1",
			    3, (const char *[]){id, wait, why}, NULL, errbuf, errsize);
		}
	}
	PQclear(res);
	return n;
}

/* Waits ms, or until stopped; whether it is stopping. */
static bool nap(ap_hooks_sender *s, int ms)
{
	struct timespec until;
	bool stopping;

	sl_deadline_ms(&until, ms);
	pthread_mutex_lock(&s->mu);
	if (!s->stopping)
		pthread_cond_timedwait(&s->wake, &s->mu, &until);
	stopping = s->stopping;
	pthread_mutex_unlock(&s->mu);
	return stopping;
}

static void *sender_main(void *arg)
{
	ap_hooks_sender *s = arg;
	PGconn *conn = NULL;
	char errbuf[1024];
	bool failing = false;
	int n = 0;

	do {
		if (!conn && !(conn = sl_db_connect(s->url, errbuf, sizeof(errbuf)))) {
			n = -1;
		} else if ((n = round_(s, conn, errbuf, sizeof(errbuf))) < 0) {
			PQfinish(conn);
			conn = NULL;
		}
		if (n < 0 && !failing)
			sl_warn("webhooks: %s; trying again every second", errbuf);
		failing = n < 0;
	} while (!nap(s, n < 0 ? 1000 : n == SEND_BATCH ? 0 : IDLE_MS));
	if (conn)
		PQfinish(conn);
	return NULL;
}

ap_hooks_sender *ap_hooks_start(const ap_hooks *h, const char *database_url, char *errbuf,
                                size_t errsize)
{
	ap_hooks_sender *s = sl_calloc(1, sizeof(*s));

	s->hooks = h;
	s->url = sl_strdup(database_url);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->wake, NULL);
	if (pthread_create(&s->thread, NULL, sender_main, s)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot start the webhooks' sender thread");
		pthread_cond_destroy(&s->wake);
		pthread_mutex_destroy(&s->mu);
		free(s->url);
		free(s);
		return NULL;
	}
	return s;
}

void ap_hooks_stop(ap_hooks_sender *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->mu);
	free(s->url);
	free(s);
}
