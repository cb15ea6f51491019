#include "agent.h"

#include <stdlib.h>
#include <string.h>

#include "connections.h"
#include "discovery.h"
#include "schema.h"

typedef struct pending_call {
    agent_done_fn done;
    void *arg;
} pending_call;

static void on_called(void *arg, const call_result *r)
{
    pending_call *p = arg;
    agent_result out = {.call = r};
    p->done(p->arg, &out);
    free(p);
}

int agent_may_use(const agent_deps *d, const principal *who, const provider *p, const provider_tool *t)
{
    if (!providers_visible(p, who))
        return 0;   /* another team's MCP server */
    ferr e = {0};
    int ok = policy_may_use(d->policy, who, p, t, &e) == 0;
    ferr_clear(&e);
    return ok;
}

int agent_each_tool(const agent_deps *d, const principal *who, agent_tool_fn fn, void *arg, ferr *err)
{
    json_t *conns = discovery_connections(d->db, d->providers, who, err);
    if (!conns)
        return -1;
    for (size_t i = 0; i < providers_count(d->providers); i++) {
        provider *p = providers_at(d->providers, i);
        if (!discovery_usable(p, conns))
            continue;
        json_t *pick = discovery_pick(json_object_get(conns, p->slug), who);
        for (size_t k = 0; k < p->ntools; k++)
            if (agent_may_use(d, who, p, &p->tools[k]))
                fn(arg, &p->tools[k], pick);   /* data the caller may not see is not offered */
    }
    json_decref(conns);
    return 0;
}

int agent_call(const agent_deps *d, const principal *who, const char *name, json_t *arguments,
               const char *connection_id, const char *request_id, agent_done_fn done, void *arg, ferr *err)
{
    provider_tool *t = providers_find_tool_for(d->providers, name ? name : "", who);
    if (!t) {
        ferr_set(err, FERR_UNKNOWN_TOOL, "there is no tool named '%s'", name ? name : "");
        ferr_detail(err, "name", json_string(name ? name : ""));
        return -1;
    }
    if (policy_may_use(d->policy, who, t->p, t, err) < 0)
        return -1;
    if (policy_take(d->policy, who, t->p->slug, err) < 0)
        return -1;

    int needs_approval = t->is_write && !store_allowlist_has(d->db, who->team_id, t->full_name);
    if (needs_approval) {
        json_t *args = arguments ? json_incref(arguments) : json_object();
        schema_error se;
        int rc = -1;
        store_connection conn;
        memset(&conn, 0, sizeof conn);
        if (!json_is_object(args)) {
            ferr_set(err, FERR_INVALID_ARGUMENTS, "arguments must be a JSON object");
            ferr_detail(err, "path", json_string("$"));
        } else if (schema_validate(t->input_schema, args, &se) < 0) {
            ferr_set(err, FERR_INVALID_ARGUMENTS, "%s: %s", se.path, se.message);
            ferr_detail(err, "path", json_string(se.path));
            ferr_detail(err, "reason", json_string(se.message));
        } else if (t->p->authn.kind != AUTH_NONE &&
                   connections_for_call(d->db, who, t->p, connection_id, &conn, err) < 0) {
            /* not connected: say so now, not after someone approves */
        } else {
            json_t *approval = NULL;
            rc = approvals_request(d->approvals, who, t, args, conn.id[0] ? conn.id : connection_id, request_id,
                                   &approval, err);
            if (rc == 0) {
                agent_result out = {.approval = approval};
                done(arg, &out);
                json_decref(approval);
            }
        }
        store_connection_clear(&conn);
        json_decref(args);
        return rc;
    }

    pending_call *p = calloc(1, sizeof *p);
    if (!p)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    p->done = done;
    p->arg = arg;
    call_request req = {.tool = name, .arguments = arguments, .connection_id = connection_id, .who = who,
                        .request_id = request_id};
    if (calls_start(d->calls, &req, on_called, p, err) < 0) {
        free(p);
        return -1;
    }
    return 0;
}
