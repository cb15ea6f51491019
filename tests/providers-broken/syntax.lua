-- A provider with a syntax error: ferry must report it and skip it.
return {
  slug = "syntax",
  tools = {
    oops = { description = "never loads" access = "read" },
  },
}
