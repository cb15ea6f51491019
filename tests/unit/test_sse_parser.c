/* test_sse_parser — the event-stream parser against the WHATWG rules:
 * line ends of every kind (also split between pieces), fields, comments,
 * the BOM, the last event ID, retry, events without data, limits, and
 * that feeding byte by byte gives the same events as feeding at once. */
#include "sse_parser.h"
#include "testutil.h"

typedef struct seen {
    int n;
    char type[8][32];
    char data[8][256];
    char id[8][64];
    int stop_at;     /* stop after this many events (0: never) */
} seen;

static int on_event(void *arg, const sse_event *ev)
{
    seen *s = arg;
    if (s->n < 8) {
        snprintf(s->type[s->n], sizeof s->type[0], "%s", ev->type);
        snprintf(s->data[s->n], sizeof s->data[0], "%s", ev->data);
        snprintf(s->id[s->n], sizeof s->id[0], "%s", ev->id);
        CHECK_INT(strlen(ev->data), ev->data_len);
    }
    s->n++;
    return s->stop_at && s->n >= s->stop_at;
}

static int feed_all(seen *s, const char *text, size_t max)
{
    sse_parser *p = sse_parser_new(max, on_event, s);
    int rc = sse_parser_feed(p, text, strlen(text));
    sse_parser_free(p);
    return rc;
}

static void a_data_line_and_a_blank_line_make_one_message_event(void)
{
    seen s = {0};
    CHECK_INT(feed_all(&s, "data: hello\n\n", 0), 0);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.type[0], "message");
    CHECK_STR(s.data[0], "hello");
    CHECK_STR(s.id[0], "");
}

static void data_lines_join_with_lf_and_only_one_leading_space_goes(void)
{
    seen s = {0};
    CHECK_INT(feed_all(&s, "data:first\ndata:  second\ndata\n\n", 0), 0);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.data[0], "first\n second\n");
}

static void crlf_cr_and_lf_all_end_lines(void)
{
    seen s = {0};
    CHECK_INT(feed_all(&s, "data: a\r\n\r\ndata: b\r\rdata: c\n\n", 0), 0);
    CHECK_INT(s.n, 3);
    CHECK_STR(s.data[0], "a");
    CHECK_STR(s.data[1], "b");
    CHECK_STR(s.data[2], "c");
}

static void byte_by_byte_gives_the_same_events_even_with_split_crlf(void)
{
    const char *text = "\xef\xbb\xbf" "event: ping\r\nid: 7\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\r\ndata: x\r\n\r\n";
    seen whole = {0}, bytes = {0};
    CHECK_INT(feed_all(&whole, text, 0), 0);
    sse_parser *p = sse_parser_new(0, on_event, &bytes);
    for (const char *c = text; *c; c++)
        CHECK_INT(sse_parser_feed(p, c, 1), 0);
    sse_parser_free(p);
    CHECK_INT(whole.n, 2);
    CHECK_INT(bytes.n, 2);
    for (int i = 0; i < 2; i++) {
        CHECK_STR(bytes.type[i], whole.type[i]);
        CHECK_STR(bytes.data[i], whole.data[i]);
        CHECK_STR(bytes.id[i], whole.id[i]);
    }
    CHECK_STR(whole.type[0], "ping");
    CHECK_STR(whole.data[0], "{\"a\":1}");
    CHECK_STR(whole.id[0], "7");
    /* The last event ID outlives its event; the type does not. */
    CHECK_STR(whole.type[1], "message");
    CHECK_STR(whole.id[1], "7");
}

static void a_leading_bom_is_skipped_but_not_bytes_that_only_look_like_one(void)
{
    seen s = {0};
    CHECK_INT(feed_all(&s, "\xef\xbb\xbf" "data: x\n\n", 0), 0);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.data[0], "x");
    /* EF not followed by BB: the bytes are part of the first line, which
     * is then an unknown field and ignored, not swallowed silently into
     * the next line. */
    seen t = {0};
    CHECK_INT(feed_all(&t, "\xef" "data: y\n\ndata: z\n\n", 0), 0);
    CHECK_INT(t.n, 1);
    CHECK_STR(t.data[0], "z");
}

