#include "approvals.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/rand.h>

#include "jsonfmt.h"
#include "log.h"
#include "schema.h"
#include "vault.h"

#define SWEEP_SECONDS 60
#define SUMMARY_MAX 400

struct approvals {
    store *db;
    vault *vault;
    audit *audit;
    calls *calls;
    providers *providers;
    policy *policy;
    struct event *sweep;
    int ttl_seconds;
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}



/* The public form: arguments are always the redacted ones. */
static json_t *to_json(const approval_row *a)
{
    const char *status = a->status;
    if (strcmp(status, "pending") == 0 && now_ms() >= a->expires_at)
        status = "expired";
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:o}", "id", a->id, "status", status, "tool",
                          a->tool, "integration", a->integration, "arguments", jsonfmt_parsed(a->redacted_arguments),
                          "requested_by", a->user, "summary", a->summary ? json_string(a->summary) : json_null(),
                          "created_at", jsonfmt_time(a->created_at), "expires_at", jsonfmt_time(a->expires_at));
    if (a->connection_id)
        json_object_set_new(o, "connection_id", json_string(a->connection_id));
    if (a->decided_by) {
        json_object_set_new(o, "decided_by", json_string(a->decided_by));
        json_object_set_new(o, "decided_at", jsonfmt_time(a->decided_at));
    }
    if (a->reason)
        json_object_set_new(o, "reason", json_string(a->reason));
    if (a->result)
        json_object_set_new(o, "result", jsonfmt_parsed(a->result));
    if (a->error)
        json_object_set_new(o, "error", jsonfmt_parsed(a->error));
    return o;
}

static void on_sweep(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    approvals *ap = arg;
    ferr e = {0};
    store_approvals_expire(ap->db, now_ms(), &e);
    ferr_clear(&e);
}

approvals *approvals_new(store *db, vault *v, audit *au, calls *cs, providers *ps, policy *pol, struct event_base *base,
                         int ttl_seconds)
{
    approvals *ap = calloc(1, sizeof *ap);
    if (!ap)
        return NULL;
    ap->db = db;
    ap->vault = v;
    ap->audit = au;
    ap->calls = cs;
    ap->providers = ps;
    ap->policy = pol;
    ap->ttl_seconds = ttl_seconds > 0 ? ttl_seconds : 24 * 3600;
    if (base) {
        ap->sweep = event_new(base, -1, EV_PERSIST, on_sweep, ap);
        struct timeval tv = {SWEEP_SECONDS, 0};
        event_add(ap->sweep, &tv);
    }
    return ap;
}

void approvals_free(approvals *ap)
{
    if (!ap)
        return;
    if (ap->sweep)
        event_free(ap->sweep);
    free(ap);
}

/* How much of s[0..n) to keep so that a UTF-8 sequence cut short at its end
 * is left out: a value shortened to fit must stay valid UTF-8 (jansson
 * refuses anything else, and the summary is served as JSON). */
static size_t utf8_whole(const char *s, size_t n)
{
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return n - (i - 1) < want ? i - 1 : n;
}

/* "Create contact {email}" with the argument's value in place of {email}
 * (top-level strings and numbers); else a generic line. */
static char *summarize(const provider_tool *t, json_t *args)
{
    char out[SUMMARY_MAX + 1];
    size_t o = 0;
    const char *tpl = t->summary;
    if (!tpl) {
        snprintf(out, sizeof out, "Run %s (%s)", t->full_name, t->description);
        out[utf8_whole(out, strlen(out))] = 0;
        return strdup(out);
    }
    for (const char *p = tpl; *p && o < SUMMARY_MAX; p++) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (close && close - p < 64) {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(close - p - 1), p + 1);
            json_t *v = json_object_get(args, name);
            char val[200] = "";
            if (json_is_string(v))
                snprintf(val, sizeof val, "%s", json_string_value(v));
            else if (json_is_number(v))
                snprintf(val, sizeof val, "%g", json_number_value(v));
            else
                snprintf(val, sizeof val, "(no %s)", name);
            val[utf8_whole(val, strlen(val))] = 0;
            o += (size_t)snprintf(out + o, sizeof out - o, "%s", val);
            if (o > SUMMARY_MAX)
                o = SUMMARY_MAX;
            p = close;
        } else {
            out[o++] = *p;
        }
    }
    out[utf8_whole(out, o)] = 0;
    return strdup(out);
}

static void new_id(char out[40])
{
    unsigned char raw[8];
    RAND_bytes(raw, sizeof raw);
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "apr_", 4);
    for (int i = 0; i < 8; i++) {
        out[4 + 2 * i] = hex[raw[i] >> 4];
        out[5 + 2 * i] = hex[raw[i] & 15];
    }
    out[20] = 0;
}

