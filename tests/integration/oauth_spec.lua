-- OAuth 2 end to end against a real identity provider (oidc-provider, from
-- tests/peers): the authorization code flow with PKCE through ferry's
-- routes and a scripted browser, refresh ahead of expiry exactly once under
-- load, refresh-token rotation, an expired refresh token and a revoked
-- grant turning into reconnect_required with a URL, reconnecting, and
-- revocation on delete. The provider under test (tests/providers/
-- idp_profile.lua) calls the IdP's userinfo endpoint, which accepts only a
-- live access token it issued.
local h = require "helper"

local SLUG = "idp_profile"

-- ferry and an IdP that knows ferry's callback; the client is set with the
-- CLI (the operator), its secret read from standard input.
local function start(opts)
  opts = opts or {}
  local port = h.free_port()
  local callback = "http://127.0.0.1:" .. port .. "/oauth/callback"
  local idp = h.start_idp({redirect_uri = callback, access_ttl = opts.access_ttl, refresh_ttl = opts.refresh_ttl})
  local data = h.tmpdir() .. "/data"
  local code, _, err = h.run({"sh", "-c", 'printf "s3cret\\n" | "$0" oauth set-client idp_profile'
    .. ' --client-id ferry-test --client-secret - --authorize-url "$1/auth" --token-url "$1/token"'
    .. ' --revoke-url "$1/token/revocation" --data "$2" --providers "$3"',
    h.bin, idp.url, data, h.root .. "/tests/providers"})
  assert(code == 0, "oauth set-client failed: " .. tostring(err))
  local args = {"--listen", "127.0.0.1:" .. port, "--oauth-refresh-interval-seconds",
                tostring(opts.interval or 3600)}
  local srv = h.start_ferry({data = data, base_urls = {[SLUG] = idp.url}, args = args})
  return srv, idp, callback
end

-- Starts a sign-in as `key` and returns the authorize URL ferry made.
local function authorize_url(srv, key, query)
  local status, body = srv.get("/oauth/" .. SLUG .. "/start?format=json" .. (query or ""), key)
  assert(status == 200, "start: " .. tostring(status) .. " " .. h.json.encode(body))
  return body.authorize_url, body
end

-- The callback as the browser would reach it, asking for JSON.
local function finish(callback_url)
  local status, text = h.request("GET", callback_url, {headers = {accept = "application/json"}})
  return status, h.decode(text)
end

-- A whole sign-in: start, browser, callback. Returns the callback's answer.
local function connect(srv, key, callback, query, login)
  local url = authorize_url(srv, key, query)
  return finish(h.browser_sign_in(url, {stop_at = callback, login = login}))
end

local function whoami(srv, key)
  return srv.call(key, SLUG .. "__whoami", {})
end

local function refresh_log(srv, connection)
  return h.sql(srv.data, "SELECT outcome, COALESCE(error, '') FROM token_refresh_logs WHERE connection_id = '"
    .. connection .. "' ORDER BY id")
end

