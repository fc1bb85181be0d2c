/// @file rule_frozen_no_state.cpp
/// @brief Rule [frozen-no-state]: a frozen parameter with optimizer state.
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_frozen_no_state).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_frozen_no_state).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = Policy<quant::nf4, bf16, none_t, f32>;
using Twin = Policy<quant::nf4, bf16, none_t, none_t>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::frozen_no_state);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
