-- luacheck: std lua51+busted
-- ferry.graphql: queries, errors and Relay-style connections with a fake ctx.
local graphql = require "ferry.graphql"
local errors = require "ferry.errors"

-- A ctx whose requests are answered by `answers` in order ({status, body}).
local function fake_ctx(answers)
  local ctx = {sent = {}}
  ctx.http = {request = function(req)
    ctx.sent[#ctx.sent + 1] = req
    local a = table.remove(answers, 1)
    return {status = a.status or 200, ok = (a.status or 200) < 300, headers = a.headers or {}, body = "x",
            json = function() return a.body end}
  end}
  return ctx
end

describe("ferry.graphql.query", function()
  it("posts the query and variables and returns data", function()
    local ctx = fake_ctx{{body = {data = {user = {id = "u1"}}}}}
    local result, resp = graphql.query(ctx, {query = "query($id: ID!) { user(id: $id) { id } }",
                                             variables = {id = "u1"}, operation_name = "Q"})
    assert.are.same({user = {id = "u1"}}, result)
    assert.are.equal(200, resp.status)
    local sent = ctx.sent[1]
    assert.are.equal("POST", sent.method)
    assert.are.equal("/graphql", sent.path)
    assert.are.same({query = "query($id: ID!) { user(id: $id) { id } }", variables = {id = "u1"},
                     operationName = "Q"}, sent.json)
  end)

  it("leaves out empty variables and takes another path or url", function()
    local ctx = fake_ctx{{body = {data = {}}}, {body = {data = {}}}}
    graphql.query(ctx, {query = "{ me { id } }", variables = {}, path = "/v2"})
    assert.is_nil(ctx.sent[1].json.variables)
    assert.are.equal("/v2", ctx.sent[1].path)
    graphql.query(ctx, {query = "{ me { id } }", url = "https://api.monday.com/v2"})
    assert.are.equal("https://api.monday.com/v2", ctx.sent[2].url)
    assert.is_nil(ctx.sent[2].path)
  end)

  it("maps GraphQL errors with the given options or the defaults", function()
    local ctx = fake_ctx{{body = {errors = {{message = "Invalid token", extensions = {code = "UNAUTHENTICATED"}}}}}}
    local result, err = graphql.query(ctx, {query = "{ me { id } }"}, errors.graphql{service = "Monday"})
    assert.is_nil(result)
    assert.are.equal("reconnect_required", err.code)
    assert.are.equal("Monday rejected the credential: Invalid token", err.message)
    ctx = fake_ctx{{body = {errors = {{message = "boom"}}}}}
    result, err = graphql.query(ctx, {query = "{ me { id } }"})
    assert.is_nil(result)
    assert.are.equal("the GraphQL API reported an error: boom", err.message)
    ctx = fake_ctx{{body = {}}}
    result, err = graphql.query(ctx, {query = "{ me { id } }"})
    assert.is_nil(result)
    assert.are.equal("upstream_error", err.code)
  end)

  it("raises without a query", function()
    assert.has_error(function() graphql.query(fake_ctx{}, {}) end)
  end)
end)

describe("ferry.graphql connections", function()
  local function page(ids, has_next, cursor, edges)
    local conn = {pageInfo = {hasNextPage = has_next, endCursor = cursor}}
    if edges then
      conn.edges = {}
      for i, id in ipairs(ids) do conn.edges[i] = {node = {id = id}} end
    else
      conn.nodes = {}
      for i, id in ipairs(ids) do conn.nodes[i] = {id = id} end
    end
    return {data = {repo = {issues = conn}}}
  end

  it("walks pageInfo with first/after up to the limit", function()
    local ctx = fake_ctx{{body = page({"1", "2"}, true, "c2")}, {body = page({"3"}, true, "c3", true)}}
    local got = graphql.collect(ctx, {query = "query($first: Int, $after: String, $owner: String) {...}",
                                      variables = {owner = "me"}, connection = "repo.issues", limit = 3,
                                      page_size = 2})
    assert.are.same({{id = "1"}, {id = "2"}, {id = "3"}}, got.items)
    assert.are.equal("c3", got.next)
    assert.are.same({owner = "me", first = 2}, ctx.sent[1].json.variables)
    assert.are.same({owner = "me", first = 1, after = "c2"}, ctx.sent[2].json.variables)
  end)

  it("stops when hasNextPage is false and uses other variable names", function()
    local ctx = fake_ctx{{body = page({"1"}, false, "c2")}}
    local got = graphql.collect(ctx, {query = "q", connection = "repo.issues", first = "limit", after = "cursor"})
    assert.are.equal(1, #got.items)
    assert.is_nil(got.next)
    assert.are.same({limit = 50}, ctx.sent[1].json.variables)
  end)

  it("passes a failed page's error through", function()
    local ctx = fake_ctx{{status = 429, headers = {["retry-after"] = "4"}, body = {errors = {{message = "slow"}}}}}
    local got, err = graphql.collect(ctx, {query = "q", connection = "x"})
    assert.is_nil(got)
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(4, err.retry_after)
  end)
end)
