// A small graph run in a .cu unit (CUDA kernels), returning its gradients for the .cpp test.
#pragma once

#include <vector>

#include "mixtape/core/tensor.hpp"

namespace acuda {
struct Grads {
  std::vector<float> ga, gb;
  float loss = 0;
};
/// loss = sum(concat(split(a)[1], b) * concat(...)) + mean(transpose(a) reshaped), on ctx's device.
Grads run_graph(const mixtape::ExecutionContext& ctx, const mixtape::Tensor<float>& a, const mixtape::Tensor<float>& b);
}  // namespace acuda

namespace acuda {
/// A small language-model chain in f32: embedding -> LayerNorm -> linear+bias -> GELU -> linear ->
/// cross-entropy; returns the loss and the gradients of the table, gamma, W1 and b1.
struct ChainGrads {
  float loss = 0;
  std::vector<float> d_table, d_gamma, d_w1, d_b1;
};
ChainGrads run_chain(const mixtape::ExecutionContext& ctx, const mixtape::Tensor<float>& table,
                     const mixtape::Tensor<float>& w1, const mixtape::Tensor<float>& b1, const mixtape::Tensor<float>& w2,
                     const mixtape::Tensor<std::int32_t>& ids, const mixtape::Tensor<std::int32_t>& targets);
}  // namespace acuda