/* 0, or -1 with err (503) when the audit row cannot be written. */
static int audit_decision(approvals *ap, const principal *who, const approval_row *a, const char *operation,
                          const char *outcome, const char *request_id, const char *detail, ferr *err)
{
    audit_row row = {
        .user_id = who->user_id, .user = who->user, .team_id = who->team_id, .team = who->team,
        .integration = a->integration, .connection_id = a->connection_id, .operation = operation,
        .access = "write", .outcome = outcome, .approval_id = a->id, .request_id = request_id,
        .arguments = a->redacted_arguments, .detail = detail,
    };
    ferr e = {0};
    int rc = 0;
    if (ap->audit && audit_event(ap->audit, &row, &e) < 0) {
        log_line *l = log_begin(LOG_ERROR, "audit write failed");
        log_str(l, "error", e.message);
        log_end(l);
        if (err) {
            ferr_set(err, FERR_INTERNAL, "the audit log cannot be written, so the decision was not made");
            err->status = 503;
        }
        rc = -1;
    }
    ferr_clear(&e);
    return rc;
}

int approvals_request(approvals *ap, const principal *who, const provider_tool *t, json_t *args,
                      const char *connection_id, const char *request_id, json_t **out, ferr *err)
{
    char id[40];
    new_id(id);
    json_t *redacted = schema_redact(t->input_schema, args);
    char *args_text = json_dumps(args, JSON_TEXT);
    char *redacted_text = json_dumps(redacted, JSON_TEXT);
    json_decref(redacted);
    char *summary = summarize(t, args);
    int64_t now = now_ms();
    approval_row a = {
        .id = id, .team_id = who->team_id, .user_id = who->user_id, .user = (char *)who->user,
        .tool = t->full_name, .integration = t->p->slug, .connection_id = (char *)connection_id,
        .redacted_arguments = redacted_text, .summary = summary, .status = "pending",
        .created_at = now, .expires_at = now + (int64_t)ap->ttl_seconds * 1000,
    };
    /* The real arguments wait sealed, under a data key of their own: they
     * may hold what the schema marks secret. */
    unsigned char dek[VAULT_KEY_LEN];
    int sealed = vault_new_data_key(ap->vault, id, dek, a.wrapped_key, &a.wrapped_len, err) == 0 &&
                 vault_seal(dek, id, "arguments", args_text, strlen(args_text), &a.sealed_arguments, &a.sealed_len,
                            err) == 0;
    vault_wipe(dek, sizeof dek);
    vault_forget(ap->vault, id);
    vault_wipe(args_text, strlen(args_text));
    if (!sealed) {
        free(args_text);
        free(redacted_text);
        free(summary);
        return -1;
    }
    /* The request itself is audited first: no audit, no pending write. */
    audit_row row = {
        .user_id = who->user_id, .user = who->user, .team_id = who->team_id, .team = who->team,
        .integration = t->p->slug, .connection_id = connection_id, .operation = "approval.requested",
        .access = "write", .outcome = "pending", .approval_id = id, .request_id = request_id,
        .arguments = redacted_text, .detail = t->full_name,
    };
    int rc = ap->audit ? audit_event(ap->audit, &row, err) : 0;
    if (rc == 0)
        rc = store_approval_insert(ap->db, &a, err);
    if (rc == 0)
        *out = to_json(&a);
    free(a.sealed_arguments);
    free(args_text);
    free(redacted_text);
    free(summary);
    return rc;
}

/* The approval row `who` may see: their own, or any of the team's when admin. */
static int load_visible(approvals *ap, const principal *who, const char *id, approval_row *a, ferr *err)
{
    int found = store_approval_get(ap->db, id, a, err);
    if (found < 0)
        return -1;
    if (found == 1 || a->team_id != who->team_id || (!who->is_admin && a->user_id != who->user_id)) {
        if (found == 0)
            store_approval_clear(a);
        return ferr_set(err, FERR_NOT_FOUND, "no approval %s", id);
    }
    return 0;
}

json_t *approvals_get(approvals *ap, const principal *who, const char *id, ferr *err)
{
    approval_row a;
    if (load_visible(ap, who, id, &a, err) < 0)
        return NULL;
    json_t *o = to_json(&a);
    store_approval_clear(&a);
    return o;
}

static void add_to_list(void *ud, const approval_row *a) { json_array_append_new(ud, to_json(a)); }

