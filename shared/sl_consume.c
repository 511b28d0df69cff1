/*
 * sl_consume.c - the consume step and the failure policy shared by the
 * worker and the approver.
 */
#include "sl_consume.h"
#include "sl_kafka.h"
#include "sl_log.h"

#include <stdint.h>

sl_consume_next sl_consume_failed(rd_kafka_t *producer, const sl_config *cfg,
                                  const rd_kafka_message_t *m, sl_status st, const char *reason,
                                  int attempt, long *delay_ms)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	int shift = attempt < 8 ? attempt - 1 : 7;

	*delay_ms = 100L << shift; /* 100 ms, doubling */
	if (*delay_ms > 10000)
		*delay_ms = 10000;
	if (st == SL_FATAL) {
		sl_error("%s[%d]@%lld: %s; stopping", topic, (int)m->partition,
		         (long long)m->offset, reason);
		return SL_CONSUME_STOP;
	}
	if (attempt > SL_CONSUME_MAX_ATTEMPTS) {
		sl_error("%s[%d]@%lld: still failing after %d attempts (%s); stopping, so that "
		         "it is delivered again after a restart",
		         topic, (int)m->partition, (long long)m->offset, SL_CONSUME_MAX_ATTEMPTS,
		         reason);
		return SL_CONSUME_STOP;
	}
	if (st == SL_RETRY) {
		sl_warn("%s[%d]@%lld: transient failure, retrying in %ld ms: %s", topic,
		        (int)m->partition, (long long)m->offset, *delay_ms, reason);
		return SL_CONSUME_RETRY;
	}
	/* A message too big for the producer or the broker still reaches the
	 * DLQ, as a copy cut to a size it takes. */
	if (sl_kafka_dead_letter(producer, cfg, m, reason, SIZE_MAX) == SL_OK ||
	    (m->len > SL_CONSUME_DLQ_COPY_BYTES &&
	     sl_kafka_dead_letter(producer, cfg, m, reason, SL_CONSUME_DLQ_COPY_BYTES) == SL_OK))
		return SL_CONSUME_DONE;
	return SL_CONSUME_RETRY;
}

/* Sleeps ms in short steps; false when *stopping is set meanwhile. */
static bool wait_unless_stopping(long ms, sl_stop_flag *stopping)
{
	for (; ms > 0 && !*stopping; ms -= 100)
		sl_sleep_ms(ms < 100 ? ms : 100);
	return !*stopping;
}

sl_status sl_consume(rd_kafka_t *consumer, rd_kafka_t *producer, const sl_config *cfg,
                     const rd_kafka_message_t *m, const char *const *types, sl_consume_fn fn,
                     void *ud, sl_stop_flag *stopping)
{
	char errbuf[1024];
	sl_event ev;
	sl_status st, why;
	sl_consume_next next;
	long delay;
	int attempt = 0;

	why = sl_event_parse(m->payload ? m->payload : "", m->len, types, &ev, errbuf,
	                     sizeof(errbuf));
	for (;;) {
		/* a valid event goes to the handler, again after a transient
		 * failure; anything else is dead-lettered, again if Kafka did
		 * not take it */
		if (why == SL_OK || why == SL_RETRY) {
			if (*stopping) {
				st = SL_RETRY;
				break;
			}
			why = fn(ud, &ev, errbuf, sizeof(errbuf));
			if (why == SL_OK) {
				sl_kafka_done(consumer, m);
				st = SL_OK;
				break;
			}
		}
		next = sl_consume_failed(producer, cfg, m, why, errbuf, ++attempt, &delay);
		if (next == SL_CONSUME_DONE) {
			sl_kafka_done(consumer, m);
			st = SL_INVALID;
			break;
		}
		if (next == SL_CONSUME_STOP) {
			*stopping = 1;
			st = SL_FATAL;
			break;
		}
		if (!wait_unless_stopping(delay, stopping)) {
			st = SL_RETRY;
			break;
		}
	}
	sl_event_clear(&ev);
	return st;
}
