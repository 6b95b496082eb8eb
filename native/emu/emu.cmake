# The CPU emulator's build (GEMMKIT_GPU=emu; npm run build:emu), included by CMakeLists.txt. For each
# flavour, cuda (the sm90a and sm80 tables, warps of 32) and hip (gfx942 and gfx90a, wavefronts of 64),
# every GPU kernel source (GEMMKIT_GPU_KERNELS in CMakeLists.txt and what they include) is compiled as
# plain C++ against native/emu, instrumented with -fsanitize=thread so the emulator sees each load and
# store:
#   gemmkit-emu-<flavour>-check     gemmkit-gpu-check on the emulated device (npm run test:emu runs it)
#   gemmkit-emu-<flavour>-ops-check gemmkit-gpu-ops-check (the ops beyond GEMM) likewise
#   gemmkit-emu-<flavour>-selftest  the emulated instructions and checks against plain references
#   gemmkit-emu-planted-<defect>    gemmkit-gpu-check over one kernel with a defect planted
#                                   (GEMMKIT_PLANT_*), for the tests that the checks name it
#   gemmkit_emu_<flavour>.node      the emu-cuda / emu-hip backends for Node (under cmake-js)
# The two flavours are separate binaries: the same templates instantiated for 32 and 64 lanes must not
# meet in one program. The kernel sources are CMakeLists.txt's GEMMKIT_GPU_KERNELS, the same list the
# CUDA and HIP builds compile, so a kernel added to the GPU addons runs on the emulator as well.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  message(FATAL_ERROR "gemmkit emulator build: needs g++ or clang++ (for -fsanitize=thread instrumentation), not ${CMAKE_CXX_COMPILER_ID}")
endif()

set_source_files_properties(${GEMMKIT_GPU_KERNELS} PROPERTIES LANGUAGE CXX)

# Kernel translation units: C++ (the .cu suffix means nothing to g++), every memory access reported to
# the emulator's __tsan_* callbacks (no TSan runtime is linked), no function entry/exit callbacks.
set(GEMMKIT_EMU_INSTRUMENT -x c++ -fsanitize=thread -Wno-unknown-pragmas)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND GEMMKIT_EMU_INSTRUMENT --param=tsan-instrument-func-entry-exit=0)
else()
  list(APPEND GEMMKIT_EMU_INSTRUMENT -mllvm -tsan-instrument-func-entry-exit=0)
endif()

set(GEMMKIT_EMU_RUNTIME
  native/emu/emu_runtime.cpp
  native/emu/emu_memory.cpp
  native/emu/emu_instructions.cpp
  native/emu/emu_vendor.cpp
  native/emu/emu_backend.cpp)

# The GEMM kernel tables apart from the other kernel sources, so a planted defect rebuilds only them.
set(GEMMKIT_EMU_GEMM_KERNELS native/gpu/kernel_tables.cu)
set(GEMMKIT_EMU_OTHER_KERNELS ${GEMMKIT_GPU_KERNELS})
list(REMOVE_ITEM GEMMKIT_EMU_OTHER_KERNELS ${GEMMKIT_EMU_GEMM_KERNELS})

# Kernel sources of `flavour` with extra definitions (a planted defect, one table row) as an object library.
function(gemmkit_emu_kernels target flavour sources)
  add_library(${target} OBJECT ${sources})
  target_compile_options(${target} PRIVATE ${GEMMKIT_EMU_INSTRUMENT} -Wall -Wextra -Wno-unused-parameter)
  target_compile_definitions(${target} PRIVATE ${ARGN})
  target_link_libraries(${target} PUBLIC gemmkit_emu_${flavour}_engine)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden)
endfunction()

