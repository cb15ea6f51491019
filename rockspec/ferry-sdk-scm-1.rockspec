-- The provider SDK and test helpers of ferry, for writing and testing
-- provider scripts in a repository of your own. Build from a ferry checkout:
--   luarocks make rockspec/ferry-sdk-scm-1.rockspec                      (system or --local)
--   luarocks --tree lua_modules make rockspec/ferry-sdk-scm-1.rockspec   (a project-local tree)
-- It installs the modules providers require (ferry.sdk, ferry.errors,
-- ferry.paginate, ferry.schema, ferry.data, ferry.http, ferry.graphql) and
-- the busted helpers (ferry.testing, ferry.validate). ferry.testing sends
-- real requests with luasocket (and lua-sec for https): install them with
-- apt (lua-socket, lua-sec) or luarocks when a test talks to Prism or an API;
-- fake responses and recorded fixtures need neither.
rockspec_format = "3.0"
package = "ferry-sdk"
version = "scm-1"
source = {
  url = "git+https://example.invalid/ferry.git",
}
description = {
  summary = "ferry's provider SDK and busted test helpers",
  detailed = [[
    Lua modules for ferry provider scripts (errors, pagination, JSON Schema
    builders, GraphQL, requests) and ferry.testing, which runs a provider's
    tools in-process under busted against Prism, a fault server, fake
    responses or recorded fixtures.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
build = {
  type = "builtin",
  modules = {
    ["ferry.sdk"] = "scripts/ferry/sdk.lua",
    ["ferry.data"] = "scripts/ferry/data.lua",
    ["ferry.errors"] = "scripts/ferry/errors.lua",
    ["ferry.http"] = "scripts/ferry/http.lua",
    ["ferry.paginate"] = "scripts/ferry/paginate.lua",
    ["ferry.schema"] = "scripts/ferry/schema.lua",
    ["ferry.time"] = "scripts/ferry/time.lua",
    ["ferry.graphql"] = "scripts/ferry/graphql.lua",
    ["ferry.validate"] = "scripts/ferry/validate.lua",
    ["ferry.testing"] = "scripts/ferry/testing.lua",
  },
  copy_directories = {},
}
