-- ferry's MCP client against @modelcontextprotocol/server-everything over
-- stdio: an admin registers it, approves the server and two tools, and an
-- agent lists and calls them through /v1/tools and /v1/tools/call; the
-- calls land in mcp_tool_executions and the audit; writes wait for
-- approval; secrets stay sealed; the process is stopped on delete and on
-- shutdown.
local h = require "helper"
local mcp = require "mcp_helper"

describe("ferry's MCP client with server-everything over stdio", function()
  local srv, admin, member, other, server
  local secret = "s3cr3t-env-value-for-everything"

  setup(function()
    mcp.require_everything()
    srv = h.start_ferry({args = {"--mcp-stdio-command", mcp.everything_bin}})
    admin = srv.key("ada", "acme", "admin")
    member = srv.key("mo", "acme")
    other = srv.key("gus", "globex", "admin")
    local body = mcp.register_ok(srv, admin, {
      name = "Everything", command = {mcp.everything_bin}, env = {EVERYTHING_TOKEN = secret},
    })
    server = body.server
    server.first_tools = body.tools
  end)

  teardown(function()
    if srv then srv.stop() end
  end)

  it("registers the server pending, with its tools discovered and pending too", function()
    assert.are.equal("pending", server.status)
    assert.are.equal("everything", server.slug)
    assert.are.equal("stdio", server.detected_transport)
    -- server-everything speaks 2025-11-25 only: the 2026-07-28 probe
    -- (server/discover) failed and ferry fell back to initialize.
    assert.are.equal("2025-11-25", server.protocol_version)
    assert.are.equal("ok", server.last_sync_status)
    assert.are.same({"EVERYTHING_TOKEN"}, server.env)
    local names, access = {}, {}
    for _, t in ipairs(server.first_tools) do
      names[#names + 1] = t.name
      access[t.name] = t.access
      assert.are.equal("pending", t.status)
      assert.are.equal("everything__" .. t.name, t.full_name)
    end
    assert.is_true(#names >= 13)
    assert.is_truthy(access.echo)
    assert.are.equal("read", access.echo)        -- readOnlyHint: true
    assert.are.equal("write", access["toggle-simulated-logging"])   -- readOnlyHint: false
  end)

  it("offers nothing to the agent until the server and a tool are approved", function()
    assert.are.same({}, mcp.agent_tools(srv, member, "everything"))
    local status, body = srv.call(member, "everything__echo", {message = "hi"})
    assert.are.equal(404, status)
    assert.are.equal("unknown_tool", body.error.code)
    mcp.approve_server(srv, admin, server.id)
    assert.are.same({}, mcp.agent_tools(srv, member, "everything"))
  end)

  it("lets the agent list and call the two tools an admin approved", function()
    mcp.approve_tools(srv, admin, server.id, {"echo", "get-sum"})
    local names, tools = mcp.agent_tools(srv, member, "everything")
    assert.are.same({"everything__echo", "everything__get-sum"}, names)
    for _, t in ipairs(tools) do
      if t.name == "everything__get-sum" then
        assert.are.equal("read", t.access)
        assert.are.same({"a", "b"}, t.input_schema.required)   -- the server's own schema
      end
    end
    local status, body = srv.call(member, "everything__echo", {message = "hello from the agent"})
    assert.are.equal(200, status)
    assert.are.same({{type = "text", text = "Echo: hello from the agent"}}, body.content)
    assert.is_false(body.result.isError)
    status, body = srv.call(member, "everything__get-sum", {a = 2, b = 40})
    assert.are.equal(200, status)
    assert.are.equal("The sum of 2 and 40 is 42.", body.content[1].text)
    -- Not approved: not callable.
    status, body = srv.call(member, "everything__get-env", {})
    assert.are.equal(404, status)
    assert.are.equal("unknown_tool", body.error.code)
  end)

  it("records every call in mcp_tool_executions and in the audit", function()
    local execs = mcp.executions(srv, admin, server.id)
    local seen = {}
    for _, e in ipairs(execs) do
      seen[e.tool] = e
      assert.are.equal("mo", e.user)
    end
    assert.are.equal("success", seen["everything__echo"].status)
    assert.are.equal("success", seen["everything__get-sum"].status)
    local rows = h.sql(srv.data, "SELECT tool_name, status, team_id IS NOT NULL FROM mcp_tool_executions" ..
      " WHERE tool_name = 'everything__get-sum'")
    assert.are.same({{"everything__get-sum", "success", "1"}}, rows)
    local _, audit = srv.get("/v1/audit?integration=everything", admin)
    local ops = {}
    for _, r in ipairs(audit.entries) do ops[r.operation .. ":" .. r.outcome] = true end
    assert.is_true(ops["everything__echo:ok"])
    assert.is_true(ops["everything__get-sum:ok"])
    assert.is_true(ops["mcp.sync:ok"])
    assert.is_true(ops["mcp.server.approve:ok"])
    local _, verify = srv.get("/v1/audit/verify", admin)
    assert.is_true(verify.ok)
  end)

  it("lists the approved server in the registry with method mcp", function()
    local _, body = srv.get("/v1/integrations", member)
    local entry
    for _, i in ipairs(body.integrations) do if i.slug == "everything" then entry = i end end
    assert.is_truthy(entry)
    assert.are.equal("mcp", entry.method)
    assert.are.equal(2, entry.tools_count)
    assert.are.same({"other"}, entry.data_categories)
    assert.is_true(entry.connected)
  end)

  it("keeps the server to its team", function()
    assert.are.same({}, mcp.agent_tools(srv, other, "everything"))
    local status, body = srv.call(other, "everything__echo", {message = "x"})
    assert.are.equal(404, status)
    assert.are.equal("unknown_tool", body.error.code)
    status = mcp.api(srv, "GET", "/v1/mcp-servers/" .. server.id, other)
    assert.are.equal(404, status)
    local _, list = mcp.api(srv, "GET", "/v1/mcp-servers", other)
    assert.are.same({}, list.servers)
    local _, integrations = srv.get("/v1/integrations", other)
    for _, i in ipairs(integrations.integrations) do assert.are_not.equal("everything", i.slug) end
  end)

  it("lets only admins manage MCP servers", function()
    local status, body = mcp.register(srv, member, {name = "Mine", command = {mcp.everything_bin}})
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    status = mcp.api(srv, "POST", "/v1/mcp-servers/" .. server.id .. "/approve", member, {})
    assert.are.equal(403, status)
  end)

  it("keeps content, structuredContent and isError, and makes isError a coded error", function()
    -- gzip-file-as-resource says it writes; the admin approves it as a read.
    mcp.approve_tools(srv, admin, server.id, {"get-structured-content", "gzip-file-as-resource"}, {access = "read"})
    local status, body = srv.call(member, "everything__get-structured-content", {location = "Chicago"})
    assert.are.equal(200, status)
    assert.are.equal("number", type(body.result.structuredContent.temperature))
    assert.are.equal("text", body.content[1].type)
    -- A fetch that cannot work: the tool reports isError.
    status, body = srv.call(member, "everything__gzip-file-as-resource", {data = "https://127.0.0.1:1/none"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("tool_error", body.error.details.mcp_error)
    assert.is_true(body.error.details.result.isError)
    assert.is_truthy(body.error.details.result.content[1].text)
    mcp.executions(srv, admin, server.id)   -- writes what is batched
    local rows = h.sql(srv.data, "SELECT status FROM mcp_tool_executions WHERE tool_name = " ..
      "'everything__gzip-file-as-resource'")
    assert.are.same({{"tool_error"}}, rows)
  end)

  it("refuses arguments that break the tool's schema before calling the server", function()
    local before = #mcp.executions(srv, admin, server.id)
    local status, body = srv.call(member, "everything__get-sum", {a = "two"})
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.equal(before, #mcp.executions(srv, admin, server.id))
  end)

  it("makes a write wait for a person's approval", function()
    mcp.approve_tools(srv, admin, server.id, {"toggle-simulated-logging"})
    local status, body = srv.call(member, "everything__toggle-simulated-logging", {})
    assert.are.equal(202, status)
    local id = body.approval.id
    local st, answer = mcp.api(srv, "POST", "/v1/approvals/" .. id .. "/approve", admin, {})
    assert.are.equal(200, st)
    assert.are.equal("succeeded", answer.approval.status)
    assert.is_truthy(answer.approval.result.content[1].text:match("logging"))
    mcp.executions(srv, admin, server.id)
    local rows = h.sql(srv.data, "SELECT status, approval_id FROM mcp_tool_executions WHERE tool_name = " ..
      "'everything__toggle-simulated-logging'")
    assert.are.same({{"success", id}}, rows)
  end)

  it("ends a call past the server's deadline with upstream_timeout", function()
    local st = mcp.api(srv, "PATCH", "/v1/mcp-servers/" .. server.id, admin, {timeout_ms = 800})
    assert.are.equal(200, st)
    mcp.approve_tools(srv, admin, server.id, {"trigger-long-running-operation"})
    local t0 = h.now()
    local status, body = srv.call(member, "everything__trigger-long-running-operation", {duration = 5, steps = 5})
    assert.are.equal(504, status)
    assert.are.equal("upstream_timeout", body.error.code)
    assert.are.equal("timeout", body.error.details.mcp_error)
    assert.is_true(h.now() - t0 < 4)
    mcp.executions(srv, admin, server.id)
    local rows = h.sql(srv.data, "SELECT status FROM mcp_tool_executions WHERE tool_name = " ..
      "'everything__trigger-long-running-operation'")
    assert.are.same({{"timeout"}}, rows)
    -- The server goes on working for the next call.
    status = srv.call(member, "everything__echo", {message = "still there"})
    assert.are.equal(200, status)
  end)

  it("hands the process its own environment only, and masks the secret it holds", function()
    mcp.approve_tools(srv, admin, server.id, {"get-env"})
    local status, body = srv.call(member, "everything__get-env", {})
    assert.are.equal(200, status)
    local env = h.json.decode(body.content[1].text)
    assert.are.equal("[redacted]", env.EVERYTHING_TOKEN)
    assert.is_nil(env.FERRY_MASTER_KEY)
    for name in pairs(env) do
      assert.is_truthy(({PATH = 1, HOME = 1, LANG = 1, LC_ALL = 1, TZ = 1, TMPDIR = 1, EVERYTHING_TOKEN = 1})[name],
        "unexpected variable " .. name)
    end
    -- Nowhere in what ferry shows, logs or stores in the clear.
    local _, shown = mcp.api(srv, "GET", "/v1/mcp-servers/" .. server.id, admin)
    assert.is_nil(h.json.encode(shown):find(secret, 1, true))
    assert.is_nil((h.read_file(srv.log) or ""):find(secret, 1, true))
    assert.is_nil((h.read_file(srv.data .. "/ferry.db") or ""):find(secret, 1, true))
    assert.is_nil((h.read_file(srv.data .. "/ferry.db-wal") or ""):find(secret, 1, true))
  end)

  it("stops the server's process when the server is deleted", function()
    -- (An earlier one may still be on its way out: the settings changed.)
    local kids = mcp.children(srv.pid)
    assert.is_true(#kids >= 1)
    local status = mcp.api(srv, "DELETE", "/v1/mcp-servers/" .. server.id, admin)
    assert.are.equal(204, status)
    mcp.eventually(function()
      for _, pid in ipairs(kids) do if mcp.alive(pid) then return false end end
      return true
    end, 10, "the server processes to end")
    assert.are.same({}, mcp.agent_tools(srv, member, "everything"))
    local st, body = srv.call(member, "everything__echo", {message = "gone"})
    assert.are.equal(404, st)
    assert.are.equal("unknown_tool", body.error.code)
    -- Its tools went; the executions stay for analytics.
    assert.are.same({{"0"}}, h.sql(srv.data, "SELECT count(*) FROM mcp_tools"))
    assert.is_true(tonumber(h.sql(srv.data, "SELECT count(*) FROM mcp_tool_executions")[1][1]) >= 5)
  end)

  it("stops server processes when ferry shuts down, and exits cleanly", function()
    local body = mcp.register_ok(srv, admin, {name = "Everything again", command = {mcp.everything_bin}})
    mcp.approve_server(srv, admin, body.server.id)
    mcp.approve_tools(srv, admin, body.server.id, {"echo"})
    local status = srv.call(member, body.server.slug .. "__echo", {message = "x"})
    assert.are.equal(200, status)
    local kids = mcp.children(srv.pid)
    assert.is_true(#kids >= 1)
    local data = srv.data
    srv.stop()
    srv = nil
    for _, pid in ipairs(kids) do assert.is_false(mcp.alive(pid)) end
    -- Executions are batched; what waited is written at exit, not lost.
    assert.are.same({{"success"}}, h.sql(data, "SELECT status FROM mcp_tool_executions WHERE tool_name = '" ..
      body.server.slug .. "__echo'"))
  end)
end)
