-- providers/slack.lua against a Prism mock of Slack's Web API description
-- (slackapi/slack-api-specs, Swagger 2.0), through the recording tap proxy.
--
-- Static mode: the description has full examples (#general and #random,
-- two messages, a search with two matches, a posted message), and Prism
-- checks every request against it, the Bearer token included (a request
-- without `Authorization` gets 401). Quirks worked around here:
--   * the description models the token as a `token` header on some methods
--     (auth.test, chat.postMessage) and a required `token` query parameter on
--     others (search.messages). ferry sends it only as `Authorization:
--     Bearer`, as Slack takes it; the tap adds both forms to what it forwards
--     to Prism (never to what it records, which the tests check);
--   * chat.postMessage's arguments are form fields; the provider sends them
--     form-encoded (Slack takes JSON too, Prism does not);
--   * Prism's static answers repeat their next_cursor whatever cursor is
--     sent: a walk stops on the repeated cursor, which the tests use.
-- Slack's errors (HTTP 200 with ok:false, 429 with Retry-After) and the
-- timeout come from canned tap replies. The messages sync runs in the
-- engine (POST /v1/syncs/{connection}/messages/run) against the same Prism,
-- so its requests are validated too, and its records are then found by
-- GET /v1/search (its logic in detail: tests/lua/slack_sync_spec.lua).
local h = require "helper"
local mime = require "mime"

local SLUG = "slack"
local TOKEN = "xoxb-1234-5678-test9b2c"
local SECRET = "slack-client-secret-5e1f"

local function page(channels, next_cursor)
  return {status = 200, json = {ok = true, channels = channels,
                                response_metadata = {next_cursor = next_cursor or ""}}}
end

local function chan(id, name, member)
  return {id = id, name = name, is_channel = true, is_member = member ~= false, is_private = false,
          is_archived = false, num_members = 3, created = 1449252889}
end

