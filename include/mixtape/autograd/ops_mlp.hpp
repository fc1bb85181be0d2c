/// @file ops_mlp.hpp
/// @brief `linear_gelu_linear`: the transformer MLP y = gelu(x W1^T + b1) W2^T + b2 as one node whose
///        GELU lives in GEMM epilogues (TransformerEngine's LayerNormMLP route): no element-wise
///        pass over the (N, hidden) activations in either direction.
///
///   forward   h, pre = GEMM(x, W1^T) with bias_gelu_aux   (h = gelu(v + b1), pre = v + b1)
///             y      = GEMM(h, W2^T) with bias
///   backward  dW2 (+ db2) = GEMM(dy^T, h) with bgrad_a    (the bias gradient in the same pass)
///             dpre        = GEMM(dy, W2) with dgelu        (reads pre: gelu' applied on the way out)
///             dW1 (+ db1) = GEMM(dpre^T, x) with bgrad_a,  dx = GEMM(dpre, W1)
///
/// Rounding points differ from `gelu(linear(...))` by one rounding each way, both in the direction
/// of more precision: the GELU is evaluated on the GEMM's f32 accumulator plus bias (the unfused
/// path first rounds the pre-activation to T), and gelu' multiplies the f32 accumulator of dy W2
/// (the unfused path first rounds it to T). pre is still stored in T (what the backward reads).
/// Saved for backward: x, W1, pre, h, W2, as the unfused ops save (x, W1), pre and (h, W2).
///
/// @code
///   auto y = autograd::linear_gelu_linear(tape, x, w1, b1, w2, b2);  // x (N, C) -> (N, C_out)
/// @endcode
#pragma once

#include "mixtape/autograd/ops_linear.hpp"

namespace mixtape::autograd {
MIXTAPE_BACKEND_BEGIN
namespace nodes {

template <GradElement T, GradElement B>
struct LinearGeluLinearNode final : Node {
  SavedTensor x, w1, pre, h, w2;  // x (N, C), w1 (H, C), pre and h (N, H), w2 (C_out, H)
  LinearGeluLinearNode(const Tensor<T>& x_, const Tensor<T>& w1_, const Tensor<T>& pre_, const Tensor<T>& h_,
                       const Tensor<T>& w2_)
      : x(x_), w1(w1_), pre(pre_), h(h_), w2(w2_) {}
  const char* name() const noexcept override { return "linear_gelu_linear"; }

  void backward(Tape& tape) override {
    const ExecutionContext& ctx = tape.ctx();
    const auto xv = x.get<T>(name()), w1v = w1.get<T>(name()), prev = pre.get<T>(name()), hv = h.get<T>(name()),
               w2v = w2.get<T>(name());
    const auto gy = out_grad<T>(tape, *this).reshape({xv.size(0), w2v.size(0)});  // (N, C_out)
    linear_weight_grads<T, B>(tape, inputs[3], inputs[4], gy, hv);
    if (inputs[0] < 0 && inputs[1] < 0 && inputs[2] < 0) return;
    auto dpre = Tensor<T>::empty(ctx, prev.shape(), MemoryRole::activations);  // (N, H)
    blas::MatmulOptions o;
    o.epilogue = blas::Epilogue::dgelu;
    o.aux = prev;
    blas::matmul(ctx, gy, w2v, dpre, o);
    linear_weight_grads<T, B>(tape, inputs[1], inputs[2], dpre, xv);
    write_grad<T>(tape, inputs[0], [&](const auto& g, bool acc) {
      gemm_into(ctx, dpre, w1v, g.reshape({xv.size(0), xv.size(1)}), acc);
    });
  }
};

}  // namespace nodes

/// y = gelu(x W1^T + b1) W2^T + b2 (tanh GELU) over the last dimension of x, GELU in the GEMMs'
/// epilogues. // x (..., C), w1 (H, C), b1 (H), w2 (C_out, H), b2 (C_out) -> (..., C_out)
/// @throws ShapeError for operands whose shapes do not chain
template <GradElement T, GradElement B = T>
Var<T> linear_gelu_linear(Tape& tape, const Var<T>& x, const Var<T>& w1, const Var<B>& b1, const Var<T>& w2,
                          const Var<B>& b2) {
  const auto& xs = x.shape();
  MIXTAPE_EXPECT(w1.shape().rank() == 2 && w2.shape().rank() == 2 && xs.rank() >= 1 &&
                     xs[xs.rank() - 1] == w1.shape()[1] && w2.shape()[1] == w1.shape()[0] &&
                     b1.shape() == Shape{w1.shape()[0]} && b2.shape() == Shape{w2.shape()[0]},
                 ShapeError, "linear_gelu_linear: expected x (..., C), w1 (H, C), b1 (H), w2 (C_out, H), b2 (C_out), got x ",
                 xs, ", w1 ", w1.shape(), ", b1 ", b1.shape(), ", w2 ", w2.shape(), ", b2 ", b2.shape());
  const ExecutionContext& ctx = tape.ctx();
  const Tensor<T> xc = x.value().is_contiguous() ? x.value() : kernels::contiguous(ctx, x.value());
  const std::int64_t hidden = w1.shape()[0], out = w2.shape()[0];
  const Tensor<T> rows = xc.reshape({-1, w1.shape()[1]});  // (N, C)
  const std::int64_t n = rows.size(0);
  const bool needs = x.requires_grad() || w1.requires_grad() || b1.requires_grad() || w2.requires_grad() ||
                     b2.requires_grad();
  auto h = Tensor<T>::empty(ctx, {n, hidden}, MemoryRole::activations);
  blas::MatmulOptions o1;
  o1.bias = b1.value();
  Tensor<T> pre;
  if (needs) {
    pre = Tensor<T>::empty(ctx, {n, hidden}, MemoryRole::activations);
    o1.epilogue = blas::Epilogue::bias_gelu_aux;
    o1.aux = pre;
  } else {
    o1.epilogue = blas::Epilogue::bias_gelu;
  }
  blas::matmul(ctx, rows, w1.value().transposed(), h, o1);
  Shape shape = xs;
  shape[shape.rank() - 1] = out;
  auto y = autograd::detail::make_output<T>(tape, shape, x.device(), needs);
  blas::MatmulOptions o2;
  o2.epilogue = blas::Epilogue::bias;
  o2.bias = b2.value();
  blas::matmul(ctx, h, w2.value().transposed(), y.value().reshape({n, out}), o2);
  if (y.requires_grad())
    tape.record<nodes::LinearGeluLinearNode<T, B>>(std::array{x.slot(), w1.slot(), b1.slot(), w2.slot(), b2.slot()},
                                                   std::array{y.slot()}, rows, w1.value(), pre, h, w2.value());
  return y;
}

MIXTAPE_BACKEND_END
}  // namespace mixtape::autograd
