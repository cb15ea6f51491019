/* policy — who may use what, and how fast.
 *
 * Permissions: each provider (or tool, with `data_category`) touches data
 * categories; a caller may use a tool only if every category it touches is
 * allowed to them. Defaults: admins everything; members everything but
 * `financial` (the brief's view_financial). A team admin overrides per role
 * or per user; a user's own setting wins over their role's.
 *
 * Rate limits: token buckets per user and per team, per integration
 * (defaults from the config, overridden per team and integration). Bucket
 * levels are saved to the store every second and loaded at start, so a
 * restart does not hand out a fresh burst. */
#ifndef FERRY_POLICY_H
#define FERRY_POLICY_H

#include <event2/event.h>
#include <jansson.h>

#include "provider.h"
#include "store.h"

typedef struct policy policy;

typedef struct policy_config {
    rate_policy defaults;   /* calls per second and bursts; a rate of 0 means no limit */
} policy_config;

policy *policy_new(store *db, struct event_base *base, const policy_config *cfg);
/* Saves the buckets and frees. */
void policy_free(policy *p);

/* Whether `who` may use the categories of a tool (t may be NULL: then the
 * provider's). forbidden, naming the category, when not. */
int policy_may_use(policy *p, const principal *who, const provider *pv, const provider_tool *t, ferr *err);
/* Whether `who` may see data of `category`. */
int policy_allowed(policy *p, const principal *who, const char *category);

/* Takes one call from the caller's and the team's buckets for an
 * integration: 0, or -1 with rate_limited and details.retry_after. */
int policy_take(policy *p, const principal *who, const char *integration, ferr *err);

/* The limits that apply to a team and integration. */
rate_policy policy_rates(policy *p, int64_t team_id, const char *integration);

/* {category: allowed} as `who` has them, for the categories of every
 * loaded provider plus `financial`. */
json_t *policy_permissions_of(policy *p, const principal *who, const char *const *categories, size_t n);

/* Saves bucket levels now. */
void policy_save(policy *p);

#endif
