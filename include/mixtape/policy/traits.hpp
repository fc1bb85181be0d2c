/// @file traits.hpp
/// @brief `policy_traits<P>`: every role of a policy, resolved from what it states and the
///        defaults; `policy_rules<P>`: the rules as booleans; the `PrecisionPolicy` concept.
///
/// Modules and ops read only `policy_traits<P>`. Instantiating it checks the rules: a policy that
/// breaks one fails to compile with a `static_assert` whose message begins with the rule's stable
/// tag, e.g. "mixtape rule [master-or-sr]: ...". `policy_rules<P>` gives the same verdicts as
/// booleans (for static tests and for code that wants to choose, not fail).
///
/// @code
///   template <PrecisionPolicy P>
///   void layer_forward(...) {
///     using T = policy_traits<P>;
///     using TIn = typename T::compute_type;     // e.g. bf16 under bf16-mixed
///     using TAcc = typename T::accumulate_type; // f32
///   }
/// @endcode
#pragma once

#include <type_traits>

#include "mixtape/policy/roles.hpp"

namespace mixtape {

namespace detail {

template <class T>
inline constexpr bool is_none_v = std::is_same_v<T, none_t>;

template <class T>
inline constexpr bool is_scalar_v = quant::detail::is_scalar_format_v<T>;

template <class T>
inline constexpr bool is_float8_scalar_v = quant::detail::is_float8_v<T>;

/// Bits of a scalar format; 0 for anything else.
template <class T>
constexpr int scalar_bits() {
  if constexpr (is_scalar_v<T>) {
    return numeric_traits<T>::bits;
  } else {
    return 0;
  }
}

/// A scalar of at least 16 bits (f16, bf16, f32, f64): a type arithmetic can run in.
template <class T>
inline constexpr bool is_math_scalar_v = is_scalar_v<T> && (scalar_bits<T>() >= 16);

/// The element a storage format holds: `T` for a scalar and for `quant::scaled<T>`; else itself.
template <class T>
struct storage_element {
  using type = T;
};
template <class T>
struct storage_element<quant::scaled<T>> {
  using type = T;
};
template <class T>
using storage_element_t = typename storage_element<T>::type;

/// A cannot hold every value of B (both scalars): fewer bits, or as many bits and another format
/// (f16 and bf16 are each narrower than the other).
template <class A, class B>
inline constexpr bool narrower_v =
    is_scalar_v<A>&& is_scalar_v<B> && !std::is_same_v<A, B> && (scalar_bits<A>() <= scalar_bits<B>());

/// The narrowest scalar that holds both (f32 for f16 and bf16); `none_t` is the identity.
template <class A, class B>
struct widest {
  using type = std::conditional_t<
      is_none_v<A>, B,
      std::conditional_t<is_none_v<B>, A,
                         std::conditional_t<!narrower_v<A, B>, A, std::conditional_t<!narrower_v<B, A>, B, f32>>>>;
};
template <class A, class B>
using widest_t = typename widest<A, B>::type;

/// The type arithmetic on a stored value runs in: the scalar itself, f32 for a quantized format,
/// `none_t` for `none_t` (and for anything that is not a format).
template <class T>
struct math_of {
  using type = none_t;
};
template <class T>
requires quant::detail::HasQuantTraits<T>
struct math_of<T> {
  using type = typename quant::quant_traits<T>::math_type;
};
template <class T>
using math_of_t = typename math_of<T>::type;

/// What a GEMM-compute role means: element types of the forward and backward operands, FP8 or not.
template <class C>
struct gemm_format {
  static constexpr bool is_fp8 = is_float8_scalar_v<C>;  // a raw e4m3 / e5m2: FP8 without a recipe
  static constexpr fp8::Format format = std::is_same_v<C, e5m2> ? fp8::Format::e5m2 : fp8::Format::e4m3;
  static constexpr fp8::RecipeKind recipe = fp8::RecipeKind::none;
  using forward = C;
  using backward = C;
};
template <fp8::Format F, fp8::RecipeKind R>
struct gemm_format<fp8::Compute<F, R>> {
  static constexpr bool is_fp8 = true;
  static constexpr fp8::Format format = F;
  static constexpr fp8::RecipeKind recipe = R;
  using forward = std::conditional_t<F == fp8::Format::e5m2, e5m2, e4m3>;
  using backward = std::conditional_t<F == fp8::Format::e4m3, e4m3, e5m2>;
};

/// The stated role for `Key` in `List`, or `unstated_role`.
template <class List, class Key>
using stated_t = typename find_in_list<Key, List>::type;

template <class List, class Key>
inline constexpr bool is_stated_v = !std::is_same_v<stated_t<List, Key>, unstated_role>;

/// The stated type of a type role, or `Default`.
template <class List, class Key, class Default>
struct role_type_or {
  using type = Default;
};
template <class List, class Key, class Default>
requires(is_stated_v<List, Key>) struct role_type_or<List, Key, Default> {
  using type = typename stated_t<List, Key>::type;
};
template <class List, class Key, class Default>
using role_type_or_t = typename role_type_or<List, Key, Default>::type;

/// The stated value of a value role, or `fallback`.
template <class List, class Key, class V>
constexpr V role_value_or(V fallback) {
  if constexpr (is_stated_v<List, Key>) {
    return stated_t<List, Key>::value;
  } else {
    return fallback;
  }
}

/// Default other-compute type.
template <class Param, class Gemm, class Master>
struct default_compute {
  using param_element = storage_element_t<Param>;
  using master_element = storage_element_t<Master>;
  using fp8_fallback = std::conditional_t<is_math_scalar_v<param_element>, param_element,
                                          std::conditional_t<is_math_scalar_v<master_element>, master_element, bf16>>;
  using type = std::conditional_t<gemm_format<Gemm>::is_fp8, fp8_fallback,
                                  std::conditional_t<std::is_same_v<Gemm, quant::int8_rowwise>, f16, Gemm>>;
};

/// Every role of a stated-role list, resolved (no rule is checked here).
template <class List>
struct resolved_roles {
  using param = role_type_or_t<List, role::key::param, unstated_role>;
  using gemm_compute = role_type_or_t<List, role::key::gemm_compute, unstated_role>;
  using grad = role_type_or_t<List, role::key::grad, unstated_role>;
  using state = role_type_or_t<List, role::key::state, none_t>;
  using master = role_type_or_t<List, role::key::master, none_t>;
  using moment1 = role_type_or_t<List, role::key::moment1, state>;
  using moment2 = role_type_or_t<List, role::key::moment2, state>;
  using grad_accum = role_type_or_t<List, role::key::grad_accum, grad>;
  using comm = role_type_or_t<List, role::key::comm, grad>;
  using compute = role_type_or_t<List, role::key::compute, typename default_compute<param, gemm_compute, master>::type>;
  using accumulate =
      role_type_or_t<List, role::key::accumulate, std::conditional_t<std::is_same_v<compute, f64>, f64, f32>>;
  using activation = role_type_or_t<List, role::key::activation, compute>;
  using residual =
      role_type_or_t<List, role::key::residual,
                     std::conditional_t<is_math_scalar_v<storage_element_t<param>>, storage_element_t<param>, compute>>;
  using update_math = role_type_or_t<List, role::key::update_math,
                                     std::conditional_t<is_none_v<grad>, none_t,
                                                        widest_t<widest_t<math_of_t<param>, math_of_t<master>>,
                                                                 widest_t<math_of_t<moment1>, math_of_t<moment2>>>>>;

