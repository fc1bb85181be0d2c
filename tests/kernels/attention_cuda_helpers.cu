// CUDA instantiations of the fused attention the GPU test calls (see attention_cuda_helpers.hpp).
#include "attention_cuda_helpers.hpp"

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
template void forward(const ExecutionContext&, const Tensor<float>&, std::int64_t, const Tensor<float>&,
                      const Tensor<float>&);  // throws DTypeError: the error test

}  // namespace kattn
