/// @file rule_f16_loss_scaling.cpp
/// @brief Rule [f16-loss-scaling]: f16 gradients with no stated loss-scaling choice (the twin states none, as
/// Lightning's 16-true).
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_f16_loss_scaling).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_f16_loss_scaling).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = PolicyWith<Policy<f16, f16, f16, f16>, role::update_rounding<UpdateRounding::nearest>>;
using Twin = PolicyWith<Policy<f16, f16, f16, f16>, role::loss_scaling<LossScaling::none>>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::f16_loss_scaling);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
