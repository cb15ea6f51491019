#include "policy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"

#define BUCKETS 4096
#define SAVE_MS 1000

typedef struct bucket {
    struct bucket *next;
    char key[160];
    double tokens;
    int64_t updated_ms;
    int dirty;
} bucket;

struct policy {
    store *db;
    struct event *timer;
    policy_config cfg;
    bucket *table[BUCKETS];
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static unsigned hash_key(const char *k)
{
    unsigned h = 2166136261u;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h % BUCKETS;
}

static bucket *find(policy *p, const char *key, int create)
{
    unsigned h = hash_key(key);
    for (bucket *b = p->table[h]; b; b = b->next)
        if (strcmp(b->key, key) == 0)
            return b;
    if (!create)
        return NULL;
    bucket *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    snprintf(b->key, sizeof b->key, "%s", key);
    b->tokens = -1;   /* new: filled to the burst on first use */
    b->next = p->table[h];
    p->table[h] = b;
    return b;
}

static void load_one(void *ud, const char *key, double tokens, int64_t updated_ms)
{
    bucket *b = find(ud, key, 1);
    if (b) {
        b->tokens = tokens;
        b->updated_ms = updated_ms;
    }
}

void policy_save(policy *p)
{
    size_t n = 0;
    for (int i = 0; i < BUCKETS; i++)
        for (bucket *b = p->table[i]; b; b = b->next)
            n += b->dirty;
    if (n == 0)
        return;
    const char **keys = malloc(n * sizeof *keys);
    double *tokens = malloc(n * sizeof *tokens);
    int64_t *updated = malloc(n * sizeof *updated);
    size_t k = 0;
    for (int i = 0; keys && tokens && updated && i < BUCKETS; i++)
        for (bucket *b = p->table[i]; b; b = b->next)
            if (b->dirty) {
                keys[k] = b->key;
                tokens[k] = b->tokens;
                updated[k++] = b->updated_ms;
            }
    ferr err = {0};
    if (k == n && store_buckets_save(p->db, keys, tokens, updated, n, &err) == 0) {
        for (int i = 0; i < BUCKETS; i++)
            for (bucket *b = p->table[i]; b; b = b->next)
                b->dirty = 0;
    }
    ferr_clear(&err);
    free(keys);
    free(tokens);
    free(updated);
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    policy_save(arg);
}

policy *policy_new(store *db, struct event_base *base, const policy_config *cfg)
{
    policy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->db = db;
    p->cfg = *cfg;
    store_buckets_load(db, load_one, p);
    if (base) {
        p->timer = event_new(base, -1, EV_PERSIST, on_timer, p);
        struct timeval tv = {SAVE_MS / 1000, (SAVE_MS % 1000) * 1000};
        event_add(p->timer, &tv);
    }
    return p;
}

void policy_free(policy *p)
{
    if (!p)
        return;
    policy_save(p);
    if (p->timer)
        event_free(p->timer);
    for (int i = 0; i < BUCKETS; i++)
        while (p->table[i]) {
            bucket *b = p->table[i];
            p->table[i] = b->next;
            free(b);
        }
    free(p);
}

/* ---- permissions ---- */

int policy_allowed(policy *p, const principal *who, const char *category)
{
    char user[40], role[24];
    snprintf(user, sizeof user, "user:%lld", (long long)who->user_id);
    snprintf(role, sizeof role, "role:%s", who->is_admin ? "admin" : "member");
    int by_user = -1, by_role = -1;
    if (store_permission_get(p->db, who->team_id, user, role, category, &by_user, &by_role) < 0)
        return 0;   /* cannot tell: refuse */
    if (by_user >= 0)
        return by_user;
    if (by_role >= 0)
        return by_role;
    return who->is_admin || strcmp(category, "financial") != 0;
}

int policy_may_use(policy *p, const principal *who, const provider *pv, const provider_tool *t, ferr *err)
{
    if (t && t->data_category) {
        if (policy_allowed(p, who, t->data_category))
            return 0;
        ferr_set(err, FERR_FORBIDDEN, "%s touches %s data, which %s may not use; a team admin can grant it",
                 t->full_name, t->data_category, who->user);
        ferr_detail(err, "category", json_string(t->data_category));
        return -1;
    }
    for (size_t i = 0; i < pv->ncategories; i++)
        if (!policy_allowed(p, who, pv->data_categories[i])) {
            ferr_set(err, FERR_FORBIDDEN, "%s touches %s data, which %s may not use; a team admin can grant it",
                     t ? t->full_name : pv->slug, pv->data_categories[i], who->user);
            ferr_detail(err, "category", json_string(pv->data_categories[i]));
            return -1;
        }
    return 0;
}

json_t *policy_permissions_of(policy *p, const principal *who, const char *const *categories, size_t n)
{
    json_t *out = json_object();
    json_object_set_new(out, "financial", json_boolean(policy_allowed(p, who, "financial")));
    for (size_t i = 0; i < n; i++)
        json_object_set_new(out, categories[i], json_boolean(policy_allowed(p, who, categories[i])));
    return out;
}

/* ---- rate limits ---- */

rate_policy policy_rates(policy *p, int64_t team_id, const char *integration)
{
    rate_policy r;
    if (store_rate_policy_get(p->db, team_id, integration, &r) != 0)
        r = p->cfg.defaults;
    return r;
}

/* Refills `b` and reports how long until it holds a whole token (0: now). */
static double refill(bucket *b, double rate, double burst, int64_t now)
{
    if (b->tokens < 0) {
        b->tokens = burst;
        b->updated_ms = now;
    }
    double elapsed = (double)(now - b->updated_ms) / 1000.0;
    if (elapsed > 0)
        b->tokens = fmin(burst, b->tokens + elapsed * rate);
    b->updated_ms = now;
    return b->tokens >= 1 ? 0 : (1 - b->tokens) / rate;
}

int policy_take(policy *p, const principal *who, const char *integration, ferr *err)
{
    rate_policy r = policy_rates(p, who->team_id, integration);
    int64_t now = now_ms();
    char key[160];
    bucket *user = NULL, *team = NULL;
    double wait = 0;
    if (r.user_rate > 0) {
        snprintf(key, sizeof key, "u:%lld:%lld:%s", (long long)who->team_id, (long long)who->user_id, integration);
        if ((user = find(p, key, 1)))
            wait = fmax(wait, refill(user, r.user_rate, fmax(1, r.user_burst), now));
    }
    if (r.team_rate > 0) {
        snprintf(key, sizeof key, "t:%lld:%s", (long long)who->team_id, integration);
        if ((team = find(p, key, 1)))
            wait = fmax(wait, refill(team, r.team_rate, fmax(1, r.team_burst), now));
    }
    if (wait > 0) {
        long long after = (long long)ceil(wait);
        ferr_set(err, FERR_RATE_LIMITED, "too many calls to %s; retry in %lld s", integration, after);
        ferr_detail(err, "retry_after", json_integer(after));
        ferr_detail(err, "limit", json_string(user && user->tokens < 1 ? "user" : "team"));
        return -1;
    }
    if (user) {
        user->tokens -= 1;
        user->dirty = 1;
    }
    if (team) {
        team->tokens -= 1;
        team->dirty = 1;
    }
    return 0;
}
