/*
 * sl_ready.c - a service's readiness (GET /readyz), cached and logged on
 * change.
 */
#include "sl_ready.h"

#include "sl_common.h"
#include "sl_httpd.h"
#include "sl_log.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define READY_FOR_MS 1000

static void check(sl_ready_db_probe probe, void *ud, rd_kafka_t *kafka, char db[SL_READY_REASON],
                  char kafka_why[SL_READY_REASON])
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;

	*db = *kafka_why = '\0';
	probe(ud, db);
	if (!kafka)
		snprintf(kafka_why, SL_READY_REASON, "no Kafka client yet");
	else if ((err = rd_kafka_metadata(kafka, 0, NULL, &md, 2000)))
		snprintf(kafka_why, SL_READY_REASON, "no broker answered: %s",
		         rd_kafka_err2str(err));
	if (md)
		rd_kafka_metadata_destroy(md);
}

enum MHD_Result sl_ready_answer(sl_ready *r, struct MHD_Connection *conn, sl_ready_db_probe probe,
                                void *ud, rd_kafka_t *kafka)
{
	char db[SL_READY_REASON], kafka_why[SL_READY_REASON];
	long long now = sl_mono_ms();
	bool fresh, was;

	pthread_mutex_lock(&r->lock);
	fresh = r->at && now - r->at < READY_FOR_MS;
	memcpy(db, r->db, sizeof(db));
	memcpy(kafka_why, r->kafka, sizeof(kafka_why));
	pthread_mutex_unlock(&r->lock);
	if (!fresh) {
		check(probe, ud, kafka, db, kafka_why);
		pthread_mutex_lock(&r->lock);
		/* (none yet counts as ready: the first check logs only a failure) */
		was = !r->at || (!*r->db && !*r->kafka);
		r->at = sl_mono_ms();
		memcpy(r->db, db, sizeof(db));
		memcpy(r->kafka, kafka_why, sizeof(kafka_why));
		pthread_mutex_unlock(&r->lock);
		if (was != (!*db && !*kafka_why)) {
			if (!was)
				sl_info("ready again: PostgreSQL and Kafka answer");
			else
				sl_warn("not ready:%s%s%s%s", *db ? " PostgreSQL: " : "", db,
				        *kafka_why ? " Kafka: " : "", kafka_why);
		}
	}
	if (!*db && !*kafka_why)
		return sl_httpd_send_json(conn, 200, json_pack("{s:s}", "status", "ready"));
	return sl_httpd_send_json(conn, 503,
	                          json_pack("{s:s, s:s?, s:s?}", "status", "not ready", "database",
	                                    *db ? db : NULL, "kafka",
	                                    *kafka_why ? kafka_why : NULL));
}
