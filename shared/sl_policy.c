/*
 * sl_policy.c - approval policies: parsing and evaluation.
 */
#include "sl_policy.h"

#include "sl_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POLICIES 100
#define MAX_CONDS 32
#define MAX_KEY 256
#define MAX_NOTE 1000
/* A string longer than this is not matched against a pattern: the
 * arguments are the model's, and a pattern's cost grows with them. */
#define MAX_MATCHED (64 * 1024)

static const char *const cmp_names[] = {"eq", "ne", "in", "lt", "le", "gt", "ge", "matches"};
static const char *const effect_names[] = {"approve", "reject", "require"};
static const char *const run_keys[] = {"$agent_id", "$user_id", "$session_id"};

bool sl_on_timeout_parse(const json_t *v, sl_on_timeout *out)
{
	static const char *const names[] = {"reject", "cancel_run", "approve"};
	const char *s = json_string_value(v);

	for (int i = 0; s && i < 3; i++)
		if (!strcmp(s, names[i])) {
			*out = (sl_on_timeout)(i + 1);
			return true;
		}
	return false;
}

const char *sl_effect_name(sl_effect e)
{
	return effect_names[e];
}

json_t *sl_json_pointer_path(const char *ptr)
{
	json_t *path = json_array();
	char token[MAX_KEY];

	if (*ptr && *ptr != '/')
		goto bad;
	while (*ptr == '/') {
		size_t n = 0;

		for (ptr++; *ptr && *ptr != '/'; ptr++) {
			char c = *ptr;

			if (c == '~') {
				if (ptr[1] != '0' && ptr[1] != '1')
					goto bad;
				c = *++ptr == '0' ? '~' : '/';
			}
			if (n + 1 >= sizeof(token))
				goto bad;
			token[n++] = c;
		}
		token[n] = '\0';
		if (json_array_append_new(path, json_string(token)))
			goto bad; /* not UTF-8: no member is named so */
	}
	return path;
bad:
	json_decref(path);
	return NULL;
}

const json_t *sl_json_pointer(const json_t *doc, const char *ptr)
{
	json_t *path = sl_json_pointer_path(ptr), *t;
	const json_t *at = path ? doc : NULL;
	size_t i;

	json_array_foreach (path, i, t) {
		const char *token = json_string_value(t);
		size_t n = json_string_length(t);
		char *end;
		unsigned long k;

		if (json_is_object(at)) {
			at = json_object_getn(at, token, n);
			continue;
		}
		/* an array's index: digits only, no leading zero (RFC 6901) */
		k = strtoul(token, &end, 10);
		if (!json_is_array(at) || !n || strspn(token, "0123456789") != n || *end ||
		    (token[0] == '0' && n > 1))
			at = NULL;
		else
			at = json_array_get(at, k);
		if (!at)
			break;
	}
	json_decref(path);
	return at;
}

/* Whether key is a JSON pointer (RFC 6901) or one of run_keys. */
static bool key_valid(const char *key)
{
	if (*key == '$') {
		for (size_t i = 0; i < sizeof(run_keys) / sizeof(*run_keys); i++)
			if (!strcmp(key, run_keys[i]))
				return true;
		return false;
	}
	if (*key != '/' || strlen(key) >= MAX_KEY)
		return false;
	for (const char *p = key; *p; p++)
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return false;
	return true;
}

/* A list of non-empty names, or absent; false when it is something else. */
bool sl_names_valid(const json_t *list)
{
	const json_t *v;
	size_t i;

	if (!list)
		return true;
	if (!json_is_array(list))
		return false;
	json_array_foreach (list, i, v)
		if (!json_is_string(v) || !*json_string_value(v))
			return false;
	return true;
}

static sl_status parse_cond(const char *key, json_t *test, sl_policy_cond *c, const char *where,
                            char *errbuf, size_t errsize)
{
	const char *op;
	json_t *v;
	size_t i;
	int k = -1;

	c->key = key;
	if (!key_valid(key))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: when: \"%.64s\" must be a JSON pointer into the arguments "
		              "(\"/name\") or one of $agent_id, $user_id, $session_id",
		              where, key);
	if (json_is_object(test) && json_object_size(test) == 1)
		json_object_foreach (test, op, v)
			for (i = 0; i < sizeof(cmp_names) / sizeof(*cmp_names); i++)
				if (!strcmp(op, cmp_names[i]))
					k = (int)i;
	if (k < 0)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: when: %s must be one comparison: {\"eq\"|\"ne\"|\"in\"|\"lt\"|"
		              "\"le\"|\"gt\"|\"ge\"|\"matches\": value}",
		              where, key);
	c->cmp = (sl_cmp)k;
	json_object_foreach (test, op, v)
		c->value = v;
	if (c->cmp == SL_CMP_IN && !json_is_array(c->value))
		return sl_err(errbuf, errsize, SL_INVALID, "%s: when: %s: in takes a list", where,
		              key);
	if (c->cmp >= SL_CMP_LT && c->cmp <= SL_CMP_GE && !json_is_number(c->value))
		return sl_err(errbuf, errsize, SL_INVALID, "%s: when: %s: %s takes a number", where,
		              key, cmp_names[c->cmp]);
	if (c->cmp == SL_CMP_MATCHES) {
		int rc;

		if (!json_is_string(c->value))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: when: %s: matches takes a regular expression", where,
			              key);
		c->re = sl_calloc(1, sizeof(*c->re));
		if ((rc = regcomp(c->re, json_string_value(c->value), REG_EXTENDED | REG_NOSUB))) {
			char why[128];

			regerror(rc, c->re, why, sizeof(why));
			free(c->re);
			c->re = NULL;
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: when: %s: matches: not a POSIX extended regular "
			              "expression: %s",
			              where, key, why);
		}
	}
	return SL_OK;
}

