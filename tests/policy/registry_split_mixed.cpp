/// @file registry_split_mixed.cpp
/// @brief SplitProbe instantiated for the "mixed" presets, in a unit of their own.
#include "policy/registry_split_impl.hpp"

namespace pr = mixtape::precision;
template std::string SplitProbe::operator()<pr::f16_mixed>() const;
template std::string SplitProbe::operator()<pr::bf16_mixed>() const;
