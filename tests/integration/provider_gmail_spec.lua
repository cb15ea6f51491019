-- providers/gmail.lua against a Prism mock of Google's Gmail API v1
-- description (APIs-guru conversion of the Discovery document), through the
-- recording tap proxy.
--
-- Static mode: no examples, so Prism answers schema placeholders ("string",
-- nextPageToken "string"); the reads are validated by Prism and their
-- shaping is checked with canned replies (and in tests/lua/gmail_spec.lua,
-- which covers the MIME decoding and the drafts' RFC 2822 text in depth).
--
-- drafts.create: the description lists only message/* request media types,
-- so Prism refuses the JSON body the real API takes on /gmail/v1/users/me/drafts
-- with 415 (and a message/rfc822 body with 422, "must be object"). The spec
-- shows that refusal once, then answers drafts with canned replies and checks
-- the recorded request against the description's Draft schema by hand.
-- Errors (none described) are canned with Google's error body.
local h = require "helper"
local mime = require "mime"

local SLUG = "gmail"
local TOKEN = "ya29.gmail-test-3f9a"

local function google_error(code, status, reason, message)
  return {error = {code = code, message = message, status = status,
                   errors = {{message = message, domain = "global", reason = reason}}}}
end

local function b64url(text)
  return (mime.b64(text):gsub("[+/=]", {["+"] = "-", ["/"] = "_", ["="] = ""}))
end

local function unb64url(text)
  local std = text:gsub("[-_]", {["-"] = "+", ["_"] = "/"})
  return (mime.unb64(std .. string.rep("=", (4 - #std % 4) % 4)))
end

describe("provider gmail", function()
  local prism, tap, srv, key, admin, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args,
                       {connection_id = connection_id or conn.id, approver = admin})
  end

  local function assert_gmail_request(sent, method, path)
    assert.are.equal(method, sent.method)
    assert.are.equal(path, sent.path)
    assert.are.equal("Bearer " .. TOKEN, sent.headers.authorization)
  end

  setup(function()
    prism = h.start_prism(h.api_spec("gmail/openapi.yaml"))
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("alice", "acme")
    admin = srv.key("root", "acme", "admin")
    connected = {h.connect(srv, key, {integration = SLUG, scope = "user", label = "Gmail test",
                                      credentials = {access_token = TOKEN, refresh_token = "1//gmail-refresh"}})}
    conn = connected[2]
    connected.requests = tap.requests()
  end)

  teardown(function()
    if srv then srv.stop() end
    if tap then tap.stop() end
    if prism then prism.stop() end
  end)

  before_each(function()
    tap.prefer(nil)
    tap.replies({})
    tap.clear()
  end)

  it("connects after reading the mailbox profile", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal("string", conn.account_label)   -- Prism's placeholder for emailAddress
    assert.are.equal(1, #connected.requests)
    assert_gmail_request(connected.requests[1], "GET", "/gmail/v1/users/me/profile")
  end)

  it("search_messages lists ids, then reads each one's metadata (Prism validates both)", function()
    local status, body = call("search_messages", {query = "from:ada has:attachment", label_ids = {"INBOX", "Label_7"},
                                                  include_spam_trash = false, limit = 2})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal(2, #r.messages)
    assert.are.equal(0, r.result_size_estimate)
    assert.are.same({id = "string", thread_id = "string", snippet = "string", labels = {"string"}, unread = false,
                     starred = false, url = "https://mail.google.com/mail/#all/string"}, r.messages[1])

    local sent = tap.requests()
    -- Prism's nextPageToken is always "string": page 2 repeats it, the walk stops at the limit;
    -- then one metadata read per message
    assert.are.equal(4, #sent)
    assert_gmail_request(sent[1], "GET", "/gmail/v1/users/me/messages")
    assert.are.same({q = {"from:ada has:attachment"}, labelIds = {"INBOX", "Label_7"}, includeSpamTrash = {"false"},
                     maxResults = {"2"}}, h.parse_query(sent[1].query))
    assert.are.same({"string"}, h.parse_query(sent[2].query).pageToken)
    assert.are.same({"1"}, h.parse_query(sent[2].query).maxResults)
    for i = 3, 4 do
      assert_gmail_request(sent[i], "GET", "/gmail/v1/users/me/messages/string")
      assert.are.same({format = {"metadata"}, metadataHeaders = {"From", "To", "Cc", "Subject", "Date"}},
                      h.parse_query(sent[i].query))
    end
  end)

  it("search_messages pages with pageToken and returns where to continue", function()
    local function meta(id, subject)
      return {status = 200, json = {id = id, threadId = "t" .. id, labelIds = {"INBOX", "UNREAD"},
                                    snippet = "About " .. subject, internalDate = "1714986000000",
                                    payload = {headers = {{name = "Subject", value = subject},
                                                          {name = "From", value = "Ada <ada@example.com>"}}}}}
    end
    tap.replies({
      {status = 200, json = {messages = {{id = "m1", threadId = "tm1"}}, nextPageToken = "p2", resultSizeEstimate = 9}},
      {status = 200, json = {messages = {{id = "m2", threadId = "tm2"}, {id = "m3", threadId = "tm3"}},
                             nextPageToken = "p3", resultSizeEstimate = 9}},
      meta("m1", "One"),
      meta("m2", "Two"),
    })
    local status, body = call("search_messages", {limit = 2})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal(9, r.result_size_estimate)
    assert.are.equal("p3", r.next_cursor)
    assert.are.same({id = "m2", thread_id = "tm2", from = "Ada <ada@example.com>", subject = "Two",
                     received_at = "2024-05-06T09:00:00Z", snippet = "About Two", labels = {"INBOX", "UNREAD"},
                     unread = true, starred = false, url = "https://mail.google.com/mail/#all/m2"}, r.messages[2])
    local sent = tap.requests()
    assert.are.equal(4, #sent)
    assert.is_nil(h.parse_query(sent[1].query).q)
    assert.are.same({"p2"}, h.parse_query(sent[2].query).pageToken)
    assert.are.same({"1"}, h.parse_query(sent[2].query).maxResults)
    assert.are.equal("/gmail/v1/users/me/messages/m1", sent[3].path)
    assert.are.equal("/gmail/v1/users/me/messages/m2", sent[4].path)
  end)

  it("get_message reads the full message (Prism validates) and copes with placeholder parts", function()
    local status, body = call("get_message", {message_id = "18f2a0c1d2e3f4a5"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("string", body.result.id)
    local sent = tap.last()
    assert_gmail_request(sent, "GET", "/gmail/v1/users/me/messages/18f2a0c1d2e3f4a5")
    assert.are.same({format = {"full"}}, h.parse_query(sent.query))
  end)

  it("get_message returns decoded headers and the plain-text body", function()
    tap.replies({{status = 200, json = {
      id = "18f2a", threadId = "18f29", labelIds = {"INBOX"}, snippet = "Grüße", internalDate = "1714986000000",
      payload = {mimeType = "multipart/alternative", filename = "", body = {size = 0},
        headers = {{name = "From", value = "=?UTF-8?Q?J=C3=BCrgen?= <j@example.de>"},
                   {name = "To", value = "ada@example.com"}, {name = "Subject", value = "=?UTF-8?B?R3LDvMOfZQ==?="},
                   {name = "Date", value = "Mon, 6 May 2024 11:00:00 +0200"}},
        parts = {
          {partId = "0", mimeType = "text/plain", filename = "", body = {size = 12, data = b64url("Grüße,\r\nJ.")},
           headers = {{name = "Content-Type", value = "text/plain; charset=UTF-8"}}},
          {partId = "1", mimeType = "text/html", filename = "", body = {size = 20, data = b64url("<b>Grüße</b>")},
           headers = {{name = "Content-Type", value = "text/html; charset=UTF-8"}}},
        }},
    }}})
    local status, body = call("get_message", {message_id = "18f2a", include_headers = true})
    assert.are.equal(200, status, h.json.encode(body))
    local m = body.result
    assert.are.equal("Jürgen <j@example.de>", m.from)
    assert.are.equal("Grüße", m.subject)
    assert.are.equal("Grüße,\nJ.", m.body)
    assert.are.equal("text/plain", m.body_format)
    assert.are.equal(4, #m.headers)
    assert.are.same({}, m.attachments)
  end)

  it("create_draft: Prism refuses the JSON body the real API takes (the description's message/* quirk)", function()
    local status, body = call("create_draft", {to = {"ada@example.com"}, subject = "Hi", body = "Hello"})
    assert.are.equal(502, status, h.json.encode(body))
    assert.are.equal("upstream_error", body.error.code)
    assert.is_truthy(body.error.message:find("HTTP 415", 1, true), body.error.message)
    assert.is_truthy(body.error.message:find("Supported content types: message/", 1, true), body.error.message)
    local sent = tap.last()
    assert_gmail_request(sent, "POST", "/gmail/v1/users/me/drafts")
    assert.are.equal("application/json", sent.headers["content-type"])
  end)

  it("create_draft posts {message: {raw}} with a base64url RFC 2822 message, after approval", function()
    tap.replies({{status = 200, json = {id = "r-5521", message = {id = "19a0f", threadId = "19a0f",
                                                                  labelIds = {"DRAFT"}}}}})
    local status, body = call("create_draft", {to = {"ada@example.com"}, cc = {"bob@example.com"},
                                               subject = "Notes from today", body = "Hi Ada,\nnotes attached.\n"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({draft_id = "r-5521", message_id = "19a0f", thread_id = "19a0f", to = {"ada@example.com"},
                     subject = "Notes from today", url = "https://mail.google.com/mail/#drafts?compose=19a0f"},
                    body.result)
    local sent = tap.last()
    assert_gmail_request(sent, "POST", "/gmail/v1/users/me/drafts")
    assert.are.equal("application/json", sent.headers["content-type"])
    -- the description's Draft: {id?, message?: Message}; Message.raw is a base64url string
    local function keys(t)
      local out = {}
      for n in pairs(t) do out[#out + 1] = n end
      return out
    end
    assert.are.same({"message"}, keys(sent.json))
    assert.are.same({"raw"}, keys(sent.json.message))
    assert.is_truthy(sent.json.message.raw:match("^[A-Za-z0-9_%-]+=*$"))
    assert.are.equal(table.concat({
      "To: ada@example.com", "Cc: bob@example.com", "Subject: Notes from today", "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=\"UTF-8\"", "Content-Transfer-Encoding: 7bit", "",
      "Hi Ada,", "notes attached.", "",
    }, "\r\n"), unb64url(sent.json.message.raw))
  end)

  it("create_draft as a reply reads the original's headers (Prism validates) and joins its thread", function()
    tap.replies({
      {status = 200, json = {id = "17c", threadId = "thr9", payload = {headers = {
        {name = "Subject", value = "Budget"}, {name = "From", value = "Grace <grace@example.com>"},
        {name = "Message-ID", value = "<b1@example.com>"}}}}},
      {status = 200, json = {id = "r-9", message = {id = "19b", threadId = "thr9"}}},
    })
    local status, body = call("create_draft", {reply_to_message_id = "17c", body = "Agreed."})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("Re: Budget", body.result.subject)
    assert.are.same({"grace@example.com"}, body.result.to)
    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert_gmail_request(sent[1], "GET", "/gmail/v1/users/me/messages/17c")
    assert.are.same({format = {"metadata"},
                     metadataHeaders = {"Subject", "From", "Reply-To", "Message-ID", "References"}},
                    h.parse_query(sent[1].query))
    assert.are.equal("thr9", sent[2].json.message.threadId)
    local raw = unb64url(sent[2].json.message.raw)
    assert.is_truthy(raw:find("In-Reply-To: <b1@example.com>\r\n", 1, true))
    assert.is_truthy(raw:find("References: <b1@example.com>\r\n", 1, true))

    -- and that metadata request is one the description accepts
    tap.clear()
    local st = h.request("GET", prism.url .. sent[1].path .. "?" .. sent[1].query,
                         {headers = {authorization = sent[1].headers.authorization}})
    assert.are.equal(200, st)
  end)

  it("rejects invalid arguments before any request (and before any approval)", function()
    local cases = {
      {"create_draft", {body = "x"}, "$"},
      {"create_draft", {to = {"not an address"}, body = "x"}, "$.to[0]"},
      {"create_draft", {to = {"a@b.io, evil@x.io"}, body = "x"}, "$.to[0]"},
      {"create_draft", {to = {"a@b.io"}, subject = "a\r\nBcc: x@y.io", body = "x"}, "$.subject"},
      {"create_draft", {to = {"a@b.io"}}, "$"},
      {"create_draft", {to = {}, body = "x"}, "$.to"},
      {"get_message", {message_id = "../drafts"}, "$.message_id"},
      {"get_message", {message_id = "abc", max_body_chars = 10}, "$.max_body_chars"},
      {"search_messages", {limit = 51}, "$.limit"},
      {"search_messages", {q = "x"}, "$"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
    local _, pending = srv.get("/v1/approvals", admin)
    for _, a in ipairs(pending.approvals or {}) do
      assert.are_not.equal("pending", a.status, "no approval was asked for an invalid call")
    end
  end)

  it("maps 404, 429 with Retry-After, 403 rate limits and 401 to their codes", function()
    tap.replies({{status = 404, json = google_error(404, "NOT_FOUND", "notFound", "Requested entity was not found.")}})
    local status, body = call("get_message", {message_id = "nope"})
    assert.are.equal(502, status)
    assert.are.equal("Gmail answered HTTP 404: Requested entity was not found.", body.error.message)
    assert.are.equal("notFound", body.error.details.upstream_code)

    local headers
    tap.replies({{status = 429, headers = {["Retry-After"] = "12"},
                  json = google_error(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "Too many concurrent requests")}})
    status, body, headers = call("search_messages", {})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(12, body.error.details.retry_after)
    assert.are.equal("12", headers["retry-after"])

    tap.replies({{status = 403, json = google_error(403, "PERMISSION_DENIED", "dailyLimitExceeded",
                                                   "Daily Limit Exceeded")}})
    status, body = call("get_message", {message_id = "abc"})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)

    local st, spare = h.connect(srv, key, {integration = SLUG, credentials = {access_token = "stale-token-41"},
                                          scope = "user", label = "stale", verify = false})
    assert.are.equal(201, st)
    tap.replies({{status = 401, json = google_error(401, "UNAUTHENTICATED", "authError",
                                                   "Request had invalid authentication credentials.")}})
    status, body = call("get_message", {message_id = "abc"}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.is_string(body.error.details.reconnect_url)
    assert.are.equal("Bearer stale-token-41", tap.last().headers.authorization)
  end)
end)
