/* test_keys — API keys: their shape, authentication of Authorization
 * headers (and every way it refuses), and that only a hash of the secret
 * ever reaches the database file. */
#include "keys.h"
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

typedef struct fixture {
    char tmp[64];
    char data[128];
    store *s;
} fixture;

static void setup(fixture *f)
{
    snprintf(f->tmp, sizeof f->tmp, "/tmp/ferry-test-keys-XXXXXX");
    if (!mkdtemp(f->tmp)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(f->data, sizeof f->data, "%s/data", f->tmp);
    ferr err = {0};
    if (store_open(f->data, &f->s, NULL, NULL, &err) != 0) {
        fprintf(stderr, "store_open: %s\n", err.message);
        exit(2);
    }
}

static void teardown(fixture *f)
{
    store_close(f->s);
    const char *names[] = {"ferry.db", "ferry.db-wal", "ferry.db-shm", NULL};
    for (const char **n = names; *n; n++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", f->data, *n);
        unlink(path);
    }
    rmdir(f->data);
    rmdir(f->tmp);
}

static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static void bearer(char *out, size_t cap, const char *key) { snprintf(out, cap, "Bearer %s", key); }

static int auth(fixture *f, const char *header, principal *who, ferr *err)
{
    ferr_clear(err);
    return keys_authenticate(f->s, header, who, err);
}

/* ---- shape ---------------------------------------------------------- */

static void created_key_has_prefix_hex_id_and_base64url_secret(void)
{
    fixture f;
    setup(&f);
    char key[KEYS_MAX_LEN];
    principal who;
    ferr err = {0};
    CHECK_INT(keys_create(f.s, "alice", "acme", NULL, key, &who, &err), 0);
    /* fry_ + 16 hex + _ + 43 base64url (256 bits, unpadded) */
    CHECK_INT(strlen(key), 4 + 16 + 1 + 43);
    CHECK(strncmp(key, "fry_", 4) == 0);
    for (int i = 4; i < 20; i++)
        CHECK(is_hex(key[i]));
    CHECK_INT(key[20], '_');
    for (int i = 21; i < 64; i++)
        CHECK(is_b64url(key[i]));
    /* The principal names the new key by its id. */
    CHECK_INT(strlen(who.key_id), 16);
    CHECK(strncmp(who.key_id, key + 4, 16) == 0);
    CHECK_STR(who.user, "alice");
    CHECK_STR(who.team, "acme");

    /* Two keys never share an id or a secret. */
    char key2[KEYS_MAX_LEN];
    CHECK_INT(keys_create(f.s, "alice", "acme", NULL, key2, NULL, &err), 0);
    CHECK(strncmp(key, key2, 20) != 0);
    CHECK(strcmp(key + 21, key2 + 21) != 0);
    ferr_clear(&err);
    teardown(&f);
}

static void parse_splits_id_and_secret(void)
{
    char id[33];
    const char *secret = NULL;
    CHECK_INT(keys_parse("fry_00ff_secret", id, &secret), 0);
    CHECK_STR(id, "00ff");
    CHECK_STR(secret, "secret");
    /* The secret may itself contain '_' (base64url). */
    CHECK_INT(keys_parse("fry_0a_b_c", id, &secret), 0);
    CHECK_STR(id, "0a");
    CHECK_STR(secret, "b_c");

    const char *bad[] = {
        "",
        "fry_",
        "fry__secret",                               /* empty id */
        "fry_00ff_",                                 /* empty secret */
        "fry_00ff",                                  /* no secret */
        "fry_00FF_secret",                           /* uppercase hex */
        "fry_xyz_secret",                            /* not hex */
        "fyr_00ff_secret",                           /* wrong prefix */
        "FRY_00ff_secret",
        "fry_000000000000000000000000000000000_s",   /* id of 33 chars */
        NULL,
    };
    for (const char **b = bad; *b; b++) {
        int rc = keys_parse(*b, id, &secret);
        if (rc != -1)
            fprintf(stderr, "  accepted: \"%s\"\n", *b);
        CHECK_INT(rc, -1);
    }
}

/* ---- authenticate --------------------------------------------------- */

static void bearer_key_authenticates_to_its_principal(void)
{
    fixture f;
    setup(&f);
    char key[KEYS_MAX_LEN], header[128];
    principal created, who;
    ferr err = {0};
    CHECK_INT(keys_create(f.s, "bob", "acme", "admin", key, &created, &err), 0);
    bearer(header, sizeof header, key);
    CHECK_INT(auth(&f, header, &who, &err), 0);
    CHECK_STR(who.user, "bob");
    CHECK_STR(who.team, "acme");
    CHECK_INT(who.is_admin, 1);
    CHECK_INT(who.user_id, created.user_id);
    CHECK_STR(who.key_id, created.key_id);

    /* The scheme is case-insensitive and extra spaces are tolerated. */
    snprintf(header, sizeof header, "bearer   %s", key);
    CHECK_INT(auth(&f, header, &who, &err), 0);
    ferr_clear(&err);
    teardown(&f);
}

static void missing_header_is_unauthorized(void)
{
    fixture f;
    setup(&f);
    principal who;
    ferr err = {0};
    CHECK_INT(auth(&f, NULL, &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    CHECK_CONTAINS(err.message, "missing");
    CHECK_INT(auth(&f, "", &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    ferr_clear(&err);
    teardown(&f);
}

static void non_bearer_scheme_is_unauthorized(void)
{
    fixture f;
    setup(&f);
    char key[KEYS_MAX_LEN], header[128];
    principal who;
    ferr err = {0};
    CHECK_INT(keys_create(f.s, "carol", "acme", NULL, key, NULL, &err), 0);
    snprintf(header, sizeof header, "Basic %s", key);
    CHECK_INT(auth(&f, header, &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    CHECK_CONTAINS(err.message, "Bearer");
    /* A bare key without any scheme is refused too. */
    CHECK_INT(auth(&f, key, &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    CHECK_INT(auth(&f, "Bearer", &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    ferr_clear(&err);
    teardown(&f);
}

static void malformed_key_is_unauthorized_without_echoing_it(void)
{
    fixture f;
    setup(&f);
    principal who;
    ferr err = {0};
    CHECK_INT(auth(&f, "Bearer not-a-ferry-key", &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    CHECK_CONTAINS(err.message, "malformed");
    CHECK(strstr(err.message, "not-a-ferry-key") == NULL);
    CHECK_INT(auth(&f, "Bearer ", &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    ferr_clear(&err);
    teardown(&f);
}

static void right_id_with_wrong_secret_is_unauthorized(void)
{
    fixture f;
    setup(&f);
    char key[KEYS_MAX_LEN], header[128];
    principal who;
    ferr err = {0};
    CHECK_INT(keys_create(f.s, "dave", "acme", NULL, key, NULL, &err), 0);

    /* Flip the last character of the secret. */
    char forged[KEYS_MAX_LEN];
    snprintf(forged, sizeof forged, "%s", key);
    size_t n = strlen(forged);
    forged[n - 1] = forged[n - 1] == 'A' ? 'B' : 'A';
    bearer(header, sizeof header, forged);
    memset(&who, 0x55, sizeof who);
    CHECK_INT(auth(&f, header, &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    CHECK(strstr(err.message, forged + 21) == NULL);
    /* Nothing of the key's principal leaks out on failure. */
    CHECK_STR(who.user, "");
    CHECK_INT(who.user_id, 0);

    /* A prefix of the right secret is not the secret. */
    snprintf(forged, sizeof forged, "%.*s", (int)(n - 1), key);
    bearer(header, sizeof header, forged);
    CHECK_INT(auth(&f, header, &who, &err), -1);
    /* Nor is the right secret with something after it. */
    snprintf(header, sizeof header, "Bearer %sx", key);
    CHECK_INT(auth(&f, header, &who, &err), -1);
    /* An unknown id with a well-formed secret. */
    snprintf(forged, sizeof forged, "fry_0000000000000000_%s", key + 21);
    bearer(header, sizeof header, forged);
    CHECK_INT(auth(&f, header, &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    ferr_clear(&err);
    teardown(&f);
}

static void revoked_key_is_unauthorized(void)
{
    fixture f;
    setup(&f);
    char key[KEYS_MAX_LEN], header[128];
    principal who;
    ferr err = {0};
    CHECK_INT(keys_create(f.s, "erin", "acme", NULL, key, &who, &err), 0);
    bearer(header, sizeof header, key);
    CHECK_INT(auth(&f, header, &who, &err), 0);
    CHECK_INT(keys_revoke(f.s, who.key_id, &err), 0);
    CHECK_INT(auth(&f, header, &who, &err), -1);
    CHECK_INT(err.code, FERR_UNAUTHORIZED);
    CHECK_CONTAINS(err.message, "revoked");
    ferr_clear(&err);
    teardown(&f);
}

/* ---- what is stored ------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)(n > 0 ? n : 1));
    if (buf && n > 0)
        *len = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    return buf;
}

static int contains_bytes(const char *hay, size_t hn, const void *needle, size_t nn)
{
    return hay && hn >= nn && memmem(hay, hn, needle, nn) != NULL;
}

/* Searches ferry.db and ferry.db-wal, byte for byte. */
static int db_files_contain(fixture *f, const void *needle, size_t n)
{
    const char *names[] = {"ferry.db", "ferry.db-wal", NULL};
    int found = 0;
    for (const char **name = names; *name; name++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", f->data, *name);
        size_t len;
        char *buf = slurp(path, &len);
        found |= contains_bytes(buf, len, needle, n);
        free(buf);
    }
    return found;
}

static void only_the_secret_hash_is_stored(void)
{
    fixture f;
    setup(&f);
    char key[KEYS_MAX_LEN];
    principal who;
    ferr err = {0};
    CHECK_INT(keys_create(f.s, "frank", "acme", NULL, key, &who, &err), 0);
    const char *secret = key + 21;

    /* The stored hash is SHA-256 of the secret text, not the secret. */
    unsigned char stored[32], want[32];
    principal p;
    CHECK_INT(store_key_lookup(f.s, who.key_id, stored, &p), 0);
    unsigned int len = 0;
    EVP_Digest(secret, strlen(secret), want, &len, EVP_sha256(), NULL);
    CHECK_INT(len, 32);
    CHECK(memcmp(stored, want, 32) == 0);
    CHECK(memcmp(stored, secret, 32) != 0);

    /* The key id is in the file (it is public); the secret is in neither
     * the database nor its write-ahead log, as text or as any prefix long
     * enough to matter, and neither is the whole key. */
    CHECK(db_files_contain(&f, who.key_id, strlen(who.key_id)));
    CHECK(db_files_contain(&f, want, 32));
    CHECK(!db_files_contain(&f, secret, strlen(secret)));
    CHECK(!db_files_contain(&f, secret, 16));
    CHECK(!db_files_contain(&f, key, strlen(key)));

    /* Still true once the WAL is checkpointed into the main file. */
    store_close(f.s);
    f.s = NULL;
    char path[256];
    snprintf(path, sizeof path, "%s/ferry.db", f.data);
    sqlite3 *db;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK(!db_files_contain(&f, secret, 16));
    CHECK(db_files_contain(&f, want, 32));
    ferr_clear(&err);
    teardown(&f);
}

TESTS(TEST(created_key_has_prefix_hex_id_and_base64url_secret), TEST(parse_splits_id_and_secret),
      TEST(bearer_key_authenticates_to_its_principal), TEST(missing_header_is_unauthorized),
      TEST(non_bearer_scheme_is_unauthorized), TEST(malformed_key_is_unauthorized_without_echoing_it),
      TEST(right_id_with_wrong_secret_is_unauthorized), TEST(revoked_key_is_unauthorized),
      TEST(only_the_secret_hash_is_stored))
