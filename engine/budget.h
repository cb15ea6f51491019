/* budget — an upstream API's own rate limit, shared by every request made
 * through one connection (tool calls and syncs alike), so together they
 * never trip it.
 *
 * A provider declares its API's limits (`rate_limits`); each request
 * reserves a slot in the connection's bucket and, when the bucket is
 * empty, waits its turn (in order: reservations queue) instead of sending
 * a request the upstream would refuse. An upstream 429 pauses the bucket
 * for its Retry-After. */
#ifndef FERRY_BUDGET_H
#define FERRY_BUDGET_H

typedef struct budget budget;

budget *budget_new(void);
void budget_free(budget *b);

/* Reserves one request in bucket `key` (requests per second, burst):
 * milliseconds to wait before sending it, 0 to send now. */
double budget_reserve(budget *b, const char *key, double rate, double burst, double now_ms);
/* Hands back a reservation that will not be used (the wait was too long). */
void budget_release(budget *b, const char *key);
/* Nothing leaves bucket `key` before `until_ms`. */
void budget_pause(budget *b, const char *key, double until_ms);

#endif
