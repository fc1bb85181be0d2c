// The interface between the GPU attention test bodies (attention_cuda.cpp, host compiler: its
// kernels:: calls are the host backend) and the CUDA backend (attention_cuda_helpers.cu, nvcc).
#pragma once

#include <cstdint>

#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/numeric/numeric.hpp"

namespace kattn {

using namespace mixtape;

// kernels::causal_attention_forward / _backward on a CUDA context (T: f16, bf16, f32; G: T or f32).
template <class T>
void forward(const ExecutionContext& ctx, const Tensor<T>& qkv, std::int64_t heads, const Tensor<T>& y,
             const Tensor<float>& lse);
template <class T, class G>
void backward(const ExecutionContext& ctx, const Tensor<T>& qkv, const Tensor<T>& y, const Tensor<T>& dy,
              const Tensor<float>& lse, std::int64_t heads, const Tensor<G>& dqkv, bool accumulate);
// The CUDA backward (d(qkv) written, bf16) with its dS^T workspace split into groups of
// `group_heads` heads, as kernels::causal_attention_backward does when the heads do not fit.
void backward_in_groups(const ExecutionContext& ctx, const Tensor<bf16>& qkv, const Tensor<bf16>& y,
                        const Tensor<bf16>& dy, const Tensor<float>& lse, std::int64_t heads,
                        const Tensor<bf16>& dqkv, std::int64_t group_heads);
// The autograd op on a CUDA context with AttentionImpl::automatic; returns y and d(qkv) for the
// output gradient dy (host tensors in, host tensors out) and whether it took the fused path.
template <class T>
void autograd_attention(const ExecutionContext& ctx, const Tensor<T>& qkv, const Tensor<T>& dy, std::int64_t heads,
                        const Tensor<T>& y_out, const Tensor<T>& dqkv_out);

}  // namespace kattn
