#include "mcpc_stdio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"

#define DEFAULT_MAX_LINE (16u << 20)
#define DEFAULT_GRACE_MS 2000L
#define REAP_POLL_MS 50
#define STDERR_TAIL 2048
#define SHUTDOWN_GRACE_MS 500L
/* After its stdout ends, how long to wait for the process's exit status
 * (it usually follows within a millisecond), polling. */
#define EXIT_WAIT_POLL_MS 5
#define EXIT_WAIT_POLLS 40

/* Variables a child may inherit from ferry's environment: what programs
 * need to run (an interpreter found through PATH, a home for caches, the
 * locale), nothing that could be a secret. */
static const char *const inherited_env[] = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", NULL};

int mcpc_stdio_inherits(const char *name)
{
    for (int i = 0; inherited_env[i]; i++)
        if (strcmp(inherited_env[i], name) == 0)
            return 1;
    return 0;
}

struct mcpc_stdio {
    struct event_base *base;
    pid_t pid;
    struct bufferevent *in, *out, *err;
    mcpc_stdio_cb cb;
    size_t max_line;
    long grace_ms;
    char tail[STDERR_TAIL];      /* the end of its stderr */
    size_t tail_len;
    int gone;
    int in_cb;
    int stop_requested;
    struct event *exit_wait;     /* stdout ended: waiting for the exit status */
    int exit_polls;
};

/* A process being stopped: it outlives its mcpc_stdio. */
typedef struct reaper {
    struct reaper *next;
    pid_t pid;
    struct event *timer;
    long grace_ms;
    long waited_ms;
    int signalled;               /* 0, SIGTERM, SIGKILL */
} reaper;

static reaper *reapers;

static void reaper_free(reaper *r)
{
    reaper **pp = &reapers;
    while (*pp && *pp != r)
        pp = &(*pp)->next;
    if (*pp)
        *pp = r->next;
    if (r->timer)
        event_free(r->timer);
    free(r);
}

static int reaped(reaper *r)
{
    int status;
    pid_t got = waitpid(r->pid, &status, WNOHANG);
    if (got == r->pid || (got < 0 && errno == ECHILD)) {
        /* What it left in its group (an npx wrapper's child) goes too. */
        kill(-r->pid, SIGKILL);
        return 1;
    }
    return 0;
}

/* Escalates after each grace period: stdin was closed at the start; then
 * SIGTERM; then SIGKILL. */
static void escalate(reaper *r)
{
    if (r->signalled == 0 && r->waited_ms >= r->grace_ms) {
        kill(-r->pid, SIGTERM);
        r->signalled = SIGTERM;
    } else if (r->signalled == SIGTERM && r->waited_ms >= 2 * r->grace_ms) {
        kill(-r->pid, SIGKILL);
        r->signalled = SIGKILL;
    }
}

static void on_reap_tick(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    reaper *r = arg;
    if (reaped(r)) {
        reaper_free(r);
        return;
    }
    r->waited_ms += REAP_POLL_MS;
    escalate(r);
    struct timeval tv = {0, REAP_POLL_MS * 1000};
    evtimer_add(r->timer, &tv);
}

size_t mcpc_stdio_stopping(void)
{
    size_t n = 0;
    for (reaper *r = reapers; r; r = r->next)
        n++;
    return n;
}

void mcpc_stdio_shutdown(void)
{
    for (reaper *r = reapers; r; r = r->next)
        if (r->timer) {
            event_free(r->timer);
            r->timer = NULL;
        }
    /* The loop has stopped: wait here, in short sleeps, for all of them
     * at once. */
    while (reapers) {
        for (reaper *r = reapers, *next; r; r = next) {
            next = r->next;
            if (reaped(r))
                reaper_free(r);
        }
        if (!reapers)
            break;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        for (reaper *r = reapers; r; r = r->next) {
            /* ferry is exiting: shorter patience than at run time. */
            if (r->grace_ms > SHUTDOWN_GRACE_MS)
                r->grace_ms = SHUTDOWN_GRACE_MS;
            r->waited_ms += 20;
            escalate(r);
        }
    }
}

pid_t mcpc_stdio_pid(const mcpc_stdio *p) { return p->pid; }

/* Frees a bufferevent and closes its pipe now: bufferevent_free alone
 * closes it only when the loop next runs, and at shutdown the loop has
 * stopped while the child waits for its stdin to close. */
static void close_bev(struct bufferevent *b)
{
    if (!b)
        return;
    evutil_socket_t fd = bufferevent_getfd(b);
    bufferevent_disable(b, EV_READ | EV_WRITE);
    bufferevent_setfd(b, -1);
    bufferevent_free(b);
    if (fd >= 0)
        close(fd);
}