describe("OAuth sign-in", function()
  local srv, idp, callback, admin, member

  lazy_setup(function()
    srv, idp, callback = start()
    admin = srv.key("ann", "acme", "admin")
    member = srv.key("bob", "acme")
  end)
  lazy_teardown(function()
    if srv then srv.stop() end
    if idp then idp.stop() end
  end)

  it("sends the browser to the provider with PKCE (S256), a state and the provider's scopes", function()
    local url = authorize_url(srv, member)
    assert.is_truthy(url:find(idp.url .. "/auth?", 1, true))
    local q = h.parse_query(url:match("%?(.*)$"))
    assert.are.equal("code", q.response_type[1])
    assert.are.equal("ferry-test", q.client_id[1])
    assert.are.equal(callback, q.redirect_uri[1])
    assert.are.equal("openid email", q.scope[1])
    assert.are.equal("S256", q.code_challenge_method[1])
    assert.are.equal(43, #q.code_challenge[1])            -- base64url of a SHA-256
    assert.is_true(#q.state[1] >= 43)
    assert.is_nil(q.client_secret)
    -- Without ?format=json it is a plain redirect.
    local status, _, headers = h.request("GET", srv.url .. "/oauth/" .. SLUG .. "/start",
      {headers = {authorization = "Bearer " .. member}, redirect = false})
    assert.are.equal(302, status)
    assert.is_truthy(headers.location:find(idp.url .. "/auth?", 1, true))
    -- Starting needs an API key.
    assert.are.equal(401, (h.request("GET", srv.url .. "/oauth/" .. SLUG .. "/start", {redirect = false})))
  end)

  it("connects through the whole flow and calls the API with the token", function()
    local before = idp.counters().token.authorization_code or 0
    local status, conn = connect(srv, member, callback)
    assert.are.equal(201, status, h.json.encode(conn))
    assert.are.equal(SLUG, conn.integration)
    assert.are.equal("active", conn.status)
    assert.are.equal("user", conn.scope)
    assert.are.equal("ann@example.test", conn.account_label)   -- the provider's check, with the new token
    assert.are.equal(before + 1, idp.counters().token.authorization_code)
    local st, body = whoami(srv, member)
    assert.are.equal(200, st, h.json.encode(body))
    assert.are.equal("ann", body.result.sub)
    -- The tokens are sealed: not in the database, not in the log.
    local rows = h.sql(srv.data, "SELECT field FROM connection_secrets WHERE connection_id = '" .. conn.id
      .. "' ORDER BY field")
    assert.are.same({{"access_token"}, {"refresh_token"}}, rows)
    local _, listing = srv.get("/v1/connections", member)
    assert.is_nil(h.json.encode(listing):find("token", 1, true))
  end)

  it("sends a browser back to the page, without JSON", function()
    local url = authorize_url(srv, member, "&label=browser")
    local back = h.browser_sign_in(url, {stop_at = callback})
    local status, _, headers = h.request("GET", back, {redirect = false})
    assert.are.equal(302, status)
    assert.are.equal("/#connected=" .. SLUG, headers.location)
    -- The same user's connection was renewed, not duplicated.
    local _, listing = srv.get("/v1/connections", member)
    local mine = 0
    for _, c in ipairs(listing.connections) do
      if c.integration == SLUG and c.connected_by == "bob" then mine = mine + 1 end
    end
    assert.are.equal(1, mine)
  end)

  it("refuses a wrong state and a replayed one, and keeps codes and states out of the log", function()
    local status, body = finish(callback .. "?code=abc&state=not-a-state")
    assert.are.equal(400, status)
    assert.are.equal("bad_request", body.error.code)

    local url = authorize_url(srv, member)
    local back = h.browser_sign_in(url, {stop_at = callback})
    local code = back:match("[?&]code=([^&]+)")
    local state = back:match("[?&]state=([^&]+)")
    assert.are.equal(201, (finish(back)))
    local exchanges = idp.counters().token.authorization_code
    status, body = finish(back)                      -- the same state again
    assert.are.equal(400, status)
    assert.are.equal("bad_request", body.error.code)
    assert.are.equal(exchanges, idp.counters().token.authorization_code)   -- nothing sent upstream
    -- A browser gets a page saying so.
    local st, page = h.request("GET", back, {redirect = false})
    assert.are.equal(400, st)
    assert.is_truthy(page:find("bad_request", 1, true))

    local log = h.read_file(srv.log)
    assert.is_nil(log:find(code, 1, true))
    assert.is_nil(log:find(state, 1, true))
    assert.is_nil(log:find("s3cret", 1, true))
  end)

  it("turns denied consent into forbidden, and connects nothing", function()
    local _, before = srv.get("/v1/connections", admin)
    local url = authorize_url(srv, admin)
    local back = h.browser_sign_in(url, {stop_at = callback, deny = true})
    assert.is_truthy(back:find("error=access_denied", 1, true))
    local status, body = finish(back)
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    assert.are.equal("access_denied", body.error.details.provider_error)
    local _, after = srv.get("/v1/connections", admin)
    assert.are.equal(#before.connections, #after.connections)
  end)

  it("shares a connection with the team only when an admin asks", function()
    local status, body = srv.get("/oauth/" .. SLUG .. "/start?format=json&scope=team", member)
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    local st, conn = connect(srv, admin, callback, "&scope=team&label=shared", "carol")
    assert.are.equal(201, st, h.json.encode(conn))
    assert.are.equal("team", conn.scope)
    assert.are.equal("shared", conn.label)
  end)

  it("says clearly when an integration has no OAuth client, or is not OAuth", function()
    local status, body = srv.get("/oauth/google_calendar/start?format=json", member)
    assert.are.equal(404, status)
    assert.are.equal("not_found", body.error.code)
    assert.is_truthy(body.error.message:find("oauth-client", 1, true))
    status, body = srv.get("/oauth/keyed_header/start?format=json", member)
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    status, body = srv.get("/oauth/nope/start?format=json", member)
    assert.are.equal(404, status)
    assert.are.equal("not_found", body.error.code)
  end)

  it("lets a team admin set the team's own client, never showing the secret", function()
    local other = srv.key("dan", "globex", "admin")
    local otherm = srv.key("eve", "globex")
    local put = function(key, body)
      local status, text = h.request("PUT", srv.url .. "/v1/integrations/" .. SLUG .. "/oauth-client",
        {json = body, headers = {authorization = "Bearer " .. key}})
      return status, h.decode(text), text
    end
    local status, body = put(otherm, {client_id = "x", client_secret = "y"})
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    status, body = put(other, {client_id = "globex-client"})
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    status, body = put(other, {client_id = "ferry-test", client_secret = "team-secret-4411",
                               token_url = idp.url .. "/token", authorize_url = idp.url .. "/auth", extra = 1})
    assert.are.equal(400, status)
    assert.is_truthy(body.error.message:find("extra", 1, true))
    local text
    status, body, text = put(other, {client_id = "ferry-test", client_secret = "team-secret-4411",
                                     token_url = idp.url .. "/token", authorize_url = idp.url .. "/auth"})
    assert.are.equal(200, status, text)
    assert.are.equal("ferry-test", body.client_id)
    assert.is_nil(text:find("team-secret-4411", 1, true))
    local _, shown, _, raw = srv.get("/v1/integrations/" .. SLUG .. "/oauth-client", other)
    assert.are.equal("team", shown.scope)
    assert.is_nil(raw:find("team-secret-4411", 1, true))
    -- Set through the API, a URL may not lead ferry to a private address:
    -- the exchange is refused before anything is sent.
    local exchanges = idp.counters().token.authorization_code
    local url = authorize_url(srv, other)
    local back = h.browser_sign_in(url, {stop_at = callback})
    local st, answer = finish(back)
    assert.are.equal("egress_denied", answer.error.code, h.json.encode(answer))
    assert.is_true(st >= 400)
    assert.are.equal(exchanges, idp.counters().token.authorization_code)
    -- The change is in the audit.
    local _, audit = srv.get("/v1/audit?integration=" .. SLUG, other)
    local seen = false
    for _, row in ipairs(audit.entries) do
      if row.operation == "oauth.set_client" then seen = true end
    end
    assert.is_true(seen)
  end)
end)

describe("OAuth token lifecycle", function()
  local srv, idp, callback, key, conn

  lazy_setup(function()
    srv, idp, callback = start({access_ttl = 3})
    key = srv.key("ann", "acme", "admin")
    local status
    status, conn = connect(srv, key, callback)
    assert(status == 201, h.json.encode(conn))
  end)
  lazy_teardown(function()
    if srv then srv.stop() end
    if idp then idp.stop() end
  end)

  it("refreshes an expired token exactly once for 50 concurrent calls", function()
    h.sleep(3.5)   -- the access token is dead now: /me would refuse it
    local before = idp.counters()
    local report = h.loadgen({"--url", srv.url .. "/v1/tools/call", "--method", "POST",
      "--header", "Authorization: Bearer " .. key, "--header", "Content-Type: application/json",
      "--body", '{"name":"idp_profile__whoami","arguments":{}}',
      "--concurrency", "50", "--requests", "50", "--timeout-ms", "20000"})
    assert.are.equal(50, report.requests)
    assert.are.equal(0, report.errors, h.json.encode(report.error_breakdown))
    local after = idp.counters()
    assert.are.equal((before.token.refresh_token or 0) + 1, after.token.refresh_token)
    assert.are.equal(50, after.userinfo - before.userinfo)
    assert.are.equal(0, after.token_errors)
    assert.are.same({{"ok", ""}}, refresh_log(srv, conn.id))
    -- The refresh is audited like any external call.
    local _, audit = srv.get("/v1/audit?integration=" .. SLUG, key)
    local refreshes = 0
    for _, row in ipairs(audit.entries) do
      if row.operation == "oauth.refresh" and row.outcome == "ok" then refreshes = refreshes + 1 end
    end
    assert.are.equal(1, refreshes)
  end)

  it("keeps the rotated refresh token: the next refresh works too", function()
    h.sleep(3.5)
    local status, body = whoami(srv, key)
    assert.are.equal(200, status, h.json.encode(body))
    local c = idp.counters()
    assert.are.equal(2, c.token.refresh_token)
    -- Had ferry replayed the first refresh token, the IdP would have
    -- refused it (and revoked the grant).
    assert.are.equal(0, c.token_errors)
    assert.are.same({{"ok", ""}, {"ok", ""}}, refresh_log(srv, conn.id))
  end)

  it("turns a revoked grant into reconnect_required with a URL, and reconnects", function()
    idp.revoke_grants()
    local status, body = whoami(srv, key)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.are.equal(conn.id, body.error.details.connection_id)
    assert.are.equal("/oauth/" .. SLUG .. "/start?connection_id=" .. conn.id, body.error.details.reconnect_url)
    local _, listing = srv.get("/v1/connections", key)
    assert.are.equal("reconnect_required", listing.connections[1].status)
    local _, ctx = srv.get("/v1/context", key)
    assert.is_truthy(ctx.text:find("IdP profile must be reconnected", 1, true))
    local log = refresh_log(srv, conn.id)
    assert.are.equal("failed", log[#log][1])
    assert.is_truthy(log[#log][2]:find("invalid_grant", 1, true))
    -- Later calls do not hammer the provider: the connection says why.
    local refreshes = idp.counters().token.refresh_token
    status, body = whoami(srv, key)
    assert.are.equal(409, status)
    assert.are.equal(refreshes, idp.counters().token.refresh_token)

    -- The reconnect URL starts a sign-in that renews the same connection.
    local reconnect = body.error.details.reconnect_url
    local st, started = srv.get(reconnect .. "&format=json", key)
    assert.are.equal(200, st)
    local back = h.browser_sign_in(started.authorize_url, {stop_at = callback})
    local s2, renewed = finish(back)
    assert.are.equal(201, s2, h.json.encode(renewed))
    assert.are.equal(conn.id, renewed.id)
    assert.are.equal("active", renewed.status)
    assert.are.equal(200, (whoami(srv, key)))
  end)

  it("revokes the grant at the provider when the connection is deleted", function()
    local revoked = idp.counters().revoked
    local status = h.request("DELETE", srv.url .. "/v1/connections/" .. conn.id,
      {headers = {authorization = "Bearer " .. key}})
    assert.are.equal(204, status)
    local deadline = h.now() + 10
    while idp.counters().revoked == revoked and h.now() < deadline do h.sleep(0.05) end
    assert.are.equal(revoked + 1, idp.counters().revoked)
  end)
end)

describe("OAuth refresh failures", function()
  it("refreshes ahead of expiry on the timer, and an expired refresh token asks for a reconnect", function()
    local srv, idp, callback = start({access_ttl = 2, refresh_ttl = 5, interval = 1})
    local key = srv.key("ann", "acme")
    local status, conn = connect(srv, key, callback)
    assert.are.equal(201, status, h.json.encode(conn))
    -- With no calls at all, the timer refreshes before the token expires.
    local deadline = h.now() + 10
    while (idp.counters().token.refresh_token or 0) == 0 and h.now() < deadline do h.sleep(0.1) end
    assert.is_true((idp.counters().token.refresh_token or 0) >= 1)
    assert.are.equal(200, (whoami(srv, key)))
    -- Once the refresh token itself expires, the next refresh fails for good.
    deadline = h.now() + 15
    local body
    repeat
      h.sleep(0.5)
      status, body = whoami(srv, key)
    until status ~= 200 or h.now() > deadline
    assert.are.equal(409, status, h.json.encode(body))
    assert.are.equal("reconnect_required", body.error.code)
    assert.is_truthy(body.error.details.reconnect_url:find("connection_id=" .. conn.id, 1, true))
    local log = refresh_log(srv, conn.id)
    assert.are.equal("failed", log[#log][1])
    srv.stop()
    idp.stop()
  end)
end)

describe("OAuth client credentials", function()
  it("fetches a token with the connection's own client, reuses it, renews it, and reports a refused client", function()
    local tap = h.start_tap("http://127.0.0.1:9")   -- answers canned replies, records what ferry sent
    local idp = h.start_idp({redirect_uri = "http://127.0.0.1:9/cb", access_ttl = 3})
    local dir = h.tmpdir()
    h.write_file(dir .. "/cc_probe.lua", ([[
return {
  slug = "cc_probe", name = "CC probe", category = "developer",
  description = "Test provider: server to server with the client credentials grant.",
  base_url = %q, hosts = {"127.0.0.1"},
  auth = {type = "oauth2", grant = "client_credentials", token_url = %q},
  data_categories = {"crm"},
  tools = {
    probe = {
      description = "GETs /probe.", access = "read",
      input = {type = "object", properties = {}, additionalProperties = false},
      run = function(ctx)
        local resp, err = ctx.http.request{path = "/probe"}
        if not resp then return nil, err end
        if resp.status == 401 then return nil, {code = "reconnect_required", message = "refused"} end
        return {status = resp.status}
      end,
    },
  },
}]]):format(tap.url, idp.url .. "/token"))
    local srv = h.start_ferry({providers = {dir}})
    local key = srv.key("ann", "acme")
    local status, conn = h.connect(srv, key, {integration = "cc_probe",
      credentials = {client_id = "ferry-cc", client_secret = "cc-s3cret"}})
    assert.are.equal(201, status, h.json.encode(conn))
    tap.replies({{status = 200, json = {}}, {status = 200, json = {}}, {status = 200, json = {}}})
    for _ = 1, 2 do
      local st, body = srv.call(key, "cc_probe__probe", {})
      assert.are.equal(200, st, h.json.encode(body))
    end
    assert.are.equal(1, idp.counters().token.client_credentials)   -- fetched once, then reused
    -- The upstream got a live token the IdP issued to that client.
    local token = tap.last().headers.authorization:match("^Bearer (.+)$")
    local st, text = h.request("POST", idp.url .. "/token/introspection", {body = "token=" .. token,
      headers = {["content-type"] = "application/x-www-form-urlencoded",
                 authorization = "Basic " .. (require "mime").b64("ferry-cc:cc-s3cret")}})
    assert.are.equal(200, st)
    local info = h.json.decode(text)
    assert.is_true(info.active)
    assert.are.equal("ferry-cc", info.client_id)
    -- The token expires: the next call fetches a new one first.
    h.sleep(3.2)
    assert.are.equal(200, (srv.call(key, "cc_probe__probe", {})))
    assert.are.equal(2, idp.counters().token.client_credentials)

    -- A connection whose client the IdP refuses needs a person.
    local _, bad = h.connect(srv, key, {integration = "cc_probe",
      credentials = {client_id = "ferry-cc", client_secret = "wrong-secret-77"}})
    local sb, answer = h.call_tool(srv, key, "cc_probe__probe", {}, {connection_id = bad.id})
    assert.are.equal(409, sb, h.json.encode(answer))
    assert.are.equal("reconnect_required", answer.error.code)
    assert.is_truthy(answer.error.message:find("invalid_client", 1, true))
    assert.is_nil(h.json.encode(answer):find("wrong-secret-77", 1, true))
    assert.is_nil(h.read_file(srv.log):find("wrong-secret-77", 1, true))
    srv.stop()
    idp.stop()
    tap.stop()
  end)
end)

describe("OAuth from the Connected Apps page", function()
  it("signs in at the provider from the card, in Chromium, and comes back connected", function()
    local chromium = os.getenv("CHROMIUM") or "/usr/bin/chromium"
    assert(h.read_file(chromium) ~= nil, chromium .. " not found: scripts/install-deps --test installs chromium")
    local srv, idp = start()
    local key = srv.key("ann", "acme")
    local dir = h.tmpdir()
    local code, out, err = h.run({h.node_bin, h.root .. "/tests/peers/page_oauth.mjs"}, {
      FERRY_URL = srv.url, FERRY_KEY = key, FERRY_INTEGRATION = "IdP profile", FERRY_PAGE_DIR = dir,
      CHROMIUM = chromium})
    local report = h.decode((out or ""):match("[^\n]+")) or {}
    assert(code == 0 and report.ok, "page_oauth.mjs failed: " .. tostring(out) .. "\n" .. tostring(err))
    assert.are.equal(idp.url, report.left_for)                 -- the browser really went to the IdP
    assert.are.equal("IdP profile connected.", report.message)
    assert.are.equal(srv.url .. "/", report.url)                -- the #connected hash was consumed
    assert.is_truthy(report.connection:find("ann@example.test", 1, true))
    local _, listing = srv.get("/v1/connections", key)
    assert.are.equal(1, #listing.connections)
    assert.are.equal("active", listing.connections[1].status)
    os.execute(("rm -rf '%s/tmp' '%s/config' '%s/cache' '%s/home'"):format(dir, dir, dir, dir))
    srv.stop()
    idp.stop()
  end)
end)

-- What real token endpoints do that oidc-provider does not: expires_in as a
-- string or missing, form-encoded answers, 5xx. A recording tap with canned
-- replies plays both the provider's API and its token endpoint.
describe("OAuth token endpoint quirks", function()
  local tap, srv, key, dir

  local function provider_file()
    return ([[
return {
  slug = "quirky", name = "Quirky", category = "developer",
  description = "Test provider: an OAuth API whose token endpoint is canned.",
  base_url = %q, hosts = {"127.0.0.1"},
  auth = {type = "oauth2", authorize_url = %q, token_url = %q},
  data_categories = {"crm"},
  tools = {
    ping = {
      description = "GETs /api/ping.", access = "read",
      input = {type = "object", properties = {}, additionalProperties = false},
      run = function(ctx)
        local resp, err = ctx.http.request{path = "/api/ping"}
        if not resp then return nil, err end
        if resp.status == 401 then return nil, {code = "reconnect_required", message = "refused"} end
        return {status = resp.status}
      end,
    },
  },
}]]):format(tap.url, tap.url .. "/authorize", tap.url .. "/token")
  end

  lazy_setup(function()
    tap = h.start_tap("http://127.0.0.1:9")
    dir = h.tmpdir()
    h.write_file(dir .. "/quirky.lua", provider_file())
    local data = h.tmpdir() .. "/data"
    local code, _, err = h.ferry({"oauth", "set-client", "quirky", "--client-id", "quirky-client",
      "--client-secret", "quirky-secret-31", "--data", data, "--providers", dir})
    assert(code == 0, err)
    srv = h.start_ferry({data = data, providers = {dir}})
    key = srv.key("ann", "acme")
  end)
  lazy_teardown(function()
    if srv then srv.stop() end
    if tap then tap.stop() end
  end)

  local function import(access, refresh)
    local status, conn = h.connect(srv, key, {integration = "quirky",
      credentials = {access_token = access, refresh_token = refresh}})
    assert(status == 201, h.json.encode(conn))
    return conn
  end

  local function expires_at(conn)
    local v = h.sql(srv.data, "SELECT COALESCE(token_expires_at, 0) FROM connections WHERE id = '" .. conn.id .. "'")
    return tonumber(v[1][1])
  end

  it("refreshes once on a 401, retries once, and reads expires_in given as a string", function()
    local conn = import("old-access-token-1", "refresh-token-one")
    tap.clear()
    tap.replies({{status = 401, json = {error = "token expired"}},
                 {status = 200, json = {access_token = "new-access-token-1", expires_in = "120",
                                        token_type = "Bearer"}},
                 {status = 200, json = {pong = true}}})
    local status, body = h.call_tool(srv, key, "quirky__ping", {}, {connection_id = conn.id})
    assert.are.equal(200, status, h.json.encode(body))
    local sent = tap.requests()
    assert.are.equal(3, #sent)
    assert.are.equal("Bearer old-access-token-1", sent[1].headers.authorization)
    assert.are.equal("/token", sent[2].path)
    assert.are.equal("POST", sent[2].method)
    local form = h.parse_query(sent[2].body)
    assert.are.equal("refresh_token", form.grant_type[1])
    assert.are.equal("refresh-token-one", form.refresh_token[1])
    assert.are.equal("Basic " .. (require "mime").b64("quirky-client:quirky-secret-31"), sent[2].headers.authorization)
    assert.are.equal("Bearer new-access-token-1", sent[3].headers.authorization)
    local left = expires_at(conn) - os.time() * 1000
    assert.is_true(left > 100000 and left <= 121000, tostring(left))
    -- The refresh token was not rotated: the old one is kept.
    tap.replies({{status = 401, json = {}},
                 {status = 200, json = {access_token = "new-access-token-2", expires_in = 90}},
                 {status = 200, json = {}}})
    tap.clear()
    assert.are.equal(200, (h.call_tool(srv, key, "quirky__ping", {}, {connection_id = conn.id})))
    assert.are.equal("refresh-token-one", h.parse_query(tap.requests()[2].body).refresh_token[1])
  end)

  it("accepts a form-encoded answer without expires_in: the token lives until refused", function()
    local conn = import("old-access-token-2", "refresh-token-two")
    tap.replies({{status = 401, json = {}},
                 {status = 200, headers = {["Content-Type"] = "application/x-www-form-urlencoded"},
                  body = "access_token=form%2Baccess%2Btoken&token_type=bearer&refresh_token=rotated-refresh-2"},
                 {status = 200, json = {}}})
    tap.clear()
    assert.are.equal(200, (h.call_tool(srv, key, "quirky__ping", {}, {connection_id = conn.id})))
    assert.are.equal("Bearer form+access+token", tap.requests()[3].headers.authorization)
    assert.are.equal(0, expires_at(conn))
    -- The rotated refresh token is the one used next.
    tap.replies({{status = 401, json = {}}, {status = 200, json = {access_token = "x-access-token-3"}},
                 {status = 200, json = {}}})
    tap.clear()
    assert.are.equal(200, (h.call_tool(srv, key, "quirky__ping", {}, {connection_id = conn.id})))
    assert.are.equal("rotated-refresh-2", h.parse_query(tap.requests()[2].body).refresh_token[1])
  end)

  it("keeps the connection on a token endpoint failing for a while, and gives up on invalid_grant", function()
    local conn = import("old-access-token-4", "refresh-token-four")
    tap.replies({{status = 401, json = {}}, {status = 503, json = {error = "temporarily_unavailable"}}})
    local status, body = h.call_tool(srv, key, "quirky__ping", {}, {connection_id = conn.id})
    assert.are.equal("upstream_error", body.error.code, h.json.encode(body))
    assert.is_true(status >= 500)
    local _, listing = srv.get("/v1/connections", key)
    for _, c in ipairs(listing.connections) do
      if c.id == conn.id then assert.are.equal("active", c.status) end
    end
    tap.replies({{status = 401, json = {}},
                 {status = 400, json = {error = "invalid_grant",
                                        error_description = "Token has been expired or revoked."}}})
    status, body = h.call_tool(srv, key, "quirky__ping", {}, {connection_id = conn.id})
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    local log = refresh_log(srv, conn.id)
    assert.are.same({"error", "failed"}, {log[1][1], log[2][1]})
    -- Neither the client secret nor any token is in the log or the database's text.
    local text = h.read_file(srv.log)
    for _, secret in ipairs({"quirky-secret-31", "refresh-token-four", "old-access-token-4", "new-access-token-1",
                             "form+access+token", "rotated-refresh-2"}) do
      assert.is_nil(text:find(secret, 1, true), secret)
    end
    local code, strings = h.run({"sh", "-c", 'cat "$0"/ferry.db* | strings', srv.data})
    assert.are.equal(0, code)
    for _, secret in ipairs({"quirky-secret-31", "refresh-token-four", "new-access-token-1", "rotated-refresh-2"}) do
      assert.is_nil(strings:find(secret, 1, true), secret)
    end
  end)
end)
