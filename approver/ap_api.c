/*
 * ap_api.c - HTTP routes of the approver.
 */
#include "ap_api.h"
#include "ap_bulk.h"
#include "ap_inbox.h"
#include "ap_query.h"
#include "sl_db.h"
#include "sl_policy.h"
#include "sl_event.h"
#include "sl_log.h"
#include "sl_ready.h"
#include "sl_text.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_NOTE 4096

/* Who reads everything, who reads (a submitter: its own runs only), and
 * who decides (DESIGN.md, "Who may decide"). */
#define READERS (AP_APPROVER | AP_AUDITOR | AP_ADMIN)
#define SEERS (READERS | AP_SUBMITTER)
#define DECIDERS (AP_APPROVER | AP_ADMIN)

static atomic_long n_requests, n_decisions, n_events, n_dead_letters, n_refused, n_unauthenticated;

void ap_api_count_event(bool dead_lettered)
{
	atomic_fetch_add(dead_lettered ? &n_dead_letters : &n_events, 1);
}

/* The principal behind the request's bearer token (ap_principal_release
 * it), or NULL with the reason in why. */
static ap_principal *identify(const ap_api *api, struct MHD_Connection *conn, char *why,
                              size_t whysize)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");

	ap_principal *p = NULL;

	snprintf(why, whysize, "missing or invalid bearer token");
	/* the scheme is case-insensitive (RFC 9110, 11.1) */
	if (!h || strncasecmp(h, "Bearer ", 7))
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	if (*h && !(p = ap_access_identify(&api->access, h, why, whysize)) &&
	    strncmp(why, "missing", 7))
		sl_info("%s", why); /* a JWT's reason, never the token */
	return p;
}

static enum MHD_Result arg_is_text(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
	bool *ok = cls;

	(void)kind;
	*ok = *ok && sl_text_valid(key, strlen(key)) &&
	      (!value || sl_text_valid(value, strlen(value)));
	return *ok ? MHD_YES : MHD_NO;
}

/* True when every query argument is valid UTF-8 (the filters go to the
 * database as text). */
static bool args_are_text(struct MHD_Connection *conn)
{
	bool ok = true;

	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, arg_is_text, &ok);
	return ok;
}

static const char *arg(struct MHD_Connection *conn, const char *name)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

/* Parses a positive integer query argument within [1, max]. */
static bool int_arg(struct MHD_Connection *conn, const char *name, long def, long max, long *out)
{
	const char *v = arg(conn, name);

	*out = def;
	return !v || sl_parse_long(v, 1, max, out);
}

static bool one_of(const char *v, const char *const *allowed)
{
	if (!v)
		return true;
	for (; *allowed; allowed++)
		if (!strcmp(v, *allowed))
			return true;
	return false;
}

static void store_free(void *p)
{
	ap_store *s = p;

	if (s->db)
		PQfinish(s->db);
	free(s);
}

void ap_api_init(ap_api *api)
{
	pthread_key_create(&api->thread_store, store_free);
}

void ap_api_fini(ap_api *api)
{
	pthread_key_delete(api->thread_store);
}

/* The calling HTTP thread's store (store_ready() made it). A request is
 * validated whole before its store is made ready, so that bad input is
 * answered 400 whether the database is up or not. */
static ap_store *thread_store(ap_api *api)
{
	return pthread_getspecific(api->thread_store);
}

/* Makes the calling thread's store on its first request and (re)connects
 * it when its connection is down. */
static sl_status store_ready(ap_api *api, char *errbuf, size_t errsize)
{
	ap_store *s = thread_store(api);

	if (!s) {
		s = sl_malloc(sizeof(*s));
		*s = api->store;
		s->db = NULL;
		pthread_setspecific(api->thread_store, s);
	}
	if (!s->db) {
		/* The list statements filter by optional parameters ("$1 IS NULL
		 * OR status = $1"): a plan made for any value can use no index,
		 * so each call is planned for its own values (an index on the
		 * filter, rather than a scan of the whole table). */
		s->db = sl_db_connect_with(api->database_url,
		                           "-c plan_cache_mode=force_custom_plan", errbuf, errsize);
		if (!s->db)
			return SL_RETRY;
	}
	return sl_db_ensure(s->db, errbuf, errsize);
}

/* The HTTP status and {"error"} answer for a store failure. */
static json_t *error_answer(sl_status st, const char *errbuf, unsigned *status)
{
	switch (st) {
	case SL_NOT_FOUND: *status = 404; break;
	case SL_CONFLICT: *status = 409; break;
	case SL_FORBIDDEN:
		*status = 403;
		atomic_fetch_add(&n_refused, 1);
		sl_warn("refused: %s", errbuf);
		break;
	case SL_INVALID:
		*status = 400;
		/* the database's own words stay in the log */
		if (!strncmp(errbuf, SL_DB_ERROR_PREFIX, strlen(SL_DB_ERROR_PREFIX))) {
			sl_warn("http: a request's values were refused: %s", errbuf);
			return json_pack("{s:s}", "error", "a value of the request is not valid");
		}
		break;
	case SL_RETRY:
		sl_warn("http: database unavailable: %s", errbuf);
		*status = 503;
		return json_pack("{s:s}", "error", "database unavailable, try again");
	default:
		sl_error("http: %s", errbuf);
		*status = 500;
		return json_pack("{s:s}", "error", "internal error");
	}
	return json_pack("{s:o}", "error", sl_text_json(errbuf));
}

static enum MHD_Result store_error(struct MHD_Connection *conn, sl_status st, const char *errbuf)
{
	unsigned status;
	json_t *answer = error_answer(st, errbuf, &status);

