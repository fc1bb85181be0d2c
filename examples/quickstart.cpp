// The README's example, built so it stays true.
#include <mixtape/mixtape.hpp>   // in a .cu file for CUDA kernels, a .cpp file for the host
#include <cstdio>
namespace mt = mixtape;

int main() {
  using P = mt::precision::bf16_mixed;                 // or dispatch from "--precision bf16-mixed"
  using T = mt::policy_traits<P>;                      // T::param_type = f32, T::gemm_compute_type = bf16
  auto ctx = mt::ExecutionContext::on(mt::default_device());
  auto w = mt::Tensor<typename T::param_type>::empty(ctx, {768, 3072}, mt::MemoryRole::weights);
  mt::kernels::normal(ctx, w, 0.0, 0.02);              // Philox, same bits on host and GPU
  auto w16 = mt::Tensor<typename T::gemm_compute_type>::empty(ctx, w.shape(), mt::MemoryRole::weights);
  mt::kernels::convert(ctx, w, w16, mt::Rounding::stochastic);
  auto amax = mt::Tensor<float>::empty(ctx, {1});
  mt::kernels::amax(ctx, w16, amax);                   // stays on the device: no host sync
  std::printf("amax %g, AdamW bytes/param %g\n", mt::kernels::item(ctx, amax), mt::memory_model<P>::adamw_total);
}
