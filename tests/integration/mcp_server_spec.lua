-- ferry as an MCP server (/mcp): driven by the official TypeScript SDK
-- clients from tests/peers (@modelcontextprotocol/sdk 1.x speaks 2025-11-25;
-- @modelcontextprotocol/client 2.x negotiates 2026-07-28), which list and
-- call the tools a key may use through the same permissions, approvals,
-- rate limits and audit as the REST API; then fault injection over raw HTTP,
-- each fault answered with the status and JSON-RPC error the specification
-- gives (docs/mcp.md lists them).
local h = require "helper"
local json = h.json

local MODERN, LEGACY = "2026-07-28", "2025-11-25"
local client_script = h.root .. "/tests/peers/mcp_client.mjs"
local providers = {h.root .. "/tests/providers", h.root .. "/tests/providers-mcp"}

-- Runs tests/peers/mcp_client.mjs: `sdk` v1 or v2, `mode` the v2 client's
-- version negotiation (legacy, auto, pin:<version>). Returns its report.
local function sdk_client(srv, key, sdk, mode, steps)
  local code, out, err = h.run({h.node_bin, client_script, srv.url .. "/mcp", json.encode(steps or {})},
    {MCP_KEY = key or "", MCP_SDK = sdk, MCP_MODE = mode or "legacy"})
  assert(code == 0, "mcp_client.mjs failed: " .. tostring(err) .. tostring(out))
  local report = h.decode(out)
  assert(report, "mcp_client.mjs printed no JSON: " .. tostring(out) .. tostring(err))
  assert(report.connected, "the client did not connect: " .. json.encode(report))
  return report
end

local function meta(overrides)
  local m = {["io.modelcontextprotocol/protocolVersion"] = MODERN,
             ["io.modelcontextprotocol/clientInfo"] = {name = "spec", version = "1"},
             ["io.modelcontextprotocol/clientCapabilities"] = {}}
  for k, v in pairs(overrides or {}) do m[k] = v ~= false and v or nil end
  return m
end

-- POST /mcp with `body` (a table is encoded); returns status, decoded
-- body, headers, raw text.
local function post(srv, key, body, headers)
  local hs = {["content-type"] = "application/json", accept = "application/json, text/event-stream"}
  if key then hs.authorization = "Bearer " .. key end
  for k, v in pairs(headers or {}) do hs[k:lower()] = v or nil end
  local text = type(body) == "table" and json.encode(body) or body
  local status, raw, rh = h.request("POST", srv.url .. "/mcp", {body = text, headers = hs})
  return status, h.decode(raw), rh, raw
end

-- A 2025-11-25 request (after initialize: the version header).
local function legacy(srv, key, method, params, id)
  return post(srv, key, {jsonrpc = "2.0", id = id or 1, method = method, params = params},
    {["mcp-protocol-version"] = LEGACY})
end

-- A 2026-07-28 request with its _meta and every header it needs;
-- `headers` overrides them (false removes one).
local function modern(srv, key, method, params, headers, id)
  params = params or {}
  if params._meta == nil then params._meta = meta() end
  local hs = {["mcp-protocol-version"] = MODERN, ["mcp-method"] = method,
              ["mcp-name"] = type(params.name) == "string" and params.name or nil}
  for k, v in pairs(headers or {}) do hs[k:lower()] = v end
  for k, v in pairs(hs) do if v == false then hs[k] = nil end end
  return post(srv, key, {jsonrpc = "2.0", id = id or 7, method = method, params = params}, hs)
end

local function rest_tools(srv, key)
  local status, body = srv.get("/v1/tools", key)
  assert(status == 200)
  return body.tools
end

local function names(tools)
  local list = {}
  for i, t in ipairs(tools) do list[i] = t.name end
  return list
end

local function text_of(result) return result.content and result.content[1] and result.content[1].text end

