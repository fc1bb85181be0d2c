/// @file roles.hpp
/// @brief The vocabulary of a precision policy: role tags, `Policy<ParamT, ComputeT, GradT, StateT>`
///        and `PolicyWith<Base, Overrides...>`.
///
/// A policy *states* some roles; `policy_traits<P>` (traits.hpp) resolves every other role from
/// its default. The four-parameter `Policy` states four (parameter storage, GEMM compute, gradient,
/// optimizer state); `PolicyWith` states more on top of a base policy. A role stated later wins.
///
/// @code
///   // bf16 weights with an f32 master copy (Megatron style), everything else from the four:
///   using P = PolicyWith<Policy<bf16, bf16, f32, f32>, role::master<f32>>;
///   static_assert(std::is_same_v<policy_traits<P>::master_type, f32>);
/// @endcode
///
/// Why stated roles and not a specialized `policy_traits`: a user who specializes a traits class
/// must define every member, so adding a role would break them. A user who *states* roles never
/// names the ones they do not care about, so a new role (with its default) breaks no code.
#pragma once

#include <type_traits>

#include "mixtape/fp8/recipe_kind.hpp"
#include "mixtape/numeric/numeric.hpp"
#include "mixtape/quant/formats.hpp"

namespace mixtape {

/// "This role holds nothing": no master copy, no gradient (a frozen parameter), no optimizer state.
struct none_t {};

/// How the loss is scaled before backward (design.md: the kind is in the type, the numbers, e.g.
/// GradScaler's 2^16 / x2 / x0.5 / 2000, are runtime configuration).
enum class LossScaling {
  none,          ///< no scaling
  static_scale,  ///< one fixed scale
  dynamic,       ///< GradScaler: skip non-finite steps, back off, grow after an interval
};

/// How the optimizer writes an update into a parameter narrower than its update math (not to be
/// confused with numeric/rounding.hpp's `Rounding`, the mode of one conversion).
enum class UpdateRounding {
  nearest,     ///< round to nearest even (small updates can vanish)
  stochastic,  ///< stochastic rounding (unbiased; pytorch/ao #1124)
  kahan,       ///< round to nearest with a Kahan compensation buffer (one more parameter-sized buffer)
};

/// The role tags. Each is a template naming one role and the type (or value) it is stated to have;
/// `key` identifies the role.
namespace role {

/// Role identities (incomplete types used only as keys).
namespace key {
struct param;
struct master;
struct grad;
struct grad_accum;
struct gemm_compute;
struct compute;
struct accumulate;
struct comm;
struct state;
struct moment1;
struct moment2;
struct activation;
struct residual;
struct update_math;
struct loss_scaling;
struct recipe;
struct update_rounding;
}  // namespace key

#define MIXTAPE_DEFINE_TYPE_ROLE(Name)      \
  template <class T>                        \
  struct Name {                             \
    using key = ::mixtape::role::key::Name; \
    using type = T;                         \
  }

/// Parameter storage (the weights modules read): a scalar, `quant::scaled<T>` or a block format.
/// @tparam T  storage format
MIXTAPE_DEFINE_TYPE_ROLE(param);
/// Master copy the optimizer updates (`none_t`: the parameter is its own master). Default `none_t`.
/// @tparam T  storage format or `none_t`
MIXTAPE_DEFINE_TYPE_ROLE(master);
/// Weight gradient (`none_t`: frozen).
/// @tparam T  storage format or `none_t`
MIXTAPE_DEFINE_TYPE_ROLE(grad);
/// Gradient accumulation across micro-batches. Default: the gradient type.
/// @tparam T  storage format or `none_t`
MIXTAPE_DEFINE_TYPE_ROLE(grad_accum);
/// GEMM compute: a scalar (autocast type), an `fp8::Compute` tag, or `quant::int8_rowwise`.
/// @tparam T  compute format
MIXTAPE_DEFINE_TYPE_ROLE(gemm_compute);
/// Other compute (element-wise ops, GELU, attention outside the GEMMs). Default: the GEMM compute
/// type when it is a 16/32/64-bit scalar; for FP8 GEMMs the parameter's element type (TE's
/// `fallback_compute_dtype = weights_dtype`), for int8 GEMMs f16 (LLM.int8).
/// @tparam T  scalar format
MIXTAPE_DEFINE_TYPE_ROLE(compute);
/// Accumulation inside reductions (LayerNorm statistics, softmax, losses). Default: f64 when the
/// compute type is f64, else f32.
/// @tparam T  f32 or f64
MIXTAPE_DEFINE_TYPE_ROLE(accumulate);
/// Gradient communication (all-reduce). Default: the gradient type.
/// @tparam T  storage format or `none_t`
MIXTAPE_DEFINE_TYPE_ROLE(comm);
/// Optimizer state; the default of both moments.
/// @tparam T  storage format or `none_t`
MIXTAPE_DEFINE_TYPE_ROLE(state);
/// Optimizer first moment (AdamW m, SGD momentum). Default: the state type.
/// @tparam T  storage format or `none_t`
MIXTAPE_DEFINE_TYPE_ROLE(moment1);
/// Optimizer second moment (AdamW v). Default: the state type.
/// @tparam T  storage format or `none_t`
MIXTAPE_DEFINE_TYPE_ROLE(moment2);
/// Saved activations (what backward reads). Default: the other-compute type.
/// @tparam T  storage format
MIXTAPE_DEFINE_TYPE_ROLE(activation);
/// The residual stream and embedding output (torch.autocast leaves them in the parameter's type:
/// f32 under the mixed presets). Default: the parameter's element type when it is a 16/32/64-bit
/// scalar, else the other-compute type (block-quantized or 8-bit parameters).
/// @tparam T  scalar format
MIXTAPE_DEFINE_TYPE_ROLE(residual);
/// The type the optimizer computes the update in. Default: the widest arithmetic of parameter,
/// master and moments (a quantized format computes in f32), as torch does (its optimizers compute
/// in the state's dtype); `none_t` for a frozen parameter.
/// @tparam T  f16, bf16, f32, f64
MIXTAPE_DEFINE_TYPE_ROLE(update_math);

#undef MIXTAPE_DEFINE_TYPE_ROLE

/// Loss-scaling kind. Default: none, except where the backward runs in f16: `dynamic` when the
/// gradients are stored wider than f16 (torch.amp's 16-mixed convention), and *no default* when the
/// gradients themselves are f16 (rule [f16-loss-scaling]: the choice must be stated).
/// @tparam V  the kind
template <LossScaling V>
struct loss_scaling {
  using key = key::loss_scaling;
  static constexpr LossScaling value = V;
};

/// FP8 recipe kind. Default: the kind carried by an `fp8::Compute` tag, else `none`.
/// @tparam V  the kind
template <fp8::RecipeKind V>
struct recipe {
  using key = key::recipe;
  static constexpr fp8::RecipeKind value = V;
};

/// Update rounding. Default: `nearest` (unstated; rule [master-or-sr] distinguishes a stated one).
/// @tparam V  the rounding
template <UpdateRounding V>
struct update_rounding {
  using key = key::update_rounding;
  static constexpr UpdateRounding value = V;
};

}  // namespace role

/// An ordered list of stated roles; a later role with the same key overrides an earlier one.
/// @tparam Roles  role tags (`role::master<f32>`, `role::loss_scaling<LossScaling::none>`, ...)
template <class... Roles>
struct role_list {};

namespace detail {

/// A role nobody stated.
struct unstated_role {};

template <class R>
concept RoleTag = requires {
  typename R::key;
};

template <class T>
struct is_role_list : std::false_type {};
template <class... Rs>
struct is_role_list<role_list<Rs...>> : std::bool_constant<(RoleTag<Rs> && ...)> {};

/// The last role in `Rs...` whose key is `Key`, or `unstated_role`.
template <class Key, class... Rs>
struct find_role {
  using type = unstated_role;
};
template <class Key, class R, class... Rs>
struct find_role<Key, R, Rs...> {
  using later = typename find_role<Key, Rs...>::type;
  using type = std::conditional_t<!std::is_same_v<later, unstated_role>, later,
                                  std::conditional_t<std::is_same_v<typename R::key, Key>, R, unstated_role>>;
};

template <class Key, class List>
struct find_in_list;
template <class Key, class... Rs>
struct find_in_list<Key, role_list<Rs...>> : find_role<Key, Rs...> {};

template <class A, class B>
struct concat_roles;
template <class... As, class... Bs>
struct concat_roles<role_list<As...>, role_list<Bs...>> {
  using type = role_list<As..., Bs...>;
};

}  // namespace detail

/// The public preset: four roles stated, every other role from its default (policy_traits).
/// Preset types derive from it (`struct bf16_mixed : Policy<f32, bf16, f32, f32> {...}`).
/// @tparam ParamT    parameter storage (`f32`, `bf16`, `quant::nf4`, `quant::scaled<f16>`, ...)
/// @tparam ComputeT  GEMM compute (`bf16`, `f16`, `fp8::Hybrid<fp8::RecipeKind::delayed>`, `quant::int8_rowwise`);
///                   the other-compute role defaults from it
/// @tparam GradT     weight gradient (`none_t` for frozen parameters)
/// @tparam StateT    optimizer state: both moments (`none_t` for frozen parameters)
template <class ParamT, class ComputeT, class GradT, class StateT>
struct Policy {
  using stated_roles =
      role_list<role::param<ParamT>, role::gemm_compute<ComputeT>, role::grad<GradT>, role::state<StateT>>;
};

/// A policy with more roles stated on top of `Base` (later statements win).
/// @tparam Base       a policy (anything with a `stated_roles` role_list)
/// @tparam Overrides  role tags
template <class Base, class... Overrides>
struct PolicyWith {
  static_assert(detail::is_role_list<typename Base::stated_roles>::value,
                "PolicyWith: Base must be a policy (a type with a stated_roles role_list)");
  static_assert((detail::RoleTag<Overrides> && ...),
                "PolicyWith: every override must be a role tag, e.g. role::master<f32>");
  using stated_roles = typename detail::concat_roles<typename Base::stated_roles, role_list<Overrides...>>::type;
};

}  // namespace mixtape
