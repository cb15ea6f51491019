/* connections — a user's or a team's link to an integration: creating one
 * (checking the credential fields against the provider's auth declaration
 * and sealing them in the vault), listing what a caller may see, deleting,
 * choosing the connection a tool call uses, and opening its credentials for
 * the HTTP primitive — never for Lua.
 *
 * Visibility: a member sees the team's shared connections and their own,
 * never another team's; an id they may not see is simply not found. */
#ifndef FERRY_CONNECTIONS_H
#define FERRY_CONNECTIONS_H

#include <jansson.h>

#include "ferr.h"
#include "providers.h"
#include "store.h"
#include "vault.h"

/* A connection's opened credentials. Wipe with credentials_wipe. */
typedef struct credential {
    char *field;
    char *value;
    size_t len;
} credential;

typedef struct credentials {
    credential items[8];
    size_t n;
    /* Forms of the secrets to mask in what comes back (the values, and for
     * basic auth the encoded pair an upstream might echo). */
    char *masks[8];
    size_t mask_len[8];
    size_t nmasks;
} credentials;

void credentials_wipe(credentials *c);
/* The value of `field`, or NULL. */
const credential *credentials_get(const credentials *c, const char *field);

/* A copy of text with every secret of `c` replaced by "[redacted]", or NULL
 * when it holds none (then text is fine as it is). An upstream that echoes
 * a credential must not hand it to the script, the agent or the logs. */
char *credentials_mask(const credentials *c, const char *text, size_t n, size_t *out_len);

typedef struct connection_spec {
    const char *integration;
    json_t *credentials;        /* {field: "secret", ...} */
    json_t *settings;           /* {name: value} non-secret, may be NULL */
    const char *scope;          /* "user" (default) or "team" (admins) */
    const char *label;          /* may be NULL */
} connection_spec;

/* Validates and stores a new connection for `who`; *out receives it. */
int connections_create(store *db, vault *v, providers *ps, const principal *who, const connection_spec *spec,
                       store_connection *out, ferr *err);

/* The connection `who` may use: `id` when given (it must be visible and
 * belong to `p`), else the caller's own, else the team's. forbidden when
 * there is none, naming the integration to connect; reconnect_required when
 * it needs a person to reconnect it. */
int connections_for_call(store *db, const principal *who, const provider *p, const char *id,
                         store_connection *out, ferr *err);

/* A connection by id as `who` sees it: not_found when absent or not theirs
 * to see. */
int connections_get_visible(store *db, const principal *who, const char *id, store_connection *out, ferr *err);

/* Deletes a connection `who` may manage (their own, or any of the team's
 * when admin); its sealed credentials are destroyed. */
int connections_delete(store *db, vault *v, const principal *who, const char *id, ferr *err);

/* Adds reconnect_url, connection_id and integration to a
 * reconnect_required error. */
void connections_reconnect_details(const provider *p, const char *connection_id, ferr *err);

/* Opens every credential of a connection. */
int connections_open(store *db, vault *v, const store_connection *c, credentials *out, ferr *err);

/* New tokens for an existing connection (OAuth: a refresh, a reconnect),
 * sealed with its data key and stored in one transaction with their expiry
 * (0: unknown); the connection turns active. values[i] may be NULL (that
 * field is left as it is). */
int connections_store_tokens(store *db, vault *v, const store_connection *c, const char *const *fields,
                             const char *const *values, size_t n, int64_t expires_at, ferr *err);

/* Settings learnt after connecting (a provider's check, an OAuth
 * callback): the declared ones the connection does not have yet are kept
 * (strings of at most 256 characters); c->settings is updated. Returns how
 * many were added. */
int connections_adopt_settings(store *db, const provider *p, store_connection *c, json_t *given);

/* The JSON an API answers for a connection (no secret, ever). `policy_days`
 * is the rotation period that applies (0: none). */
json_t *connections_to_json(const store_connection *c, int policy_days);

/* Rotation period for a connection: the team's policy if set, else the
 * provider's advice; 0 when neither. */
int connections_rotation_days(store *db, const store_connection *c, const provider *p);

#endif
