/*
 * sl_event.h - the CloudEvents 1.0 envelopes of DESIGN.md ("Kafka topics and
 * events"): building them, and decoding + validating untrusted ones.
 */
#ifndef SL_EVENT_H
#define SL_EVENT_H

#include "sl_common.h"

#include <jansson.h>

#define SL_EVENT_RUN_REQUESTED "sluice.run.requested"
#define SL_EVENT_RUN_PAUSED "sluice.run.paused"
#define SL_EVENT_RUN_CONTINUE "sluice.run.continue"
#define SL_EVENT_RUN_COMPLETED "sluice.run.completed"
#define SL_EVENT_RUN_FAILED "sluice.run.failed"

/* Largest message any consumer accepts. */
#define SL_EVENT_MAX_BYTES (1024 * 1024)
/* Largest run input text. */
#define SL_EVENT_MAX_INPUT (256 * 1024)
/* Longest id (run, session, agent, user, requirement) accepted. */
#define SL_EVENT_MAX_ID 128

/*
 * Builds an event of the given type. data is stolen (the event owns it).
 * source is "sluice/ROLE/HOST"; subject is the run id.
 * Returns a new reference.
 */
json_t *sl_event_new(const char *type, const char *source, const char *subject, json_t *data);

/* Returns "sluice/ROLE/HOSTNAME" (free() it). */
char *sl_event_source(const char *role);

/* A decoded, validated event; the pointers point into root. */
typedef struct sl_event {
	json_t *root;
	const char *id;
	const char *type;
	const char *subject;
	json_t *data;
} sl_event;

/*
 * Decodes buf as a CloudEvents envelope, checks the envelope, that its type
 * is one of types (a NULL-terminated list) and that its data has the fields
 * that type requires. On success ev holds the event (release it with
 * sl_event_clear). Returns SL_INVALID or SL_TOO_BIG with a reason in errbuf
 * otherwise, and ev is empty.
 */
sl_status sl_event_parse(const char *buf, size_t len, const char *const *types, sl_event *ev,
                         char *errbuf, size_t errsize);

void sl_event_clear(sl_event *ev);

/*
 * Checks an id-like string: 1..SL_EVENT_MAX_ID characters of [A-Za-z0-9._:-].
 * Returns true when valid.
 */
bool sl_event_id_valid(const char *s);

/* SQL: the decisions on the requirements of run (an SQL expression), in
 * order, as a jsonb list of {requirement_id, tool_call_id, tool_name,
 * decision ("approved", "rejected", "expired", "cancelled", "pending"),
 * resolved_by (a person, policy:NAME), resolved_at, note}: the "decisions"
 * of a finished run's event and of GET /v1/runs/{id}. */
#define SL_DECISIONS_JSON(run)                                                            \
	"(SELECT coalesce(jsonb_agg(jsonb_build_object('requirement_id', q.id, "          \
	"'tool_call_id', q.tool_call_id, 'tool_name', q.tool_name, 'decision', "          \
	"CASE q.status WHEN 'resolved' THEN CASE WHEN q.confirmed THEN 'approved' ELSE "  \
	"'rejected' END ELSE q.status END, 'resolved_by', q.resolved_by, 'resolved_at', " \
	"q.resolved_at, 'note', q.note) ORDER BY q.pause_seq, q.position), '[]') FROM "   \
	"requirements q WHERE q.run_id = " run ")"

#endif
