/*
 * sl_consume.h - one consumed Kafka message, start to end: decode and
 * validate it, hand it to the consumer's handler until it stops failing
 * transiently, dead-letter what cannot be processed, and store the offset
 * once the message is done with. The failure policy here is the one of
 * every Sluice consumer (the approver's through sl_consume, the worker's
 * tasks through sl_consume_failed).
 */
#ifndef SL_CONSUME_H
#define SL_CONSUME_H

#include "sl_config.h"
#include "sl_event.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>

/* Attempts at one message before its consumer gives up and stops: about
 * ten minutes of back-off (100 ms doubling to 10 s). */
#define SL_CONSUME_MAX_ATTEMPTS 64

/* The payload bytes a dead-lettered message keeps when the whole message
 * cannot be dead-lettered (too big for the producer or the broker). */
#define SL_CONSUME_DLQ_COPY_BYTES (64 * 1024)

/*
 * Applies a validated event. Returns SL_OK once its effect is durable,
 * SL_RETRY for a transient failure (called again after a back-off),
 * SL_FATAL to stop the process, anything else to dead-letter the message
 * with errbuf as the reason.
 */
typedef sl_status (*sl_consume_fn)(void *ud, const sl_event *ev, char *errbuf, size_t errsize);

/* What a consumer does next with a message whose handling failed. */
typedef enum sl_consume_next {
	SL_CONSUME_DONE,  /* dead-lettered: store its offset and go on */
	SL_CONSUME_RETRY, /* call again (handler or dead-letter) after the delay */
	SL_CONSUME_STOP   /* stop the process; the message is delivered again */
} sl_consume_next;

/*
 * The failure policy, for message m whose handling ended with st (not
 * SL_OK) for reason, on its attempt-th failure (counted from 1):
 * - SL_RETRY: retry after *delay_ms, until SL_CONSUME_MAX_ATTEMPTS;
 * - SL_FATAL: stop;
 * - anything else: dead-letter m (unchanged, or else as a bounded copy) and
 *   DONE; when Kafka takes neither, retry the dead-letter after *delay_ms;
 * - past SL_CONSUME_MAX_ATTEMPTS: stop, so that the process is restarted
 *   and the message delivered again rather than lost or held for ever.
 * Logs what it decides. Blocks while a dead-letter is produced (up to 20 s).
 */
sl_consume_next sl_consume_failed(rd_kafka_t *producer, const sl_config *cfg,
                                  const rd_kafka_message_t *m, sl_status st, const char *reason,
                                  int attempt, long *delay_ms);

/*
 * Processes m: parses it as one of types (NULL-terminated), calls fn, and
 * follows sl_consume_failed() when it fails, waiting out back-offs while
 * *stopping is 0, then stores its offset. Returns SL_OK (applied),
 * SL_INVALID (dead-lettered), SL_FATAL (stop: *stopping is set), or SL_RETRY
 * (the process is stopping and the message is not done: its offset is not
 * stored, so it is delivered again).
 */
sl_status sl_consume(rd_kafka_t *consumer, rd_kafka_t *producer, const sl_config *cfg,
                     const rd_kafka_message_t *m, const char *const *types, sl_consume_fn fn,
                     void *ud, sl_stop_flag *stopping);

#endif
