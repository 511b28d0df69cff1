/*
 * sl_kafka.h - librdkafka clients configured the Sluice way: idempotent
 * producers, consumers that store offsets only for finished work, and the
 * dead-letter topic.
 */
#ifndef SL_KAFKA_H
#define SL_KAFKA_H

#include "sl_common.h"
#include "sl_config.h"

#include <librdkafka/rdkafka.h>

/*
 * Creates an idempotent producer for c->kafka_brokers. Delivery reports are
 * enabled and go to the sl_kafka_report of each message (rd_kafka_poll()
 * serves them). Returns NULL with the reason in errbuf.
 */
rd_kafka_t *sl_kafka_producer_new(const sl_config *c, char *errbuf, size_t errsize);

/*
 * Creates a consumer in group subscribed to topics (NULL-terminated), with
 * enable.auto.offset.store=false: the caller stores each offset with
 * rd_kafka_offsets_store() once its effect is durable; stored offsets are
 * committed in the background. Returns NULL with the reason in errbuf.
 */
rd_kafka_t *sl_kafka_consumer_new(const sl_config *c, const char *group, const char *const *topics,
                                  char *errbuf, size_t errsize);

/* One message to produce with sl_kafka_produce_batch(). */
typedef struct sl_kafka_out {
	const char *topic;
	const char *key;
	const char *payload;
	size_t len;
	/* optional headers: NULL-terminated name/value pairs */
	const char *const *headers;
	/* set by sl_kafka_produce_batch(): delivered or not */
	bool delivered;
} sl_kafka_out;

/*
 * What is told of one message's delivery: done is called once, with whether
 * the message was delivered, on the thread that serves the producer's
 * reports (rd_kafka_poll()). The caller owns it; it must live until then.
 */
typedef struct sl_kafka_report sl_kafka_report;
struct sl_kafka_report {
	void (*done)(sl_kafka_report *report, bool delivered);
};

/*
 * Produces msg (its bytes are copied) without waiting; report is told of
 * its delivery. Returns false when librdkafka refused the message at once
 * (logged): then report is not called.
 */
bool sl_kafka_produce(rd_kafka_t *producer, const sl_kafka_out *msg, sl_kafka_report *report);

/*
 * Produces n messages and waits up to timeout_ms for all their delivery
 * reports. Each message's delivered flag tells its fate. Returns SL_OK when
 * all were delivered, SL_RETRY otherwise.
 */
sl_status sl_kafka_produce_batch(rd_kafka_t *producer, sl_kafka_out *msgs, size_t n, int timeout_ms,
                                 char *errbuf, size_t errsize);

/*
 * Sends m to the dead-letter topic (prefix + "dlq") with the headers
 * sluice-error = reason and sluice-source-topic: unchanged when its payload
 * is at most max_payload bytes, else as a copy cut to max_payload with the
 * headers sluice-original-size and sluice-truncated. Returns SL_OK once
 * delivered, SL_RETRY when it was not (logged).
 */
sl_status sl_kafka_dead_letter(rd_kafka_t *producer, const sl_config *c,
                               const rd_kafka_message_t *m, const char *reason, size_t max_payload);

/* Stores offset (the next to consume) of topic/partition for the next
 * commit. Fails when the partition is not assigned (any more). */
rd_kafka_resp_err_t sl_kafka_store_offset(rd_kafka_t *consumer, const char *topic,
                                          int32_t partition, int64_t offset);

/*
 * Creates the deployment's five topics (runs, approvals, continues,
 * results, dlq, after SLUICE_TOPIC_PREFIX) through the admin API, the DLQ
 * keeping its messages 30 days; report() (when not NULL) says of each
 * whether it was "created" or "exists". Fails naming the first topic Kafka refused.
 */
sl_status sl_kafka_topics_create(const sl_config *c, int partitions, int replication,
                                 void (*report)(const char *topic, const char *outcome),
                                 char *errbuf, size_t errsize);

/* Whether a service may start: false, logged naming it, when Kafka lacks
 * one of the five topics (the services do not rely on topics being
 * created when first used), or when a broker refused the login (SASL or
 * TLS): no retry can mend wrong credentials. When Kafka does not answer
 * within 5 s nothing is known, and it says so and answers true: the
 * service starts anyway (its clients reconnect). */
bool sl_kafka_topics_ready(rd_kafka_t *rk, const sl_config *c);

/* Marks m as finished: its offset + 1 is stored for the next commit. */
void sl_kafka_done(rd_kafka_t *consumer, const rd_kafka_message_t *m);

/* A new KRaft cluster id (16 random bytes, base64url without padding, as
 * `kafka-storage random-uuid` prints) into out. Never one that starts with
 * "-": kafka-storage would read it as an option and refuse to format. */
void sl_kafka_cluster_id(char out[23]);

#endif
