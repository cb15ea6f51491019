-- docs/writing-a-provider.md, followed to the letter: every ```sh tutorial
-- block runs, in order, in one bash script (set -euo pipefail), in a fresh
-- folder, with every ```lua tutorial file=PATH block written to PATH where
-- it appears. The tutorial's own variables are given: FERRY_SRC (this
-- checkout), FERRY (the build's binary), PRISM, and free ports.
-- Needs luarocks, busted, luacheck, curl and Prism (tests/peers/install).
local h = require "helper"
local socket = require "socket"
local signal = require "posix.signal"

local DOC = h.root .. "/docs/writing-a-provider.md"

-- The tutorial's runnable blocks: {kind = "sh" | "file", text, path}.
local function blocks(text)
  local out, current = {}, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if current then
      if line:match("^```%s*$") then
        out[#out + 1] = current
        current = nil
      else
        current.lines[#current.lines + 1] = line
      end
    else
      local info = line:match("^```(.*)$")
      if info then
        info = info:gsub("%s+$", "")
        local path = info:match("^lua tutorial file=(%S+)$")
        if info == "sh tutorial" then
          current = {kind = "sh", lines = {}}
        elseif path then
          current = {kind = "file", path = path, lines = {}}
        else
          current = {kind = "skip", lines = {}}
        end
      end
    end
  end
  assert(current == nil, "an unterminated code block in " .. DOC)
  local runnable = {}
  for _, b in ipairs(out) do
    if b.kind ~= "skip" then
      b.text = table.concat(b.lines, "\n") .. "\n"
      runnable[#runnable + 1] = b
    end
  end
  return runnable
end

local function free_port()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:close()
  return port
end

local function script_of(list)
  local parts = {"set -euo pipefail\n"}
  for i, b in ipairs(list) do
    parts[#parts + 1] = ("echo '### tutorial block %d (%s)' >&2\n"):format(i, b.kind == "sh" and "sh" or b.path)
    if b.kind == "sh" then
      parts[#parts + 1] = b.text
    else
      assert(not b.text:find("\nFERRY_TUTORIAL_EOF\n", 1, true))
      parts[#parts + 1] = ("mkdir -p \"$(dirname '%s')\"\ncat > '%s' <<'FERRY_TUTORIAL_EOF'\n%sFERRY_TUTORIAL_EOF\n")
        :format(b.path, b.path, b.text)
    end
  end
  parts[#parts + 1] = "echo '### tutorial done' >&2\n"
  return table.concat(parts)
end

describe("docs/writing-a-provider.md", function()
  local list = blocks(assert(h.read_file(DOC), DOC .. " is missing"))

  it("marks its commands and files so they can be run", function()
    local sh, files = 0, 0
    for _, b in ipairs(list) do
      if b.kind == "sh" then sh = sh + 1 else files = files + 1 end
    end
    assert.is_true(sh >= 8, "sh tutorial blocks: " .. sh)
    assert.is_true(files >= 3, "lua tutorial file= blocks: " .. files)
  end)

  it("works as written: a provider created, tested with busted and Prism, served in /v1/tools", function()
    for _, tool in ipairs({"luarocks", "busted", "luacheck", "curl", "setsid"}) do
      assert(os.execute("command -v " .. tool .. " >/dev/null 2>&1") == 0,
             tool .. " is not installed (scripts/install-deps --test installs what the tutorial needs)")
    end
    local dir = h.tmpdir()
    local script = dir .. "/tutorial.sh"
    h.write_file(script, script_of(list))
    local work = dir .. "/work"
    os.execute("mkdir -p " .. work)
    local env = {
      FERRY_SRC = h.root, FERRY = h.bin, PRISM = h.prism_bin,
      PRISM_PORT = tostring(free_port()), FERRY_PORT = tostring(free_port()),
      HOME = dir, FERRY_RECORD = "",
    }
    -- its own session, so whatever it leaves running can be ended with it
    local p = h.spawn({"bash", "-c", 'cd "$1" && exec setsid bash -x "$2"', "tutorial", work, script}, env)
    local how, code = h.wait_exit(p.pid, 540)
    pcall(signal.kill, -p.pid, signal.SIGTERM)   -- whatever it left running (after a failure)
    if how == nil then h.kill(p.pid, h.SIGKILL); h.wait_exit(p.pid, 10) end
    local out, err = h.read_file(p.stdout) or "", h.read_file(p.stderr) or ""
    local report = ("\n--- stdout (end) ---\n%s\n--- stderr (end) ---\n%s"):format(out:sub(-6000), err:sub(-12000))
    assert.are.equal("exited", how, "the tutorial did not finish" .. report)
    assert.are.equal(0, code, "a tutorial command failed" .. report)
    assert.is_truthy(err:find("### tutorial done", 1, true), report)

    -- what the reader is told to expect
    assert.is_truthy(out:find("providers/my_slack.lua: ok: my_slack, 3 tools, 0 syncs", 1, true), report)
    assert.is_truthy(out:find("providers/my_slack.lua: ok: my_slack, 2 tools, 0 syncs", 1, true), report)
    local _, passes = out:gsub("6 successes / 0 failures / 0 errors", "")
    assert.are.equal(2, passes, "the starter's spec and the tutorial's spec pass" .. report)
    assert.is_truthy(out:find('"my_slack__list_channels"', 1, true), report)
    assert.is_truthy(out:find('"my_slack__channel_history"', 1, true), report)
    assert.is_truthy(out:find('"name":"general"', 1, true) or out:find('"name": "general"', 1, true), report)
    local fixtures = h.read_file(work .. "/my-providers/spec/fixtures/my_slack.json")
    assert.is_truthy(fixtures and fixtures:find("/conversations.list", 1, true), "fixtures recorded")
    assert.is_falsy(fixtures:find("xoxb-test", 1, true), "no credential in the fixtures")
    local page = h.read_file(work .. "/my-providers/docs/providers/my_slack.md")
    assert.is_truthy(page and page:find("my_slack__channel_history", 1, true), "docs generated")
  end)
end)