static sl_status parse_one(json_t *jp, sl_policy *p, size_t idx, const sl_policy_tool *tool,
                           char *errbuf, size_t errsize)
{
	static const char *const fields[] = {"name",   "when",  "effect", "note",
	                                     "quorum", "users", "groups", "on_timeout"};
	char where[320];
	const char *field, *effect;
	json_t *v, *when;
	size_t i;
	sl_status st;

	if (!json_is_object(jp))
		return sl_err(errbuf, errsize, SL_INVALID, "%s: policies[%zu] must be an object",
		              tool->where, idx);
	p->name = json_string_value(json_object_get(jp, "name"));
	if (!p->name || !sl_event_id_valid(p->name))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: policies[%zu]: field name must be an id-like string",
		              tool->where, idx);
	snprintf(where, sizeof(where), "%s: policy %s", tool->where, p->name);
	json_object_foreach (jp, field, v) {
		bool known = false;

		for (i = 0; i < sizeof(fields) / sizeof(*fields); i++)
			known = known || !strcmp(field, fields[i]);
		if (!known)
			return sl_err(errbuf, errsize, SL_INVALID, "%s: unknown field %.64s", where,
			              field);
	}
	effect = json_string_value(json_object_get(jp, "effect"));
	for (i = 0; effect && i < sizeof(effect_names) / sizeof(*effect_names); i++)
		if (!strcmp(effect, effect_names[i]))
			break;
	if (!effect || i == sizeof(effect_names) / sizeof(*effect_names))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field effect must be \"approve\", \"reject\" or \"require\"",
		              where);
	p->effect = (sl_effect)i;
	if (p->effect != SL_EFFECT_REQUIRE && !tool->confirms)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: effect %s decides a confirmation, and the tool asks for user "
		              "input or an external result",
		              where, effect);
	v = json_object_get(jp, "note");
	if (v && (!json_is_string(v) || strlen(json_string_value(v)) > MAX_NOTE))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field note must be text of at most %d bytes", where, MAX_NOTE);
	p->note = json_string_value(v);
	v = json_object_get(jp, "quorum");
	if (v && (p->effect != SL_EFFECT_REQUIRE || !json_is_integer(v) ||
	          json_integer_value(v) < 1 || json_integer_value(v) > 10))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field quorum must be a number of approvers from 1 to 10, with "
		              "effect require",
		              where);
	p->quorum = v ? (int)json_integer_value(v) : 0;
	if (p->quorum > 1 && !tool->quorum_allowed)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field quorum above 1 needs the tool's approval \"required\"",
		              where);
	if (json_object_get(jp, "users") || json_object_get(jp, "groups")) {
		json_t *users = json_object_get(jp, "users"),
		       *groups = json_object_get(jp, "groups");

		if (p->effect != SL_EFFECT_REQUIRE || !sl_names_valid(users) ||
		    !sl_names_valid(groups) ||
		    json_array_size(users) + json_array_size(groups) == 0)
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: fields users and groups must be lists of names, with "
			              "effect require",
			              where);
		p->approvers =
		    json_pack("{s:o, s:o}", "users", users ? json_incref(users) : json_array(),
		              "groups", groups ? json_incref(groups) : json_array());
	}
	v = json_object_get(jp, "on_timeout");
	if (v && (p->effect != SL_EFFECT_REQUIRE || !sl_on_timeout_parse(v, &p->on_timeout)))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field on_timeout must be \"reject\", \"cancel_run\" or "
		              "\"approve\", with effect require",
		              where);
	if (p->on_timeout == SL_TIMEOUT_APPROVE && !tool->confirms)
		return sl_err(
		    errbuf, errsize, SL_INVALID,
		    "%s: on_timeout approve decides a confirmation, and the tool asks for "
		    "user input or an external result",
		    where);
	if (p->effect == SL_EFFECT_REQUIRE && !p->quorum && !p->approvers && !p->on_timeout)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: effect require needs a quorum, users, groups or on_timeout",
		              where);
	when = json_object_get(jp, "when");
	if (when && !json_is_object(when))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field when must map keys to comparisons", where);
	if (json_object_size(when) > MAX_CONDS)
		return sl_err(errbuf, errsize, SL_INVALID, "%s: field when: at most %d conditions",
		              where, MAX_CONDS);
	p->conds = sl_calloc(json_object_size(when) + 1, sizeof(*p->conds));
	json_object_foreach (when, field, v)
		if ((st = parse_cond(field, v, &p->conds[p->nconds++], where, errbuf, errsize)))
			return st;
	return SL_OK;
}

