/// @file recipe_kind.hpp
/// @brief Compile-time FP8 recipe kinds and FP8 GEMM format tags (the part of a recipe that is in
///        the type).
///
/// A policy names *which kind* of scaling recipe its FP8 GEMMs use; the recipe's numbers (margin,
/// amax history length, amax algorithm, power-of-two scales) are a runtime object in `fp8/`, so
/// sweeping them needs no new instantiation (design.md, "Policy roles").
///
/// Usage, as the GEMM-compute parameter of a policy:
/// @code
///   using te_bf16 = Policy<bf16, fp8::Hybrid<fp8::RecipeKind::delayed>, bf16, bf16>;
///   static_assert(policy_traits<te_bf16>::recipe == fp8::RecipeKind::delayed);
/// @endcode
///
/// This header depends on nothing else in mixtape: formats are named by enumerators, and the policy
/// layer maps them onto the scalar types `e4m3` / `e5m2`.
#pragma once

#include <string_view>
#include <type_traits>

namespace mixtape::fp8 {

/// The kind of scaling recipe (TransformerEngine's recipe classes, precision-reference.md 3.1).
enum class RecipeKind {
  none,     ///< no recipe: not an FP8 policy (or, on an FP8 GEMM, a rule violation)
  delayed,  ///< per-tensor scale from an amax history (TE `DelayedScaling`, MS-AMP's window)
  current,  ///< per-tensor scale from the current amax (TE `Float8CurrentScaling`)
  block,    ///< 1x128 / 128x128 FP32 block scales (TE `Float8BlockScaling`)
  mxfp8,    ///< 1x32 blocks with an E8M0 scale (TE `MXFP8BlockScaling`)
};

/// The FP8 data formats of the GEMM operands (TE `Format`).
enum class Format {
  e4m3,    ///< E4M3 for every operand (block and MXFP8 recipes)
  e5m2,    ///< E5M2 for every operand (rejected as a forward format, rule [fp8-e5m2-forward])
  hybrid,  ///< E4M3 forward (inputs, weights), E5M2 backward (output gradients): TE's default
};

/// "none", "delayed", "current", "block", "mxfp8".
constexpr std::string_view recipe_kind_name(RecipeKind kind) noexcept {
  switch (kind) {
    case RecipeKind::none:
      return "none";
    case RecipeKind::delayed:
      return "delayed";
    case RecipeKind::current:
      return "current";
    case RecipeKind::block:
      return "block";
    case RecipeKind::mxfp8:
      return "mxfp8";
  }
  return "?";
}

/// "e4m3", "e5m2", "hybrid".
constexpr std::string_view format_name(Format format) noexcept {
  switch (format) {
    case Format::e4m3:
      return "e4m3";
    case Format::e5m2:
      return "e5m2";
    case Format::hybrid:
      return "hybrid";
  }
  return "?";
}

/// Tag for "the GEMMs run in FP8": used as the `ComputeT` of a `Policy` (or a `role::gemm_compute`
/// override). It carries no data; the element types follow from the format.
/// @tparam F  operand formats (forward E4M3 / backward E5M2 for `Format::hybrid`)
/// @tparam R  scaling recipe kind; `RecipeKind::none` leaves it to a `role::recipe` statement (and
///            fails rule [fp8-recipe] when nothing states it)
template <Format F, RecipeKind R = RecipeKind::none>
struct Compute {
  static constexpr Format format = F;
  static constexpr RecipeKind recipe = R;
};

/// E4M3 forward, E5M2 backward (TE `Format.HYBRID`, Lightning's TE plugin, MS-AMP).
/// @tparam R  scaling recipe kind
template <RecipeKind R = RecipeKind::none>
using Hybrid = Compute<Format::hybrid, R>;

/// E4M3 for every operand (TE block / MXFP8 recipes).
/// @tparam R  scaling recipe kind
template <RecipeKind R = RecipeKind::none>
using E4M3 = Compute<Format::e4m3, R>;

/// E5M2 for every operand; expressible only so that rule [fp8-e5m2-forward] can name it.
/// @tparam R  scaling recipe kind
template <RecipeKind R = RecipeKind::none>
using E5M2 = Compute<Format::e5m2, R>;

namespace detail {
template <class T>
struct is_compute_tag : std::false_type {};
template <Format F, RecipeKind R>
struct is_compute_tag<Compute<F, R>> : std::true_type {};
}  // namespace detail

/// True for the `fp8::Compute` tags.
/// @tparam T  any type
template <class T>
inline constexpr bool is_compute_tag_v = detail::is_compute_tag<T>::value;

}  // namespace mixtape::fp8
