# Install the build into a scratch prefix, then build and run a consumer with
# find_package(pymalloc) and with pkg-config. Run by CTest (test "consumer").
set(prefix ${WORK_DIR}/prefix)
if(SANITIZE)
  set(SAN_FLAGS "-fsanitize=${SANITIZE}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(LAST_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# find_package
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
    "-DCMAKE_C_FLAGS=${SAN_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
foreach(exe consumer_shared consumer_static)
  run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/lib:${prefix}/lib64
      ${WORK_DIR}/build/${exe})
  if(NOT LAST_OUTPUT MATCHES "^consumer [0-9.]+ mode=")
    message(FATAL_ERROR "unexpected output from ${exe}: ${LAST_OUTPUT}")
  endif()
endforeach()

# pkg-config
find_program(PKG_CONFIG pkg-config)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config is required for this test (apt-get install pkg-config)")
endif()
file(GLOB pcdirs ${prefix}/lib*/pkgconfig)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdirs}
                ${PKG_CONFIG} --cflags --libs pymalloc
                OUTPUT_VARIABLE flags RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs pymalloc failed")
endif()
separate_arguments(flags UNIX_COMMAND "${SAN_FLAGS} ${flags}")
run(${C_COMPILER} ${SOURCE_DIR}/tests/consumer/main.c -o ${WORK_DIR}/consumer_pc ${flags})
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/lib:${prefix}/lib64
    ${WORK_DIR}/consumer_pc)
if(NOT LAST_OUTPUT MATCHES "^consumer [0-9.]+ mode=")
  message(FATAL_ERROR "unexpected output from the pkg-config build: ${LAST_OUTPUT}")
endif()
message("consumer: find_package (shared, static) and pkg-config builds work")