	return sl_httpd_send_json(conn, status, answer);
}

/* Splits "/v1/requirements/ID/confirm" style paths; returns the id (copied
 * into buf) and the remaining suffix. */
static bool split_id(const char *rest, char *buf, size_t size, const char **suffix)
{
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);

	if (n == 0 || n >= size)
		return false;
	memcpy(buf, rest, n);
	buf[n] = '\0';
	*suffix = slash ? slash : "";
	return sl_event_id_valid(buf);
}

/* Parses an optional JSON object body; an empty body is {}. Returns NULL
 * after answering 400. */
static json_t *object_body(const sl_httpd_request *req, enum MHD_Result *ret)
{
	json_error_t jerr;
	json_t *body;

	if (req->body_len == 0)
		return json_object();
	body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(body)) {
		json_decref(body);
		*ret = sl_httpd_send_error(req->conn, 400, "body must be a JSON object");
		return NULL;
	}
	return body;
}

/* Reads an optional string field of at most max bytes into *out; false
 * (after answering 400) when it is something else. */
static bool opt_string(const sl_httpd_request *req, const json_t *obj, const char *key, size_t max,
                       const char **out, enum MHD_Result *ret)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_string(v) || json_string_length(v) > max) {
		*ret = sl_httpd_send_error(req->conn, 400,
		                           "%s must be a string of at most %zu bytes", key, max);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

/* A grant a confirmation may carry ({"scope": "run" | "session", "ttl_s":
 * 1 to 30 days, "args"?: {pointer: value}}): SL_INVALID with the reason for
 * anything else. */
static sl_status check_grant(const json_t *g, char *errbuf, size_t errsize)
{
	const char *scope = json_string_value(json_object_get(g, "scope")), *key;
	const json_t *ttl = json_object_get(g, "ttl_s"), *args = json_object_get(g, "args"), *v;

	if (!json_is_object(g))
		return sl_err(errbuf, errsize, SL_INVALID, "grant must be an object");
	json_object_foreach ((json_t *)g, key, v)
		if (strcmp(key, "scope") && strcmp(key, "ttl_s") && strcmp(key, "args"))
			return sl_err(errbuf, errsize, SL_INVALID, "grant: unknown field %.64s",
			              key);
	if (!scope || (strcmp(scope, "run") && strcmp(scope, "session")))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "grant.scope must be \"run\" or \"session\"");
	if (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
	    json_integer_value(ttl) > 30 * 24 * 3600)
		return sl_err(
		    errbuf, errsize, SL_INVALID,
		    "grant.ttl_s must be a number of seconds from 1 to 2592000 (30 days)");
	if (args && (!json_is_object(args) || json_object_size(args) > 32))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "grant.args must map up to 32 JSON pointers to values");
	json_object_foreach ((json_t *)args, key, v) {
		json_t *path = *key ? sl_json_pointer_path(key) : NULL;

		if (!path)
			return sl_err(errbuf, errsize, SL_INVALID,
			              "grant.args: \"%.64s\" must be a JSON pointer (\"/name\")",
			              key);
		json_decref(path);
	}
	return SL_OK;
}

/* A decision on its way through the decider: it owns the request body
 * the decision points into, and the parked request. */
typedef struct deciding {
	ap_decide_job job;
	char id[SL_EVENT_MAX_ID + 2];
	json_t *body;
	ap_principal *who; /* held: the decision points into it */
	sl_httpd_deferred *request;
} deciding;

/* The decider's answer, on its thread. */
static void decided(ap_decide_job *job)
{
	deciding *c = (deciding *)job; /* job is its first member */
	unsigned status = 200;
	json_t *answer = job->v.out;

	if (job->v.st)
		answer = error_answer(job->v.st, job->v.err, &status);
	else
		atomic_fetch_add(&n_decisions, 1);
	sl_httpd_answer_json(c->request, status, answer);
	json_decref(c->body);
	ap_principal_release(c->who);
	free(c);
}

/* POST /v1/requirements/{id}/{confirm,reject,input,result} and
 * POST /v1/approvals/{id}/resolve. */
