-- Egress: a script reaches only the hosts its provider declared; a redirect
-- is returned, never followed, and following it by hand to an undeclared
-- or non-public address is refused; a declared name that resolves to a
-- loopback address is refused too.
local h = require "helper"

describe("egress", function()
  local fault, srv, key

  setup(function()
    fault = h.start_fault()
    -- an operator points egress at the fault server through the name localhost
    srv = h.start_ferry({base_urls = {egress = "http://localhost:" .. fault.port}})
    key = srv.key()
  end)

  teardown(function()
    srv.stop()
    fault.stop()
  end)

  it("reaches the host an operator pointed the provider at", function()
    local status, body = srv.call(key, "egress__follow_redirect", {to = "http://localhost:" .. fault.port .. "/ok"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.is_true(body.result.followed)
    assert.are.equal(200, body.result.status)
  end)

  it("refuses a redirect to 127.0.0.1 and to the cloud metadata address", function()
    for _, to in ipairs({"http://127.0.0.1:" .. fault.port .. "/ok", "http://169.254.169.254/latest/meta-data/",
                         "http://[::1]:" .. fault.port .. "/ok", "https://evil.example.net/"}) do
      local before = fault.count()
      local status, body = srv.call(key, "egress__follow_redirect", {to = to})
      assert.are.equal(500, status, to)
      assert.are.equal("egress_denied", body.error.code, to)
      assert.are.equal(before + 1, fault.count(), "only the redirect itself reached an upstream")
    end
  end)

  it("refuses a declared name that resolves to a loopback address", function()
    local before = fault.count()
    local status, body = srv.call(key, "rebind__fetch", {url = "http://localhost:" .. fault.port .. "/ok"})
    assert.are.equal(500, status)
    assert.are.equal("egress_denied", body.error.code)
    assert.is_truthy(body.error.message:find("non-public address", 1, true), body.error.message)
    assert.are.equal(before, fault.count(), "no connection was made")
  end)
  it("ignores proxies set in the environment, which would bypass the address checks", function()
    -- ledger's declared upstream, 127.0.0.1:9, has nothing listening; a
    -- proxy in ferry's environment (the fault server, which answers
    -- anything) would answer in its place, and would equally reach
    -- addresses ferry refuses, since the check would see only the proxy's.
    local proxied = h.start_ferry({env = {http_proxy = fault.url, HTTP_PROXY = fault.url, https_proxy = fault.url,
                                          ALL_PROXY = fault.url, all_proxy = fault.url}})
    local admin = proxied.key("ada", "acme", "admin")
    local before = fault.count()
    local status, body = proxied.call(admin, "ledger__balance", {})
    assert.are.equal(502, status, h.json.encode(body))
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal(before, fault.count(), "nothing went through the proxy")
    proxied.stop()
  end)
end)
