-- providers/outlook_mail.lua through the recording tap proxy, answered by
-- canned replies only.
--
-- tests/specs holds no description of Graph's mail endpoints (the Graph
-- file there is the Calendar module), so there is no Prism here: the tap's
-- upstream is a closed port, any request without a canned reply fails, and
-- the replies are shaped like the examples of Microsoft's Graph v1.0
-- reference (message, attachment, user, odata error). What this spec can
-- assert is the exact request each tool makes (path, OData parameters,
-- Prefer, Authorization) and how answers and errors are shaped.
local h = require "helper"

local SLUG = "outlook_mail"
local TOKEN = "EwBwA8l6test-mail-token"
local GRAPH = "https://graph.microsoft.com/v1.0"
local LIST_SELECT = "id,subject,from,toRecipients,ccRecipients,receivedDateTime,sentDateTime,bodyPreview,isRead," ..
                    "isDraft,hasAttachments,importance,webLink,conversationId,flag,categories,parentFolderId"

local function graph_error(code, message)
  return {error = {code = code, message = message,
                   innerError = {date = "2024-05-06T09:00:00", ["request-id"] = "5f1a",
                                 ["client-request-id"] = "5f1a"}}}
end

local function message(id, subject, extra)
  local m = {
    ["@odata.etag"] = "W/\"CQAAABYAAAA\"", id = id, subject = subject,
    receivedDateTime = "2024-05-06T09:00:12Z", sentDateTime = "2024-05-06T09:00:09Z",
    bodyPreview = "Hi Ada, the numbers for Q3 are in.", isRead = false, isDraft = false, hasAttachments = false,
    importance = "normal", conversationId = "AAQkConv=", parentFolderId = "AAMkInbox=",
    webLink = "https://outlook.office365.com/owa/?ItemID=" .. id .. "&exvsurl=1&viewmodel=ReadMessageItem",
    categories = {}, flag = {flagStatus = "notFlagged"},
    from = {emailAddress = {name = "Grace Hopper", address = "grace@contoso.com"}},
    toRecipients = {{emailAddress = {name = "Ada Lovelace", address = "ada@contoso.com"}}},
    ccRecipients = {},
  }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

