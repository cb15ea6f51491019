/* vault — envelope encryption of connection credentials.
 *
 * A 32-byte master key (FERRY_MASTER_KEY, 64 hex digits, or the file
 * <data>/master.key, mode 0600, generated on first use) wraps one data key
 * per connection; the data key seals that connection's secrets. Everything
 * is AES-256-GCM with a random 96-bit nonce, and the row's identity as
 * associated data ("ferry:secret:<connection>:<field>"), so a sealed value
 * copied to another row or field does not open. The database keeps a key
 * check (a sealed constant), so a wrong master key is refused at once
 * instead of producing garbage.
 *
 * Secrets leave this module only into buffers the caller wipes with
 * vault_wipe; they never reach Lua, logs or responses. */
#ifndef FERRY_VAULT_H
#define FERRY_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "ferr.h"
#include "store.h"

#define VAULT_KEY_LEN 32
#define VAULT_WRAPPED_MAX 96

typedef struct vault vault;

/* Finds the master key, sets the vault up on first use, checks the key
 * against the database, and finishes a rotation a crash interrupted. */
int vault_open(const char *data_dir, store *db, vault **out, ferr *err);
void vault_close(vault *v);
/* "FERRY_MASTER_KEY" or the key file's path. */
const char *vault_key_source(const vault *v);

/* A fresh data key for a new connection, and its wrapped form to store. */
int vault_new_data_key(vault *v, const char *connection_id, unsigned char dek[VAULT_KEY_LEN],
                       unsigned char wrapped[VAULT_WRAPPED_MAX], size_t *wrapped_len, ferr *err);
/* The data key of a stored connection (cached in memory after first use;
 * a rotation by another process is noticed and the new key loaded). */
int vault_data_key(vault *v, const char *connection_id, const unsigned char *wrapped, size_t wrapped_len,
                   unsigned char dek[VAULT_KEY_LEN], ferr *err);
/* Drops a connection's cached data key (it was deleted). */
void vault_forget(vault *v, const char *connection_id);

/* Seals `n` bytes for (connection, field); *out is malloc'd. */
int vault_seal(const unsigned char dek[VAULT_KEY_LEN], const char *connection_id, const char *field,
               const void *plain, size_t n, unsigned char **out, size_t *outlen, ferr *err);
/* Opens a sealed value into a malloc'd, NUL-terminated buffer; wipe it with
 * vault_wipe(p, n) then free. A value that fails authentication (tampered,
 * moved, wrong key) is an error, never garbage. */
int vault_unseal(const unsigned char dek[VAULT_KEY_LEN], const char *connection_id, const char *field,
                 const void *sealed, size_t n, char **plain, size_t *plain_len, ferr *err);

void vault_wipe(void *p, size_t n);

/* ferry vault rotate: a new master key, every data key re-wrapped in one
 * transaction. With a key file the new key replaces it (crash-safe); with
 * FERRY_MASTER_KEY the new key is written to `new_key_hex` (65 bytes) for
 * the operator, who must restart with it. */
int vault_rotate(const char *data_dir, store *db, char new_key_hex[65], int *from_env, ferr *err);

#endif
