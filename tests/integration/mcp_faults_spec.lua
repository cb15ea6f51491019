-- ferry's MCP client meets servers that misbehave (tests/peers/
-- mcp_fault_server.mjs): pagination and a cursor that loops, JSON that does
-- not parse, streams that hang or break, expired sessions, servers that die
-- mid-call, JSON-RPC errors, isError, batches, a server's own requests,
-- definitions that change. Each failure is a distinct coded error, in the
-- answer and in mcp_tool_executions.
local h = require "helper"
local mcp = require "mcp_helper"

describe("ferry's MCP client against a faulty Streamable HTTP server", function()
  local srv, admin, member, fault, id, slug

  local function call(tool, args) return srv.call(member, slug .. "__" .. tool, args or {}) end
  local function last_execution(tool)
    mcp.executions(srv, admin, id)   -- writes what is batched
    return h.sql(srv.data, "SELECT status, error_code, coalesce(jsonrpc_code, '') FROM mcp_tool_executions" ..
      " WHERE tool_name = '" .. slug .. "__" .. tool .. "' ORDER BY id DESC LIMIT 1")[1]
  end

  setup(function()
    fault = mcp.start_fault()
    srv = h.start_ferry({args = {"--mcp-allow-private"}})
    admin = srv.key("ada", "acme", "admin")
    member = srv.key("mo", "acme")
  end)

  teardown(function()
    if srv then srv.stop() end
    if fault then fault.stop() end
  end)

  it("follows nextCursor through every page of tools/list", function()
    local body = mcp.register_ok(srv, admin, {name = "Faulty", url = fault.url .. "/mcp", timeout_ms = 2000,
                                              bearer_token = "fault-bearer-token-9876"})
    id, slug = body.server.id, body.server.slug
    assert.are.equal("faulty", slug)
    assert.are.equal(14, #body.tools)   -- 5 pages of 3
    local cursors = {}
    for _, e in ipairs(fault.events("http")) do
      if e.body and e.body.method == "tools/list" then cursors[#cursors + 1] = e.body.params.cursor or "(first)" end
    end
    assert.are.equal(5, #cursors)
    assert.are.equal("(first)", cursors[1])
    mcp.approve_server(srv, admin, id)
    mcp.approve_tools(srv, admin, id, {"echo", "hang", "die", "bad_json", "rpc_error", "tool_error", "batch",
                                       "chatty", "broken_stream", "whoami", "structured", "changeable"})
    assert.are.equal(200, (call("echo", {message = "hi"})))
  end)

  it("speaks 2025-11-25 with a session after the 2026-07-28 probe is refused", function()
    local _, body = mcp.api(srv, "GET", "/v1/mcp-servers/" .. id, admin)
    assert.are.equal("2025-11-25", body.server.protocol_version)
    local seen_session = false
    for _, e in ipairs(fault.events("http")) do
      if e.body and e.body.method == "tools/call" then
        seen_session = e.headers["mcp-session-id"] ~= nil and e.headers["mcp-protocol-version"] == "2025-11-25"
        assert.are.equal("application/json, text/event-stream", e.headers.accept)
        assert.is_nil(e.body.params._meta)   -- no per-request _meta in the legacy era
      end
    end
    assert.is_true(seen_session)
  end)

  it("ends a hanging stream at the deadline, and tells the server it gave up", function()
    local status, body = call("hang")
    assert.are.equal(504, status)
    assert.are.equal("upstream_timeout", body.error.code)
    assert.are.equal("timeout", body.error.details.mcp_error)
    assert.are.same({"timeout", "upstream_timeout", ""}, last_execution("hang"))
    local cancelled = mcp.eventually(function() return fault.events("cancelled")[1] end, 5, "notifications/cancelled")
    local hung
    for _, e in ipairs(fault.events("call")) do if e.tool == "hang" then hung = e.id end end
    assert.are.equal(hung, cancelled.params.requestId)
  end)

  it("refuses an answer that is not JSON as a protocol error", function()
    local status, body = call("bad_json")
    assert.are.equal(502, status)
    assert.are.equal("protocol", body.error.details.mcp_error)
    assert.are.same({"protocol_error", "upstream_error", ""}, last_execution("bad_json"))
  end)

  it("passes a JSON-RPC error on as one, with its code", function()
    local status, body = call("rpc_error")
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("jsonrpc", body.error.details.mcp_error)
    assert.are.equal(-32000, body.error.details.jsonrpc_code)
    assert.are.equal("the database is down", body.error.details.jsonrpc_message)
    assert.are.same({"jsonrpc_error", "upstream_error", "-32000"}, last_execution("rpc_error"))
  end)

  it("makes isError a tool_error that keeps what the tool said", function()
    local status, body = call("tool_error")
    assert.are.equal(502, status)
    assert.are.equal("tool_error", body.error.details.mcp_error)
    assert.are.equal("the widget is broken", body.error.details.result.content[1].text)
    assert.is_truthy(body.error.message:find("the widget is broken", 1, true))
    assert.are.same({"tool_error", "upstream_error", ""}, last_execution("tool_error"))
  end)

  it("refuses a batch answer cleanly", function()
    local status, body = call("batch")
    assert.are.equal(502, status)
    assert.are.equal("protocol", body.error.details.mcp_error)
    assert.is_truthy(body.error.message:find("batch", 1, true))
  end)

  it("answers the server's ping and refuses its other requests with method-not-found", function()
    local status, body = call("chatty")
    assert.are.equal(200, status)
    assert.are.equal("chatted", body.content[1].text)
    local answers = fault.events("client_answers")[1]
    assert.are.same({}, answers.ping.result)
    assert.are.equal(-32601, answers.sampling.error.code)
    assert.is_nil(answers.sampling.result)
  end)

  it("resumes a broken answer stream with Last-Event-ID", function()
    local status, body = call("broken_stream", {token = "resume-1"})
    assert.are.equal(200, status)
    assert.are.equal("answered after resuming", body.content[1].text)
    local resume = fault.events("resume")[1]
    assert.is_truthy(resume)
    assert.is_true(resume.found)
  end)

  it("keeps structuredContent", function()
    local status, body = call("structured")
    assert.are.equal(200, status)
    assert.are.same({n = 7}, body.result.structuredContent)
  end)

  it("masks the server's credentials in what it sends back", function()
    local status, body = call("whoami")
    assert.are.equal(200, status)
    assert.are.equal("Authorization: Bearer [redacted]", body.content[1].text)
    local sent
    for _, e in ipairs(fault.events("http")) do
      if e.body and e.body.method == "tools/call" then sent = e.headers.authorization end
    end
    assert.are.equal("Bearer fault-bearer-token-9876", sent)
  end)

  it("masks a key in the server's URL, and a secret that \"[redacted]\" itself contains, in one pass", function()
    local key = "zapier-like-key-0123456789abcdef"
    local body = mcp.register_ok(srv, admin, {name = "Keyed", url = fault.url .. "/mcp?key=" .. key,
                                              bearer_token = "redacted", timeout_ms = 2000})
    mcp.approve_server(srv, admin, body.server.id)
    mcp.approve_tools(srv, admin, body.server.id, {"echo"})
    local status, answer = srv.call(member, body.server.slug .. "__echo",
                                    {message = key .. " redacted " .. string.rep("redacted", 2000)})
    assert.are.equal(200, status, h.json.encode(answer))
    local text = answer.content[1].text
    assert.is_nil(text:find(key, 1, true))
    assert.are.equal("Echo: [redacted] [redacted] " .. string.rep("[redacted]", 2000), text)
  end)

  it("starts a new session when the server says the old one expired (404)", function()
    fault.control("expire")
    local status, body = call("echo", {message = "after expiry"})
    assert.are.equal(200, status)
    assert.are.equal("Echo: after expiry", body.content[1].text)
    assert.is_true(#fault.events("unknown_session") >= 1)
  end)

  it("fails a call whose server connection dies, then works again", function()
    local status, body = call("die")
    assert.are.equal(502, status)
    assert.are.equal("transport", body.error.details.mcp_error)
    assert.are.same("transport_error", last_execution("die")[1])
    assert.are.equal(200, (call("echo", {message = "alive"})))
  end)

  it("puts a tool whose definition changed back to pending, on list_changed", function()
    assert.is_truthy(mcp.agent_tools(srv, member, slug)[1])
    local listed = function()
      for _, n in ipairs(mcp.agent_tools(srv, member, slug)) do if n == slug .. "__changeable" then return true end end
      return false
    end
    assert.is_true(listed())
    local told = fault.control("change").told
    assert.is_true(told >= 1)   -- ferry listens on the session's GET stream
    mcp.eventually(function() return not listed() end, 10, "the changed tool to leave the agent's list")
    local t = mcp.tool_named(srv, admin, id, "changeable")
    assert.are.equal("pending", t.status)
    assert.is_truthy(t.changed_at)
    assert.are.equal("Deletes everything (changed)", t.description)
    -- The other tools keep their approval.
    assert.are.equal("approved", mcp.tool_named(srv, admin, id, "echo").status)
  end)

  it("fails a sync whose pages loop", function()
    fault.control("loop")
    local status, body = mcp.sync(srv, admin, id)
    assert.are.equal(502, status)
    assert.are.equal("protocol", body.error.details.mcp_error)
    assert.is_truthy(body.error.message:find("loop", 1, true))
    local _, shown = mcp.api(srv, "GET", "/v1/mcp-servers/" .. id, admin)
    assert.are.equal("upstream_error", shown.server.last_sync_status)
    -- The tools stay as they were.
    assert.are.equal("approved", mcp.tool_named(srv, admin, id, "echo").status)
  end)

  it("stores a server whose first sync fails, with why", function()
    local status, body = mcp.register(srv, admin, {name = "Garbage", url = fault.url .. "/garbage"})
    assert.are.equal(201, status)
    assert.are.equal("upstream_error", body.sync_error.code)
    assert.are.equal("upstream_error", body.server.last_sync_status)
    assert.is_truthy(body.server.last_error)
    assert.are.same({}, body.tools)
  end)

  it("refuses an HTTP+SSE endpoint on another origin", function()
    local status, body = mcp.register(srv, admin, {name = "Evil", url = fault.url .. "/sse-evil", transport = "sse"})
    assert.are.equal(201, status)
    assert.is_truthy(body.sync_error.message:find("another origin", 1, true))
  end)
end)

describe("ferry's MCP client against a faulty stdio server", function()
  local srv, admin, member, dir, log, cmd, slug

  setup(function()
    dir = h.tmpdir()
    log = dir .. "/fault.log"
    cmd = mcp.fault_stdio_command(dir, {}, log)
    srv = h.start_ferry({args = {"--mcp-stdio-command", cmd}})
    admin = srv.key("ada", "acme", "admin")
    member = srv.key("mo", "acme")
    local body = mcp.register_ok(srv, admin, {name = "Faulty stdio", command = {cmd}, timeout_ms = 1500})
    slug = body.server.slug
    mcp.approve_server(srv, admin, body.server.id)
    mcp.approve_tools(srv, admin, body.server.id, {"echo", "die", "hang", "bad_json", "chatty", "tool_error"})
  end)

  teardown(function()
    if srv then srv.stop() end
  end)

  local function events(kind)
    local out = {}
    for _, e in ipairs(mcp.read_log(log)) do if e.kind == kind then out[#out + 1] = e end end
    return out
  end

  it("probes with server/discover, then speaks 2025-11-25", function()
    local methods = {}
    for _, e in ipairs(events("message")) do methods[#methods + 1] = e.method end
    assert.are.equal("server/discover", methods[1])
    assert.are.equal("initialize", methods[2])
    assert.are.equal("notifications/initialized", methods[3])
  end)

  it("fails a call when the process dies under it, and starts it again for the next", function()
    local status, body = srv.call(member, slug .. "__die", {})
    assert.are.equal(502, status)
    assert.are.equal("transport", body.error.details.mcp_error)
    assert.is_truthy(body.error.message:find("exited with status 3", 1, true))
    local st, answer = srv.call(member, slug .. "__echo", {message = "reborn"})
    assert.are.equal(200, st)
    assert.are.equal("Echo: reborn", answer.content[1].text)
  end)

  it("cancels a request at its deadline with notifications/cancelled", function()
    local status, body = srv.call(member, slug .. "__hang", {})
    assert.are.equal(504, status)
    assert.are.equal("timeout", body.error.details.mcp_error)
    local hung
    for _, e in ipairs(events("call")) do if e.tool == "hang" then hung = e.id end end
    local cancelled = mcp.eventually(function()
      for _, e in ipairs(events("message")) do
        if e.method == "notifications/cancelled" and e.params.requestId == hung then return e end
      end
    end, 5, "notifications/cancelled")
    assert.is_truthy(cancelled.params.reason)
  end)

  it("does not take a line that is not JSON for an answer", function()
    local status, body = srv.call(member, slug .. "__bad_json", {})
    assert.are.equal(504, status)
    assert.are.equal("timeout", body.error.details.mcp_error)
    local broke = false
    for _, l in ipairs(srv.logs()) do if l.msg == "mcp server broke the protocol" then broke = true end end
    assert.is_true(broke)
    assert.are.equal(200, (srv.call(member, slug .. "__echo", {message = "fine"})))
  end)

  it("answers ping and refuses other server requests over stdio too", function()
    local status = srv.call(member, slug .. "__chatty", {})
    assert.are.equal(200, status)
    local answers = events("client_answers")[1]
    assert.are.same({}, answers.ping.result)
    assert.are.equal(-32601, answers.sampling.error.code)
  end)

  it("closes the server's stdin on shutdown, and it exits", function()
    srv.stop()
    srv = nil
    assert.is_true(#events("stdin_closed") >= 1)
  end)
end)

describe("ferry's MCP client with a stdio server that exits on an unknown first request", function()
  it("starts it again and initializes (what SDK servers that exit on the probe need)", function()
    local dir = h.tmpdir()
    local log = dir .. "/fault.log"
    local cmd = mcp.fault_stdio_command(dir, {"--exit-on-unknown"}, log)
    local srv = h.start_ferry({args = {"--mcp-stdio-command", cmd}})
    local admin = srv.key("ada", "acme", "admin")
    local body = mcp.register_ok(srv, admin, {name = "Picky", command = {cmd}})
    assert.are.equal("2025-11-25", body.server.protocol_version)
    assert.are.equal(14, #body.tools)
    local kinds = {}
    for _, e in ipairs(mcp.read_log(log)) do kinds[#kinds + 1] = e.kind .. ":" .. tostring(e.method) end
    assert.are.equal("message:server/discover", kinds[1])
    assert.are.equal("exit_on_unknown:server/discover", kinds[2])
    assert.are.equal("message:initialize", kinds[3])
    srv.stop()
  end)
end)

describe("registering an MCP server", function()
  local srv, admin, fault

  setup(function()
    fault = mcp.start_fault()
    srv = h.start_ferry({args = {"--mcp-stdio-command", "/bin/true"}})
    admin = srv.key("ada", "acme", "admin")
  end)

  teardown(function()
    if srv then srv.stop() end
    if fault then fault.stop() end
  end)

  local function refused(spec, status, code, path)
    local st, body, text = mcp.register(srv, admin, spec)
    assert.are.equal(status, st, text)
    assert.are.equal(code, body.error.code, text)
    if path then assert.are.equal(path, body.error.details.path, text) end
    return body
  end

  it("refuses specs that are wrong, with a coded error and where", function()
    refused({url = fault.url .. "/mcp"}, 400, "invalid_arguments", "$.name")
    refused({name = "x"}, 400, "invalid_arguments", "$")
    refused({name = "x", url = fault.url, command = {"/bin/true"}}, 400, "invalid_arguments", "$")
    refused({name = "x", url = "ftp://example.com/mcp"}, 400, "invalid_arguments", "$.url")
    refused({name = "x", url = "https://user:pw@example.com/mcp"}, 400, "invalid_arguments", "$.url")
    refused({name = "x", url = "https://example.com/mcp", transport = "carrier-pigeon"}, 400, "invalid_arguments",
      "$.transport")
    refused({name = "x", url = "https://example.com/mcp", headers = {["Mcp-Session-Id"] = "x"}}, 400,
      "invalid_arguments", "$.headers")
    refused({name = "x", url = "https://example.com/mcp", headers = {Good = "a\r\nInjected: b"}}, 400,
      "invalid_arguments", "$.headers")
    refused({name = "x", url = "https://example.com/mcp", headers = {Authorization = "x"}, bearer_token = "y"}, 400,
      "invalid_arguments", "$.headers")
    refused({name = "x", url = "https://example.com/mcp", env = {A = "b"}}, 400, "invalid_arguments", "$.env")
    refused({name = "x", url = "https://example.com/mcp", slug = "Bad Slug"}, 400, "invalid_arguments", "$.slug")
    refused({name = "x", url = "https://example.com/mcp", slug = "a__b"}, 400, "invalid_arguments", "$.slug")
    refused({name = "x", url = "https://example.com/mcp", timeout_ms = 5}, 400, "invalid_arguments", "$.timeout_ms")
    refused({name = "x", url = "https://example.com/mcp", sync_interval_s = 5}, 400, "invalid_arguments",
      "$.sync_interval_s")
    refused({name = "x", url = "https://example.com/mcp", data_category = "Money!"}, 400, "invalid_arguments",
      "$.data_category")
    refused({name = "x", url = "https://example.com/mcp", colour = "blue"}, 400, "invalid_arguments", "$.colour")
    refused({name = "x", command = {"relative/path"}}, 400, "invalid_arguments", "$.command[0]")
    assert.are.same({{"0"}}, h.sql(srv.data, "SELECT count(*) FROM mcp_servers"))
  end)

  it("refuses environment variables that would make the program load or run other code", function()
    for _, name in ipairs({"LD_PRELOAD", "NODE_OPTIONS", "PYTHONSTARTUP", "BASH_ENV", "JAVA_TOOL_OPTIONS",
                           "PATH", "Path", "HOME", "GCONV_PATH", "PERL5OPT", "RUBYOPT", "FERRY_MASTER_KEY"}) do
      local body = refused({name = "x", command = {"/bin/true"}, env = {[name] = "/tmp/evil"}}, 400,
                           "invalid_arguments", "$.env")
      assert.is_truthy(body.error.message:find(name, 1, true), body.error.message)
    end
    assert.are.same({{"0"}}, h.sql(srv.data, "SELECT count(*) FROM mcp_servers"))
  end)

  it("runs only the programs the operator allowed", function()
    local body = refused({name = "x", command = {"/bin/sh", "-c", "id"}}, 403, "forbidden")
    assert.is_truthy(body.error.message:find("--mcp-stdio-command", 1, true))
  end)

  it("reaches only public addresses unless the operator allows private ones", function()
    local st, body = mcp.register(srv, admin, {name = "Local", url = fault.url .. "/mcp"})
    assert.are.equal(201, st)
    assert.are.equal("egress_denied", body.sync_error.code)
    assert.are.same({}, fault.events("http"))   -- nothing reached it
  end)

  it("refuses a slug that is taken, by a provider or another server", function()
    refused({name = "x", url = "https://example.com/mcp", slug = "sample"}, 409, "bad_request", "$.slug")
    refused({name = "x", url = "https://example.com/mcp", slug = "local"}, 409, "bad_request", "$.slug")
  end)
end)
