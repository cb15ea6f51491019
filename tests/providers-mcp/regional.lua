-- regional: tools whose arguments MCP mirrors into headers (x-mcp-header,
-- MCP 2026-07-28), for the /mcp specs: `where` declares three valid ones;
-- `misplaced` puts one inside `items`, which the specification forbids, so
-- ferry does not offer it over MCP (REST still lists it).
return {
  slug = "regional",
  name = "Regional",
  category = "developer",
  description = "Test provider whose tools mirror arguments into MCP headers.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "none"},
  data_categories = {"projects"},
  tools = {
    where = {
      description = "Echoes where a query runs: region, count and verbose travel in Mcp-Param-* headers too.",
      access = "read",
      input = {
        type = "object",
        properties = {
          region = {type = "string", ["x-mcp-header"] = "Region"},
          count = {type = "integer", ["x-mcp-header"] = "Count"},
          verbose = {type = "boolean", ["x-mcp-header"] = "Verbose"},
          query = {type = "string"},
        },
        required = {"region"},
        additionalProperties = false,
      },
      run = function(_, args)
        return {region = args.region, count = args.count, verbose = args.verbose, query = args.query}
      end,
    },
    misplaced = {
      description = "Declares x-mcp-header on array items, where MCP does not allow it.",
      access = "read",
      input = {
        type = "object",
        properties = {tags = {type = "array", items = {type = "string", ["x-mcp-header"] = "Tag"}}},
      },
      run = function(_, args) return {tags = args.tags} end,
    },
  },
}
