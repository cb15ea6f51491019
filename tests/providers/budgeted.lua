-- budgeted: declares its upstream's rate limit (2 requests per 4 s, and a
-- slower tier), so requests through one connection wait their turn.
return {
  slug = "budgeted",
  name = "Budgeted",
  category = "developer",
  description = "Test provider with an upstream rate limit.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "none"},
  data_categories = {},
  rate_limits = {requests = 2, per = "4s", tiers = {slow = {requests = 1, per = "1h"}}},
  tools = {
    get = {
      description = "GETs a path, in the default budget or a tier.",
      access = "read",
      input = {type = "object", properties = {path = {type = "string"}, tier = {type = "string"},
                                              timeout_ms = {type = "integer"}}, required = {"path"}},
      run = function(ctx, args)
        local resp, err = ctx.http.request{path = args.path, tier = args.tier, timeout_ms = args.timeout_ms}
        if not resp then return nil, err end
        return {status = resp.status}
      end,
    },
  },
}
