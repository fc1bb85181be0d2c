/// @file config.hpp
/// @brief Build configuration: backend detection, function qualifiers and the backend namespace.
///
/// Two switches decide what a translation unit can do:
///  - `MIXTAPE_WITH_CUDA` (set program-wide by the CMake target when the CUDA toolkit is found):
///    the CUDA runtime API (allocation, copies, streams, cuBLASLt) is available. It is the same
///    in every translation unit of one program, so code depending on it obeys the ODR.
///  - `__CUDACC__` (set only while nvcc compiles a `.cu` unit): kernels can be launched. It differs
///    between the translation units of one program, so every function whose body depends on it
///    lives in the inline namespace `MIXTAPE_BACKEND_NS`, whose name encodes the backend set
///    (CCCL's way). A `.cpp` unit and a `.cu` unit then emit distinct symbols instead of two
///    different bodies for one symbol, whatever the link order (docs/backends.md).
#pragma once

#if defined(MIXTAPE_WITH_CUDA) && !MIXTAPE_WITH_CUDA
#undef MIXTAPE_WITH_CUDA
#endif

#if defined(__CUDACC__)
#define MIXTAPE_HOST_DEVICE __host__ __device__
#define MIXTAPE_DEVICE __device__
#define MIXTAPE_HAS_KERNELS 1
#else
#define MIXTAPE_HOST_DEVICE
#define MIXTAPE_DEVICE
#define MIXTAPE_HAS_KERNELS 0
#endif

#if defined(__CUDA_ARCH__)
#define MIXTAPE_DEVICE_CODE 1
#else
#define MIXTAPE_DEVICE_CODE 0
#endif

#if MIXTAPE_HAS_KERNELS && !defined(MIXTAPE_WITH_CUDA)
#error "mixtape: a .cu unit needs the CUDA runtime; link mixtape::mixtape with the CUDA toolkit found"
#endif

// The inline namespace that holds every body that differs with __CUDACC__.
#if MIXTAPE_HAS_KERNELS
#define MIXTAPE_BACKEND_NS backend_host_cuda
#else
#define MIXTAPE_BACKEND_NS backend_host
#endif
#define MIXTAPE_BACKEND_BEGIN inline namespace MIXTAPE_BACKEND_NS {
#define MIXTAPE_BACKEND_END }

#if defined(_MSC_VER)
#define MIXTAPE_FORCEINLINE __forceinline
#else
#define MIXTAPE_FORCEINLINE inline __attribute__((always_inline))
#endif

#define MIXTAPE_VERSION_MAJOR 0
#define MIXTAPE_VERSION_MINOR 1
#define MIXTAPE_VERSION_PATCH 0

namespace mixtape {

/// Name of the backend set this translation unit was compiled with ("host" or "host+cuda").
MIXTAPE_BACKEND_BEGIN
inline const char* backend_set_name() noexcept { return MIXTAPE_HAS_KERNELS ? "host+cuda" : "host"; }
MIXTAPE_BACKEND_END

/// True when the program was built with the CUDA runtime (the same in every unit).
inline constexpr bool kWithCudaRuntime =
#if defined(MIXTAPE_WITH_CUDA)
    true;
#else
    false;
#endif

}  // namespace mixtape
