-- ferry's MCP client against @modelcontextprotocol/server-everything over
-- HTTP: Streamable HTTP (/mcp) and the HTTP+SSE transport of 2024-11-05
-- (/sse), both found from the URL alone; 2026-07-28 tried first and
-- answered with 400, so 2025-11-25's initialize follows. server-everything
-- listens on every interface: this spec runs in a loopback-only network
-- namespace (scripts/test's ctest does; by hand: unshare -n).
local h = require "helper"
local mcp = require "mcp_helper"

describe("ferry's MCP client with server-everything over HTTP", function()
  local srv, admin, member, streamable, sse, ids
  local token = "bearer-secret-for-everything-1234"
  local api_key = "header-secret-for-everything-5678"

  setup(function()
    streamable = mcp.start_everything("streamableHttp")
    sse = mcp.start_everything("sse")
    srv = h.start_ferry({args = {"--mcp-allow-private"}})
    admin = srv.key("ada", "acme", "admin")
    member = srv.key("mo", "acme")
    ids = {}
  end)

  teardown(function()
    if srv then srv.stop() end
    if streamable then streamable.stop() end
    if sse then sse.stop() end
  end)

  it("finds Streamable HTTP behind a URL, falling back from 2026-07-28 to 2025-11-25", function()
    local body = mcp.register_ok(srv, admin, {name = "Everything HTTP", url = streamable.url,
                                              bearer_token = token, headers = {["X-Api-Key"] = api_key}})
    ids.http = body.server.id
    assert.are.equal("auto", body.server.transport)
    assert.are.equal("streamable_http", body.server.detected_transport)
    assert.are.equal("2025-11-25", body.server.protocol_version)
    assert.are.equal("mcp-servers/everything", body.server.server_info.name)
    assert.is_true(#body.tools >= 13)
    assert.are.same({"X-Api-Key"}, body.server.headers)
    assert.is_true(body.server.has_bearer_token)
  end)

  it("finds the HTTP+SSE transport behind a URL that serves it", function()
    local body = mcp.register_ok(srv, admin, {name = "Everything SSE", url = sse.url})
    ids.sse = body.server.id
    assert.are.equal("sse", body.server.detected_transport)
    assert.is_true(#body.tools >= 13)
  end)

  it("calls approved tools over both transports", function()
    for _, id in pairs(ids) do
      local server = mcp.approve_server(srv, admin, id)
      mcp.approve_tools(srv, admin, id, {"echo", "get-sum"})
      local status, body = srv.call(member, server.slug .. "__echo", {message = "over " .. server.slug})
      assert.are.equal(200, status)
      assert.are.equal("Echo: over " .. server.slug, body.content[1].text)
      status, body = srv.call(member, server.slug .. "__get-sum", {a = 1.5, b = 2})
      assert.are.equal(200, status)
      assert.are.equal("The sum of 1.5 and 2 is 3.5.", body.content[1].text)
    end
  end)

  it("lists every tool again on a sync, with nothing changed", function()
    local status, body = mcp.sync(srv, admin, ids.http)
    assert.are.equal(200, status)
    assert.are.same({added = 0, changed = 0, removed = 0}, body.changes)
    local approved = 0
    for _, t in ipairs(body.tools) do if t.status == "approved" then approved = approved + 1 end end
    assert.are.equal(2, approved)
  end)

  it("ends a call past the deadline with upstream_timeout, over both transports", function()
    for _, id in pairs(ids) do
      local st, body = mcp.api(srv, "PATCH", "/v1/mcp-servers/" .. id, admin, {timeout_ms = 700})
      assert.are.equal(200, st)
      mcp.approve_tools(srv, admin, id, {"trigger-long-running-operation"})
      local status
      status, body = srv.call(member, body.server.slug .. "__trigger-long-running-operation", {duration = 4, steps = 4})
      assert.are.equal(504, status)
      assert.are.equal("timeout", body.error.details.mcp_error)
      -- Back to the default: the tests below must not race a 700 ms deadline
      -- (a restarted server's first answers are slow under the sanitizers).
      st = mcp.api(srv, "PATCH", "/v1/mcp-servers/" .. id, admin, {timeout_ms = 30000})
      assert.are.equal(200, st)
    end
  end)

  it("starts a new session when the server forgets the old one (a restart)", function()
    local _, server = mcp.api(srv, "GET", "/v1/mcp-servers/" .. ids.http, admin)
    local slug = server.server.slug
    assert.are.equal(200, (srv.call(member, slug .. "__echo", {message = "before"})))
    streamable.stop()
    streamable = mcp.start_everything("streamableHttp", {port = streamable.port})
    local status, body = srv.call(member, slug .. "__echo", {message = "after the restart"})
    assert.are.equal(200, status)
    assert.are.equal("Echo: after the restart", body.content[1].text)
    local expired = false
    for _, l in ipairs(srv.logs()) do if l.msg == "mcp session expired; initializing again" then expired = true end end
    assert.is_true(expired)
  end)

  it("fails a call cleanly when the server dies during it, and recovers when it is back", function()
    local _, server = mcp.api(srv, "GET", "/v1/mcp-servers/" .. ids.http, admin)
    local slug = server.server.slug
    mcp.api(srv, "PATCH", "/v1/mcp-servers/" .. ids.http, admin, {timeout_ms = 20000})
    -- A long call, and the server killed under it.
    local p = h.spawn({"curl", "-s", "-m", "30", "-H", "Authorization: Bearer " .. member, "-d",
      h.json.encode({name = slug .. "__trigger-long-running-operation", arguments = {duration = 10, steps = 10}}),
      srv.url .. "/v1/tools/call"})
    h.sleep(1.5)
    h.kill(streamable.pid, h.SIGKILL)
    h.wait_exit(streamable.pid, 10)
    assert.is_truthy(h.wait_exit(p.pid, 25))
    local answer = h.json.decode(h.read_file(p.stdout))
    assert.are.equal("upstream_error", answer.error.code)
    assert.are.equal("transport", answer.error.details.mcp_error)
    mcp.executions(srv, admin, ids.http)   -- writes what is batched
    local rows = h.sql(srv.data, "SELECT status FROM mcp_tool_executions WHERE tool_name = '" .. slug ..
      "__trigger-long-running-operation' ORDER BY id DESC LIMIT 1")
    assert.are.same({{"transport_error"}}, rows)
    streamable = mcp.start_everything("streamableHttp", {port = streamable.port})
    assert.are.equal(200, (srv.call(member, slug .. "__echo", {message = "back"})))
  end)

  it("never shows, logs or stores the bearer token and headers in the clear", function()
    local _, list = mcp.api(srv, "GET", "/v1/mcp-servers", admin)
    local text = h.json.encode(list)
    assert.is_nil(text:find(token, 1, true))
    assert.is_nil(text:find(api_key, 1, true))
    local log = h.read_file(srv.log) or ""
    assert.is_nil(log:find(token, 1, true))
    assert.is_nil(log:find(api_key, 1, true))
    for _, f in ipairs({"/ferry.db", "/ferry.db-wal"}) do
      local db = h.read_file(srv.data .. f) or ""
      assert.is_nil(db:find(token, 1, true))
      assert.is_nil(db:find(api_key, 1, true))
    end
    local _, audit = srv.get("/v1/audit?limit=1000", admin)
    assert.is_nil(h.json.encode(audit):find(token, 1, true))
  end)
end)