static enum MHD_Result decide(ap_api *api, const sl_httpd_request *req, const char *id,
                              const char *verb, ap_principal *who)
{
	ap_decision d = {.resolved_by = who->name, .groups = who->groups, .ngroups = who->ngroups};
	enum MHD_Result ret = MHD_NO;
	json_t *body, *data, *out;
	bool by_approval = !strcmp(verb, "resolve");
	char errbuf[512];
	sl_status st;

	body = object_body(req, &ret);
	if (!body)
		return ret;
	data = body;
	if (by_approval) {
		const char *status = json_string_value(json_object_get(body, "status"));
		if (!status || (strcmp(status, "approved") && strcmp(status, "rejected"))) {
			ret = sl_httpd_send_error(req->conn, 400,
			                          "status must be \"approved\" or \"rejected\"");
			goto out;
		}
		d.action = !strcmp(status, "approved") ? AP_APPROVE : AP_REJECT;
		data = json_object_get(body, "resolution_data");
		if (data && !json_is_null(data) && !json_is_object(data)) {
			ret = sl_httpd_send_error(req->conn, 400,
			                          "resolution_data must be an object");
			goto out;
		}
	} else {
		d.action = !strcmp(verb, "confirm")  ? AP_CONFIRM
		           : !strcmp(verb, "reject") ? AP_REJECT
		           : !strcmp(verb, "input")  ? AP_INPUT
		                                     : AP_RESULT;
	}
	if (!opt_string(req, data, "note", MAX_NOTE, &d.note, &ret) ||
	    !opt_string(req, data, "result", AP_API_MAX_BODY, &d.result, &ret))
		goto out;
	d.values = json_object_get(data, "values");
	d.tool_args = json_object_get(data, "tool_args");
	d.grant = json_object_get(data, "grant");
	if (json_is_null(d.grant))
		d.grant = NULL;
	if (d.grant && (by_approval || d.action != AP_CONFIRM)) {
		ret = sl_httpd_send_error(req->conn, 400, "a grant comes with a confirmation");
		goto out;
	}
	if (d.grant && check_grant(d.grant, errbuf, sizeof(errbuf))) {
		ret = sl_httpd_send_error(req->conn, 400, "%s", errbuf);
		goto out;
	}
	if (d.action == AP_INPUT && !json_is_object(d.values)) {
		ret =
		    sl_httpd_send_error(req->conn, 400, "values must be an object of field values");
		goto out;
	}
	if (d.action == AP_RESULT && !d.result) {
		ret = sl_httpd_send_error(req->conn, 400, "result must be a string");
		goto out;
	}
	if (!by_approval && api->decider) {
		/* Resolved with the decisions that come in meanwhile; the request
		 * waits off this thread, which goes on serving others. */
		deciding *c = sl_calloc(1, sizeof(*c));

		snprintf(c->id, sizeof(c->id), "%s", id);
		c->job.v.id = c->id;
		c->job.v.d = d;
		c->job.done = decided;
		c->body = body;
		c->who = ap_principal_hold(who);
		c->request = sl_httpd_defer(req);
		ap_decider_submit(api->decider, &c->job);
		return MHD_YES;
	}
	st = store_ready(api, errbuf, sizeof(errbuf));
	if (!st)
		st = by_approval ? ap_store_resolve_approval(thread_store(api), id, &d, &out,
		                                             errbuf, sizeof(errbuf))
		                 : ap_store_resolve(thread_store(api), id, &d, &out, errbuf,
		                                    sizeof(errbuf));
	if (st) {
		ret = store_error(req->conn, st, errbuf);
		goto out;
	}
	atomic_fetch_add(&n_decisions, 1);
	ret = sl_httpd_send_json(req->conn, 200, out);
out:
	json_decref(body);
	return ret;
}

/* POST /v1/requirements/decide: the pending requirements a filter picks,
 * counted and shown (dry_run), or each decided as if alone (ap_bulk.h). */
static enum MHD_Result decide_many(ap_api *api, const sl_httpd_request *req, ap_principal *who)
{
	enum MHD_Result ret = MHD_NO;
	json_t *body, *found = NULL;
	ap_bulk_req r;
	char errbuf[512];
	sl_status st;

	if (!(body = object_body(req, &ret)))
		return ret;
	st = ap_bulk_parse(body, &r, errbuf, sizeof(errbuf));
	json_decref(body);
	if (!st && !api->decider)
		st = sl_err(errbuf, sizeof(errbuf), SL_RETRY, "decisions are not taken yet");
	if (!st)
		st = store_ready(api, errbuf, sizeof(errbuf));
	if (!st)
		st = ap_query_match_requirements(thread_store(api), &r.match, AP_BULK_MAX, &found,
		                                 errbuf, sizeof(errbuf));
	if (st) {
		ret = store_error(req->conn, st, errbuf);
	} else if (r.dry_run || !json_array_size(json_object_get(found, "ids"))) {
		json_object_del(found, r.dry_run ? "ids" : "sample");
		if (!r.dry_run) {
			json_object_set_new(found, "decided", json_array());
			json_object_set_new(found, "voted", json_array());
			json_object_set_new(found, "refused", json_array());
		}
		json_object_set_new(found, "limit", json_integer(AP_BULK_MAX));
		ret = sl_httpd_send_json(req->conn, 200, json_incref(found));
	} else {
		ap_bulk_start(api->decider, &r, json_object_get(found, "ids"),
		              json_integer_value(json_object_get(found, "matched")), who,
		              sl_httpd_defer(req));
		ret = MHD_YES;
	}
	ap_bulk_req_clear(&r);
	json_decref(found);
	return ret;
}

/* POST /v1/runs/{id}/cancel {"reason"?} */
static enum MHD_Result cancel(ap_api *api, const sl_httpd_request *req, const char *run_id,
                              const char *owner, const char *who)
{
	enum MHD_Result ret = MHD_NO;
	const char *reason;
	char errbuf[512];
	json_t *body, *out;
	sl_status st;

	body = object_body(req, &ret);
	if (!body)
		return ret;
	if (opt_string(req, body, "reason", MAX_NOTE, &reason, &ret)) {
		st = store_ready(api, errbuf, sizeof(errbuf));
		if (!st)
			st = ap_store_cancel(thread_store(api), run_id, owner, reason, who, &out,
			                     errbuf, sizeof(errbuf));
		ret = st ? store_error(req->conn, st, errbuf)
		         : sl_httpd_send_json(req->conn, 200, out);
	}
	json_decref(body);
	return ret;
}

/*
 * POST /v1/runs: a run submitted over HTTP, published through the outbox
 * as the sluice.run.requested a Kafka producer would send. Its user_id is
 * the caller's identity, never the body's: a body naming another is
 * refused. The event is checked as a worker checks it (400 with the
 * reason); 202 {"run_id"} once it is committed.
 */
