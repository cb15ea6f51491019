-- rebind: declares a host name that resolves to a loopback address. With
-- no operator override, requests to it must be refused: a declared name is
-- not permission to reach the engine's own network.
return {
  slug = "rebind",
  name = "Rebind",
  category = "developer",
  description = "Test provider whose declared host resolves to loopback.",
  base_url = "http://localhost:9",
  hosts = {"localhost"},
  auth = {type = "none"},
  data_categories = {},
  tools = {
    fetch = {
      description = "GETs a URL on its declared host.",
      access = "read",
      input = {type = "object", properties = {url = {type = "string"}}, required = {"url"}},
      run = function(ctx, args)
        local resp, err = ctx.http.request{url = args.url}
        if not resp then return nil, err end
        return {status = resp.status}
      end,
    },
  },
}
