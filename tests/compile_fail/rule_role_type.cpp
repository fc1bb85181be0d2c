/// @file rule_role_type.cpp
/// @brief Rule [role-type]: every role holds a storage format; int is not one.
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_role_type).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_role_type).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = Policy<int, f32, f32, f32>;
using Twin = Policy<f32, f32, f32, f32>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::role_type);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
