/*
 * ap_hooks.h - notifications (DESIGN.md, "Batches"): webhooks declared in
 * SLUICE_WEBHOOKS for requirement.pending, requirement.decided,
 * requirement.expired, run.completed and run.failed. Each notification is
 * written to webhook_deliveries in the transaction of what it tells (or,
 * for a run's end, when the approver consumes its event), and a delivery
 * thread POSTs it until the receiver answers 2xx, with back-off, signed as
 * the Standard Webhooks specification says (webhook-id, webhook-timestamp,
 * webhook-signature "v1,BASE64(HMAC-SHA256(secret, id.timestamp.body))").
 */
#ifndef AP_HOOKS_H
#define AP_HOOKS_H

#include "sl_common.h"

#include <jansson.h>

typedef enum ap_hook_event {
	AP_HOOK_PENDING,
	AP_HOOK_DECIDED,
	AP_HOOK_EXPIRED,
	AP_HOOK_COMPLETED,
	AP_HOOK_FAILED,
	AP_HOOK_NEVENTS
} ap_hook_event;

/* The webhooks of a SLUICE_WEBHOOKS file. */
typedef struct ap_hooks ap_hooks;

/* Reads path: a JSON list of {"url", "events", "secret_env"}, the secret
 * in that environment variable as "whsec_BASE64" (at least 16 bytes).
 * SL_INVALID naming the entry and the field on anything else. */
sl_status ap_hooks_load(const char *path, ap_hooks **out, char *errbuf, size_t errsize);

void ap_hooks_free(ap_hooks *h);

/* The URLs of the webhooks that want event, as JSON text (made once, at
 * load), or NULL when none does (or h is NULL). */
const char *ap_hooks_urls(const ap_hooks *h, ap_hook_event e);

/* The event's name as the payload's "type" says it. */
const char *ap_hook_event_name(ap_hook_event e);

/* The Standard Webhooks signature of body with id and timestamp under the
 * webhook of url's secret: "v1,BASE64" (free() it); NULL for an unknown
 * url. */
char *ap_hooks_sign(const ap_hooks *h, const char *url, const char *id, long long timestamp,
                    const char *body);

/* The delivery thread: POSTs the due rows of webhook_deliveries; NULL with
 * the reason when it cannot start. */
typedef struct ap_hooks_sender ap_hooks_sender;
ap_hooks_sender *ap_hooks_start(const ap_hooks *h, const char *database_url, char *errbuf,
                                size_t errsize);

/* Stops it (NULL is fine); what is undelivered stays in the table. */
void ap_hooks_stop(ap_hooks_sender *s);

/* Deliveries made, retried and given up so far (for GET /metrics). */
void ap_hooks_counts(long *delivered, long *retried, long *failed);

#endif
