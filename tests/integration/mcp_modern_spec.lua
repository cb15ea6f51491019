-- ferry's MCP client in the 2026-07-28 era: stateless requests carrying
-- their version, identity and capabilities in _meta, the headers that
-- mirror them (MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Param-*),
-- server/discover, subscriptions/listen for list_changed, a broken stream
-- sent again as a new request, and version choice from an
-- UnsupportedProtocolVersionError. No published server speaks 2026-07-28
-- yet (server-everything answers it with 400), so the server is the fault
-- server's /modern endpoint, first shown to speak it as the official v2
-- client (@modelcontextprotocol/client, pinned to 2026-07-28) expects.
local h = require "helper"
local mcp = require "mcp_helper"

describe("ferry's MCP client speaking 2026-07-28", function()
  local srv, admin, member, fault, id, slug

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

  it("has a test server the official v2 client accepts as 2026-07-28", function()
    local code, out, err = h.run({h.node_bin, mcp.peers .. "/mcp_v2_client_check.mjs", fault.url .. "/modern", "echo",
                                  '{"message":"from the SDK"}'})
    assert.are.equal(0, code, err)
    local check = h.json.decode(out)
    assert.are.equal("2026-07-28", check.protocol)
    assert.are.equal("Echo: from the SDK", check.result.content[1].text)
    assert.is_true(#check.tools >= 15)
  end)

  it("negotiates 2026-07-28 with server/discover and no session", function()
    local body = mcp.register_ok(srv, admin, {name = "Modern", url = fault.url .. "/modern",
                                              headers = {["X-Api-Key"] = "modern-key-4242"}})
    id, slug = body.server.id, body.server.slug
    assert.are.equal("2026-07-28", body.server.protocol_version)
    assert.are.equal("streamable_http", body.server.detected_transport)
    assert.are.equal("ferry-fault-modern", body.server.server_info.name)
    for _, e in ipairs(fault.events("http")) do
      assert.is_nil(e.headers["mcp-session-id"])
      assert.are_not.equal("initialize", e.body and e.body.method)
    end
  end)

  it("leaves out a tool whose x-mcp-header breaks the rules, and says why", function()
    local status, body = mcp.sync(srv, admin, id)
    assert.are.equal(200, status)
    local names = {}
    for _, t in ipairs(body.tools) do names[t.name] = true end
    assert.is_true(names.region)
    assert.is_nil(names.bad_header)
    assert.are.equal("bad_header", body.rejected[1].name)
    assert.is_truthy(body.rejected[1].reason:find("x-mcp-header", 1, true))
  end)

  it("sends the per-request _meta and the mirrored headers with every request", function()
    mcp.approve_server(srv, admin, id)
    mcp.approve_tools(srv, admin, id, {"echo", "region", "broken_stream", "changeable"})
    local status, body = srv.call(member, slug .. "__echo", {message = "modern"})
    assert.are.equal(200, status)
    assert.are.equal("Echo: modern", body.content[1].text)
    local call
    for _, e in ipairs(fault.events("modern_request")) do if e.method == "tools/call" then call = e end end
    assert.are.equal("2026-07-28", call.meta["io.modelcontextprotocol/protocolVersion"])
    assert.are.equal("ferry", call.meta["io.modelcontextprotocol/clientInfo"].name)
    assert.are.same({}, call.meta["io.modelcontextprotocol/clientCapabilities"])
    assert.are.equal("2026-07-28", call.headers["mcp-protocol-version"])
    assert.are.equal("tools/call", call.headers["mcp-method"])
    assert.are.equal("echo", call.headers["mcp-name"])
  end)

  it("mirrors x-mcp-header arguments into Mcp-Param headers, base64 when needed", function()
    local status, body = srv.call(member, slug .. "__region", {region = "eu-west1", query = "select 1"})
    assert.are.equal(200, status)
    assert.are.equal("ran in eu-west1", body.content[1].text)
    status, body = srv.call(member, slug .. "__region", {region = "Zürich", query = "select 1"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("ran in Zürich", body.content[1].text)
    local sent = {}
    for _, e in ipairs(fault.events("modern_request")) do
      if e.headers["mcp-param-region"] then sent[#sent + 1] = e.headers["mcp-param-region"] end
    end
    assert.are.same({"eu-west1", "=?base64?WsO8cmljaA==?="}, sent)
  end)

  it("sends a request again, with a new id, when its stream breaks", function()
    local status, body = srv.call(member, slug .. "__broken_stream", {token = "modern-1"})
    assert.are.equal(200, status)
    assert.are.equal("answered on attempt 2", body.content[1].text)
    local ids = {}
    for _, e in ipairs(fault.events("call")) do
      if e.tool == "broken_stream" and e.arguments.token == "modern-1" then ids[#ids + 1] = e.id end
    end
    assert.are.equal(2, #ids)
    assert.are_not.equal(ids[1], ids[2])
  end)

  it("listens with subscriptions/listen and resyncs on list_changed", function()
    local listened = mcp.eventually(function()
      for _, e in ipairs(fault.events("modern_request")) do
        if e.method == "subscriptions/listen" then return e end
      end
    end, 10, "subscriptions/listen")
    assert.are.equal("2026-07-28", listened.meta["io.modelcontextprotocol/protocolVersion"])
    local told = fault.control("change").told
    assert.is_true(told >= 1)
    mcp.eventually(function() return mcp.tool_named(srv, admin, id, "changeable").status == "pending" end, 10,
      "the changed tool to go back to pending")
  end)

  it("picks a common version from UnsupportedProtocolVersion instead of falling back blindly", function()
    local body = mcp.register_ok(srv, admin, {name = "Dual", url = fault.url .. "/dual"})
    assert.are.equal("2025-11-25", body.server.protocol_version)
    local methods = {}
    for _, e in ipairs(fault.events("http")) do
      if e.path == "/dual" and e.body and e.body.method then methods[#methods + 1] = e.body.method end
    end
    assert.are.equal("server/discover", methods[1])
    assert.are.equal("initialize", methods[2])
  end)
end)

describe("ferry's MCP client speaking 2026-07-28 over stdio", function()
  it("probes with server/discover and stays in the modern era", function()
    local dir = h.tmpdir()
    local log = dir .. "/fault.log"
    local cmd = mcp.fault_stdio_command(dir, {"--modern"}, log)
    local srv = h.start_ferry({args = {"--mcp-stdio-command", cmd}})
    local admin = srv.key("ada", "acme", "admin")
    local member = srv.key("mo", "acme")
    local body = mcp.register_ok(srv, admin, {name = "Modern stdio", command = {cmd}})
    assert.are.equal("2026-07-28", body.server.protocol_version)
    mcp.approve_server(srv, admin, body.server.id)
    mcp.approve_tools(srv, admin, body.server.id, {"echo"})
    local status, answer = srv.call(member, body.server.slug .. "__echo", {message = "piped"})
    assert.are.equal(200, status)
    assert.are.equal("Echo: piped", answer.content[1].text)
    for _, e in ipairs(mcp.read_log(log)) do
      if e.kind == "message" and e.id ~= nil then
        assert.are_not.equal("initialize", e.method)
        assert.are.equal("2026-07-28", e.params._meta["io.modelcontextprotocol/protocolVersion"])
      end
    end
    srv.stop()
  end)
end)
