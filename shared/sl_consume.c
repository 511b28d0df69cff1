/*
 * sl_consume.c - the consume step shared by the worker and the approver.
 */
#include "sl_consume.h"
#include "sl_kafka.h"
#include "sl_log.h"

sl_status sl_consume(rd_kafka_t *consumer, rd_kafka_t *producer, const sl_config *cfg,
                     const rd_kafka_message_t *m, const char *const *types, sl_consume_fn fn,
                     void *ud, volatile sig_atomic_t *stopping)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	char errbuf[1024];
	long backoff = 100;
	sl_event ev;
	sl_status st;

	st = sl_event_parse(m->payload ? m->payload : "", m->len, types, &ev, errbuf,
	                    sizeof(errbuf));
	while (st == SL_OK) {
		if (*stopping) {
			st = SL_RETRY;
			break;
		}
		st = fn(ud, &ev, errbuf, sizeof(errbuf));
		if (st != SL_RETRY)
			break;
		sl_warn("%s[%d]@%lld: transient failure, retrying in %ld ms: %s", topic,
		        (int)m->partition, (long long)m->offset, backoff, errbuf);
		sl_sleep_ms(backoff);
		backoff = backoff < 5000 ? backoff * 2 : 10000;
		st = SL_OK;
	}
	sl_event_clear(&ev);
	if (st == SL_RETRY)
		return SL_RETRY;
	if (st == SL_FATAL) {
		sl_error("%s[%d]@%lld: %s; stopping", topic, (int)m->partition,
		         (long long)m->offset, errbuf);
		*stopping = 1;
		return SL_FATAL;
	}
	if (st != SL_OK) {
		while (sl_kafka_dead_letter(producer, cfg, m, errbuf) != SL_OK) {
			if (*stopping)
				return SL_RETRY;
			sl_sleep_ms(1000);
		}
		st = SL_INVALID;
	}
	sl_kafka_done(consumer, m);
	return st;
}
