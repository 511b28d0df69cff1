/* libFuzzer target: sl_event_parse on arbitrary Kafka message payloads. */
#include "sl_event.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *types[] = {SL_EVENT_RUN_REQUESTED, SL_EVENT_RUN_PAUSED,
	                              SL_EVENT_RUN_CONTINUE, SL_EVENT_RUN_COMPLETED, NULL};
	char errbuf[256];
	sl_event ev;

	if (sl_event_parse((const char *)data, size, types, &ev, errbuf, sizeof(errbuf)) == SL_OK)
		sl_event_clear(&ev);
	return 0;
}
