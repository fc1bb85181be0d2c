/// @file linear.hpp
/// @brief `Linear<P>`: y = x W^T + b with the formats of policy P (the peer's nn.Linear).
///
/// Under a mixed policy the weight and bias are stored in f32 and read through their owned compute
/// copies (bf16 or f16), as torch.autocast casts both for `linear`; gradients land in f32. Under a
/// true policy everything is in the parameter type. The GEMM runs with f32 accumulation either way.
///
/// @code
///   nn::Linear<precision::bf16_mixed> fc(scope("fc"), 768, 3072);
///   auto h = fc(tape, x);                       // x (B*T, 768) bf16 -> (B*T, 3072) bf16
/// @endcode
#pragma once

#include <optional>

#include "mixtape/autograd/ops_linear.hpp"
#include "mixtape/nn/module.hpp"

namespace mixtape::nn {
// Modules own forward passes, whose bodies call backend-specific kernels: the class templates live
// in the backend namespace, so a `.cpp` and a `.cu` unit get distinct types (docs/backends.md).
MIXTAPE_BACKEND_BEGIN

/// @tparam P  the module's precision policy
template <PrecisionPolicy P>
class Linear : public Module {
 public:
  using traits = policy_traits<P>;
  /// What the layer computes in and returns (the policy's GEMM compute type).
  using compute_type = typename traits::gemm_compute_type;

  /// @param weight_std  N(0, std) initialisation of the weight (the peer: 0.02, residual
  ///                    projections 0.02 / sqrt(2 * layers)); the bias starts at zero
  Linear(const ModuleScope& scope, std::int64_t in_features, std::int64_t out_features, bool bias = true,
         double weight_std = 0.02)
      : Linear(scope, in_features, out_features, Init::normal(weight_std), bias ? std::optional(Init::zeros()) : std::nullopt) {}

  /// Any initialisation, e.g. torch's nn.Linear default: `Init::uniform(1 / sqrt(in))` for both.
  /// @param bias_init  nullopt: no bias
  Linear(const ModuleScope& scope, std::int64_t in_features, std::int64_t out_features, Init weight_init,
         std::optional<Init> bias_init)
      : Module(scope), in_(in_features), out_(out_features) {
    MIXTAPE_EXPECT(in_features > 0 && out_features > 0, ValueError, "Linear ", prefix(),
                   ": expected positive feature counts, got ", in_features, " -> ", out_features);
    weight_ = &register_parameter("weight", spec_for<P>("", {out_features, in_features}, weight_init,
                                                        /*decay=*/true, /*with_compute_copy=*/true));
    if (bias_init) {
      bias_ = &register_parameter("bias", spec_for<P>("", {out_features}, *bias_init, /*decay=*/false,
                                                      /*with_compute_copy=*/true));
    }
  }

  /// The weight as the GEMM reads it (its compute copy, or the weight itself), recorded with its
  /// gradient sink: for fused ops that take the layer's operands (autograd::linear_gelu_linear).
  autograd::Var<compute_type> weight_operand(autograd::Tape& tape) const { return value_of(tape, *weight_); }
  /// The bias likewise. @throws ValueError for a layer without a bias
  autograd::Var<compute_type> bias_operand(autograd::Tape& tape) const {
    MIXTAPE_EXPECT(bias_ != nullptr, ValueError, "Linear ", prefix(), ": the layer has no bias");
    return value_of(tape, *bias_);
  }

  std::int64_t in_features() const noexcept { return in_; }
  std::int64_t out_features() const noexcept { return out_; }
  Parameter& weight() const noexcept { return *weight_; }
  Parameter* bias() const noexcept { return bias_; }

  /// y = x W^T + b. // x (..., in) -> (..., out), in the compute type
  autograd::Var<compute_type> operator()(autograd::Tape& tape, const autograd::Var<compute_type>& x) const {
    const auto w = value_of(tape, *weight_);
    if (!bias_) return autograd::linear<compute_type>(tape, x, w);
    const auto b = value_of(tape, *bias_);
    return autograd::linear(tape, x, w, &b);
  }

 private:
  /// The parameter as the GEMM reads it: its compute copy (or weight), with its gradient sink.
  static autograd::Var<compute_type> value_of(autograd::Tape& tape, Parameter& p) {
    const auto v = p.compute_view().as<compute_type>();
    return p.frozen() ? autograd::constant(v) : autograd::parameter(tape, v, p.sink());
  }

  std::int64_t in_, out_;
  Parameter* weight_ = nullptr;
  Parameter* bias_ = nullptr;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::nn
