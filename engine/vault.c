#include "vault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define FORMAT_V1 1
#define SEALED_OVERHEAD (1 + NONCE_LEN + TAG_LEN)
#define CACHE_BUCKETS 1024

static const char key_check_plain[] = "ferry vault key check v1";
static const char key_check_aad[] = "ferry:key-check:v1";

typedef struct cached_dek {
    struct cached_dek *next;
    char id[40];
    unsigned char dek[VAULT_KEY_LEN];
} cached_dek;

struct vault {
    store *db;
    char data_dir[4096];
    char source[4200];
    int from_env;
    unsigned char master[VAULT_KEY_LEN];
    int64_t generation;
    cached_dek *cache[CACHE_BUCKETS];
};

void vault_wipe(void *p, size_t n)
{
    if (p)
        OPENSSL_cleanse(p, n);
}

/* ---- AES-256-GCM ---- */

static int aead(int encrypt, const unsigned char key[VAULT_KEY_LEN], const unsigned char nonce[NONCE_LEN],
                const char *aad, const unsigned char *in, size_t n, unsigned char *out, unsigned char tag[TAG_LEN])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, ok = ctx != NULL;
    ok = ok && EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1;
    ok = ok && EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, encrypt) == 1;
    ok = ok && EVP_CipherUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)strlen(aad)) == 1;
    ok = ok && (n == 0 || EVP_CipherUpdate(ctx, out, &len, in, (int)n) == 1);
    if (ok && !encrypt)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(ctx, out + (n ? len : 0), &len) == 1;   /* fails on a bad tag */
    if (ok && encrypt)
        ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* sealed = version | nonce | ciphertext | tag */
static int seal_raw(const unsigned char key[VAULT_KEY_LEN], const char *aad, const void *plain, size_t n,
                    unsigned char *out)
{
    out[0] = FORMAT_V1;
    if (RAND_bytes(out + 1, NONCE_LEN) != 1)
        return -1;
    return aead(1, key, out + 1, aad, plain, n, out + 1 + NONCE_LEN, out + 1 + NONCE_LEN + n);
}

static int unseal_raw(const unsigned char key[VAULT_KEY_LEN], const char *aad, const unsigned char *sealed,
                      size_t n, unsigned char *out)
{
    if (n < SEALED_OVERHEAD || sealed[0] != FORMAT_V1)
        return -1;
    size_t plain = n - SEALED_OVERHEAD;
    unsigned char tag[TAG_LEN];
    memcpy(tag, sealed + 1 + NONCE_LEN + plain, TAG_LEN);
    return aead(0, key, sealed + 1, aad, sealed + 1 + NONCE_LEN, plain, out, tag);
}

int vault_seal(const unsigned char dek[VAULT_KEY_LEN], const char *connection_id, const char *field,
               const void *plain, size_t n, unsigned char **out, size_t *outlen, ferr *err)
{
    char aad[256];
    snprintf(aad, sizeof aad, "ferry:secret:%s:%s", connection_id, field);
    *out = malloc(n + SEALED_OVERHEAD);
    if (!*out)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    if (seal_raw(dek, aad, plain, n, *out) < 0) {
        free(*out);
        *out = NULL;
        return ferr_set(err, FERR_INTERNAL, "sealing a credential failed");
    }
    *outlen = n + SEALED_OVERHEAD;
    return 0;
}

int vault_unseal(const unsigned char dek[VAULT_KEY_LEN], const char *connection_id, const char *field,
                 const void *sealed, size_t n, char **plain, size_t *plain_len, ferr *err)
{
    char aad[256];
    snprintf(aad, sizeof aad, "ferry:secret:%s:%s", connection_id, field);
    *plain = NULL;
    size_t len = n >= SEALED_OVERHEAD ? n - SEALED_OVERHEAD : 0;
    char *buf = malloc(len + 1);
    if (!buf)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    if (unseal_raw(dek, aad, sealed, n, (unsigned char *)buf) < 0) {
        vault_wipe(buf, len + 1);
        free(buf);
        return ferr_set(err, FERR_INTERNAL,
                        "the stored credential '%s' of connection %s failed its integrity check", field,
                        connection_id);
    }
    buf[len] = 0;
    *plain = buf;
    *plain_len = len;
    return 0;
}

/* ---- the master key ---- */

