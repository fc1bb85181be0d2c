/// @file rule_master_or_sr.cpp
/// @brief Rule [master-or-sr]: bf16 parameters updated from f32 moments need a master copy or stochastic rounding.
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_master_or_sr).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_master_or_sr).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = Policy<bf16, bf16, bf16, f32>;
using Twin = Policy<bf16, bf16, bf16, bf16>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::master_or_sr);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