  using gemm = gemm_format<gemm_compute>;

  static constexpr bool recipe_stated = is_stated_v<List, role::key::recipe>;
  static constexpr fp8::RecipeKind recipe = role_value_or<List, role::key::recipe>(gemm::recipe);

  static constexpr bool update_rounding_stated = is_stated_v<List, role::key::update_rounding>;
  static constexpr UpdateRounding update_rounding =
      role_value_or<List, role::key::update_rounding>(UpdateRounding::nearest);

  /// The backward runs in f16 somewhere / the gradients are stored in f16.
  static constexpr bool f16_backward = std::is_same_v<typename gemm::forward, f16> ||
                                       std::is_same_v<typename gemm::backward, f16> || std::is_same_v<compute, f16>;
  static constexpr bool f16_grads = std::is_same_v<storage_element_t<grad>, f16>;
  static constexpr bool loss_scaling_stated = is_stated_v<List, role::key::loss_scaling>;
  /// False when the policy leaves the loss-scaling choice open where it has no default.
  static constexpr bool loss_scaling_resolved = loss_scaling_stated || !f16_grads;
  static constexpr LossScaling loss_scaling = role_value_or<List, role::key::loss_scaling>(
      f16_backward && !f16_grads ? LossScaling::dynamic : LossScaling::none);
};

template <class P>
concept HasStatedRoles = requires {
  typename P::stated_roles;
}
&&is_role_list<typename P::stated_roles>::value;

/// A storage format that may hold a gradient, master copy, communication buffer or activation.
template <class T>
inline constexpr bool is_dense_storage_v = is_scalar_v<T> || quant::is_scaled_v<T>;

}  // namespace detail

/// A precision policy.
///
/// What it represents: a compile-time description of which number format each role of training
/// (parameter storage, master copy, gradient, GEMM and other compute, optimizer moments, saved
/// activations, communication, loss scaling, FP8 recipe kind) uses.
///
/// Requires: a member type `stated_roles`, a `role_list` of role tags stating at least parameter
/// storage, GEMM compute, gradient and optimizer state (what `Policy<ParamT, ComputeT, GradT,
/// StateT>` states; derive from `Policy` or `PolicyWith`).
///
/// Ensures: `policy_traits<P>` names every role. The rules are *not* part of the concept, so that a
/// policy breaking one fails with the rule's message when `policy_traits<P>` is instantiated, not
/// with "constraints not satisfied"; `policy_rules<P>::all` tests them as a boolean.
/// @tparam P  any type
template <class P>
concept PrecisionPolicy =
    detail::HasStatedRoles<P> && detail::is_stated_v<typename P::stated_roles, role::key::param> &&
    detail::is_stated_v<typename P::stated_roles, role::key::gemm_compute> &&
    detail::is_stated_v<typename P::stated_roles, role::key::grad> &&
    detail::is_stated_v<typename P::stated_roles, role::key::state>;

/// The rules, as booleans (true = satisfied). Each one's message is in policy_traits.
/// @tparam P  a policy
template <PrecisionPolicy P>
struct policy_rules {
 private:
  using r_ = detail::resolved_roles<typename P::stated_roles>;
  template <class T>
  static constexpr bool storage_or_none_ = detail::is_none_v<T> || detail::is_dense_storage_v<T>;
  template <class T>
  static constexpr bool unscaled_fp8_ = detail::is_float8_scalar_v<T>;
  static constexpr bool trainable_ = !detail::is_none_v<typename r_::grad>;
  using param_element_ = detail::storage_element_t<typename r_::param>;

