/* libFuzzer target: decoding model answers of both APIs, and the scripted
 * model's handling of arbitrary requests. */
#include "../../dev/scripted.h"
#include "../../worker/wk_model.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = json_loadb((const char *)data, size, 0, NULL);
	wk_model_reply r;
	char errbuf[256];

	if (!body)
		return 0;
	if (wk_model_responses_decode(body, &r, errbuf, sizeof(errbuf)) == SL_OK)
		wk_model_reply_free(&r);
	if (wk_model_chat_decode(body, &r, errbuf, sizeof(errbuf)) == SL_OK)
		wk_model_reply_free(&r);
	for (int chat = 0; chat < 2; chat++) {
		json_t *answer = dv_scripted_answer(chat, body, errbuf, sizeof(errbuf));
		json_decref(answer);
	}
	json_decref(body);
	return 0;
}
