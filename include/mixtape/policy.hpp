/// @file policy.hpp
/// @brief Precision policies: `Policy<ParamT, ComputeT, GradT, StateT>`, named roles through
///        `policy_traits<P>`, the rules, the memory model and the registry from strings to presets.
///
/// Numeric precision is a type: a module is templated on a policy and unpacks it into role-named
/// element types; kernels see element types only (design.md, "How a policy flows").
///
/// @code
///   using P = precision::bf16_mixed;                      // or Policy<f32, bf16, f32, f32>
///   using T = policy_traits<P>;
///   static_assert(std::is_same_v<T::gemm_forward_type, bf16> && T::is_mixed);
///   static_assert(memory_model<P>::adamw_total == 18.0);
///   dispatch<precision::lightning_presets>("bf16-mixed", f);  // f.template operator()<P>()
/// @endcode
///
/// Pieces (one facility per header):
///  - policy/roles.hpp        role tags, `Policy`, `PolicyWith`, `none_t`, `LossScaling`, `Rounding`
///  - policy/traits.hpp       `policy_traits`, `policy_rules`, the `PrecisionPolicy` concept
///  - policy/memory_model.hpp `memory_model`: bytes per parameter per buffer
///  - policy/registry.hpp     `preset_list`, `PresetRegistry`, `for_each_preset`, `dispatch`
///  - policy/presets.hpp      Lightning's presets (`precision::f32_true`, ..., `precision::bf16_mixed`)
/// See docs/precision.md for how every mode of the reference maps onto roles.
#pragma once

#include "mixtape/policy/describe.hpp"
#include "mixtape/policy/memory_model.hpp"
#include "mixtape/policy/presets.hpp"
#include "mixtape/policy/registry.hpp"
#include "mixtape/policy/roles.hpp"
#include "mixtape/policy/traits.hpp"
