/*
 * test_policy.c - approval policies: the rules of an agents file parsed,
 * every comparison evaluated on arguments and on the run's agent, user and
 * session, the first match winning; every mistake in a rule refused,
 * named; JSON pointers as RFC 6901 reads them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_agents.h"

#define AGENT(approval, policies)                                                                  \
	"{\"agents\":[{\"id\":\"ops\",\"model\":{\"provider\":\"openai-responses\",\"id\":\"m\"}," \
	"\"tools\":[{\"name\":\"scale\",\"requires_confirmation\":true," approval                  \
	"\"executor\":{\"kind\":\"command\",\"argv\":[\"/bin/echo\"]},\"policies\":" policies      \
	"}]}]}"

#define RULES                                                                               \
	"[{\"name\":\"small\",\"when\":{\"/replicas\":{\"le\":3}},\"effect\":\"approve\"}," \
	"{\"name\":\"prod\",\"when\":{\"/env\":{\"eq\":\"prod\"}},\"effect\":\"require\","  \
	"\"quorum\":2,\"groups\":[\"sre\"]},"                                               \
	"{\"name\":\"big\",\"when\":{\"/amount\":{\"gt\":10000}},\"effect\":\"reject\","    \
	"\"note\":\"over the limit\"},"                                                     \
	"{\"name\":\"bot\",\"when\":{\"$user_id\":{\"matches\":\"^bot-[0-9]+$\"},"          \
	"\"/region\":{\"in\":[\"eu\",\"us\"]}},\"effect\":\"reject\"},"                     \
	"{\"name\":\"staging\",\"when\":{\"$session_id\":{\"ne\":\"s-1\"},\"/tags/"         \
	"0\":{\"eq\":\"x\"},"                                                               \
	"\"/a~1b\":{\"ge\":1},\"/n\":{\"lt\":0}},\"effect\":\"approve\"}]"

static sl_agents *load(const char *approval_and_rules)
{
	sl_agents *a = NULL;
	char err[512];

	if (sl_agents_parse(approval_and_rules, strlen(approval_and_rules), &a, err, sizeof(err)))
		fail_msg("%s", err);
	return a;
}

/* The name of the rule that applies to args (JSON) for user and session, or "-". */
static const char *fires(const sl_tool *t, const char *args, const char *user, const char *session)
{
	json_t *j = json_loads(args, 0, NULL);
	sl_policy_of of = {j, "ops", user, session};
	const sl_policy *p = sl_policy_match(t->policies, t->npolicies, &of);

	json_decref(j);
	return p ? p->name : "-";
}

static void the_first_rule_that_holds(void **state)
{
	sl_agents *a = load(AGENT("\"approval\":\"required\",", RULES));
	const sl_tool *t = &a->agents[0].tools[0];
	const sl_policy *p;

	(void)state;
	assert_int_equal(t->npolicies, 5);
	assert_int_equal(strlen(a->sha256), 64);
	assert_string_equal(fires(t, "{\"replicas\":3}", "ann", "s"), "small");
	assert_string_equal(fires(t, "{\"replicas\":3.0,\"env\":\"prod\"}", "ann", "s"), "small");
	assert_string_equal(fires(t, "{\"replicas\":4,\"env\":\"prod\"}", "ann", "s"), "prod");
	assert_string_equal(fires(t, "{\"replicas\":\"2\",\"env\":\"dev\"}", "ann", "s"), "-");
	assert_string_equal(fires(t, "{\"amount\":10000}", "ann", "s"), "-");
	assert_string_equal(fires(t, "{\"amount\":10000.5}", "ann", "s"), "big");
	assert_string_equal(fires(t, "{\"region\":\"eu\"}", "bot-17", "s"), "bot");
	assert_string_equal(fires(t, "{\"region\":\"ap\"}", "bot-17", "s"), "-");
	assert_string_equal(fires(t, "{\"region\":\"us\"}", "bot-17x", "s"), "-");
	assert_string_equal(fires(t, "{\"region\":\"us\"}", NULL, "s"), "-");
	/* all four conditions, or nothing: a pointer naming nothing fails */
	assert_string_equal(fires(t, "{\"tags\":[\"x\"],\"a/b\":1,\"n\":-1}", "ann", "s-2"),
	                    "staging");
	assert_string_equal(fires(t, "{\"tags\":[\"x\"],\"a/b\":1,\"n\":-1}", "ann", "s-1"), "-");
	assert_string_equal(fires(t, "{\"tags\":[\"x\"],\"a/b\":1}", "ann", "s-2"), "-");
	assert_string_equal(fires(t, "{\"tags\":[],\"a/b\":1,\"n\":-1}", "ann", "s-2"), "-");
	assert_string_equal(fires(t, "{\"tags\":[\"x\"],\"a/b\":1,\"n\":-1}", "ann", NULL), "-");
	p = &t->policies[1];
	assert_int_equal(p->effect, SL_EFFECT_REQUIRE);
	assert_int_equal(p->quorum, 2);
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(p->approvers, "groups"), 0)), "sre");
	assert_string_equal(t->policies[2].note, "over the limit");
	assert_string_equal(sl_effect_name(t->policies[2].effect), "reject");
	sl_agents_free(a);
}

