/// @file attention.hpp
/// @brief `CausalSelfAttention<P>`: the GPT block's attention (fused q|k|v projection, causal
///        multi-head softmax attention, output projection), named as the peer's Block names it.
///
/// The projections are `Linear<P>`; the attention between them runs in the policy's GEMM compute
/// type with scores and softmax math in f32 (autograd/ops_attention.hpp), as torch's
/// scaled_dot_product_attention does under autocast. The module registers its projections in the
/// scope it is given, so inside a block they are `blocks.i.qkv` and `blocks.i.proj` (the peer has
/// no `attn.` level).
#pragma once

#include <cmath>

#include "mixtape/autograd/ops_attention.hpp"
#include "mixtape/nn/linear.hpp"

namespace mixtape::nn {
MIXTAPE_BACKEND_BEGIN

/// @tparam P  the module's precision policy
template <PrecisionPolicy P>
class CausalSelfAttention : public Module {
 public:
  using compute_type = typename Linear<P>::compute_type;

  /// @param dim        model width C (divisible by `heads`)
  /// @param heads      attention heads H
  /// @param proj_std   N(0, std) of the output projection (the peer: 0.02 / sqrt(2 * layers))
  CausalSelfAttention(const ModuleScope& scope, std::int64_t dim, std::int64_t heads, double proj_std = 0.02)
      : Module(scope),
        heads_(check_heads(dim, heads)),
        qkv_(this->scope("qkv"), dim, 3 * dim),
        proj_(this->scope("proj"), dim, dim, /*bias=*/true, proj_std) {
    register_child(qkv_);
    register_child(proj_);
  }

  std::int64_t heads() const noexcept { return heads_; }
  const Linear<P>& qkv() const noexcept { return qkv_; }
  const Linear<P>& proj() const noexcept { return proj_; }

  /// // x (B, T, C) in the compute type -> (B, T, C)
  autograd::Var<compute_type> operator()(autograd::Tape& tape, const autograd::Var<compute_type>& x) const {
    MIXTAPE_EXPECT(x.shape().rank() == 3 && x.shape()[2] == qkv_.in_features(), ShapeError, "CausalSelfAttention ",
                   prefix(), ": expected x (B, T, ", qkv_.in_features(), "), got ", x.shape());
    return proj_(tape, autograd::causal_self_attention(tape, qkv_(tape, x), heads_));
  }

 private:
  static std::int64_t check_heads(std::int64_t dim, std::int64_t heads) {
    MIXTAPE_EXPECT(heads > 0 && dim > 0 && dim % heads == 0, ValueError,
                   "CausalSelfAttention: expected a width divisible by the head count, got ", dim, " and ", heads,
                   " heads");
    return heads;
  }

  std::int64_t heads_;
  Linear<P> qkv_;
  Linear<P> proj_;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::nn
