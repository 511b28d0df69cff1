/*
 * ap_bulk.c - bulk decisions.
 */
#include "ap_bulk.h"

#include "sl_event.h"
#include "sl_log.h"
#include "sl_policy.h"
#include "sl_text.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT 256
#define MAX_NOTE 4096
#define MAX_ARGS 32

/* A list of at most AP_BULK_MAX_IDS ids, as JSON text into *out. */
static sl_status id_list(const json_t *v, const char *key, char **out, char *errbuf, size_t errsize)
{
	const json_t *e;
	size_t i;

	if (!json_is_array(v) || json_array_size(v) > AP_BULK_MAX_IDS)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "filter.%s must be a list of at most %d ids", key, AP_BULK_MAX_IDS);
	json_array_foreach (v, i, e)
		if (!json_is_string(e) || !sl_event_id_valid(json_string_value(e)))
			return sl_err(errbuf, errsize, SL_INVALID, "filter.%s[%zu] must be an id",
			              key, i);
	*out = json_dumps(v, JSON_COMPACT);
	return SL_OK;
}

/* filter.args ({pointer: value}) as [{"path": [tokens], "value"}] text. */
static sl_status arg_list(const json_t *v, char **out, char *errbuf, size_t errsize)
{
	json_t *list = json_array(), *value, *path;
	const char *ptr;

	if (!json_is_object(v) || !json_object_size(v) || json_object_size(v) > MAX_ARGS) {
		json_decref(list);
		return sl_err(errbuf, errsize, SL_INVALID,
		              "filter.args must map 1 to %d JSON pointers to values", MAX_ARGS);
	}
	json_object_foreach ((json_t *)v, ptr, value) {
		if (!*ptr || !(path = sl_json_pointer_path(ptr))) {
			json_decref(list);
			return sl_err(errbuf, errsize, SL_INVALID,
			              "filter.args: \"%.64s\" must be a JSON pointer (\"/name\")",
			              ptr);
		}
		json_array_append_new(list, json_pack("{s:o, s:O}", "path", path, "value", value));
	}
	*out = json_dumps(list, JSON_COMPACT);
	json_decref(list);
	return SL_OK;
}

/* An optional text member of at most MAX_TEXT bytes. */
static sl_status text(const json_t *o, const char *key, const char **out, char *errbuf,
                      size_t errsize)
{
	const json_t *v = json_object_get(o, key);

	*out = NULL;
	if (!v)
		return SL_OK;
	if (!json_is_string(v) || json_string_length(v) > MAX_TEXT || !json_string_length(v))
		return sl_err(errbuf, errsize, SL_INVALID, "filter.%s must be a text", key);
	*out = json_string_value(v);
	return SL_OK;
}

sl_status ap_bulk_parse(json_t *body, ap_bulk_req *r, char *errbuf, size_t errsize)
{
	static const char *const fields[] = {"filter", "decision", "note", "dry_run"};
	static const char *const criteria[] = {"agent_id", "tool_name",      "run_ids",      "ids",
	                                       "args",     "created_before", "created_after"};
	const json_t *filter = json_object_get(body, "filter"), *v;
	const char *key, *decision = json_string_value(json_object_get(body, "decision"));
	sl_status st = SL_OK;
	size_t i;

	memset(r, 0, sizeof(*r));
	r->body = json_incref(body);
	json_object_foreach (body, key, v) {
		for (i = 0; i < sizeof(fields) / sizeof(*fields) && strcmp(key, fields[i]); i++)
			;
		if (i == sizeof(fields) / sizeof(*fields))
			return sl_err(errbuf, errsize, SL_INVALID, "unknown field %.64s", key);
	}
	if (!decision || (strcmp(decision, "confirm") && strcmp(decision, "reject")))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "decision must be \"confirm\" or \"reject\"");
	r->action = !strcmp(decision, "confirm") ? AP_CONFIRM : AP_REJECT;
	v = json_object_get(body, "note");
	if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > MAX_NOTE))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "note must be a string of at most %d bytes", MAX_NOTE);
	r->note = json_string_value(v);
	v = json_object_get(body, "dry_run");
	if (v && !json_is_boolean(v))
		return sl_err(errbuf, errsize, SL_INVALID, "dry_run must be true or false");
	r->dry_run = json_is_true(v);
	if (!json_is_object(filter) || !json_object_size(filter))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "filter must be an object naming at least one of agent_id, "
		              "tool_name, run_ids, ids, args, created_before, created_after");
	json_object_foreach ((json_t *)filter, key, v) {
		for (i = 0; i < sizeof(criteria) / sizeof(*criteria) && strcmp(key, criteria[i]);
		     i++)
			;
		if (i == sizeof(criteria) / sizeof(*criteria))
			return sl_err(errbuf, errsize, SL_INVALID, "filter: unknown field %.64s",
			              key);
	}
	if ((st = text(filter, "agent_id", &r->match.agent_id, errbuf, errsize)) ||
	    (st = text(filter, "tool_name", &r->match.tool_name, errbuf, errsize)) ||
	    (st = text(filter, "created_before", &r->match.created_before, errbuf, errsize)) ||
	    (st = text(filter, "created_after", &r->match.created_after, errbuf, errsize)))
		return st;
	if ((v = json_object_get(filter, "run_ids")) &&
	    (st = id_list(v, "run_ids", (char **)&r->match.run_ids, errbuf, errsize)))
		return st;
	if ((v = json_object_get(filter, "ids")) &&
	    (st = id_list(v, "ids", (char **)&r->match.ids, errbuf, errsize)))
		return st;
	if ((v = json_object_get(filter, "args")) &&
	    (st = arg_list(v, (char **)&r->match.args, errbuf, errsize)))
		return st;
	return SL_OK;
}