static void json_pointers(void **state)
{
	json_t *doc = json_loads("{\"a\":{\"b\":[10,{\"c~d\":1,\"e/f\":2}]},\"\":3}", 0, NULL);

	(void)state;
	assert_ptr_equal(sl_json_pointer(doc, ""), doc);
	assert_int_equal(json_integer_value(sl_json_pointer(doc, "/a/b/0")), 10);
	assert_int_equal(json_integer_value(sl_json_pointer(doc, "/a/b/1/c~0d")), 1);
	assert_int_equal(json_integer_value(sl_json_pointer(doc, "/a/b/1/e~1f")), 2);
	assert_int_equal(json_integer_value(sl_json_pointer(doc, "/")), 3);
	assert_null(sl_json_pointer(doc, "/a/b/01"));
	assert_null(sl_json_pointer(doc, "/a/b/-"));
	assert_null(sl_json_pointer(doc, "/a/b/2"));
	assert_null(sl_json_pointer(doc, "/a/b/+1"));
	assert_null(sl_json_pointer(doc, "/a/b/1/c~2d"));
	assert_null(sl_json_pointer(doc, "/a/b/0/x"));
	assert_null(sl_json_pointer(doc, "a"));
	assert_null(sl_json_pointer(doc, "/a/b/ 1"));
	{
		json_t *want = json_loads("{\"/a/b/0\": 10.0, \"/a/b/1/e~1f\": 2}", 0, NULL);
		json_t *other = json_loads("{\"/a/b/0\": 11}", 0, NULL);
		json_t *missing = json_loads("{\"/a/c\": null}", 0, NULL);
		json_t *none = json_object();

		assert_true(sl_json_matches(doc, want));
		assert_false(sl_json_matches(doc, other));
		assert_false(sl_json_matches(doc, missing));
		assert_true(sl_json_matches(doc, none));
		json_decref(want);
		json_decref(other);
		json_decref(missing);
		json_decref(none);
	}
	{
		json_t *path = sl_json_pointer_path("/a~1b/~0c//0");
		char *text = json_dumps(path, JSON_COMPACT);

		assert_string_equal(text, "[\"a/b\",\"~c\",\"\",\"0\"]");
		free(text);
		json_decref(path);
		assert_null(sl_json_pointer_path("a/b"));
		assert_null(sl_json_pointer_path("/a~"));
		path = sl_json_pointer_path("");
		assert_int_equal(json_array_size(path), 0);
		json_decref(path);
	}
	json_decref(doc);
}

/* Expects text refused with a message holding why. */
static void refused(const char *text, const char *why)
{
	sl_agents *a = NULL;
	char err[512];

	assert_int_equal(sl_agents_parse(text, strlen(text), &a, err, sizeof(err)), SL_INVALID);
	assert_null(a);
	if (!strstr(err, why))
		fail_msg("refused for \"%s\", not \"%s\"", err, why);
}