 public:
  /// [role-type] every storage role holds a format.
  static constexpr bool role_type =
      quant::is_format_v<typename r_::param> && storage_or_none_<typename r_::master> &&
      storage_or_none_<typename r_::grad> && storage_or_none_<typename r_::grad_accum> &&
      storage_or_none_<typename r_::comm> && detail::is_dense_storage_v<typename r_::activation> &&
      (detail::is_none_v<typename r_::moment1> || quant::is_format_v<typename r_::moment1>)&&(
          detail::is_none_v<typename r_::moment2> ||
          quant::is_format_v<typename r_::moment2>)&&(detail::is_scalar_v<typename r_::gemm_compute> ||
                                                      fp8::is_compute_tag_v<typename r_::gemm_compute> ||
                                                      std::is_same_v<typename r_::gemm_compute, quant::int8_rowwise>);
  /// [compute-type] arithmetic roles are arithmetic scalars.
  static constexpr bool compute_type =
      detail::is_math_scalar_v<typename r_::compute> && detail::is_math_scalar_v<typename r_::residual> &&
      (std::is_same_v<typename r_::accumulate, f32> || std::is_same_v<typename r_::accumulate, f64>)&&(
          trainable_ ? detail::is_math_scalar_v<typename r_::update_math> : true);
  /// [master-or-sr] a parameter narrower than its update math needs a master copy, stochastic
  /// rounding, Kahan compensation, or a stated round-to-nearest.
  static constexpr bool master_or_sr = !trainable_ || !detail::narrower_v<param_element_, typename r_::update_math> ||
                                       !detail::is_none_v<typename r_::master> ||
                                       r_::update_rounding != UpdateRounding::nearest || r_::update_rounding_stated;
  /// [master-width] a master copy is at least as wide as the parameter.
  static constexpr bool master_width =
      detail::is_none_v<typename r_::master> ||
      !detail::narrower_v<detail::storage_element_t<typename r_::master>, param_element_>;
  /// [f16-loss-scaling] f16 gradients need a stated loss-scaling choice.
  static constexpr bool f16_loss_scaling = r_::loss_scaling_resolved;
  /// [fp8-recipe] an FP8 GEMM has a recipe kind.
  static constexpr bool fp8_recipe = !r_::gemm::is_fp8 || r_::recipe != fp8::RecipeKind::none;
  /// [fp8-recipe-conflict] a stated recipe agrees with the fp8::Compute tag, and needs an FP8 GEMM.
  static constexpr bool fp8_recipe_conflict =
      !r_::recipe_stated ||
      (r_::gemm::is_fp8 && (r_::gemm::recipe == fp8::RecipeKind::none || r_::gemm::recipe == r_::recipe)) ||
      (!r_::gemm::is_fp8 && r_::recipe == fp8::RecipeKind::none);
  /// [fp8-e5m2-forward] E5M2 is never the forward GEMM format.
  static constexpr bool fp8_e5m2_forward = !r_::gemm::is_fp8 || r_::gemm::format != fp8::Format::e5m2;
  /// [frozen-quantized] block-quantized parameters have no gradient.
  static constexpr bool frozen_quantized = !quant::is_block_quantized_v<typename r_::param> || !trainable_;
  /// [frozen-no-state] a frozen parameter has no master, moments, accumulation or communication.
  static constexpr bool frozen_no_state =
      trainable_ || (detail::is_none_v<typename r_::master> && detail::is_none_v<typename r_::moment1> &&
                     detail::is_none_v<typename r_::moment2> && detail::is_none_v<typename r_::grad_accum> &&
                     detail::is_none_v<typename r_::comm>);
  /// [fp8-storage-scale] FP8 storage carries a scale.
  static constexpr bool fp8_storage_scale =
      !unscaled_fp8_<typename r_::param> && !unscaled_fp8_<typename r_::master> && !unscaled_fp8_<typename r_::grad> &&
      !unscaled_fp8_<typename r_::grad_accum> && !unscaled_fp8_<typename r_::comm> &&
      !unscaled_fp8_<typename r_::moment1> && !unscaled_fp8_<typename r_::moment2> &&
      !unscaled_fp8_<typename r_::activation>;
  /// [grad-accum-width] accumulation is at least as wide as the gradient.
  static constexpr bool grad_accum_width = !detail::narrower_v<detail::storage_element_t<typename r_::grad_accum>,
                                                               detail::storage_element_t<typename r_::grad>>;

