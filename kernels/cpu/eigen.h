#pragma once
// Eigen, for the CPU kernels built on its GEMM (matmul.cpp, conv.cpp). CMake compiles these
// files with -march=native (LUMEN_NATIVE_GEMM), where GCC 12 reports a false
// -Wmaybe-uninitialized inside its own AVX-512 intrinsics (avx512fintrin.h,
// `__m256d __Y = __Y;`) as Eigen's GEMM is inlined: GCC bug 105593. The warning is
// location-based, so it is silenced for the rest of each file that includes this.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
