/// @file policy_reference_shapes.cpp
/// @brief Every mode of precision-reference.md (sections 2, 4, 5, 8) written as a policy, exactly as
///        docs/precision.md shows it: TransformerEngine FP8 (Lightning and Megatron style, each
///        recipe kind), MS-AMP O1-O3, bitsandbytes nf4/fp4 (+dq), int8, int8-training, Adam8bit,
///        and the planned bf16-true with stochastic rounding / Kahan compensation. Each shape's
///        traits are instantiated (so every rule holds) and its roles and bytes per parameter checked.
#include <type_traits>

#include "mixtape/policy.hpp"

namespace shapes {

using namespace mixtape;
using fp8::RecipeKind;
template <class A, class B>
constexpr bool same = std::is_same_v<A, B>;
template <class P>
using T = policy_traits<P>;
template <class P>
using mm = memory_model<P>;

// ---- TransformerEngine ---------------------------------------------------------------------------------
// Lightning "transformer-engine": bf16 weights, grads and state (no master), FP8 HYBRID GEMMs with
// DelayedScaling, the rest in bf16 (fallback_compute_dtype = weights_dtype).
using te_lightning = Policy<bf16, fp8::Hybrid<RecipeKind::delayed>, bf16, bf16>;
// Lightning "transformer-engine-float16": the same in f16; Lightning adds no GradScaler (stated none).
using te_lightning_f16 =
    PolicyWith<Policy<f16, fp8::Hybrid<RecipeKind::delayed>, f16, f16>, role::loss_scaling<LossScaling::none>>;
// Megatron style: bf16 weights with an f32 master, f32 main_grad and state, FP8 GEMMs.
using te_megatron = PolicyWith<Policy<bf16, fp8::Hybrid<RecipeKind::delayed>, f32, f32>, role::master<f32>>;
// The other recipe kinds (TE Float8CurrentScaling, MXFP8BlockScaling, Float8BlockScaling).
using te_current = Policy<bf16, fp8::Hybrid<RecipeKind::current>, bf16, bf16>;
using te_mxfp8 = Policy<bf16, fp8::E4M3<RecipeKind::mxfp8>, bf16, bf16>;
using te_block = Policy<bf16, fp8::E4M3<RecipeKind::block>, bf16, bf16>;
// The recipe kind may be stated as a role instead of in the tag.
using te_stated_recipe = PolicyWith<Policy<bf16, fp8::Hybrid<>, bf16, bf16>, role::recipe<RecipeKind::delayed>>;

static_assert(T<te_lightning>::is_fp8 && T<te_lightning>::recipe == RecipeKind::delayed &&
              T<te_lightning>::fp8_format == fp8::Format::hybrid);
static_assert(same<T<te_lightning>::gemm_forward_type, e4m3> && same<T<te_lightning>::gemm_backward_type, e5m2>);
static_assert(same<T<te_lightning>::compute_type, bf16> && same<T<te_lightning>::activation_type, bf16> &&
              same<T<te_lightning>::accumulate_type, f32> && same<T<te_lightning>::update_math_type, bf16>);
static_assert(!T<te_lightning>::needs_master && !T<te_lightning>::is_mixed &&
              T<te_lightning>::loss_scaling == LossScaling::none);
static_assert(T<te_lightning_f16>::loss_scaling == LossScaling::none && same<T<te_lightning_f16>::compute_type, f16>);
static_assert(same<T<te_megatron>::master_type, f32> && same<T<te_megatron>::update_math_type, f32> &&
              same<T<te_megatron>::compute_type, bf16> && same<T<te_megatron>::grad_type, f32>);
static_assert(same<T<te_lightning>::residual_type, bf16> && same<T<te_megatron>::residual_type, bf16>);
static_assert(T<te_current>::recipe == RecipeKind::current && T<te_mxfp8>::recipe == RecipeKind::mxfp8 &&
              T<te_block>::recipe == RecipeKind::block);
static_assert(same<T<te_mxfp8>::gemm_forward_type, e4m3> && same<T<te_mxfp8>::gemm_backward_type, e4m3>);
static_assert(T<te_stated_recipe>::recipe == RecipeKind::delayed);
// bf16 weight 2 + FP8 copy and transpose 2 + bf16 grad 2 + bf16 m, v 4.
static_assert(mm<te_lightning>::compute_copy == 2 && mm<te_lightning>::adamw_total == 10);
static_assert(mm<te_megatron>::adamw_total == 2 + 2 + 4 + 4 + 8);
static_assert(mm<te_mxfp8>::compute_copy == 2 * (1 + 1.0 / 32));  // + one E8M0 scale per 32 per copy
static_assert(mm<te_block>::compute_copy == 2 * (1 + 4.0 / (128 * 128)));

// ---- MS-AMP -------------------------------------------------------------------------------------------
// O1: f16 weights with a per-tensor scale (no master), FP8 GEMMs, E4M3 gradients with a scale (also the
// all-reduce), f32 AdamW moments. LBAdamW computes in fp32 and writes the f16 weight back with
// round-to-nearest: the shape states that choice (rule [master-or-sr]).
using msamp_o1 = PolicyWith<Policy<quant::scaled<f16>, fp8::Hybrid<RecipeKind::delayed>, quant::scaled<e4m3>, f32>,
                            role::update_rounding<UpdateRounding::nearest>>;
// O2: O1 with m in E4M3 and v in f16, both scaled.
using msamp_o2 = PolicyWith<msamp_o1, role::moment1<quant::scaled<e4m3>>, role::moment2<quant::scaled<f16>>>;
// O3 (DeepSpeed ZeRO): E4M3 weights with a scale, an f16 master with a scale.
using msamp_o3 =
    PolicyWith<Policy<quant::scaled<e4m3>, fp8::Hybrid<RecipeKind::delayed>, quant::scaled<e4m3>, f32>,
               role::master<quant::scaled<f16>>, role::moment1<quant::scaled<e4m3>>, role::moment2<quant::scaled<f16>>>;

static_assert(same<T<msamp_o1>::param_type, quant::scaled<f16>> && same<T<msamp_o1>::grad_type, quant::scaled<e4m3>> &&
              same<T<msamp_o1>::comm_type, quant::scaled<e4m3>> && same<T<msamp_o1>::moment1_type, f32> &&
              same<T<msamp_o1>::moment2_type, f32> && !T<msamp_o1>::needs_master);
static_assert(same<T<msamp_o1>::compute_type, f16> && same<T<msamp_o1>::update_math_type, f32>);
// The backward runs in f16 (compute), gradients are stored wider (scaled E4M3): dynamic loss scaling by
// default, as MS-AMP's examples use GradScaler.
static_assert(T<msamp_o1>::loss_scaling == LossScaling::dynamic);
static_assert(same<T<msamp_o2>::moment1_type, quant::scaled<e4m3>> &&
              same<T<msamp_o2>::moment2_type, quant::scaled<f16>>);
static_assert(same<T<msamp_o1>::residual_type, f16>);
static_assert(same<T<msamp_o3>::master_type, quant::scaled<f16>> && same<T<msamp_o3>::compute_type, f16> &&
              same<T<msamp_o3>::residual_type, f16> && T<msamp_o3>::needs_master);
// Bytes per parameter (the FP8 weight copy and transpose are owned by the parameter):
// O1: f16 weight 2 + FP8 copies 2 + E4M3 grad 1 + f32 m, v 8.
static_assert(mm<msamp_o1>::weight == 2 && mm<msamp_o1>::compute_copy == 2 && mm<msamp_o1>::gradient == 1 &&
              mm<msamp_o1>::adamw_state == 8 && mm<msamp_o1>::adamw_total == 13);
// O2: the reference's 6 bytes (f16 weight-as-master 2 + E4M3 grad 1 + m 1 + v 2), plus the FP8 copies 2.
static_assert(mm<msamp_o2>::weight + mm<msamp_o2>::gradient + mm<msamp_o2>::adamw_state == 6 &&
              mm<msamp_o2>::adamw_total == 8);
// O3: E4M3 weight 1 + its transpose 1 + f16 master 2 + E4M3 grad 1 + m 1 + v 2.
static_assert(mm<msamp_o3>::compute_copy == 1 && mm<msamp_o3>::adamw_total == 8);

// ---- bitsandbytes -------------------------------------------------------------------------------------
// 4-bit weights are frozen (no gradient, no state); dequantized to the compute type (bf16 when
// supported) per GEMM. Biases, norms and LoRA adapters are other parameters with their own policy.
using bnb_nf4 = Policy<quant::nf4, bf16, none_t, none_t>;
using bnb_nf4_dq = Policy<quant::nf4_dq, bf16, none_t, none_t>;
using bnb_fp4 = Policy<quant::fp4, bf16, none_t, none_t>;
using bnb_fp4_dq = Policy<quant::fp4_dq, bf16, none_t, none_t>;
// LLM.int8 inference: int8 rows + f32 SCB, frozen; int8 x int8 -> int32 GEMMs, f16 outliers and other compute.
using bnb_int8 = Policy<quant::int8_rowwise, quant::int8_rowwise, none_t, none_t>;
// LLM.int8 training: f16 weights, gradients and state (torch's optimizer follows the param), int8 GEMMs
// re-quantized every forward; no GradScaler in Lightning (stated none).
using bnb_int8_training = PolicyWith<Policy<f16, quant::int8_rowwise, f16, f16>, role::loss_scaling<LossScaling::none>>;
// Adam8bit on 32-true: 8-bit dynamic-map moments (signed m, unsigned v), blocks of 256 + f32 absmax.
using bnb_adam8bit =
    PolicyWith<precision::f32_true, role::moment1<quant::dynamic8_signed>, role::moment2<quant::dynamic8_unsigned>>;

static_assert(T<bnb_nf4>::is_frozen && T<bnb_nf4>::is_quantized_param && same<T<bnb_nf4>::compute_type, bf16> &&
              same<T<bnb_nf4>::gemm_forward_type, bf16> && same<T<bnb_nf4>::update_math_type, none_t> &&
              same<T<bnb_nf4>::comm_type, none_t> && same<T<bnb_nf4>::activation_type, bf16> &&
              same<T<bnb_nf4>::residual_type, bf16>);
static_assert(mm<bnb_nf4>::weight == 0.5 + 4.0 / 64 && mm<bnb_nf4>::compute_copy == 0 &&
              mm<bnb_nf4>::adamw_total == 0.5625);
static_assert(mm<bnb_nf4_dq>::adamw_total == 0.5 + 1.0 / 64 + 4.0 / (64 * 256));
static_assert(mm<bnb_fp4>::adamw_total == mm<bnb_nf4>::adamw_total &&
              mm<bnb_fp4_dq>::adamw_total == mm<bnb_nf4_dq>::adamw_total);
// Double quantization saves ~0.373 bit per parameter (QLoRA; Lightning's docs say 0.37).
static_assert((mm<bnb_nf4>::weight - mm<bnb_nf4_dq>::weight) * 8 > 0.372 &&
              (mm<bnb_nf4>::weight - mm<bnb_nf4_dq>::weight) * 8 < 0.374);
static_assert(T<bnb_int8>::is_frozen && same<T<bnb_int8>::gemm_forward_type, quant::int8_rowwise> &&
              same<T<bnb_int8>::compute_type, f16> && mm<bnb_int8>::adamw_total == 1);
static_assert(!T<bnb_int8_training>::is_frozen && same<T<bnb_int8_training>::compute_type, f16> &&
              T<bnb_int8_training>::loss_scaling == LossScaling::none && mm<bnb_int8_training>::adamw_total == 8);
static_assert(same<T<bnb_adam8bit>::update_math_type, f32> && mm<bnb_adam8bit>::adamw_state == 2 * (1 + 4.0 / 256) &&
              mm<bnb_adam8bit>::adamw_total == 4 + 4 + 2 * (1 + 4.0 / 256) &&
              mm<bnb_adam8bit>::sgd_momentum_state == 1 + 4.0 / 256);

// ---- Planned: pure-bf16 training with f32 update math (reference 7.14) -----------------------------------
using bf16_true_sr =
    PolicyWith<precision::bf16_true, role::update_math<f32>, role::update_rounding<UpdateRounding::stochastic>>;
using bf16_true_kahan =
    PolicyWith<precision::bf16_true, role::update_math<f32>, role::update_rounding<UpdateRounding::kahan>>;
static_assert(T<bf16_true_sr>::stochastic_rounding && mm<bf16_true_sr>::adamw_total == 8);
static_assert(mm<bf16_true_kahan>::compensation == 2 && mm<bf16_true_kahan>::adamw_total == 10);
// Without the rounding statement the same shape breaks [master-or-sr].
static_assert(!policy_rules<PolicyWith<precision::bf16_true, role::update_math<f32>>>::master_or_sr);

}  // namespace shapes

