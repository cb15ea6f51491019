/* agent — a tool call an agent asks for (over HTTP or MCP), through
 * every rule: the tool exists, the caller may use its data categories, the
 * caller and their team are within their rate limits, and a write waits for
 * a person's approval unless the team allow-listed that tool. What passes
 * runs through calls (audited there). */
#ifndef FERRY_AGENT_H
#define FERRY_AGENT_H

#include <jansson.h>

#include "approvals.h"
#include "calls.h"
#include "policy.h"

typedef struct agent_deps {
    store *db;
    providers *providers;
    calls *calls;
    policy *policy;
    approvals *approvals;
} agent_deps;

typedef struct agent_result {
    const call_result *call;     /* the call ran: its result or error */
    json_t *approval;            /* it waits for approval (borrowed) */
} agent_result;

typedef void (*agent_done_fn)(void *arg, const agent_result *r);

/* -1 with err for what is refused before anything runs (unknown tool,
 * forbidden, rate_limited, invalid_arguments, not connected); otherwise
 * done runs once, possibly before this returns. */
int agent_call(const agent_deps *d, const principal *who, const char *tool, json_t *arguments,
               const char *connection_id, const char *request_id, agent_done_fn done, void *arg, ferr *err);

/* Whether `who` may see and call the tools of `p` (its categories). */
int agent_may_use(const agent_deps *d, const principal *who, const provider *p, const provider_tool *t);

/* The tools `who` may call now, for every way an agent lists them (GET
 * /v1/tools, MCP tools/list), in one order: the tools of integrations that
 * need no credential or have an active connection `who` can use, minus
 * those touching data `who` may not see. `connection` is the connection a
 * call would use (its JSON, borrowed), or NULL. */
typedef void (*agent_tool_fn)(void *arg, provider_tool *t, json_t *connection);
int agent_each_tool(const agent_deps *d, const principal *who, agent_tool_fn fn, void *arg, ferr *err);

#endif
