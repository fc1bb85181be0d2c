/// @file ops_nn.hpp
/// @brief Differentiable model ops on top of the model kernels: bias and positional adds, GELU
///        (tanh), LayerNorm (alone or after a residual add), softmax (scaled, optionally causal),
///        embedding lookup, cross-entropy with integer targets (fused log-softmax, mean over rows)
///        and mean-squared error.
///
/// Precision follows the arguments' types, so a module picks them from its policy: e.g. a
/// bf16-mixed LayerNorm reads an f32 residual and writes its output in bf16 with f32 statistics,
/// and the loss is always f32 (f64 for f64 logits). A gradient flows into a parameter's sink in the
/// policy's gradient type: the value's own type, or f32 (mixed policies' f32 gradients of narrower
/// compute copies); other combinations are refused, which keeps the kernel instantiations bounded.
///
/// @code
///   auto h = autograd::layer_norm(tape, x, gamma, beta, 1e-5);          // (B*T, C)
///   auto loss = autograd::cross_entropy(tape, logits, targets);          // (1) f32
/// @endcode
#pragma once

#include "mixtape/autograd/ops_basic.hpp"
#include "mixtape/kernels/activation.hpp"
#include "mixtape/kernels/broadcast.hpp"
#include "mixtape/kernels/embedding.hpp"
#include "mixtape/kernels/layernorm.hpp"
#include "mixtape/kernels/loss.hpp"
#include "mixtape/kernels/softmax.hpp"

