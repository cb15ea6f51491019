-- Loads as Lua but breaks the provider contract in many ways at once;
-- `ferry providers check` must list every problem.
return {
  slug = "Not A Slug",
  name = "",
  category = "nonsense",
  description = 42,
  base_url = "http://example.com/api",
  hosts = {"api.example.com", "UPPER.example.com"},
  auth = {type = "magic"},
  data_categories = {"financial", 7},
  colour = "blue",
  tools = {
    ["bad name!"] = {description = "x", access = "read", run = function() end},
    no_run = {description = "has no run", access = "read"},
    bad_access = {description = "x", access = "delete", run = function() end},
    bad_schema = {
      description = "x", access = "read",
      input = {type = "object", properties = {n = {type = "integer", minimum = "zero"}}, wat = true},
      run = function() end,
    },
    not_object = {description = "x", access = "read", input = {type = "string"}, run = function() end},
    typo = {description = "x", acess = "read", run = function() end},
  },
  syncs = {
    s = {every = "sometimes", category = "projects", run = function() end},
  },
}
