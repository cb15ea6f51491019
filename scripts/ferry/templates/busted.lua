-- busted configuration (written by `ferry providers new`): `busted` runs
-- every spec/*_spec.lua, finding ferry's SDK and test helpers in a
-- project-local LuaRocks tree (luarocks --tree lua_modules make ...) or
-- wherever LuaRocks installed them.
return {
  default = {
    ROOT = {"spec"},
    lpath = "lua_modules/share/lua/5.1/?.lua;lua_modules/share/lua/5.1/?/init.lua",
  },
}