static enum MHD_Result submit(ap_api *api, const sl_httpd_request *req, const char *who)
{
	static const char *const fields[] = {"run_id", "session_id", "agent_id", "user_id",
	                                     "input"};
	static const char *const types[] = {SL_EVENT_RUN_REQUESTED, NULL};
	enum MHD_Result ret = MHD_NO;
	const char *key, *user;
	char errbuf[512], run_id[37];
	json_t *body, *v, *event = NULL;
	sl_event ev = {0};
	char *payload = NULL;
	sl_status st;

	if (!(body = object_body(req, &ret)))
		return ret;
	json_object_foreach (body, key, v) {
		size_t i = 0;
		while (i < sizeof(fields) / sizeof(fields[0]) && strcmp(fields[i], key))
			i++;
		if (i == sizeof(fields) / sizeof(fields[0])) {
			ret = sl_httpd_send_error(req->conn, 400,
			                          "unknown field: a run takes run_id, session_id, "
			                          "agent_id, input (and user_id, which is yours)");
			goto out;
		}
	}
	user = json_string_value(json_object_get(body, "user_id"));
	if (json_object_get(body, "user_id") && (!user || strcmp(user, who))) {
		ret = sl_httpd_send_error(
		    req->conn, 400, "user_id is the caller's identity (%s): leave it out", who);
		goto out;
	}
	json_object_set_new(body, "user_id", json_string(who));
	if (!(v = json_object_get(body, "run_id"))) {
		sl_uuid_v7(run_id);
		json_object_set_new(body, "run_id", json_string(run_id));
	} else if (!json_is_string(v)) {
		ret = sl_httpd_send_error(req->conn, 400, "run_id must be a text");
		goto out;
	}
	event = sl_event_new(SL_EVENT_RUN_REQUESTED, api->store.source,
	                     json_string_value(json_object_get(body, "run_id")), json_incref(body));
	payload = json_dumps(event, JSON_COMPACT);
	if (!payload ||
	    sl_event_parse(payload, strlen(payload), types, &ev, errbuf, sizeof(errbuf))) {
		ret = sl_httpd_send_error(req->conn, 400, "%s", payload ? errbuf : "not a run");
		goto out;
	}
	st = store_ready(api, errbuf, sizeof(errbuf));
	if (!st)
		st = ap_store_submit(thread_store(api), ev.subject, event, errbuf, sizeof(errbuf));
	if (st) {
		ret = store_error(req->conn, st, errbuf);
		goto out;
	}
	sl_info("run %s of agent %s submitted over HTTP by %s", ev.subject,
	        json_string_value(json_object_get(ev.data, "agent_id")), who);
	ret = sl_httpd_send_json(req->conn, 202, json_pack("{s:s}", "run_id", ev.subject));
out:
	sl_event_clear(&ev);
	free(payload);
	json_decref(event);
	json_decref(body);
	return ret;
}

/* Reads the paging arguments: limit (1-1000, default 20) and either page
 * (1-based) or offset (rows to skip); false after answering 400. */
static bool paging(const sl_httpd_request *req, long *offset, long *page, long *limit,
                   enum MHD_Result *ret)
{
	long off;

	if (!int_arg(req->conn, "limit", 20, 1000, limit)) {
		*ret =
		    sl_httpd_send_error(req->conn, 400, "limit must be an integer from 1 to 1000");
		return false;
	}
	if (!int_arg(req->conn, "page", 1, 1000000, page)) {
		*ret = sl_httpd_send_error(req->conn, 400, "page must be an integer from 1");
		return false;
	}
	*offset = (*page - 1) * *limit;
	if (arg(req->conn, "offset")) {
		if (arg(req->conn, "page") ||
		    !sl_parse_long(arg(req->conn, "offset"), 0, 1000000000, &off)) {
			*ret = sl_httpd_send_error(
			    req->conn, 400, "offset must be an integer from 0, without page");
			return false;
		}
		*offset = off;
		*page = off / *limit + 1;
	}
	return true;
}

/* Appends "&name=value" (value escaped) to q. */
static void query_add(sl_buf *q, const char *name, const char *value)
{
	char *esc;

	if (!value)
		return;
	esc = curl_easy_escape(NULL, value, 0);
	sl_buf_append(q, "&", 1);
	sl_buf_append(q, name, strlen(name));
	sl_buf_append(q, "=", 1);
	sl_buf_append(q, esc, strlen(esc));
	curl_free(esc);
}

/*
 * The list answer: the store's {"data", "total"} in the paging envelope.
 * A page the byte bound cut short gets meta.next, the same query from the
 * first row it left out; names/values are its filters (n of them).
 */
static json_t *list_answer(json_t *rows, const char *path, const char *const *names,
                           const char *const *values, int n, long offset, long page, long limit)
{
	json_int_t total = json_integer_value(json_object_get(rows, "total"));
	json_t *data = json_object_get(rows, "data");
	long returned = (long)json_array_size(data);
	json_t *out = json_pack("{s:O, s:{s:I, s:I, s:I, s:I}}", "data", data, "meta", "page",
	                        (json_int_t)page, "limit", (json_int_t)limit, "total_pages",
	                        (json_int_t)((total + limit - 1) / limit), "total_count", total);

	if (returned < limit && offset + returned < total) {
		sl_buf q;
		char num[48];
		char *next;

		sl_buf_init(&q, 64 * 1024);
		for (int i = 0; i < n; i++)
			query_add(&q, names[i], values[i]);
		snprintf(num, sizeof(num), "%ld", limit);
		query_add(&q, "limit", num);
		snprintf(num, sizeof(num), "%ld", offset + returned);
		query_add(&q, "offset", num);
		next = sl_asprintf("%s?%s", path, q.data + 1);
		json_object_set_new(json_object_get(out, "meta"), "next", json_string(next));
		free(next);
		sl_buf_free(&q);
	}
	json_decref(rows);
	return out;
}

