-- escape: attempts to get out of the sandbox, one per case. Each case
-- either raises (the test expects a coded error) or returns what it could
-- reach (the test expects nothing dangerous in it).
local stash = {}   -- task threads kept between calls (module upvalue)

local cases = {
  io_open = function() return io.open("/etc/passwd") end,
  os_execute = function() return os.execute("id") end,
  os_getenv = function() return os.getenv("HOME") end,
  os_exit = function() return os.exit(1) end,
  require_io = function() return require("io") end,
  require_ffi = function() return require("ffi") end,
  require_path = function() return require("../../etc/passwd") end,
  package_loadlib = function() return package.loadlib("libc.so.6", "system") end,
  debug_registry = function() return debug.getregistry() end,
  string_dump = function() return string.dump(function() end) end,
  string_method_dump = function() return ("x").dump(function() end) end,
  string_metatable = function() return getmetatable("").__index end,
  load_binary = function()
    local f, err = load("\27Lua\84\0\25\147\r\n\26\n")
    return {loaded = f ~= nil, err = err}
  end,
  load_mode_b = function() return load("return 1", "x", "b")() end,
  load_env_escape = function() return {reached = load("return io")()} end,
  loadstring_dofile = function() return {loadstring = rawget(_G, "loadstring"), dofile = rawget(_G, "dofile"),
                                          loadfile = rawget(_G, "loadfile")} end,
  gc_metamethod = function()
    return setmetatable({}, {__gc = function() while true do end end})
  end,
  collectgarbage_stop = function() return collectgarbage("stop") end,
  string_rep_bomb = function() return #string.rep("x", 1 << 40) end,
  string_rep_sep_bomb = function() return #string.rep("xx", 1 << 28, "yy") end,
  table_growth = function()
    local t = {}
    for i = 1, 1 << 30 do t[i] = i end
    return #t
  end,
  env_replace = function()
    local _ENV = {rawget = rawget}   -- luacheck: ignore
    return {io = rawget(_ENV, "io")}
  end,
  g_walk = function()
    local names = {}
    for k in pairs(_G) do names[#names + 1] = k end
    table.sort(names)
    return names
  end,
  tostring_loop = function()
    return tostring(setmetatable({}, {__tostring = function() while true do end end}))
  end,
  error_object_loop = function()
    error(setmetatable({}, {__tostring = function() while true do end end,
                            __index = function() while true do end end}))
  end,
  recursion = function()
    local function f(n) return f(n + 1) + 1 end
    return f(1)
  end,
  pcall_timeout = function()
    local n = 0
    while true do n = n + (pcall(function() while true do end end) and 1 or 0) end
  end,
  wrap_timeout = function()
    return coroutine.wrap(function() while true do end end)()
  end,
  resume_own_thread = function()
    return coroutine.resume(coroutine.running())
  end,
  close_own_thread = function()
    return coroutine.close(coroutine.running())
  end,
}

return {
  slug = "escape",
  name = "Escape",
  category = "developer",
  description = "Sandbox escape attempts for ferry's tests.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "none"},
  data_categories = {},
  tools = {
    attempt = {
      description = "Runs one escape attempt.",
      access = "read",
      input = {type = "object", properties = {case = {type = "string"}}, required = {"case"}},
      run = function(_, args)
        local case = cases[args.case]
        if not case then return nil, {code = "invalid_arguments", message = "no case " .. args.case} end
        return case()
      end,
    },
    stash_thread = {
      description = "Keeps its own task thread where another call can find it, then waits upstream.",
      access = "read",
      run = function(ctx)
        stash.thread = coroutine.running()
        return ctx.http.request{path = "/delay", query = {ms = 1500}}.status
      end,
    },
    resume_stashed = {
      description = "Tries to resume (then close) another call's task thread.",
      access = "read",
      run = function()
        local ok, err = pcall(coroutine.resume, stash.thread, {status = 999})
        local ok2, err2 = pcall(coroutine.close, stash.thread)
        return {resume_ok = ok, resume_err = tostring(err), close_ok = ok2, close_err = tostring(err2)}
      end,
    },
  },
}
