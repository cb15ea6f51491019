/* chunker — splitting a record's text into the pieces search indexes
 * (document_chunks): at most `size` bytes each, each starting about
 * `overlap` bytes before the previous one ended, so a phrase cut at a
 * boundary is still found whole in one of them.
 *
 * Cuts fall at a paragraph break, else a line break, else a space, within
 * the last quarter of a chunk when there is one, and never inside a UTF-8
 * sequence. Chunks are spans of the caller's text: nothing is copied. */
#ifndef FERRY_CHUNKER_H
#define FERRY_CHUNKER_H

#include <stddef.h>

#define CHUNKER_MIN_SIZE 64

typedef struct chunk_span {
    size_t off, len;
} chunk_span;

/* Splits text[0..len) into *spans (grown with realloc as needed; *cap is
 * its capacity, both may start at NULL/0; the caller frees *spans). Empty
 * text gives no chunk. `size` below CHUNKER_MIN_SIZE is raised to it, and
 * `overlap` is capped at a quarter of size. Returns the number of chunks,
 * or (size_t)-1 when out of memory. */
size_t chunker_split(const char *text, size_t len, size_t size, size_t overlap, chunk_span **spans, size_t *cap);

#endif
