/// @file ops_basic.hpp
/// @brief Differentiable structural and arithmetic ops: add, sub, mul, scale, sum, mean, reshape,
///        transpose, split and concat along the last dimension, and the explicit cast at a policy
///        boundary.
///
/// Every op records one node when any input requires a gradient and the tape is recording. Forward
/// and backward run through kernels/, so the node bodies live in the backend namespace (a `.cpp`
/// unit's ops run host kernels, a `.cu` unit's run CUDA kernels; docs/backends.md).
///
/// @code
///   auto y = autograd::add(tape, autograd::mul(tape, x, w), b);   // y = x * w + b
///   auto loss = autograd::mean(tape, y);
/// @endcode
#pragma once

#include <array>
#include <span>
#include <vector>

#include "mixtape/autograd/var.hpp"
#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/kernels/functors.hpp"
#include "mixtape/kernels/reduce.hpp"

namespace mixtape::autograd {

/// An element type that can carry gradients (FP8 values get theirs through their high-precision source).
template <class T>
concept GradElement = std::same_as<T, double> || std::same_as<T, float> || std::same_as<T, f16> || std::same_as<T, bf16>;

/// The type sums and means of T produce: double for f64, float otherwise.
template <class T>
using sum_t = kernels::compute_t<T>;

namespace detail {

/// grad = op(x) + grad (in place), for gradient accumulation.
template <class Op>
struct Accumulate1 {
  Op op;
  template <class X, class G>
  MIXTAPE_HOST_DEVICE kernels::compute_t<X, G> operator()(X x, G g) const noexcept {
    using A = kernels::compute_t<X, G>;
    return static_cast<A>(op(x)) + kernels::detail::to_acc<A>(g);
  }
};

/// grad = op(x, y) + grad (in place).
template <class Op>
struct Accumulate2 {
  Op op;
  template <class X, class Y, class G>
  MIXTAPE_HOST_DEVICE kernels::compute_t<X, Y, G> operator()(X x, Y y, G g) const noexcept {
    using A = kernels::compute_t<X, Y, G>;
    return static_cast<A>(op(x, y)) + kernels::detail::to_acc<A>(g);
  }
};

/// Calls `f.template operator()<G>()` for a gradient dtype (f64, f32, f16, bf16).
template <class F>
void visit_grad_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f64: return f.template operator()<double>();
    case DType::f32: return f.template operator()<float>();
    case DType::f16: return f.template operator()<f16>();
    case DType::bf16: return f.template operator()<bf16>();
    default: MIXTAPE_THROW(DTypeError, "autograd: gradients must be f64, f32, f16 or bf16, got ", dtype);
  }
}

/// A view of the one-element tensor `s` broadcast to `shape` (all strides 0): reductions' backward.
template <Element T>
Tensor<T> broadcast_scalar(const Tensor<T>& s, const Shape& shape) {
  Layout l;
  l.shape = shape;
  l.offset = s.offset();
  return Tensor<T>(s.storage(), l);
}

/// An output value of `shape` and its slot (-1 when no gradient is needed).
template <Element T>
Var<T> make_output(Tape& tape, const Shape& shape, Device device, bool needs_grad) {
  auto value = Tensor<T>::empty(tape.ctx(), shape, device, MemoryRole::activations);
  const std::int32_t slot = needs_grad && tape.recording() ? tape.new_slot(shape, dtype_v<T>, device) : -1;
  return Var<T>(std::move(value), slot);
}

