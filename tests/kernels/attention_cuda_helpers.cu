// CUDA instantiations of the fused attention the GPU test calls (see attention_cuda_helpers.hpp).
#include "attention_cuda_helpers.hpp"

#include <cmath>

#include "mixtape/autograd/ops_attention.hpp"
#include "mixtape/autograd/ops_basic.hpp"
#include "mixtape/core/transfer.hpp"
#include "mixtape/kernels/attention.hpp"

namespace kattn {

template <class T>
void forward(const ExecutionContext& ctx, const Tensor<T>& qkv, std::int64_t heads, const Tensor<T>& y,
             const Tensor<float>& lse) {
  kernels::causal_attention_forward(ctx, qkv, heads, y, lse);
}
template <class T, class G>
void backward(const ExecutionContext& ctx, const Tensor<T>& qkv, const Tensor<T>& y, const Tensor<T>& dy,
              const Tensor<float>& lse, std::int64_t heads, const Tensor<G>& dqkv, bool accumulate) {
  kernels::causal_attention_backward(ctx, qkv, y, dy, lse, heads, dqkv, accumulate);
}
void backward_in_groups(const ExecutionContext& ctx, const Tensor<bf16>& qkv, const Tensor<bf16>& y,
                        const Tensor<bf16>& dy, const Tensor<float>& lse, std::int64_t heads,
                        const Tensor<bf16>& dqkv, std::int64_t group_heads) {
  namespace kd = kernels::detail;
  const kd::AttentionDims d = kd::attention_dims("backward_in_groups", qkv, heads);
  auto dvec = Tensor<float>::empty(ctx, lse.shape());
  auto ds = Tensor<bf16>::empty(ctx, Shape{group_heads, kd::gpu::attention_ds_tiles(d.seq), 64, 64});
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d.head_dim)));
  kd::gpu::causal_attention_backward<bf16>(ctx, d, qkv.data(), y.data(), dy.data(), lse.data(), dvec.data(), ds.data(),
                                           group_heads, dqkv.data(), scale, false);
}
template <class T>
void autograd_attention(const ExecutionContext& ctx, const Tensor<T>& qkv, const Tensor<T>& dy, std::int64_t heads,
                        const Tensor<T>& y_out, const Tensor<T>& dqkv_out) {
  const ExecutionContext host = ExecutionContext::host();
  autograd::Tape tape(ctx);
  auto x = autograd::leaf(tape, to_device(ctx, qkv, ctx.device()));
  auto out = autograd::causal_self_attention(tape, x, heads);
  const auto w = to_device(ctx, dy, ctx.device());
  autograd::backward(tape, autograd::sum(tape, autograd::mul(tape, out, autograd::constant(w))));
  kernels::copy(host, to_device(ctx, out.value(), Device::cpu()), y_out);
  kernels::copy(host, to_device(ctx, autograd::grad(tape, x), Device::cpu()), dqkv_out);
}

#define KATTN(T)                                                                                                 \
  template void forward(const ExecutionContext&, const Tensor<T>&, std::int64_t, const Tensor<T>&,             \
                        const Tensor<float>&);                                                                 \
  template void backward(const ExecutionContext&, const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,        \
                         const Tensor<float>&, std::int64_t, const Tensor<T>&, bool);                          \
  template void backward(const ExecutionContext&, const Tensor<T>&, const Tensor<T>&, const Tensor<T>&,        \
                         const Tensor<float>&, std::int64_t, const Tensor<float>&, bool);                      \
  template void autograd_attention(const ExecutionContext&, const Tensor<T>&, const Tensor<T>&, std::int64_t,  \
                                   const Tensor<T>&, const Tensor<T>&)
KATTN(bf16);
KATTN(f16);
#undef KATTN
// f32 (TF32 on a context that allows it): the gradient type is the operand type.
template void forward(const ExecutionContext&, const Tensor<float>&, std::int64_t, const Tensor<float>&,
                      const Tensor<float>&);
template void backward(const ExecutionContext&, const Tensor<float>&, const Tensor<float>&, const Tensor<float>&,
                       const Tensor<float>&, std::int64_t, const Tensor<float>&, bool);
template void autograd_attention(const ExecutionContext&, const Tensor<float>&, const Tensor<float>&, std::int64_t,
                                 const Tensor<float>&, const Tensor<float>&);

}  // namespace kattn
