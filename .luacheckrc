-- Provider scripts run in ferry's sandbox (Lua 5.4): these are its globals,
-- and nothing else exists there (engine/lhost_sandbox.c).
std = "lua54"
max_line_length = 120

local sandbox_globals = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber", "tostring", "type",
  "xpcall", "rawequal", "rawlen", "rawget", "rawset", "getmetatable", "setmetatable", "_VERSION",
  "_G", "load", "collectgarbage", "print", "require", "unpack",
  "string", "table", "math", "utf8", "os", "coroutine", "json",
}

files["providers"] = {std = "min", read_globals = sandbox_globals}
files["scripts"] = {std = "min", read_globals = sandbox_globals}
files["tests/providers"] = {std = "min", read_globals = sandbox_globals}
files["tests/providers-mcp"] = {std = "min", read_globals = sandbox_globals}
-- The escape attempts reach for what the sandbox does not have, on purpose.
files["tests/providers/escape.lua"] = {std = "min", read_globals = sandbox_globals, allow_defined_top = true,
  ignore = {"113", "143"}}
-- Integration specs run under busted on Debian's Lua 5.1.
files["tests/integration"] = {std = "lua51+busted"}
-- The test harness runs outside the sandbox (busted, Lua 5.1 to 5.4).
files["scripts/ferry/testing.lua"] = {std = "max"}
-- Templates of `ferry providers new`: a busted spec and a luacheck config.
files["scripts/ferry/templates/provider_spec.lua"] = {std = "max+busted"}
files["scripts/ferry/templates/luacheckrc.lua"] = {std = "min", globals = {"std", "max_line_length", "files",
  "exclude_files"}}
