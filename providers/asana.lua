-- Asana: workspaces, projects and tasks.
--
-- HTTP shapes follow Asana's OpenAPI description (Asana/openapi, defs/asana_oas.yaml):
--   list_workspaces   GET  /workspaces                              (getWorkspaces)
--   list_projects     GET  /workspaces/{workspace_gid}/projects     (getProjectsForWorkspace)
--   list_tasks        GET  /projects/{project_gid}/tasks            (getTasksForProject)
--   create_task       POST /tasks                                   (createTask, body {data: TaskCreateRequest})
--   check             GET  /users/{user_gid} with user_gid = "me"  (getUser)
-- Lists page with limit (1-100) and offset, the token coming back in
-- next_page.offset; opt_fields (comma-separated) picks the fields returned.
-- Every payload is wrapped in {"data": ...}.
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

local API = {service = "Asana", message = {"errors.1.message"}}
local PAGE_MAX = 100

local WORKSPACE_FIELDS = {"name", "is_organization"}
local PROJECT_FIELDS = {"name", "archived", "completed", "due_on", "start_on", "modified_at",
                        "permalink_url", "team.name"}
local TASK_FIELDS = {"name", "completed", "completed_at", "due_on", "due_at", "assignee.name",
                     "modified_at", "permalink_url", "resource_subtype"}
local CREATED_TASK_FIELDS = {"name", "notes", "completed", "due_on", "due_at", "assignee.name",
                             "projects.name", "workspace.name", "permalink_url", "created_at"}

local function opt_fields(fields) return table.concat(fields, ",") end

---------------------------------------------------------------------------
-- Shaping results: gids are kept as they are (strings), nulls dropped.

local function ref(obj)
  obj = data.value(obj)
  if type(obj) ~= "table" then return nil end
  return {gid = data.value(obj.gid), name = data.value(obj.name)}
end

local function workspace(w)
  return {gid = data.value(w.gid), name = data.value(w.name), is_organization = data.value(w.is_organization)}
end

local function project(p)
  return {
    gid = data.value(p.gid), name = data.value(p.name),
    archived = data.value(p.archived), completed = data.value(p.completed),
    due_on = data.value(p.due_on), start_on = data.value(p.start_on),
    modified_at = data.value(p.modified_at), url = data.value(p.permalink_url),
    team = ref(p.team),
  }
end

local function task(t)
  return {
    gid = data.value(t.gid), name = data.value(t.name), type = data.value(t.resource_subtype),
    completed = data.value(t.completed), completed_at = data.value(t.completed_at),
    due_on = data.value(t.due_on), due_at = data.value(t.due_at),
    assignee = ref(t.assignee), modified_at = data.value(t.modified_at),
    url = data.value(t.permalink_url),
  }
end

local function created_task(t)
  local out = task(t)
  out.notes = data.value(t.notes)
  out.created_at = data.value(t.created_at)
  out.workspace = ref(t.workspace)
  out.projects = data.map(data.value(t.projects), ref)
  return out
end

---------------------------------------------------------------------------
-- Requests

-- An Asana list endpoint walked with ferry.paginate: {items, next} or nil, err.
local function list(ctx, path, query, args)
  return paginate.collect{
    limit = args.limit or 50,
    start = args.cursor,
    items = "data",
    next = "next_page.offset",
    fetch = function(offset, remaining)
      query.limit = math.min(remaining, PAGE_MAX)
      query.offset = offset
      return sdk.request(ctx, {path = path, query = query}, API)
    end,
  }
end

-- The workspace a call is about: its argument, else the connection's default.
local function workspace_gid(ctx, args)
  if args.workspace_gid then return args.workspace_gid end
  local settings = ctx.connection and ctx.connection.settings
  local gid = type(settings) == "table" and data.value(settings.workspace_gid) or nil
  if type(gid) == "string" and gid ~= "" then return gid end
  return nil
end

local function list_workspaces(ctx, args)
  local got, err = list(ctx, "/workspaces", {opt_fields = opt_fields(WORKSPACE_FIELDS)}, args)
  if not got then return nil, err end
  return {workspaces = data.map(got.items, workspace), next_cursor = got.next}
end

local function list_projects(ctx, args)
  local gid = workspace_gid(ctx, args)
  if not gid then
    return nil, sdk.errors.invalid_arguments("give workspace_gid (this connection has no default workspace; " ..
                                             "list_workspaces shows them)", "$.workspace_gid")
  end
  local got, err = list(ctx, sdk.http.path("/workspaces/{workspace_gid}/projects", {workspace_gid = gid}),
                        {archived = args.archived or false, opt_fields = opt_fields(PROJECT_FIELDS)}, args)
  if not got then return nil, err end
  return {projects = data.map(got.items, project), next_cursor = got.next}
end

local function list_tasks(ctx, args)
  -- completed_since=now asks Asana for incomplete tasks only.
  local since = args.completed_since or (not args.include_completed and "now" or nil)
  local got, err = list(ctx, sdk.http.path("/projects/{project_gid}/tasks", args),
                        {completed_since = since, opt_fields = opt_fields(TASK_FIELDS)}, args)
  if not got then return nil, err end
  return {tasks = data.map(got.items, task), next_cursor = got.next}
