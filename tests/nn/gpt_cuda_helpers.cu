#include "gpt_cuda_helpers.hpp"

#include "gpt_cuda_body.inc"

namespace gcuda {
Result run_gpt_cuda(const mixtape::ExecutionContext& ctx, const std::string& precision,
                    const std::vector<std::vector<double>>& weights, const std::vector<std::int32_t>& ids,
                    const std::vector<std::int32_t>& targets) {
  return gcuda_impl::run_named(ctx, precision, weights, ids, targets);
}

Training train_gpt_cuda(const mixtape::ExecutionContext& ctx, const std::string& precision, int steps, bool cuda_graph,
                        const std::vector<std::vector<std::int32_t>>& ids,
                        const std::vector<std::vector<std::int32_t>>& targets) {
  // Two presets, not six: the graph's concern is what changes between steps on the device (lr,
  // step, AdamW's t; the loss scale and growth tracker under 16-mixed), not the element types.
  if (precision == "bf16-mixed")
    return gcuda_impl::train<mixtape::precision::bf16_mixed>(ctx, steps, cuda_graph, ids, targets);
  if (precision == "16-mixed")
    return gcuda_impl::train<mixtape::precision::f16_mixed>(ctx, steps, cuda_graph, ids, targets);
  MIXTAPE_EXPECT(false, mixtape::ValueError, "train_gpt_cuda: expected bf16-mixed or 16-mixed, got '", precision, "'");
  return {};
}
}  // namespace gcuda
