/// @file rule_fp8_e5m2_forward.cpp
/// @brief Rule [fp8-e5m2-forward]: E5M2 as the forward GEMM format (TransformerEngine rejects pure E5M2).
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_fp8_e5m2_forward).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_fp8_e5m2_forward).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = Policy<bf16, fp8::E5M2<fp8::RecipeKind::delayed>, bf16, bf16>;
using Twin = Policy<bf16, fp8::Hybrid<fp8::RecipeKind::delayed>, bf16, bf16>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::fp8_e5m2_forward);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
