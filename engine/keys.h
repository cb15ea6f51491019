/* keys — ferry API keys: "fry_<key id>_<secret>".
 *
 * The key id is public (it names the key in `ferry keys revoke` and in
 * logs); the secret is 256 random bits shown once at creation. Only the
 * SHA-256 of the secret is stored — a slow KDF buys nothing for a 256-bit
 * random secret — and it is compared in constant time. */
#ifndef FERRY_KEYS_H
#define FERRY_KEYS_H

#include "ferr.h"
#include "store.h"

#define KEYS_MAX_LEN 96

/* Creates a key for user/team (see store_key_create for `role`); writes the
 * whole key, to be shown once, into `key_out`. */
int keys_create(store *s, const char *user, const char *team, const char *role,
                char key_out[KEYS_MAX_LEN], principal *who, ferr *err);

/* Resolves an Authorization header value ("Bearer fry_...") to a principal;
 * unauthorized (with a message that never echoes the key) otherwise. */
int keys_authenticate(store *s, const char *authorization, principal *who, ferr *err);

/* Revokes a key (not_found when there is no active key with that id) and
 * forgets it at once; a key revoked by another process stops working
 * within a second, when its cache entry expires. */
int keys_revoke(store *s, const char *key_id, ferr *err);

/* Splits a key into its id; 0 on a well-formed key. */
int keys_parse(const char *key, char id_out[33], const char **secret_out);

#endif
