/// @file describe.hpp
/// @brief Human-readable names for role formats and a policy's role table, for `--help` listings,
///        summaries and the documentation's "which tensor is stored in which format" tables.
///
/// @code
///   for (const auto& [role, format] : role_table<precision::bf16_mixed>()) std::cout << role << ": " << format;
/// @endcode
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixtape/policy/traits.hpp"

namespace mixtape {

namespace detail {
template <class T>
struct format_namer {
  static std::string get() {
    if constexpr (quant::quant_traits<T>::is_quantized) {
      return quant::quant_traits<T>::name;
    } else {
      return numeric_traits<T>::name;
    }
  }
};
template <>
struct format_namer<none_t> {
  static std::string get() { return "none"; }
};
template <class T>
struct format_namer<quant::scaled<T>> {
  static std::string get() { return format_namer<T>::get() + "*s"; }  // stored with a per-tensor scale
};
template <fp8::Format F, fp8::RecipeKind R>
struct format_namer<fp8::Compute<F, R>> {
  static std::string get() {
    std::string s = "fp8-" + std::string(fp8::format_name(F));
    if constexpr (R != fp8::RecipeKind::none) s += "/" + std::string(fp8::recipe_kind_name(R));
    return s;
  }
};
}  // namespace detail

/// The name of a role's format: "f32", "bf16", "none", "nf4-dq", "e4m3*s" (scaled), "fp8-hybrid/delayed".
/// @tparam T  a role type of a policy
template <class T>
std::string format_name() {
  return detail::format_namer<T>::get();
}

constexpr std::string_view loss_scaling_name(LossScaling s) noexcept {
  switch (s) {
    case LossScaling::none:
      return "none";
    case LossScaling::static_scale:
      return "static";
    case LossScaling::dynamic:
      return "dynamic";
  }
  return "?";
}

constexpr std::string_view update_rounding_name(UpdateRounding r) noexcept {
  switch (r) {
    case UpdateRounding::nearest:
      return "nearest";
    case UpdateRounding::stochastic:
      return "stochastic";
    case UpdateRounding::kahan:
      return "kahan";
  }
  return "?";
}

/// Every role of `P` with its resolved format, in a fixed order.
/// @tparam P  a precision policy
template <PrecisionPolicy P>
std::vector<std::pair<std::string_view, std::string>> role_table() {
  using T = policy_traits<P>;
  return {
      {"parameter", format_name<typename T::param_type>()},
      {"master", format_name<typename T::master_type>()},
      {"gradient", format_name<typename T::grad_type>()},
      {"grad accumulation", format_name<typename T::grad_accum_type>()},
      {"GEMM compute", format_name<typename T::gemm_compute_type>()},
      {"other compute", format_name<typename T::compute_type>()},
      {"accumulate", format_name<typename T::accumulate_type>()},
      {"residual stream", format_name<typename T::residual_type>()},
      {"saved activations", format_name<typename T::activation_type>()},
      {"communication", format_name<typename T::comm_type>()},
      {"moment 1", format_name<typename T::moment1_type>()},
      {"moment 2", format_name<typename T::moment2_type>()},
      {"update math", format_name<typename T::update_math_type>()},
      {"update rounding", std::string(update_rounding_name(T::update_rounding))},
      {"loss scaling", std::string(loss_scaling_name(T::loss_scaling))},
      {"FP8 recipe", std::string(fp8::recipe_kind_name(T::recipe))},
  };
}

}  // namespace mixtape