static void bad_rules_are_named(void **state)
{
	(void)state;
	refused(AGENT("", "{}"), "agent ops: tool scale: field policies must be a list");
	refused(AGENT("", "[{\"effect\":\"approve\"}]"), "policies[0]: field name");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"allow\"}]"),
	        "tool scale: policy a: field effect must be");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"approve\",\"qourum\":2}]"),
	        "policy a: unknown field qourum");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"approve\"},{\"name\":\"a\","
	                  "\"effect\":\"reject\"}]"),
	        "policy a: field name is used twice");
	refused(AGENT("", "[{\"name\":\"a\",\"when\":{\"replicas\":{\"le\":3}},\"effect\":"
	                  "\"approve\"}]"),
	        "policy a: when: \"replicas\" must be a JSON pointer");
	refused(AGENT("", "[{\"name\":\"a\",\"when\":{\"$tenant\":{\"eq\":1}},\"effect\":"
	                  "\"approve\"}]"),
	        "must be a JSON pointer");
	refused(AGENT("", "[{\"name\":\"a\",\"when\":{\"/x~2\":{\"eq\":1}},\"effect\":"
	                  "\"approve\"}]"),
	        "must be a JSON pointer");
	refused(AGENT("", "[{\"name\":\"a\",\"when\":{\"/x\":{\"le\":3,\"ge\":1}},\"effect\":"
	                  "\"approve\"}]"),
	        "when: /x must be one comparison");
	refused(AGENT("", "[{\"name\":\"a\",\"when\":{\"/x\":{\"like\":3}},\"effect\":"
	                  "\"approve\"}]"),
	        "when: /x must be one comparison");
	refused(AGENT("", "[{\"name\":\"a\",\"when\":{\"/x\":{\"le\":\"3\"}},\"effect\":"
	                  "\"approve\"}]"),
	        "when: /x: le takes a number");
	refused(AGENT("", "[{\"name\":\"a\",\"when\":{\"/x\":{\"in\":\"ab\"}},\"effect\":"
	                  "\"approve\"}]"),
	        "when: /x: in takes a list");
	refused(AGENT("", "[{\"name\":\"a\",\"when\":{\"/x\":{\"matches\":\"(\"}},\"effect\":"
	                  "\"approve\"}]"),
	        "when: /x: matches: not a POSIX extended regular expression");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"require\"}]"),
	        "effect require needs a quorum, users, groups or on_timeout");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"approve\",\"on_timeout\":\"approve\"}]"),
	        "policy a: field on_timeout must be");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"require\",\"on_timeout\":\"later\"}]"),
	        "policy a: field on_timeout must be");
	/* a tool's own on_timeout never approves; timers need each other */
	refused(AGENT("\"on_timeout\":\"approve\",", "[]"),
	        "tool scale: field on_timeout must be \"reject\" or \"cancel_run\"");
	refused(AGENT("\"escalate_after\":5,", "[]"), "escalate_after and escalate_to");
	refused(AGENT("\"escalate_after\":5,\"escalate_to\":{\"groups\":[\"sre\"]},", "[]"),
	        "escalate_to adds to the tool's approvers, and it names none");
	refused(AGENT("\"remind_after\":0,", "[]"), "fields remind_after and escalate_after");
	refused("{\"max_pending_approvals\":0,\"agents\":[{\"id\":\"ops\",\"model\":{\"provider\":"
	        "\"openai-responses\",\"id\":\"m\"}}]}",
	        "agents file: field max_pending_approvals must be a number from 1");
	refused("{\"agents\":[{\"id\":\"ops\",\"max_pending_approvals\":\"50\",\"model\":{"
	        "\"provider\":\"openai-responses\",\"id\":\"m\"}}]}",
	        "agent ops: field max_pending_approvals must be a number from 1");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"approve\",\"quorum\":2}]"),
	        "field quorum must be a number of approvers from 1 to 10, with effect require");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"require\",\"quorum\":2}]"),
	        "quorum above 1 needs the tool's approval \"required\"");
	refused(AGENT("\"approval\":\"required\",",
	              "[{\"name\":\"a\",\"effect\":\"require\",\"quorum\":11}]"),
	        "from 1 to 10");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"require\",\"groups\":[]}]"),
	        "fields users and groups must be lists of names");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"reject\",\"users\":[\"ann\"]}]"),
	        "with effect require");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"reject\",\"note\":7}]"),
	        "field note must be text");
	refused(AGENT("", "[{\"name\":\"a\",\"effect\":\"approve\",\"when\":[]}]"),
	        "field when must map keys to comparisons");
	/* approve and reject decide confirmations only */
	refused("{\"agents\":[{\"id\":\"ops\",\"model\":{\"provider\":\"openai-responses\",\"id\":"
	        "\"m\"},\"tools\":[{\"name\":\"ext\",\"external_execution\":true,\"policies\":"
	        "[{\"name\":\"a\",\"effect\":\"approve\"}]}]}]}",
	        "effect approve decides a confirmation");
	refused("{\"agents\":[{\"id\":\"ops\",\"model\":{\"provider\":\"openai-responses\",\"id\":"
	        "\"m\"},\"tools\":[{\"name\":\"t\",\"executor\":{\"kind\":\"command\",\"argv\":"
	        "[\"/bin/echo\"]},\"policies\":[{\"name\":\"a\",\"effect\":\"require\","
	        "\"users\":[\"ann\"]}]}]}]}",
	        "field policies needs a tool that pauses");
}

static void timeouts_and_timers(void **state)
{
	sl_agents *a = load(AGENT(
	    "\"approval\":\"required\",\"on_timeout\":\"cancel_run\",\"remind_after\":60,"
	    "\"approvers\":{\"users\":[\"ann\"]},\"escalate_after\":120,\"escalate_to\":{"
	    "\"groups\":[\"sre\"]},",
	    "[{\"name\":\"low\",\"when\":{\"/level\":{\"eq\":\"low\"}},\"effect\":\"require\","
	    "\"on_timeout\":\"approve\"}]"));
	const sl_tool *t = &a->agents[0].tools[0];
	sl_agents *plain = load(AGENT("", "[]"));

	(void)state;
	assert_int_equal(t->on_timeout, SL_TIMEOUT_CANCEL_RUN);
	assert_int_equal(t->remind_after_s, 60);
	assert_int_equal(t->escalate_after_s, 120);
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(t->escalate_to, "groups"), 0)), "sre");
	assert_int_equal(t->policies[0].on_timeout, SL_TIMEOUT_APPROVE);
	assert_int_equal(plain->agents[0].tools[0].on_timeout, SL_TIMEOUT_REJECT);
	sl_agents_free(plain);
	sl_agents_free(a);
}