static enum MHD_Result list_approvals(ap_api *api, const sl_httpd_request *req, const char *owner)
{
	static const char *names[AP_F_COUNT] = {"status",  "approval_type", "pause_type",
	                                        "run_id",  "session_id",    "agent_id",
	                                        "user_id", "tool_name"};
	static const char *statuses[] = {"pending", "approved",  "rejected",
	                                 "expired", "cancelled", NULL};
	static const char *types[] = {"required", "audit", NULL};
	static const char *pauses[] = {"confirmation", "user_input", "external_execution", NULL};
	enum MHD_Result ret = MHD_NO;
	const char *f[AP_F_COUNT];
	char errbuf[512];
	long offset, page, limit;
	json_t *rows;
	sl_status st;

	for (int i = 0; i < AP_F_COUNT; i++)
		f[i] = arg(req->conn, names[i]);
	if (!one_of(f[AP_F_STATUS], statuses))
		return sl_httpd_send_error(req->conn, 400,
		                           "status must be pending, approved, rejected, expired or "
		                           "cancelled");
	if (!one_of(f[AP_F_APPROVAL_TYPE], types))
		return sl_httpd_send_error(req->conn, 400,
		                           "approval_type must be required or audit");
	if (!one_of(f[AP_F_PAUSE_TYPE], pauses))
		return sl_httpd_send_error(req->conn, 400,
		                           "pause_type must be confirmation, user_input or "
		                           "external_execution");
	if (!paging(req, &offset, &page, &limit, &ret))
		return ret;
	st = store_ready(api, errbuf, sizeof(errbuf));
	if (!st)
		st = ap_query_list_approvals(thread_store(api), f, owner, offset, limit,
		                             AP_API_MAX_ANSWER, &rows, errbuf, sizeof(errbuf));
	if (st)
		return store_error(req->conn, st, errbuf);
	return sl_httpd_send_json(
	    req->conn, 200,
	    list_answer(rows, "/v1/approvals", names, f, AP_F_COUNT, offset, page, limit));
}

static enum MHD_Result list_requirements(ap_api *api, const sl_httpd_request *req,
                                         const char *owner, const ap_principal *decider)
{
	static const char *statuses[] = {"pending", "resolved", "expired", "cancelled", NULL};
	static const char *names[] = {"status", "run_id"};
	const char *f[] = {arg(req->conn, "status"), arg(req->conn, "run_id")};
	enum MHD_Result ret = MHD_NO;
	char errbuf[512];
	long offset, page, limit;
	json_t *rows;
	sl_status st;

	if (!one_of(f[0], statuses))
		return sl_httpd_send_error(
		    req->conn, 400, "status must be pending, resolved, expired or cancelled");
	if (!paging(req, &offset, &page, &limit, &ret))
		return ret;
	st = store_ready(api, errbuf, sizeof(errbuf));
	if (!st)
		st = ap_query_list_requirements(thread_store(api), f[0], f[1], owner, decider,
		                                offset, limit, AP_API_MAX_ANSWER, &rows, errbuf,
		                                sizeof(errbuf));
	if (st)
		return store_error(req->conn, st, errbuf);
	return sl_httpd_send_json(
	    req->conn, 200,
	    list_answer(rows, "/v1/requirements", names, f, 2, offset, page, limit));
}

static enum MHD_Result metrics(ap_api *api, const sl_httpd_request *req)
{
	const sl_httpd *httpd = atomic_load(&api->httpd);
	long delivered, retried, failed;
	char *text;

	ap_hooks_counts(&delivered, &retried, &failed);
	text = sl_asprintf("# TYPE sluice_approver_http_requests_total counter\n"
	                   "sluice_approver_http_requests_total %ld\n"
	                   "# TYPE sluice_approver_decisions_total counter\n"
	                   "sluice_approver_decisions_total %ld\n"
	                   "# TYPE sluice_approver_decision_batches_total counter\n"
	                   "sluice_approver_decision_batches_total %ld\n"
	                   "# TYPE sluice_approver_events_total counter\n"
	                   "sluice_approver_events_total %ld\n"
	                   "# TYPE sluice_approver_dead_letters_total counter\n"
	                   "sluice_approver_dead_letters_total %ld\n"
	                   "# TYPE sluice_approver_http_timed_out_total counter\n"
	                   "sluice_approver_http_timed_out_total %ld\n"
	                   "# TYPE sluice_approver_http_refused_total counter\n"
	                   "sluice_approver_http_refused_total %ld\n"
	                   "# TYPE sluice_approver_http_unauthenticated_total counter\n"
	                   "sluice_approver_http_unauthenticated_total %ld\n"
	                   "# TYPE sluice_approver_webhooks_delivered_total counter\n"
	                   "sluice_approver_webhooks_delivered_total %ld\n"
	                   "# TYPE sluice_approver_webhooks_retried_total counter\n"
	                   "sluice_approver_webhooks_retried_total %ld\n"
	                   "# TYPE sluice_approver_webhooks_failed_total counter\n"
	                   "sluice_approver_webhooks_failed_total %ld\n",
	                   atomic_load(&n_requests), atomic_load(&n_decisions),
	                   api->decider ? ap_decider_batches(api->decider) : 0L,
	                   atomic_load(&n_events), atomic_load(&n_dead_letters),
	                   httpd ? sl_httpd_timed_out(httpd) : 0L, atomic_load(&n_refused),
	                   atomic_load(&n_unauthenticated), delivered, retried, failed);
	json_t *pending = NULL, *n;
	const char *agent;
	char errbuf[256];
	enum MHD_Result ret;
	sl_buf b;

