/// @file rule_grad_accum_width.cpp
/// @brief Rule [grad-accum-width]: bf16 accumulation of f32 gradients.
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_grad_accum_width).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_grad_accum_width).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad = PolicyWith<Policy<f32, bf16, f32, f32>, role::grad_accum<bf16>>;
using Twin = PolicyWith<Policy<f32, bf16, f32, f32>, role::grad_accum<f32>>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::grad_accum_width);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