end

local function create_task(ctx, args)
  local fields = {
    name = args.name,
    notes = args.notes,
    assignee = args.assignee,
    due_on = args.due_on,
    due_at = args.due_at,
    parent = args.parent_gid,
  }
  if args.project_gid then fields.projects = {args.project_gid} end
  if args.followers then fields.followers = args.followers end
  if not args.project_gid and not args.parent_gid then
    fields.workspace = workspace_gid(ctx, args)
    if not fields.workspace then
      return nil, sdk.errors.invalid_arguments("give project_gid, parent_gid or workspace_gid (this connection " ..
                                               "has no default workspace)", "$")
    end
  elseif args.workspace_gid then
    fields.workspace = args.workspace_gid
  end
  local body, err = sdk.request(ctx, {method = "POST", path = "/tasks",
                                      query = {opt_fields = opt_fields(CREATED_TASK_FIELDS)},
                                      json = {data = fields}}, API)
  if not body then return nil, err end
  return created_task(data.value(body.data) or {})
end

---------------------------------------------------------------------------
-- Schemas

local GID = "^[0-9]+$"
local function gid(description, required)
  return s.string{description, pattern = GID, maxLength = 32, required = required}
end

local paging = {
  limit = s.integer{"How many to return (default 50).", minimum = 1, maximum = 500},
  cursor = s.string{"next_cursor from an earlier call, to get the following page.", minLength = 1},
}
local function with_paging(props)
  for k, v in pairs(paging) do props[k] = v end
  return s.object(props)
end

---------------------------------------------------------------------------

return {
  slug = "asana",
  name = "Asana",
  category = "project_management",
  description = "Asana workspaces, projects and tasks: list them and create tasks.",
  base_url = "https://app.asana.com/api/1.0",
  hosts = {"app.asana.com"},
  auth = {
    type = "api_key", field = "token", header = "Authorization", prefix = "Bearer ",
    instructions = "In Asana's developer console (https://app.asana.com/0/my-apps), create a personal " ..
                   "access token and paste it here. workspace_gid is the workspace tools use when a " ..
                   "call names none (list_workspaces shows the gids).",
    settings = {"workspace_gid"},
  },
  data_categories = {"projects"},
  docs_url = "https://developers.asana.com/reference/rest-api-reference",

  check = function(ctx)
    local body, err = sdk.request(ctx, {path = "/users/me", query = {opt_fields = "name,email"}}, API)
    if not body then return nil, err end
    local me = data.value(body.data) or {}
    local name, email = data.value(me.name), data.value(me.email)
    if name and email then return {account_label = ("%s (%s)"):format(name, email)} end
    return {account_label = name or email}
  end,

  tools = {
    list_workspaces = {
      title = "List Asana workspaces",
      description = "The workspaces and organizations the connected user belongs to, with their gids " ..
                    "(the other tools take a workspace_gid).",
      access = "read",
      input = with_paging{},
      run = list_workspaces,
    },

    list_projects = {
      title = "List Asana projects",
      description = "Projects of a workspace (unarchived ones unless archived = true), with their gids, " ..
                    "due dates, team and link.",
      access = "read",
      input = with_paging{
        workspace_gid = gid("The workspace's gid (default: the connection's workspace)."),
        archived = s.boolean "true lists archived projects instead of active ones.",
      },
      run = list_projects,
    },

    list_tasks = {
      title = "List tasks of an Asana project",
      description = "Tasks of a project: name, assignee, due date, completion and link. Only incomplete " ..
                    "tasks unless include_completed or completed_since is given.",
      access = "read",
      input = with_paging{
        project_gid = gid("The project's gid (see list_projects).", true),
        include_completed = s.boolean "Include completed tasks too.",
        completed_since = s.string{"Incomplete tasks plus those completed since this time (RFC 3339).",
                                   format = "date-time"},
      },
      run = list_tasks,
    },

    create_task = {
      title = "Create an Asana task",
      description = "Create a task in a project (or as a subtask of parent_gid, or in a workspace " ..
                    "without a project). Returns the new task with its gid and link.",
      access = "write",
      input = s.object({
        name = s.string{"The task's name.", required = true, minLength = 1, maxLength = 1024},
        notes = s.string{"Description, plain text.", maxLength = 65536},
        project_gid = gid "The project to add the task to.",
        parent_gid = gid "Make it a subtask of this task.",
        workspace_gid = gid "The workspace (default: the project's, or the connection's workspace).",
        assignee = s.string{"Who does it: a user gid, an email address, or \"me\".", minLength = 1},
        due_on = s.string{"Due date (YYYY-MM-DD). Give due_on or due_at, not both.", format = "date"},
        due_at = s.string{"Due date and time (RFC 3339).", format = "date-time"},
        followers = s.array(s.string{minLength = 1}, {"Followers: user gids, emails or \"me\".", maxItems = 20}),
      }, {["not"] = {required = {"due_on", "due_at"}}}),
      run = create_task,
    },
  },
}