json_t *approvals_list(approvals *ap, const principal *who, const char *status, ferr *err)
{
    json_t *list = json_array();
    if (store_approval_list(ap->db, who->team_id, who->is_admin ? 0 : who->user_id, status, 200, add_to_list, list,
                            err) < 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}

typedef struct running {
    approvals *ap;
    char id[40];
    json_t *secrets;          /* argument values redaction removes, masked in the result */
    approval_done_fn done;
    void *arg;
} running;

/* String leaves of `v`. */
static void collect_strings(json_t *v, json_t *out)
{
    if (json_is_string(v) && json_string_length(v) >= 4) {
        json_array_append(out, v);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) collect_strings(x, out);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) collect_strings(x, out);
    }
}

/* The values redaction removed from the arguments: where the redacted form
 * says "[redacted]", what the original held. */
static void removed_values(json_t *orig, json_t *red, json_t *out)
{
    if (json_is_string(red) && strcmp(json_string_value(red), "[redacted]") == 0 && !json_equal(orig, red)) {
        collect_strings(orig, out);
    } else if (json_is_object(orig) && json_is_object(red)) {
        const char *k;
        json_t *x;
        json_object_foreach(orig, k, x) removed_values(x, json_object_get(red, k), out);
    } else if (json_is_array(orig) && json_is_array(red)) {
        size_t i;
        json_t *x;
        json_array_foreach(orig, i, x) removed_values(x, json_array_get(red, i), out);
    }
}

/* The stored result must not keep what the arguments' redaction removed
 * (an upstream that echoes its input would hand it straight back). */
static char *mask_result(char *text, json_t *secrets)
{
    size_t i;
    json_t *v;
    json_array_foreach(secrets, i, v) {
        const char *needle = json_string_value(v);
        size_t nlen = strlen(needle);
        char *hit;
        while (text && (hit = strstr(text, needle))) {
            size_t before = (size_t)(hit - text), tail = strlen(hit + nlen);
            char *next = malloc(before + 10 + tail + 1);
            if (!next)
                break;
            memcpy(next, text, before);
            memcpy(next + before, "[redacted]", 10);
            memcpy(next + before + 10, hit + nlen, tail + 1);
            vault_wipe(text, strlen(text));
            free(text);
            text = next;
        }
    }
    return text;
}

static void finish_run(running *r, const call_result *res, const ferr *start_err)
{
    approvals *ap = r->ap;
    const ferr *e = res ? res->err : start_err;
    char *result = res && !e ? mask_result(json_dumps(res->result, JSON_TEXT), r->secrets) : NULL;
    char *error = NULL;
    if (e) {
        /* The error as a direct call would have answered it, with the
         * HTTP status it would have had. */
        json_t *ej = ferr_to_json(e);
        json_t *inner = json_object_get(ej, "error");
        json_object_set_new(inner, "status", json_integer(ferr_status(e)));
        error = json_dumps(inner, JSON_TEXT);
        json_decref(ej);
    }
    ferr se = {0};
    store_approval_finish(ap->db, r->id, e ? "failed" : "succeeded", result, error, &se);
    ferr_clear(&se);
    free(result);
    free(error);
    approval_row a;
    json_t *out = NULL;
    if (store_approval_get(ap->db, r->id, &a, &se) == 0) {
        out = to_json(&a);
        store_approval_clear(&a);
    }
    ferr_clear(&se);
    r->done(r->arg, out, NULL);
    json_decref(r->secrets);
    free(r);
}

static void on_run_done(void *arg, const call_result *res) { finish_run(arg, res, NULL); }

static int requester_may_run(approvals *ap, const approval_row *a, ferr *err)
{
    principal requester;
    if (store_principal_by_ids(ap->db, a->user_id, a->team_id, &requester) != 0)
        return ferr_set(err, FERR_FORBIDDEN, "the user who asked for approval %s is no longer in the team", a->id);
    provider_tool *t = providers_find_tool_for(ap->providers, a->tool, &requester);
    if (!t)
        return ferr_set(err, FERR_FORBIDDEN, "the tool %s of approval %s is no longer available", a->tool, a->id);
    if (ap->policy && policy_may_use(ap->policy, &requester, t->p, t, err) < 0) {
        char why[sizeof err->message];
        snprintf(why, sizeof why, "%s", err->message);
        ferr_clear(err);
        return ferr_set(err, FERR_FORBIDDEN, "the requester may no longer use %s: %s", a->tool, why);
    }
    return 0;
}

static int conflict(ferr *err, const char *id, const char *status)
{
    ferr_set(err, FERR_BAD_REQUEST, "approval %s is %s; it cannot be decided again", id, status);
    err->status = 409;
    ferr_detail(err, "status", json_string(status));
    return -1;
}

