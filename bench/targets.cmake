# loadgen: the HTTP load client that every benchmark drives both ferry and
# its baseline with.  libcurl multi on libevent; it never links ferrycore, so
# the client is the same whatever ferry is doing.
add_executable(loadgen ${CMAKE_CURRENT_LIST_DIR}/loadgen.c)
target_link_libraries(loadgen PRIVATE PkgConfig::CURL PkgConfig::EVENT)
set_target_properties(loadgen PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
