#define UNIT_PREFIX cuda_unit
#include "unit_body.inc"

namespace units {
double cuda_unit_fill_device(float value) {
  auto ctx = mixtape::ExecutionContext::cuda(0);
  auto t = mixtape::Tensor<float>::empty(ctx, {3, 5});
  mixtape::kernels::fill(ctx, t, value);
  const auto v = mixtape::to_vector(ctx, t);
  return std::accumulate(v.begin(), v.end(), 0.0);
}
}  // namespace units