describe("provider slack", function()
  local prism, tap, srv, key, admin, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args,
                       {connection_id = connection_id or conn.id, approver = admin})
  end

  local function assert_slack_request(sent, method, path)
    assert.are.equal(method, sent.method)
    assert.are.equal(path, sent.path)
    assert.are.equal("Bearer " .. TOKEN, sent.headers.authorization)
    assert.is_nil(sent.headers.token, "the token travels only in Authorization")
    assert.is_nil(h.parse_query(sent.query).token)
  end

  local function new_connection(label)
    local status, c = h.connect(srv, key, {integration = SLUG, credentials = {access_token = TOKEN},
                                           scope = "user", label = label, verify = false})
    assert.are.equal(201, status)
    return c
  end

  setup(function()
    prism = h.start_prism(h.api_spec("slack/slack_web_openapi_v2.json"))
    tap = h.start_tap(prism.url)
    tap.add({headers = {token = TOKEN}, query = {token = TOKEN}})
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("alice", "acme")
    admin = srv.key("root", "acme", "admin")
    connected = {h.connect(srv, key, {integration = SLUG, credentials = {access_token = TOKEN},
                                      scope = "user", label = "Slack test"})}
    conn = connected[2]
    connected.requests = tap.requests()
  end)

  teardown(function()
    if srv then srv.stop() end
    if tap then tap.stop() end
    if prism then prism.stop() end
  end)

  before_each(function()
    tap.replies({})
    tap.clear()
  end)

  it("is listed as an oauth2 communication integration with five tools", function()
    local status, body = srv.get("/v1/integrations", key)
    assert.are.equal(200, status)
    local entry
    for _, i in ipairs(body.integrations or body) do
      if i.slug == SLUG then entry = i end
    end
    assert.is_table(entry)
    assert.are.equal("oauth2", entry.method)
    assert.are.equal("communication", entry.category)
    assert.are.same({"communications"}, entry.data_categories)
    assert.are.equal(5, entry.tools_count)
  end)

  it("connects with an imported token after auth.test, and labels the connection with team and user", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal("Subarachnoid Workspace (grace)", conn.account_label)
    assert.is_nil(conn.credentials)
    assert.is_nil(connected[3]:find(TOKEN, 1, true))
    assert.are.equal(1, #connected.requests)
    assert_slack_request(connected.requests[1], "GET", "/auth.test")
  end)

  it("list_channels reads conversations.list and shapes the channels", function()
    local status, body = call("list_channels", {limit = 2})
    assert.are.equal(200, status, h.json.encode(body))
    local result = body.result
    assert.are.equal(2, #result.channels)
    assert.are.same({id = "C012AB3CD", name = "general", topic = "Company-wide announcements and work-based matters",
                     purpose = "This channel is for team-wide communication and announcements. All team members " ..
                               "are in this channel.",
                     members = 4, private = false, archived = false, is_member = true,
                     created = "2015-12-04T18:14:49Z"}, result.channels[1])
    assert.are.equal("random", result.channels[2].name)
    assert.are.equal("dGVhbTpDMDYxRkE1UEI=", result.next_cursor)
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_slack_request(sent[1], "GET", "/conversations.list")
    assert.are.same({types = {"public_channel,private_channel"}, exclude_archived = {"true"}, limit = {"2"}},
                    h.parse_query(sent[1].query))
  end)

  it("list_channels follows next_cursor and stops when Slack repeats it", function()
    local status, body = call("list_channels", {limit = 10, types = {"public_channel"}, include_archived = true})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(4, #body.result.channels, "two pages of Prism's two channels")
    assert.is_nil(body.result.next_cursor)
    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert.are.same({types = {"public_channel"}, exclude_archived = {"false"}, limit = {"10"}},
                    h.parse_query(sent[1].query))
    assert.are.same({types = {"public_channel"}, exclude_archived = {"false"}, limit = {"8"},
                     cursor = {"dGVhbTpDMDYxRkE1UEI="}}, h.parse_query(sent[2].query))
  end)

  it("list_channels asks only for what is left of the limit and returns where to continue", function()
    tap.replies({
      page({chan("C1", "one"), chan("C2", "two", false), chan("C3", "three")}, "c2"),
      page({chan("C4", "four")}, "c3"),
    })
    local status, body = call("list_channels", {limit = 4})
    assert.are.equal(200, status, h.json.encode(body))
    local names = {}
    for i, c in ipairs(body.result.channels) do names[i] = c.name end
    assert.are.same({"one", "two", "three", "four"}, names)
    assert.are.equal("c3", body.result.next_cursor)
    local sent = tap.requests()
    assert.are.same({"4", "1"}, {h.parse_query(sent[1].query).limit[1], h.parse_query(sent[2].query).limit[1]})
    assert.are.equal("c2", h.parse_query(sent[2].query).cursor[1])

    -- member_only keeps the channels the app is in; the limit counts those
    tap.clear()
    tap.replies({page({chan("C1", "one"), chan("C2", "two", false)}, "c2"), page({chan("C3", "three")})})
    status, body = call("list_channels", {member_only = true, cursor = "c1"})
    assert.are.equal(200, status, h.json.encode(body))
    names = {}
    for i, c in ipairs(body.result.channels) do names[i] = c.name end
    assert.are.same({"one", "three"}, names)
    assert.is_nil(body.result.next_cursor)
    assert.are.equal("c1", h.parse_query(tap.requests()[1].query).cursor[1])
  end)

  it("channel_history reads conversations.history: plain text, times, next_cursor", function()
    local status, body = call("channel_history", {channel = "C012AB3CD", limit = 2})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal("C012AB3CD", r.channel)
    assert.are.same({ts = "1512085950.000216", time = "2017-11-30T23:52:30Z", user = "U012AB3CDE",
                     text = "I find you punny and would like to smell your nose letter"}, r.messages[1])
    assert.are.equal(2, #r.messages)
    assert.are.equal("bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz", r.next_cursor)
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_slack_request(sent[1], "GET", "/conversations.history")
    assert.are.same({channel = {"C012AB3CD"}, limit = {"2"}}, h.parse_query(sent[1].query))
  end)

  it("channel_history takes oldest/latest as Slack timestamps or RFC 3339 times", function()
    tap.replies({{status = 200, json = {ok = true, has_more = false, messages = {
      {type = "message", ts = "1714982400.000100", user = "U1",
       text = "see <https://example.com/x|the plan> <@U2> &lt;3", thread_ts = "1714982400.000100",
       reply_count = 2, latest_reply = "1714982500.000200", edited = {user = "U1", ts = "1714982460.000000"},
       reactions = {{name = "tada", count = 2, users = {"U2", "U3"}}}},
      {type = "message", subtype = "bot_message", ts = "1714982300.000100", bot_id = "B1", username = "deploy",
       text = "deployed", files = {{name = "log.txt", title = "Log", filetype = "text"}}},
    }}}})
    local status, body = call("channel_history", {channel = "C012AB3CD", oldest = "2024-05-06T00:00:00Z",
                                                  latest = "1714990000.5", inclusive = true})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({
      {ts = "1714982400.000100", time = "2024-05-06T08:00:00Z", user = "U1",
       text = "see the plan (https://example.com/x) @U2 <3", thread_ts = "1714982400.000100", reply_count = 2,
       latest_reply = "1714982500.000200", edited_at = "2024-05-06T08:01:00Z",
       reactions = {{name = "tada", count = 2}}},
      {ts = "1714982300.000100", time = "2024-05-06T07:58:20Z", username = "deploy", bot_id = "B1",
       subtype = "bot_message", text = "deployed", files = {{name = "log.txt", title = "Log", type = "text"}}},
    }, body.result.messages)
    assert.is_nil(body.result.next_cursor)
    assert.are.same({channel = {"C012AB3CD"}, oldest = {"1714953600"}, latest = {"1714990000.5"},
                     inclusive = {"true"}, limit = {"50"}}, h.parse_query(tap.last().query))
  end)

  it("thread_replies reads conversations.replies", function()
    local status, body = call("thread_replies", {channel = "C012AB3CD", thread_ts = "1482960137.003543", limit = 4})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal(4, #r.messages)
    assert.are.same({"island", "one island", "two island", "three for the land"},
                    {r.messages[1].text, r.messages[2].text, r.messages[3].text, r.messages[4].text})
    assert.are.equal(3, r.messages[1].reply_count)
    assert.are.equal("bmV4dF90czoxNDg0Njc4MjkwNTE3MDkx", r.next_cursor)
    local sent = tap.last()
    assert_slack_request(sent, "GET", "/conversations.replies")
    assert.are.same({channel = {"C012AB3CD"}, ts = {"1482960137.003543"}, limit = {"4"}}, h.parse_query(sent.query))
  end)

  it("search_messages reads search.messages with a fixed page size", function()
    local status, body = call("search_messages", {query = "meaning in:#general", sort = "timestamp",
                                                  sort_dir = "asc"})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal(2, r.total)
    assert.are.equal(2, #r.matches)
    assert.are.same({channel_id = "C12345678", channel = "general", ts = "1508284197.000015",
                     time = "2017-10-17T23:49:57Z", user = "U2U85N1RV", username = "roach",
                     text = "The meaning of life the universe and everything is 42.",
                     permalink = "https://hitchhikers.slack.com/archives/C12345678/p1508284197000015"}, r.matches[1])
    assert.is_nil(r.next_cursor)
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_slack_request(sent[1], "GET", "/search.messages")
    assert.are.same({query = {"meaning in:#general"}, sort = {"timestamp"}, sort_dir = {"asc"}, count = {"100"},
                     page = {"1"}}, h.parse_query(sent[1].query))
  end)

  it("search_messages cuts a page to the limit and continues inside it", function()
    local function results(page_number, from, to)
      local matches = {}
      for i = from, to do
        matches[#matches + 1] = {channel = {id = "C1", name = "general"}, ts = string.format("1700000000.%06d", i),
                                 user = "U1", text = "hit " .. i}
      end
      return {status = 200, json = {ok = true, query = "hit", messages = {
        total = 105, matches = matches, paging = {count = 100, page = page_number, pages = 2, total = 105}}}}
    end
    tap.replies({results(1, 1, 100)})
    local status, body = call("search_messages", {query = "hit", limit = 2})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(105, body.result.total)
    assert.are.same({"hit 1", "hit 2"}, {body.result.matches[1].text, body.result.matches[2].text})
    assert.are.equal("1#skip=2", body.result.next_cursor)

    tap.clear()
    tap.replies({results(1, 1, 100), results(2, 101, 105)})
    status, body = call("search_messages", {query = "hit", limit = 100, cursor = "1#skip=2"})
    assert.are.equal(200, status, h.json.encode(body))
    local m = body.result.matches
    assert.are.equal(100, #m)
    assert.are.same({"hit 3", "hit 100", "hit 101", "hit 102"}, {m[1].text, m[98].text, m[99].text, m[100].text})
    assert.are.equal("2#skip=2", body.result.next_cursor)
    local sent = tap.requests()
    assert.are.same({"1", "2"}, {h.parse_query(sent[1].query).page[1], h.parse_query(sent[2].query).page[1]})
  end)

  it("search_messages with a bot token explains the need for a user token and leaves the connection active",
     function()
    tap.replies({{status = 200, json = {ok = false, error = "not_allowed_token_type"}}})
    local status, body = call("search_messages", {query = "anything"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("not_allowed_token_type", body.error.details.upstream_code)
    assert.is_truthy(body.error.message:find("user token", 1, true), body.error.message)
    local _, list = srv.get("/v1/connections", key)
    for _, c in ipairs(list.connections) do
      if c.id == conn.id then assert.are.equal("active", c.status) end
    end
  end)

  it("search_messages sends an imported user token; every other tool the bot token", function()
    local user_token = "xoxp-9999-8888-imported-user"
    local status, c = h.connect(srv, key, {integration = SLUG, scope = "user", label = "with user token",
                                           credentials = {access_token = TOKEN, user_token = user_token},
                                           verify = false})
    assert.are.equal(201, status)
    local st = call("search_messages", {query = "meaning"}, c.id)
    assert.are.equal(200, st)
    assert.are.equal("Bearer " .. user_token, tap.last().headers.authorization)
    st = call("list_channels", {limit = 1}, c.id)
    assert.are.equal(200, st)
    assert.are.equal("Bearer " .. TOKEN, tap.last().headers.authorization)
    -- Only the fields the provider declares are credentials.
    status = h.connect(srv, key, {integration = SLUG, credentials = {access_token = TOKEN, id_token = "x"},
                                  verify = false})
    assert.are.equal(400, status)
  end)

  it("post_message waits for approval, then posts the form-encoded message", function()
    local status, body = h.request("POST", srv.url .. "/v1/tools/call", {
      json = {name = "slack__post_message", connection_id = conn.id,
              arguments = {channel = "C012AB3CD", text = "Standup in 5 minutes: <!here> & bring notes"}},
      headers = {authorization = "Bearer " .. key}})
    assert.are.equal(202, status)
    local approval = h.decode(body).approval
    assert.are.equal("pending", approval.status)
    assert.are.equal("Post to Slack channel C012AB3CD: Standup in 5 minutes: <!here> & bring notes", approval.summary)
    assert.are.same({}, tap.requests(), "nothing is sent before the approval")

    local st = h.request("POST", srv.url .. "/v1/approvals/" .. approval.id .. "/approve",
                         {json = {}, headers = {authorization = "Bearer " .. admin}})
    assert.are.equal(200, st)
    local _, decided = srv.get("/v1/approvals/" .. approval.id, admin)
    decided = decided.approval or decided
    assert.are.equal("succeeded", decided.status, h.json.encode(decided))
    assert.are.same({channel = "C1H9RESGL", ts = "1503435956.000247", text = "Here's a message for you"},
                    decided.result)

    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_slack_request(sent[1], "POST", "/chat.postMessage")
    assert.are.equal("application/x-www-form-urlencoded", sent[1].headers["content-type"])
    assert.are.same({channel = {"C012AB3CD"}, text = {"Standup in 5 minutes: <!here> & bring notes"}},
                    h.parse_query(sent[1].body))
  end)

  it("post_message's approval summary cuts a long text on a character boundary", function()
    local text = string.rep("é", 150)                 -- 300 bytes; a summary value keeps at most 199
    local status, body = h.request("POST", srv.url .. "/v1/tools/call", {
      json = {name = "slack__post_message", connection_id = conn.id, arguments = {channel = "C012AB3CD", text = text}},
      headers = {authorization = "Bearer " .. key}})
    assert.are.equal(202, status, body)
    local approval = h.decode(body).approval
    assert.are.equal("Post to Slack channel C012AB3CD: " .. string.rep("é", 99), approval.summary)
    local st = h.request("POST", srv.url .. "/v1/approvals/" .. approval.id .. "/reject",
                         {json = {reason = "only a test"}, headers = {authorization = "Bearer " .. admin}})
    assert.are.equal(200, st)
    assert.are.same({}, tap.requests())
    assert.is_true(srv.healthy())
  end)

  it("post_message replies in a thread with the flags Slack takes", function()
    local status, body = call("post_message", {channel = "C012AB3CD", text = "Done ✅", thread_ts = "1503435956.000247",
                                               reply_broadcast = true, unfurl_links = false, mrkdwn = true})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("1503435956.000247", body.result.thread_ts)
    local sent = tap.last()
    assert.are.equal("channel=C012AB3CD&mrkdwn=true&reply_broadcast=true&text=Done%20%E2%9C%85&" ..
                     "thread_ts=1503435956.000247&unfurl_links=false", sent.body)
  end)

  it("rejects invalid arguments before any request (and before any approval)", function()
    local cases = {
      {"channel_history", {channel = "general"}, "$.channel"},
      {"channel_history", {channel = "C012AB3CD", limit = 5000}, "$.limit"},
      {"channel_history", {channel = "C012AB3CD", oldest = "yesterday"}, "$.oldest"},
      {"channel_history", {channel = "C012AB3CD", oldest = "1714990000", latest = "2024-05-06T00:00:00Z"}, "$.latest"},
      {"channel_history", {channel = "C012AB3CD", before = "1714990000"}, "$"},
      {"thread_replies", {channel = "C012AB3CD"}, "$"},
      {"list_channels", {types = {"dm"}}, "$.types[0]"},
      {"search_messages", {query = ""}, "$.query"},
      {"search_messages", {query = "x", limit = 101}, "$.limit"},
      {"post_message", {channel = "C012AB3CD"}, "$"},
      {"post_message", {channel = "#general", text = "hi"}, "$.channel"},
      {"post_message", {channel = "C012AB3CD", text = "hi", reply_broadcast = true}, "$"},
      {"post_message", {channel = "C012AB3CD", text = "hi", thread_ts = "yesterday"}, "$.thread_ts"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(c[2]) .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
    local _, approvals = srv.get("/v1/approvals", admin)
    for _, a in ipairs(approvals.approvals or {}) do
      assert.are_not.equal("pending", a.status, "no approval was asked for an invalid call")
    end
  end)

  it("maps ok:false answers to coded errors with Slack's code", function()
    tap.replies({{status = 200, json = {ok = false, error = "channel_not_found"}}})
    local status, body = call("channel_history", {channel = "C0000000"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Slack reported an error: channel_not_found", body.error.message)
    assert.are.equal("channel_not_found", body.error.details.upstream_code)

    tap.replies({{status = 200, json = {ok = false, error = "not_in_channel"}}})
    status, body = call("post_message", {channel = "C0000000", text = "hi"})
    assert.are.equal(502, status)
    assert.are.equal("not_in_channel", body.error.details.upstream_code)

    tap.replies({{status = 200, json = {ok = false, error = "invalid_arguments",
                                        response_metadata = {messages = {"[ERROR] missing required field: channel"}}}}})
    status, body = call("channel_history", {channel = "C0000000"})
    assert.are.equal(502, status)
    assert.are.equal("Slack reported an error: invalid_arguments ([ERROR] missing required field: channel)",
                     body.error.message)
  end)

  it("maps invalid_auth to reconnect_required and marks the connection", function()
    local spare = new_connection("revoked")
    tap.replies({{status = 200, json = {ok = false, error = "invalid_auth"}}})
    local status, body = call("list_channels", {}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.are.equal(spare.id, body.error.details.connection_id)
    assert.is_string(body.error.details.reconnect_url)
    tap.clear()
    status, body = call("list_channels", {}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.are.same({}, tap.requests(), "a connection waiting for reconnection does not reach Slack")
  end)

  it("a 429 mid-pagination is upstream_rate_limited with retry_after; that tier of the connection pauses", function()
    local limited = new_connection("rate limited")
    tap.replies({
      page({chan("C1", "one")}, "c2"),
      {status = 429, headers = {["Retry-After"] = "2"}, json = {ok = false, error = "ratelimited"}},
    })
    local status, body, headers = call("list_channels", {}, limited.id)
    assert.are.equal(429, status, h.json.encode(body))
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(2, body.error.details.retry_after)
    assert.are.equal("2", headers["retry-after"])
    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert.are.equal("c2", h.parse_query(sent[2].query).cursor[1])

    -- conversations.history (tier 3) goes at once; conversations.list (tier 2) waits out the Retry-After
    local t0 = h.now()
    status = call("channel_history", {channel = "C012AB3CD", limit = 1}, limited.id)
    assert.are.equal(200, status)
    assert.is_true(h.now() - t0 < 1.5, "another tier is not paused")
    status = call("list_channels", {limit = 1}, limited.id)
    assert.are.equal(200, status)
    assert.is_true(h.now() - t0 >= 1.5, "the paused tier waited for Retry-After")
  end)

  it("a page that does not come in time is upstream_timeout", function()
    tap.replies({
      {status = 200, json = {ok = true, has_more = true, messages = {{type = "message", ts = "1.000001", text = "a"}},
                             response_metadata = {next_cursor = "n2"}}},
      {hang = true},
    })
    local t0 = h.now()
    local status, body = call("channel_history", {channel = "C012AB3CD"})
    assert.are.equal(504, status, h.json.encode(body))
    assert.are.equal("upstream_timeout", body.error.code)
    assert.is_true(h.now() - t0 >= 9, "the provider's 10 s deadline per request")
    assert.are.equal(2, #tap.requests())
  end)

  it("its messages sync runs in the engine: records, cursor and search, requests the description accepts", function()
    local S = require "sync_helper"
    local run = S.run(srv, key, conn.id, "messages")
    assert.are.equal("succeeded", run.status, h.json.encode(run))
    -- Prism's two member channels (listed twice: its next_cursor repeats), two
    -- pages of the same two messages each: 8 upserts of 4 distinct messages.
    assert.are.same({added = 4, updated = 0, deleted = 0, unchanged = 4}, run.records)
    assert.are.equal(5, run.pages)

    local rows = h.sql(srv.data, ("SELECT external_id, kind, url, doc_category FROM records" ..
                                  " WHERE connection_id = '%s' ORDER BY external_id"):format(conn.id))
    assert.are.equal(4, #rows)
    assert.are.same({"C012AB3CD:1512085950.000216", "message",
                     "https://subarachnoid.slack.com/archives/C012AB3CD/p1512085950000216", "communications"}, rows[1])
    local cursor = S.db_cursor(srv.data, conn.id, "messages")
    assert.are.equal("https://subarachnoid.slack.com/", cursor.team_url)

    local sent = tap.requests()
    local paths = {}
    for i, r in ipairs(sent) do
      assert_slack_request(r, "GET", r.path)
      paths[i] = r.path .. " " .. (h.parse_query(r.query).channel or {""})[1]
    end
    assert.are.same({"/auth.test ", "/conversations.list ", "/conversations.list ",
                     "/conversations.history C012AB3CD", "/conversations.history C012AB3CD",
                     "/conversations.history C061EG9T2", "/conversations.history C061EG9T2"}, paths)

    -- The synced messages are what search finds, for the connection's owner only.
    local status, body = srv.get("/v1/search?q=punny&integration=slack", key)
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(2, #body.results)
    for _, r in ipairs(body.results) do
      assert.are.equal(conn.id, r.connection_id)
      assert.are.equal("communications", r.doc_category)
      assert.matches("%*%*punny%*%*", r.snippet)
    end
    local bob = srv.key("bob", "acme")
    status, body = srv.get("/v1/search?q=punny", bob)
    assert.are.equal(200, status)
    assert.are.same({}, body.results, "alice's personal Slack is not bob's to search")

    -- The token is nowhere in what the sync stored.
    local stored = h.sql(srv.data, "SELECT group_concat(cursor) FROM sync_state")[1][1] ..
                   h.sql(srv.data, "SELECT group_concat(coalesce(data, '') || coalesce(title, '')) FROM records")[1][1]
    assert.is_nil(stored:find(TOKEN, 1, true))
  end)

  describe("OAuth with Slack's token endpoint", function()
    local bob, ann

    -- Starts a sign-in as `who`; the state from the authorize URL.
    local function start(who)
      local status, body = srv.get("/oauth/slack/start?format=json", who)
      assert.are.equal(200, status, h.json.encode(body))
      return h.parse_query(body.authorize_url:match("%?(.*)$")), body
    end

    local function callback(state, code)
      local status, text = h.request("GET", srv.url .. "/oauth/callback?state=" .. state .. "&code=" .. code,
                                     {headers = {accept = "application/json"}})
      return status, h.decode(text), text
    end

    setup(function()
      bob = srv.key("bob", "acme")
      ann = srv.key("ann", "acme")
      -- The operator's client (a team admin's token URL could not be a loopback address), secret on stdin.
      local code, _, err = h.run({"sh", "-c", 'printf "%s\\n" "$1" | "$0" oauth set-client slack' ..
                                  ' --client-id 1111.2222 --client-secret - --token-url "$2" --data "$3"',
                                  h.bin, SECRET, tap.url .. "/oauth.v2.access", srv.data})
      assert.are.equal(0, code, err)
    end)

    it("sends the browser to Slack's authorize URL with the bot scopes comma-separated", function()
      local q, body = start(bob)
      assert.is_truthy(body.authorize_url:find("https://slack.com/oauth/v2/authorize?", 1, true))
      assert.are.equal("channels:read,groups:read,channels:history,groups:history,chat:write", q.scope[1])
      assert.are.equal("1111.2222", q.client_id[1])
      assert.are.equal("code", q.response_type[1])
      assert.are.equal("S256", q.code_challenge_method[1])
      assert.are.equal("search:read", q.user_scope[1])      -- search.messages takes only a user token
    end)

    it("takes oauth.v2.access's answer (bot token, authed_user) and connects after auth.test", function()
      local q = start(bob)
      tap.replies({{status = 200, json = {
        ok = true, access_token = "xoxb-17653672481-19874698323-oauth", token_type = "bot",
        scope = "channels:read,groups:read,channels:history,groups:history,chat:write",
        bot_user_id = "U0KRQLJ9H", app_id = "A0KRD7HC3", team = {name = "Slack Softball Team", id = "T9TK3CUKW"},
        enterprise = h.json.null, is_enterprise_install = false, authed_user = {id = "U1234"}}}})
      local status, made, text = callback(q.state[1], "4724469134.4644010092847.ae5a")
      assert.are.equal(201, status, text)
      assert.are.equal("active", made.status)
      assert.are.equal("Subarachnoid Workspace (grace)", made.account_label)
      assert.is_nil(text:find("xoxb-", 1, true))
      local sent = tap.requests()
      assert.are.equal(2, #sent)
      assert.are.equal("POST", sent[1].method)
      assert.are.equal("/oauth.v2.access", sent[1].path)
      assert.are.equal("Basic " .. (mime.b64("1111.2222:" .. SECRET)), sent[1].headers.authorization)
      local form = h.parse_query(sent[1].body)
      assert.are.equal("authorization_code", form.grant_type[1])
      assert.are.equal("4724469134.4644010092847.ae5a", form.code[1])
      assert.is_string(form.code_verifier[1])
      assert.is_nil(form.client_secret)
      assert.are.equal("/auth.test", sent[2].path)
      assert.are.equal("Bearer xoxb-17653672481-19874698323-oauth", sent[2].headers.authorization)

      tap.clear()
      status = h.call_tool(srv, bob, "slack__list_channels", {limit = 1}, {connection_id = made.id})
      assert.are.equal(200, status)
      assert.are.equal("Bearer xoxb-17653672481-19874698323-oauth", tap.last().headers.authorization)
    end)

    it("keeps the user token of authed_user for search, and the bot token for the rest", function()
      local q = start(bob)
      local user_token = "xoxp-1234-5678-user-search-tok"
      tap.replies({{status = 200, json = {
        ok = true, access_token = "xoxb-17653672481-19874698323-both", token_type = "bot",
        scope = "channels:read,groups:read,channels:history,groups:history,chat:write",
        bot_user_id = "U0KRQLJ9H", app_id = "A0KRD7HC3", team = {name = "Slack Softball Team", id = "T9TK3CUKW"},
        authed_user = {id = "U1234", scope = "search:read", access_token = user_token, token_type = "user"}}}})
      local status, made, text = callback(q.state[1], "code-with-user-token")
      assert.are.equal(201, status, text)
      assert.is_nil(text:find(user_token, 1, true))
      tap.clear()
      local st, body = h.call_tool(srv, bob, "slack__search_messages", {query = "pickleball"},
                                   {connection_id = made.id})
      local btext = h.json.encode(body)
      assert.are.equal(200, st, btext)
      assert.is_table(body.result.matches)
      assert.are.equal("Bearer " .. user_token, tap.last().headers.authorization)
      assert.are.equal("/search.messages", tap.last().path)
      assert.is_nil(btext:find(user_token, 1, true))
      tap.clear()
      st = h.call_tool(srv, bob, "slack__list_channels", {limit = 1}, {connection_id = made.id})
      assert.are.equal(200, st)
      assert.are.equal("Bearer xoxb-17653672481-19874698323-both", tap.last().headers.authorization)
      -- Sealed like the other tokens: not in the database's text.
      local db = h.read_file(srv.data .. "/ferry.db") .. (h.read_file(srv.data .. "/ferry.db-wal") or "")
      assert.is_nil(db:find(user_token, 1, true))
    end)

    it("refreshes a rotating token with Slack's refresh answer before it expires", function()
      local q = start(ann)
      tap.replies({{status = 200, json = {
        ok = true, access_token = "xoxe.xoxb-1-first", refresh_token = "xoxe-1-refresh-one", expires_in = 2,
        token_type = "bot", scope = "channels:read", team = {id = "T9TK3CUKW"}, authed_user = {id = "U9"}}}})
      local status, made, text = callback(q.state[1], "code-rotating")
      assert.are.equal(201, status, text)

      -- Slack's rotating tokens live 12 hours; this one 2 s, so the margin (half its life) has passed in 1.
      h.sleep(1.2)
      tap.clear()
      tap.replies({{status = 200, json = {ok = true, access_token = "xoxe.xoxb-1-second",
                                          refresh_token = "xoxe-1-refresh-two", expires_in = 43200,
                                          token_type = "bot"}}})
      status = h.call_tool(srv, ann, "slack__list_channels", {limit = 1}, {connection_id = made.id})
      assert.are.equal(200, status)
      local sent = tap.requests()
      assert.are.equal(2, #sent)
      assert.are.equal("/oauth.v2.access", sent[1].path)
      local form = h.parse_query(sent[1].body)
      assert.are.same({"refresh_token"}, form.grant_type)
      assert.are.same({"xoxe-1-refresh-one"}, form.refresh_token)
      assert.are.equal("Bearer xoxe.xoxb-1-second", sent[2].headers.authorization)
    end)

    it("asks for a reconnect when Slack refuses the refresh token with ok:false (HTTP 200)", function()
      local q = start(ann)
      tap.replies({{status = 200, json = {
        ok = true, access_token = "xoxe.xoxb-2-first", refresh_token = "xoxe-2-refresh-one", expires_in = 2,
        token_type = "bot", scope = "channels:read", team = {id = "T9TK3CUKW"}, authed_user = {id = "U9"}}}})
      local status, made, text = callback(q.state[1], "code-refused")
      assert.are.equal(201, status, text)
      h.sleep(1.2)
      tap.replies({{status = 200, json = {ok = false, error = "invalid_refresh_token"}}})
      local st, body = h.call_tool(srv, ann, "slack__list_channels", {limit = 1}, {connection_id = made.id})
      assert.are.equal(409, st, h.json.encode(body))
      assert.are.equal("reconnect_required", body.error.code)
      assert.is_truthy(body.error.message:find("invalid_refresh_token", 1, true))
      assert.is_truthy(body.error.details.reconnect_url:find("connection_id=" .. made.id, 1, true))
    end)

    it("reports Slack's ok:false token answer (HTTP 200) as a failed sign-in, without a connection", function()
      local q = start(bob)
      local _, before = srv.get("/v1/connections", bob)
      tap.replies({{status = 200, json = {ok = false, error = "invalid_code"}}})
      local status, body, text = callback(q.state[1], "used-code")
      assert.is_true(status >= 400, text)
      assert.is_truthy(body.error.message:find("invalid_code", 1, true), text)
      local _, after = srv.get("/v1/connections", bob)
      assert.are.equal(#before.connections, #after.connections)
    end)
  end)

  it("never lets a token or the client secret out: not in answers, logs or the audit trail", function()
    local _, list = srv.get("/v1/connections", key)
    local _, audit = srv.get("/v1/audit?integration=slack&limit=500", admin)
    assert.is_true(#audit.entries > 10, "the calls above are audited")
    local _, client = srv.get("/v1/integrations/slack/oauth-client", admin)
    local log = h.read_file(srv.log) or ""
    for _, secret in ipairs({TOKEN, SECRET, "xoxb-17653672481-19874698323-oauth", "xoxe.xoxb-1-second",
                             "xoxe-1-refresh-two"}) do
      assert.is_nil(h.json.encode(list):find(secret, 1, true))
      assert.is_nil(h.json.encode(audit):find(secret, 1, true))
      assert.is_nil(h.json.encode(client):find(secret, 1, true))
      assert.is_nil(log:find(secret, 1, true), secret .. " in the log")
    end
  end)
end)