describe("ferry's MCP server", function()
  local fault, srv, admin, member

  setup(function()
    fault = h.start_fault()
    srv = h.start_ferry({providers = providers, base_urls = {sample = fault.url, ledger = fault.url}})
    admin = srv.key("ada", "books", "admin")
    member = srv.key("mo", "books")
  end)
  teardown(function()
    srv.stop()
    fault.stop()
  end)

  describe("with the official SDK clients", function()
    it("negotiates 2025-11-25 with the 1.x SDK and the 2.x client's default, 2026-07-28 when the 2.x client "
      .. "probes or pins it", function()
      local cases = {{"v1", "legacy", LEGACY}, {"v2", "legacy", LEGACY}, {"v2", "auto", MODERN},
                     {"v2", "pin:" .. MODERN, MODERN}}
      for _, case in ipairs(cases) do
        local r = sdk_client(srv, admin, case[1], case[2], {{op = "call", name = "sample__echo",
                                                             arguments = {text = "hi"}}})
        assert.are.equal(case[3], r.protocolVersion, case[1] .. " " .. case[2])
        assert.are.equal("ferry", r.serverInfo.name)
        assert.is_table(r.capabilities.tools)
        assert.is_truthy(r.instructions:find("awaiting approval", 1, true))
        assert.are.equal("hi", r.steps[1].structuredContent.text)
      end
    end)

    it("lists exactly the tools GET /v1/tools offers the key: names, descriptions, input schemas, in order", function()
      for _, key in ipairs({admin, member}) do
        local rest = rest_tools(srv, key)
        for _, case in ipairs({{"v1", "legacy"}, {"v2", "auto"}}) do
          local r = sdk_client(srv, key, case[1], case[2], {{op = "list_all"}})
          local listed = r.steps[1].tools
          -- regional__misplaced carries an x-mcp-header MCP forbids: REST only.
          local expected = {}
          for _, t in ipairs(rest) do
            if t.name ~= "regional__misplaced" then expected[#expected + 1] = t end
          end
          assert.are.same(names(expected), names(listed))
          for i, t in ipairs(expected) do
            assert.are.equal(t.description, listed[i].description)
            assert.are.same(t.input_schema, listed[i].inputSchema)
            assert.are.equal(t.access == "read", listed[i].annotations.readOnlyHint)
          end
        end
      end
    end)

    it("calls a tool: its JSON result as text and as structuredContent", function()
      for _, case in ipairs({{"v1", "legacy"}, {"v2", "auto"}}) do
        local r = sdk_client(srv, admin, case[1], case[2], {{op = "call", name = "sample__get",
          arguments = {path = "/json", query = {n = 3}}}})
        local result = r.steps[1]
        assert.is_false(result.isError)
        assert.are.equal(3, #result.structuredContent.items)
        assert.are.same(result.structuredContent, json.decode(text_of(result)))
      end
    end)

    it("reports a tool's failure as isError with ferry's code, and an unknown tool as a protocol error", function()
      local r = sdk_client(srv, admin, "v1", "legacy", {
        {op = "call", name = "sample__get", arguments = {path = "/status/500"}},
        {op = "call", name = "sample__echo", arguments = {text = 5}},
        {op = "call", name = "nope__missing", arguments = {}},
      })
      assert.is_true(r.steps[1].isError)
      assert.is_truthy(text_of(r.steps[1]):find("^upstream_error: "), text_of(r.steps[1]))
      assert.is_true(r.steps[2].isError)
      assert.is_truthy(text_of(r.steps[2]):find("^invalid_arguments: %$%.text"), text_of(r.steps[2]))
      assert.are.equal(-32602, r.steps[3].error.code)
      assert.is_truthy(r.steps[3].error.message:find("Unknown tool: nope__missing", 1, true))
    end)

    it("keeps financial data from a member: not listed, and a call refused as forbidden", function()
      local r = sdk_client(srv, member, "v2", "auto", {{op = "list_all"},
        {op = "call", name = "ledger__balance", arguments = {}}})
      for _, t in ipairs(r.steps[1].tools) do assert.is_nil(t.name:find("^ledger__"), t.name) end
      assert.is_true(r.steps[2].isError)
      assert.is_truthy(text_of(r.steps[2]):find("^forbidden: "), text_of(r.steps[2]))
      assert.is_truthy(text_of(r.steps[2]):find("financial", 1, true))
      local admin_view = sdk_client(srv, admin, "v2", "auto", {{op = "list_all"}})
      assert.is_truthy(table.concat(names(admin_view.steps[1].tools), " "):find("ledger__balance", 1, true))
    end)

    it("holds a write for approval: awaiting approval <id>, listed in GET /v1/approvals, run once approved", function()
      local before = fault.count()
      for _, case in ipairs({{"v1", "legacy"}, {"v2", "auto"}}) do
        local r = sdk_client(srv, admin, case[1], case[2], {{op = "call", name = "ledger__pay",
                                                             arguments = {to = "acme", amount = 12}}})
        local result = r.steps[1]
        assert.is_false(result.isError)
        local id = text_of(result):match("^awaiting approval (apr_%w+)")
        assert.is_string(id, text_of(result))
        assert.are.equal(id, result.structuredContent.approval.id)
        assert.are.equal("Pay 12 to acme", result.structuredContent.approval.summary)
        local _, listed = srv.get("/v1/approvals?status=pending", admin)
        local found
        for _, a in ipairs(listed.approvals) do if a.id == id then found = a end end
        assert.is_table(found, "the approval is listed")
        assert.are.equal("ledger__pay", found.tool)
        assert.are.equal(before, fault.count(), "nothing ran before the approval")
        local st, text = h.request("POST", srv.url .. "/v1/approvals/" .. id .. "/approve",
          {json = {}, headers = {authorization = "Bearer " .. admin}})
        assert.are.equal(200, st)
        assert.are.equal("succeeded", h.decode(text).approval.status)
        before = before + 1
        assert.are.equal(before, fault.count(), "ran exactly once")
      end
    end)

    it("never shows a secret argument in the approval it answers", function()
      local r = sdk_client(srv, admin, "v1", "legacy", {{op = "call", name = "sample__post_echo",
        arguments = {payload = {a = 1}, api_token = "tok-SECRET-123"}}})
      local raw = json.encode(r.steps[1])
      assert.is_nil(raw:find("tok-SECRET-123", 1, true))
      assert.are.equal("[redacted]", r.steps[1].structuredContent.approval.arguments.api_token)
    end)

    it("audits each call made over MCP under the caller and the HTTP request id", function()
      local r = sdk_client(srv, member, "v1", "legacy",
        {{op = "call", name = "sample__echo", arguments = {text = "a"}}})
      local request_id = r.steps[1].structuredContent.request_id
      assert.is_string(request_id)
      h.sleep(0.3)   -- audit rows are written in batches within 100 ms
      local _, audit = srv.get("/v1/audit?user=mo&limit=50", admin)
      local row
      for _, e in ipairs(audit.entries) do if e.request_id == request_id then row = e end end
      assert.is_table(row, "an audit row carries the MCP request's id")
      assert.are.equal("sample__echo", row.operation)
      assert.are.equal("ok", row.outcome)
      assert.are.equal("mo", row.user)
      assert.are.equal("books", row.team)
    end)

    it("answers a quick request while a slow tool call waits for its upstream", function()
      local body = json.encode({jsonrpc = "2.0", id = 1, method = "tools/call",
        params = {name = "sample__get", arguments = {path = "/delay", query = {ms = 1500}}}})
      local slow = h.spawn({"curl", "-s", "-H", "Authorization: Bearer " .. admin,
        "-H", "Content-Type: application/json", "-H", "MCP-Protocol-Version: " .. LEGACY,
        "-d", body, srv.url .. "/mcp"})
      h.sleep(0.2)
      local status, pong = legacy(srv, admin, "ping", nil, 2)
      assert.are.equal(200, status)
      assert.are.same({}, pong.result)
      assert.is_nil((h.wait_exit(slow.pid, 0)), "the slow call is still running")
      h.wait_exit(slow.pid, 20)
      local answer = h.decode(h.read_file(slow.stdout))
      assert.is_false(answer.result.isError)
    end)
  end)

  describe("pagination", function()
    local paged, key
    setup(function()
      paged = h.start_ferry({providers = providers, args = {"--mcp-page-size", "4"}})
      key = paged.key("ada", "books", "admin")
    end)
    teardown(function() paged.stop() end)

    it("pages tools/list with nextCursor; every page put together is the whole list", function()
      local r = sdk_client(paged, key, "v1", "legacy", {{op = "list_all"}})
      local all = r.steps[1]
      local expected = {}
      for _, t in ipairs(rest_tools(paged, key)) do
        if t.name ~= "regional__misplaced" then expected[#expected + 1] = t.name end
      end
      assert.are.same(expected, names(all.tools))
      assert.are.equal(math.ceil(#expected / 4), all.pages)
      local modern_all = sdk_client(paged, key, "v2", "auto", {{op = "list_all"}})
      assert.are.same(expected, names(modern_all.steps[1].tools))
    end)

    it("refuses a cursor it did not give with -32602", function()
      local status, body = legacy(paged, key, "tools/list", {cursor = "bogus"})
      assert.are.equal(200, status)
      assert.are.equal(-32602, body.error.code)
      status, body = modern(paged, key, "tools/list", {cursor = 12})
      assert.are.equal(200, status)
      assert.are.equal(-32602, body.error.code)
    end)

    it("marks each 2026-07-28 page cacheable for the caller only", function()
      local status, body = modern(paged, key, "tools/list")
      assert.are.equal(200, status)
      assert.are.equal("complete", body.result.resultType)
      assert.are.equal("private", body.result.cacheScope)
      assert.is_true(body.result.ttlMs >= 0 and body.result.ttlMs % 1 == 0)
      assert.are.equal(4, #body.result.tools)
      assert.is_string(body.result.nextCursor)
      assert.are.equal("ferry", body.result._meta["io.modelcontextprotocol/serverInfo"].name)
    end)
  end)

  describe("rate limits", function()
    it("counts MCP calls in the same buckets as REST calls", function()
      local limited = h.start_ferry({providers = providers, rate_limits = true})
      local key = limited.key("ada", "books", "admin")
      local st = h.request("PUT", limited.url .. "/v1/policies/rate-limits", {
        json = {integration = "sample", per_user = {rate = 0.01, burst = 2}, per_team = {rate = 100, burst = 100}},
        headers = {authorization = "Bearer " .. key}})
      assert.are.equal(200, st)
      local call = {op = "call", name = "sample__echo", arguments = {text = "x"}}
      local r = sdk_client(limited, key, "v1", "legacy", {call, call, call})
      assert.is_false(r.steps[1].isError)
      assert.is_false(r.steps[2].isError)
      assert.is_true(r.steps[3].isError)
      assert.is_truthy(text_of(r.steps[3]):find("^rate_limited: "), text_of(r.steps[3]))
      assert.is_truthy(text_of(r.steps[3]):find('"retry_after":', 1, true))
      assert.are.equal(429, (limited.call(key, "sample__echo", {text = "x"})), "REST shares the bucket")
      limited.stop()
    end)
  end)

  describe("faults", function()
    it("answers JSON that does not parse with 400 and -32700, without an id", function()
      local status, body = post(srv, admin, '{"jsonrpc":"2.0","id":1,"method":', {["mcp-protocol-version"] = LEGACY})
      assert.are.equal(400, status)
      assert.are.equal(-32700, body.error.code)
      assert.are.equal("2.0", body.jsonrpc)
      assert.is_nil(body.id)
    end)

    it("refuses batches and other shapes that are not one message with 400 and -32600", function()
      local cases = {
        {'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', nil},
        {'"ping"', nil},
        {'{"id":4,"method":"ping"}', 4},                                    -- no jsonrpc
        {'{"jsonrpc":"1.0","id":5,"method":"ping"}', 5},
        {'{"jsonrpc":"2.0","id":null,"method":"ping"}', nil},                -- MCP: never null
        {'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', nil},
        {'{"jsonrpc":"2.0","id":6,"method":42}', 6},
        {'{"jsonrpc":"2.0","id":7,"method":"ping","params":"x"}', 7},
        {'{"jsonrpc":"2.0","id":8}', 8},                                     -- neither request nor response
        {'{"jsonrpc":"2.0","id":9,"result":{}}', nil},                       -- ferry sends no requests
      }
      for _, case in ipairs(cases) do
        local status, body, _, raw = post(srv, admin, case[1], {["mcp-protocol-version"] = LEGACY})
        assert.are.equal(400, status, case[1] .. " → " .. tostring(raw))
        assert.are.equal(-32600, body.error.code, case[1])
        assert.are.equal(case[2], body.id, case[1])
      end
    end)

    it("accepts a notification with 202 and no body", function()
      for _, version in ipairs({LEGACY, MODERN}) do
        local status, _, _, raw = post(srv, admin, {jsonrpc = "2.0", method = "notifications/initialized"},
          {["mcp-protocol-version"] = version})
        assert.are.equal(202, status)
        assert.are.equal("", raw)
      end
    end)

    it("answers an unknown method with -32601: in-band for 2025-11-25, 404 for 2026-07-28", function()
      local status, body = legacy(srv, admin, "prompts/list", nil, 11)
      assert.are.equal(200, status)
      assert.are.equal(-32601, body.error.code)
      assert.are.equal(11, body.id)
      for _, method in ipairs({"unknown/method", "initialize", "ping", "logging/setLevel", "resources/list",
                               "subscriptions/listen"}) do
        status, body = modern(srv, admin, method, nil, nil, "m-1")
        assert.are.equal(404, status, method)
        assert.are.equal(-32601, body.error.code, method)
        assert.are.equal("m-1", body.id)
      end
    end)

    it("answers wrong params with -32602", function()
      local cases = {
        {"tools/call", {arguments = {}}},
        {"tools/call", {name = 3}},
        {"tools/call", {name = "sample__echo", arguments = {"a"}}},
        {"tools/call", {name = "sample__echo", arguments = "text"}},
        {"tools/list", {cursor = false}},
      }
      for _, case in ipairs(cases) do
        local status, body = legacy(srv, admin, case[1], case[2])
        assert.are.equal(200, status)
        assert.are.equal(-32602, body.error.code, json.encode(case))
      end
      local status, body = post(srv, admin,
        {jsonrpc = "2.0", id = 1, method = "initialize", params = {capabilities = {}}})
      assert.are.equal(200, status)
      assert.are.equal(-32602, body.error.code)
    end)

    it("answers an unknown or hidden tool name with -32602 in both revisions", function()
      local status, body = legacy(srv, admin, "tools/call", {name = "sample__nothing", arguments = {}})
      assert.are.equal(200, status)
      assert.are.equal(-32602, body.error.code)
      status, body = modern(srv, admin, "tools/call", {name = "nope", arguments = {}})
      assert.are.equal(200, status)
      assert.are.equal(-32602, body.error.code)
      status, body = modern(srv, admin, "tools/call", {name = "regional__misplaced", arguments = {}})
      assert.are.equal(200, status)
      assert.are.equal(-32602, body.error.code, "a tool not offered over MCP cannot be called over MCP")
    end)

    it("reports wrong arguments as a tool error the model can fix (isError), not a protocol error", function()
      local status, body = modern(srv, admin, "tools/call",
        {name = "sample__echo", arguments = {text = "x", times = 9}})
      assert.are.equal(200, status)
      assert.is_true(body.result.isError)
      assert.are.equal("complete", body.result.resultType)
      assert.is_truthy(body.result.content[1].text:find("^invalid_arguments: %$%.times"))
    end)

    it("answers a missing or invalid key with 401 and WWW-Authenticate, never echoing the key", function()
      local status, body, headers = legacy(srv, nil, "tools/list")
      assert.are.equal(401, status)
      assert.are.equal("Bearer", headers["www-authenticate"])
      assert.is_table(body.error)
      local forged = "fry_0123456789abcdef0123456789abcdef_secretsecretsecret"
      local raw
      local _
      status, body, _, raw = legacy(srv, forged, "tools/list")
      assert.are.equal(401, status)
      assert.are.equal("unauthorized", body.error.data.code)
      assert.is_nil(raw:find("secretsecret", 1, true))
    end)

    it("refuses a foreign Origin with 403 and accepts its own and allowed ones", function()
      local allowed = h.start_ferry({providers = providers,
                                     args = {"--mcp-allowed-origin", "https://Agent.Example:443"}})
      local key = allowed.key("ada", "books", "admin")
      local function with_origin(origin, method)
        if method then
          return h.request(method, allowed.url .. "/mcp", {headers = {origin = origin}})
        end
        return post(allowed, key, {jsonrpc = "2.0", id = 1, method = "ping"},
          {["mcp-protocol-version"] = LEGACY, origin = origin})
      end
      local foreign = {"http://evil.example.com", "null", "http://127.0.0.1:1", "https://agent.example:8443"}
      for _, origin in ipairs(foreign) do
        local status, body = with_origin(origin)
        assert.are.equal(403, status, origin)
        assert.are.equal("forbidden", body.error.data.code)
        assert.are.equal(403, (with_origin(origin, "GET")), origin .. " GET")
      end
      local port = allowed.url:match(":(%d+)$")
      for _, origin in ipairs({allowed.url, "http://localhost:" .. port, "https://agent.example"}) do
        assert.are.equal(200, (with_origin(origin)), origin)
      end
      allowed.stop()
    end)

    it("answers GET and DELETE with 405 (no stream, no sessions) and other media types with 406 and 415", function()
      for _, method in ipairs({"GET", "DELETE"}) do
        local status, _, headers = h.request(method, srv.url .. "/mcp",
          {headers = {authorization = "Bearer " .. admin}})
        assert.are.equal(405, status, method)
        assert.are.equal("POST", headers.allow)
      end
      local status, body = post(srv, admin, {jsonrpc = "2.0", id = 1, method = "ping"},
        {["content-type"] = "text/plain", ["mcp-protocol-version"] = LEGACY})
      assert.are.equal(415, status)
      assert.are.equal(-32600, body.error.code)
      status = post(srv, admin, {jsonrpc = "2.0", id = 1, method = "ping"},
        {accept = "text/html", ["mcp-protocol-version"] = LEGACY})
      assert.are.equal(406, status)
      status = post(srv, admin, {jsonrpc = "2.0", id = 1, method = "ping"},
        {accept = "text/event-stream, application/json;q=0.9", ["mcp-protocol-version"] = LEGACY})
      assert.are.equal(200, status)
    end)

    it("answers a body over the limit with 413", function()
      local small = h.start_ferry({providers = providers, args = {"--max-body", "2048"}})
      local key = small.key("ada", "books", "admin")
      local status, body = legacy(small, key, "tools/call", {name = "sample__echo",
        arguments = {text = string.rep("x", 3000)}})
      assert.are.equal(413, status)
      assert.are.equal("payload_too_large", body.error.data.code)
      small.stop()
    end)

    it("serves 2025-11-25 only with its version header, and names the versions it supports", function()
      local status, body = post(srv, admin, {jsonrpc = "2.0", id = 1, method = "tools/list"})
      assert.are.equal(400, status)
      assert.are.equal(-32020, body.error.code)
      status, body = post(srv, admin, {jsonrpc = "2.0", id = 2, method = "tools/list"},
        {["mcp-protocol-version"] = "2025-06-18"})
      assert.are.equal(400, status)
      assert.are.equal(-32022, body.error.code)
      assert.are.same({MODERN, LEGACY}, body.error.data.supported)
      assert.are.equal("2025-06-18", body.error.data.requested)
      assert.are.equal(2, body.id)
      -- initialize offers the revision ferry speaks when asked for another
      status, body = post(srv, admin, {jsonrpc = "2.0", id = 3, method = "initialize", params = {
        protocolVersion = "2024-11-05", capabilities = {}, clientInfo = {name = "old", version = "1"}}})
      assert.are.equal(200, status)
      assert.are.equal(LEGACY, body.result.protocolVersion)
    end)

    it("answers server/discover with the versions, capabilities and identity", function()
      local status, body = modern(srv, admin, "server/discover", nil, nil, "d")
      assert.are.equal(200, status)
      assert.are.same({MODERN, LEGACY}, body.result.supportedVersions)
      assert.is_table(body.result.capabilities.tools)
      assert.are.equal("complete", body.result.resultType)
      assert.are.equal("public", body.result.cacheScope)
      assert.are.equal("ferry", body.result._meta["io.modelcontextprotocol/serverInfo"].name)
    end)

    it("checks the 2026-07-28 request _meta: -32602, -32020 or -32022 with 400", function()
      local cases = {
        -- params without _meta, under a 2026-07-28 header
        {params = {}, code = -32602},
        {meta = {["io.modelcontextprotocol/clientCapabilities"] = false}, code = -32602},
        {meta = {["io.modelcontextprotocol/protocolVersion"] = false}, code = -32602},
        {meta = {["io.modelcontextprotocol/clientInfo"] = "me"}, code = -32602},
        {meta = {["io.modelcontextprotocol/protocolVersion"] = "v999.0.0"}, code = -32020},
        {meta = {["io.modelcontextprotocol/protocolVersion"] = "v999.0.0"},
         headers = {["mcp-protocol-version"] = "v999.0.0"}, code = -32022},
        {headers = {["mcp-protocol-version"] = false}, code = -32020},
      }
      for i, case in ipairs(cases) do
        local params = case.params or {_meta = meta(case.meta)}
        local status, body = post(srv, admin, {jsonrpc = "2.0", id = i, method = "server/discover", params = params},
          (function()
            local hs = {["mcp-protocol-version"] = MODERN, ["mcp-method"] = "server/discover"}
            for k, v in pairs(case.headers or {}) do hs[k] = v end
            for k, v in pairs(hs) do if v == false then hs[k] = nil end end
            return hs
          end)())
        assert.are.equal(400, status, "case " .. i)
        assert.are.equal(case.code, body.error.code, "case " .. i .. ": " .. json.encode(body))
        assert.are.equal(i, body.id)
        if case.code == -32022 then
          assert.are.same({MODERN, LEGACY}, body.error.data.supported)
          assert.are.equal("v999.0.0", body.error.data.requested)
        end
      end
      -- clientInfo is optional
      local status = modern(srv, admin, "server/discover",
        {_meta = meta({["io.modelcontextprotocol/clientInfo"] = false})})
      assert.are.equal(200, status)
    end)

    it("refuses 2026-07-28 requests whose Mcp-Method or Mcp-Name headers do not mirror the body", function()
      local call = {name = "sample__echo", arguments = {text = "x"}}
      local function copy() return {name = call.name, arguments = call.arguments} end
      local cases = {
        {"tools/list", nil, {["mcp-method"] = false}},
        {"tools/list", nil, {["mcp-method"] = "prompts/list"}},
        {"tools/list", nil, {["mcp-method"] = "TOOLS/LIST"}},
        {"tools/call", copy(), {["mcp-name"] = false}},
        {"tools/call", copy(), {["mcp-name"] = "wrong_tool_name"}},
        {"tools/call", copy(), {["mcp-name"] = "=?base64?d3JvbmdfdG9vbA==?="}},
      }
      for i, case in ipairs(cases) do
        local status, body = modern(srv, admin, case[1], case[2], case[3], i)
        assert.are.equal(400, status, "case " .. i)
        assert.are.equal(-32020, body.error.code, "case " .. i)
        assert.are.equal(i, body.id)
      end
      -- what the headers may look like and still agree
      local accepted = {
        {["mcp-name"] = "  sample__echo  "},
        {["mcp-name"] = "=?base64?c2FtcGxlX19lY2hv?="},
        {["MCP-METHOD"] = "tools/call"},
      }
      for i, headers in ipairs(accepted) do
        local status, body = modern(srv, admin, "tools/call", copy(), headers)
        assert.are.equal(200, status, "accepted case " .. i)
        assert.is_false(body.result.isError)
      end
    end)

    it("checks the Mcp-Param-* headers a tool declares with x-mcp-header", function()
      local args = {region = "Hello", count = 3, verbose = true}
      local good = {["mcp-param-region"] = "Hello", ["mcp-param-count"] = "3", ["mcp-param-verbose"] = "true"}
      local function with(overrides)
        local hs = {}
        for k, v in pairs(good) do hs[k] = v end
        for k, v in pairs(overrides) do hs[k] = v end
        return hs
      end
      local accepted = {
        {},
        {["mcp-param-region"] = "=?base64?SGVsbG8=?="},
        {["mcp-param-count"] = "3.0"},                 -- integers compare as numbers
      }
      for i, overrides in ipairs(accepted) do
        local status, body = modern(srv, admin, "tools/call", {name = "regional__where", arguments = args},
          with(overrides))
        assert.are.equal(200, status, "accepted case " .. i .. ": " .. json.encode(body))
        assert.are.equal("Hello", body.result.structuredContent.region)
      end
      local refused = {
        {["mcp-param-region"] = "=?base64?SGVsbG8?="},        -- bad padding
        {["mcp-param-region"] = "=?base64?SGVs!!!bG8=?="},    -- not Base64
        {["mcp-param-region"] = false},                       -- value in the body, no header
        {["mcp-param-region"] = "Goodbye"},
        {["mcp-param-count"] = "4"},
        {["mcp-param-verbose"] = "TRUE"},
      }
      for i, overrides in ipairs(refused) do
        local status, body = modern(srv, admin, "tools/call", {name = "regional__where", arguments = args},
          with(overrides), i)
        assert.are.equal(400, status, "refused case " .. i)
        assert.are.equal(-32020, body.error.code, "refused case " .. i)
      end
      -- an argument left out needs no header, and a header without its argument is refused
      local status = modern(srv, admin, "tools/call", {name = "regional__where", arguments = {region = "x"}},
        {["mcp-param-region"] = "x"})
      assert.are.equal(200, status)
      status = modern(srv, admin, "tools/call", {name = "regional__where", arguments = {region = "x"}},
        {["mcp-param-region"] = "x", ["mcp-param-count"] = "1"})
      assert.are.equal(400, status)
    end)

    it("does not offer a tool whose x-mcp-header the specification forbids, and says why in the log", function()
      local _, body = modern(srv, admin, "tools/list")
      for _, t in ipairs(body.result.tools) do assert.are_not.equal("regional__misplaced", t.name) end
      local found = false
      for _, line in ipairs(srv.logs()) do
        found = found or (line.msg == "tool not offered over MCP: invalid x-mcp-header" and
                          line.tool == "regional__misplaced")
      end
      assert.is_true(found)
    end)
  end)
end)
