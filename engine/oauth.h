/* oauth — OAuth 2 connections and a credential lifecycle that never fails
 * silently.
 *
 * - The authorization code flow with PKCE (S256) and a single-use state
 *   bound to the user who started it (10 minutes to finish), the token
 *   exchange, and the connection it creates (or reconnects).
 * - Client credentials for server-to-server providers.
 * - Refresh ahead of expiry (by a scheduler job and on demand), exactly once
 *   per connection however many calls wait for it (and, for the job, once
 *   across every ferry process on the database); a rotated refresh token is
 *   stored in the same transaction as its access token. Every attempt is
 *   written to token_refresh_logs. When a refresh fails for good
 *   (invalid_grant, no refresh token), the connection turns
 *   reconnect_required and says where to reconnect.
 * - Revocation at the provider when a connection is deleted.
 * Every request to a token endpoint is audited (fails closed). Client ids
 * and secrets live per integration (a team's own, or the operator's
 * default), the secret sealed in the vault. */
#ifndef FERRY_OAUTH_H
#define FERRY_OAUTH_H

#include <event2/event.h>

#include "audit.h"
#include "connections.h"
#include "hclient.h"
#include "providers.h"
#include "scheduler.h"
#include "vault.h"

typedef struct oauth oauth;
typedef struct oauth_waiter oauth_waiter;

typedef struct oauth_deps {
    struct event_base *base;
    store *db;
    vault *vault;
    providers *providers;
    hclient *http;
    audit *audit;                  /* may be NULL (then nothing is audited) */
    int refresh_margin_s;          /* refresh this long before expiry; 0 → 300 */
    int refresh_interval_s;        /* the refresh job's period; 0 → 60, negative: no job */
} oauth_deps;

oauth *oauth_new(const oauth_deps *d);
/* Ends what is in flight: refresh waiters get an error, exchanges answer. */
void oauth_free(oauth *o);

/* Where the provider sends the browser back: <public_url>/oauth/callback. */
void oauth_set_public_url(oauth *o, const char *public_url);
const char *oauth_redirect_uri(const oauth *o);

/* Sets an integration's OAuth client (team 0: the operator's default).
 * URLs (may be NULL) override the provider's; set by the operator (CLI),
 * they may point at non-public addresses (a self-hosted or test identity
 * provider); set through the API they may not. */
typedef struct oauth_client_spec {
    const char *client_id;
    const char *client_secret;
    const char *authorize_url;
    const char *token_url;
    const char *revoke_url;
} oauth_client_spec;
int oauth_set_client(store *db, vault *v, providers *ps, int64_t team_id, const char *slug,
                     const oauth_client_spec *spec, int by_operator, ferr *err);

/* A new single-use state for `who`; *url (malloc'd) is where to send the
 * user's browser. scope "user" or "team" (admins), label may be NULL,
 * connection_id (may be NULL) names a connection to reconnect. */
typedef struct oauth_start_spec {
    const char *slug;
    const char *scope;
    const char *label;
    const char *connection_id;
} oauth_start_spec;
int oauth_start(oauth *o, const principal *who, const oauth_start_spec *spec, char **url, int64_t *expires_ms,
                ferr *err);

/* The provider sent the browser back. `done` gets the connection, or why
 * not (a failed exchange). Problems found at once (an unknown, used or
 * expired state, denied consent) return -1 without calling done. */
typedef void (*oauth_connected_fn)(void *arg, const store_connection *c, const ferr *err);
/* The callback's other query parameters, by name (NULL when absent): a
 * provider may keep some as settings (auth.callback_settings). */
typedef const char *(*oauth_param_fn)(void *ud, const char *name);
typedef struct oauth_callback_args {
    const char *state, *code, *error, *error_description;
    oauth_param_fn param;          /* may be NULL */
    void *param_ud;
} oauth_callback_args;
int oauth_callback(oauth *o, const oauth_callback_args *cb, oauth_connected_fn done, void *arg, ferr *err);

/* Whether a connection's access token should be refreshed before use. */
int oauth_needs_refresh(const oauth *o, const provider *p, const store_connection *c);
/* Refreshes (or, for client credentials, fetches) a connection's token;
 * concurrent requests share one exchange. done(arg, NULL) on success; done
 * may be NULL (nobody waits). The returned waiter may be cancelled
 * (then done is never called); NULL when done was called already. */
typedef void (*oauth_refresh_fn)(void *arg, const ferr *err);
oauth_waiter *oauth_refresh(oauth *o, const store_connection *c, oauth_refresh_fn done, void *arg);
void oauth_cancel(oauth_waiter *w);

/* Registers the "oauth" job kind and its one job, oauth:refresh, every
 * refresh interval (serve): a run refreshes the connections whose tokens
 * expire within the margin, through oauth_refresh, and ends when all of
 * those have. Nothing when the interval is negative. */
int oauth_schedule(oauth *o, sched *s, ferr *err);

/* Best effort: tells the provider to revoke the connection's grant. */
void oauth_revoke(oauth *o, const store_connection *c, const credentials *creds);

/* Token requests in flight (refreshes, exchanges, revocations). */
size_t oauth_in_flight(const oauth *o);

#endif