	sl_buf_init(&b, 1 << 20);
	sl_buf_append(&b, text, strlen(text));
	/* the back-pressure's measure (DESIGN.md, "Batches"), when the
	 * database answers */
	if (!store_ready(api, errbuf, sizeof(errbuf)) &&
	    !ap_query_pending_by_agent(thread_store(api), &pending, errbuf, sizeof(errbuf))) {
		const char *head = "# TYPE sluice_approver_pending_requirements gauge\n";

		sl_buf_append(&b, head, strlen(head));
		json_object_foreach (pending, agent, n) {
			char *line =
			    sl_asprintf("sluice_approver_pending_requirements{agent_id=\"%s\"} "
			                "%" JSON_INTEGER_FORMAT "\n",
			                agent, json_integer_value(n));
			sl_buf_append(&b, line, strlen(line));
			free(line);
		}
		json_decref(pending);
	}
	ret = sl_httpd_send(req->conn, 200, "text/plain; version=0.0.4", b.data, b.len);
	sl_buf_free(&b);
	free(text);
	return ret;
}

/* PostgreSQL for GET /readyz: a statement on this thread's connection. */
static void ready_db(void *ud, char db[SL_READY_REASON])
{
	ap_api *api = ud;
	PGresult *res = NULL;

	/* each leaves its reason in db when it fails */
	if (store_ready(api, db, SL_READY_REASON) == SL_OK &&
	    sl_db_exec(thread_store(api)->db, "SELECT 1", 0, NULL, &res, db, SL_READY_REASON) ==
	        SL_OK)
		PQclear(res);
}

/* GET /readyz: whether the approver can do its work now: PostgreSQL and a
 * Kafka broker answer. 503 with the reasons otherwise. */
static enum MHD_Result readyz(ap_api *api, const sl_httpd_request *req)
{
	static sl_ready ready = SL_READY_INIT;

	return sl_ready_answer(&ready, req->conn, ready_db, api, api->kafka);
}

/* What a route is handed: the request, the id in its path (or ""), and
 * the caller: its principal and name. */
typedef struct call {
	ap_api *api;
	const sl_httpd_request *req;
	const char *id;
	ap_principal *p;
	const char *who;
	const char *owner; /* a submitter sees only its own runs: its name; else NULL */
} call;

/* One row by the id in the path: read by the store's reader; a 404 names
 * the noun. */
static enum MHD_Result
get_one(const call *c, sl_status (*read)(ap_store *, const char *, json_t **, char *, size_t),
        const char *noun)
{
	char errbuf[512];
	json_t *out;
	sl_status st = store_ready(c->api, errbuf, sizeof(errbuf));

	if (!st)
		st = read(thread_store(c->api), c->id, &out, errbuf, sizeof(errbuf));
	/* someone else's, for a submitter: as if there were none */
	if (!st && c->owner) {
		const char *user = json_string_value(json_object_get(out, "user_id"));
		if (!user || strcmp(user, c->owner)) {
			json_decref(out);
			st = SL_NOT_FOUND;
		}
	}
	if (st == SL_NOT_FOUND)
		return sl_httpd_send_error(c->req->conn, 404, "no %s %s", noun, c->id);
	return st ? store_error(c->req->conn, st, errbuf)
	          : sl_httpd_send_json(c->req->conn, 200, out);
}

static enum MHD_Result get_run(const call *c)
{
	return get_one(c, ap_query_get_run, "run");
}

/* GET /v1/requirements/{id}: a submitter sees its own runs' only (others
 * 404); may_decide says whether the caller may decide it now. */
static enum MHD_Result get_requirement(const call *c)
{
	char errbuf[512];
	json_t *out;
	sl_status st = store_ready(c->api, errbuf, sizeof(errbuf));

	if (!st)
		st = ap_query_get_requirement(thread_store(c->api), c->id, c->owner,
		                              c->p->roles & DECIDERS ? c->p : NULL, &out, errbuf,
		                              sizeof(errbuf));
	if (st == SL_NOT_FOUND)
		return sl_httpd_send_error(c->req->conn, 404, "no requirement %s", c->id);
	return st ? store_error(c->req->conn, st, errbuf)
	          : sl_httpd_send_json(c->req->conn, 200, out);
}

/* GET /v1/audit?run_id=&requirement_id=&kind=&since=&until=&after_seq=&limit=
 * (limit 1..1000, default 100): the ledger, oldest first. */
static enum MHD_Result get_audit(const call *c)
{
	static const char *names[AP_A_COUNT] = {"run_id", "requirement_id", "kind", "since",
	                                        "until"};
	const char *f[AP_A_COUNT], *a = arg(c->req->conn, "after_seq"),
	                           *l = arg(c->req->conn, "limit");
	long after = 0, limit = 100;
	char errbuf[512];
	json_t *out;
	sl_status st;

