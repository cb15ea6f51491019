-- The vault as an operator meets it: a generated master key file readable
-- by its owner only, refusals of a bad key, tampered or moved sealed values
-- that fail instead of decrypting to garbage, and rotation while calls run.
local h = require "helper"

local function stat_mode(path)
  local code, out = h.run({"stat", "-c", "%a", path})
  assert.are.equal(0, code)
  return (out:gsub("%s+", ""))
end

local function serve_fails(data, env, fragment)
  local p = h.spawn({h.bin, "serve", "--listen", "127.0.0.1:0", "--data", data}, env)
  local how, code = h.wait_exit(p.pid, 15)
  assert.are.equal("exited", how)
  assert.are.equal(1, code)
  local err = h.read_file(p.stderr)
  assert.is_truthy(err:find(fragment, 1, true), err)
end

describe("the vault", function()
  local fault

  setup(function() fault = h.start_fault() end)
  teardown(function() fault.stop() end)

  it("generates a 0600 master key file and refuses it when others can read it or it is malformed", function()
    local data = h.tmpdir() .. "/data"
    local srv = h.start_ferry({data = data})
    srv.stop()
    local keyfile = data .. "/master.key"
    assert.are.equal("600", stat_mode(keyfile))
    assert.are.equal("600", stat_mode(data .. "/ferry.db"))
    local key = h.read_file(keyfile)
    assert.is_truthy(key:match("^%x+\n$") and #key == 65)

    h.run({"chmod", "644", keyfile})
    serve_fails(data, nil, "readable by group or others")
    h.run({"chmod", "600", keyfile})
    h.write_file(keyfile, "abcd\n")
    h.run({"chmod", "600", keyfile})
    serve_fails(data, nil, "64 hex digits")
    h.write_file(keyfile, key)
    h.run({"chmod", "600", keyfile})
    serve_fails(data, {FERRY_MASTER_KEY = string.rep("ab", 32)}, "does not open this database")
    serve_fails(data, {FERRY_MASTER_KEY = "not-hex"}, "64 hex digits")
    local moved = data .. "/master.key.away"
    os.rename(keyfile, moved)
    serve_fails(data, nil, "no master key")
    os.rename(moved, keyfile)
    h.start_ferry({data = data}).stop()
  end)

  it("refuses a tampered sealed value, and a sealed value moved to another connection", function()
    local srv = h.start_ferry({base_urls = {keyed_header = fault.url, keyed_query = fault.url}})
    local key = srv.key("tina", "acme")
    local function connect(integration, creds, settings)
      local st, text = h.request("POST", srv.url .. "/v1/connections",
        {json = {integration = integration, credentials = creds, settings = settings},
         headers = {authorization = "Bearer " .. key}})
      assert.are.equal(201, st, text)
      return h.decode(text)
    end
    local a = connect("keyed_header", {token = "tamper-token-1"}, {workspace = "w"})
    local b = connect("keyed_query", {api_key = "moved-key-22"})
    local donor = connect("keyed_header", {token = "donor-token-333"}, {workspace = "w"})
    assert.are.equal(200, (srv.call_text(key, '{"name":"keyed_header__echo","arguments":{},"connection_id":"' ..
      a.id .. '"}')))

    -- flip one byte of a's sealed token
    h.sql(srv.data, "UPDATE connection_secrets SET sealed = substr(sealed, 1, 20) || " ..
      "(CASE WHEN substr(sealed, 21, 1) = x'00' THEN x'01' ELSE x'00' END) || substr(sealed, 22) " ..
      "WHERE connection_id = '" .. a.id .. "'")
    srv.stop()
    srv = h.start_ferry({data = srv.data, base_urls = {keyed_header = fault.url, keyed_query = fault.url}})
    local status, body = srv.call_text(key, '{"name":"keyed_header__echo","arguments":{},"connection_id":"' ..
      a.id .. '"}')
    assert.are.equal(500, status)
    assert.are.equal("internal", body.error.code)
    assert.is_truthy(body.error.message:find("integrity check", 1, true), body.error.message)
    local _, list = srv.get("/v1/connections", key)
    for _, c in ipairs(list.connections) do
      if c.id == a.id then assert.are.equal("error", c.status) end
    end

    -- a valid sealed value moved into another connection's row does not
    -- open there: the row's identity is part of what was sealed
    h.sql(srv.data, "DELETE FROM connection_secrets WHERE connection_id = '" .. b.id .. "'")
    h.sql(srv.data, "UPDATE connection_secrets SET connection_id = '" .. b.id .. "', field = 'api_key' " ..
      "WHERE connection_id = '" .. donor.id .. "'")
    srv.stop()
    srv = h.start_ferry({data = srv.data, base_urls = {keyed_header = fault.url, keyed_query = fault.url}})
    status, body = srv.call(key, "keyed_query__echo", {})
    assert.are.equal(500, status)
    assert.are.equal("internal", body.error.code, h.json.encode(body))
    srv.stop()
  end)

  it("rotates the master key while calls run, and the old key opens nothing after", function()
    local srv = h.start_ferry({base_urls = {keyed_header = fault.url, keyed_query = fault.url},
                               args = {"--log-level", "warn"}})
    local key = srv.key("rita", "acme")
    local st = h.request("POST", srv.url .. "/v1/connections",
      {json = {integration = "keyed_header", credentials = {token = "rotation-token-9"}, settings = {workspace = "w"}},
       headers = {authorization = "Bearer " .. key}})
    assert.are.equal(201, st)
    local old_key = h.read_file(srv.data .. "/master.key")

    local load = h.spawn({h.loadgen_bin, "--json", "--url", srv.url .. "/v1/tools/call", "--method", "POST",
      "--header", "Authorization: Bearer " .. key, "--header", "Content-Type: application/json",
      "--body", '{"name":"keyed_header__echo","arguments":{}}', "--concurrency", "8", "--duration", "3"})
    h.sleep(1)
    local code, _, err = h.ferry({"vault", "rotate", "--data", srv.data})
    assert.are.equal(0, code, err)
    local how = h.wait_exit(load.pid, 20)
    assert.are.equal("exited", how)
    local report = h.json.decode(h.read_file(load.stdout))
    assert.is_true(report.requests > 50, "calls ran during the rotation")
    assert.are.equal(0, report.errors, h.json.encode(report.error_breakdown))

    local new_key = h.read_file(srv.data .. "/master.key")
    assert.are_not.equal(old_key, new_key)
    assert.are.equal("600", stat_mode(srv.data .. "/master.key"))
    -- the running server still works, including a new connection (it
    -- noticed the rotation and loaded the new key)
    assert.are.equal(200, (srv.call(key, "keyed_header__echo", {})))
    st = h.request("POST", srv.url .. "/v1/connections",
      {json = {integration = "keyed_query", credentials = {api_key = "after-rotation-1"}},
       headers = {authorization = "Bearer " .. key}})
    assert.are.equal(201, st)
    srv.stop()

    -- the old key no longer opens the database
    serve_fails(srv.data, {FERRY_MASTER_KEY = (old_key:gsub("%s+", ""))}, "does not open this database")
    -- the new one does, and both connections still work
    srv = h.start_ferry({data = srv.data, base_urls = {keyed_header = fault.url, keyed_query = fault.url}})
    assert.are.equal(200, (srv.call(key, "keyed_header__echo", {})))
    assert.are.equal(200, (srv.call(key, "keyed_query__echo", {})))
    srv.stop()
  end)

  it("refuses to rotate with a wrong key, and rotates an environment key by printing the new one", function()
    local data = h.tmpdir() .. "/data"
    local env_key = string.rep("0f", 32)
    local srv = h.start_ferry({data = data, env = {FERRY_MASTER_KEY = env_key}, base_urls = {keyed_header = fault.url}})
    local key = srv.key("eve", "acme")
    assert.are.equal(201, (h.request("POST", srv.url .. "/v1/connections",
      {json = {integration = "keyed_header", credentials = {token = "env-token-123"}, settings = {workspace = "w"}},
       headers = {authorization = "Bearer " .. key}})))
    srv.stop()
    assert.is_nil(h.read_file(data .. "/master.key"), "no key file when the key comes from the environment")

    local code, _, err = h.run({h.bin, "vault", "rotate", "--data", data}, {FERRY_MASTER_KEY = string.rep("1e", 32)})
    assert.are.equal(1, code)
    assert.is_truthy(err:find("does not open this database", 1, true), err)

    local out
    code, out, err = h.run({h.bin, "vault", "rotate", "--data", data}, {FERRY_MASTER_KEY = env_key})
    assert.are.equal(0, code, err)
    local fresh = out:match("^(%x+)\n$")
    assert.are.equal(64, #fresh)
    serve_fails(data, {FERRY_MASTER_KEY = env_key}, "does not open this database")
    srv = h.start_ferry({data = data, env = {FERRY_MASTER_KEY = fresh}, base_urls = {keyed_header = fault.url}})
    assert.are.equal(200, (srv.call(key, "keyed_header__echo", {})))
    srv.stop()
  end)

  it("manages connections from the command line without putting secrets on it", function()
    local data = h.tmpdir() .. "/data"
    h.ferry({"keys", "create", "--user", "cli", "--team", "acme", "--data", data})
    local creds = h.tmpdir() .. "/creds.json"
    h.write_file(creds, '{"token": "cli-token-secret"}')
    local code, out, err = h.ferry({"connections", "add", "--user", "cli", "--team", "acme", "--integration",
      "keyed_header", "--credentials-file", creds, "--settings", '{"workspace":"w"}', "--providers",
      h.root .. "/tests/providers", "--data", data})
    assert.are.equal(0, code, err)
    local conn = h.json.decode(out)
    assert.is_truthy(conn.id:match("^conn_"))
    assert.is_nil(out:find("cli-token-secret", 1, true))
    code, out = h.ferry({"connections", "list", "--user", "cli", "--team", "acme", "--providers",
      h.root .. "/tests/providers", "--data", data})
    assert.are.equal(0, code)
    assert.is_truthy(out:find(conn.id, 1, true))
    code, out = h.ferry({"tool", "call", "keyed_header__whoami", "{}", "--connection", conn.id, "--providers",
      h.root .. "/tests/providers", "--data", data})
    assert.are.equal(0, code, out)
    assert.are.equal(conn.id, h.json.decode(out).result.connection.id)
    code = h.ferry({"connections", "remove", conn.id, "--user", "cli", "--team", "acme", "--providers",
      h.root .. "/tests/providers", "--data", data})
    assert.are.equal(0, code)
    local _
    code, _, err = h.ferry({"connections", "remove", conn.id, "--user", "cli", "--team", "acme", "--providers",
      h.root .. "/tests/providers", "--data", data})
    assert.are.equal(1, code)
    assert.is_truthy(err:find("no connection", 1, true))
  end)
end)
