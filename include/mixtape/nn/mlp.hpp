/// @file mlp.hpp
/// @brief `Gelu` (tanh approximation) and `Mlp<P>`: the GPT block's feed-forward part,
///        fc (C -> 4C), GELU, out (4C -> C), named `fc` and `out` as in the peer.
///
/// Under a mixed policy both GEMMs and the GELU run in the compute type (autocast leaves `gelu`
/// in its input's type), the GELU math in f32. With both biases (the peer's layers) the block is
/// one fused node, `autograd::linear_gelu_linear`: the GELU and its derivative in the GEMMs'
/// epilogues, evaluated on the f32 accumulators (ops_mlp.hpp says what that changes).
#pragma once

#include "mixtape/autograd/ops_mlp.hpp"
#include "mixtape/nn/linear.hpp"

namespace mixtape::nn {
MIXTAPE_BACKEND_BEGIN

/// GELU with the tanh approximation (torch's `approximate="tanh"`): no parameters, output in the
/// input's type.
struct Gelu {
  /// // x (...) -> (...)
  template <autograd::GradElement T>
  autograd::Var<T> operator()(autograd::Tape& tape, const autograd::Var<T>& x) const {
    return autograd::gelu<T>(tape, x);
  }
};

/// @tparam P  the module's precision policy
template <PrecisionPolicy P>
class Mlp : public Module {
 public:
  using compute_type = typename Linear<P>::compute_type;

  /// @param dim       model width C
  /// @param hidden    hidden width (the peer: 4C)
  /// @param out_std   N(0, std) of the output projection (the peer: 0.02 / sqrt(2 * layers))
  Mlp(const ModuleScope& scope, std::int64_t dim, std::int64_t hidden, double out_std = 0.02)
      : Module(scope), fc_(this->scope("fc"), dim, hidden), out_(this->scope("out"), hidden, dim, true, out_std) {
    register_child(fc_);
    register_child(out_);
  }

  const Linear<P>& fc() const noexcept { return fc_; }
  const Linear<P>& out() const noexcept { return out_; }

  /// // x (..., C) in the compute type -> (..., C)
  autograd::Var<compute_type> operator()(autograd::Tape& tape, const autograd::Var<compute_type>& x) const {
    if (fc_.bias() != nullptr && out_.bias() != nullptr)
      return autograd::linear_gelu_linear(tape, x, fc_.weight_operand(tape), fc_.bias_operand(tape),
                                          out_.weight_operand(tape), out_.bias_operand(tape));
    return out_(tape, Gelu{}(tape, fc_(tape, x)));
  }

 private:
  Linear<P> fc_;
  Linear<P> out_;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::nn