  /// How many rules are broken.
  static constexpr int failed = !role_type + !compute_type + !master_or_sr + !master_width + !f16_loss_scaling +
                                !fp8_recipe + !fp8_recipe_conflict + !fp8_e5m2_forward + !frozen_quantized +
                                !frozen_no_state + !fp8_storage_scale + !grad_accum_width;
  /// All rules hold.
  static constexpr bool all = failed == 0;
};

/// Every role of a policy, by name. Instantiating it checks the rules.
///
/// Types (`none_t` where a role holds nothing): `param_type`, `master_type`, `grad_type`,
/// `grad_accum_type`, `gemm_compute_type` (as stated: a scalar, an `fp8::Compute` tag or
/// `quant::int8_rowwise`), `gemm_forward_type` / `gemm_backward_type` (operand element types:
/// e4m3 / e5m2 under HYBRID), `compute_type` (other compute), `accumulate_type`, `comm_type`,
/// `state_type`, `moment1_type`, `moment2_type`, `activation_type`, `residual_type`,
/// `update_math_type`.
/// Values: `loss_scaling`, `recipe`, `update_rounding`, `fp8_format`. Flags: `is_mixed`, `is_fp8`,
/// `is_frozen`, `needs_master`, `stochastic_rounding`, `is_quantized_param`, `loss_scaling_stated`.
/// @tparam P  a policy
template <PrecisionPolicy P>
struct policy_traits {
 private:
  using r_ = detail::resolved_roles<typename P::stated_roles>;
  using rules_ = policy_rules<P>;

