/// @file registry_split.hpp
/// @brief A dispatch callback whose per-policy bodies live in other translation units (the way the
///        examples keep each policy's instantiation in its own unit): only declared here.
#pragma once

#include <string>

struct SplitProbe {
  /// "<name>:<true|mixed>:<adamw bytes per parameter>", defined and explicitly instantiated in
  /// registry_split_true.cpp and registry_split_mixed.cpp.
  template <class P>
  std::string operator()() const;
};
