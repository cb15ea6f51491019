-- ferry.sdk: everything a provider script usually needs, in one require.
--
--   local sdk = require "ferry.sdk"
--   local s = sdk.schema
--   sdk.request(ctx, req, API)      -- ferry.http.request: body, resp | nil, err
--   sdk.errors.from_response(resp, API)
--   sdk.paginate.cursor{...} (.offset, .link, .pages, .window), sdk.paginate.collect{...}
--   sdk.errors.slack(), sdk.errors.quickbooks(), sdk.errors.google{service = ...},
--   sdk.errors.graphql{service = ...}
--   sdk.graphql.query(ctx, {query, variables}, API)
--   sdk.data.get(body, "a.b.1"), sdk.data.array(list)
--   sdk.http.path("/things/{id}", args)
--   sdk.time.parse("2024-05-01T12:00:00Z"), sdk.time.format(t)
--
-- See scripts/ferry/README.md. The modules can also be required one by one
-- (require "ferry.errors").
local http = require "ferry.http"

return {
  data = require "ferry.data",
  errors = require "ferry.errors",
  graphql = require "ferry.graphql",
  http = http,
  paginate = require "ferry.paginate",
  schema = require "ferry.schema",
  time = require "ferry.time",
  request = http.request,
}
