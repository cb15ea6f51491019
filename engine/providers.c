#include "providers.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "log.h"
#include "metrics.h"

struct providers {
    provider **items;
    size_t n, cap;
    json_t *broken;
    /* Sorted tool names for binary search; rebuilt when a provider comes
     * or goes at run time (a tool never moves while its provider lives). */
    provider_tool **tools;
    size_t ntools;
};

static int add(providers *ps, provider *p)
{
    p->refs = 1;   /* the index's */
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        provider **items = realloc(ps->items, cap * sizeof *items);
        if (!items)
            return -1;
        ps->items = items;
        ps->cap = cap;
    }
    ps->items[ps->n++] = p;
    return 0;
}

static void report_broken(providers *ps, const char *source, json_t *problems)
{
    log_line *l = log_begin(LOG_ERROR, "provider skipped");
    log_str(l, "source", source);
    char *text = json_dumps(problems, JSON_COMPACT);
    log_str(l, "problems", text);
    free(text);
    log_end(l);
    json_array_append_new(ps->broken, json_pack("{s:s, s:O}", "source", source, "problems", problems));
}

static void load_one(providers *ps, const char *source, const char *src, size_t len, const lhost_limits *limits)
{
    json_t *problems = json_array();
    provider *p = NULL;
    if (provider_load(source, src, len, limits, &p, problems) == 0) {
        provider *dup = providers_find(ps, p->slug);
        if (dup) {
            json_array_append_new(problems, json_sprintf("slug '%s' is already used by %s", p->slug, dup->source));
            provider_free(p);
            p = NULL;
        }
    }
    if (p && add(ps, p) < 0) {
        provider_free(p);
        p = NULL;
        json_array_append_new(problems, json_string("out of memory"));
    }
    if (!p)
        report_broken(ps, source, problems);
    json_decref(problems);
}

static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 8192) {
            cap = cap ? cap * 2 : 16384;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp((*(const char *const *)a), (*(const char *const *)b));
}

static int load_dir(providers *ps, const char *dir, const lhost_limits *limits, ferr *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return ferr_set(err, FERR_BAD_REQUEST, "cannot read providers folder %s: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0 || e->d_name[0] == '.')
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn)
            break;
        names = nn;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    /* Sorted, so which of two duplicate slugs wins does not depend on the
     * file system. */
    qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *src = read_whole(path, &len);
        if (!src) {
            json_t *problems = json_pack("[s]", strerror(errno));
            report_broken(ps, path, problems);
            json_decref(problems);
        } else {
            load_one(ps, path, src, len, limits);
            free(src);
        }
        free(names[i]);
    }
    free(names);
    return 0;
}

static int cmp_tools(const void *a, const void *b)
{
    return strcmp((*(provider_tool *const *)a)->full_name, (*(provider_tool *const *)b)->full_name);
}

static int index_tools(providers *ps)
{
    free(ps->tools);
    ps->tools = NULL;
    ps->ntools = 0;
    size_t total = 0;
    for (size_t i = 0; i < ps->n; i++)
        total += ps->items[i]->ntools;
    ps->tools = calloc(total ? total : 1, sizeof *ps->tools);
    if (!ps->tools)
        return -1;
    for (size_t i = 0; i < ps->n; i++)
        for (size_t k = 0; k < ps->items[i]->ntools; k++)
            ps->tools[ps->ntools++] = &ps->items[i]->tools[k];
    qsort(ps->tools, ps->ntools, sizeof *ps->tools, cmp_tools);
    return 0;
}

static int apply_override(providers *ps, const char *spec, ferr *err)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec)
        return ferr_set(err, FERR_BAD_REQUEST, "--base-url wants SLUG=URL, got '%s'", spec);
    char slug[64];
    snprintf(slug, sizeof slug, "%.*s", (int)(eq - spec), spec);
    provider *p = providers_find(ps, slug);
    if (!p) {
        log_line *l = log_begin(LOG_WARN, "base URL override for a provider that is not loaded");
        log_str(l, "provider", slug);
        log_end(l);
        return 0;
    }
    return provider_override_base_url(p, eq + 1, err);
}

int providers_load(const providers_options *opts, providers **out, ferr *err)
{
    providers *ps = calloc(1, sizeof *ps);
    if (!ps)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    ps->broken = json_array();
    *out = ps;
    if (!opts->skip_bundled)
        for (const embedded_file *f = embedded_files; f->path; f++)
            if (strncmp(f->path, "providers/", 10) == 0 && strchr(f->path + 10, '/') == NULL)
                load_one(ps, f->path, f->data, f->len, &opts->limits);
    for (const char *const *d = opts->dirs; d && *d; d++)
        if (load_dir(ps, *d, &opts->limits, err) < 0)
            return -1;
    for (const char *const *o = opts->base_urls; o && *o; o++)
        if (apply_override(ps, *o, err) < 0)
            return -1;
    if (index_tools(ps) < 0)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    return 0;
}

void providers_free(providers *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < ps->n; i++)
        provider_unref(ps->items[i]);
    free(ps->items);
    free(ps->tools);
    json_decref(ps->broken);
    free(ps);
}

size_t providers_count(const providers *ps) { return ps->n; }
provider *providers_at(const providers *ps, size_t i) { return i < ps->n ? ps->items[i] : NULL; }
json_t *providers_broken(const providers *ps) { return ps->broken; }

provider *providers_find(const providers *ps, const char *slug)
{
    for (size_t i = 0; i < ps->n; i++)
        if (strcmp(ps->items[i]->slug, slug) == 0)
            return ps->items[i];
    return NULL;
}

int providers_visible(const provider *p, const principal *who)
{
    return !p->team_id || !who || who->team_id == p->team_id;
}

provider_tool *providers_find_tool_for(const providers *ps, const char *full_name, const principal *who)
{
    provider_tool *t = providers_find_tool(ps, full_name);
    return t && providers_visible(t->p, who) ? t : NULL;
}

int providers_put(providers *ps, provider *p, ferr *err)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (strcmp(ps->items[i]->slug, p->slug) != 0)
            continue;
        if (!ps->items[i]->runner)
            return ferr_set(err, FERR_BAD_REQUEST, "the slug '%s' belongs to the provider %s", p->slug,
                            ps->items[i]->source);
        provider_unref(ps->items[i]);
        p->refs = 1;
        ps->items[i] = p;
        if (index_tools(ps) < 0)
            return ferr_set(err, FERR_INTERNAL, "out of memory");
        return 0;
    }
    if (add(ps, p) < 0 || index_tools(ps) < 0)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    return 0;
}

void providers_remove(providers *ps, const char *slug)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (strcmp(ps->items[i]->slug, slug) != 0 || !ps->items[i]->runner)
            continue;
        provider_unref(ps->items[i]);
        memmove(&ps->items[i], &ps->items[i + 1], (ps->n - i - 1) * sizeof *ps->items);
        ps->n--;
        index_tools(ps);
        return;
    }
}

provider_tool *providers_find_tool(const providers *ps, const char *full_name)
{
    size_t lo = 0, hi = ps->ntools;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ps->tools[mid]->full_name, full_name);
        if (c == 0)
            return ps->tools[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void providers_update_metrics(const providers *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        if (ps->items[i]->host)
            metrics_set(METRIC_LUA_MEMORY_BYTES, (double)lhost_memory(ps->items[i]->host), ps->items[i]->slug, NULL);
}