// Instantiating each shape's traits checks every rule.
template struct mixtape::policy_traits<shapes::te_lightning>;
template struct mixtape::policy_traits<shapes::te_lightning_f16>;
template struct mixtape::policy_traits<shapes::te_megatron>;
template struct mixtape::policy_traits<shapes::te_current>;
template struct mixtape::policy_traits<shapes::te_mxfp8>;
template struct mixtape::policy_traits<shapes::te_block>;
template struct mixtape::policy_traits<shapes::te_stated_recipe>;
template struct mixtape::policy_traits<shapes::msamp_o1>;
template struct mixtape::policy_traits<shapes::msamp_o2>;
template struct mixtape::policy_traits<shapes::msamp_o3>;
template struct mixtape::policy_traits<shapes::bnb_nf4>;
template struct mixtape::policy_traits<shapes::bnb_nf4_dq>;
template struct mixtape::policy_traits<shapes::bnb_fp4>;
template struct mixtape::policy_traits<shapes::bnb_fp4_dq>;
template struct mixtape::policy_traits<shapes::bnb_int8>;
template struct mixtape::policy_traits<shapes::bnb_int8_training>;
template struct mixtape::policy_traits<shapes::bnb_adam8bit>;
template struct mixtape::policy_traits<shapes::bf16_true_sr>;
template struct mixtape::policy_traits<shapes::bf16_true_kahan>;
