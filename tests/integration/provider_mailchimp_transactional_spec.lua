-- providers/mailchimp_transactional.lua against a Prism mock of Mailchimp's
-- Transactional API description (static examples), through the recording
-- tap proxy: every request must pass Prism's validation (path, method, JSON
-- body with the key the core injects), tools shape the answers, and
-- Mandrill's errors map to ferry's codes.
local h = require "helper"

local SLUG = "mailchimp_transactional"
local API_KEY = "md-test-key-4f2a9c"

describe("provider mailchimp_transactional", function()
  local prism, tap, srv, key, admin, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args,
                       {connection_id = connection_id or conn.id, approver = admin})
  end

  -- A second connection for the error cases: a reconnect_required answer
  -- takes its connection out of service.
  local function spare_connection(label)
    local status, body = h.connect(srv, key, {integration = SLUG, credentials = {api_key = API_KEY},
                                             scope = "user", label = label, verify = false})
    assert.are.equal(201, status)
    return body.id
  end

  setup(function()
    prism = h.start_prism(h.api_spec("mailchimp/transactional.openapi.json"))
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("alice", "acme")
    admin = srv.key("root", "acme", "admin")
    connected = {h.connect(srv, key, {integration = SLUG, credentials = {api_key = API_KEY},
                                      scope = "user", label = "Mandrill test"})}
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

  it("connects after the provider's check pings with the key in the JSON body", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.is_nil(connected[3]:find(API_KEY, 1, true), "the key is never echoed")
    local sent = connected.requests
    assert.are.equal(1, #sent)
    assert.are.equal("POST", sent[1].method)
    assert.are.equal("/users/ping", sent[1].path)
    assert.are.same({key = API_KEY}, sent[1].json)
  end)

  it("ping answers PONG!", function()
    local status, body = call("ping", {})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({ok = true, reply = "PONG!"}, body.result)
    assert.are.equal(API_KEY, tap.last().json.key)
  end)

  it("send_message sends Mandrill's message shape and reports each recipient", function()
    local status, body = call("send_message", {
      to = {{email = "ada@example.com", name = "Ada"}, {email = "bob@example.com", type = "cc"}},
      subject = "Your invoice",
      text = "Hello",
      html = "<p>Hello</p>",
      from_email = "billing@example.com",
      from_name = "Billing",
      reply_to = "help@example.com",
      tags = {"invoice"},
      metadata = {invoice_id = "42"},
      track_opens = true,
    })
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result.recipients[1]
    -- the spec's example answer
    assert.are.equal("recipient.email@example.com", r.email)
    assert.are.equal("sent", r.status)
    assert.are.equal("string", r.id)
    assert.are.same({sent = 1}, body.result.counts)

    local sent = tap.last()
    assert.are.equal("/messages/send", sent.path)
    assert.are.equal(API_KEY, sent.json.key)
    local m = sent.json.message
    assert.are.same({{email = "ada@example.com", name = "Ada", type = "to"}, {email = "bob@example.com", type = "cc"}},
                    m.to)
    assert.are.equal("Your invoice", m.subject)
    assert.are.equal("billing@example.com", m.from_email)
    assert.are.same({["Reply-To"] = "help@example.com"}, m.headers)
    assert.are.same({"invoice"}, m.tags)
    assert.are.same({invoice_id = "42"}, m.metadata)
    assert.is_true(m.track_opens)
  end)

  it("rejects invalid arguments before any request", function()
    local good = {to = {{email = "ada@example.com"}}, subject = "s", text = "t", from_email = "me@example.com"}
    local function without(field, changes)
      local args = {}
      for k, v in pairs(good) do args[k] = v end
      if field then args[field] = nil end
      for k, v in pairs(changes or {}) do args[k] = v end
      return args
    end
    local cases = {
      {without("subject"), "$", "missing required property 'subject'"},
      {without("text"), "$", "anyOf"},
      {without(nil, {to = {{name = "no address"}}}), "$.to[0]", "'email'"},
      {without(nil, {to = {{email = "not an address"}}}), "$.to[0].email", "email"},
      {without(nil, {tags = {"_reserved"}}), "$.tags[0]", "pattern"},
      {without(nil, {key = "smuggled"}), "$", "'key'"},
    }
    for _, c in ipairs(cases) do
      local status, body = call("send_message", c[1])
      assert.are.equal(400, status, h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[2], body.error.details.path, body.error.message)
      assert.is_truthy(body.error.message:find(c[3], 1, true), body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("maps the spec's 500 answer to upstream_error with Mandrill's message", function()
    tap.prefer("code=500")
    local status, body = call("ping", {})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.is_truthy(body.error.message:find("An unknown error occurred", 1, true), body.error.message)
    assert.are.equal(500, body.error.details.status)
    assert.are.equal("GeneralError", body.error.details.upstream_code)
  end)

  it("flags a 200 answer whose body says status error", function()
    tap.replies({{status = 200, json = {status = "error", code = -2, name = "ValidationError",
                                        message = "You must specify a key value"}}})
    local status, body = call("ping", {})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Mailchimp Transactional reported an error: You must specify a key value", body.error.message)
  end)

  it("maps a rate-limited answer with Retry-After", function()
    tap.replies({{status = 429, headers = {["Retry-After"] = "7"},
                  json = {status = "error", code = -1, name = "TooManyRequests", message = "slow down"}}})
    local status, body, headers = call("ping", {})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(7, body.error.details.retry_after)
    assert.are.equal("7", headers["retry-after"])
  end)

  it("maps the spec's 401 (Invalid_Key) to reconnect_required", function()
    local id = spare_connection("revoked key")
    tap.prefer("code=401")
    local status, body = call("ping", {}, id)
    assert.are.equal(409, status, h.json.encode(body))
    assert.are.equal("reconnect_required", body.error.code)
    assert.is_truthy(body.error.message:find("Invalid API key", 1, true), body.error.message)
  end)

  it("reads Invalid_Key as reconnect_required whatever the HTTP status", function()
    local id = spare_connection("bad key")
    tap.replies({{status = 500, json = {status = "error", code = -1, name = "Invalid_Key",
                                        message = "Invalid API key"}}})
    local status, body = call("ping", {}, id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
  end)

  it("refuses a connection whose key fails the check", function()
    tap.prefer("code=401")
    local status, body = h.connect(srv, key, {integration = SLUG, credentials = {api_key = "wrong"},
                                             scope = "user", label = "wrong key"})
    assert.are_not.equal(201, status)
    assert.is_truthy(h.json.encode(body):find("Invalid API key", 1, true), h.json.encode(body))
  end)
end)
