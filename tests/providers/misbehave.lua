-- misbehave: tools that go wrong on purpose, so the tests can check that
-- each failure becomes a coded error and the engine keeps serving.
local busy = {}   -- shared by the calls of this provider (not a global)

return {
  slug = "misbehave",
  name = "Misbehave",
  category = "developer",
  description = "Tools that fail in every way a script can.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "none"},
  data_categories = {},

  tools = {
    raise = {
      description = "Raises a Lua error with a message.",
      access = "read",
      run = function()
        error("something broke in the script")
      end,
    },
    nil_index = {
      description = "Indexes nil, a runtime error with a position.",
      access = "read",
      run = function()
        local t = nil
        return t.field
      end,
    },
    raise_coded = {
      description = "Raises an error table with a stable code.",
      access = "read",
      run = function()
        error({code = "invalid_arguments", message = "the script says no"})
      end,
    },
    return_error = {
      description = "Returns nil and an error string.",
      access = "read",
      run = function()
        return nil, "the thing was not found"
      end,
    },
    loop = {
      description = "Loops forever.",
      access = "read",
      run = function()
        local n = 0
        while true do n = n + 1 end
      end,
    },
    loop_pcall = {
      description = "Loops forever and tries to swallow the timeout with pcall.",
      access = "read",
      run = function()
        while true do
          pcall(function() while true do end end)
        end
      end,
    },
    eat_memory = {
      description = "Allocates without bound.",
      access = "read",
      run = function()
        local t = {}
        while true do
          t[#t + 1] = string.rep("x", 1024) .. #t
        end
      end,
    },
    forbidden_global = {
      description = "Reaches for io.",
      access = "read",
      run = function()
        return io.open("/etc/passwd"):read("a")
      end,
    },
    undeclared_host = {
      description = "Requests a host the provider did not declare.",
      access = "read",
      run = function(ctx)
        return ctx.http.request{url = "http://169.254.169.254/latest/meta-data/"}
      end,
    },
    file_scheme = {
      description = "Requests a file: URL.",
      access = "read",
      run = function(ctx)
        return ctx.http.request{url = "file:///etc/passwd"}
      end,
    },
    not_json = {
      description = "Returns a function, which has no JSON form.",
      access = "read",
      run = function()
        return {f = function() end}
      end,
    },
    bad_request_args = {
      description = "Calls ctx.http.request with a wrong argument type.",
      access = "read",
      run = function(ctx)
        return ctx.http.request{path = "/ok", timeout_ms = "soon"}
      end,
    },
    yield_top = {
      description = "Calls coroutine.yield outside any coroutine of its own.",
      access = "read",
      run = function()
        coroutine.yield(1)
        return 1
      end,
    },
    global_write = {
      description = "Assigns a global during a call.",
      access = "read",
      run = function()
        leaked_state = 1   -- luacheck: ignore
        return true
      end,
    },
    http_in_sort = {
      description = "Waits for I/O inside table.sort's comparator, which cannot yield.",
      access = "read",
      run = function(ctx)
        local t = {3, 1, 2}
        table.sort(t, function(a, b)
          ctx.http.request{path = "/ok"}
          return a < b
        end)
        return t
      end,
    },
    slow_count = {
      description = "Counts how many calls of this provider are in flight while it waits.",
      access = "read",
      input = {type = "object", properties = {ms = {type = "integer"}}, required = {"ms"}},
      run = function(ctx, args)
        busy.n = (busy.n or 0) + 1
        busy.max = math.max(busy.max or 0, busy.n)
        local resp, err = ctx.http.request{path = "/delay", query = {ms = args.ms}}
        busy.n = busy.n - 1
        if not resp then return nil, err end
        return {max_in_flight = busy.max}
      end,
    },
  },
}