static int from_hex(const char *hex, size_t n, unsigned char out[VAULT_KEY_LEN])
{
    if (n != 2 * VAULT_KEY_LEN)
        return -1;
    for (size_t i = 0; i < VAULT_KEY_LEN; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= (unsigned)(c - 'A' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static void to_hex(const unsigned char key[VAULT_KEY_LEN], char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < VAULT_KEY_LEN; i++) {
        out[2 * i] = hex[key[i] >> 4];
        out[2 * i + 1] = hex[key[i] & 15];
    }
    out[64] = 0;
}

/* 0 read, 1 absent, -1 refused (permissions, length, characters). */
static int read_key_file(const char *path, unsigned char key[VAULT_KEY_LEN], ferr *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        return ferr_set(err, FERR_INTERNAL, "cannot read the master key file %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ferr_set(err, FERR_INTERNAL, "the master key file %s is not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return ferr_set(err, FERR_INTERNAL,
                        "the master key file %s is readable by group or others (mode %04o); "
                        "run chmod 600 on it", path, (unsigned)(st.st_mode & 0777));
    }
    char buf[160];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return ferr_set(err, FERR_INTERNAL, "cannot read the master key file %s: %s", path, strerror(errno));
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    int rc = from_hex(buf, (size_t)n, key);
    vault_wipe(buf, sizeof buf);
    if (rc < 0)
        return ferr_set(err, FERR_INTERNAL,
                        "the master key file %s must hold 64 hex digits (32 bytes); it holds %zd characters",
                        path, n);
    return 0;
}

/* Writes the key to `path` atomically (a temporary file, fsync, rename). */
static int write_key_file(const char *path, const unsigned char key[VAULT_KEY_LEN], ferr *err)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return ferr_set(err, FERR_INTERNAL, "cannot write %s: %s", tmp, strerror(errno));
    char hex[66];
    to_hex(key, hex);
    hex[64] = '\n';
    int ok = write(fd, hex, 65) == 65 && fsync(fd) == 0;
    vault_wipe(hex, sizeof hex);
    close(fd);
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return ferr_set(err, FERR_INTERNAL, "cannot write the master key file %s: %s", path, strerror(errno));
    }
    /* The rename itself must survive a crash. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return 0;
}

static int env_key(unsigned char key[VAULT_KEY_LEN], int *present, ferr *err)
{
    const char *hex = getenv("FERRY_MASTER_KEY");
    *present = hex && *hex;
    if (!*present)
        return 0;
    if (from_hex(hex, strlen(hex), key) < 0)
        return ferr_set(err, FERR_INTERNAL, "FERRY_MASTER_KEY must be 64 hex digits (32 bytes)");
    return 0;
}

static int key_opens_check(const unsigned char key[VAULT_KEY_LEN], const unsigned char *check, size_t n)
{
    unsigned char out[sizeof key_check_plain];
    if (n != sizeof key_check_plain - 1 + SEALED_OVERHEAD)
        return 0;
    int ok = unseal_raw(key, key_check_aad, check, n, out) == 0 &&
             memcmp(out, key_check_plain, sizeof key_check_plain - 1) == 0;
    return ok;
}

static int make_check(const unsigned char key[VAULT_KEY_LEN], unsigned char out[sizeof key_check_plain - 1 + SEALED_OVERHEAD])
{
    return seal_raw(key, key_check_aad, key_check_plain, sizeof key_check_plain - 1, out);
}

static void key_path(const char *data_dir, const char *suffix, char *out, size_t cap)
{
    snprintf(out, cap, "%s/master.key%s", data_dir, suffix);
}

/* Loads the master key from its source into v->master and checks it
 * against the database (setting the vault up on first use). */
static int load_master(vault *v, ferr *err)
{
    int64_t generation = 0;
    unsigned char *check = NULL;
    size_t check_len = 0;
    int have = store_vault_get(v->db, &generation, &check, &check_len, err);
    if (have < 0)
        return -1;

    int env_present = 0;
    if (env_key(v->master, &env_present, err) < 0) {
        free(check);
        return -1;
    }
    char path[4200], pending[4200];
    key_path(v->data_dir, "", path, sizeof path);
    key_path(v->data_dir, ".new", pending, sizeof pending);
    v->from_env = env_present;
    snprintf(v->source, sizeof v->source, "%s", env_present ? "FERRY_MASTER_KEY" : path);

    if (!env_present) {
        /* A rotation that committed but crashed before its rename left the
         * new key beside the old one: whichever opens the database wins. */
        unsigned char candidate[VAULT_KEY_LEN];
        ferr ignore = {0};
        if (have && read_key_file(pending, candidate, &ignore) == 0) {
            if (key_opens_check(candidate, check, check_len)) {
                if (rename(pending, path) == 0)
                    log_msg(LOG_WARN, "finished an interrupted master key rotation");
            } else {
                unlink(pending);
            }
        }
        vault_wipe(candidate, sizeof candidate);
        ferr_clear(&ignore);
        int rc = read_key_file(path, v->master, err);
        if (rc < 0) {
            free(check);
            return -1;
        }
        if (rc == 1) {
            if (have) {
                free(check);
                return ferr_set(err, FERR_INTERNAL,
                                "no master key: this database has sealed credentials; set FERRY_MASTER_KEY "
                                "or restore %s", path);
            }
            if (RAND_bytes(v->master, VAULT_KEY_LEN) != 1 || write_key_file(path, v->master, err) < 0) {
                free(check);
                return ferr_set(err, FERR_INTERNAL, "cannot create the master key file %s", path);
            }
            log_line *l = log_begin(LOG_INFO, "generated a master key");
            log_str(l, "file", path);
            log_end(l);
        }
    }

    if (!have) {
        unsigned char fresh[sizeof key_check_plain - 1 + SEALED_OVERHEAD];
        if (make_check(v->master, fresh) < 0 || store_vault_init(v->db, fresh, sizeof fresh, err) < 0)
            return -1;
        free(check);
        return store_vault_get(v->db, &v->generation, &check, &check_len, err) < 0 ? -1 : (free(check), 0);
    }
    int ok = key_opens_check(v->master, check, check_len);
    free(check);
    if (!ok)
        return ferr_set(err, FERR_INTERNAL, "the master key from %s does not open this database", v->source);
    v->generation = generation;
    return 0;
}

int vault_open(const char *data_dir, store *db, vault **out, ferr *err)
{
    *out = NULL;
    vault *v = calloc(1, sizeof *v);
    if (!v)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    v->db = db;
    snprintf(v->data_dir, sizeof v->data_dir, "%s", data_dir);
    if (load_master(v, err) < 0) {
        vault_close(v);
        return -1;
    }
    *out = v;
    return 0;
}

void vault_close(vault *v)
{
    if (!v)
        return;
    for (int i = 0; i < CACHE_BUCKETS; i++)
        while (v->cache[i]) {
            cached_dek *c = v->cache[i];
            v->cache[i] = c->next;
            vault_wipe(c, sizeof *c);
            free(c);
        }
    vault_wipe(v->master, sizeof v->master);
    free(v);
}

const char *vault_key_source(const vault *v) { return v->source; }

/* Notices a rotation done by another process and loads the new key. */
static int refresh(vault *v, ferr *err)
{
    int64_t generation = 0;
    unsigned char *check = NULL;
    size_t len = 0;
    if (store_vault_get(v->db, &generation, &check, &len, err) < 0)
        return -1;
    free(check);
    if (generation == v->generation)
        return 0;
    if (load_master(v, err) < 0) {
        if (v->from_env)
            ferr_set(err, FERR_INTERNAL,
                     "the master key was rotated; restart ferry with the new FERRY_MASTER_KEY");
        return -1;
    }
    log_msg(LOG_INFO, "master key rotation noticed; new key loaded");
    return 0;
}

static unsigned bucket_of(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % CACHE_BUCKETS;
}

static void cache_put(vault *v, const char *id, const unsigned char dek[VAULT_KEY_LEN])
{
    cached_dek *c = calloc(1, sizeof *c);
    if (!c)
        return;
    snprintf(c->id, sizeof c->id, "%s", id);
    memcpy(c->dek, dek, VAULT_KEY_LEN);
    unsigned b = bucket_of(id);
    c->next = v->cache[b];
    v->cache[b] = c;
}

void vault_forget(vault *v, const char *connection_id)
{
    cached_dek **p = &v->cache[bucket_of(connection_id)];
    while (*p) {
        if (strcmp((*p)->id, connection_id) == 0) {
            cached_dek *c = *p;
            *p = c->next;
            vault_wipe(c, sizeof *c);
            free(c);
            return;
        }
        p = &(*p)->next;
    }
}

static void dek_aad(const char *id, char *out, size_t cap) { snprintf(out, cap, "ferry:dek:%s", id); }

int vault_new_data_key(vault *v, const char *connection_id, unsigned char dek[VAULT_KEY_LEN],
                       unsigned char wrapped[VAULT_WRAPPED_MAX], size_t *wrapped_len, ferr *err)
{
    if (refresh(v, err) < 0)
        return -1;
    char aad[128];
    dek_aad(connection_id, aad, sizeof aad);
    if (RAND_bytes(dek, VAULT_KEY_LEN) != 1 || seal_raw(v->master, aad, dek, VAULT_KEY_LEN, wrapped) < 0)
        return ferr_set(err, FERR_INTERNAL, "cannot create a data key");
    *wrapped_len = VAULT_KEY_LEN + SEALED_OVERHEAD;
    cache_put(v, connection_id, dek);
    return 0;
}

int vault_data_key(vault *v, const char *connection_id, const unsigned char *wrapped, size_t wrapped_len,
                   unsigned char dek[VAULT_KEY_LEN], ferr *err)
{
    for (cached_dek *c = v->cache[bucket_of(connection_id)]; c; c = c->next)
        if (strcmp(c->id, connection_id) == 0) {
            memcpy(dek, c->dek, VAULT_KEY_LEN);
            return 0;
        }
    if (refresh(v, err) < 0)
        return -1;
    char aad[128];
    dek_aad(connection_id, aad, sizeof aad);
    if (wrapped_len != VAULT_KEY_LEN + SEALED_OVERHEAD || unseal_raw(v->master, aad, wrapped, wrapped_len, dek) < 0)
        return ferr_set(err, FERR_INTERNAL, "the data key of connection %s failed its integrity check",
                        connection_id);
    cache_put(v, connection_id, dek);
    return 0;
}

/* ---- rotation ---- */

typedef struct rewrap_ctx {
    const unsigned char *old_key, *new_key;
} rewrap_ctx;

static int rewrap_one(void *ud, const char *id, const unsigned char *wrapped, size_t len, unsigned char **out,
                      size_t *outlen, ferr *err)
{
    rewrap_ctx *r = ud;
    char aad[128];
    dek_aad(id, aad, sizeof aad);
    unsigned char dek[VAULT_KEY_LEN];
    if (len != VAULT_KEY_LEN + SEALED_OVERHEAD || unseal_raw(r->old_key, aad, wrapped, len, dek) < 0)
        return ferr_set(err, FERR_INTERNAL, "the data key of connection %s failed its integrity check", id);
    *out = malloc(VAULT_KEY_LEN + SEALED_OVERHEAD);
    int rc = *out && seal_raw(r->new_key, aad, dek, VAULT_KEY_LEN, *out) == 0 ? 0 : -1;
    vault_wipe(dek, sizeof dek);
    if (rc < 0)
        return ferr_set(err, FERR_INTERNAL, "re-wrapping a data key failed");
    *outlen = VAULT_KEY_LEN + SEALED_OVERHEAD;
    return 0;
}

int vault_rotate(const char *data_dir, store *db, char new_key_hex[65], int *from_env, ferr *err)
{
    vault *v = NULL;
    new_key_hex[0] = 0;
    if (vault_open(data_dir, db, &v, err) < 0)
        return -1;
    *from_env = v->from_env;
    unsigned char fresh[VAULT_KEY_LEN];
    unsigned char check[sizeof key_check_plain - 1 + SEALED_OVERHEAD];
    char pending[4200], path[4200];
    key_path(data_dir, ".new", pending, sizeof pending);
    key_path(data_dir, "", path, sizeof path);
    int rc = -1;
    if (RAND_bytes(fresh, sizeof fresh) != 1 || make_check(fresh, check) < 0) {
        ferr_set(err, FERR_INTERNAL, "no randomness for a new key");
        goto out;
    }
    /* The new key is on disk before the database depends on it. */
    if (!v->from_env && write_key_file(pending, fresh, err) < 0)
        goto out;
    rewrap_ctx r = {v->master, fresh};
    if (store_vault_rewrap(db, rewrap_one, &r, check, sizeof check, err) < 0) {
        if (!v->from_env)
            unlink(pending);
        goto out;
    }
    if (v->from_env)
        to_hex(fresh, new_key_hex);
    else if (rename(pending, path) < 0) {
        ferr_set(err, FERR_INTERNAL, "rotated, but could not move %s to %s: %s (ferry finishes this at start)",
                 pending, path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    vault_wipe(fresh, sizeof fresh);
    vault_close(v);
    return rc;
}
