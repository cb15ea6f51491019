# loadgen: the HTTP load client that every benchmark drives both ferry and
# its baseline with.  libcurl multi on libevent; it never links ferrycore, so
# the client is the same whatever ferry is doing.
add_executable(loadgen ${CMAKE_CURRENT_LIST_DIR}/loadgen.c)
target_link_libraries(loadgen PRIVATE PkgConfig::CURL PkgConfig::EVENT)
set_target_properties(loadgen PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
# ingest_baseline: bench/ingest's baseline, the same rows written straight
# from C. It links ferrycore for ferry's chunker only, so both sides cut the
# same chunks.
add_executable(ingest_baseline ${CMAKE_CURRENT_LIST_DIR}/ingest_baseline.c)
target_link_libraries(ingest_baseline PRIVATE ferrycore)
set_target_properties(ingest_baseline PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
