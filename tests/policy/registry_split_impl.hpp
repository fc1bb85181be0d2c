/// @file registry_split_impl.hpp
/// @brief The definition of SplitProbe's body, included only by the per-policy units.
#pragma once

#include <string>

#include "mixtape/policy.hpp"
#include "policy/registry_split.hpp"

template <class P>
std::string SplitProbe::operator()() const {
  using T = mixtape::policy_traits<P>;
  return std::string(P::name) + (T::is_mixed ? ":mixed:" : ":true:") +
         std::to_string(static_cast<int>(mixtape::memory_model<P>::adamw_total));
}
