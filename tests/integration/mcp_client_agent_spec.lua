-- Issue 6, end to end: an admin registers server-everything over stdio and
-- over Streamable HTTP and approves two tools of each; an agent using the
-- official SDK client (tests/peers/mcp_client.mjs, @modelcontextprotocol/sdk
-- 1.x) on ferry's own /mcp lists them and calls them; each call is a row of
-- mcp_tool_executions and of the audit. The servers are registered while
-- ferry runs, so /mcp must offer tools that came after it started, and
-- pass the servers' own content blocks on.
-- server-everything over HTTP binds every interface: loopback-only
-- namespace (scripts/test's ctest runs in one).
local h = require "helper"
local mcp = require "mcp_helper"

describe("an agent on ferry's /mcp using tools of registered MCP servers", function()
  local srv, admin, member, everything
  local client_script = h.root .. "/tests/peers/mcp_client.mjs"

  setup(function()
    everything = mcp.start_everything("streamableHttp")
    srv = h.start_ferry({args = {"--mcp-allow-private", "--mcp-stdio-command", mcp.everything_bin}})
    admin = srv.key("ada", "acme", "admin")
    member = srv.key("mo", "acme")
  end)

  teardown(function()
    if srv then srv.stop() end
    if everything then everything.stop() end
  end)

  it("lists and calls approved tools over stdio and Streamable HTTP, recorded and audited", function()
    local servers = {
      mcp.register_ok(srv, admin, {name = "Everything", command = {mcp.everything_bin}}).server,
      mcp.register_ok(srv, admin, {name = "Everything HTTP", url = everything.url}).server,
    }
    local steps = {{op = "list_all"}}
    for _, s in ipairs(servers) do
      mcp.approve_server(srv, admin, s.id)
      mcp.approve_tools(srv, admin, s.id, {"echo", "get-sum"})
      steps[#steps + 1] = {op = "call", name = s.slug .. "__echo", arguments = {message = "via " .. s.slug}}
      steps[#steps + 1] = {op = "call", name = s.slug .. "__get-sum", arguments = {a = 2, b = 3}}
    end
    local code, out, err = h.run({h.node_bin, client_script, srv.url .. "/mcp", h.json.encode(steps)},
      {MCP_KEY = member, MCP_SDK = "v1"})
    assert.are.equal(0, code, tostring(err))
    local report = h.decode(out)
    assert.is_true(report.connected)
    local listed = {}
    for _, t in ipairs(report.steps[1].tools) do listed[t.name] = true end
    for i, s in ipairs(servers) do
      assert.is_true(listed[s.slug .. "__echo"] and listed[s.slug .. "__get-sum"])
      assert.is_nil(listed[s.slug .. "__get-env"])   -- not approved: not offered
      local echo, sum = report.steps[2 * i], report.steps[2 * i + 1]
      assert.are.same({{type = "text", text = "Echo: via " .. s.slug}}, echo.content)
      assert.is_false(echo.isError)
      assert.are.equal("The sum of 2 and 3 is 5.", sum.content[1].text)
      local execs = mcp.executions(srv, admin, s.id)   -- also writes what is batched
      local seen = {}
      for _, e in ipairs(execs) do seen[e.tool] = e.status .. ":" .. e.user end
      assert.are.same({[s.slug .. "__echo"] = "success:mo", [s.slug .. "__get-sum"] = "success:mo"}, seen)
      local _, audit = srv.get("/v1/audit?integration=" .. s.slug, admin)
      local ops = {}
      for _, r in ipairs(audit.entries) do ops[r.operation .. ":" .. r.outcome] = true end
      assert.is_true(ops[s.slug .. "__echo:ok"])
      assert.is_true(ops[s.slug .. "__get-sum:ok"])
    end
  end)

  it("passes a server's images and structured content on, and holds a write for approval", function()
    local s = mcp.register_ok(srv, admin, {name = "Everything media", command = {mcp.everything_bin}}).server
    mcp.approve_server(srv, admin, s.id)
    mcp.approve_tools(srv, admin, s.id, {"get-tiny-image", "get-structured-content"})
    mcp.approve_tools(srv, admin, s.id, {"get-env"}, {access = "write"})
    local steps = {
      {op = "list_all"},     -- the SDK checks structuredContent against the listed outputSchema
      {op = "call", name = s.slug .. "__get-tiny-image"},
      {op = "call", name = s.slug .. "__get-structured-content", arguments = {location = "Chicago"}},
      {op = "call", name = s.slug .. "__get-env"},
    }
    local code, out, err = h.run({h.node_bin, client_script, srv.url .. "/mcp", h.json.encode(steps)},
      {MCP_KEY = member, MCP_SDK = "v1"})
    assert.are.equal(0, code, tostring(err))
    local report = h.decode(out)
    local image, weather, env = report.steps[2], report.steps[3], report.steps[4]
    assert.is_nil(image.error, h.json.encode(image.error))
    local types = {}
    for i, block in ipairs(image.content) do types[i] = block.type end
    assert.are.same({"text", "image", "text"}, types)
    assert.are.equal("image/png", image.content[2].mimeType)
    assert.is_truthy(#image.content[2].data > 100)
    assert.is_nil(weather.error, h.json.encode(weather.error))
    assert.is_number(weather.structuredContent.temperature)
    assert.is_string(weather.structuredContent.conditions)
    -- A tool approved as a write waits for a person; nothing ran.
    assert.is_nil(env.error, h.json.encode(env.error))
    assert.matches("^awaiting approval ", env.content[1].text)
    local execs = mcp.executions(srv, admin, s.id)
    local ran = {}
    for _, e in ipairs(execs) do ran[e.tool] = (ran[e.tool] or 0) + 1 end
    assert.are.same({[s.slug .. "__get-tiny-image"] = 1, [s.slug .. "__get-structured-content"] = 1}, ran)
  end)
end)
