/// @file memory_model.hpp
/// @brief `memory_model<P>`: the compile-time bytes per parameter of each training buffer, which
///        the role-tagged allocator counters check to the byte (design.md, "Allocation").
///
/// Per parameter, asymptotically: per-tensor constants (an MS-AMP scale, a double-quant offset, a
/// delayed-scaling amax history) and per-row statistics (int8 row-wise, 4 bytes per row) are not
/// included; per-block statistics (bnb absmax, MXFP8 E8M0 scales) are.
///
/// @code
///   static_assert(memory_model<precision::f16_mixed>::adamw_total == 18.0);  // 4 + 2 + 4 + 8
///   const double gib = memory_model<P>::adamw_total * n_params / (1 << 30);
/// @endcode
#pragma once

#include "mixtape/policy/traits.hpp"

namespace mixtape {

namespace detail {

/// Bytes per element of a storage role (0 for `none_t`).
template <class T>
constexpr double role_bytes() {
  if constexpr (quant::detail::HasQuantTraits<T>) {
    return quant::quant_traits<T>::bytes_per_element;
  } else {
    return 0.0;
  }
}

/// Bytes per parameter of the owned GEMM copy ("compute copies are owned, not cached").
///  - block-quantized parameters: 0 (dequantized per GEMM into workspace);
///  - int8 row-wise GEMMs on float weights (LLM.int8 training): 0 (quantized per call, as bnb does);
///  - FP8 GEMMs: the row-wise FP8 copy and its transpose (Hopper GEMMs are TN-only), 1 byte each;
///    only the transpose when the parameter is already stored in E4M3; block recipes add their scales
///    (MXFP8: one E8M0 byte per 32 elements per copy; block: one f32 per 128x128 weight block per copy);
///  - a scalar GEMM type other than the parameter's element: one copy in that type (f32 params with
///    bf16 GEMMs: 2).
template <class Traits>
constexpr double compute_copy_bytes() {
  using param = typename Traits::param_type;
  using gemm = typename Traits::gemm_compute_type;
  if constexpr (quant::is_block_quantized_v<param> || std::is_same_v<gemm, quant::int8_rowwise>) {
    return 0.0;
  } else if constexpr (Traits::is_fp8) {
    const double copies = std::is_same_v<storage_element_t<param>, e4m3> ? 1.0 : 2.0;
    double scale_bytes = 0.0;
    if constexpr (Traits::recipe == fp8::RecipeKind::mxfp8) {
      scale_bytes = 1.0 / 32.0;
    } else if constexpr (Traits::recipe == fp8::RecipeKind::block) {
      scale_bytes = 4.0 / (128.0 * 128.0);
    }
    return copies * (1.0 + scale_bytes);
  } else if constexpr (std::is_same_v<gemm, storage_element_t<param>>) {
    return 0.0;
  } else {
    return role_bytes<gemm>();
  }
}

}  // namespace detail

/// Bytes per parameter of each training buffer under policy `P` (all `double`, exact binary
/// fractions). A frozen parameter has no gradient, master or optimizer state.
///
/// `weight`, `compute_copy`, `master`, `gradient`, `grad_accum` (0 when accumulation happens in the
/// gradient buffer itself, i.e. `grad_accum_type == grad_type`), `compensation` (Kahan buffer, one
/// parameter-sized buffer), `adamw_state` (m + v), `sgd_momentum_state` (m), `adamw_total`,
/// `sgd_total` (SGD with momentum).
/// @tparam P  a policy
template <PrecisionPolicy P>
struct memory_model {
 private:
  using t_ = policy_traits<P>;
  static constexpr bool trainable_ = !t_::is_frozen;

 public:
  static constexpr double weight = detail::role_bytes<typename t_::param_type>();
  static constexpr double compute_copy = detail::compute_copy_bytes<t_>();
  static constexpr double master = detail::role_bytes<typename t_::master_type>();
  static constexpr double gradient = detail::role_bytes<typename t_::grad_type>();
  static constexpr double grad_accum = std::is_same_v<typename t_::grad_accum_type, typename t_::grad_type>
                                           ? 0.0
                                           : detail::role_bytes<typename t_::grad_accum_type>();
  static constexpr double compensation = t_::update_rounding == UpdateRounding::kahan
                                             ? detail::role_bytes<detail::storage_element_t<typename t_::param_type>>()
                                             : 0.0;
  static constexpr double adamw_state =
      trainable_ ? detail::role_bytes<typename t_::moment1_type>() + detail::role_bytes<typename t_::moment2_type>()
                 : 0.0;
  static constexpr double sgd_momentum_state = trainable_ ? detail::role_bytes<typename t_::moment1_type>() : 0.0;

  /// Everything but the optimizer state.
  static constexpr double model_and_gradients = weight + compute_copy + master + gradient + grad_accum + compensation;
  static constexpr double adamw_total = model_and_gradients + adamw_state;
  static constexpr double sgd_total = model_and_gradients + sgd_momentum_state;
};

}  // namespace mixtape
