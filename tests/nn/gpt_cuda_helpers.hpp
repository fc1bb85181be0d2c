// The GPT under a named policy on a given context: loss and parameter gradients for fixed weights
// and ids (the .cu helper runs it on CUDA; the host test includes gpt_cuda_body.inc for the host).
#pragma once

#include <string>
#include <vector>

#include "mixtape/core/execution_context.hpp"

namespace gcuda {
struct Result {
  double loss = 0;
  std::vector<std::vector<double>> grads;  // per parameter, in registration order
};
/// `weights`: one vector per store buffer holding weights (weight, compute, master roles), in store
/// order, as `host_weights` returned them; ids and targets (B, T) row-major.
Result run_gpt_cuda(const mixtape::ExecutionContext& ctx, const std::string& precision,
                    const std::vector<std::vector<double>>& weights, const std::vector<std::int32_t>& ids,
                    const std::vector<std::int32_t>& targets);
}  // namespace gcuda
