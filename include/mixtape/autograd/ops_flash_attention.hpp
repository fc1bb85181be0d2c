/// @file ops_flash_attention.hpp
/// @brief The fused (flash-attention) path of autograd::causal_self_attention: one forward kernel
///        reading q, k, v in place from the (B, T, 3C) projection, one backward recomputing the
///        probabilities from the saved log-sum-exp (kernels/attention.hpp).
///
/// The node saves qkv, y and lse (B, H, T): O(B T C) memory per layer instead of the reference
/// path's (B*H, T, T) probabilities, with the same rounding points (ops_attention.hpp).
#pragma once

#include <cstdint>
#include <type_traits>

#include "mixtape/autograd/ops_nn.hpp"
#include "mixtape/kernels/attention.hpp"

namespace mixtape::autograd {

namespace detail {

/// grad = g + grad (in place): accumulating a contribution of another type.
struct AccumulateInto {
  template <class X, class G>
  MIXTAPE_HOST_DEVICE kernels::compute_t<X, G> operator()(X x, G g) const noexcept {
    using A = kernels::compute_t<X, G>;
    return kernels::detail::to_acc<A>(x) + kernels::detail::to_acc<A>(g);
  }
};

}  // namespace detail

MIXTAPE_BACKEND_BEGIN
namespace nodes {

template <GradElement T>
struct FlashAttentionNode final : Node {
  SavedTensor qkv, y, lse;  // (B, T, 3C), (B, T, C), (B, H, T) in compute_t<T>
  std::int64_t heads;
  FlashAttentionNode(const Tensor<T>& qkv_, const Tensor<T>& y_, const Tensor<kernels::compute_t<T>>& lse_,
                     std::int64_t h)
      : qkv(qkv_), y(y_), lse(lse_), heads(h) {}
  const char* name() const noexcept override { return "causal_self_attention"; }

  void backward(Tape& tape) override {
    using S = kernels::compute_t<T>;
    const ExecutionContext& ctx = tape.ctx();
    const auto x = qkv.get<T>(name()), yv = y.get<T>(name());
    const auto lv = lse.get<S>(name());
    const auto gy = out_grad<T>(tape, *this);  // (B, T, C), tape-owned: dense
    write_grad<T>(tape, inputs[0], [&]<class G>(const Tensor<G>& g, bool acc) {
      // The CUDA kernels write T or f32 gradients into dense, 16-byte aligned storage; anything
      // else goes through a T buffer.
      const bool direct = g.is_contiguous() && (!ctx.is_cuda() || ((std::is_same_v<G, T> || std::is_same_v<G, float>) &&
                                                                  reinterpret_cast<std::uintptr_t>(g.data()) % 16 == 0));
      if (direct) {
        kernels::causal_attention_backward(ctx, x, yv, gy, lv, heads, g, acc);
        return;
      }
      auto tmp = Tensor<T>::empty(ctx, x.shape(), MemoryRole::workspace);  // (B, T, 3C)
      kernels::causal_attention_backward(ctx, x, yv, gy, lv, heads, tmp, false);
      if (acc) {
        kernels::map(ctx, autograd::detail::AccumulateInto{}, g, tmp, g);
      } else {
        kernels::map(ctx, kernels::Identity{}, g, tmp);
      }
    });
  }
};

/// The fused path of causal_self_attention; `x` is qkv's value, made dense by the caller.
/// // qkv (B, T, 3C) -> y (B, T, C)
template <GradElement T>
Var<T> flash_self_attention(Tape& tape, const Var<T>& qkv, const Tensor<T>& x, std::int64_t heads) {
  using S = kernels::compute_t<T>;
  const ExecutionContext& ctx = tape.ctx();
  const std::int64_t b = x.size(0), t = x.size(1), c = x.size(2) / 3;
  auto y = autograd::detail::make_output<T>(tape, {b, t, c}, qkv.device(), qkv.requires_grad());
  auto lse = Tensor<S>::empty(ctx, {b, heads, t}, MemoryRole::activations);
  kernels::causal_attention_forward(ctx, x, heads, y.value(), lse);
  if (y.requires_grad())
    tape.record<nodes::FlashAttentionNode<T>>(std::array{qkv.slot()}, std::array{y.slot()}, x, y.value(), lse, heads);
  return y;
}

}  // namespace nodes
MIXTAPE_BACKEND_END
}  // namespace mixtape::autograd
