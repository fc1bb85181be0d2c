#include "autograd_cuda_helpers.hpp"

#include "mixtape/autograd/ops_basic.hpp"

#include "autograd_cuda_body.inc"

namespace acuda {
Grads run_graph(const mixtape::ExecutionContext& ctx, const mixtape::Tensor<float>& a, const mixtape::Tensor<float>& b) {
  return acuda_impl::run(ctx, a, b);
}
}  // namespace acuda