void ap_bulk_req_clear(ap_bulk_req *r)
{
	free((char *)r->match.run_ids);
	free((char *)r->match.ids);
	free((char *)r->match.args);
	json_decref(r->body);
	memset(r, 0, sizeof(*r));
}

typedef struct bulk bulk;

/* One requirement's decision, through the decider. */
typedef struct bulk_job {
	ap_decide_job job; /* first: the decider's callback gets it */
	bulk *b;
	char id[SL_EVENT_MAX_ID + 2];
} bulk_job;

struct bulk {
	atomic_size_t left; /* jobs not yet answered, and one while they are submitted */
	long long matched;
	size_t n;
	ap_bulk_req req;
	ap_principal *who;
	sl_httpd_deferred *request;
	bulk_job jobs[];
};

/* Every job answered: the request's answer, in the order of the ids. */
static void finish(bulk *b)
{
	json_t *decided = json_array(), *voted = json_array(), *refused = json_array();
	size_t ok = 0;

	for (size_t i = 0; i < b->n; i++) {
		ap_resolution *v = &b->jobs[i].job.v;
		const char *status = json_string_value(json_object_get(v->out, "status"));

		if (v->st)
			json_array_append_new(refused,
			                      json_pack("{s:s, s:s, s:o}", "id", v->id, "status",
			                                v->st == SL_FORBIDDEN   ? "forbidden"
			                                : v->st == SL_CONFLICT  ? "conflict"
			                                : v->st == SL_NOT_FOUND ? "not_found"
			                                : v->st == SL_INVALID   ? "invalid"
			                                                        : "unavailable",
			                                "error", sl_text_json(v->err)));
		else
			json_array_append_new(status && !strcmp(status, "pending") ? voted
			                                                           : decided,
			                      json_string(v->id));
		ok += !v->st;
		json_decref(v->out);
	}
	sl_info("bulk decision by %s: %s %zu of %lld matching (%zu refused)", b->who->name,
	        b->req.action == AP_CONFIRM ? "confirmed" : "rejected", ok, b->matched, b->n - ok);
	sl_httpd_answer_json(b->request, 200,
	                     json_pack("{s:I, s:o, s:o, s:o, s:i}", "matched",
	                               (json_int_t)b->matched, "decided", decided, "voted", voted,
	                               "refused", refused, "limit", AP_BULK_MAX));
	ap_bulk_req_clear(&b->req);
	ap_principal_release(b->who);
	free(b);
}

static void job_done(ap_decide_job *job)
{
	bulk *b = ((bulk_job *)job)->b;

	if (atomic_fetch_sub(&b->left, 1) == 1)
		finish(b);
}

void ap_bulk_start(ap_decider *dc, ap_bulk_req *r, const json_t *ids, long long matched,
                   ap_principal *who, sl_httpd_deferred *request)
{
	size_t n = json_array_size(ids);
	bulk *b = sl_calloc(1, sizeof(*b) + n * sizeof(bulk_job));

	assert(n <= AP_BULK_MAX);
	b->matched = matched;
	b->n = n;
	b->req = *r;
	memset(r, 0, sizeof(*r));
	b->who = ap_principal_hold(who);
	b->request = request;
	atomic_init(&b->left, n + 1);
	for (size_t i = 0; i < n; i++) {
		bulk_job *j = &b->jobs[i];

		j->b = b;
		snprintf(j->id, sizeof(j->id), "%s", json_string_value(json_array_get(ids, i)));
		j->job.v.id = j->id;
		j->job.v.d = (ap_decision){.action = b->req.action,
		                           .note = b->req.note,
		                           .resolved_by = b->who->name,
		                           .groups = b->who->groups,
		                           .ngroups = b->who->ngroups};
		j->job.done = job_done;
	}
	/* a job may be answered while the rest are still being submitted: the
	 * extra count keeps the answer until all are */
	for (size_t i = 0; i < n; i++)
		ap_decider_submit(dc, &b->jobs[i].job);
	if (atomic_fetch_sub(&b->left, 1) == 1)
		finish(b);
}
