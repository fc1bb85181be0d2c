/// @file registry_split_true.cpp
/// @brief SplitProbe instantiated for the "true" presets, in a unit of their own.
#include "policy/registry_split_impl.hpp"

namespace pr = mixtape::precision;
template std::string SplitProbe::operator()<pr::f32_true>() const;
template std::string SplitProbe::operator()<pr::f64_true>() const;
template std::string SplitProbe::operator()<pr::f16_true>() const;
template std::string SplitProbe::operator()<pr::bf16_true>() const;