static void comments_and_unknown_fields_are_ignored(void)
{
    seen s = {0};
    CHECK_INT(feed_all(&s, ":comment\nfoo: bar\ndata: ok\n\n", 0), 0);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.data[0], "ok");
}

static void an_event_without_data_is_not_dispatched_but_its_id_is_kept(void)
{
    seen s = {0};
    CHECK_INT(feed_all(&s, "id: prime\n\nevent: endpoint\n\ndata: later\n\n", 0), 0);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.data[0], "later");
    CHECK_STR(s.type[0], "message");   /* the type of the dropped event does not carry over */
    CHECK_STR(s.id[0], "prime");
}

static void an_empty_data_field_is_an_event_with_empty_data(void)
{
    /* What server-everything sends first on a stream: an ID and no data. */
    seen s = {0};
    CHECK_INT(feed_all(&s, "id: abc\ndata: \n\n", 0), 0);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.data[0], "");
    CHECK_STR(s.id[0], "abc");
}

static void an_id_with_a_nul_is_ignored(void)
{
    seen s = {0};
    sse_parser *p = sse_parser_new(0, on_event, &s);
    const char text[] = "id: good\n\nid: b\0d\ndata: x\n\n";
    CHECK_INT(sse_parser_feed(p, text, sizeof text - 1), 0);
    CHECK_STR(sse_parser_last_id(p), "good");
    sse_parser_free(p);
    CHECK_INT(s.n, 1);
    CHECK_STR(s.id[0], "good");
}

static void retry_takes_digits_only(void)
{
    seen s = {0};
    sse_parser *p = sse_parser_new(0, on_event, &s);
    CHECK_INT(sse_parser_retry_ms(p), -1);
    CHECK_INT(sse_parser_feed(p, "retry: 2500\n", 12), 0);
    CHECK_INT(sse_parser_retry_ms(p), 2500);
    CHECK_INT(sse_parser_feed(p, "retry: 12ms\nretry:\n", 19), 0);
    CHECK_INT(sse_parser_retry_ms(p), 2500);
    sse_parser_free(p);
}

static void an_unfinished_event_at_the_end_is_dropped(void)
{
    seen s = {0};
    CHECK_INT(feed_all(&s, "data: done\n\ndata: never finished\n", 0), 0);
    CHECK_INT(s.n, 1);
}

static void a_line_or_event_over_the_limit_breaks_the_stream(void)
{
    seen s = {0};
    sse_parser *p = sse_parser_new(16, on_event, &s);
    CHECK_INT(sse_parser_feed(p, "data: 0123456789abcdef\n\n", 24), -1);
    CHECK_INT(sse_parser_feed(p, "data: x\n\n", 9), -1);   /* stays broken */
    sse_parser_free(p);
    CHECK_INT(s.n, 0);
    /* Many short data lines add up to one event over the limit too. */
    seen t = {0};
    CHECK_INT(feed_all(&t, "data: 12345\ndata: 12345\ndata: 12345\n\n", 16), -1);
    CHECK_INT(t.n, 0);
}

static void the_callback_can_stop_parsing(void)
{
    seen s = {.stop_at = 1};
    sse_parser *p = sse_parser_new(0, on_event, &s);
    CHECK_INT(sse_parser_feed(p, "data: 1\n\ndata: 2\n\n", 18), 1);
    CHECK_INT(sse_parser_feed(p, "data: 3\n\n", 9), 1);
    sse_parser_free(p);
    CHECK_INT(s.n, 1);
}

TESTS(TEST(a_data_line_and_a_blank_line_make_one_message_event),
      TEST(data_lines_join_with_lf_and_only_one_leading_space_goes), TEST(crlf_cr_and_lf_all_end_lines),
      TEST(byte_by_byte_gives_the_same_events_even_with_split_crlf),
      TEST(a_leading_bom_is_skipped_but_not_bytes_that_only_look_like_one),
      TEST(comments_and_unknown_fields_are_ignored),
      TEST(an_event_without_data_is_not_dispatched_but_its_id_is_kept),
      TEST(an_empty_data_field_is_an_event_with_empty_data), TEST(an_id_with_a_nul_is_ignored),
      TEST(retry_takes_digits_only), TEST(an_unfinished_event_at_the_end_is_dropped),
      TEST(a_line_or_event_over_the_limit_breaks_the_stream), TEST(the_callback_can_stop_parsing))