/* Writes text to dir/name. */
static void put(const char *dir, const char *name, const char *text)
{
	char *path = sl_asprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(path);
}

#define FILE_AGENT(policies_file, inline_rules)                                               \
	"{\"policies_file\":\"" policies_file "\",\"agents\":[{\"id\":\"ops\",\"model\":{"    \
	"\"provider\":\"openai-responses\",\"id\":\"m\"},\"tools\":[{\"name\":\"scale\","     \
	"\"requires_confirmation\":true,\"executor\":{\"kind\":\"command\",\"argv\":[\"/bin/" \
	"echo\"]}" inline_rules "}]}]}"

static void rules_from_a_policies_file(void **state)
{
	char dir[] = "/tmp/test_policy_XXXXXX", err[512], *path;
	sl_agents *a = NULL;

	(void)state;
	assert_non_null(mkdtemp(dir));
	path = sl_asprintf("%s/agents.json", dir);
	put(dir, "rules.json",
	    "{\"ops\":{\"scale\":[{\"name\":\"small\",\"when\":{\"/replicas\":{\"le\":3}},"
	    "\"effect\":\"approve\"}]}}");
	put(dir, "agents.json", FILE_AGENT("rules.json", ""));
	assert_int_equal(sl_agents_load(path, &a, err, sizeof(err)), SL_OK);
	assert_int_equal(a->agents[0].tools[0].npolicies, 1);
	assert_string_equal(a->agents[0].tools[0].policies[0].name, "small");
	assert_string_not_equal(a->policies_sha256, a->sha256);
	assert_int_equal(strlen(a->policies_sha256), 64);
	sl_agents_free(a);
	/* rules in both places, an unknown agent or tool, a bad rule, no file */
	put(dir, "agents.json",
	    FILE_AGENT("rules.json", ",\"policies\":[{\"name\":\"x\",\"effect\":\"reject\"}]"));
	assert_int_equal(sl_agents_load(path, &a, err, sizeof(err)), SL_INVALID);
	assert_non_null(strstr(err, "has policies in the agents file too"));
	put(dir, "agents.json", FILE_AGENT("rules.json", ""));
	put(dir, "rules.json", "{\"nobody\":{}}");
	assert_int_equal(sl_agents_load(path, &a, err, sizeof(err)), SL_INVALID);
	assert_non_null(strstr(err, "nobody: no such agent"));
	put(dir, "rules.json", "{\"ops\":{\"grow\":[]}}");
	assert_int_equal(sl_agents_load(path, &a, err, sizeof(err)), SL_INVALID);
	assert_non_null(strstr(err, "tool grow: no such tool"));
	put(dir, "rules.json", "{\"ops\":{\"scale\":[{\"name\":\"x\",\"effect\":\"allow\"}]}}");
	assert_int_equal(sl_agents_load(path, &a, err, sizeof(err)), SL_INVALID);
	assert_non_null(
	    strstr(err, "policies file: agent ops: tool scale: policy x: field effect"));
	put(dir, "agents.json", FILE_AGENT("missing.json", ""));
	assert_int_equal(sl_agents_load(path, &a, err, sizeof(err)), SL_INVALID);
	assert_non_null(strstr(err, "cannot open policies file"));
	assert_null(a);
	unlink(path);
	free(path);
	path = sl_asprintf("%s/rules.json", dir);
	unlink(path);
	free(path);
	rmdir(dir);
}

static void empty_when_always_holds(void **state)
{
	sl_agents *a =
	    load(AGENT("", "[{\"name\":\"all\",\"effect\":\"require\",\"users\":[\"ann\"]}]"));
	const sl_tool *t = &a->agents[0].tools[0];

	(void)state;
	assert_string_equal(fires(t, "{}", NULL, NULL), "all");
	assert_string_equal(fires(t, "[1]", "u", "s"), "all");
	sl_agents_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(the_first_rule_that_holds),
	    cmocka_unit_test(json_pointers),
	    cmocka_unit_test(bad_rules_are_named),
	    cmocka_unit_test(empty_when_always_holds),
	    cmocka_unit_test(timeouts_and_timers),
	    cmocka_unit_test(rules_from_a_policies_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
