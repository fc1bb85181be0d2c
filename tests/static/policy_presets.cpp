/// @file policy_presets.cpp
/// @brief Compile-time checks of the Lightning presets: every role, the concept, the memory model,
///        the defaults and how overrides re-derive them (precision-reference.md sections 2 and 8).
#include <type_traits>

#include "mixtape/policy.hpp"

namespace {

using namespace mixtape;
namespace pr = mixtape::precision;
template <class A, class B>
constexpr bool same = std::is_same_v<A, B>;

// ---- The concept -------------------------------------------------------------------------------
static_assert(!PrecisionPolicy<int>);
static_assert(!PrecisionPolicy<f32>);
static_assert(!PrecisionPolicy<role_list<role::param<f32>>>);
struct OnlyParam {
  using stated_roles = role_list<role::param<f32>>;
};
static_assert(!PrecisionPolicy<OnlyParam>);  // the four primary roles are required
static_assert(PrecisionPolicy<Policy<f32, f32, f32, f32>>);
static_assert(PrecisionPolicy<pr::f32_true> && PrecisionPolicy<pr::f64_true> && PrecisionPolicy<pr::f16_true> &&
              PrecisionPolicy<pr::bf16_true> && PrecisionPolicy<pr::f16_mixed> && PrecisionPolicy<pr::bf16_mixed>);
static_assert(Preset<pr::bf16_mixed> && !Preset<Policy<f32, bf16, f32, f32>>);
// A rule-breaking policy is still a PrecisionPolicy; the rules speak through policy_traits.
static_assert(PrecisionPolicy<Policy<bf16, bf16, bf16, f32>> && !policy_rules<Policy<bf16, bf16, bf16, f32>>::all);

// ---- 32-true / 64-true -------------------------------------------------------------------------
template <class P, class T>
constexpr bool all_roles_are() {
  using X = policy_traits<P>;
  return same<typename X::param_type, T> && same<typename X::grad_type, T> && same<typename X::grad_accum_type, T> &&
         same<typename X::gemm_compute_type, T> && same<typename X::gemm_forward_type, T> &&
         same<typename X::gemm_backward_type, T> && same<typename X::compute_type, T> &&
         same<typename X::comm_type, T> && same<typename X::moment1_type, T> && same<typename X::moment2_type, T> &&
         same<typename X::activation_type, T> && same<typename X::residual_type, T> &&
         same<typename X::update_math_type, T> && same<typename X::master_type, none_t> && !X::needs_master &&
         !X::is_mixed && !X::is_fp8 && !X::is_frozen && X::recipe == fp8::RecipeKind::none &&
         X::update_rounding == UpdateRounding::nearest && !X::stochastic_rounding && !X::is_quantized_param;
}
static_assert(all_roles_are<pr::f32_true, f32>());
static_assert(all_roles_are<pr::f64_true, f64>());
static_assert(all_roles_are<pr::f16_true, f16>());
static_assert(all_roles_are<pr::bf16_true, bf16>());

static_assert(same<policy_traits<pr::f32_true>::accumulate_type, f32>);
static_assert(same<policy_traits<pr::f64_true>::accumulate_type, f64>);  // f64 all the way down
static_assert(same<policy_traits<pr::f16_true>::accumulate_type, f32>);
static_assert(same<policy_traits<pr::bf16_true>::accumulate_type, f32>);

// ---- Loss scaling: none except 16-mixed; 16-true states its none ----------------------------------
static_assert(policy_traits<pr::f32_true>::loss_scaling == LossScaling::none);
static_assert(policy_traits<pr::f64_true>::loss_scaling == LossScaling::none);
static_assert(policy_traits<pr::bf16_true>::loss_scaling == LossScaling::none);
static_assert(policy_traits<pr::bf16_mixed>::loss_scaling == LossScaling::none);
static_assert(policy_traits<pr::f16_true>::loss_scaling == LossScaling::none &&
              policy_traits<pr::f16_true>::loss_scaling_stated);
static_assert(policy_traits<pr::f16_mixed>::loss_scaling == LossScaling::dynamic);
// The bare four-parameter 16-mixed gets dynamic by default (torch.amp's convention) ...
static_assert(policy_traits<Policy<f32, f16, f32, f32>>::loss_scaling == LossScaling::dynamic &&
              !policy_traits<Policy<f32, f16, f32, f32>>::loss_scaling_stated);
// ... the bare 16-true has no default: the choice must be stated (rule [f16-loss-scaling]).
static_assert(!policy_rules<Policy<f16, f16, f16, f16>>::f16_loss_scaling);
static_assert(policy_rules<Policy<f16, f16, f16, f16>>::failed == 1);

// ---- 16-mixed / bf16-mixed ---------------------------------------------------------------------
template <class P, class Half>
constexpr bool mixed_roles() {
  using X = policy_traits<P>;
  return same<typename X::param_type, f32> && same<typename X::grad_type, f32> &&
         same<typename X::grad_accum_type, f32> && same<typename X::moment1_type, f32> &&
         same<typename X::moment2_type, f32> && same<typename X::master_type, none_t> &&
         same<typename X::gemm_compute_type, Half> && same<typename X::gemm_forward_type, Half> &&
         same<typename X::gemm_backward_type, Half> && same<typename X::compute_type, Half> &&
         same<typename X::activation_type, Half> && same<typename X::residual_type, f32> &&
         same<typename X::accumulate_type, f32> && same<typename X::comm_type, f32> &&
         same<typename X::update_math_type, f32> && X::is_mixed && !X::needs_master && !X::is_fp8;
}
static_assert(mixed_roles<pr::f16_mixed, f16>());
static_assert(mixed_roles<pr::bf16_mixed, bf16>());

// ---- Memory model (bytes per parameter) --------------------------------------------------------
template <class P>
using mm = memory_model<P>;
static_assert(mm<pr::f32_true>::weight == 4 && mm<pr::f32_true>::compute_copy == 0 && mm<pr::f32_true>::master == 0 &&
              mm<pr::f32_true>::gradient == 4 && mm<pr::f32_true>::adamw_state == 8 &&
              mm<pr::f32_true>::sgd_momentum_state == 4);
static_assert(mm<pr::f32_true>::adamw_total == 16 && mm<pr::f32_true>::sgd_total == 12);
static_assert(mm<pr::f64_true>::adamw_total == 32 && mm<pr::f64_true>::sgd_total == 24);
static_assert(mm<pr::f16_true>::adamw_total == 8 && mm<pr::f16_true>::sgd_total == 6);
static_assert(mm<pr::bf16_true>::adamw_total == 8 && mm<pr::bf16_true>::sgd_total == 6);
// f32 weight 4 + owned half compute copy 2 + f32 gradient 4 + f32 m, v 8.
static_assert(mm<pr::f16_mixed>::weight == 4 && mm<pr::f16_mixed>::compute_copy == 2 &&
              mm<pr::f16_mixed>::gradient == 4 && mm<pr::f16_mixed>::adamw_state == 8 &&
              mm<pr::f16_mixed>::grad_accum == 0 && mm<pr::f16_mixed>::compensation == 0);
static_assert(mm<pr::f16_mixed>::adamw_total == 18 && mm<pr::f16_mixed>::sgd_total == 14);
static_assert(mm<pr::bf16_mixed>::adamw_total == 18 && mm<pr::bf16_mixed>::sgd_total == 14);

// ---- Overrides: stated roles win, unstated ones re-derive from them ---------------------------------
// An f32 master on bf16-true (Megatron-style bf16 weights): update math follows the master.
using BfMaster = PolicyWith<pr::bf16_true, role::master<f32>>;
static_assert(same<policy_traits<BfMaster>::master_type, f32> && policy_traits<BfMaster>::needs_master);
static_assert(same<policy_traits<BfMaster>::update_math_type, f32>);
static_assert(same<policy_traits<BfMaster>::moment1_type, bf16>);  // still the state type
static_assert(mm<BfMaster>::adamw_total == 2 + 4 + 2 + 4);
// Overriding the state re-derives both moments; a moment override wins over the state.
using SplitState = PolicyWith<pr::f32_true, role::state<bf16>, role::moment2<f32>>;
static_assert(same<policy_traits<SplitState>::moment1_type, bf16> &&
              same<policy_traits<SplitState>::moment2_type, f32>);
// A later statement wins over an earlier one.
using Twice = PolicyWith<PolicyWith<pr::f32_true, role::compute<bf16>>, role::compute<f16>>;
static_assert(same<policy_traits<Twice>::compute_type, f16> && same<policy_traits<Twice>::activation_type, f16>);
// Overriding the GEMM compute re-derives other compute, activations and the loss-scaling default.
using Gemm16 = PolicyWith<pr::bf16_mixed, role::gemm_compute<f16>>;
static_assert(same<policy_traits<Gemm16>::compute_type, f16> &&
              policy_traits<Gemm16>::loss_scaling == LossScaling::dynamic);
// Autocast-style split: GEMMs in bf16, everything else f32.
using GemmOnly = PolicyWith<pr::bf16_mixed, role::compute<f32>>;
static_assert(same<policy_traits<GemmOnly>::gemm_forward_type, bf16> &&
              same<policy_traits<GemmOnly>::compute_type, f32> && !policy_traits<GemmOnly>::is_mixed);
// Gradient communication in bf16 (FSDP MixedPrecision reduce_dtype), accumulation stays f32.
using CommBf16 = PolicyWith<pr::bf16_mixed, role::comm<bf16>>;
static_assert(same<policy_traits<CommBf16>::comm_type, bf16> && same<policy_traits<CommBf16>::grad_accum_type, f32>);
// A user preset deriving from PolicyWith keeps working when roles are added (it names only its own).
struct MyPolicy : PolicyWith<pr::bf16_true, role::update_rounding<UpdateRounding::stochastic>, role::update_math<f32>> {
};
static_assert(policy_traits<MyPolicy>::stochastic_rounding && policy_rules<MyPolicy>::all);
static_assert(same<policy_traits<MyPolicy>::policy_type, MyPolicy>);

// ---- Rule verdicts beyond the compile-fail pairs -----------------------------------------------------
// [master-or-sr]: the narrower-parameter case is fixed by any of: master, stochastic rounding,
// Kahan compensation, a stated round-to-nearest.
using Narrow = Policy<bf16, bf16, bf16, f32>;
static_assert(!policy_rules<Narrow>::master_or_sr);
static_assert(policy_rules<PolicyWith<Narrow, role::master<f32>>>::all);
static_assert(policy_rules<PolicyWith<Narrow, role::update_rounding<UpdateRounding::stochastic>>>::all);
static_assert(policy_rules<PolicyWith<Narrow, role::update_rounding<UpdateRounding::kahan>>>::all);
static_assert(policy_rules<PolicyWith<Narrow, role::update_rounding<UpdateRounding::nearest>>>::all);
static_assert(mm<PolicyWith<Narrow, role::update_rounding<UpdateRounding::kahan>>>::compensation == 2);
// f16 parameters with bf16 state: neither holds the other, so the update runs in f32.
static_assert(same<policy_traits<PolicyWith<Narrow, role::state<f16>, role::master<f32>>>::update_math_type, f32>);
// A frozen parameter has no update math.
static_assert(same<policy_traits<Policy<f32, f32, none_t, none_t>>::update_math_type, none_t> &&
              policy_traits<Policy<f32, f32, none_t, none_t>>::is_frozen);
static_assert(mm<Policy<f32, f32, none_t, none_t>>::adamw_total == 4);
// [fp8-recipe]: a recipe may also be stated next to a recipe-less tag or a raw e4m3 compute type.
static_assert(
    policy_rules<PolicyWith<Policy<bf16, fp8::Hybrid<>, bf16, bf16>, role::recipe<fp8::RecipeKind::current>>>::all);
static_assert(!policy_rules<Policy<bf16, e4m3, bf16, bf16>>::fp8_recipe);
static_assert(policy_rules<PolicyWith<Policy<bf16, e4m3, bf16, bf16>, role::recipe<fp8::RecipeKind::current>>>::all);
// [fp8-recipe-conflict]: a recipe without FP8 GEMMs.
static_assert(!policy_rules<PolicyWith<pr::bf16_mixed, role::recipe<fp8::RecipeKind::delayed>>>::fp8_recipe_conflict);
// [fp8-e5m2-forward]: a raw e5m2 compute type is an E5M2 forward GEMM.
static_assert(!policy_rules<
              PolicyWith<Policy<bf16, e5m2, bf16, bf16>, role::recipe<fp8::RecipeKind::delayed>>>::fp8_e5m2_forward);
// [fp8-storage-scale]: raw FP8 parameters, gradients or activations.
static_assert(!policy_rules<Policy<e4m3, bf16, none_t, none_t>>::fp8_storage_scale);
static_assert(!policy_rules<Policy<f32, f32, e5m2, f32>>::fp8_storage_scale);
static_assert(!policy_rules<PolicyWith<pr::bf16_mixed, role::activation<e4m3>>>::fp8_storage_scale);
static_assert(policy_rules<PolicyWith<pr::bf16_mixed, role::activation<quant::scaled<e4m3>>>>::all);
// [role-type]: a block format cannot be a gradient; none_t cannot be the parameter.
static_assert(!policy_rules<Policy<f32, f32, quant::nf4, f32>>::role_type);
static_assert(!policy_rules<Policy<none_t, f32, f32, f32>>::role_type);
static_assert(!policy_rules<Policy<f32, quant::nf4, f32, f32>>::role_type);

// ---- mixtape's variants of the true half presets -----------------------------------------------
static_assert(same<policy_traits<pr::bf16_true_sr>::param_type, bf16> &&
              same<policy_traits<pr::bf16_true_sr>::update_math_type, f32> &&
              policy_traits<pr::bf16_true_sr>::stochastic_rounding && !policy_traits<pr::bf16_true_sr>::needs_master &&
              memory_model<pr::bf16_true_sr>::adamw_total == 8.0);
static_assert(same<policy_traits<pr::f16_true_f32_state>::param_type, f16> &&
              same<policy_traits<pr::f16_true_f32_state>::grad_type, f16> &&
              same<policy_traits<pr::f16_true_f32_state>::moment1_type, f32> &&
              same<policy_traits<pr::f16_true_f32_state>::moment2_type, f32> &&
              same<policy_traits<pr::f16_true_f32_state>::update_math_type, f32> &&
              policy_traits<pr::f16_true_f32_state>::update_rounding == UpdateRounding::nearest &&
              policy_traits<pr::f16_true_f32_state>::loss_scaling == LossScaling::none &&
              memory_model<pr::f16_true_f32_state>::adamw_total == 12.0);
static_assert(PresetRegistry<pr::all_presets>::kSize == 8 && PresetRegistry<pr::all_presets>::find("bf16-true-sr") == 6 &&
              PresetRegistry<pr::all_presets>::find("16-true-f32-state") == 7);

}  // namespace

// Explicit instantiation of every preset's traits checks all rules for it.
template struct mixtape::policy_traits<mixtape::precision::f32_true>;
template struct mixtape::policy_traits<mixtape::precision::f64_true>;
template struct mixtape::policy_traits<mixtape::precision::f16_true>;
template struct mixtape::policy_traits<mixtape::precision::bf16_true>;
template struct mixtape::policy_traits<mixtape::precision::f16_mixed>;
template struct mixtape::policy_traits<mixtape::precision::bf16_mixed>;
template struct mixtape::policy_traits<mixtape::precision::bf16_true_sr>;
template struct mixtape::policy_traits<mixtape::precision::f16_true_f32_state>;

// The checks above run at compile time; this case makes the executable a ctest that says so.
#include <catch2/catch.hpp>
TEST_CASE("policy static checks compiled", "[static][policy]") { SUCCEED("static_asserts of presets and shapes hold"); }

