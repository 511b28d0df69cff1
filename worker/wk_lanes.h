/*
 * wk_lanes.h - partition-affine lanes: the poll loop hands each consumed
 * message to the lane of its partition, so that one partition's messages are
 * processed in order (and their offsets stored in order) while lanes run in
 * parallel, each on its own thread with its own database connection.
 */
#ifndef WK_LANES_H
#define WK_LANES_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

typedef struct wk_lanes wk_lanes;

/* Processes m on lane number `lane`; m is destroyed by the caller after. */
typedef void (*wk_lane_fn)(void *ud, int lane, const rd_kafka_message_t *m);

/* Starts n lanes calling fn(ud, lane, m). Returns NULL when a thread cannot
 * be started. */
wk_lanes *wk_lanes_start(int n, wk_lane_fn fn, void *ud);

/* Queues m on the lane of its topic and partition; m belongs to the lanes. */
void wk_lanes_push(wk_lanes *l, rd_kafka_message_t *m);

/* Messages queued or in progress, over all lanes. */
size_t wk_lanes_backlog(wk_lanes *l);

/*
 * Stops the lanes: each finishes the message it is on; the queued ones are
 * dropped unprocessed (their offsets are not stored, so Kafka delivers them
 * again). Frees l; NULL is fine.
 */
void wk_lanes_stop(wk_lanes *l);

#endif
