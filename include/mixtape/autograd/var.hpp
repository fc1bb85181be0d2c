/// @file var.hpp
/// @brief `Var<T>`: a value recorded on a tape with its gradient slot; leaves, parameters,
///        constants, `backward` and gradient access.
#pragma once

#include <vector>

#include "mixtape/autograd/tape.hpp"
#include "mixtape/core/transfer.hpp"

namespace mixtape::autograd {

/// A tensor value known to a tape. Cheap to copy (a tensor view and a slot index).
/// @tparam T  the value's element type
template <Element T>
class Var {
 public:
  using element_type = T;
  Var() = default;
  /// @param slot the gradient slot, or -1 for a value that needs no gradient
  Var(Tensor<T> value, std::int32_t slot) : value_(std::move(value)), slot_(slot) {}

  const Tensor<T>& value() const noexcept { return value_; }
  std::int32_t slot() const noexcept { return slot_; }
  bool requires_grad() const noexcept { return slot_ >= 0; }
  const Shape& shape() const noexcept { return value_.shape(); }
  Device device() const noexcept { return value_.device(); }

 private:
  Tensor<T> value_;
  std::int32_t slot_ = -1;
};

/// A leaf: gradients flow into a tape-owned buffer when `requires_grad`.
template <Element T>
Var<T> leaf(Tape& tape, Tensor<T> value, bool requires_grad = true) {
  const std::int32_t slot =
      requires_grad && tape.recording() ? tape.new_slot(value.shape(), dtype_v<T>, value.device()) : -1;
  return Var<T>(std::move(value), slot);
}

/// A parameter: gradients flow into `sink.grad` (which must have the value's shape).
template <Element T>
Var<T> parameter(Tape& tape, Tensor<T> value, GradSink& sink) {
  MIXTAPE_EXPECT(sink.grad.shape() == value.shape(), ShapeError, "parameter: gradient shape ", sink.grad.shape(),
                 " differs from the value's ", value.shape());
  MIXTAPE_EXPECT(sink.grad.device() == value.device(), DeviceError, "parameter: gradient on ", sink.grad.device(),
                 ", value on ", value.device());
  const std::int32_t slot = tape.recording() ? tape.new_slot(value.shape(), dtype_v<T>, value.device(), &sink) : -1;
  return Var<T>(std::move(value), slot);
}

/// A value that needs no gradient (inputs, targets, masks).
template <Element T>
Var<T> constant(Tensor<T> value) {
  return Var<T>(std::move(value), -1);
}

/// Back-propagates from `loss` with a device-resident seed (e.g. the loss scale, so no host sync).
template <Element T>
void backward(Tape& tape, const Var<T>& loss, const Tensor<T>& seed) {
  tape.backward(loss.slot(), seed);
}

/// Keeps `v`'s gradient after backward has passed the op that produced it (torch's `retain_grad`);
/// call before backward. Leaves keep theirs without it.
template <Element T>
void retain_grad(Tape& tape, const Var<T>& v) {
  tape.retain_grad(v.slot());
}

/// The gradient that backward wrote for `v` (a tape-owned buffer; for parameters read the sink).
/// @throws ValueError when nothing reached `v`
template <Element T>
Tensor<T> grad(const Tape& tape, const Var<T>& v) {
  const TensorRef g = tape.slot_grad(v.slot());
  MIXTAPE_EXPECT(g.defined(), ValueError, "grad: no gradient reached this value (does the loss depend on it?)");
  return g.as<T>();
}

}  // namespace mixtape::autograd
