/* mcpc_stdio — an MCP server run as a child process (the stdio transport):
 * started with fork/exec in a process group of its own, with a clean
 * environment (a few harmless variables plus what its registration sets:
 * never ferry's own, which may hold FERRY_MASTER_KEY) and no descriptor of
 * ferry's but its three pipes. Newline-delimited messages are written to
 * its stdin and read from its stdout through libevent bufferevents, so the
 * loop never blocks on it. The tail of its stderr is kept to explain an
 * unexpected exit.
 *
 * Stopping follows the spec's shutdown: close its stdin, wait, SIGTERM,
 * wait, SIGKILL (the whole process group: an npx wrapper's node child
 * goes too), and reap it. At run time that happens on timers; at shutdown
 * mcpc_stdio_shutdown waits for the stragglers. */
#ifndef FERRY_MCPC_STDIO_H
#define FERRY_MCPC_STDIO_H

#include <stddef.h>
#include <sys/types.h>

#include <event2/event.h>

#include "ferr.h"

typedef struct mcpc_stdio mcpc_stdio;

typedef struct mcpc_stdio_cb {
    void *arg;
    /* One line of its stdout, without the line end (borrowed). */
    void (*line)(void *arg, const char *line, size_t len);
    /* It closed its stdout or exited: no more lines, no more writes. The
     * process is being stopped and reaped; free the handle with
     * mcpc_stdio_stop. `why` says how it ended, with the tail of its
     * stderr. */
    void (*gone)(void *arg, const char *why);
} mcpc_stdio_cb;

typedef struct mcpc_stdio_config {
    const char *const *argv;     /* argv[0] an absolute path */
    const char *const *env;      /* "NAME=value" set for it, besides PATH, HOME, LANG, LC_ALL, TZ, TMPDIR */
    const char *cwd;             /* NULL: ferry's */
    size_t max_line;             /* 0 → 16 MiB */
    long grace_ms;               /* between the steps of stopping; 0 → 2000 */
} mcpc_stdio_config;

mcpc_stdio *mcpc_stdio_start(struct event_base *base, const mcpc_stdio_config *cfg, const mcpc_stdio_cb *cb,
                             ferr *err);
/* Writes one message and a newline. -1 once it is gone. */
int mcpc_stdio_write(mcpc_stdio *p, const char *msg, size_t len);
pid_t mcpc_stdio_pid(const mcpc_stdio *p);
/* Whether a child gets `name` from ferry's own environment (PATH, HOME...). */
int mcpc_stdio_inherits(const char *name);
/* Stops it (close stdin, SIGTERM, SIGKILL as needed, on timers) and frees
 * the handle: no callback runs after this. */
void mcpc_stdio_stop(mcpc_stdio *p);
/* Processes still being stopped (diagnostics and tests). */
size_t mcpc_stdio_stopping(void);
/* At exit: ends every process still being stopped, waiting at most a grace
 * period before each signal. */
void mcpc_stdio_shutdown(void);

#endif
