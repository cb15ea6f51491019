-- Scripts that error, loop, eat memory, reach for what the sandbox does not
-- have or try to get out of it: each ends that call with its coded error,
-- and the engine keeps serving.
local h = require "helper"

describe("the Lua sandbox", function()
  local srv, fault, key

  setup(function()
    fault = h.start_fault()
    srv = h.start_ferry({
      base_urls = {misbehave = fault.url, escape = fault.url, sample = fault.url},
      -- 1 s: generous enough for the sanitizer build on a busy 2-core machine
      args = {"--script-cpu-ms", "1000", "--script-memory-mb", "16"},
    })
    key = srv.key()
  end)

  teardown(function()
    srv.stop()
    fault.stop()
  end)

  after_each(function()
    local status, body = srv.call(key, "sample__echo", {text = "still here"})
    assert.are.equal(200, status, "the engine must keep serving")
    assert.are.equal("still here", body.result.text)
  end)

  local function expect_error(tool, args, code, fragment)
    local status, body = srv.call(key, tool, args or {})
    assert.is_table(body and body.error, "expected an error from " .. tool)
    assert.are.equal(code, body.error.code, body.error.message)
    if fragment then
      assert.is_truthy(body.error.message:find(fragment, 1, true), body.error.message)
    end
    return status, body.error
  end

  it("turns a Lua error into script_error with the script's file and line", function()
    local status, err = expect_error("misbehave__raise", nil, "script_error", "something broke in the script")
    assert.are.equal(500, status)
    assert.is_truthy(err.details.file:find("misbehave.lua", 1, true))
    assert.is_number(err.details.line)
    local _, err2 = expect_error("misbehave__nil_index", nil, "script_error", "attempt to index a nil value")
    assert.is_number(err2.details.line)
  end)

  it("keeps a stable code raised by the script", function()
    local status = expect_error("misbehave__raise_coded", nil, "invalid_arguments", "the script says no")
    assert.are.equal(400, status)
  end)

  it("maps nil, message returned by a tool to upstream_error", function()
    expect_error("misbehave__return_error", nil, "upstream_error", "the thing was not found")
  end)

  it("ends a loop that never finishes with script_timeout", function()
    expect_error("misbehave__loop", nil, "script_timeout", "1000 ms")
  end)

  it("does not let pcall swallow the timeout", function()
    expect_error("misbehave__loop_pcall", nil, "script_timeout")
  end)

  it("ends unbounded allocation with script_memory and the state recovers", function()
    expect_error("misbehave__eat_memory", nil, "script_memory", "16 MiB")
    -- the same provider state serves the next call
    expect_error("misbehave__return_error", nil, "upstream_error")
  end)

  it("has no io, and globals cannot be written during calls", function()
    expect_error("misbehave__forbidden_global", nil, "script_error", "undeclared global 'io'")
    expect_error("misbehave__global_write", nil, "script_error", "assignment to undeclared global")
  end)

  it("refuses hosts the provider did not declare, and non-http schemes", function()
    local status = expect_error("misbehave__undeclared_host", nil, "egress_denied", "169.254.169.254")
    assert.are.equal(500, status)
    expect_error("misbehave__file_scheme", nil, "egress_denied", "file")
  end)

  it("reports a result with no JSON form as script_error", function()
    expect_error("misbehave__not_json", nil, "script_error", "function")
  end)

  it("raises on wrong ctx.http.request arguments", function()
    expect_error("misbehave__bad_request_args", nil, "script_error", "timeout_ms")
  end)

  it("refuses to wait where Lua cannot yield, and a bare coroutine.yield", function()
    expect_error("misbehave__http_in_sort", nil, "script_error", "cannot wait here")
    expect_error("misbehave__yield_top", nil, "script_error", "coroutine.yield")
  end)

  describe("escape attempts", function()
    local refused = {
      io_open = "undeclared global 'io'",
      os_execute = "field 'execute'",
      os_getenv = "field 'getenv'",
      os_exit = "field 'exit'",
      require_io = "module 'io' not found",
      require_ffi = "module 'ffi' not found",
      require_path = "not found",
      package_loadlib = "undeclared global 'package'",
      debug_registry = "undeclared global 'debug'",
      string_dump = "field 'dump'",
      string_method_dump = "field 'dump'",
      string_metatable = "index a boolean",
      load_mode_b = "binary chunks are not allowed",
      load_env_escape = "undeclared global 'io'",
      gc_metamethod = "__gc metamethods are not allowed",
      collectgarbage_stop = "collectgarbage('stop') is not allowed",
      string_rep_bomb = "too large",
      resume_own_thread = "belongs to ferry",
      close_own_thread = "belongs to ferry",
    }
    for case, fragment in pairs(refused) do
      it("refuses " .. case, function()
        expect_error("escape__attempt", {case = case}, "script_error", fragment)
      end)
    end

    it("ends unbounded recursion with a stack overflow or the memory cap", function()
      local _, body = srv.call(key, "escape__attempt", {case = "recursion"})
      assert.is_truthy(body.error.code == "script_memory" or
        (body.error.code == "script_error" and body.error.message:find("stack overflow", 1, true)),
        body.error.message)
    end)

    it("ends memory bombs with script_memory", function()
      expect_error("escape__attempt", {case = "string_rep_sep_bomb"}, "script_memory")
      expect_error("escape__attempt", {case = "table_growth"}, "script_memory")
    end)

    it("ends loops hidden in metamethods, pcall and coroutines with script_timeout", function()
      expect_error("escape__attempt", {case = "tostring_loop"}, "script_timeout")
      expect_error("escape__attempt", {case = "pcall_timeout"}, "script_timeout")
      expect_error("escape__attempt", {case = "wrap_timeout"}, "script_timeout")
    end)

    it("never runs script code while turning an error object into a response", function()
      expect_error("escape__attempt", {case = "error_object_loop"}, "script_error")
    end)

    it("refuses binary chunks in load", function()
      local status, body = srv.call(key, "escape__attempt", {case = "load_binary"})
      assert.are.equal(200, status)
      assert.is_false(body.result.loaded)
      assert.is_truthy(body.result.err:find("binary chunk", 1, true))
    end)

    it("exposes neither dofile, loadfile nor loadstring, and _ENV tricks reach nothing", function()
      local status, body = srv.call(key, "escape__attempt", {case = "loadstring_dofile"})
      assert.are.equal(200, status)
      assert.are.same({}, body.result)
      status, body = srv.call(key, "escape__attempt", {case = "env_replace"})
      assert.are.equal(200, status)
      assert.are.same({}, body.result)
    end)

    it("offers exactly the allow-listed globals", function()
      local status, body = srv.call(key, "escape__attempt", {case = "g_walk"})
      assert.are.equal(200, status)
      assert.are.same({"_G", "_VERSION", "assert", "collectgarbage", "coroutine", "error", "getmetatable",
        "ipairs", "json", "load", "math", "next", "os", "pairs", "pcall", "print", "rawequal", "rawget",
        "rawlen", "rawset", "require", "select", "setmetatable", "string", "table", "tonumber", "tostring",
        "type", "unpack", "utf8", "xpcall"}, body.result)
    end)

    it("does not let one call resume or close another call's coroutine", function()
      local proc = h.spawn({"curl", "-s", "-H", "Authorization: Bearer " .. key,
        "-d", '{"name":"escape__stash_thread","arguments":{}}', srv.url .. "/v1/tools/call"})
      h.sleep(0.4)
      local status, body = srv.call(key, "escape__resume_stashed", {})
      assert.are.equal(200, status)
      assert.is_false(body.result.resume_ok)
      assert.is_truthy(body.result.resume_err:find("belongs to ferry", 1, true))
      assert.is_false(body.result.close_ok)
      local how, code = h.wait_exit(proc.pid, 10)
      assert.are.equal("exited", how)
      assert.are.equal(0, code)
      local stashed = h.decode(h.read_file(proc.stdout))
      assert.are.equal(200, stashed.result, "the stashed call finished normally")
    end)
  end)
end)
