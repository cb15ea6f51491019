-- luacheck: std lua51+busted
-- providers/gmail.lua's MIME handling with a fake ctx: reading nested
-- multipart messages (charsets, encoded words, HTML-only bodies, invalid
-- UTF-8) and building drafts (RFC 2822 + base64url), which Prism cannot
-- check (the description gives it no JSON form of drafts.create, and its
-- mock bodies are placeholders).
local cjson = require "cjson"
local mime = require "mime"

local gmail = dofile("providers/gmail.lua")
local tools = gmail.tools

local function b64url(text)
  return (mime.b64(text):gsub("[+/=]", {["+"] = "-", ["/"] = "_", ["="] = ""}))
end

local function unb64url(text)
  local std = text:gsub("[-_]", {["-"] = "+", ["_"] = "/"})
  std = std .. string.rep("=", (4 - #std % 4) % 4)
  return (mime.unb64(std))
end

-- A ctx whose HTTP answers come from `routes`: path → body table, or
-- function(req) → status, body. Every request is kept in ctx.sent.
local function fake_ctx(routes)
  local ctx = {sent = {}, connection = {id = "conn_1", settings = {}}}
  ctx.http = {request = function(req)
    ctx.sent[#ctx.sent + 1] = req
    local route = routes[(req.method or "GET") .. " " .. req.path] or routes[req.path]
    local status, body = 200, route
    if type(route) == "function" then status, body = route(req) end
    if route == nil then status, body = 404, {error = {code = 404, message = "Not Found", status = "NOT_FOUND"}} end
    local text = cjson.encode(body)
    return {status = status, ok = status >= 200 and status < 300, headers = {}, body = text,
            json = function() return cjson.decode(text) end}
  end}
  return ctx
end

local function part(mime_type, text, headers, extra)
  local p = {mimeType = mime_type, filename = "", headers = headers or {},
             body = {size = text and #text or 0, data = text and b64url(text) or nil}}
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

local function multipart(mime_type, parts)
  return {mimeType = mime_type, filename = "", headers = {{name = "Content-Type", value = mime_type .. "; boundary=x"}},
          body = {size = 0}, parts = parts}
end

local MESSAGE_PATH = "/gmail/v1/users/me/messages/18f2a"

describe("providers/gmail.lua get_message", function()
  local function read(payload, args, extra)
    local msg = {id = "18f2a", threadId = "18f29", labelIds = {"INBOX", "UNREAD", "CATEGORY_PERSONAL"},
                 snippet = "Caf&eacute; at 10? It&#39;s on me", internalDate = "1714986000000", payload = payload}
    for k, v in pairs(extra or {}) do msg[k] = v end
    local ctx = fake_ctx({[MESSAGE_PATH] = msg})
    local args_ = {message_id = "18f2a"}
    for k, v in pairs(args or {}) do args_[k] = v end
    local result, err = tools.get_message.run(ctx, args_)
    assert.is_nil(err)
    assert.are.equal(MESSAGE_PATH, ctx.sent[1].path)
    assert.are.same({format = "full"}, ctx.sent[1].query)
    return result
  end

  it("decodes encoded-word headers and picks the plain part of multipart/alternative, in its charset", function()
    local payload = multipart("multipart/mixed", {
      multipart("multipart/alternative", {
        part("text/plain", "Caf\233 at 10?\r\nIt's on me.\r\n",
             {{name = "Content-Type", value = "text/plain; charset=\"ISO-8859-1\""}}),
        part("text/html", "<p>Caf&eacute; at 10?</p>", {{name = "Content-Type", value = "text/html; charset=UTF-8"}}),
      }),
      part("application/pdf", nil, {{name = "Content-Disposition", value = "attachment; filename=\"agenda.pdf\""}},
           {filename = "agenda.pdf", partId = "1", body = {size = 52133, attachmentId = "ANGjdJ8"}}),
    })
    payload.headers = {
      {name = "From", value = "=?iso-8859-1?Q?Andr=E9_Weil?= <andre@example.org>"},
      {name = "To", value = "ada@example.com"},
      {name = "Subject", value = "=?UTF-8?B?Q2Fmw6k=?= =?UTF-8?Q?_tomorrow_=E2=98=95?="},
      {name = "Date", value = "Mon, 6 May 2024 09:00:00 +0000"},
      {name = "Message-ID", value = "<CAF1@mail.example.org>"},
    }
    local m = read(payload)
    assert.are.equal("André Weil <andre@example.org>", m.from)
    assert.are.equal("Café tomorrow ☕", m.subject)
    assert.are.equal("Mon, 6 May 2024 09:00:00 +0000", m.date)
    assert.are.equal("<CAF1@mail.example.org>", m.message_id_header)
    assert.are.equal("Café at 10?\nIt's on me.\n", m.body)
    assert.are.equal("text/plain", m.body_format)
    assert.is_false(m.body_truncated)
    assert.are.equal("Café at 10? It's on me", m.snippet)
    assert.are.equal("2024-05-06T09:00:00Z", m.received_at)
    assert.is_true(m.unread)
    assert.is_false(m.starred)
    assert.are.same({"INBOX", "UNREAD", "CATEGORY_PERSONAL"}, m.labels)
    assert.are.same({{filename = "agenda.pdf", mime_type = "application/pdf", part_id = "1", size = 52133,
                      attachment_id = "ANGjdJ8"}}, m.attachments)
    assert.are.equal("https://mail.google.com/mail/#all/18f2a", m.url)
    assert.is_nil(m.headers)
  end)

  it("turns an HTML-only body into text", function()
    local html = "<html><head><title>x</title><style>p{color:red}</style></head><body>" ..
                 "<script>alert(1)</script><h1>Invoice&nbsp;#42</h1><p>Total: &euro;12 &amp; tax</p>" ..
                 "<ul><li>one</li><li>two</li></ul>Line<br/>break &#x2713; &lt;ok&gt;<!-- hidden --></body></html>"
    local m = read(part("text/html", html, {{name = "Content-Type", value = "text/html; charset=utf-8"}}))
    assert.are.equal("text/html", m.body_format)
    assert.are.equal("Invoice #42\n\nTotal: €12 & tax\n\n- one\n- two\nLine\nbreak ✓ <ok>", m.body)
  end)

  it("replaces invalid UTF-8, cuts long bodies on a character boundary and lists every header on request", function()
    local text = "ok \255\254 then " .. string.rep("é", 100)
    local m = read(part("text/plain", text, {{name = "Content-Type", value = "text/plain; charset=utf-8"},
                                              {name = "X-Mailer", value = "=?UTF-8?B?w6k=?="}}),
                   {max_body_chars = 100, include_headers = true})
    assert.are.equal("ok \239\191\189\239\191\189 then ", m.body:sub(1, 15))
    assert.is_true(m.body_truncated)
    assert.is_true(#m.body <= 100)
    assert.is_truthy(m.body:match("é$"), "no half character at the end")
    assert.are.same({{name = "Content-Type", value = "text/plain; charset=utf-8"}, {name = "X-Mailer", value = "é"}},
                    m.headers)
  end)

  it("says so when the body is only in an attachment (Gmail moves large parts out)", function()
    local m = read(multipart("multipart/alternative", {
      part("text/plain", nil, {}, {body = {size = 900000, attachmentId = "big"}}),
    }))
    assert.is_nil(m.body)
    assert.is_true(m.body_incomplete)
    assert.are.same({}, m.attachments)
  end)

  it("copes with the mock's placeholder payloads", function()
    local m = read({mimeType = "string", filename = "string", partId = "string", headers = {{name = "string",
                    value = "string"}}, body = {attachmentId = "string", data = "string", size = -2147483648},
                    parts = {{["$ref"] = cjson.null}}}, nil, {internalDate = "string", labelIds = {"string"}})
    assert.are.equal("18f2a", m.id)
    assert.is_nil(m.body)
    assert.is_nil(m.received_at)
    assert.are.equal(1, #m.attachments)
  end)
end)

describe("providers/gmail.lua search_messages", function()
  it("lists ids, then reads each one's metadata, skipping messages gone in between", function()
    local ctx = fake_ctx({
      ["/gmail/v1/users/me/messages"] = {messages = {{id = "a1", threadId = "t1"}, {id = "gone", threadId = "t2"},
                                                     {id = "a3", threadId = "t3"}},
                                         nextPageToken = "n2", resultSizeEstimate = 201},
      ["/gmail/v1/users/me/messages/a1"] = {id = "a1", threadId = "t1", labelIds = {"INBOX", "STARRED"},
                                            snippet = "Hi &amp; bye", internalDate = "1714986000000",
                                            payload = {headers = {{name = "From", value = "Ada <ada@x.io>"},
                                                                  {name = "Subject", value = "Hello"}}}},
      ["/gmail/v1/users/me/messages/a3"] = {id = "a3", threadId = "t3", payload = {headers = {}}},
    })
    local result, err = tools.search_messages.run(ctx, {query = "from:ada", limit = 3, label_ids = {"INBOX"}})
    assert.is_nil(err)
    assert.are.same({q = "from:ada", labelIds = {"INBOX"}, maxResults = 3}, ctx.sent[1].query)
    assert.are.same({format = "metadata", metadataHeaders = {"From", "To", "Cc", "Subject", "Date"}}, ctx.sent[2].query)
    assert.are.equal(4, #ctx.sent)
    assert.are.equal(201, result.result_size_estimate)
    assert.are.equal("n2", result.next_cursor)
    assert.are.equal(2, #result.messages)
    assert.are.same({id = "a1", thread_id = "t1", from = "Ada <ada@x.io>", subject = "Hello",
                     received_at = "2024-05-06T09:00:00Z", snippet = "Hi & bye", labels = {"INBOX", "STARRED"},
                     unread = false, starred = true, url = "https://mail.google.com/mail/#all/a1"},
                    result.messages[1])
  end)

  it("fails on any other error while reading a message", function()
    local ctx = fake_ctx({
      ["/gmail/v1/users/me/messages"] = {messages = {{id = "a1"}}},
      ["/gmail/v1/users/me/messages/a1"] = function()
        return 429, {error = {code = 429, message = "Too many concurrent requests", status = "RESOURCE_EXHAUSTED"}}
      end,
    })
    local result, err = tools.search_messages.run(ctx, {})
    assert.is_nil(result)
    assert.are.equal("upstream_rate_limited", err.code)
  end)
end)

describe("providers/gmail.lua create_draft", function()
  local function posted(ctx)
    local req = ctx.sent[#ctx.sent]
    assert.are.equal("POST", req.method)
    assert.are.equal("/gmail/v1/users/me/drafts", req.path)
    return req.json, unb64url(req.json.message.raw)
  end

  local DRAFT = {id = "r-123", message = {id = "19a0", threadId = "19a0", labelIds = {"DRAFT"}}}

  it("builds a 7bit RFC 2822 message for ASCII text, base64url-encoded in {message: {raw}}", function()
    local ctx = fake_ctx({["POST /gmail/v1/users/me/drafts"] = DRAFT})
    local result, err = tools.create_draft.run(ctx, {to = {"ada@example.com", "bob@example.com"},
                                                     bcc = {"boss@example.com"}, subject = "Lunch?",
                                                     body = "Hi both,\nlunch at 12?\n\n-- Grace"})
    assert.is_nil(err)
    local json, raw = posted(ctx)
    assert.is_nil(json.message.threadId)
    assert.is_falsy(json.message.raw:find("[+/]"), "URL-safe alphabet (padding kept, as in Google's samples)")
    assert.are.equal(table.concat({
      "To: ada@example.com, bob@example.com",
      "Bcc: boss@example.com",
      "Subject: Lunch?",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=\"UTF-8\"",
      "Content-Transfer-Encoding: 7bit",
      "",
      "Hi both,",
      "lunch at 12?",
      "",
      "-- Grace",
    }, "\r\n"), raw)
    assert.are.same({draft_id = "r-123", message_id = "19a0", thread_id = "19a0",
                     to = {"ada@example.com", "bob@example.com"}, subject = "Lunch?",
                     url = "https://mail.google.com/mail/#drafts?compose=19a0"}, result)
  end)

  it("encodes a non-ASCII subject as encoded words and the body as base64", function()
    local ctx = fake_ctx({["POST /gmail/v1/users/me/drafts"] = DRAFT})
    local subject = "Résumé of the café meeting — " .. string.rep("ü", 30)
    local body = "Grüße,\nAda"
    assert.is_table((tools.create_draft.run(ctx, {to = {"a@b.io"}, subject = subject, body = body})))
    local _, raw = posted(ctx)
    local head, encoded = raw:match("^(.-)\r\n\r\n(.*)$")
    assert.is_truthy(head:find("Content-Transfer-Encoding: base64", 1, true))
    assert.are.equal("Grüße,\r\nAda", mime.unb64((encoded:gsub("\r\n", ""))))
    local subject_field = head:match("Subject: (.-)\r\nMIME")
    local words = {}
    for charset, word in subject_field:gmatch("=%?([^?]+)%?B%?([^?]+)%?=") do
      assert.are.equal("UTF-8", charset)
      words[#words + 1] = mime.unb64(word)
    end
    assert.is_true(#words >= 2)
    assert.are.equal(subject, table.concat(words))
    for line in (subject_field .. "\r\n"):gmatch("(.-)\r\n") do
      assert.is_true(#line <= 78, line)
    end
  end)

  it("replies in the original thread, to its Reply-To, with In-Reply-To and References", function()
    local ctx = fake_ctx({
      ["/gmail/v1/users/me/messages/17c"] = {id = "17c", threadId = "thr9", payload = {headers = {
        {name = "Subject", value = "=?UTF-8?Q?Caf=C3=A9_plans?="},
        {name = "From", value = "Ada <ada@example.com>"},
        {name = "Reply-To", value = "\"Ada (list)\" <list@example.com>, bob@example.com"},
        {name = "Message-Id", value = "<m2@example.com>"},
        {name = "References", value = "<m1@example.com>"},
      }}},
      ["POST /gmail/v1/users/me/drafts"] = {id = "r-9", message = {id = "19b", threadId = "thr9"}},
    })
    local result, err = tools.create_draft.run(ctx, {reply_to_message_id = "17c", body = "Count me in."})
    assert.is_nil(err)
    assert.are.same({format = "metadata",
                     metadataHeaders = {"Subject", "From", "Reply-To", "Message-ID", "References"}}, ctx.sent[1].query)
    local json, raw = posted(ctx)
    assert.are.equal("thr9", json.message.threadId)
    assert.is_truthy(raw:find("To: list@example.com, bob@example.com\r\n", 1, true))
    assert.is_truthy(raw:find("Subject: =?UTF-8?B?", 1, true))
    assert.is_truthy(raw:find("In-Reply-To: <m2@example.com>\r\n", 1, true))
    assert.is_truthy(raw:find("References: <m1@example.com> <m2@example.com>\r\n", 1, true))
    assert.are.equal("Re: Café plans", result.subject)
    assert.are.equal("thr9", result.thread_id)
  end)

  it("keeps a reply's subject that already starts with Re: and refuses a draft with nobody to send to", function()
    local ctx = fake_ctx({
      ["/gmail/v1/users/me/messages/17d"] = {id = "17d", threadId = "t", payload = {headers = {
        {name = "Subject", value = "RE: budget"}}}},
      ["POST /gmail/v1/users/me/drafts"] = DRAFT,
    })
    local result, err = tools.create_draft.run(ctx, {reply_to_message_id = "17d", body = "x"})
    assert.is_nil(result)
    assert.are.equal("invalid_arguments", err.code)
    assert.are.equal("$.to", err.path)
    assert.are.equal(1, #ctx.sent, "no draft was posted")
    result = tools.create_draft.run(ctx, {reply_to_message_id = "17d", body = "x", to = {"c@d.io"}})
    assert.are.equal("RE: budget", result.subject)
  end)

  it("never lets a line break into a header", function()
    local ctx = fake_ctx({["POST /gmail/v1/users/me/drafts"] = DRAFT})
    assert.is_table((tools.create_draft.run(ctx, {to = {"a@b.io"}, subject = "a\r\nBcc: evil@x.io", body = "x"})))
    local _, raw = posted(ctx)
    local head = raw:match("^(.-)\r\n\r\n")
    assert.is_falsy(head:find("\r\nBcc:", 1, true))
    assert.is_truthy(head:find("Subject: a Bcc: evil@x.io", 1, true))
  end)
end)