inline void expect_same(const char* op, const mixtape::detail::TensorBase& a, const mixtape::detail::TensorBase& b) {
  mixtape::detail::expect_same_shape(op, a, b);
  mixtape::detail::expect_same_device(op, a, b);
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN
/// Tape node types of these ops and the gradient writer they share (backend-specific bodies).
namespace nodes {

/// Writes `op(in...)` into the gradient of `slot`: assigns on the first write of this backward,
/// accumulates afterwards (one kernel either way, no memset).
template <class Op, class... In>
void emit(Tape& tape, std::int32_t slot, const Op& op, const Tensor<In>&... in) {
  static_assert(sizeof...(In) == 1 || sizeof...(In) == 2, "emit: one or two operands");
  if (slot < 0) return;
  const GradTarget t = tape.grad_target(slot);
  autograd::detail::visit_grad_dtype(t.grad.dtype(), [&]<class G>() {
    const Tensor<G> g = t.grad.as<G>();
    if (!t.accumulate) {
      kernels::map(tape.ctx(), op, g, in...);
    } else if constexpr (sizeof...(In) == 1) {
      kernels::map(tape.ctx(), autograd::detail::Accumulate1<Op>{op}, g, in..., g);
    } else {
      kernels::map(tape.ctx(), autograd::detail::Accumulate2<Op>{op}, g, in..., g);
    }
  });
  tape.wrote(slot);
}

template <class T>
Tensor<T> out_grad(const Tape& tape, const Node& node, int i = 0) {
  return tape.grad_ref(node.outputs[i]).template as<T>();
}

template <GradElement T>
struct AddNode final : Node {
  double sign_b;
  explicit AddNode(double s) : sign_b(s) {}
  const char* name() const noexcept override { return sign_b > 0 ? "add" : "sub"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<T>(tape, *this);
    if (!tape.pass_grad(outputs[0], inputs[0])) emit(tape, inputs[0], kernels::Identity{}, gy);
    emit(tape, inputs[1], kernels::ScaleBy{sign_b}, gy);
  }
};

template <GradElement T>
struct MulNode final : Node {
  SavedTensor a, b;
  MulNode(const Tensor<T>& a_, const Tensor<T>& b_) : a(a_), b(b_) {}
  const char* name() const noexcept override { return "mul"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<T>(tape, *this);
    if (inputs[0] >= 0) emit(tape, inputs[0], kernels::Mul{}, gy, b.get<T>("mul"));
    if (inputs[1] >= 0) emit(tape, inputs[1], kernels::Mul{}, gy, a.get<T>("mul"));
  }
};

template <GradElement T>
struct ScaleNode final : Node {
  double alpha;
  explicit ScaleNode(double a) : alpha(a) {}
  const char* name() const noexcept override { return "scale"; }
  void backward(Tape& tape) override { emit(tape, inputs[0], kernels::ScaleBy{alpha}, out_grad<T>(tape, *this)); }
};

template <GradElement T>
struct SumNode final : Node {
  Shape in_shape;
  double factor;  // 1 for sum, 1/n for mean
  SumNode(const Shape& s, double f) : in_shape(s), factor(f) {}
  const char* name() const noexcept override { return factor == 1.0 ? "sum" : "mean"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<sum_t<T>>(tape, *this);
    emit(tape, inputs[0], kernels::ScaleBy{factor}, autograd::detail::broadcast_scalar(gy, in_shape));
  }
};

template <GradElement T>
struct ViewNode final : Node {
  Shape in_shape;
  bool is_reshape;
  int d0, d1;  // the transposed dimensions (transpose only)
  ViewNode(const Shape& s, bool reshape, int a, int b) : in_shape(s), is_reshape(reshape), d0(a), d1(b) {}
  const char* name() const noexcept override { return is_reshape ? "reshape" : "transpose"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<T>(tape, *this);  // tape-owned, so contiguous
    if (is_reshape && tape.pass_grad(outputs[0], inputs[0])) return;
    emit(tape, inputs[0], kernels::Identity{}, is_reshape ? gy.reshape(in_shape) : gy.transposed(d0, d1));
  }
};

template <GradElement T>
struct SplitLastNode final : Node {
  const char* name() const noexcept override { return "split_last"; }
  void backward(Tape& tape) override {
    const GradTarget t = tape.grad_target(inputs[0]);
    const std::int64_t n = t.grad.shape()[t.grad.rank() - 1] / output_count;
    autograd::detail::visit_grad_dtype(t.grad.dtype(), [&]<class G>() {
      const Tensor<G> g = t.grad.as<G>();
      for (int i = 0; i < output_count; ++i) {
        const Tensor<G> part = g.slice(-1, i * n, n);
        const TensorRef gi = tape.grad_ref(outputs[i]);
        if (gi.defined()) {
          if (t.accumulate) {
            kernels::map(tape.ctx(), kernels::Add{}, part, gi.as<T>(), part);
          } else {
            kernels::map(tape.ctx(), kernels::Identity{}, part, gi.as<T>());
          }
        } else if (!t.accumulate) {
          kernels::fill(tape.ctx(), part, 0.0);  // a part nothing used still owes its zeros
        }
      }
    });
    tape.wrote(inputs[0]);
  }
};

template <GradElement T>
struct ConcatLastNode final : Node {
  std::int64_t widths[Node::kMaxInputs];
  const char* name() const noexcept override { return "concat_last"; }
  void backward(Tape& tape) override {
    const auto gy = out_grad<T>(tape, *this);
    std::int64_t offset = 0;
    for (int i = 0; i < input_count; ++i) {
      emit(tape, inputs[i], kernels::Identity{}, gy.slice(-1, offset, widths[i]));
      offset += widths[i];
    }
  }
};

template <GradElement To, GradElement From>
struct CastNode final : Node {
  const char* name() const noexcept override { return "cast"; }
  void backward(Tape& tape) override { emit(tape, inputs[0], kernels::Identity{}, out_grad<To>(tape, *this)); }
};

}  // namespace nodes

/// y = a + b (same shape).
template <GradElement T>
Var<T> add(Tape& tape, const Var<T>& a, const Var<T>& b) {
  autograd::detail::expect_same("add", a.value(), b.value());
  auto y = autograd::detail::make_output<T>(tape, a.shape(), a.device(), a.requires_grad() || b.requires_grad());
  kernels::map(tape.ctx(), kernels::Add{}, y.value(), a.value(), b.value());
  if (y.requires_grad()) tape.record<nodes::AddNode<T>>(std::array{a.slot(), b.slot()}, std::array{y.slot()}, 1.0);
  return y;
}

/// y = a + b for operands of two types, in a's type: the residual add of a mixed policy, where the
/// stream is f32 and the branch bf16 (torch's type promotion under autocast). b's gradient is the
/// output gradient rounded to B.
template <GradElement A, GradElement B>
  requires(!std::same_as<A, B>)
Var<A> add(Tape& tape, const Var<A>& a, const Var<B>& b) {
  autograd::detail::expect_same("add", a.value(), b.value());
  auto y = autograd::detail::make_output<A>(tape, a.shape(), a.device(), a.requires_grad() || b.requires_grad());
  kernels::map(tape.ctx(), kernels::Add{}, y.value(), a.value(), b.value());
  if (y.requires_grad()) tape.record<nodes::AddNode<A>>(std::array{a.slot(), b.slot()}, std::array{y.slot()}, 1.0);
  return y;
}

/// y = a - b (same shape).
template <GradElement T>
Var<T> sub(Tape& tape, const Var<T>& a, const Var<T>& b) {
  autograd::detail::expect_same("sub", a.value(), b.value());
  auto y = autograd::detail::make_output<T>(tape, a.shape(), a.device(), a.requires_grad() || b.requires_grad());
  kernels::map(tape.ctx(), kernels::Sub{}, y.value(), a.value(), b.value());
  if (y.requires_grad()) tape.record<nodes::AddNode<T>>(std::array{a.slot(), b.slot()}, std::array{y.slot()}, -1.0);
  return y;
}

/// y = a * b, element-wise (same shape).
template <GradElement T>
Var<T> mul(Tape& tape, const Var<T>& a, const Var<T>& b) {
  autograd::detail::expect_same("mul", a.value(), b.value());
  auto y = autograd::detail::make_output<T>(tape, a.shape(), a.device(), a.requires_grad() || b.requires_grad());
  kernels::map(tape.ctx(), kernels::Mul{}, y.value(), a.value(), b.value());
  if (y.requires_grad())
    tape.record<nodes::MulNode<T>>(std::array{a.slot(), b.slot()}, std::array{y.slot()}, a.value(), b.value());
  return y;
}

/// y = alpha * a.
template <GradElement T>
Var<T> scale(Tape& tape, const Var<T>& a, double alpha) {
  auto y = autograd::detail::make_output<T>(tape, a.shape(), a.device(), a.requires_grad());
  kernels::map(tape.ctx(), kernels::ScaleBy{alpha}, y.value(), a.value());
  if (y.requires_grad()) tape.record<nodes::ScaleNode<T>>(std::array{a.slot()}, std::array{y.slot()}, alpha);
  return y;
}

/// The sum of all elements, a one-element tensor in f32 (f64 for f64 inputs).
template <GradElement T>
Var<sum_t<T>> sum(Tape& tape, const Var<T>& a) {
  auto y = autograd::detail::make_output<sum_t<T>>(tape, Shape{1}, a.device(), a.requires_grad());
  kernels::sum(tape.ctx(), a.value(), y.value());
  if (y.requires_grad()) tape.record<nodes::SumNode<T>>(std::array{a.slot()}, std::array{y.slot()}, a.shape(), 1.0);
  return y;
}

/// The mean of all elements (f32, or f64 for f64 inputs).
template <GradElement T>
Var<sum_t<T>> mean(Tape& tape, const Var<T>& a) {
  MIXTAPE_EXPECT(a.value().numel() > 0, ShapeError, "mean: expected a non-empty tensor, got shape ", a.shape());
  const double inv_n = 1.0 / static_cast<double>(a.value().numel());
  auto y = autograd::detail::make_output<sum_t<T>>(tape, Shape{1}, a.device(), a.requires_grad());
  kernels::sum(tape.ctx(), a.value(), y.value());
  kernels::map(tape.ctx(), kernels::ScaleBy{inv_n}, y.value(), y.value());
  if (y.requires_grad()) tape.record<nodes::SumNode<T>>(std::array{a.slot()}, std::array{y.slot()}, a.shape(), inv_n);
  return y;
}

/// The same elements with another shape (a view when `a` is contiguous, else a copy).
template <GradElement T>
Var<T> reshape(Tape& tape, const Var<T>& a, const Shape& shape) {
  const Tensor<T> src = a.value().is_contiguous() ? a.value() : kernels::contiguous(tape.ctx(), a.value());
  Var<T> y(src.reshape(shape), a.requires_grad() && tape.recording()
                                   ? tape.new_slot(shape, dtype_v<T>, a.device())
                                   : -1);
  if (y.requires_grad()) tape.record<nodes::ViewNode<T>>(std::array{a.slot()}, std::array{y.slot()}, a.shape(), true, 0, 0);
  return y;
}

/// Dimensions `d0` and `d1` swapped: a view, no copy.
template <GradElement T>
Var<T> transpose(Tape& tape, const Var<T>& a, int d0 = -2, int d1 = -1) {
  const Tensor<T> t = a.value().transposed(d0, d1);
  Var<T> y(t, a.requires_grad() && tape.recording() ? tape.new_slot(t.shape(), dtype_v<T>, a.device()) : -1);
  if (y.requires_grad()) tape.record<nodes::ViewNode<T>>(std::array{a.slot()}, std::array{y.slot()}, a.shape(), false, d0, d1);
  return y;
}

/// `parts` equal views along the last dimension (q, k, v of a fused projection). One node with
/// `parts` outputs; parts that nothing uses contribute zeros.
template <GradElement T>
std::vector<Var<T>> split_last(Tape& tape, const Var<T>& a, int parts) {
  MIXTAPE_EXPECT(parts >= 1 && parts <= Node::kMaxOutputs, ValueError, "split_last: expected 1..", Node::kMaxOutputs,
                 " parts, got ", parts);
  const auto views = a.value().split_last(parts);
  std::vector<Var<T>> out;
  std::int32_t slots[Node::kMaxOutputs];
  for (int i = 0; i < parts; ++i) {
    slots[i] = a.requires_grad() && tape.recording() ? tape.new_slot(views[i].shape(), dtype_v<T>, a.device()) : -1;
    out.emplace_back(views[i], slots[i]);
  }
  if (slots[0] >= 0)
    tape.record<nodes::SplitLastNode<T>>(std::array{a.slot()}, std::span<const std::int32_t>(slots, parts));
  return out;
}

/// Concatenation along the last dimension (all other extents equal).
template <GradElement T>
Var<T> concat_last(Tape& tape, std::span<const Var<T>> parts) {
  MIXTAPE_EXPECT(!parts.empty() && parts.size() <= Node::kMaxInputs, ValueError, "concat_last: expected 1..",
                 Node::kMaxInputs, " parts, got ", parts.size());
  Shape shape = parts[0].shape();
  const int last = shape.rank() - 1;
  MIXTAPE_EXPECT(last >= 0, ShapeError, "concat_last: expected tensors of rank >= 1");
  std::int64_t width = 0;
  bool needs_grad = false;
  for (const auto& p : parts) {
    Shape s = p.shape();
    MIXTAPE_EXPECT(s.rank() == shape.rank(), ShapeError, "concat_last: ranks differ: ", shape, " and ", s);
    s[last] = shape[last];
    MIXTAPE_EXPECT(s == shape, ShapeError, "concat_last: leading extents differ: ", parts[0].shape(), " and ", p.shape());
    mixtape::detail::expect_same_device("concat_last", parts[0].value(), p.value());
    width += p.shape()[last];
    needs_grad |= p.requires_grad();
  }
  shape[last] = width;
  auto y = autograd::detail::make_output<T>(tape, shape, parts[0].device(), needs_grad);
  std::int64_t offset = 0;
  for (const auto& p : parts) {
    kernels::copy(tape.ctx(), p.value(), y.value().slice(-1, offset, p.shape()[last]));
    offset += p.shape()[last];
  }
  if (y.requires_grad()) {
    std::int32_t slots[Node::kMaxInputs];
    for (std::size_t i = 0; i < parts.size(); ++i) slots[i] = parts[i].slot();
    auto& node = tape.record<nodes::ConcatLastNode<T>>(std::span<const std::int32_t>(slots, parts.size()),
                                                        std::array{y.slot()});
    for (std::size_t i = 0; i < parts.size(); ++i) node.widths[i] = parts[i].shape()[last];
  }
  return y;
}

/// The explicit cast at a boundary between policies (e.g. a bf16 block feeding an f32 head):
/// forward rounds to nearest-even, backward casts the gradient back.
template <GradElement To, GradElement From>
Var<To> cast(Tape& tape, const Var<From>& a) {
  auto y = autograd::detail::make_output<To>(tape, a.shape(), a.device(), a.requires_grad());
  kernels::convert(tape.ctx(), a.value(), y.value());
  if (y.requires_grad()) tape.record<nodes::CastNode<To, From>>(std::array{a.slot()}, std::array{y.slot()});
  return y;
}

/// Back-propagates from a one-element `loss` with seed 1. The seed is written by a fill kernel on
/// the context's stream, so a training step makes no host round trip here.
template <GradElement T>
void backward(Tape& tape, const Var<T>& loss) {
  auto seed = Tensor<T>::empty(tape.ctx(), Shape{1}, loss.device(), MemoryRole::activations);
  kernels::fill(tape.ctx(), seed, 1.0);
  tape.backward(loss.slot(), seed);
}

MIXTAPE_BACKEND_END
}  // namespace mixtape::autograd
