#include "keys.h"

#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define KEY_PREFIX "fry_"
#define KEY_ID_BYTES 8
#define KEY_SECRET_BYTES 32

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = 0;
}

static void base64url_encode(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = tbl[(v >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = tbl[(v << (6 - bits)) & 63];
    out[o] = 0;
}

static int sha256(const char *s, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -1;
}

int keys_parse(const char *key, char id_out[33], const char **secret_out)
{
    size_t plen = strlen(KEY_PREFIX);
    if (strncmp(key, KEY_PREFIX, plen) != 0)
        return -1;
    const char *id = key + plen;
    const char *sep = strchr(id, '_');
    if (!sep || sep == id || (size_t)(sep - id) > 32 || sep[1] == 0)
        return -1;
    for (const char *p = id; p < sep; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return -1;
    memcpy(id_out, id, (size_t)(sep - id));
    id_out[sep - id] = 0;
    *secret_out = sep + 1;
    return 0;
}

int keys_create(store *s, const char *user, const char *team, const char *role,
                char key_out[KEYS_MAX_LEN], principal *who, ferr *err)
{
    unsigned char id_raw[KEY_ID_BYTES], secret_raw[KEY_SECRET_BYTES], hash[32];
    char id[2 * KEY_ID_BYTES + 1], secret[64];
    if (RAND_bytes(id_raw, sizeof id_raw) != 1 || RAND_bytes(secret_raw, sizeof secret_raw) != 1)
        return ferr_set(err, FERR_INTERNAL, "no randomness available for a new key");
    hex_encode(id_raw, sizeof id_raw, id);
    base64url_encode(secret_raw, sizeof secret_raw, secret);
    OPENSSL_cleanse(secret_raw, sizeof secret_raw);
    int rc = sha256(secret, strlen(secret), hash);
    if (rc == 0)
        rc = store_key_create(s, user, team, role, id, hash, who, err);
    else
        ferr_set(err, FERR_INTERNAL, "hashing the new key failed");
    if (rc == 0)
        snprintf(key_out, KEYS_MAX_LEN, "%s%s_%s", KEY_PREFIX, id, secret);
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

/*
 * Verified keys are remembered for a second, so a busy agent does not cost
 * a database lookup per request (it was 8% of a tool call's CPU). What is
 * cached is the stored hash and the principal, never the secret; every
 * request still hashes its secret and compares. A key revoked by another
 * process stops working within CACHE_TTL_MS.
 */
#define CACHE_SLOTS 256
#define CACHE_TTL_MS 1000

typedef struct cached_key {
    const store *s;
    char key_id[33];
    unsigned char hash[32];
    principal who;
    double expires_ms;
} cached_key;

static cached_key cache[CACHE_SLOTS];

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static cached_key *cache_slot(const char *key_id)
{
    unsigned h = 2166136261u;
    for (const char *p = key_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return &cache[h % CACHE_SLOTS];
}

int keys_revoke(store *s, const char *key_id, ferr *err)
{
    cached_key *slot = cache_slot(key_id);
    if (strcmp(slot->key_id, key_id) == 0)
        memset(slot, 0, sizeof *slot);
    return store_key_revoke(s, key_id, err);
}

/* The stored hash and principal of an active key: 0, 1 absent, -1 error. */
static int lookup(store *s, const char *id, unsigned char hash[32], principal *who)
{
    cached_key *slot = cache_slot(id);
    double now = mono_ms();
    if (slot->s == s && strcmp(slot->key_id, id) == 0 && now < slot->expires_ms) {
        memcpy(hash, slot->hash, 32);
        *who = slot->who;
        return 0;
    }
    int found = store_key_lookup(s, id, hash, who);
    if (found == 0) {
        slot->s = s;
        snprintf(slot->key_id, sizeof slot->key_id, "%s", id);
        memcpy(slot->hash, hash, 32);
        slot->who = *who;
        slot->expires_ms = now + CACHE_TTL_MS;
    }
    return found;
}

int keys_authenticate(store *s, const char *authorization, principal *who, ferr *err)
{
    if (!authorization || !*authorization)
        return ferr_set(err, FERR_UNAUTHORIZED, "missing Authorization: Bearer <API key>");
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return ferr_set(err, FERR_UNAUTHORIZED, "Authorization must be a Bearer API key");
    const char *key = authorization + 7;
    while (*key == ' ')
        key++;
    char id[33];
    const char *secret;
    if (keys_parse(key, id, &secret) < 0)
        return ferr_set(err, FERR_UNAUTHORIZED, "malformed API key");

    unsigned char want[32], got[32];
    int found = lookup(s, id, want, who);
    if (found < 0)
        return ferr_set(err, FERR_INTERNAL, "could not read API keys");
    /* Hash even when the id is unknown, so timing says nothing about ids. */
    if (sha256(secret, strlen(secret), got) < 0)
        return ferr_set(err, FERR_INTERNAL, "hashing failed");
    if (found != 0 || CRYPTO_memcmp(want, got, 32) != 0) {
        memset(who, 0, sizeof *who);
        return ferr_set(err, FERR_UNAUTHORIZED, "invalid or revoked API key");
    }
    return 0;
}
