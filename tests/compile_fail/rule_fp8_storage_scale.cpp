/// @file rule_fp8_storage_scale.cpp
/// @brief Rule [fp8-storage-scale]: raw E4M3 optimizer moments (MS-AMP keeps a scale with them).
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_fp8_storage_scale).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_fp8_storage_scale).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = Policy<f32, f32, f32, e4m3>;
using Twin = Policy<f32, f32, f32, quant::scaled<e4m3>>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::fp8_storage_scale);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
