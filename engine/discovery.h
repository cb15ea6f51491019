/* discovery — what a caller's agent can use now and what it could connect:
 * the caller's usable connections per integration, the integrations worth
 * suggesting (ranked by the brief's customer demand, then popularity, minus
 * the ones the user dismissed), and the registry entry of each integration. */
#ifndef FERRY_DISCOVERY_H
#define FERRY_DISCOVERY_H

#include <jansson.h>

#include "providers.h"
#include "store.h"

/* {integration: [connection JSON, ...]} of connections `who` sees. */
json_t *discovery_connections(store *db, providers *ps, const principal *who, ferr *err);

/* Whether `who` can call the tools of `p`: it needs no credential, or an
 * active connection is visible to them (from discovery_connections). */
int discovery_usable(const provider *p, json_t *connections);

/* Of `who`'s visible connections to one integration (a JSON array), the one
 * a call would use: their own, else the team's newest active one. */
json_t *discovery_pick(json_t *conns, const principal *who);

/* The registry entry of an integration (API.md's fields plus how to connect). */
json_t *discovery_integration(const provider *p, json_t *connections, int64_t popularity);

/* {integration: calls} over every team. */
json_t *discovery_popularity(store *db);

/* Integrations `who` has not connected and not dismissed, best first. */
json_t *discovery_suggestions(store *db, providers *ps, const principal *who, json_t *connections,
                              json_t *popularity, size_t limit);

/* The brief's demand ranking for an integration (higher first). */
int discovery_priority(const provider *p);

#endif
