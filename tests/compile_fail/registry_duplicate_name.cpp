/// @file registry_duplicate_name.cpp
/// @brief A registry in which one string selects two presets does not compile ("bf16" is already
///        bf16-mixed's alias). With -DMIXTAPE_TWIN the extra preset has a fresh name and compiles.
#include "mixtape/policy.hpp"

using namespace mixtape;

struct bf16_again : Policy<bf16, bf16, bf16, bf16> {
#ifdef MIXTAPE_TWIN
  static constexpr std::string_view name = "bf16-again";
#else
  static constexpr std::string_view name = "bf16";
#endif
  static constexpr std::string_view description = "a second preset";
};

using Presets = concat_presets_t<precision::lightning_presets, preset_list<bf16_again>>;
template class mixtape::PresetRegistry<Presets>;
