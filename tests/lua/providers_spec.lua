-- luacheck: std lua51+busted
-- Provider run functions with a fake ctx, for paths the integration specs
-- cannot reach yet (a connection without optional settings).
local function fake_ctx(settings, answer)
  local ctx = {sent = {}, connection = {id = "conn_1", settings = settings or {}}}
  ctx.http = {request = function(req)
    ctx.sent[#ctx.sent + 1] = req
    return {status = 200, ok = true, headers = {}, body = "{}", json = function() return answer or {data = {}} end}
  end}
  return ctx
end

describe("providers/asana.lua workspace defaults", function()
  local asana = dofile("providers/asana.lua")
  local tools = asana.tools

  it("list_projects without a workspace argument or setting is invalid_arguments, before any request", function()
    local ctx = fake_ctx({})
    local result, err = tools.list_projects.run(ctx, {})
    assert.is_nil(result)
    assert.are.equal("invalid_arguments", err.code)
    assert.are.equal("$.workspace_gid", err.path)
    assert.are.same({}, ctx.sent)
  end)

  it("list_projects uses the connection's workspace_gid setting, and the argument over it", function()
    local ctx = fake_ctx({workspace_gid = "42"})
    assert.is_table(tools.list_projects.run(ctx, {}))
    assert.are.equal("/workspaces/42/projects", ctx.sent[1].path)
    assert.is_table(tools.list_projects.run(ctx, {workspace_gid = "7"}))
    assert.are.equal("/workspaces/7/projects", ctx.sent[2].path)
  end)

  it("create_task needs a project, a parent or a workspace", function()
    local ctx = fake_ctx({})
    local result, err = tools.create_task.run(ctx, {name = "x"})
    assert.is_nil(result)
    assert.are.equal("invalid_arguments", err.code)
    assert.are.same({}, ctx.sent)
    assert.is_table(tools.create_task.run(ctx, {name = "x", parent_gid = "9"}))
    assert.are.same({data = {name = "x", parent = "9"}}, ctx.sent[1].json)
    ctx = fake_ctx({workspace_gid = "42"})
    assert.is_table(tools.create_task.run(ctx, {name = "x"}))
    assert.are.same({data = {name = "x", workspace = "42"}}, ctx.sent[1].json)
  end)
end)
