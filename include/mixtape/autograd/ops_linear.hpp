/// @file ops_linear.hpp
/// @brief Differentiable GEMM ops through blas/: `matmul` (rank 2 or batched rank 3) and `linear`
///        (y = x W^T + b with the bias fused into the GEMM epilogue, and its gradient into the
///        weight-gradient GEMM's).
///
/// Backward passes are GEMMs too, and the tape's "first write assigns, later writes accumulate"
/// maps onto the GEMM's beta (0 or 1), so no gradient buffer is ever zeroed or added separately.
/// Weight gradients land in the parameter's sink in its gradient type (f32 under mixed policies,
/// from bf16/f16 operands with f32 accumulation).
///
/// @code
///   auto y = autograd::linear(tape, x, w, b);            // x (N, in), w (out, in), b (out)
///   auto s = autograd::matmul(tape, q, autograd::transpose(tape, k, 1, 2));  // (B, T, T)
/// @endcode
#pragma once

#include "mixtape/autograd/ops_nn.hpp"
#include "mixtape/blas/gemm.hpp"

namespace mixtape::autograd {
MIXTAPE_BACKEND_BEGIN
namespace nodes {

/// g (+)= a b through the GEMM's beta. // a (.., m, k), b (.., k, n), g (.., m, n)
template <class T, class G>
void gemm_into(const ExecutionContext& ctx, const Tensor<T>& a, const Tensor<T>& b, const Tensor<G>& g, bool accumulate) {
  blas::MatmulOptions o;
  o.beta = accumulate ? 1.0 : 0.0;
  blas::matmul(ctx, a, b, g, o);
}

template <GradElement T>
struct MatmulNode final : Node {
  SavedTensor a, b;
  MatmulNode(const Tensor<T>& a_, const Tensor<T>& b_) : a(a_), b(b_) {}
  const char* name() const noexcept override { return "matmul"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<T>(tape, *this);
    if (inputs[0] >= 0) {
      const auto bv = b.get<T>("matmul");
      write_grad<T>(tape, inputs[0], [&](const auto& g, bool acc) { gemm_into(tape.ctx(), gy, bv.transposed(-2, -1), g, acc); });
    }
    if (inputs[1] >= 0) {
      const auto av = a.get<T>("matmul");
      write_grad<T>(tape, inputs[1], [&](const auto& g, bool acc) { gemm_into(tape.ctx(), av.transposed(-2, -1), gy, g, acc); });
    }
  }
};

/// A linear layer's parameter gradients from dy (N, out) and its input x (N, in):
/// dW (out, in) = dy^T x into `w_slot`, db (out) = column sums of dy into `b_slot` (either slot
/// may be -1). The bias gradient rides on the dW GEMM as its bgrad_a epilogue (the row sums of
/// the GEMM's A = dy^T) when it is written, not accumulated, in dW's type: one pass over dy less.
template <GradElement T, GradElement B>
void linear_weight_grads(Tape& tape, std::int32_t w_slot, std::int32_t b_slot, const Tensor<T>& dy, const Tensor<T>& x) {
  bool bias_written = false;
  if (w_slot >= 0) {
    write_grad<T>(tape, w_slot, [&](const auto& g, bool acc) {
      blas::MatmulOptions o;
      o.beta = acc ? 1.0 : 0.0;
      if (b_slot >= 0) {
        const GradTarget tb = tape.grad_target(b_slot);
        if (!tb.accumulate && tb.grad.dtype() == g.dtype()) {
          o.epilogue = blas::Epilogue::bgrad_a;
          o.bias_grad = tb.grad;
          bias_written = true;
        }
      }
      blas::matmul(tape.ctx(), dy.transposed(), x, g, o);
    });
    if (bias_written) tape.wrote(b_slot);
  }
  if (b_slot >= 0 && !bias_written)
    write_grad<B>(tape, b_slot, [&](const auto& g, bool acc) { kernels::bias_grad(tape.ctx(), dy, g, acc); });
}

template <GradElement T, GradElement B>
struct LinearNode final : Node {
  SavedTensor x, w;  // x as rows (N, in), w (out, in)
  LinearNode(const Tensor<T>& x_, const Tensor<T>& w_) : x(x_), w(w_) {}
  const char* name() const noexcept override { return "linear"; }
  void backward(Tape& tape) override {
    const auto gy_full = out_grad<T>(tape, *this);
    const auto xv = x.get<T>("linear");
    const auto wv = w.get<T>("linear");
    const auto gy = gy_full.reshape({xv.size(0), wv.size(0)});  // (N, out)
    if (inputs[0] >= 0) {  // dx (N, in) = dy W
      write_grad<T>(tape, inputs[0], [&](const auto& g, bool acc) {
        gemm_into(tape.ctx(), gy, wv, g.reshape({xv.size(0), xv.size(1)}), acc);
      });
    }
    linear_weight_grads<T, B>(tape, inputs[1], input_count > 2 ? inputs[2] : -1, gy, xv);
  }
};

}  // namespace nodes

/// y = a b, for rank-2 matrices or rank-3 batches of them (both operands of one rank).
template <GradElement T>
Var<T> matmul(Tape& tape, const Var<T>& a, const Var<T>& b) {
  MIXTAPE_EXPECT(a.shape().rank() == b.shape().rank() && (a.shape().rank() == 2 || a.shape().rank() == 3), ShapeError,
                 "matmul: expected two rank-2 or two rank-3 operands, got ", a.shape(), " and ", b.shape());
  Shape shape = a.shape();
  shape[shape.rank() - 1] = b.shape()[b.shape().rank() - 1];
  auto y = autograd::detail::make_output<T>(tape, shape, a.device(), a.requires_grad() || b.requires_grad());
  blas::matmul(tape.ctx(), a.value(), b.value(), y.value());  // checks inner and batch extents
  if (y.requires_grad())
    tape.record<nodes::MatmulNode<T>>(std::array{a.slot(), b.slot()}, std::array{y.slot()}, a.value(), b.value());
  return y;
}

/// y = x W^T (+ b), over the last dimension of x, with the bias added in the GEMM's epilogue.
/// // x (..., in), w (out, in), bias (out) -> (..., out)
template <GradElement T, GradElement B = T>
Var<T> linear(Tape& tape, const Var<T>& x, const Var<T>& w, const Var<B>* bias = nullptr) {
  MIXTAPE_EXPECT(w.shape().rank() == 2 && x.shape().rank() >= 1 && x.shape()[x.shape().rank() - 1] == w.shape()[1],
                 ShapeError, "linear: expected x (..., ", w.shape().rank() == 2 ? w.shape()[1] : -1, ") for w ", w.shape(),
                 ", got x ", x.shape());
  const Tensor<T> xc = x.value().is_contiguous() ? x.value() : kernels::contiguous(tape.ctx(), x.value());
  const Tensor<T> rows = xc.reshape({-1, w.shape()[1]});  // (N, in)
  Shape shape = x.shape();
  shape[shape.rank() - 1] = w.shape()[0];
  const bool needs = x.requires_grad() || w.requires_grad() || (bias && bias->requires_grad());
  auto y = autograd::detail::make_output<T>(tape, shape, x.device(), needs);
  blas::MatmulOptions o;
  if (bias) {
    o.epilogue = blas::Epilogue::bias;
    o.bias = bias->value();
  }
  blas::matmul(tape.ctx(), rows, w.value().transposed(), y.value().reshape({rows.size(0), w.shape()[0]}), o);
  if (y.requires_grad()) {
    if (bias) {
      tape.record<nodes::LinearNode<T, B>>(std::array{x.slot(), w.slot(), bias->slot()}, std::array{y.slot()}, rows,
                                           w.value());
    } else {
      tape.record<nodes::LinearNode<T, B>>(std::array{x.slot(), w.slot()}, std::array{y.slot()}, rows, w.value());
    }
  }
  return y;
}

MIXTAPE_BACKEND_END
}  // namespace mixtape::autograd
