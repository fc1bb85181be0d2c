// Kernels of the exhaustive GPU conversion test: the device side of every comparison in
// numeric_exhaustive_cuda.cpp. Each kernel calls the public convert<>() (which uses CUDA's
// conversion instructions where numeric/detail/cuda_intrinsics.hpp allows) and, for the float
// sweep, also counts where it differs from the portable code path run on the device.
#include <cuda_runtime_api.h>

#include "mixtape/core/error.hpp"
#include "mixtape/numeric/numeric.hpp"
#include "numeric/numeric_exhaustive_cuda.hpp"

namespace mixtape::test::cuda_numeric {
namespace {

constexpr int kBlock = 256;

template <class T, Rounding R>
__global__ void narrow_floats_kernel(std::uint64_t begin, std::uint64_t count,
                                     typename numeric_traits<T>::storage_type* out,
                                     unsigned long long* portable_mismatches) {
  using Fmt = detail::format_of_t<T>;
  unsigned long long local = 0;
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const auto bits = static_cast<std::uint32_t>(begin + i);
    const std::uint32_t word = random_word(bits);
    const auto got = convert<T, R>(detail::bit_cast<float>(bits), word).bits();
    out[i] = got;
    if (got != detail::convert_bits_portable<Fmt, detail::F32Format, R>(bits, word)) ++local;
  }
  if (local != 0) atomicAdd(portable_mismatches, local);
}

template <class S, class T, Rounding R>
__global__ void convert_codes_kernel(std::uint64_t* out) {
  constexpr std::uint32_t kCount = 1u << numeric_traits<S>::bits;
  for (std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < kCount; i += gridDim.x * blockDim.x) {
    const S x = S::from_bits(static_cast<typename S::storage_type>(i));
    out[i] = detail::to_storage(convert<T, R>(x, random_word(i)));
  }
}

template <class T, Rounding R>
__global__ void convert_doubles_kernel(std::uint64_t count, std::uint64_t* out) {
  for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
    const double x = detail::bit_cast<double>(random_double_bits(i));
    out[i] = detail::to_storage(convert<T, R>(x, random_word(i)));
  }
}

template <class F>
void with_format(Format f, F&& fn) {
  switch (f) {
    case Format::f16:
      return fn.template operator()<f16>();
    case Format::bf16:
      return fn.template operator()<bf16>();
    case Format::e4m3:
      return fn.template operator()<e4m3>();
    case Format::e5m2:
      return fn.template operator()<e5m2>();
  }
}

template <class F>
void with_target(Target t, F&& fn) {
  switch (t) {
    case Target::f16:
      return fn.template operator()<f16>();
    case Target::bf16:
      return fn.template operator()<bf16>();
    case Target::e4m3:
      return fn.template operator()<e4m3>();
    case Target::e5m2:
      return fn.template operator()<e5m2>();
    case Target::f32:
      return fn.template operator()<float>();
    case Target::f64:
      return fn.template operator()<double>();
  }
}

template <class F>
void with_rounding(Rounding r, F&& fn) {
  switch (r) {
    case Rounding::nearest_even:
      return fn.template operator()<Rounding::nearest_even>();
    case Rounding::nearest_even_saturate:
      return fn.template operator()<Rounding::nearest_even_saturate>();
    case Rounding::stochastic:
      return fn.template operator()<Rounding::stochastic>();
    case Rounding::stochastic_saturate:
      return fn.template operator()<Rounding::stochastic_saturate>();
  }
}

unsigned grid_for(std::uint64_t count) {
  const std::uint64_t blocks = (count + kBlock - 1) / kBlock;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

}  // namespace

DeviceConverter::DeviceConverter(std::uint64_t capacity) : capacity_(capacity) {
  MIXTAPE_CUDA_CHECK(cudaMalloc(&device_, capacity_));
  MIXTAPE_CUDA_CHECK(cudaMallocHost(&host_, capacity_));
  MIXTAPE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&d_count_), sizeof(unsigned long long)));
}

DeviceConverter::~DeviceConverter() {
  cudaFree(d_count_);
  cudaFreeHost(host_);
  cudaFree(device_);
}

std::string DeviceConverter::device_name() const {
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "?";
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
}

std::uint64_t DeviceConverter::narrow_floats(Format format, Rounding rounding, std::uint64_t begin,
                                             std::uint64_t count) {
  unsigned long long mismatches = 0;
  MIXTAPE_CUDA_CHECK(cudaMemset(d_count_, 0, sizeof mismatches));
  std::uint64_t bytes = 0;
  with_format(format, [&]<class T>() {
    using S = typename numeric_traits<T>::storage_type;
    bytes = count * sizeof(S);
    MIXTAPE_EXPECT(bytes <= capacity_, ValueError, "narrow_floats: ", count, " elements exceed the buffer");
    with_rounding(rounding, [&]<Rounding R>() {
      narrow_floats_kernel<T, R><<<grid_for(count), kBlock>>>(begin, count, static_cast<S*>(device_), d_count_);
    });
  });
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
  MIXTAPE_CUDA_CHECK(cudaMemcpy(host_, device_, bytes, cudaMemcpyDeviceToHost));
  MIXTAPE_CUDA_CHECK(cudaMemcpy(&mismatches, d_count_, sizeof mismatches, cudaMemcpyDeviceToHost));
  return mismatches;
}

void DeviceConverter::convert_codes(Format from, Target to, Rounding rounding) {
  std::uint64_t count = 0;
  with_format(from, [&]<class S>() {
    count = std::uint64_t{1} << numeric_traits<S>::bits;
    MIXTAPE_EXPECT(count * 8 <= capacity_, ValueError, "convert_codes: buffer too small");
    with_target(to, [&]<class T>() {
      with_rounding(rounding, [&]<Rounding R>() {
        convert_codes_kernel<S, T, R><<<grid_for(count), kBlock>>>(static_cast<std::uint64_t*>(device_));
      });
    });
  });
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
  MIXTAPE_CUDA_CHECK(cudaMemcpy(host_, device_, count * 8, cudaMemcpyDeviceToHost));
}

void DeviceConverter::convert_doubles(Target to, Rounding rounding, std::uint64_t count) {
  MIXTAPE_EXPECT(count * 8 <= capacity_, ValueError, "convert_doubles: buffer too small");
  with_target(to, [&]<class T>() {
    with_rounding(rounding, [&]<Rounding R>() {
      convert_doubles_kernel<T, R><<<grid_for(count), kBlock>>>(count, static_cast<std::uint64_t*>(device_));
    });
  });
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
  MIXTAPE_CUDA_CHECK(cudaMemcpy(host_, device_, count * 8, cudaMemcpyDeviceToHost));
}

}  // namespace mixtape::test::cuda_numeric