namespace mixtape::autograd {

namespace detail {
/// Calls `f.template operator()<G>()` for a gradient stored as the value type `T` or as f32.
template <class T, class F>
void visit_value_or_f32(DType dtype, F&& f) {
  if (dtype == dtype_v<T>) {
    f.template operator()<T>();
  } else if (dtype == DType::f32) {
    f.template operator()<float>();
  } else {
    MIXTAPE_THROW(DTypeError, "autograd: a gradient of a ", dtype_v<T>, " value must be ", dtype_v<T>,
                  " or f32, got ", dtype);
  }
}
}  // namespace detail

MIXTAPE_BACKEND_BEGIN
namespace nodes {

/// Runs `write(grad, accumulate)` on the gradient target of `slot` (value type T or f32).
template <class T, class F>
void write_grad(Tape& tape, std::int32_t slot, F&& write) {
  if (slot < 0) return;
  const GradTarget t = tape.grad_target(slot);
  autograd::detail::visit_value_or_f32<T>(t.grad.dtype(), [&]<class G>() { write(t.grad.as<G>(), t.accumulate); });
  tape.wrote(slot);
}

template <GradElement X, GradElement B>
struct AddBiasNode final : Node {
  const char* name() const noexcept override { return "add_bias"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<X>(tape, *this);
    if (!tape.pass_grad(outputs[0], inputs[0])) emit(tape, inputs[0], kernels::Identity{}, gy);
    write_grad<B>(tape, inputs[1], [&](const auto& g, bool acc) { kernels::bias_grad(tape.ctx(), gy, g, acc); });
  }
};

template <GradElement X, GradElement P>
struct AddPositionalNode final : Node {
  const char* name() const noexcept override { return "add_positional"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<X>(tape, *this);
    if (!tape.pass_grad(outputs[0], inputs[0])) emit(tape, inputs[0], kernels::Identity{}, gy);
    write_grad<P>(tape, inputs[1], [&](const auto& g, bool acc) {
      const std::int64_t t = gy.size(-2);
      kernels::positional_grad(tape.ctx(), gy, g.slice(0, 0, t), acc);
      // Rows past the sequence got no contribution; on the first write they still owe their zeros.
      if (!acc && g.size(0) > t) kernels::fill(tape.ctx(), g.slice(0, t, g.size(0) - t), 0.0);
    });
  }
};

template <GradElement In, GradElement Out>
struct GeluNode final : Node {
  SavedTensor x;
  explicit GeluNode(const Tensor<In>& x_) : x(x_) {}
  const char* name() const noexcept override { return "gelu"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<Out>(tape, *this);
    write_grad<In>(tape, inputs[0], [&](const auto& g, bool acc) {
      kernels::gelu_backward(tape.ctx(), x.get<In>("gelu"), gy, g, acc);
    });
  }
};

/// A LayerNorm backward's parameter gradients: calls f(dgamma, dbeta, accumulate) with both in
/// their common type (W or f32; scratch when the parameters are frozen). The caller marks the
/// slots written.
template <class W, class F>
void with_layer_norm_param_grads(Tape& tape, int gamma_slot, int beta_slot, const Shape& shape, const char* op,
                                 F&& f) {
  const GradTarget tg = gamma_slot >= 0 ? tape.grad_target(gamma_slot) : GradTarget{};
  const GradTarget tb = beta_slot >= 0 ? tape.grad_target(beta_slot) : GradTarget{};
  MIXTAPE_EXPECT(tg.grad.defined() == tb.grad.defined() && (!tg.grad.defined() || tg.accumulate == tb.accumulate),
                 ValueError, op, ": gamma and beta must both be trained (or both frozen) together");
  autograd::detail::visit_value_or_f32<W>(tg.grad.defined() ? tg.grad.dtype() : dtype_v<W>, [&]<class DW>() {
    const Tensor<DW> dg = tg.grad.defined() ? tg.grad.as<DW>() : Tensor<DW>::empty(tape.ctx(), shape);
    const Tensor<DW> db = tb.grad.defined() ? tb.grad.as<DW>() : Tensor<DW>::empty(tape.ctx(), shape);
    f(dg, db, tg.accumulate);
  });
}

template <GradElement In, GradElement W, GradElement Out, class S>
struct LayerNormNode final : Node {
  SavedTensor x, gamma;
  Tensor<S> mean, rstd;
  LayerNormNode(const Tensor<In>& x_, const Tensor<W>& g_, Tensor<S> m, Tensor<S> r)
      : x(x_), gamma(g_), mean(std::move(m)), rstd(std::move(r)) {}
  const char* name() const noexcept override { return "layer_norm"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<Out>(tape, *this);
    const auto xv = x.get<In>("layer_norm");
    const auto gv = gamma.get<W>("layer_norm");
    // dx goes to a tape-owned slot (type In); dgamma and dbeta share one type (the parameters').
    const GradTarget tx = inputs[0] >= 0 ? tape.grad_target(inputs[0]) : GradTarget{};
    const Tensor<In> dx = tx.grad.defined() ? tx.grad.as<In>() : Tensor<In>::empty(tape.ctx(), xv.shape());
    with_layer_norm_param_grads<W>(tape, inputs[1], inputs[2], gv.shape(), "layer_norm",
                                   [&](const auto& dg, const auto& db, bool acc_params) {
                                     kernels::layernorm_backward(tape.ctx(), xv, gv, mean, rstd, gy, dx, dg, db,
                                                                 tx.accumulate, acc_params);
                                   });
    for (int i = 0; i < 3; ++i)
      if (inputs[i] >= 0) tape.wrote(inputs[i]);
  }
};

/// add_layer_norm's backward: the LayerNorm's and then the add's, with the branch's gradient (the
/// sum's gradient rounded to R) written by the LayerNorm's dx kernel as it writes the sum's, where
/// the branch has no gradient yet; the same bits as AddNode after LayerNormNode.
/// Inputs: x, r, gamma, beta. Outputs: sum, norm.
template <GradElement X, GradElement R, GradElement W, GradElement Out, class S>
struct AddLayerNormNode final : Node {
  SavedTensor sum, gamma;
  Tensor<S> mean, rstd;
  AddLayerNormNode(const Tensor<X>& h, const Tensor<W>& g, Tensor<S> m, Tensor<S> r)
      : sum(h), gamma(g), mean(std::move(m)), rstd(std::move(r)) {}
  const char* name() const noexcept override { return "add_layer_norm"; }
  void backward(Tape& tape) override {
    const TensorRef gy_ref = tape.grad_ref(outputs[1]);
    bool branch_done = false;
    if (gy_ref.defined()) {
      const auto gy = gy_ref.as<Out>();
      const auto hv = sum.get<X>("add_layer_norm");
      const auto gv = gamma.get<W>("add_layer_norm");
      // The sum's gradient: the downstream one, accumulated into in place (as LayerNormNode would
      // into its input's), or a fresh buffer; scratch when neither x nor r requires grad.
      const GradTarget th = outputs[0] >= 0 ? tape.grad_target(outputs[0])
                                            : GradTarget{Tensor<X>::empty(tape.ctx(), hv.shape()), false};
      const Tensor<X> dh = th.grad.as<X>();
      // The branch's gradient rides along when it would be a fresh R buffer.
      GradTarget tr{};
      if (inputs[1] >= 0 && inputs[1] != inputs[0]) {
        tr = tape.grad_target(inputs[1]);
        branch_done = !tr.accumulate && tr.grad.dtype() == dtype_v<R>;
      }
      with_layer_norm_param_grads<W>(
          tape, inputs[2], inputs[3], gv.shape(), "add_layer_norm", [&](const auto& dg, const auto& db, bool acc_params) {
            if (branch_done) {
              kernels::layernorm_backward(tape.ctx(), hv, gv, mean, rstd, gy, dh, dg, db, th.accumulate, acc_params,
                                          tr.grad.as<R>());
            } else {
              kernels::layernorm_backward(tape.ctx(), hv, gv, mean, rstd, gy, dh, dg, db, th.accumulate, acc_params);
            }
          });
      if (outputs[0] >= 0) tape.wrote(outputs[0]);
      if (branch_done) tape.wrote(inputs[1]);
      for (int i = 2; i < 4; ++i)
        if (inputs[i] >= 0) tape.wrote(inputs[i]);
    }
    // The add's backward: x takes the sum's gradient as it is, r gets it in R.
    if (!tape.grad_ref(outputs[0]).defined()) return;  // neither output reached
    const auto gh = out_grad<X>(tape, *this, 0);
    if (!tape.pass_grad(outputs[0], inputs[0])) emit(tape, inputs[0], kernels::Identity{}, gh);
    if (!branch_done) emit(tape, inputs[1], kernels::ScaleBy{1.0}, gh);
  }
};

template <GradElement In, GradElement Out>
struct SoftmaxNode final : Node {
  Tensor<Out> y;  // the output itself (an op writing into it in place bumps its version)
  std::uint64_t version;
  double scale;
  kernels::SoftmaxMask mask;
  SoftmaxNode(Tensor<Out> y_, double s, kernels::SoftmaxMask m)
      : y(std::move(y_)), version(y.storage()->version()), scale(s), mask(m) {}
  const char* name() const noexcept override { return "softmax"; }
  void backward(Tape& tape) override {
    MIXTAPE_EXPECT(y.storage()->version() == version, ValueError, "softmax: its output was modified in place");
    const auto gy = out_grad<Out>(tape, *this);
    write_grad<In>(tape, inputs[0], [&](const auto& g, bool acc) {
      kernels::softmax_backward(tape.ctx(), y, gy, g, scale, mask, acc);
    });
  }
};

template <GradElement T, class I, class L>
struct CrossEntropyNode final : Node {
  SavedTensor logits;
  Tensor<I> targets;
  Tensor<L> lse;
  CrossEntropyNode(const Tensor<T>& z, Tensor<I> t, Tensor<L> l) : logits(z), targets(std::move(t)), lse(std::move(l)) {}
  const char* name() const noexcept override { return "cross_entropy"; }
  void backward(Tape& tape) override {
    const auto dloss = out_grad<L>(tape, *this);  // device scalar: a loss scale folds in here
    write_grad<T>(tape, inputs[0], [&](const auto& g, bool acc) {
      kernels::cross_entropy_backward(tape.ctx(), logits.get<T>("cross_entropy"), targets, lse, dloss, g, acc);
    });
  }
};

template <GradElement X, class L>
struct MseNode final : Node {
  SavedTensor x, target;
  MseNode(const Tensor<X>& a, const Tensor<X>& b) : x(a), target(b) {}
  const char* name() const noexcept override { return "mse"; }
  void backward(Tape& tape) override {
    const auto dloss = out_grad<L>(tape, *this);
    write_grad<X>(tape, inputs[0], [&](const auto& g, bool acc) {
      kernels::mse_backward(tape.ctx(), x.get<X>("mse"), target.get<X>("mse"), dloss, g, acc);
    });
  }
};

template <class I, GradElement T, GradElement O>
struct EmbeddingNode final : Node {
  Tensor<I> ids;
  explicit EmbeddingNode(Tensor<I> i) : ids(std::move(i)) {}
  const char* name() const noexcept override { return "embedding"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<O>(tape, *this);
    write_grad<T>(tape, inputs[0], [&](const auto& g, bool acc) { kernels::embedding_backward(tape.ctx(), ids, gy, g, acc); });
  }
};

}  // namespace nodes

/// y = x + bias, bias along the last dimension. // x (..., C), bias (C)
template <GradElement X, GradElement B>
Var<X> add_bias(Tape& tape, const Var<X>& x, const Var<B>& bias) {
  auto y = autograd::detail::make_output<X>(tape, x.shape(), x.device(), x.requires_grad() || bias.requires_grad());
  kernels::add_bias(tape.ctx(), x.value(), bias.value(), y.value());
  if (y.requires_grad()) tape.record<nodes::AddBiasNode<X, B>>(std::array{x.slot(), bias.slot()}, std::array{y.slot()});
  return y;
}

/// y = x + pos[:T], positions broadcast over the batch; a position table longer than the sequence
/// (GPT's wpe, (ctx, C)) contributes its first T rows and receives zeros in the others.
/// // x (B, T, C), pos (P >= T, C)
template <GradElement X, GradElement P>
Var<X> add_positional(Tape& tape, const Var<X>& x, const Var<P>& pos) {
  MIXTAPE_EXPECT(x.shape().rank() >= 2 && pos.shape().rank() == 2 && pos.shape()[0] >= x.shape()[x.shape().rank() - 2],
                 ShapeError, "add_positional: expected x (..., T, C) and a table (P >= T, C), got x ", x.shape(),
                 " and a table ", pos.shape());
  auto y = autograd::detail::make_output<X>(tape, x.shape(), x.device(), x.requires_grad() || pos.requires_grad());
  kernels::add_positional(tape.ctx(), x.value(), pos.value().slice(0, 0, x.shape()[x.shape().rank() - 2]), y.value());
  if (y.requires_grad())
    tape.record<nodes::AddPositionalNode<X, P>>(std::array{x.slot(), pos.slot()}, std::array{y.slot()});
  return y;
}

/// GELU, tanh approximation (PyTorch's approximate="tanh"), output in `Out`.
template <GradElement Out, GradElement In>
Var<Out> gelu(Tape& tape, const Var<In>& x) {
  auto y = autograd::detail::make_output<Out>(tape, x.shape(), x.device(), x.requires_grad());
  kernels::gelu_forward(tape.ctx(), x.value(), y.value());
  if (y.requires_grad()) tape.record<nodes::GeluNode<In, Out>>(std::array{x.slot()}, std::array{y.slot()}, x.value());
  return y;
}

/// LayerNorm over the last dimension with statistics in S (f32, or f64 for f64), output in `Out`.
/// // x (R, C), gamma and beta (C) -> (R, C)
template <GradElement Out, GradElement In, GradElement W, class S = kernels::compute_t<In>>
Var<Out> layer_norm(Tape& tape, const Var<In>& x, const Var<W>& gamma, const Var<W>& beta, double eps = 1e-5) {
  const bool needs = x.requires_grad() || gamma.requires_grad() || beta.requires_grad();
  auto y = autograd::detail::make_output<Out>(tape, x.shape(), x.device(), needs);
  MIXTAPE_EXPECT(x.shape().rank() >= 1, ShapeError, "layer_norm: expected rank >= 1, got a scalar");
  const Shape stat_shape(x.shape().span().first(static_cast<std::size_t>(x.shape().rank() - 1)));  // leading dims
  auto mean = Tensor<S>::empty(tape.ctx(), stat_shape, x.device());
  auto rstd = Tensor<S>::empty(tape.ctx(), stat_shape, x.device());
  kernels::layernorm_forward(tape.ctx(), x.value(), gamma.value(), beta.value(), y.value(), mean, rstd, eps);
  if (y.requires_grad())
    tape.record<nodes::LayerNormNode<In, W, Out, S>>(std::array{x.slot(), gamma.slot(), beta.slot()},
                                                     std::array{y.slot()}, x.value(), gamma.value(), mean, rstd);
  return y;
}

/// The two outputs of add_layer_norm.
template <GradElement X, GradElement Out>
struct AddLayerNorm {
  Var<X> sum;     ///< x + r, in x's type (the residual stream)
  Var<Out> norm;  ///< layer_norm(x + r)
};

/// sum = add(x, r), norm = layer_norm<Out>(sum, gamma, beta, eps), with the add fused into the
/// LayerNorm's first pass over the rows (kernels::add_layernorm_forward: the same bits) and, in
/// backward, the branch's gradient written by the LayerNorm's dx kernel (AddLayerNormNode): the
/// pre-norm transformer's residual add and the LayerNorm that reads it, with one read of the sum
/// and one of its gradient fewer. Values and gradients are those of add then layer_norm, bit for bit.
/// // x (R, C) in the residual type, r (R, C), gamma and beta (C) -> sum (R, C), norm (R, C)
template <GradElement Out, GradElement X, GradElement R, GradElement W, class S = kernels::compute_t<X>>
AddLayerNorm<X, Out> add_layer_norm(Tape& tape, const Var<X>& x, const Var<R>& r, const Var<W>& gamma, const Var<W>& beta,
                                    double eps = 1e-5) {
  autograd::detail::expect_same("add_layer_norm", x.value(), r.value());
  MIXTAPE_EXPECT(x.shape().rank() >= 1, ShapeError, "add_layer_norm: expected rank >= 1, got a scalar");
  auto h = autograd::detail::make_output<X>(tape, x.shape(), x.device(), x.requires_grad() || r.requires_grad());
  const bool needs = h.requires_grad() || gamma.requires_grad() || beta.requires_grad();
  auto y = autograd::detail::make_output<Out>(tape, x.shape(), x.device(), needs);
  const Shape stat_shape(x.shape().span().first(static_cast<std::size_t>(x.shape().rank() - 1)));  // leading dims
  auto mean = Tensor<S>::empty(tape.ctx(), stat_shape, x.device());
  auto rstd = Tensor<S>::empty(tape.ctx(), stat_shape, x.device());
  kernels::add_layernorm_forward(tape.ctx(), x.value(), r.value(), h.value(), gamma.value(), beta.value(), y.value(),
                                 mean, rstd, eps);
  if (y.requires_grad())
    tape.record<nodes::AddLayerNormNode<X, R, W, Out, S>>(std::array{x.slot(), r.slot(), gamma.slot(), beta.slot()},
                                                          std::array{h.slot(), y.slot()}, h.value(), gamma.value(),
                                                          mean, rstd);
  return {std::move(h), std::move(y)};
}

/// softmax(scale * x) over the last dimension, optionally causal over (T, T) tiles, output in `Out`.
template <GradElement Out, GradElement In>
Var<Out> softmax(Tape& tape, const Var<In>& x, double scale = 1.0, kernels::SoftmaxMask mask = kernels::SoftmaxMask::none) {
  auto y = autograd::detail::make_output<Out>(tape, x.shape(), x.device(), x.requires_grad());
  kernels::softmax_forward(tape.ctx(), x.value(), y.value(), scale, mask);
  if (y.requires_grad())
    tape.record<nodes::SoftmaxNode<In, Out>>(std::array{x.slot()}, std::array{y.slot()}, y.value(), scale, mask);
  return y;
}

/// Rows of `table` selected by `ids`. // ids (N) int32/int64, table (V, C) -> (N, C)
template <GradElement Out, GradElement T, class I>
Var<Out> embedding(Tape& tape, const Tensor<I>& ids, const Var<T>& table) {
  Shape shape({ids.numel(), table.shape()[1]});
  auto y = autograd::detail::make_output<Out>(tape, shape, table.device(), table.requires_grad());
  kernels::embedding_forward(tape.ctx(), ids, table.value(), y.value());
  if (y.requires_grad()) tape.record<nodes::EmbeddingNode<I, T, Out>>(std::array{table.slot()}, std::array{y.slot()}, ids);
  return y;
}

/// Mean cross-entropy of `logits` against integer `targets` (fused log-softmax), in f32 (f64 for
/// f64 logits). // logits (N, V), targets (N) -> (1)
template <GradElement T, class I>
Var<kernels::compute_t<T>> cross_entropy(Tape& tape, const Var<T>& logits, const Tensor<I>& targets) {
  using L = kernels::compute_t<T>;
  const std::int64_t rows = logits.value().numel() / logits.shape()[logits.shape().rank() - 1];
  auto losses = Tensor<L>::empty(tape.ctx(), Shape{rows}, logits.device());
  auto lse = Tensor<L>::empty(tape.ctx(), Shape{rows}, logits.device());
  auto y = autograd::detail::make_output<L>(tape, Shape{1}, logits.device(), logits.requires_grad());
  kernels::cross_entropy_forward(tape.ctx(), logits.value(), targets, losses, lse, y.value());
  if (y.requires_grad())
    tape.record<nodes::CrossEntropyNode<T, I, L>>(std::array{logits.slot()}, std::array{y.slot()}, logits.value(),
                                                  targets, lse);
  return y;
}

/// Mean squared error against a target of the same shape, in f32 (f64 for f64).
template <GradElement X>
Var<kernels::compute_t<X>> mse(Tape& tape, const Var<X>& x, const Tensor<X>& target) {
  using L = kernels::compute_t<X>;
  auto y = autograd::detail::make_output<L>(tape, Shape{1}, x.device(), x.requires_grad());
  kernels::mse_forward(tape.ctx(), x.value(), target, y.value());
  if (y.requires_grad()) tape.record<nodes::MseNode<X, L>>(std::array{x.slot()}, std::array{y.slot()}, x.value(), target);
  return y;
}

MIXTAPE_BACKEND_END
}  // namespace mixtape::autograd