sl_status sl_policies_parse(json_t *list, const sl_policy_tool *tool, sl_policy **out, size_t *n,
                            char *errbuf, size_t errsize)
{
	json_t *jp;
	size_t i;
	sl_status st = SL_OK;

	*out = NULL;
	*n = 0;
	if (!list)
		return SL_OK;
	if (!json_is_array(list) || json_array_size(list) > MAX_POLICIES)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field policies must be a list of at most %d rules", tool->where,
		              MAX_POLICIES);
	*out = sl_calloc(json_array_size(list) + 1, sizeof(**out));
	json_array_foreach (list, i, jp) {
		st = parse_one(jp, &(*out)[i], i, tool, errbuf, errsize);
		*n = i + 1;
		for (size_t k = 0; !st && k < i; k++)
			if (!strcmp((*out)[k].name, (*out)[i].name))
				st = sl_err(errbuf, errsize, SL_INVALID,
				            "%s: policy %s: field name is used twice", tool->where,
				            (*out)[i].name);
		if (st)
			break;
	}
	if (st) {
		sl_policies_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	return st;
}

void sl_policies_free(sl_policy *p, size_t n)
{
	for (size_t i = 0; p && i < n; i++) {
		for (size_t k = 0; k < p[i].nconds; k++)
			if (p[i].conds[k].re) {
				regfree(p[i].conds[k].re);
				free(p[i].conds[k].re);
			}
		free(p[i].conds);
		json_decref(p[i].approvers);
	}
	free(p);
}

/* JSON equality, with numbers compared as numbers (3 is 3.0). */
static bool same(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	return json_equal(a, b);
}

bool sl_json_matches(const json_t *doc, const json_t *want)
{
	const char *ptr;
	json_t *v;

	json_object_foreach ((json_t *)want, ptr, v) {
		const json_t *at = sl_json_pointer(doc, ptr);

		if (!at || !same(at, v))
			return false;
	}
	return true;
}

static bool holds(const sl_policy_cond *c, const sl_policy_of *of)
{
	const json_t *v;
	json_t *tmp = NULL;
	bool ok = false;
	size_t i;

	if (c->key[0] == '$') {
		const char *s = !strcmp(c->key, "$agent_id")  ? of->agent_id
		                : !strcmp(c->key, "$user_id") ? of->user_id
		                                              : of->session_id;
		v = tmp = s ? json_string(s) : NULL;
	} else {
		v = of->args ? sl_json_pointer(of->args, c->key) : NULL;
	}
	if (!v)
		return false;
	switch (c->cmp) {
	case SL_CMP_EQ: ok = same(v, c->value); break;
	case SL_CMP_NE: ok = !same(v, c->value); break;
	case SL_CMP_IN:
		for (i = 0; !ok && i < json_array_size(c->value); i++)
			ok = same(v, json_array_get(c->value, i));
		break;
	case SL_CMP_LT:
	case SL_CMP_LE:
	case SL_CMP_GT:
	case SL_CMP_GE: {
		double x = json_number_value(v), y = json_number_value(c->value);

		ok = json_is_number(v) && (c->cmp == SL_CMP_LT   ? x < y
		                           : c->cmp == SL_CMP_LE ? x <= y
		                           : c->cmp == SL_CMP_GT ? x > y
		                                                 : x >= y);
		break;
	}
	case SL_CMP_MATCHES:
		ok = json_is_string(v) && json_string_length(v) <= MAX_MATCHED &&
		     strlen(json_string_value(v)) == json_string_length(v) &&
		     regexec(c->re, json_string_value(v), 0, NULL, 0) == 0;
		break;
	}
	json_decref(tmp);
	return ok;
}

const sl_policy *sl_policy_match(const sl_policy *p, size_t n, const sl_policy_of *of)
{
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		while (k < p[i].nconds && holds(&p[i].conds[k], of))
			k++;
		if (k == p[i].nconds)
			return &p[i];
	}
	return NULL;
}
