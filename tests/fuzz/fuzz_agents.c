/* libFuzzer target: sl_agents_parse on arbitrary agents files. */
#include "sl_agents.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char errbuf[512];
	sl_agents *a;

	if (sl_agents_parse((const char *)data, size, &a, errbuf, sizeof(errbuf)) == SL_OK) {
		for (size_t i = 0; i < a->n; i++)
			for (size_t k = 0; k < a->agents[i].ntools; k++)
				(void)sl_tool_gated(&a->agents[i].tools[k]);
		sl_agents_free(a);
	}
	return 0;
}
