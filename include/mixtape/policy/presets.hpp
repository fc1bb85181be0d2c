/// @file presets.hpp
/// @brief Lightning's precision presets ("32-true", "64-true", "16-true", "bf16-true", "16-mixed",
///        "bf16-mixed" and the aliases "32", "64", "16", "bf16") as policies, and their family list
///        `precision::lightning_presets`; mixtape's two documented variants of the true half presets
///        ("bf16-true-sr", "16-true-f32-state") in `precision::mixtape_presets`; both in `all_presets`.
///
/// Semantics: precision-reference.md sections 2 and 8. "true" presets store parameters,
/// gradients and optimizer state in one type and do the update in it (torch's optimizers compute in
/// the parameter's dtype), with no master copy and no loss scaler (Lightning has none, not even for
/// 16-true, whose `LossScaling::none` is therefore *stated*). "mixed" presets keep f32 parameters,
/// gradients and state, run autocast's GEMM list in the half type (owned compute copy) and the rest
/// as torch.autocast does; 16-mixed uses a dynamic loss scaler (GradScaler(2^16, 2.0, 0.5, 2000);
/// the numbers are runtime configuration).
///
/// @code
///   nn::Linear<precision::bf16_mixed> fc(ctx, 768, 3072);
///   dispatch<precision::lightning_presets>("bf16", Train{});  // -> bf16_mixed
/// @endcode
#pragma once

#include <array>
#include <string_view>

#include "mixtape/policy/registry.hpp"
#include "mixtape/policy/traits.hpp"

namespace mixtape::precision {

/// "32-true" (alias "32"): everything f32 (Lightning's default).
struct f32_true : Policy<f32, f32, f32, f32> {
  static constexpr std::string_view name = "32-true";
  static constexpr std::string_view description = "f32 parameters, compute, gradients and optimizer state";
  static constexpr std::array<std::string_view, 1> aliases{"32"};
};

/// "64-true" (alias "64"): everything f64 (`DoublePrecision`).
struct f64_true : Policy<f64, f64, f64, f64> {
  static constexpr std::string_view name = "64-true";
  static constexpr std::string_view description = "f64 parameters, compute, gradients and optimizer state";
  static constexpr std::array<std::string_view, 1> aliases{"64"};
};

/// "16-true": everything f16, no master copy, no loss scaler (stated, as Lightning's `HalfPrecision`).
struct f16_true : PolicyWith<Policy<f16, f16, f16, f16>, role::loss_scaling<LossScaling::none>> {
  static constexpr std::string_view name = "16-true";
  static constexpr std::string_view description =
      "f16 parameters, compute, gradients and optimizer state; no master copy; no loss scaling (stated)";
};

/// "bf16-true": everything bf16, no master copy, no loss scaler.
struct bf16_true : Policy<bf16, bf16, bf16, bf16> {
  static constexpr std::string_view name = "bf16-true";
  static constexpr std::string_view description =
      "bf16 parameters, compute, gradients and optimizer state; no master copy";
};

/// "16-mixed" (alias "16"): f32 parameters, gradients and state; f16 autocast; dynamic loss scaling.
struct f16_mixed : PolicyWith<Policy<f32, f16, f32, f32>, role::loss_scaling<LossScaling::dynamic>> {
  static constexpr std::string_view name = "16-mixed";
  static constexpr std::string_view description =
      "f32 parameters, gradients and optimizer state; f16 autocast compute; dynamic loss scaling";
  static constexpr std::array<std::string_view, 1> aliases{"16"};
};

/// "bf16-mixed" (alias "bf16"): f32 parameters, gradients and state; bf16 autocast; no loss scaling.
struct bf16_mixed : Policy<f32, bf16, f32, f32> {
  static constexpr std::string_view name = "bf16-mixed";
  static constexpr std::string_view description =
      "f32 parameters, gradients and optimizer state; bf16 autocast compute";
  static constexpr std::array<std::string_view, 1> aliases{"bf16"};
};

/// Lightning's presets, in Lightning's listing order.
using lightning_presets = preset_list<f32_true, f64_true, f16_true, bf16_true, f16_mixed, bf16_mixed>;

/// "bf16-true-sr": bf16-true whose update is computed in f32 and stored with stochastic rounding
/// (parameters and moments), so updates smaller than half a bf16 ulp still move the weights on
/// average. Same 8 bytes per parameter as bf16-true; no master copy.
struct bf16_true_sr
    : PolicyWith<bf16_true, role::update_math<f32>, role::update_rounding<UpdateRounding::stochastic>> {
  static constexpr std::string_view name = "bf16-true-sr";
  static constexpr std::string_view description =
      "bf16 parameters, compute, gradients and state; f32 update math, stochastic rounding";
};

/// "16-true-f32-state": 16-true with AdamW's moments in f32 (12 bytes per parameter instead of 8).
/// An f16 second moment underflows for gradients below about 2.4e-4 (g^2 under f16's smallest
/// subnormal), after which Adam divides by eps alone and the step explodes for those weights: the
/// gradient-norm spikes that leave Lightning's 16-true (and the peer's) behind the other presets.
/// The parameter stays f16 and is written with nearest rounding (stated).
struct f16_true_f32_state
    : PolicyWith<f16_true, role::state<f32>, role::update_rounding<UpdateRounding::nearest>> {
  static constexpr std::string_view name = "16-true-f32-state";
  static constexpr std::string_view description =
      "f16 parameters, compute and gradients; f32 AdamW moments; no loss scaling (stated)";
};

/// mixtape's documented variants of the true half presets.
using mixtape_presets = preset_list<bf16_true_sr, f16_true_f32_state>;

/// Every preset the examples accept: Lightning's, then mixtape's.
using all_presets = concat_presets_t<lightning_presets, mixtape_presets>;

}  // namespace mixtape::precision
