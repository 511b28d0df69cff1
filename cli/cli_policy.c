/*
 * cli_policy.c - sluice policy test: which of a tool's policies would
 * decide a call with given arguments, without running anything.
 */
#include "cli.h"
#include "sl_agents.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The tool called name, of agent (NULL: of whichever agent has one, if only
 * one does); its agent in *out. NULL, said on stderr, otherwise. */
static const sl_tool *find_tool(const sl_agents *a, const char *agent, const char *name,
                                const sl_agent **out)
{
	const sl_tool *found = NULL;

	for (size_t i = 0; i < a->n; i++) {
		const sl_tool *t = sl_agent_tool(&a->agents[i], name);

		if (!t || (agent && strcmp(a->agents[i].id, agent)))
			continue;
		if (found) {
			fprintf(stderr,
			        "sluice policy test: agents %s and %s both have tool %s: name "
			        "one with --agent\n",
			        (*out)->id, a->agents[i].id, name);
			return NULL;
		}
		found = t;
		*out = &a->agents[i];
	}
	if (!found)
		fprintf(stderr, "sluice policy test: no tool %s%s%s in the agents file\n", name,
		        agent ? " of agent " : "", agent ? agent : "");
	return found;
}

int cli_policy(sl_config *cfg, int argc, char **argv)
{
	const char *tool = NULL, *args_text = NULL, *agent = NULL, *user = NULL, *session = NULL;
	const sl_agent *ag = NULL;
	const sl_tool *t;
	const sl_policy *p;
	sl_agents *agents = NULL;
	json_t *args = NULL, *out;
	json_error_t jerr;
	char errbuf[512], *text;
	int rc = 2;

	for (int i = 1; i < argc; i++) {
		const char **dst = !strcmp(argv[i], "--tool")         ? &tool
		                   : !strcmp(argv[i], "--args")       ? &args_text
		                   : !strcmp(argv[i], "--agent")      ? &agent
		                   : !strcmp(argv[i], "--user-id")    ? &user
		                   : !strcmp(argv[i], "--session-id") ? &session
		                                                      : NULL;
		if (!dst || i + 1 >= argc) {
			fprintf(stderr, "sluice policy test: %s %s\n", argv[i],
			        dst ? "needs a value" : "is not an option");
			return 2;
		}
		*dst = argv[++i];
	}
	if (argc < 1 || strcmp(argv[0], "test") || !tool || !args_text) {
		fprintf(stderr, "usage: sluice policy test --tool NAME --args JSON [--agent ID] "
		                "[--user-id ID] [--session-id ID]\n");
		return 2;
	}
	if (!cfg->agents || !*cfg->agents) {
		fprintf(stderr, "sluice policy test: SLUICE_AGENTS is not set (environment "
		                "variable or --agents flag)\n");
		return 2;
	}
	if (sl_agents_load(cfg->agents, &agents, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "sluice policy test: %s\n", errbuf);
		return 2;
	}
	if (!(args = json_loads(args_text, JSON_REJECT_DUPLICATES, &jerr)) ||
	    !json_is_object(args)) {
		fprintf(stderr, "sluice policy test: --args must be a JSON object\n");
		goto out;
	}
	if (!(t = find_tool(agents, agent, tool, &ag)))
		goto out;
	p = sl_policy_match(t->policies, t->npolicies,
	                    &(sl_policy_of){args, ag->id, user, session});
	out =
	    json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:O?, s:s}", "agent", ag->id, "tool", t->name,
	              "policy", p ? p->name : NULL, "effect", p ? sl_effect_name(p->effect) : NULL,
	              "note", p ? p->note : NULL, "approvers", p ? p->approvers : NULL,
	              "policies_sha256", agents->policies_sha256);
	if (p && p->quorum)
		json_object_set_new(out, "quorum", json_integer(p->quorum));
	text = json_dumps(out, JSON_COMPACT);
	printf("%s\n", text);
	free(text);
	json_decref(out);
	rc = 0;
out:
	json_decref(args);
	sl_agents_free(agents);
	return rc;
}
