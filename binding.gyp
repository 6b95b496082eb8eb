{
  "targets": [
    {
      "target_name": "gemmkit",
      "sources": [
        "native/core/problem.cpp",
        "native/core/backend_registry.cpp",
        "native/core/reference_gemm.cpp",
        "native/core/op_check.cpp",
        "native/cpu/cpu_features.cpp",
        "native/cpu/thread_pool.cpp",
        "native/cpu/micro_kernels.cpp",
        "native/cpu/kernel_scalar.cpp",
        "native/cpu/kernel_avx2.cpp",
        "native/cpu/kernel_avx512.cpp",
        "native/cpu/kernel_avx512_bf16.cpp",
        "native/cpu/kernel_amx.cpp",
        "native/cpu/pack.cpp",
        "native/cpu/pack_avx2.cpp",
        "native/cpu/pack_avx512.cpp",
        "native/cpu/epilogue.cpp",
        "native/cpu/epilogue_avx512.cpp",
        "native/cpu/gemv.cpp",
        "native/cpu/gemv_avx2.cpp",
        "native/cpu/gemv_avx512.cpp",
        "native/cpu/cpu_config.cpp",
        "native/cpu/gemm_frame.cpp",
        "native/cpu/system_blas.cpp",
        "native/cpu/ops.cpp",
        "native/cpu/ops_avx2.cpp",
        "native/cpu/ops_avx512.cpp",
        "native/cpu/cpu_backend.cpp",
        "native/addon/problem_args.cpp",
        "native/addon/backend_calls.cpp",
        "native/addon/packed_weight_handle.cpp",
        "native/addon/host_memory.cpp",
        "native/addon/op_calls.cpp",
        "native/addon/addon.cpp"
      ],
      "libraries": ["-ldl"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1 }
      }
    }
  ]
}
