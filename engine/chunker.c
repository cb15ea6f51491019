#include "chunker.h"

#include <stdlib.h>

static int is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }
static int is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

/* Where to end a chunk that starts at `start` and may not pass `limit`
 * (< len): after the last paragraph break, line break or space in the
 * chunk's last quarter, else at limit moved back to a character start. */
static size_t cut_point(const char *text, size_t start, size_t limit, size_t size)
{
    size_t floor = start + size - size / 4;
    size_t best_line = 0, best_space = 0;
    for (size_t i = limit; i > floor; i--) {
        char c = text[i - 1];
        if (c == '\n' && i >= 2 && text[i - 2] == '\n')
            return i;
        if (c == '\n' && !best_line)
            best_line = i;
        else if (is_space(c) && !best_space)
            best_space = i;
    }
    if (best_line)
        return best_line;
    if (best_space)
        return best_space;
    size_t end = limit;
    while (end > start + 1 && is_continuation((unsigned char)text[end]))
        end--;
    return end;
}

/* Where the next chunk starts: `overlap` bytes before `end`, moved forward
 * to the start of a word (or at least of a character). */
static size_t next_start(const char *text, size_t start, size_t end, size_t overlap)
{
    size_t next = end > start + overlap ? end - overlap : end;
    if (next <= start)
        next = end;
    size_t word = next;
    while (word < end && !is_space(text[word]))
        word++;
    while (word < end && is_space(text[word]))
        word++;
    if (word < end)
        return word;
    while (next < end && is_continuation((unsigned char)text[next]))
        next++;
    return next;
}

static int push(chunk_span **spans, size_t *cap, size_t n, size_t off, size_t len)
{
    if (n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        chunk_span *p = realloc(*spans, nc * sizeof *p);
        if (!p)
            return -1;
        *spans = p;
        *cap = nc;
    }
    (*spans)[n] = (chunk_span){off, len};
    return 0;
}

size_t chunker_split(const char *text, size_t len, size_t size, size_t overlap, chunk_span **spans, size_t *cap)
{
    if (size < CHUNKER_MIN_SIZE)
        size = CHUNKER_MIN_SIZE;
    if (overlap > size / 4)
        overlap = size / 4;
    size_t n = 0, start = 0;
    while (start < len) {
        if (len - start <= size) {
            if (push(spans, cap, n++, start, len - start) < 0)
                return (size_t)-1;
            break;
        }
        size_t end = cut_point(text, start, start + size, size);
        if (push(spans, cap, n++, start, end - start) < 0)
            return (size_t)-1;
        start = next_start(text, start, end, overlap);
    }
    return n;
}
