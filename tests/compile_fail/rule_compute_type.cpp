/// @file rule_compute_type.cpp
/// @brief Rule [compute-type]: reductions accumulate in f32 or f64, not bf16.
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_compute_type).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_compute_type).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = PolicyWith<Policy<f32, bf16, f32, f32>, role::accumulate<bf16>>;
using Twin = PolicyWith<Policy<f32, bf16, f32, f32>, role::accumulate<f32>>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::compute_type);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
