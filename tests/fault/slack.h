/*
 * slack: the fault server's Slack-shaped upstream for the Slack sync's tests
 * — a deterministic workspace (channels, messages with increasing ts)
 * behind auth.test, conversations.list and conversations.history, with
 * rate limits (429 + Retry-After), slow and hanging pages and new posts
 * injected by request count.  See slack.c for the routes.
 */
#ifndef FAULT_SLACK_H
#define FAULT_SLACK_H

#include <event2/event.h>
#include <event2/http.h>

struct slack_ws;

struct slack_ws *slack_new(struct event_base *base);
/* Frees the workspace and every reply still waiting on a timer. */
void slack_free(struct slack_ws *w);
/* Answers a request whose path starts with "/slack/". */
void slack_route(struct slack_ws *w, struct evhttp_request *req, const char *path);

#endif
