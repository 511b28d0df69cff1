/*
 * sl_ready.h - a service's readiness (GET /readyz): whether PostgreSQL and
 * a Kafka broker answer now. A probe costs a statement and a Kafka request
 * and anyone may ask, so an answer is kept for a second; each change of
 * state is logged once.
 */
#ifndef SL_READY_H
#define SL_READY_H

#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <pthread.h>

#define SL_READY_REASON 256

typedef struct sl_ready {
	pthread_mutex_t lock;
	long long at; /* sl_mono_ms() of the last check; 0: none yet */
	char db[SL_READY_REASON], kafka[SL_READY_REASON]; /* why not ("" when fine) */
} sl_ready;

#define SL_READY_INIT                                \
	{                                            \
		PTHREAD_MUTEX_INITIALIZER, 0, "", "" \
	}

/* Leaves in db why PostgreSQL does not answer now ("" when it does). */
typedef void (*sl_ready_db_probe)(void *ud, char db[SL_READY_REASON]);

/*
 * Answers GET /readyz on conn: 200 {"status":"ready"}, or 503 {"status":
 * "not ready","database"?,"kafka"?} with the reasons. Checks (at most once
 * a second) PostgreSQL with probe(ud) and Kafka with kafka's brokers (2 s
 * at most; NULL: no client yet).
 */
enum MHD_Result sl_ready_answer(sl_ready *r, struct MHD_Connection *conn, sl_ready_db_probe probe,
                                void *ud, rd_kafka_t *kafka);

#endif
