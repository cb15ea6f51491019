# Suites beyond the C unit tests: each busted spec under tests/integration
# is one ctest test (so ctest -j runs them side by side), plus luacheck.
# busted comes from Debian's lua-busted, which runs on Lua 5.1; the specs
# drive the real ferry binary over HTTP and never load the engine's Lua.
find_program(LUA51 lua5.1)
find_program(BUSTED busted)
find_program(LUACHECK luacheck)

if(LUA51 AND BUSTED)
  file(GLOB FERRY_SPECS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/integration/*_spec.lua)
  foreach(spec IN LISTS FERRY_SPECS)
    get_filename_component(name ${spec} NAME_WE)
    add_test(NAME integration.${name}
      COMMAND ${LUA51} ${BUSTED} --lpath=${CMAKE_CURRENT_SOURCE_DIR}/integration/?.lua
              --output=utfTerminal ${spec}
      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(integration.${name} PROPERTIES
      LABELS integration TIMEOUT 600
      ENVIRONMENT "FERRY_BIN=$<TARGET_FILE:ferry>;FAULT_SERVER=$<TARGET_FILE:fault_server>;LOADGEN=$<TARGET_FILE:loadgen>;FERRY_SOURCE=${PROJECT_SOURCE_DIR}")
  endforeach()
  # Unit specs of the provider SDK (scripts/ferry): plain Lua that runs on
  # 5.1 as well as in the engine's 5.4 sandbox.
  file(GLOB FERRY_LUA_SPECS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/lua/*_spec.lua)
  foreach(spec IN LISTS FERRY_LUA_SPECS)
    get_filename_component(name ${spec} NAME_WE)
    add_test(NAME lua.${name}
      COMMAND ${LUA51} ${BUSTED} "--lpath=${PROJECT_SOURCE_DIR}/scripts/?.lua;${PROJECT_SOURCE_DIR}/scripts/?/init.lua"
              --output=utfTerminal ${spec}
      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
    set_tests_properties(lua.${name} PROPERTIES LABELS lua TIMEOUT 120)
  endforeach()
else()
  message(WARNING "busted (lua-busted) not found: integration tests are not registered")
endif()

if(LUACHECK)
  add_test(NAME lint.luacheck
    COMMAND ${LUACHECK} --config ${PROJECT_SOURCE_DIR}/.luacheckrc --exclude-files "tests/providers-broken/*" -- providers scripts tests
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(lint.luacheck PROPERTIES LABELS lint)
endif()

# The official MCP conformance suite against ferry's /mcp, both revisions
# (tests/peers/conformance/run; a few seconds). Skipped (exit 77) until
# tests/peers/conformance/install has put it and Node 22 in place.
add_test(NAME conformance.mcp COMMAND ${PROJECT_SOURCE_DIR}/tests/peers/conformance/run
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(conformance.mcp PROPERTIES LABELS conformance TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "FERRY_BIN=$<TARGET_FILE:ferry>")
