/*
 * wk_health.h - the worker's probes for an orchestrator, on HTTP when
 * SLUICE_WORKER_LISTEN is set: GET /healthz (the process answers: 200)
 * and GET /readyz (PostgreSQL and a Kafka broker answer now: 200, else
 * 503 with the reasons; sl_ready.h). No token: they tell only whether,
 * and why not.
 */
#ifndef WK_HEALTH_H
#define WK_HEALTH_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

typedef struct wk_health wk_health;

/* Serves the probes on listen ("HOST:PORT") on a thread of their own, with
 * a PostgreSQL connection of their own to database_url and kafka's brokers.
 * Returns NULL with the reason in errbuf. */
wk_health *wk_health_start(const char *listen, const char *database_url, rd_kafka_t *kafka,
                           char *errbuf, size_t errsize);

/* The port actually bound. */
unsigned wk_health_port(const wk_health *h);

/* Stops serving and frees h; NULL is fine. */
void wk_health_stop(wk_health *h);

#endif
