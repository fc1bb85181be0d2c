// bench_bandwidth: how close the contiguous element-wise paths come to the device's copy bandwidth.
//
// Cases (each >= 256 MiB of compulsory bytes = bytes read + bytes written once):
//   copy_d2d            cudaMemcpyAsync device to device, 256 MiB -> 256 MiB (the reference)
//   map_scale_bf16      y = a * x, bf16 -> bf16 (2^27 elements)
//   map_scale_f32       y = a * x, f32 -> f32 (2^26 elements)
//   convert_f32_bf16    nearest-even f32 -> bf16 (2^26 elements)
//   convert_f32_bf16_sr stochastic rounding f32 -> bf16 (one Philox call per 4 elements)
//   convert_f32_e4m3    saturating f32 -> e4m3 (2^26 elements)
//   uniform_f32         Philox uniform fill, f32 (writes only)
//   contiguous_bf16_T   a transposed (8192, 8192) bf16 view made dense: the strided path
// Method: CUDA events around each launch on the context's stream, 3 warm-up runs, the median of 25
// timed runs. Prints one JSON line per case: {"case", "bytes", "median_ms", "gbps", "ratio_to_copy"}.
//
// Usage: bench_bandwidth [reps]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "mixtape/kernels/kernels.hpp"

using namespace mixtape;

namespace {

struct Timer {
  cudaEvent_t start = nullptr, stop = nullptr;
  Timer() {
    MIXTAPE_CUDA_CHECK(cudaEventCreate(&start));
    MIXTAPE_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~Timer() {
    (void)cudaEventDestroy(start);
    (void)cudaEventDestroy(stop);
  }
};

/// Median milliseconds of `reps` timed runs of `body` on the context's stream, after 3 warm-ups.
double median_ms(const ExecutionContext& ctx, int reps, const std::function<void()>& body) {
  Timer t;
  for (int i = 0; i < 3; ++i) body();
  ctx.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    MIXTAPE_CUDA_CHECK(cudaEventRecord(t.start, ctx.stream()));
    body();
    MIXTAPE_CUDA_CHECK(cudaEventRecord(t.stop, ctx.stream()));
    MIXTAPE_CUDA_CHECK(cudaEventSynchronize(t.stop));
    float m = 0;
    MIXTAPE_CUDA_CHECK(cudaEventElapsedTime(&m, t.start, t.stop));
    ms.push_back(m);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void report(const std::string& name, double bytes, double ms, double copy_gbps) {
  const double gbps = bytes / (ms * 1e-3) / 1e9;
  std::printf("{\"case\": \"%s\", \"bytes\": %.0f, \"median_ms\": %.4f, \"gbps\": %.1f, \"ratio_to_copy\": %.3f}\n",
              name.c_str(), bytes, ms, gbps, copy_gbps > 0 ? gbps / copy_gbps : 1.0);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 25;
  if (cuda_device_count() == 0) {
    std::fprintf(stderr, "bench_bandwidth: no CUDA device\n");
    return 77;
  }
  auto ctx = ExecutionContext::cuda(0);
  cudaDeviceProp prop{};
  MIXTAPE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("{\"device\": \"%s\", \"sms\": %d, \"reps\": %d}\n", prop.name, prop.multiProcessorCount, reps);

  constexpr std::int64_t kMiB = std::int64_t{1} << 20;
  const std::int64_t n16 = 256 * kMiB / 2;  // 2^27 two-byte elements = 256 MiB
  const std::int64_t n32 = 256 * kMiB / 4;  // 2^26 four-byte elements = 256 MiB

  auto a32 = Tensor<float>::empty(ctx, {n32});
  auto b32 = Tensor<float>::empty(ctx, {n32});
  auto a16 = Tensor<bf16>::empty(ctx, {n16});
  auto b16 = Tensor<bf16>::empty(ctx, {n16});
  auto c16 = Tensor<bf16>::empty(ctx, {n32});
  auto e8 = Tensor<e4m3>::empty(ctx, {n32});
  kernels::uniform(ctx, a32, -2.0, 2.0);
  kernels::uniform(ctx, a16, -2.0, 2.0);
  ctx.synchronize();

  // The reference: a device-to-device copy of 256 MiB (512 MiB moved).
  const double copy_bytes = 2.0 * 256 * kMiB;
  const double copy_ms = median_ms(ctx, reps, [&] {
    MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(b32.data(), a32.data(), static_cast<std::size_t>(256 * kMiB),
                                       cudaMemcpyDeviceToDevice, ctx.stream()));
  });
  const double copy_gbps = copy_bytes / (copy_ms * 1e-3) / 1e9;
  report("copy_d2d", copy_bytes, copy_ms, 0);

  report("map_scale_bf16", 2.0 * 2 * n16,
         median_ms(ctx, reps, [&] { kernels::map(ctx, kernels::ScaleBy{0.5}, b16, a16); }), copy_gbps);
  report("map_scale_f32", 2.0 * 4 * n32,
         median_ms(ctx, reps, [&] { kernels::map(ctx, kernels::ScaleBy{0.5}, b32, a32); }), copy_gbps);
  report("convert_f32_bf16", (4.0 + 2.0) * n32,
         median_ms(ctx, reps, [&] { kernels::convert(ctx, a32, c16); }), copy_gbps);
  report("convert_f32_bf16_sr", (4.0 + 2.0) * n32,
         median_ms(ctx, reps, [&] { kernels::convert(ctx, a32, c16, Rounding::stochastic); }), copy_gbps);
  report("convert_f32_e4m3", (4.0 + 1.0) * n32,
         median_ms(ctx, reps, [&] { kernels::convert(ctx, a32, e8, Rounding::nearest_even_saturate); }), copy_gbps);
  report("uniform_f32", 4.0 * n32, median_ms(ctx, reps, [&] { kernels::uniform(ctx, b32, -1.0, 1.0); }), copy_gbps);

  auto square = a16.slice(0, 0, 8192 * 8192).reshape({8192, 8192});
  auto dense = Tensor<bf16>::empty(ctx, {8192, 8192});
  report("contiguous_bf16_T", 2.0 * 2 * 8192 * 8192,
         median_ms(ctx, reps, [&] { kernels::copy(ctx, square.transposed(), dense); }), copy_gbps);
  ctx.synchronize();
  return 0;
}
