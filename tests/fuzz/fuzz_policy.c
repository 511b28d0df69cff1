/* libFuzzer target: approval policies evaluated on arbitrary arguments (a
 * model's, hostile) and JSON pointers: the input's first line is a pointer
 * looked up in the rest, which is also the arguments every comparison of a
 * fixed rule set is evaluated on. */
#include "sl_agents.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char agents[] =
    "{\"agents\":[{\"id\":\"a\",\"model\":{\"provider\":\"openai-responses\",\"id\":\"m\"},"
    "\"tools\":[{\"name\":\"t\",\"requires_confirmation\":true,\"approval\":\"required\","
    "\"executor\":{\"kind\":\"command\",\"argv\":[\"/bin/true\"]},\"policies\":["
    "{\"name\":\"m\",\"when\":{\"/s\":{\"matches\":\"^(a|b)*c+[0-9]{2,5}$\"}},\"effect\":"
    "\"approve\"},"
    "{\"name\":\"n\",\"when\":{\"/a/0/~1x~0\":{\"in\":[1,\"x\",null,{\"k\":[]}]},\"/n\":{\"ge\":"
    "-1.5}},\"effect\":\"reject\"},"
    "{\"name\":\"o\",\"when\":{\"/n\":{\"lt\":1e300},\"/e\":{\"ne\":\"prod\"},\"$user_id\":{"
    "\"eq\":\"u\"}},\"effect\":\"require\",\"quorum\":2,\"groups\":[\"g\"]},"
    "{\"name\":\"p\",\"when\":{\"/\":{\"gt\":0},\"/e\":{\"le\":0}},\"effect\":\"approve\"}]}]}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sl_agents *a;
	char errbuf[512], *text = malloc(size + 1), *nl;
	json_t *args;

	if (!a && sl_agents_parse(agents, sizeof(agents) - 1, &a, errbuf, sizeof(errbuf)))
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	nl = strchr(text, '\n');
	if (nl)
		*nl = '\0';
	args = json_loads(nl ? nl + 1 : text, JSON_DECODE_ANY, NULL);
	if (args) {
		const sl_tool *t = &a->agents[0].tools[0];
		sl_policy_of of = {args, "a", "u", "s"};

		(void)sl_json_pointer(args, text);
		(void)sl_policy_match(t->policies, t->npolicies, &of);
		json_decref(args);
	}
	free(text);
	return 0;
}
