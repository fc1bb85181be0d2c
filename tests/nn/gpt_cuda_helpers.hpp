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

/// What `train_gpt_cuda` saw: the loss of every step (the StepScalars' loss, read after the step)
/// and, after the last step, every store buffer's bits.
struct Training {
  std::vector<double> losses;
  std::vector<std::vector<double>> buffers;
  bool graphed = false;
  std::size_t graph_nodes = 0;
};
/// `steps` AdamW steps of the GPT under "bf16-mixed" or "16-mixed" (its dynamic loss scaler too)
/// through optim::TrainStep, from the seeded initialisation, the batch of step s being
/// (ids[s], targets[s]) copied into the same input tensors; with `cuda_graph`, step 1 is eager,
/// step 2 captured and the rest replayed.
Training train_gpt_cuda(const mixtape::ExecutionContext& ctx, const std::string& precision, int steps, bool cuda_graph,
                        const std::vector<std::vector<std::int32_t>>& ids,
                        const std::vector<std::vector<std::int32_t>>& targets);
}  // namespace gcuda
