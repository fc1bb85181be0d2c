/// @file embedding.hpp
/// @brief `Embedding<P>`: rows of a (num, dim) table selected by integer ids (the peer's
///        nn.Embedding, N(0, 0.02) init, decayed like every 2-D weight).
///
/// The lookup reads the stored table (f32 under mixed policies: autocast leaves `embedding` alone,
/// so the residual stream starts in f32). A table that is also the tied LM head owns a compute copy
/// for that GEMM (`tied_head`); both uses accumulate into its one gradient.
#pragma once

#include "mixtape/autograd/ops_linear.hpp"
#include "mixtape/autograd/ops_linear_cross_entropy.hpp"
#include "mixtape/nn/module.hpp"

namespace mixtape::nn {
MIXTAPE_BACKEND_BEGIN

/// @tparam P  the module's precision policy
template <PrecisionPolicy P>
class Embedding : public Module {
 public:
  using traits = policy_traits<P>;
  using param_type = typename traits::param_type;
  using compute_type = typename traits::gemm_compute_type;

  /// @param tied_head  the table is also read by a GEMM (weight tying), so it owns a compute copy
  Embedding(const ModuleScope& scope, std::int64_t num, std::int64_t dim, bool tied_head = false, double std = 0.02)
      : Module(scope) {
    MIXTAPE_EXPECT(num > 0 && dim > 0, ValueError, "Embedding ", prefix(), ": expected a positive table shape, got (",
                   num, ", ", dim, ")");
    table_ = &register_parameter("weight", spec_for<P>("", {num, dim}, Init::normal(std), true, tied_head));
  }

  Parameter& weight() const noexcept { return *table_; }

  /// // ids (N) -> (N, dim) in the parameter type
  template <class I>
  autograd::Var<param_type> operator()(autograd::Tape& tape, const Tensor<I>& ids) const {
    return autograd::embedding<param_type>(tape, ids.flatten(), table(tape));
  }

  /// The whole table as a value on the tape (a learned position table added by rows).
  autograd::Var<param_type> table(autograd::Tape& tape) const {
    const auto t = table_->view(ParamRole::weight).as<param_type>();
    return table_->frozen() ? autograd::constant(t) : autograd::parameter(tape, t, table_->sink());
  }
  /// The tied LM head: logits = x E^T through the table's compute copy. // x (N, dim) -> (N, num)
  autograd::Var<compute_type> head(autograd::Tape& tape, const autograd::Var<compute_type>& x) const {
    return autograd::linear<compute_type>(tape, x, head_weight(tape));
  }
  /// The table's compute copy as the head's weight (num, dim) on the tape, its gradient routed to
  /// the table's (for a fused head and loss, autograd::linear_cross_entropy).
  autograd::Var<compute_type> head_weight(autograd::Tape& tape) const {
    const auto t = table_->compute_view().as<compute_type>();
    return table_->frozen() ? autograd::constant(t) : autograd::parameter(tape, t, table_->sink());
  }

 private:
  Parameter* table_ = nullptr;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::nn