 public:
  static_assert(rules_::role_type,
                "mixtape rule [role-type]: every role holds a storage format (f16, bf16, e4m3, e5m2, f32, f64, "
                "quant::scaled<T>, or a quant:: block format for parameters and moments) or none_t where a role may "
                "be empty; the GEMM compute role takes a scalar, an fp8::Compute tag or quant::int8_rowwise");
  static_assert(rules_::compute_type,
                "mixtape rule [compute-type]: other compute, the residual stream and update math are 16/32/64-bit "
                "float scalars and accumulation is f32 or f64");
  static_assert(rules_::master_or_sr,
                "mixtape rule [master-or-sr]: a parameter narrower than its update math is trainable only with a "
                "master copy or stochastic rounding (or Kahan compensation, or a stated "
                "role::update_rounding<UpdateRounding::nearest>)");
  static_assert(rules_::master_width,
                "mixtape rule [master-width]: a master copy must be at least as wide as the parameter it backs");
  static_assert(rules_::f16_loss_scaling,
                "mixtape rule [f16-loss-scaling]: f16 gradients need a named loss-scaling choice: state "
                "role::loss_scaling<LossScaling::dynamic> (or static_scale; LossScaling::none only when stated)");
  static_assert(rules_::fp8_recipe,
                "mixtape rule [fp8-recipe]: FP8 GEMM compute needs a recipe kind: write "
                "fp8::Hybrid<fp8::RecipeKind::delayed> (or current, block, mxfp8) or state role::recipe<...>");
  static_assert(rules_::fp8_recipe_conflict,
                "mixtape rule [fp8-recipe-conflict]: a stated role::recipe must match the fp8::Compute tag's recipe "
                "kind and needs FP8 GEMM compute");
  static_assert(rules_::fp8_e5m2_forward,
                "mixtape rule [fp8-e5m2-forward]: E5M2 cannot be the forward GEMM format: use fp8::Hybrid (E4M3 "
                "forward, E5M2 backward) or fp8::E4M3");
  static_assert(rules_::frozen_quantized,
                "mixtape rule [frozen-quantized]: a block-quantized parameter (nf4, fp4, int8 row-wise) is frozen: "
                "its gradient role must be none_t; train adapters (LoRA) instead");
  static_assert(rules_::frozen_no_state,
                "mixtape rule [frozen-no-state]: a frozen parameter (gradient none_t) has no master copy, optimizer "
                "moments, gradient accumulation or communication");
  static_assert(rules_::fp8_storage_scale,
                "mixtape rule [fp8-storage-scale]: FP8 storage (parameter, master, gradient, communication, "
                "optimizer moment, saved activation) needs a scale: use quant::scaled<e4m3> or quant::scaled<e5m2>");
  static_assert(rules_::grad_accum_width,
                "mixtape rule [grad-accum-width]: gradient accumulation must be at least as wide as the gradient");

  /// The policy itself.
  using policy_type = P;
  /// Parameter storage.
  using param_type = typename r_::param;
  /// Master copy (`none_t`: none).
  using master_type = typename r_::master;
  /// Weight gradient (`none_t`: frozen).
  using grad_type = typename r_::grad;
  /// Gradient accumulation buffer.
  using grad_accum_type = typename r_::grad_accum;
  /// GEMM compute as stated (scalar, `fp8::Compute` tag or `quant::int8_rowwise`).
  using gemm_compute_type = typename r_::gemm_compute;
  /// Element type of forward GEMM operands (inputs and weights).
  using gemm_forward_type = typename r_::gemm::forward;
  /// Element type of the output-gradient operand of backward GEMMs.
  using gemm_backward_type = typename r_::gemm::backward;
  /// Other compute (element-wise, activations, attention outside the GEMMs).
  using compute_type = typename r_::compute;
  /// Accumulation of reductions (LayerNorm statistics, softmax, losses, grad norms).
  using accumulate_type = typename r_::accumulate;
  /// Gradient communication.
  using comm_type = typename r_::comm;
  /// Optimizer state as stated (the moments' default).
  using state_type = typename r_::state;
  /// First moment (AdamW m, SGD momentum).
  using moment1_type = typename r_::moment1;
  /// Second moment (AdamW v).
  using moment2_type = typename r_::moment2;
  /// Saved activations.
  using activation_type = typename r_::activation;
  /// Residual stream and embedding output.
  using residual_type = typename r_::residual;
  /// Update arithmetic (`none_t` when frozen).
  using update_math_type = typename r_::update_math;

  /// Loss-scaling kind.
  static constexpr LossScaling loss_scaling = r_::loss_scaling;
  /// Whether the loss-scaling kind was stated (rather than defaulted).
  static constexpr bool loss_scaling_stated = r_::loss_scaling_stated;
  /// FP8 recipe kind (`none` unless the GEMMs are FP8).
  static constexpr fp8::RecipeKind recipe = r_::recipe;
  /// FP8 operand formats (meaningful when `is_fp8`).
  static constexpr fp8::Format fp8_format = r_::gemm::format;
  /// Update rounding.
  static constexpr UpdateRounding update_rounding = r_::update_rounding;

  /// GEMMs run in FP8.
  static constexpr bool is_fp8 = r_::gemm::is_fp8;
  /// Parameters are stored wider than the other compute (autocast-style casts per op).
  static constexpr bool is_mixed = detail::narrower_v<compute_type, detail::storage_element_t<param_type>>;
  /// No gradient: the parameter is frozen.
  static constexpr bool is_frozen = detail::is_none_v<grad_type>;
  /// A master copy is kept.
  static constexpr bool needs_master = !detail::is_none_v<master_type>;
  /// Updates are written with stochastic rounding.
  static constexpr bool stochastic_rounding = update_rounding == UpdateRounding::stochastic;
  /// Parameter storage is a block- or row-quantized format (nf4, fp4, int8 row-wise).
  static constexpr bool is_quantized_param = quant::is_block_quantized_v<param_type>;
};

}  // namespace mixtape
