#include "gpt_cuda_helpers.hpp"

#include "gpt_cuda_body.inc"

namespace gcuda {
Result run_gpt_cuda(const mixtape::ExecutionContext& ctx, const std::string& precision,
                    const std::vector<std::vector<double>>& weights, const std::vector<std::int32_t>& ids,
                    const std::vector<std::int32_t>& targets) {
  return gcuda_impl::run_named(ctx, precision, weights, ids, targets);
}
}  // namespace gcuda