	for (int i = 0; i < AP_A_COUNT; i++)
		f[i] = arg(c->req->conn, names[i]);
	if (a && !sl_parse_long(a, 0, LONG_MAX, &after))
		return sl_httpd_send_error(c->req->conn, 400, "after_seq must be a whole number");
	if (l && !sl_parse_long(l, 1, 1000, &limit))
		return sl_httpd_send_error(c->req->conn, 400, "limit must be from 1 to 1000");
	st = store_ready(c->api, errbuf, sizeof(errbuf));
	if (!st)
		st = ap_query_list_audit(thread_store(c->api), f, after, limit, &out, errbuf,
		                         sizeof(errbuf));
	if (st == SL_INVALID)
		return sl_httpd_send_error(c->req->conn, 400,
		                           "since and until must be times (RFC 3339)");
	return st ? store_error(c->req->conn, st, errbuf)
	          : sl_httpd_send_json(c->req->conn, 200, out);
}

/* GET /v1/grants?run_id=&session_id=&active=: grants, newest first. */
static enum MHD_Result list_grants(const call *c)
{
	const char *run_id = arg(c->req->conn, "run_id"),
	           *session_id = arg(c->req->conn, "session_id"),
	           *active = arg(c->req->conn, "active"), *l = arg(c->req->conn, "limit");
	long limit = 100;
	char errbuf[512];
	json_t *out;
	sl_status st;

	if (active && strcmp(active, "true") && strcmp(active, "false"))
		return sl_httpd_send_error(c->req->conn, 400, "active must be true or false");
	if (l && !sl_parse_long(l, 1, 1000, &limit))
		return sl_httpd_send_error(c->req->conn, 400, "limit must be from 1 to 1000");
	st = store_ready(c->api, errbuf, sizeof(errbuf));
	if (!st)
		st = ap_query_list_grants(thread_store(c->api), run_id, session_id,
		                          active && !strcmp(active, "true"), limit, &out, errbuf,
		                          sizeof(errbuf));
	return st ? store_error(c->req->conn, st, errbuf)
	          : sl_httpd_send_json(c->req->conn, 200, out);
}

/* DELETE /v1/grants/{id}: revoked, by whoever granted it or an admin. */
static enum MHD_Result revoke_grant(const call *c)
{
	char errbuf[512];
	json_t *out;
	sl_status st = store_ready(c->api, errbuf, sizeof(errbuf));

	if (!st)
		st = ap_store_revoke_grant(thread_store(c->api), c->id, c->who,
		                           (c->p->roles & AP_ADMIN) != 0, &out, errbuf,
		                           sizeof(errbuf));
	return st ? store_error(c->req->conn, st, errbuf)
	          : sl_httpd_send_json(c->req->conn, 200, out);
}

/* GET /v1/audit/checkpoints/latest: the newest signed checkpoint. */
static enum MHD_Result get_checkpoint(const call *c)
{
	char errbuf[512];
	json_t *out;
	sl_status st = store_ready(c->api, errbuf, sizeof(errbuf));

	if (!st)
		st = ap_query_latest_checkpoint(thread_store(c->api), &out, errbuf, sizeof(errbuf));
	if (st == SL_NOT_FOUND)
		return sl_httpd_send_error(c->req->conn, 404, "no checkpoint yet");
	return st ? store_error(c->req->conn, st, errbuf)
	          : sl_httpd_send_json(c->req->conn, 200, out);
}

/* GET /v1/keys, no token: the public keys receipts and checkpoints are
 * checked with (SLUICE_RECEIPT_KEYS), as a JWKS. */
static enum MHD_Result get_keys(const ap_api *api, const sl_httpd_request *req)
{
	json_t *keys = json_array();

	for (size_t i = 0; i < api->keys.n; i++) {
		char *x = sl_b64url(api->keys.k[i].raw, 32);
		json_array_append_new(keys,
		                      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "OKP",
		                                "crv", "Ed25519", "kid", api->keys.k[i].kid, "use",
		                                "sig", "alg", "EdDSA", "x", x));
		free(x);
	}
	return sl_httpd_send_json(req->conn, 200, json_pack("{s:o}", "keys", keys));
}

static enum MHD_Result get_approval(const call *c)
{
	return get_one(c, ap_query_get_approval, "approval");
}

static enum MHD_Result count_pending(const call *c)
{
	char errbuf[512];
	long long n;
	sl_status st = store_ready(c->api, errbuf, sizeof(errbuf));

	if (!st)
		st = ap_query_count_pending(thread_store(c->api), arg(c->req->conn, "user_id"),
		                            c->owner, c->p->roles & DECIDERS ? c->p : NULL, &n,
		                            errbuf, sizeof(errbuf));
	if (st)
		return store_error(c->req->conn, st, errbuf);
	return sl_httpd_send_json(c->req->conn, 200, json_pack("{s:I}", "count", (json_int_t)n));
}

static enum MHD_Result route_cancel(const call *c)
{
	/* an admin cancels any run; a submitter its own (ap_store_cancel) */
	return cancel(c->api, c->req, c->id, c->p->roles & AP_ADMIN ? NULL : c->who, c->who);
}

static enum MHD_Result route_submit(const call *c)
{
	return submit(c->api, c->req, c->who);
}

static enum MHD_Result route_list_requirements(const call *c)
{
	return list_requirements(c->api, c->req, c->owner, c->p->roles & DECIDERS ? c->p : NULL);
}

static enum MHD_Result route_list_approvals(const call *c)
{
	return list_approvals(c->api, c->req, c->owner);
}

static enum MHD_Result route_decide_many(const call *c)
{
	return decide_many(c->api, c->req, c->p);
}

/* The decision routes: the verb is the path's last part. */
static enum MHD_Result route_decide(const call *c)
{
	const char *verb = strrchr(c->req->path, '/') + 1;

	return decide(c->api, c->req, c->id, verb, c->p);
}

