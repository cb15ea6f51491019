-- keyed_query: a provider whose credential the core injects (auth in the
-- query), for the vault and connection tests. Its tools show what the
-- upstream (the fault server's /echo) received, and what the script sees.
return {
  slug = "keyed_query",
  name = "Keyed (query)",
  category = "developer",
  description = "Test provider: credentials injected in the query.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "api_key", field = "api_key", query = "key"},
  data_categories = {"crm"},
  rotate_every = "30d",

  check = function(ctx)
    local resp, err = ctx.http.request{method = "POST", path = "/echo", json = {check = true}}
    if not resp then return nil, err end
    if resp.status ~= 200 then return nil, {code = "reconnect_required", message = "refused"} end
    return {account_label = "echo account"}
  end,

  tools = {
    echo = {
      description = "POSTs to the upstream's /echo and returns what it received.",
      access = "read",
      input = {type = "object", properties = {note = {type = "string"}}},
      run = function(ctx, args)
        local resp, err = ctx.http.request{method = "POST", path = "/echo", json = {note = args.note or "hi"},
                                           headers = {["X-Api-Token"] = "spoofed by the script",
                                                      Authorization = "spoofed by the script"}}
        if not resp then return nil, err end
        return resp.json()
      end,
    },
    whoami = {
      description = "Returns what the script can see of its connection.",
      access = "read",
      run = function(ctx)
        return {connection = ctx.connection, caller = ctx.caller}
      end,
    },
    status = {
      description = "GETs /status/CODE on the upstream.",
      access = "read",
      input = {type = "object", properties = {code = {type = "integer"}}, required = {"code"}},
      run = function(ctx, args)
        local resp, err = ctx.http.request{path = "/status/" .. args.code}
        if not resp then return nil, err end
        if resp.status == 401 then return nil, {code = "reconnect_required", message = "token refused"} end
        return {status = resp.status}
      end,
    },
  },
}
