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
