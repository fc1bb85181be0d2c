// A bf16-mixed embedding -> LayerNorm -> Linear -> tied-head chain, run on the context's device with
// the given parameter values (copied into a fresh store), returning loss and parameter gradients.
#pragma once

#include <vector>

#include "mixtape/core/tensor.hpp"

namespace ncuda {
struct Result {
  float loss = 0;
  std::vector<std::vector<float>> grads;  // per parameter, in registration order (f32 gradients)
};
/// `flat_weights`: the f32 weight buffer of a host store built the same way (copied in first).
Result run_chain(const mixtape::ExecutionContext& ctx, const std::vector<float>& flat_weights,
                 const std::vector<std::int32_t>& ids, const std::vector<std::int32_t>& targets);
}  // namespace ncuda
