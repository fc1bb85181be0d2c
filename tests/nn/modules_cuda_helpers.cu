#include "modules_cuda_helpers.hpp"

#include "modules_cuda_body.inc"

namespace ncuda {
Result run_chain(const mixtape::ExecutionContext& ctx, const std::vector<float>& flat_weights,
                 const std::vector<std::int32_t>& ids, const std::vector<std::int32_t>& targets) {
  return ncuda_impl::run(ctx, flat_weights, ids, targets);
}
}  // namespace ncuda
