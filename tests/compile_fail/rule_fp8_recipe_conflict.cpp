/// @file rule_fp8_recipe_conflict.cpp
/// @brief Rule [fp8-recipe-conflict]: a stated recipe kind that contradicts the fp8::Compute tag.
///
/// Compiled as is, this file must fail with the rule's message (ctest compile_fail_rule_fp8_recipe_conflict).
/// With -DMIXTAPE_TWIN the twin, which differs from the bad policy in one parameter, must
/// compile (ctest compile_fail_twin_fp8_recipe_conflict).
#include "mixtape/policy.hpp"

using namespace mixtape;

using Bad =
    PolicyWith<Policy<bf16, fp8::Hybrid<fp8::RecipeKind::delayed>, bf16, bf16>, role::recipe<fp8::RecipeKind::current>>;
using Twin =
    PolicyWith<Policy<bf16, fp8::Hybrid<fp8::RecipeKind::current>, bf16, bf16>, role::recipe<fp8::RecipeKind::current>>;

// The bad policy breaks exactly this rule, so the diagnostic is about it alone.
static_assert(policy_rules<Bad>::failed == 1 && !policy_rules<Bad>::fp8_recipe_conflict);
static_assert(policy_rules<Twin>::all);

#ifdef MIXTAPE_TWIN
template struct mixtape::policy_traits<Twin>;
#else
template struct mixtape::policy_traits<Bad>;
#endif
