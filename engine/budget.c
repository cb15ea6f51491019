#include "budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 1024

typedef struct bucket {
    struct bucket *next;
    char key[128];
    double tokens;          /* may go below 0: reservations queued behind each other */
    double updated_ms;
    double rate, burst;
    double paused_until_ms;
} bucket;

struct budget {
    bucket *slots[SLOTS];
};

budget *budget_new(void) { return calloc(1, sizeof(budget)); }

void budget_free(budget *b)
{
    if (!b)
        return;
    for (int i = 0; i < SLOTS; i++)
        while (b->slots[i]) {
            bucket *k = b->slots[i];
            b->slots[i] = k->next;
            free(k);
        }
    free(b);
}

static bucket *find(budget *b, const char *key, int create)
{
    unsigned h = 2166136261u;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    bucket **slot = &b->slots[h % SLOTS];
    for (bucket *k = *slot; k; k = k->next)
        if (strcmp(k->key, key) == 0)
            return k;
    if (!create)
        return NULL;
    bucket *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    snprintf(k->key, sizeof k->key, "%s", key);
    k->tokens = -1e300;   /* filled on first use */
    k->next = *slot;
    *slot = k;
    return k;
}

double budget_reserve(budget *b, const char *key, double rate, double burst, double now_ms)
{
    bucket *k = find(b, key, 1);
    if (!k || rate <= 0)
        return 0;
    if (k->tokens < -1e299) {
        k->tokens = burst;
        k->updated_ms = now_ms;
    }
    k->rate = rate;
    k->burst = burst;
    double elapsed = (now_ms - k->updated_ms) / 1000.0;
    if (elapsed > 0) {
        k->tokens += elapsed * rate;
        if (k->tokens > burst)
            k->tokens = burst;
    }
    k->updated_ms = now_ms;
    k->tokens -= 1;
    double wait = k->tokens >= 0 ? 0 : -k->tokens / rate * 1000.0;
    if (k->paused_until_ms > now_ms + wait)
        wait = k->paused_until_ms - now_ms;
    return wait;
}

void budget_release(budget *b, const char *key)
{
    bucket *k = find(b, key, 0);
    if (k && k->tokens < k->burst)
        k->tokens += 1;
}

void budget_pause(budget *b, const char *key, double until_ms)
{
    bucket *k = find(b, key, 1);
    if (k && until_ms > k->paused_until_ms)
        k->paused_until_ms = until_ms;
}
