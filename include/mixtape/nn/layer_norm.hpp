/// @file layer_norm.hpp
/// @brief `LayerNorm<P>` over the last dimension (eps 1e-5, gain 1, bias 0: the peer's nn.LayerNorm).
///
/// Statistics are always computed in f32 (f64 under 64-true); the output is written in the policy's
/// compute type, which equals autocast's f32 LayerNorm followed by the cast the next matmul makes.
/// Gain and bias are read in their stored type (f32 under mixed policies), never decayed.
#pragma once

#include "mixtape/autograd/ops_nn.hpp"
#include "mixtape/nn/module.hpp"

namespace mixtape::nn {
MIXTAPE_BACKEND_BEGIN

/// @tparam P  the module's precision policy
template <PrecisionPolicy P>
class LayerNorm : public Module {
 public:
  using traits = policy_traits<P>;
  using param_type = typename traits::param_type;
  using output_type = typename traits::compute_type;

  LayerNorm(const ModuleScope& scope, std::int64_t features, double eps = 1e-5) : Module(scope), eps_(eps) {
    MIXTAPE_EXPECT(features > 0 && eps > 0, ValueError, "LayerNorm ", prefix(), ": expected positive features and eps, got ",
                   features, " and ", eps);
    gain_ = &register_parameter("weight", spec_for<P>("", {features}, Init::ones(), false, false));
    bias_ = &register_parameter("bias", spec_for<P>("", {features}, Init::zeros(), false, false));
  }

  /// // x (..., C) in any gradient type (the f32 residual stream under mixed policies) -> (..., C)
  template <autograd::GradElement In>
  autograd::Var<output_type> operator()(autograd::Tape& tape, const autograd::Var<In>& x) const {
    return autograd::layer_norm<output_type>(tape, x, value_of(tape, *gain_), value_of(tape, *bias_), eps_);
  }

  /// The residual add before this LayerNorm, fused into it (autograd::add_layer_norm): sum = x + r
  /// in x's type, norm = this(sum). // x (..., C) residual stream, r (..., C) -> sum, norm (..., C)
  template <autograd::GradElement X, autograd::GradElement R>
  autograd::AddLayerNorm<X, output_type> add_and_norm(autograd::Tape& tape, const autograd::Var<X>& x,
                                                       const autograd::Var<R>& r) const {
    return autograd::add_layer_norm<output_type>(tape, x, r, value_of(tape, *gain_), value_of(tape, *bias_), eps_);
  }

  Parameter& weight() const noexcept { return *gain_; }
  Parameter& bias() const noexcept { return *bias_; }

 private:
  static autograd::Var<param_type> value_of(autograd::Tape& tape, Parameter& p) {
    const auto v = p.view(ParamRole::weight).as<param_type>();
    return p.frozen() ? autograd::constant(v) : autograd::parameter(tape, v, p.sink());
  }
  double eps_;
  Parameter* gain_ = nullptr;
  Parameter* bias_ = nullptr;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::nn