foreach(flavour cuda hip)
  string(TOUPPER "${flavour}" FLAVOUR)
  if(flavour STREQUAL "cuda")
    set(archs "80,90a")
  else()
    set(archs "gfx942,gfx90a")
  endif()
  # The GPU engine (runtime, backend, configs) on the emulated vendor runtime, plus the emulator.
  add_library(gemmkit_emu_${flavour}_engine STATIC ${GEMMKIT_CORE_SOURCES} native/gpu/gpu_config.cpp native/gpu/gpu_runtime.cpp
              native/gpu/gpu_backend.cpp ${GEMMKIT_EMU_RUNTIME})
  target_compile_definitions(gemmkit_emu_${flavour}_engine PUBLIC GEMMKIT_EMU_${FLAVOUR}=1 GEMMKIT_GPU_ARCHS="${archs}")
  target_compile_options(gemmkit_emu_${flavour}_engine PRIVATE -Wall -Wextra -Wno-unused-parameter)
  target_link_libraries(gemmkit_emu_${flavour}_engine PUBLIC Threads::Threads ${CMAKE_DL_LIBS})
  set_target_properties(gemmkit_emu_${flavour}_engine PROPERTIES POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden)

  gemmkit_emu_kernels(gemmkit_emu_${flavour}_gemm_kernels ${flavour} "${GEMMKIT_EMU_GEMM_KERNELS}")
  gemmkit_emu_kernels(gemmkit_emu_${flavour}_other_kernels ${flavour} "${GEMMKIT_EMU_OTHER_KERNELS}")
  set(kernels $<TARGET_OBJECTS:gemmkit_emu_${flavour}_gemm_kernels> $<TARGET_OBJECTS:gemmkit_emu_${flavour}_other_kernels>)

  add_executable(gemmkit-emu-${flavour}-check native/tools/gemmkit_gpu_check.cpp ${kernels})
  target_link_libraries(gemmkit-emu-${flavour}-check PRIVATE gemmkit_emu_${flavour}_engine)

  add_executable(gemmkit-emu-${flavour}-ops-check native/tools/gemmkit_gpu_ops_check.cpp native/core/reference_ops.cpp ${kernels})
  target_link_libraries(gemmkit-emu-${flavour}-ops-check PRIVATE gemmkit_emu_${flavour}_engine)

  add_executable(gemmkit-emu-${flavour}-selftest native/emu/emu_selftest.cpp)
  set_source_files_properties(native/emu/emu_selftest.cpp PROPERTIES COMPILE_OPTIONS "-fsanitize=thread;-Wno-unknown-pragmas")
  target_link_libraries(gemmkit-emu-${flavour}-selftest PRIVATE gemmkit_emu_${flavour}_engine)

  if(CMAKE_JS_INC)
    add_library(gemmkit_emu_${flavour} SHARED ${GEMMKIT_GPU_ADDON_SOURCES} ${kernels} ${CMAKE_JS_SRC})
    set_target_properties(gemmkit_emu_${flavour} PROPERTIES PREFIX "" SUFFIX ".node" CXX_VISIBILITY_PRESET hidden)
    target_include_directories(gemmkit_emu_${flavour} PRIVATE ${CMAKE_JS_INC})
    target_compile_definitions(gemmkit_emu_${flavour} PRIVATE NAPI_VERSION=8 NAPI_CPP_EXCEPTIONS GEMMKIT_GPU_ADDON=1)
    target_link_libraries(gemmkit_emu_${flavour} PRIVATE gemmkit_emu_${flavour}_engine ${CMAKE_JS_LIB})
  endif()
endforeach()

# Planted defects, each in one table row (GEMMKIT_ONLY_ARCH / GEMMKIT_ONLY_ROW keep the build small;
# test/emu.test.ts names the config each row is and fails if the tables move under it).
function(gemmkit_emu_planted defect flavour arch row)
  string(TOUPPER "${defect}" DEFECT)
  string(REPLACE "-" "_" DEFECT "${DEFECT}")
  gemmkit_emu_kernels(gemmkit_emu_planted_${defect}_kernels ${flavour} "${GEMMKIT_EMU_GEMM_KERNELS}"
                      GEMMKIT_PLANT_${DEFECT}=1 GEMMKIT_ONLY_ARCH=${arch} GEMMKIT_ONLY_ROW=${row})
  add_executable(gemmkit-emu-planted-${defect} native/tools/gemmkit_gpu_check.cpp $<TARGET_OBJECTS:gemmkit_emu_planted_${defect}_kernels>
                 $<TARGET_OBJECTS:gemmkit_emu_${flavour}_other_kernels>)
  target_link_libraries(gemmkit-emu-planted-${defect} PRIVATE gemmkit_emu_${flavour}_engine)
endfunction()
gemmkit_emu_planted(bounds-off-by-one cuda Sm80 0)         # cuda.sm80.any.simt.64x64x16.w4.s1
gemmkit_emu_planted(missing-cp-async-wait cuda Sm80 3)     # cuda.sm80.bf16.mma.128x128x32.w4.s3.g8
gemmkit_emu_planted(swapped-fragment cuda Sm80 3)          # cuda.sm80.bf16.mma.128x128x32.w4.s3.g8
gemmkit_emu_planted(missing-barrier hip Gfx942 3)          # hip.gfx942.bf16.mfma.128x128x32.w4.s2.g8
