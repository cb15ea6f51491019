/*
 * dataset: the fault server's paged upstream for sync tests — named sets of
 * deterministic records behind a change feed, mutated on request (or while
 * a sync pages through them), with rate limits (429/503 + Retry-After),
 * errors and slow answers injected by request count.  See dataset.c for the
 * routes.
 */
#ifndef FAULT_DATASET_H
#define FAULT_DATASET_H

#include <event2/event.h>
#include <event2/http.h>

struct datasets;

struct datasets *datasets_new(struct event_base *base);
/* Frees every set and every reply still waiting on a timer. */
void datasets_free(struct datasets *d);
/* Answers a request whose path starts with "/dataset/". */
void datasets_route(struct datasets *d, struct evhttp_request *req, const char *path);

#endif
