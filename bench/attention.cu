// bench_attention: the fused causal attention kernels (kernels/attention.hpp) at a GPT's shape,
// forward and backward separately, by CUDA events (3 warm-ups, the median of `reps` runs).
//
// FLOPs are the causal ones (the lower triangle only): forward 2 B H T^2 D (S = Q K^T and O = P V,
// half of each), backward 2.5 times that (dV, dP, dQ, dK; the convention of the flash-attention
// papers, though these kernels recompute S twice). Prints one JSON line per pass:
// {"case", "b", "t", "heads", "head_dim", "median_ms", "tflops"}.
//
// Usage: bench_attention [B T heads head_dim reps]   (default: GPT-2 small, 16 1024 12 64 20)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "mixtape/kernels/attention.hpp"
#include "mixtape/kernels/random.hpp"

using namespace mixtape;

namespace {

template <class Body>
double median_ms(const ExecutionContext& ctx, int reps, Body&& body) {
  cudaEvent_t start = nullptr, stop = nullptr;
  MIXTAPE_CUDA_CHECK(cudaEventCreate(&start));
  MIXTAPE_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) body();
  ctx.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    MIXTAPE_CUDA_CHECK(cudaEventRecord(start, ctx.stream()));
    body();
    MIXTAPE_CUDA_CHECK(cudaEventRecord(stop, ctx.stream()));
    MIXTAPE_CUDA_CHECK(cudaEventSynchronize(stop));
    float m = 0;
    MIXTAPE_CUDA_CHECK(cudaEventElapsedTime(&m, start, stop));
    ms.push_back(m);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::int64_t b = argc > 1 ? std::atoll(argv[1]) : 16, t = argc > 2 ? std::atoll(argv[2]) : 1024;
  const std::int64_t h = argc > 3 ? std::atoll(argv[3]) : 12, d = argc > 4 ? std::atoll(argv[4]) : 64;
  const int reps = argc > 5 ? std::atoi(argv[5]) : 20;
  try {
    auto ctx = ExecutionContext::cuda(0);
    const std::int64_t c = h * d;
    auto qkv = Tensor<bf16>::empty(ctx, {b, t, 3 * c}), y = Tensor<bf16>::empty(ctx, {b, t, c});
    auto dy = Tensor<bf16>::empty(ctx, {b, t, c}), dqkv = Tensor<bf16>::empty(ctx, {b, t, 3 * c});
    auto lse = Tensor<float>::empty(ctx, {b, h, t});
    kernels::normal(ctx, qkv, 0.0, 1.0);  // fresh N(0, 1) operands: never zeros
    kernels::normal(ctx, dy, 0.0, 1.0);
    const double fwd_flops = 2.0 * static_cast<double>(b * h * d) * static_cast<double>(t) * static_cast<double>(t);
    const double f = median_ms(ctx, reps, [&] { kernels::causal_attention_forward(ctx, qkv, h, y, lse); });
    const double g = median_ms(ctx, reps, [&] { kernels::causal_attention_backward(ctx, qkv, y, dy, lse, h, dqkv, false); });
    for (auto [name, ms, flops] : {std::tuple{"forward", f, fwd_flops}, std::tuple{"backward", g, 2.5 * fwd_flops}})
      std::printf("{\"case\": \"attention_%s_bf16\", \"b\": %lld, \"t\": %lld, \"heads\": %lld, \"head_dim\": %lld, "
                  "\"median_ms\": %.4f, \"tflops\": %.1f}\n",
                  name, static_cast<long long>(b), static_cast<long long>(t), static_cast<long long>(h),
                  static_cast<long long>(d), ms, flops / ms / 1e9);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_attention: %s\n", e.what());
    return 2;
  }
}