static void release(mcpc_stdio *p)
{
    if (p->exit_wait)
        event_free(p->exit_wait);
    p->exit_wait = NULL;
    /* Closing its stdin is the first, polite, shutdown signal. */
    close_bev(p->in);
    close_bev(p->out);
    close_bev(p->err);
    p->in = p->out = p->err = NULL;
    if (p->pid > 0) {
        reaper *r = calloc(1, sizeof *r);
        if (r) {
            r->pid = p->pid;
            r->grace_ms = p->grace_ms;
            r->timer = evtimer_new(p->base, on_reap_tick, r);
            r->next = reapers;
            reapers = r;
            if (!reaped(r)) {
                struct timeval tv = {0, REAP_POLL_MS * 1000};
                evtimer_add(r->timer, &tv);
            } else {
                reaper_free(r);
            }
        } else {
            kill(-p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
        }
    }
    free(p);
}

void mcpc_stdio_stop(mcpc_stdio *p)
{
    if (!p)
        return;
    if (p->in_cb) {
        p->stop_requested = 1;   /* done when the callback returns */
        return;
    }
    release(p);
}

/* Runs a callback; 1 when the handle was stopped meanwhile (it is freed). */
static int after_cb(mcpc_stdio *p)
{
    p->in_cb--;
    if (p->in_cb == 0 && p->stop_requested) {
        release(p);
        return 1;
    }
    return 0;
}

static void went(mcpc_stdio *p, const char *what)
{
    if (p->gone)
        return;
    p->gone = 1;
    if (p->out)
        bufferevent_disable(p->out, EV_READ);
    char why[STDERR_TAIL + 256];
    int status;
    pid_t got = waitpid(p->pid, &status, WNOHANG);
    char how[96];
    if (got == p->pid) {
        if (WIFEXITED(status))
            snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(status));
        else
            snprintf(how, sizeof how, "ended");
        /* Reaped: what it left in its group goes too, and nothing is
         * left to stop. */
        kill(-p->pid, SIGKILL);
        p->pid = 0;
    } else {
        snprintf(how, sizeof how, "%s", what);
    }
    /* The last line of its stderr usually says why. */
    size_t end = p->tail_len;
    while (end && (p->tail[end - 1] == '\n' || p->tail[end - 1] == '\r'))
        end--;
    size_t start = end;
    while (start && p->tail[start - 1] != '\n')
        start--;
    if (end > start)
        snprintf(why, sizeof why, "the server process %s: %.*s", how, (int)(end - start), p->tail + start);
    else
        snprintf(why, sizeof why, "the server process %s", how);
    p->in_cb++;
    p->cb.gone(p->cb.arg, why);
    after_cb(p);
}

static void on_out_read(struct bufferevent *bev, void *arg)
{
    mcpc_stdio *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    p->in_cb++;
    while (!p->gone && !p->stop_requested) {
        size_t n = 0;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
        if (!line) {
            if (evbuffer_get_length(in) > p->max_line) {
                p->in_cb--;
                went(p, "wrote a line longer than ferry accepts");
                return;
            }
            break;
        }
        if (n && line[n - 1] == '\r')
            line[--n] = 0;
        if (n)
            p->cb.line(p->cb.arg, line, n);
        free(line);
    }
    after_cb(p);
}

/* Whether the child has exited, without reaping it (went() does). */
static int has_exited(const mcpc_stdio *p)
{
    siginfo_t info = {0};
    return p->pid > 0 && waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

static void on_exit_wait(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    mcpc_stdio *p = arg;
    if (!has_exited(p) && ++p->exit_polls < EXIT_WAIT_POLLS) {
        struct timeval tv = {0, EXIT_WAIT_POLL_MS * 1000};
        evtimer_add(p->exit_wait, &tv);
        return;
    }
    went(p, "closed its output");
}

/* A process that dies closes its stdout a moment before its exit status is
 * there to read: wait a little for it, so the error says how it ended. */
static void on_out_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    mcpc_stdio *p = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) || p->gone || p->exit_wait)
        return;
    bufferevent_disable(p->out, EV_READ);
    if (!has_exited(p))
        p->exit_wait = evtimer_new(p->base, on_exit_wait, p);
    if (!p->exit_wait) {
        went(p, "closed its output");
        return;
    }
    struct timeval tv = {0, EXIT_WAIT_POLL_MS * 1000};
    evtimer_add(p->exit_wait, &tv);
}

static void on_err_read(struct bufferevent *bev, void *arg)
{
    mcpc_stdio *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char chunk[1024];
    int n;
    while ((n = evbuffer_remove(in, chunk, sizeof chunk)) > 0) {
        size_t k = (size_t)n;   /* at most sizeof chunk, less than the tail */
        if (p->tail_len + k > STDERR_TAIL) {
            size_t drop = p->tail_len + k - STDERR_TAIL;
            memmove(p->tail, p->tail + drop, p->tail_len - drop);
            p->tail_len -= drop;
        }
        memcpy(p->tail + p->tail_len, chunk, k);
        p->tail_len += k;
    }
}

static void on_err_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    mcpc_stdio *p = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_disable(p->err, EV_READ);
}

static void on_in_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    (void)arg;
    /* A write that fails (EPIPE) means it is going away; its stdout's end
     * says so and how. */
}

int mcpc_stdio_write(mcpc_stdio *p, const char *msg, size_t len)
{
    if (p->gone || !p->in)
        return -1;
    struct evbuffer *out = bufferevent_get_output(p->in);
    if (evbuffer_add(out, msg, len) < 0 || evbuffer_add(out, "\n", 1) < 0)
        return -1;
    return 0;
}

