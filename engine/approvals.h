/* approvals — a write a tool would make waits for a person.
 *
 * An agent's call of a write tool becomes a pending approval: who asked,
 * the tool, its arguments (shown redacted), a human summary. The requester
 * or a team admin approves it, and the call runs exactly once (a
 * compare-and-set on the row's status: concurrent approvals race for it
 * and one wins), or rejects it with a reason. Approvals expire (24 h by
 * default). Decisions are audited. The real arguments wait sealed in the
 * vault under a data key of their own, destroyed once decided; what is
 * shown is the redacted form. */
#ifndef FERRY_APPROVALS_H
#define FERRY_APPROVALS_H

#include <event2/event.h>
#include <jansson.h>

#include "audit.h"
#include "calls.h"
#include "policy.h"
#include "providers.h"
#include "store.h"
#include "vault.h"

typedef struct approvals approvals;

approvals *approvals_new(store *db, vault *v, audit *au, calls *cs, providers *ps, policy *pol, struct event_base *base,
                         int ttl_seconds);
void approvals_free(approvals *ap);

/* A pending approval for calling write tool `t`; *out its JSON (new). */
int approvals_request(approvals *ap, const principal *who, const provider_tool *t, json_t *args,
                      const char *connection_id, const char *request_id, json_t **out, ferr *err);

/* The approval as JSON (new), once decided with its result or error. */
typedef void (*approval_done_fn)(void *arg, json_t *approval, const ferr *err);
/* Approve (runs the call, done when it ends) or reject (done at once).
 * Errors found before anything happens return -1 without calling done. */
int approvals_decide(approvals *ap, const principal *who, const char *id, int approve, const char *reason,
                     const char *request_id, approval_done_fn done, void *arg, ferr *err);

json_t *approvals_get(approvals *ap, const principal *who, const char *id, ferr *err);
json_t *approvals_list(approvals *ap, const principal *who, const char *status, ferr *err);

#endif
