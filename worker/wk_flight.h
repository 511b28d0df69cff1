/*
 * wk_flight.h - the messages a worker has in flight: what may start, and
 * which offsets may be stored.
 *
 * Messages of one partition are worked on concurrently; two messages with
 * the same key (a run's id: every Sluice event is keyed by its run) are
 * not: the later one waits until the earlier one is done. Per partition the
 * offset stored is the one after the longest run of done messages from the
 * lowest in flight, so a crash redelivers exactly the unfinished ones (and
 * some finished ones after them, which the database recognises).
 *
 * All functions are thread-safe.
 */
#ifndef WK_FLIGHT_H
#define WK_FLIGHT_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct wk_flight wk_flight;

/* Tracks messages of consumer, which stores their offsets. */
wk_flight *wk_flight_new(rd_kafka_t *consumer);

/*
 * Takes m into the flight. Returns m when it may start now, or NULL when an
 * earlier message with the same key is still in flight: m is then returned
 * by wk_flight_done() of the last such message.
 */
rd_kafka_message_t *wk_flight_add(wk_flight *f, rd_kafka_message_t *m);

/*
 * m is finished (applied or dead-lettered): its offset counts as done and
 * the offsets that are now contiguous are stored. Destroys m. Returns the
 * next message with the same key that was waiting for m, or NULL.
 */
rd_kafka_message_t *wk_flight_done(wk_flight *f, rd_kafka_message_t *m);

/* Messages in flight, the waiting ones included. */
size_t wk_flight_count(wk_flight *f);

/* Whether m's partition is still this consumer's (after a rebalance
 * another member delivers it again). */
bool wk_flight_owns(wk_flight *f, const rd_kafka_message_t *m);

/* Frees f and the messages still waiting; NULL is fine. Offsets of
 * messages not done are not stored: Kafka delivers them again. */
void wk_flight_free(wk_flight *f);

#endif