static void close_pair(int fds[2])
{
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
}

mcpc_stdio *mcpc_stdio_start(struct event_base *base, const mcpc_stdio_config *cfg, const mcpc_stdio_cb *cb,
                             ferr *err)
{
    const char *prog = cfg->argv ? cfg->argv[0] : NULL;
    if (!prog || prog[0] != '/') {
        ferr_set(err, FERR_BAD_REQUEST, "the command must start with an absolute path");
        return NULL;
    }
    if (access(prog, X_OK) != 0) {
        ferr_set(err, FERR_UPSTREAM_ERROR, "cannot run %s: %s", prog, strerror(errno));
        return NULL;
    }
    /* Everything the child needs is built before fork: after it, only
     * async-signal-safe calls (libcurl's resolver may run threads). */
    size_t nargs = 0, nenv = 0;
    while (cfg->argv[nargs])
        nargs++;
    while (cfg->env && cfg->env[nenv])
        nenv++;
    char **argv = calloc(nargs + 1, sizeof *argv);
    char **envp = calloc(nenv + sizeof inherited_env / sizeof inherited_env[0] + 1, sizeof *envp);
    mcpc_stdio *p = calloc(1, sizeof *p);
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    if (!argv || !envp || !p) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nargs; i++)
        argv[i] = (char *)cfg->argv[i];
    size_t k = 0;
    for (int i = 0; inherited_env[i]; i++) {
        const char *v = getenv(inherited_env[i]);
        size_t nl = strlen(inherited_env[i]);
        int overridden = 0;
        for (size_t j = 0; j < nenv; j++)
            if (strncmp(cfg->env[j], inherited_env[i], nl) == 0 && cfg->env[j][nl] == '=')
                overridden = 1;
        if (!v || overridden)
            continue;
        char *kv = malloc(nl + strlen(v) + 2);
        if (!kv)
            continue;
        sprintf(kv, "%s=%s", inherited_env[i], v);
        envp[k++] = kv;
    }
    size_t own_from = k;
    for (size_t j = 0; j < nenv; j++)
        envp[k++] = (char *)cfg->env[j];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        ferr_set(err, FERR_INTERNAL, "cannot create pipes: %s", strerror(errno));
        goto fail_env;
    }
    pid_t pid = fork();
    if (pid < 0) {
        ferr_set(err, FERR_INTERNAL, "cannot start the server process: %s", strerror(errno));
        goto fail_env;
    }
    if (pid == 0) {
        /* Its own process group, so stopping it stops what it starts. */
        setsid();
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0)
            _exit(127);
        /* None of ferry's descriptors (database, sockets) go with it. */
        if (close_range(3, ~0U, 0) < 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        signal(SIGPIPE, SIG_DFL);   /* ferry ignores it; exec would keep that */
        if (cfg->cwd && chdir(cfg->cwd) < 0)
            _exit(127);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(errp[1]);
    for (size_t i = 0; i < own_from; i++)
        free(envp[i]);
    free(envp);
    free(argv);
    p->base = base;
    p->pid = pid;
    p->cb = *cb;
    p->max_line = cfg->max_line ? cfg->max_line : DEFAULT_MAX_LINE;
    p->grace_ms = cfg->grace_ms > 0 ? cfg->grace_ms : DEFAULT_GRACE_MS;
    evutil_make_socket_nonblocking(in[1]);
    evutil_make_socket_nonblocking(out[0]);
    evutil_make_socket_nonblocking(errp[0]);
    p->in = bufferevent_socket_new(base, in[1], BEV_OPT_CLOSE_ON_FREE);
    p->out = bufferevent_socket_new(base, out[0], BEV_OPT_CLOSE_ON_FREE);
    p->err = bufferevent_socket_new(base, errp[0], BEV_OPT_CLOSE_ON_FREE);
    if (!p->in || !p->out || !p->err) {
        if (!p->in)
            close(in[1]);
        if (!p->out)
            close(out[0]);
        if (!p->err)
            close(errp[0]);
        ferr_set(err, FERR_INTERNAL, "out of memory");
        release(p);
        return NULL;
    }
    bufferevent_setcb(p->in, NULL, NULL, on_in_event, p);
    bufferevent_setcb(p->out, on_out_read, NULL, on_out_event, p);
    bufferevent_setcb(p->err, on_err_read, NULL, on_err_event, p);
    bufferevent_enable(p->in, EV_WRITE);
    bufferevent_enable(p->out, EV_READ);
    bufferevent_enable(p->err, EV_READ);
    log_line *l = log_begin(LOG_INFO, "mcp server process started");
    log_str(l, "program", prog);
    log_int(l, "pid", (long long)pid);
    log_end(l);
    return p;

fail_env:
    close_pair(in);
    close_pair(out);
    close_pair(errp);
    for (size_t i = 0; i < own_from; i++)
        free(envp[i]);
fail:
    free(envp);
    free(argv);
    free(p);
    return NULL;
}