/* The /v1 routes, each "BASE" or "BASE/{id}SUFFIX", tried in order. */
/* The routes, each with the roles that may call it. */
static const struct route {
	const char *method;
	const char *base;
	bool id;
	const char *suffix;
	enum MHD_Result (*fn)(const call *c);
	unsigned roles;
} routes[] = {
    {"POST", "/v1/runs", false, "", route_submit, AP_SUBMITTER | AP_ADMIN},
    {"GET", "/v1/runs", true, "", get_run, SEERS},
    {"POST", "/v1/runs", true, "/cancel", route_cancel, AP_SUBMITTER | AP_ADMIN},
    {"GET", "/v1/requirements", false, "", route_list_requirements, SEERS},
    {"GET", "/v1/requirements", true, "", get_requirement, SEERS},
    {"POST", "/v1/requirements/decide", false, "", route_decide_many, DECIDERS},
    {"POST", "/v1/requirements", true, "/confirm", route_decide, DECIDERS},
    {"POST", "/v1/requirements", true, "/reject", route_decide, DECIDERS},
    {"POST", "/v1/requirements", true, "/input", route_decide, DECIDERS},
    {"POST", "/v1/requirements", true, "/result", route_decide, DECIDERS},
    {"GET", "/v1/approvals", false, "", route_list_approvals, SEERS},
    {"GET", "/v1/approvals/count", false, "", count_pending, SEERS},
    {"GET", "/v1/approvals", true, "", get_approval, SEERS},
    {"POST", "/v1/approvals", true, "/resolve", route_decide, DECIDERS},
    {"GET", "/v1/audit", false, "", get_audit, AP_AUDITOR | AP_ADMIN},
    {"GET", "/v1/grants", false, "", list_grants, READERS},
    {"DELETE", "/v1/grants", true, "", revoke_grant, DECIDERS},
    {"GET", "/v1/audit/checkpoints/latest", false, "", get_checkpoint, AP_AUDITOR | AP_ADMIN},
};

/* 403 for a principal whose roles r does not allow: said, logged and
 * counted with the identity; nothing is changed. */
static enum MHD_Result refuse(const sl_httpd_request *req, const ap_principal *p,
                              const struct route *r)
{
	char has[64], needs[64];

	ap_access_roles(p->roles, has, sizeof(has));
	ap_access_roles(r->roles, needs, sizeof(needs));
	atomic_fetch_add(&n_refused, 1);
	sl_warn("refused: %s (roles %s) may not %s %s; that takes one of %s", p->name, has,
	        req->method, req->path, needs);
	return sl_httpd_send_error(req->conn, 403,
	                           "%s (roles %s) may not %s %s: that takes one of %s", p->name,
	                           has, req->method, r->base, needs);
}

/* True when path is route r's; its id goes to id. */
static bool route_matches(const struct route *r, const char *path, char *id, size_t size)
{
	size_t n = strlen(r->base);
	const char *suffix;

	*id = '\0';
	if (strncmp(path, r->base, n))
		return false;
	if (!r->id)
		return path[n] == '\0';
	return path[n] == '/' && split_id(path + n + 1, id, size, &suffix) &&
	       !strcmp(suffix, r->suffix);
}

/* The route of an identified call, or 404 / 405. */
static enum MHD_Result route(call *c, char *id, size_t idsize)
{
	const sl_httpd_request *req = c->req;
	const struct route *other_method = NULL;

	if (!args_are_text(req->conn))
		return sl_httpd_send_error(req->conn, 400, "query arguments must be UTF-8 text");
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (!route_matches(&routes[i], req->path, id, idsize))
			continue;
		if (!strcmp(routes[i].method, req->method))
			return routes[i].roles & c->p->roles ? routes[i].fn(c)
			                                     : refuse(req, c->p, &routes[i]);
		if (!other_method)
			other_method = &routes[i];
	}
	if (other_method)
		return sl_httpd_send_error(req->conn, 405, "use %s", other_method->method);
	return sl_httpd_send_error(req->conn, 404, "no such resource: %s", req->path);
}

enum MHD_Result ap_api_handle(void *ud, const sl_httpd_request *req)
{
	ap_api *api = ud;
	char id[SL_EVENT_MAX_ID + 2], why[256];
	call c = {.api = api, .req = req, .id = id};
	enum MHD_Result ret;

	atomic_fetch_add(&n_requests, 1);
	if (!strcmp(req->path, "/healthz"))
		return sl_httpd_send_json(req->conn, 200, json_pack("{s:s}", "status", "ok"));
	if (!strcmp(req->path, "/readyz"))
		return readyz(api, req);
	if (!strcmp(req->path, "/metrics"))
		return metrics(api, req);
	if (!strcmp(req->path, "/") && !strcmp(req->method, "GET"))
		return sl_httpd_send_page(req->conn, 200, "text/html; charset=utf-8", ap_inbox_html,
		                          strlen(ap_inbox_html), ap_inbox_csp());
	if (strncmp(req->path, "/v1/", 4))
		return sl_httpd_send_error(req->conn, 404, "no such resource: %s", req->path);
	if (!strcmp(req->path, "/v1/keys") && !strcmp(req->method, "GET"))
		return get_keys(api, req);
	if (!(c.p = identify(api, req->conn, why, sizeof(why)))) {
		atomic_fetch_add(&n_unauthenticated, 1);
		return sl_httpd_send_error(req->conn, 401, "%s", why);
	}
	c.who = c.p->name;
	c.owner = c.p->roles & READERS ? NULL : c.who;
	ret = route(&c, id, sizeof(id));
	ap_principal_release(c.p);
	return ret;
}
