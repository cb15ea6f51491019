-- egress: a provider with a public host, for the egress tests. The tests
-- point it at the fault server with --base-url egress=http://localhost:PORT
-- (an operator's override); whatever else it reaches for must be refused.
return {
  slug = "egress",
  name = "Egress",
  category = "developer",
  description = "Test provider for egress rules.",
  base_url = "https://api.example.com",
  hosts = {"api.example.com"},
  auth = {type = "none"},
  data_categories = {},
  tools = {
    follow_redirect = {
      description = "Asks the upstream for a redirect to `to`, then follows it by hand.",
      access = "read",
      input = {type = "object", properties = {to = {type = "string"}}, required = {"to"}},
      run = function(ctx, args)
        local resp, err = ctx.http.request{path = "/redirect", query = {to = args.to}}
        if not resp then return nil, err end
        if resp.status < 300 or resp.status > 399 then
          return {status = resp.status, followed = false}
        end
        local next_resp, next_err = ctx.http.request{url = resp.headers.location}
        if not next_resp then return nil, next_err end
        return {status = next_resp.status, followed = true}
      end,
    },
  },
}
