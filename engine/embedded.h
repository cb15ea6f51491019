/* embedded — the Lua files built into the binary (bundled providers/ and
 * scripts/), generated at build time by cmake/embed.cmake. */
#ifndef FERRY_EMBEDDED_H
#define FERRY_EMBEDDED_H
#include <stddef.h>

typedef struct embedded_file {
    const char *path;   /* relative to the source tree, e.g. "providers/x.lua" */
    const char *data;   /* NUL-terminated */
    size_t len;
} embedded_file;

/* Terminated by an entry whose path is NULL. */
extern const embedded_file embedded_files[];

#endif
