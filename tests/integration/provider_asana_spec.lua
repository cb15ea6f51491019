-- providers/asana.lua against a Prism mock of Asana's OpenAPI description
-- (static mode: its examples are realistic), through the recording tap
-- proxy. Prism serves the paths without the server URL's /api/1.0 prefix,
-- so ferry's base URL for asana is the bare proxy address.
local h = require "helper"

local SLUG = "asana"
local TOKEN = "2/1200/1201:asana-test-3b9d"
local OFFSET = "eyJ0eXAiOJiKV1iQLCJhbGciOiJIUzI1NiJ9"   -- the spec's example next_page.offset

describe("provider asana", function()
  local prism, tap, srv, key, admin, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args,
                       {connection_id = connection_id or conn.id, approver = admin})
  end

  local function query_of(request) return h.parse_query(request.query) end

  setup(function()
    prism = h.start_prism(h.api_spec("asana/asana_oas.yaml"))
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("alice", "acme")
    admin = srv.key("root", "acme", "admin")
    connected = {h.connect(srv, key, {integration = SLUG, credentials = {token = TOKEN}, scope = "user",
                                      label = "Asana test", settings = {workspace_gid = "12345"}})}
    conn = connected[2]
    connected.requests = tap.requests()
  end)

  teardown(function()
    if srv then srv.stop() end
    if tap then tap.stop() end
    if prism then prism.stop() end
  end)

  before_each(function()
    tap.prefer(nil)
    tap.replies({})
    tap.clear()
  end)

  it("connects after the provider's check reads /users/me, and labels the account", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal("Greg Sanchez (gsanchez@example.com)", conn.account_label)
    assert.are.same({workspace_gid = "12345"}, conn.settings)
    local sent = connected.requests
    assert.are.equal(1, #sent)
    assert.are.equal("GET", sent[1].method)
    assert.are.equal("/users/me", sent[1].path)
    assert.are.same({"name,email"}, query_of(sent[1]).opt_fields)
    assert.are.equal("Bearer " .. TOKEN, sent[1].headers.authorization)
  end)

  it("list_workspaces returns one page and the offset to continue from", function()
    local status, body = call("list_workspaces", {limit = 1})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({workspaces = {{gid = "12345", name = "My Company Workspace"}}, next_cursor = OFFSET},
                    body.result)
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert.are.equal("/workspaces", sent[1].path)
    local q = query_of(sent[1])
    assert.are.same({"1"}, q.limit)
    assert.are.same({"name,is_organization"}, q.opt_fields)
    assert.is_nil(q.offset)
  end)

  it("list_workspaces follows next_page.offset and stops when the API repeats it", function()
    local status, body = call("list_workspaces", {})
    assert.are.equal(200, status, h.json.encode(body))
    -- Prism answers the same example page with the same offset every time:
    -- page 1, then page 2 from that offset, which points at itself.
    assert.are.equal(2, #body.result.workspaces)
    assert.is_nil(body.result.next_cursor)
    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert.is_nil(query_of(sent[1]).offset)
    assert.are.same({OFFSET}, query_of(sent[2]).offset)
    assert.are.same({"49"}, query_of(sent[2]).limit)
  end)

  it("list_workspaces continues from a cursor", function()
    local status, body = call("list_workspaces", {cursor = "abc", limit = 1})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({"abc"}, query_of(tap.requests()[1]).offset)
    assert.are.equal(OFFSET, body.result.next_cursor)
  end)

  it("list_projects uses the connection's workspace and asks for unarchived projects", function()
    local status, body = call("list_projects", {limit = 10})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({gid = "12345", name = "Stuff to buy"}, body.result.projects[1])
    local sent = tap.requests()[1]
    assert.are.equal("/workspaces/12345/projects", sent.path)
    local q = query_of(sent)
    assert.are.same({"false"}, q.archived)
    assert.are.same({"10"}, q.limit)
    assert.is_truthy(q.opt_fields[1]:find("permalink_url", 1, true))
  end)

  it("list_projects takes a workspace argument over the default", function()
    local status = call("list_projects", {workspace_gid = "777", archived = true, limit = 1})
    assert.are.equal(200, status)
    local sent = tap.requests()[1]
    assert.are.equal("/workspaces/777/projects", sent.path)
    assert.are.same({"true"}, query_of(sent).archived)
  end)

  it("list_projects and create_task without any workspace are invalid_arguments, before any request", function()
    -- settings are optional: a connection without a default workspace
    local st, bare = h.connect(srv, key, {integration = SLUG, credentials = {token = TOKEN}, scope = "user",
                                         label = "no workspace", verify = false})
    assert.are.equal(201, st)
    tap.clear()
    local status, body = call("list_projects", {limit = 1}, bare.id)
    assert.are.equal(400, status, h.json.encode(body))
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.equal("$.workspace_gid", body.error.details.path)
    status, body = call("create_task", {name = "x"}, bare.id)
    assert.are.equal(400, status, h.json.encode(body))
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.same({}, tap.requests())
    assert.are.equal(204, (h.request("DELETE", srv.url .. "/v1/connections/" .. bare.id,
      {headers = {authorization = "Bearer " .. key}})))
  end)

  it("list_tasks lists a project's incomplete tasks", function()
    local status, body = call("list_tasks", {project_gid = "1331", limit = 1})
    assert.are.equal(200, status, h.json.encode(body))
    local task = body.result.tasks[1]
    assert.are.equal("12345", task.gid)
    assert.are.equal("Bug Task", task.name)
    assert.are.equal("default_task", task.type)
    assert.are.equal(OFFSET, body.result.next_cursor)
    local sent = tap.requests()[1]
    assert.are.equal("/projects/1331/tasks", sent.path)
    local q = query_of(sent)
    assert.are.same({"now"}, q.completed_since)
    assert.is_truthy(q.opt_fields[1]:find("assignee.name", 1, true))
  end)

  it("list_tasks with include_completed or completed_since", function()
    assert.are.equal(200, (call("list_tasks", {project_gid = "1331", include_completed = true, limit = 1})))
    assert.is_nil(query_of(tap.requests()[1]).completed_since)
    tap.clear()
    assert.are.equal(200, (call("list_tasks", {project_gid = "1331", completed_since = "2024-05-01T00:00:00Z",
                                               limit = 1})))
    assert.are.same({"2024-05-01T00:00:00Z"}, query_of(tap.requests()[1]).completed_since)
  end)

  it("create_task posts {data: ...} and returns the new task", function()
    local status, body = call("create_task", {name = "Call Ada", notes = "About the invoice", project_gid = "1331",
                                              assignee = "me", due_on = "2024-06-01", followers = {"ada@example.com"}})
    assert.are.equal(200, status, h.json.encode(body))
    local task = body.result
    assert.are.equal("12345", task.gid)
    assert.are.equal("Buy catnip", task.name)   -- the spec's example answer
    assert.is_string(task.url)
    assert.is_table(task.assignee)
    local sent = tap.last()
    assert.are.equal("POST", sent.method)
    assert.are.equal("/tasks", sent.path)
    assert.are.same({data = {name = "Call Ada", notes = "About the invoice", projects = {"1331"}, assignee = "me",
                             due_on = "2024-06-01", followers = {"ada@example.com"}}}, sent.json)
    assert.is_truthy(query_of(sent).opt_fields[1]:find("permalink_url", 1, true))
  end)

  it("create_task without a project goes to the connection's workspace", function()
    local status = call("create_task", {name = "Loose task"})
    assert.are.equal(200, status)
    assert.are.same({data = {name = "Loose task", workspace = "12345"}}, tap.last().json)
  end)

  it("rejects invalid arguments before any request", function()
    local cases = {
      {"create_task", {name = "x", due_on = "2024-06-01", due_at = "2024-06-01T10:00:00Z", project_gid = "1"}, "$"},
      {"create_task", {name = "x", project_gid = "../workspaces"}, "$.project_gid"},
      {"create_task", {name = "x", due_on = "June 1st", project_gid = "1"}, "$.due_on"},
      {"create_task", {name = ""}, "$.name"},
      {"list_tasks", {}, "$"},
      {"list_tasks", {project_gid = "1331", limit = 501}, "$.limit"},
      {"list_tasks", {project_gid = "1331", completed_since = "yesterday"}, "$.completed_since"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("maps the spec's 500 answer to upstream_error with Asana's message", function()
    tap.prefer("code=500")
    local status, body = call("list_workspaces", {limit = 1})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Asana answered HTTP 500: project: Missing input", body.error.message)
    assert.are.equal(500, body.error.details.status)
  end)

  it("maps the spec's 404 answer to upstream_error", function()
    tap.prefer("code=404")
    local status, body = call("list_tasks", {project_gid = "999"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal(404, body.error.details.status)
  end)

  it("maps 429 with an HTTP-date Retry-After to upstream_rate_limited", function()
    local when = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 30)
    tap.replies({{status = 429, headers = {["Retry-After"] = when},
                  json = {errors = {{message = "You have made too many requests recently."}}}}})
    local status, body = call("list_workspaces", {})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    local wait = body.error.details.retry_after
    assert.is_true(wait >= 28 and wait <= 30, tostring(wait))
    assert.is_truthy(body.error.message:find("too many requests", 1, true))
  end)

  it("maps the spec's 401 and 403 answers to reconnect_required", function()
    for _, code in ipairs({401, 403}) do
      local _, spare = h.connect(srv, key, {integration = SLUG, credentials = {token = "revoked"}, scope = "user",
                                           label = "revoked " .. code, settings = {workspace_gid = "1"},
                                           verify = false})
      tap.prefer("code=" .. code)
      local status, body = call("list_workspaces", {}, spare.id)
      assert.are.equal(409, status)
      assert.are.equal("reconnect_required", body.error.code)
      assert.are.equal(("Asana rejected the credential (HTTP %d): project: Missing input"):format(code),
                       body.error.message)
    end
  end)

  it("refuses a connection whose token fails the check", function()
    tap.prefer("code=401")
    local status, body = h.connect(srv, key, {integration = SLUG, credentials = {token = "bad"}, scope = "user",
                                             settings = {workspace_gid = "1"}})
    assert.are_not.equal(201, status)
    assert.is_truthy(h.json.encode(body):find("reconnect_required", 1, true), h.json.encode(body))
  end)
end)
