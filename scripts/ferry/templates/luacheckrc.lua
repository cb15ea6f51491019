-- luacheck configuration for ferry providers (written by `ferry providers new`).
-- Provider scripts run in ferry's sandbox (Lua 5.4): these are its globals,
-- and nothing else exists there. Specs run under busted.
std = "lua54"
max_line_length = 120

local sandbox_globals = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber", "tostring", "type",
  "xpcall", "rawequal", "rawlen", "rawget", "rawset", "getmetatable", "setmetatable", "_VERSION",
  "_G", "load", "collectgarbage", "print", "require", "unpack",
  "string", "table", "math", "utf8", "os", "coroutine", "json",
}

files["providers"] = {std = "min", read_globals = sandbox_globals}
files["spec"] = {std = "max+busted"}
exclude_files = {"lua_modules"}
