/*
 * sl_consume.h - one consumed Kafka message, start to end: decode and
 * validate it, hand it to the consumer's handler until it stops failing
 * transiently, dead-letter what cannot be processed, and store the offset
 * once the message is done with.
 */
#ifndef SL_CONSUME_H
#define SL_CONSUME_H

#include "sl_config.h"
#include "sl_event.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>

/*
 * Applies a validated event. Returns SL_OK once its effect is durable,
 * SL_RETRY for a transient failure (called again after a back-off),
 * SL_FATAL to stop the process, anything else to dead-letter the message
 * with errbuf as the reason.
 */
typedef sl_status (*sl_consume_fn)(void *ud, const sl_event *ev, char *errbuf, size_t errsize);

/*
 * Processes m: parses it as one of types (NULL-terminated), calls fn, backs
 * off and retries on SL_RETRY while *stopping is 0, dead-letters it on bad
 * input, then stores its offset. Returns SL_OK (applied), SL_INVALID
 * (dead-lettered), SL_FATAL (fn asked to stop; *stopping is set), or
 * SL_RETRY (the process is stopping and the message is not done: its offset
 * is not stored, so it is delivered again).
 */
sl_status sl_consume(rd_kafka_t *consumer, rd_kafka_t *producer, const sl_config *cfg,
                     const rd_kafka_message_t *m, const char *const *types, sl_consume_fn fn,
                     void *ud, volatile sig_atomic_t *stopping);

#endif
