# Install the build into a scratch prefix, then build and run consumers with
# find_package(pymalloc) and with pkg-config: the API-only libraries
# (pymalloc::pymalloc_api[_static], pymalloc-api.pc) and, when built, the
# override (pymalloc::pymalloc[_static], pymalloc.pc). Run by CTest ("consumer").
set(prefix ${WORK_DIR}/prefix)
# The build's own C flags first (-m32: a 32-bit build's libraries cannot
# link into a 64-bit consumer), then the sanitizer's.
set(SAN_FLAGS "${C_FLAGS}")
if(SANITIZE)
  string(APPEND SAN_FLAGS " -fsanitize=${SANITIZE}")
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

function(expect what regex)
  if(NOT LAST_OUTPUT MATCHES "${regex}")
    message(FATAL_ERROR "unexpected output from ${what}: ${LAST_OUTPUT}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
set(libpath LD_LIBRARY_PATH=${prefix}/lib:${prefix}/lib64)
file(GLOB override_libs ${prefix}/lib*/libpymalloc.so)
if(override_libs)
  set(have_override 1)
else()
  set(have_override 0)
endif()

# find_package
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
    "-DCMAKE_C_FLAGS=${SAN_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
foreach(exe consumer_api_shared consumer_api_static)
  run(${CMAKE_COMMAND} -E env ${libpath} ${WORK_DIR}/build/${exe})
  expect(${exe} "^consumer [0-9.]+ mode=")
endforeach()
# A user's shared library with the static API library inside it: its names
# stay interposable (the --dynamic-list is linked into executables only).
run(${CMAKE_COMMAND} -E env ${libpath} LD_LIBRARY_PATH=${WORK_DIR}/build:${prefix}/lib
    ${WORK_DIR}/build/consumer_shlib_main)
expect(consumer_shlib_main "^shlib ok: counter 2, program's name")
# A static copy in the program and a plugin that calls pm_* through the
# shared API library (a second copy, dlopened): the plugin reaches the
# program's copy (the static targets export the program's pm_* functions),
# so blocks cross between them in every mode.
set(dlopen_exes consumer_dlopen_api_static)
if(have_override)
  list(APPEND dlopen_exes consumer_dlopen_static)
endif()
foreach(exe ${dlopen_exes})
  foreach(mode pymalloc malloc_debug pymalloc_debug)
    run(${CMAKE_COMMAND} -E env ${libpath} PYMALLOC_MODE=${mode}
        ${WORK_DIR}/build/${exe} ${WORK_DIR}/build/consumer_plugin.so)
    expect("${exe} (${mode})" "^dlopen ok: [0-9.]+ mode=${mode}")
  endforeach()
endforeach()
if(have_override)
  foreach(exe consumer_shared consumer_static)
    run(${CMAKE_COMMAND} -E env ${libpath} ${WORK_DIR}/build/${exe})
    expect(${exe} "^consumer [0-9.]+ mode=[a-z_]+ override=yes")
  endforeach()
  # The installed pymalloc-run finds the installed library (not the build
  # tree's). Not in a 32-bit build: it refuses the system's 64-bit sh.
  if(NOT POINTER_SIZE EQUAL 4)
    run(${CMAKE_COMMAND} -E env ${prefix}/bin/pymalloc-run --verbose -- sh -c "echo $LD_PRELOAD")
    expect("installed pymalloc-run" "^${prefix}/lib[^/]*/libpymalloc\\.so")
  endif()
endif()

# pkg-config
find_program(PKG_CONFIG pkg-config)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config is required for this test (apt-get install pkg-config)")
endif()
file(GLOB pcdirs ${prefix}/lib*/pkgconfig)
set(pcs pymalloc-api main.c)
if(have_override)
  list(APPEND pcs pymalloc override_main.c)
endif()
while(pcs)
  list(POP_FRONT pcs pc src)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdirs}
                  ${PKG_CONFIG} --cflags --libs ${pc}
                  OUTPUT_VARIABLE flags RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs ${pc} failed")
  endif()
  separate_arguments(flags UNIX_COMMAND "${SAN_FLAGS} ${flags}")
  run(${C_COMPILER} ${SOURCE_DIR}/tests/consumer/${src} -o ${WORK_DIR}/consumer_${pc} ${flags})
  run(${CMAKE_COMMAND} -E env ${libpath} ${WORK_DIR}/consumer_${pc})
  expect("the pkg-config build (${pc})" "^consumer [0-9.]+ mode=")
endwhile()
# The shared override under --as-needed, from a program that calls neither
# malloc nor pm_* itself: find_package and pkg-config must both keep it.
if(have_override)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdirs}
                  ${PKG_CONFIG} --cflags --libs pymalloc
                  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE)
  separate_arguments(flags UNIX_COMMAND "${SAN_FLAGS} -Wl,--as-needed ${flags}")
  run(${C_COMPILER} ${SOURCE_DIR}/tests/consumer/as_needed_main.c -o ${WORK_DIR}/consumer_pc_as_needed
      ${flags} -ldl)
  foreach(exe ${WORK_DIR}/build/consumer_as_needed ${WORK_DIR}/consumer_pc_as_needed)
    run(${CMAKE_COMMAND} -E env ${libpath} ${exe})
    expect("${exe}" "^as-needed override=yes")
  endforeach()
endif()

# The README's recipe for the static override through pkg-config: the
# archive named, and the other flags (-u malloc, the dynamic list).
if(have_override)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdirs}
                  ${PKG_CONFIG} --variable=libdir pymalloc
                  OUTPUT_VARIABLE pc_libdir OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdirs}
                  ${PKG_CONFIG} --cflags --static --libs-only-other pymalloc
                  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE)
  separate_arguments(flags UNIX_COMMAND "${SAN_FLAGS} ${flags}")
  run(${C_COMPILER} ${SOURCE_DIR}/tests/consumer/dlopen_main.c -o ${WORK_DIR}/consumer_pc_static
      ${pc_libdir}/libpymalloc.a ${flags} -ldl)
  run(readelf -d ${WORK_DIR}/consumer_pc_static)
  if(LAST_OUTPUT MATCHES "libpymalloc")
    message(FATAL_ERROR "the pkg-config static build needs libpymalloc.so: ${LAST_OUTPUT}")
  endif()
  run(${CMAKE_COMMAND} -E env ${libpath} PYMALLOC_MODE=pymalloc_debug
      ${WORK_DIR}/consumer_pc_static ${WORK_DIR}/build/consumer_plugin.so)
  expect("the pkg-config static build" "^dlopen ok: [0-9.]+ mode=pymalloc_debug")
endif()
message("consumer: find_package (api and override, shared and static) and pkg-config builds work")
