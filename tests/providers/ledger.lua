-- ledger: a financial provider for the governance tests (a QuickBooks-like
-- shape on the fault server): members may not see it by default.
return {
  slug = "ledger",
  name = "Ledger",
  category = "accounting",
  description = "Test provider holding financial data.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "none"},
  data_categories = {"financial"},
  tools = {
    balance = {
      description = "Reads the balance.",
      access = "read",
      run = function(ctx)
        local resp, err = ctx.http.request{path = "/json", query = {n = 1}}
        if not resp then return nil, err end
        return {balance = 1234.56, items = #resp.json().items}
      end,
    },
    pay = {
      description = "Pays an amount to someone: a write.",
      access = "write",
      summary = "Pay {amount} to {to}",
      input = {
        type = "object",
        properties = {to = {type = "string"}, amount = {type = "number", minimum = 0}},
        required = {"to", "amount"},
        additionalProperties = false,
      },
      run = function(ctx, args)
        local resp, err = ctx.http.request{method = "POST", path = "/echo", json = args}
        if not resp then return nil, err end
        return {paid = args.amount, to = args.to, upstream_saw = resp.json().body}
      end,
    },
  },
}