int approvals_decide(approvals *ap, const principal *who, const char *id, int approve, const char *reason,
                     const char *request_id, approval_done_fn done, void *arg, ferr *err)
{
    approval_row a;
    if (load_visible(ap, who, id, &a, err) < 0)
        return -1;
    int rc = -1;
    if (a.user_id != who->user_id && !who->is_admin) {
        ferr_set(err, FERR_FORBIDDEN, "only the requester or a team admin can decide approval %s", id);
        goto out;
    }
    if (strcmp(a.status, "pending") != 0) {
        conflict(err, id, a.status);
        goto out;
    }
    if (now_ms() >= a.expires_at) {
        /* Expired as the sweep expires them: the arguments and their key go. */
        store_approvals_expire(ap->db, now_ms(), err);
        ferr_clear(err);
        conflict(err, id, "expired");
        goto out;
    }
    /* The requester must still be allowed the tool: permissions revoked
     * since the request stop the write (it stays pending: an admin may
     * reject it, or it expires). */
    if (approve && requester_may_run(ap, &a, err) < 0)
        goto out;
    /* Exactly once: whoever moves it out of pending first wins. */
    int moved = store_approval_decide(ap->db, id, "pending", approve ? "running" : "rejected", who->user_id,
                                      reason, err);
    if (moved < 0)
        goto out;
    if (moved == 1) {
        approval_row now;
        const char *status = "decided";
        if (store_approval_get(ap->db, id, &now, err) == 0) {
            status = strcmp(now.status, "running") == 0 ? "approved" : now.status;
            conflict(err, id, status);
            store_approval_clear(&now);
        }
        goto out;
    }
    /* Fails closed: no audit row, no decision (it goes back to pending). */
    if (audit_decision(ap, who, &a, approve ? "approval.approved" : "approval.rejected",
                       approve ? "approved" : "rejected", request_id, reason, err) < 0) {
        ferr ignore = {0};
        store_approval_decide(ap->db, id, approve ? "running" : "rejected", "pending", 0, NULL, &ignore);
        ferr_clear(&ignore);
        goto out;
    }
    if (!approve) {
        ferr se = {0};
        store_approval_finish(ap->db, id, "rejected", NULL, NULL, &se);
        ferr_clear(&se);
        approval_row now;
        json_t *out = NULL;
        if (store_approval_get(ap->db, id, &now, &se) == 0) {
            out = to_json(&now);
            store_approval_clear(&now);
        }
        ferr_clear(&se);
        done(arg, out, NULL);
        rc = 0;
        goto out;
    }
    /* Run it as the requester, with their connection. */
    principal requester;
    running *r = calloc(1, sizeof *r);
    json_t *args = NULL;
    unsigned char dek[VAULT_KEY_LEN];
    char *plain = NULL;
    size_t plain_len = 0;
    ferr ve = {0};
    if (vault_data_key(ap->vault, id, a.wrapped_key, a.wrapped_len, dek, &ve) == 0 &&
        vault_unseal(dek, id, "arguments", a.sealed_arguments, a.sealed_len, &plain, &plain_len, &ve) == 0) {
        args = json_loadb(plain, plain_len, 0, NULL);
        vault_wipe(plain, plain_len);
        free(plain);
    }
    vault_wipe(dek, sizeof dek);
    vault_forget(ap->vault, id);
    ferr_clear(&ve);
    if (!r || !args || store_principal_by_ids(ap->db, a.user_id, a.team_id, &requester) != 0) {
        ferr se = {0};
        ferr_set(&se, FERR_INTERNAL, "the approved call could not be prepared");
        if (r) {
            snprintf(r->id, sizeof r->id, "%s", id);
            r->secrets = json_array();
            r->ap = ap;
            r->done = done;
            r->arg = arg;
            finish_run(r, NULL, &se);
        }
        ferr_clear(&se);
        json_decref(args);
        rc = r ? 0 : ferr_set(err, FERR_INTERNAL, "out of memory");
        goto out;
    }
    r->ap = ap;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->done = done;
    r->arg = arg;
    r->secrets = json_array();
    provider_tool *tool = providers_find_tool(ap->providers, a.tool);
    json_t *redacted = schema_redact(tool ? tool->input_schema : NULL, args);
    removed_values(args, redacted, r->secrets);
    json_decref(redacted);
    call_request req = {.tool = a.tool, .arguments = args, .connection_id = a.connection_id, .who = &requester,
                        .request_id = request_id, .approval_id = id};
    ferr start_err = {0};
    if (calls_start(ap->calls, &req, on_run_done, r, &start_err) < 0) {
        finish_run(r, NULL, &start_err);
        ferr_clear(&start_err);
    }
    json_decref(args);
    rc = 0;
out:
    store_approval_clear(&a);
    return rc;
}