describe("provider outlook_mail (canned replies: no Graph mail description in tests/specs)", function()
  local tap, srv, key, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args, {connection_id = connection_id or conn.id})
  end

  local function assert_graph_request(sent, path)
    assert.are.equal("GET", sent.method)
    assert.are.equal(path, sent.path)
    assert.are.equal("Bearer " .. TOKEN, sent.headers.authorization)
  end

  setup(function()
    tap = h.start_tap("http://127.0.0.1:9")   -- nothing listens there: every answer is canned
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("alice", "acme")
    tap.replies({{status = 200, json = {["@odata.context"] = GRAPH .. "/$metadata#users/$entity",
                                        displayName = "Ada Lovelace", mail = "ada@contoso.com",
                                        userPrincipalName = "ada@contoso.onmicrosoft.com"}}})
    connected = {h.connect(srv, key, {integration = SLUG, scope = "user", label = "Outlook mail test",
                                      credentials = {access_token = TOKEN}})}
    conn = connected[2]
    connected.requests = tap.requests()
  end)

  teardown(function()
    if srv then srv.stop() end
    if tap then tap.stop() end
  end)

  before_each(function()
    tap.replies({})
    tap.clear()
  end)

  it("connects after reading the signed-in user (GET /me)", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal("ada@contoso.com", conn.account_label)
    assert.are.equal(1, #connected.requests)
    assert_graph_request(connected.requests[1], "/me")
    assert.are.same({["$select"] = {"displayName,mail,userPrincipalName"}}, h.parse_query(connected.requests[1].query))
  end)

  it("list_messages without arguments: newest first, the filter led by receivedDateTime", function()
    tap.replies({{status = 200, json = {value = {
      message("AAMk1=", "Q3 numbers", {hasAttachments = true, importance = "high", categories = {"Finance"},
                                       flag = {flagStatus = "flagged"},
                                       ccRecipients = {{emailAddress = {name = "Bob", address = "bob@contoso.com"}}}}),
      message("AAMk2=", "Lunch", {isRead = true}),
    }}}})
    local status, body = call("list_messages", {})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.is_nil(r.next_cursor)
    assert.are.same({
      id = "AAMk1=", conversation_id = "AAQkConv=", subject = "Q3 numbers",
      from = {name = "Grace Hopper", email = "grace@contoso.com"},
      to = {{name = "Ada Lovelace", email = "ada@contoso.com"}},
      cc = {{name = "Bob", email = "bob@contoso.com"}}, received_at = "2024-05-06T09:00:12Z",
      sent_at = "2024-05-06T09:00:09Z", preview = "Hi Ada, the numbers for Q3 are in.", unread = true, draft = false,
      has_attachments = true, importance = "high", flagged = true, categories = {"Finance"},
      folder_id = "AAMkInbox=", url = message("AAMk1=").webLink,
    }, r.messages[1])
    assert.is_false(r.messages[2].unread)
    assert.are.same({}, r.messages[2].cc)

    local sent = tap.last()
    assert_graph_request(sent, "/me/messages")
    assert.are.same({["$select"] = {LIST_SELECT}, ["$top"] = {"10"},
                     ["$filter"] = {"receivedDateTime ge 1900-01-01T00:00:00Z"},
                     ["$orderby"] = {"receivedDateTime desc"}}, h.parse_query(sent.query))
  end)

  it("list_messages turns the filter arguments into one $filter, in a folder", function()
    tap.replies({{status = 200, json = {value = {}}}})
    local status, body = call("list_messages", {
      folder = "inbox", from = "o'brien@contoso.com", unread_only = true, has_attachments = false,
      received_after = "2024-05-01T00:00:00+02:00", received_before = "2024-06-01T00:00:00Z",
      filter = "importance eq 'high'", limit = 5,
    })
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({}, body.result.messages)
    local sent = tap.last()
    assert_graph_request(sent, "/me/mailFolders/inbox/messages")
    local q = h.parse_query(sent.query)
    assert.are.same({"receivedDateTime ge 2024-05-01T00:00:00+02:00 and receivedDateTime lt 2024-06-01T00:00:00Z " ..
                     "and from/emailAddress/address eq 'o''brien@contoso.com' and isRead eq false " ..
                     "and hasAttachments eq false and (importance eq 'high')"}, q["$filter"])
    assert.are.same({"receivedDateTime desc"}, q["$orderby"])
    assert.are.same({"5"}, q["$top"])
    assert.is_falsy(sent.query:find("+02", 1, true), "a literal + would read as a space")
  end)

  it("list_messages searches with $search (quoted KQL) and no $filter or $orderby", function()
    tap.replies({{status = 200, json = {value = {message("AAMk3=", "Q3 plan")}}}})
    local status, body = call("list_messages", {query = 'budget "Q3 plan"', folder = "sentitems"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("Q3 plan", body.result.messages[1].subject)
    local sent = tap.last()
    assert_graph_request(sent, "/me/mailFolders/sentitems/messages")
    assert.are.same({["$select"] = {LIST_SELECT}, ["$top"] = {"10"}, ["$search"] = {'"budget \\"Q3 plan\\""'}},
                    h.parse_query(sent.query))
  end)

  it("list_messages follows @odata.nextLink under the base URL and continues from next_cursor", function()
    tap.replies({
      {status = 200, json = {value = {message("A1=", "one"), message("A2=", "two")},
                             ["@odata.nextLink"] = GRAPH .. "/me/messages?%24select=id&%24top=2&%24skip=2"}},
      {status = 200, json = {value = {message("A3=", "three"), message("A4=", "four")},
                             ["@odata.nextLink"] = GRAPH .. "/me/messages?%24select=id&%24top=2&%24skip=4"}},
    })
    local status, body = call("list_messages", {limit = 3})
    assert.are.equal(200, status, h.json.encode(body))
    local subjects = {}
    for i, m in ipairs(body.result.messages) do subjects[i] = m.subject end
    assert.are.same({"one", "two", "three"}, subjects)
    assert.are.equal("/me/messages?%24select=id&%24top=2&%24skip=4", body.result.next_cursor)
    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert.are.same({"3"}, h.parse_query(sent[1].query)["$top"])
    assert_graph_request(sent[2], "/me/messages")
    assert.are.equal("%24select=id&%24top=2&%24skip=2", sent[2].query)

    tap.clear()
    tap.replies({{status = 200, json = {value = {message("A5=", "five")}}}})
    status, body = call("list_messages", {cursor = "/me/messages?%24select=id&%24top=2&%24skip=4"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(1, #body.result.messages)
    assert.are.equal("%24select=id&%24top=2&%24skip=4", tap.last().query)
  end)

  it("get_message reads the text body and lists the attachments", function()
    tap.replies({
      {status = 200, json = message("AAMk1=", "Q3 numbers", {
        hasAttachments = true, internetMessageId = "<CY4PR@contoso.com>", inferenceClassification = "focused",
        sender = {emailAddress = {name = "Grace Hopper", address = "grace@contoso.com"}},
        bccRecipients = {}, replyTo = {{emailAddress = {name = "Finance", address = "finance@contoso.com"}}},
        body = {contentType = "text", content = "Hi Ada,\r\n\r\nthe numbers for Q3 are in.\r\n\r\nGrace"},
      })},
      {status = 200, json = {value = {
        {["@odata.type"] = "#microsoft.graph.fileAttachment", id = "AAMkAtt1=", name = "Q3.xlsx", size = 38422,
         contentType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", isInline = false},
        {["@odata.type"] = "#microsoft.graph.fileAttachment", id = "AAMkAtt2=", name = "logo.png", size = 2100,
         contentType = "image/png", isInline = true},
      }}},
    })
    local status, body = call("get_message", {message_id = "AAMk1="})
    assert.are.equal(200, status, h.json.encode(body))
    local m = body.result
    assert.are.equal("Hi Ada,\n\nthe numbers for Q3 are in.\n\nGrace", m.body)
    assert.are.equal("text", m.body_format)
    assert.is_false(m.body_truncated)
    assert.are.same({{name = "Finance", email = "finance@contoso.com"}}, m.reply_to)
    assert.are.same({name = "Grace Hopper", email = "grace@contoso.com"}, m.sender)
    assert.are.equal("<CY4PR@contoso.com>", m.internet_message_id)
    assert.are.equal("focused", m.focused)
    assert.are.same({
      {id = "AAMkAtt1=", name = "Q3.xlsx",
       content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
       size = 38422, inline = false},
      {id = "AAMkAtt2=", name = "logo.png", content_type = "image/png", size = 2100, inline = true},
    }, m.attachments)

    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert_graph_request(sent[1], "/me/messages/AAMk1%3D")
    assert.are.equal('outlook.body-content-type="text"', sent[1].headers.prefer)
    assert.are.same({LIST_SELECT .. ",bccRecipients,replyTo,sender,internetMessageId,body,inferenceClassification"},
                    h.parse_query(sent[1].query)["$select"])
    assert_graph_request(sent[2], "/me/messages/AAMk1%3D/attachments")
    assert.are.same({["$select"] = {"id,name,contentType,size,isInline"}}, h.parse_query(sent[2].query))
  end)

  it("get_message cuts a long body and skips the attachment list when asked", function()
    tap.replies({{status = 200, json = message("AAMk9=", "Long", {hasAttachments = true,
      body = {contentType = "text", content = string.rep("ü", 300)}})}})
    local status, body = call("get_message", {message_id = "AAMk9=", max_body_chars = 101, include_attachments = false})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(string.rep("ü", 50), body.result.body)
    assert.is_true(body.result.body_truncated)
    assert.is_nil(body.result.attachments)
    assert.are.equal(1, #tap.requests())
  end)

  it("rejects invalid arguments, search mixed with filters and foreign cursors before any request", function()
    local cases = {
      {"list_messages", {query = "budget", from = "a@b.io"}, "$.from"},
      {"list_messages", {query = "budget", unread_only = false}, "$.unread_only"},
      {"list_messages", {query = "budget", filter = "isRead eq true"}, "$.filter"},
      {"list_messages", {from = "not an address"}, "$.from"},
      {"list_messages", {received_after = "yesterday"}, "$.received_after"},
      {"list_messages", {limit = 0}, "$.limit"},
      {"list_messages", {cursor = GRAPH .. "/me/messages?%24skip=10"}, "$.cursor"},
      {"list_messages", {cursor = "/me/events?%24skip=10"}, "$.cursor"},
      {"list_messages", {top = 5}, "$"},
      {"get_message", {}, "$"},
      {"get_message", {message_id = "x", max_body_chars = 5}, "$.max_body_chars"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("maps Graph's errors: 404 upstream_error, 429 with Retry-After, 401 reconnect_required", function()
    tap.replies({{status = 404, json = graph_error("ErrorItemNotFound",
                                                  "The specified object was not found in the store.")}})
    local status, body = call("get_message", {message_id = "gone"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("ErrorItemNotFound", body.error.details.upstream_code)

    local headers
    tap.replies({{status = 429, headers = {["Retry-After"] = "4"},
                  json = graph_error("ApplicationThrottled", "Application is over its MailboxConcurrency limit.")}})
    status, body, headers = call("list_messages", {})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(4, body.error.details.retry_after)
    assert.are.equal("4", headers["retry-after"])

    local st, spare = h.connect(srv, key, {integration = SLUG, credentials = {access_token = "stale-token-41"},
                                          scope = "user", label = "stale", verify = false})
    assert.are.equal(201, st)
    tap.replies({{status = 401, json = graph_error("InvalidAuthenticationToken",
                                                  "Lifetime validation failed, the token is old.")}})
    status, body = call("list_messages", {}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.is_string(body.error.details.reconnect_url)
    assert.are.equal("Bearer stale-token-41", tap.last().headers.authorization)
  end)
end)
