#include "autograd_cuda_helpers.hpp"

#include "mixtape/autograd/ops_linear.hpp"

#include "autograd_cuda_body.inc"

namespace acuda {
Grads run_graph(const mixtape::ExecutionContext& ctx, const mixtape::Tensor<float>& a, const mixtape::Tensor<float>& b) {
  return acuda_impl::run(ctx, a, b);
}
}  // namespace acuda

namespace acuda {
ChainGrads run_chain(const mixtape::ExecutionContext& ctx, const mixtape::Tensor<float>& table,
                     const mixtape::Tensor<float>& w1, const mixtape::Tensor<float>& b1, const mixtape::Tensor<float>& w2,
                     const mixtape::Tensor<std::int32_t>& ids, const mixtape::Tensor<std::int32_t>& targets) {
  return acuda_impl::chain(ctx, table, w1, b1, w2, ids, targets);
}
}  // namespace acuda
