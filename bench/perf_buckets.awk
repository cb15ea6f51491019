# perf_buckets.awk: where ferry's CPU goes, from `perf script -F ip,sym`
# of a `perf record --call-graph dwarf` profile of ferry.
#
# Each sample is charged to one bucket: walking its stack from the leaf up,
# the first function that names a bucket below wins, so a callback nested in
# another bucket's function (a tool call's reply written from inside libcurl's
# completion callback, say) is charged to what it does, not to its caller.
# Samples with no bucket function on the stack are the event loop and
# libevent outside ferry's handlers (accepting, reading and parsing requests,
# writing responses, epoll).
#
#   perf script -i perf.data -F ip,sym | awk -f bench/perf_buckets.awk

BEGIN {
    split("curl_multi_socket_action curl_multi_add_handle curl_multi_remove_handle " \
          "curl_easy_init curl_easy_cleanup curl_easy_reset hclient_start socket_cb",
          a, " ")
    for (i in a) bucket[a[i]] = "upstream HTTP: libcurl and its syscalls (hclient)"
    split("keys_authenticate", a, " ")
    for (i in a) bucket[a[i]] = "API key check: SQLite lookup + SHA-256 per request"
    split("lua_resume lua_pcallk lua_ctx_push lua_json_push lua_json_from lhost_task_wake " \
          "push_ctx_and_args", a, " ")
    for (i in a) bucket[a[i]] = "Lua: running the tool, ctx and arguments, results"
    split("hreq_reply_json json_loadb json_dumps json_dumpb reply_call evhttp_send_reply", a, " ")
    for (i in a) bucket[a[i]] = "JSON: request parse, reply build and dump, evhttp_send_reply"
    split("schema_validate", a, " ")
    for (i in a) bucket[a[i]] = "argument validation (schema)"
    split("store_call_log_append calllog_flush calllog_append schema_redact finish", a, " ")
    for (i in a) bucket[a[i]] = "call accounting: call log (SQLite), redaction, metrics, logs"
    split("calls_start post_tools_call on_request lhost_task_start", a, " ")
    for (i in a) bucket[a[i]] = "request routing and call setup (on_request, calls_start)"
    split("evbuffer_read evhttp_request_new evhttp_connection_free accept4 epoll_wait " \
          "bufferevent_run_readcb_", a, " ")
    for (i in a) bucket[a[i]] = "inbound HTTP: libevent/evhttp, accept, epoll (outside handlers)"
    RS = ""     # one sample per blank-line separated record
    FS = "\n"
}

{
    found = ""
    for (i = 1; i <= NF; i++) {
        line = $i
        sub(/^[ \t]*[0-9a-f]+[ \t]+/, "", line)
        sub(/ \(inlined\)$/, "", line)
        sub(/\+0x[0-9a-f]+$/, "", line)
        if (line in bucket) {
            found = bucket[line]
            break
        }
    }
    if (found == "")
        found = "inbound HTTP: libevent/evhttp, accept, epoll (outside handlers)"
    n[found]++
    total++
}

END {
    for (b in n)
        printf "%6.1f%%  %s\n", 100 * n[b] / total, b | "sort -rn"
    close("sort -rn")
    printf "(%d samples)\n", total
}
