-- Upstream budgets: requests through one connection wait their turn under
-- the provider's declared limit instead of tripping it, and an upstream 429
-- pauses them all for its Retry-After.
local h = require "helper"

describe("upstream budgets", function()
  local fault, srv, key

  setup(function()
    fault = h.start_fault()
    srv = h.start_ferry({base_urls = {budgeted = fault.url}})
    key = srv.key()
  end)
  teardown(function()
    srv.stop()
    fault.stop()
  end)

  local function call_async(args)
    return h.spawn({"curl", "-s", "-H", "Authorization: Bearer " .. key, "-d",
      h.json.encode({name = "budgeted__get", arguments = args}), srv.url .. "/v1/tools/call"})
  end

  it("spreads requests over the declared limit instead of sending them at once", function()
    h.request("GET", fault.url .. "/count/reset")
    local procs = {call_async({path = "/ok"}), call_async({path = "/ok"}), call_async({path = "/ok"})}
    h.sleep(0.8)
    assert.are.equal(2, fault.count(), "the burst of 2 went out; the third waits its turn")
    for _, p in ipairs(procs) do
      h.wait_exit(p.pid, 15)
      assert.are.equal(200, h.decode(h.read_file(p.stdout)).result.status)
    end
    assert.are.equal(3, fault.count())
  end)

  it("refuses a request whose turn would come after its deadline", function()
    -- the slow tier allows one request an hour: the first goes, the second cannot
    assert.are.equal(200, (srv.call(key, "budgeted__get", {path = "/ok", tier = "slow"})))
    local before = fault.count()
    local status, body = srv.call(key, "budgeted__get", {path = "/ok", tier = "slow", timeout_ms = 2000})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.is_true(body.error.details.retry_after > 1000)
    assert.are.equal(before, fault.count(), "nothing was sent")
  end)

  it("pauses the connection for an upstream 429's Retry-After", function()
    h.sleep(4.2)   -- the default budget refills
    h.request("GET", fault.url .. "/count/reset")
    local status = srv.call(key, "budgeted__get", {path = "/status/429", query = nil})
    assert.are.equal(200, status)   -- the tool reports the status it got
    local first = fault.count()
    local p = call_async({path = "/ok?after=429"})
    h.sleep(0.6)
    assert.are.equal(first, fault.count(), "held back while the upstream asked for a pause")
    h.wait_exit(p.pid, 15)
    assert.are.equal(200, h.decode(h.read_file(p.stdout)).result.status)
    assert.are.equal(first + 1, fault.count())
  end)
end)
