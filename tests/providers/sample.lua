-- sample: the provider ferry's own tests drive. It talks to the local
-- fault-injection server (tests/fault), whose address the tests give with
-- --base-url sample=http://127.0.0.1:PORT.
local function upstream_error(resp)
  if resp.status == 429 or resp.status == 503 then
    return {
      code = "upstream_rate_limited",
      message = "the upstream is rate limiting (HTTP " .. resp.status .. ")",
      retry_after = tonumber(resp.headers["retry-after"]),
    }
  end
  return {code = "upstream_error", message = "the upstream answered HTTP " .. resp.status, status = resp.status}
end

return {
  slug = "sample",
  name = "Sample",
  category = "developer",
  description = "Test provider backed by ferry's fault-injection server.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "none"},
  data_categories = {"projects"},

  tools = {
    echo = {
      description = "Returns its text without any network call.",
      access = "read",
      input = {
        type = "object",
        properties = {
          text = {type = "string", minLength = 1, maxLength = 200},
          times = {type = "integer", minimum = 1, maximum = 5},
        },
        required = {"text"},
        additionalProperties = false,
      },
      run = function(ctx, args)
        return {text = string.rep(args.text, args.times or 1), request_id = ctx.request_id}
      end,
    },

    get = {
      description = "GETs a path on the upstream and returns its JSON body.",
      access = "read",
      input = {
        type = "object",
        properties = {
          path = {type = "string", pattern = "^/"},
          query = {type = "object"},
          timeout_ms = {type = "integer", minimum = 1, maximum = 60000},
        },
        required = {"path"},
      },
      run = function(ctx, args)
        local resp, err = ctx.http.request{path = args.path, query = args.query, timeout_ms = args.timeout_ms}
        if not resp then return nil, err end
        if not resp.ok then return nil, upstream_error(resp) end
        return resp.json()
      end,
    },

    post_echo = {
      description = "POSTs JSON to the upstream's /echo and returns what it saw.",
      access = "write",
      input = {
        type = "object",
        properties = {payload = {type = "object"}, api_token = {type = "string", writeOnly = true}},
        required = {"payload"},
      },
      run = function(ctx, args)
        local resp, err = ctx.http.request{method = "POST", path = "/echo", json = args.payload,
                                           headers = {["X-Sample"] = "yes"}}
        if not resp then return nil, err end
        return resp.json()
      end,
    },

    sequence = {
      description = "Makes several upstream calls one after another, inside a coroutine of its own.",
      access = "read",
      input = {
        type = "object",
        properties = {count = {type = "integer", minimum = 1, maximum = 20}},
        required = {"count"},
      },
      run = function(ctx, args)
        local pages = coroutine.wrap(function()
          for i = 1, args.count do
            local resp, err = ctx.http.request{path = "/json", query = {n = i}}
            if not resp then coroutine.yield(nil, err) return end
            coroutine.yield(resp.json())
          end
        end)
        local total = 0
        for _ = 1, args.count do
          local page, err = pages()
          if not page then return nil, err end
          total = total + #page.items
        end
        return {items = total}
      end,
    },

    remember = {
      description = "Stores a value in ctx.store and reads it back.",
      access = "write",
      input = {
        type = "object",
        properties = {key = {type = "string"}, value = {}},
        required = {"key"},
      },
      run = function(ctx, args)
        local before = ctx.store.get(args.key)
        ctx.store.set(args.key, args.value)
        return {before = before, after = ctx.store.get(args.key)}
      end,
    },
  },
}
