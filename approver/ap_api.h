/*
 * ap_api.h - the approver's HTTP API (DESIGN.md, "Approver HTTP API"):
 * bearer-token identities and their roles (ap_access.h), routing, input
 * checks, JSON answers.
 */
#ifndef AP_API_H
#define AP_API_H

#include "ap_access.h"
#include "sl_keys.h"
#include "ap_decide.h"
#include "ap_store.h"
#include "sl_httpd.h"

#include <pthread.h>

/* Largest request body accepted (413 past it). */
#define AP_API_MAX_BODY (64 * 1024)
/* The JSON rows one list answer holds at most: a page past it is cut short,
 * with a link to the rest (meta.next). */
#define AP_API_MAX_ANSWER (4 * 1024 * 1024)

typedef struct ap_api {
	ap_store store; /* settings each HTTP thread's store copies (no connection) */
	const char *database_url;
	pthread_key_t thread_store; /* each HTTP thread's ap_store and connection */
	ap_access access;           /* who may call, and with which roles */
	ap_decider *decider; /* decisions on requirements, when set (else on the HTTP thread) */
	rd_kafka_t *kafka;   /* the producer, when set: GET /readyz asks it for the brokers */
	_Atomic(const sl_httpd *) httpd; /* the server, once started: its counters */
	sl_keyset keys;                  /* SLUICE_RECEIPT_KEYS: GET /v1/keys (none when unset) */
} ap_api;

/* Sets up the per-thread stores (made on a thread's first request, with a
 * connection of their own, freed when the thread ends); fini after the HTTP
 * threads have stopped. */
void ap_api_init(ap_api *api);
void ap_api_fini(ap_api *api);

/* The sl_httpd handler; ud is an ap_api. */
enum MHD_Result ap_api_handle(void *ud, const sl_httpd_request *req);

/* Counters shown by GET /metrics. */
void ap_api_count_event(bool dead_lettered);

#endif
