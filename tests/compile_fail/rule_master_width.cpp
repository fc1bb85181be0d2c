/// @file rule_master_width.cpp
/// @brief Rule [master-width]: a bf16 master copy cannot back f32 parameters.
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_master_width).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_master_width).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = PolicyWith<Policy<f32, bf16, f32, f32>, role::master<bf16>>;
using Twin = PolicyWith<Policy<f32, bf16, f32, f32>, role::master<f32>>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::master_width);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
