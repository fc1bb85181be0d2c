/// @file registry_test.cpp
/// @brief The preset registry: every Lightning string and alias resolves to its preset, dispatch
///        reaches the right type (also when the callback's bodies live in other units), an unknown
///        string lists every valid one, and a family defined elsewhere extends the registry.
#include <array>
#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mixtape/policy.hpp"
#include "policy/registry_split.hpp"

using namespace mixtape;
namespace pr = mixtape::precision;
using Lightning = PresetRegistry<pr::lightning_presets>;

namespace {

/// Returns the preset's registry name.
struct NameOf {
  template <class P>
  std::string_view operator()() const {
    return P::name;
  }
};

/// True when dispatch reached exactly `Expected`.
template <class Expected>
struct Is {
  template <class P>
  bool operator()() const {
    return std::is_same_v<P, Expected>;
  }
};

/// Counts the calls it receives.
struct Counter {
  int* calls;
  template <class P>
  void operator()() const {
    ++*calls;
  }
};

// A family defined "in another header": it is a preset_list of its own, concatenated by the user.
struct bf16_true_sr
    : PolicyWith<pr::bf16_true, role::update_math<f32>, role::update_rounding<UpdateRounding::stochastic>> {
  static constexpr std::string_view name = "bf16-true-sr";
  static constexpr std::string_view description = "bf16-true with f32 update math and stochastic rounding";
};
struct nf4_frozen : Policy<quant::nf4, bf16, none_t, none_t> {
  static constexpr std::string_view name = "nf4";
  static constexpr std::string_view description = "frozen nf4 weights, bf16 compute";
};
using ExtraPresets = preset_list<bf16_true_sr, nf4_frozen>;
using Extended = PresetRegistry<concat_presets_t<pr::lightning_presets, ExtraPresets>>;

// Lookup works at compile time too.
static_assert(Lightning::kSize == 6 && Extended::kSize == 8);
static_assert(Lightning::find("bf16-mixed") == 5 && Lightning::find("bf16") == 5 && !Lightning::find("nf4"));
static_assert(Extended::find("nf4") == 7 && Extended::find("32") == 0);
static_assert(std::is_same_v<concat_presets_t<>, preset_list<>>);

}  // namespace

TEST_CASE("every Lightning string and alias resolves to its preset", "[policy][registry]") {
  struct Case {
    std::string_view input;
    std::string_view canonical;
    std::size_t index;
  };
  const std::array<Case, 10> cases{{{"32-true", "32-true", 0},
                                    {"64-true", "64-true", 1},
                                    {"16-true", "16-true", 2},
                                    {"bf16-true", "bf16-true", 3},
                                    {"16-mixed", "16-mixed", 4},
                                    {"bf16-mixed", "bf16-mixed", 5},
                                    {"32", "32-true", 0},
                                    {"64", "64-true", 1},
                                    {"16", "16-mixed", 4},
                                    {"bf16", "bf16-mixed", 5}}};
  for (const Case& c : cases) {
    INFO("input: " << c.input);
    CHECK(Lightning::contains(c.input));
    CHECK(Lightning::index_of(c.input) == c.index);
    CHECK(Lightning::info(c.input).name == c.canonical);
    CHECK(dispatch<pr::lightning_presets>(c.input, NameOf{}) == c.canonical);
  }
}

TEST_CASE("dispatch reaches the right type", "[policy][registry]") {
  CHECK(dispatch<pr::lightning_presets>("32-true", Is<pr::f32_true>{}));
  CHECK(dispatch<pr::lightning_presets>("32", Is<pr::f32_true>{}));
  CHECK(dispatch<pr::lightning_presets>("64-true", Is<pr::f64_true>{}));
  CHECK(dispatch<pr::lightning_presets>("16-true", Is<pr::f16_true>{}));
  CHECK(dispatch<pr::lightning_presets>("bf16-true", Is<pr::bf16_true>{}));
  CHECK(dispatch<pr::lightning_presets>("16-mixed", Is<pr::f16_mixed>{}));
  CHECK(dispatch<pr::lightning_presets>("16", Is<pr::f16_mixed>{}));
  CHECK(dispatch<pr::lightning_presets>("bf16-mixed", Is<pr::bf16_mixed>{}));
  CHECK(dispatch<pr::lightning_presets>("bf16", Is<pr::bf16_mixed>{}));
  CHECK_FALSE(dispatch<pr::lightning_presets>("bf16", Is<pr::bf16_true>{}));

  // A callback that reads the policy's compile-time facts (one table row per --precision string).
  const auto adamw_bytes = [](std::string_view name) {
    return dispatch<pr::lightning_presets>(name, []<class P>() { return memory_model<P>::adamw_total; });
  };
  CHECK(adamw_bytes("32") == 16);
  CHECK(adamw_bytes("64") == 32);
  CHECK(adamw_bytes("16-true") == 8);
  CHECK(adamw_bytes("bf16-true") == 8);
  CHECK(adamw_bytes("16") == 18);
  CHECK(adamw_bytes("bf16") == 18);
  CHECK(dispatch<pr::lightning_presets>("16", []<class P>() { return policy_traits<P>::loss_scaling; }) ==
        LossScaling::dynamic);
}

TEST_CASE("dispatch to a callback whose bodies live in other translation units", "[policy][registry]") {
  CHECK(dispatch<pr::lightning_presets>("32", SplitProbe{}) == "32-true:true:16");
  CHECK(dispatch<pr::lightning_presets>("64-true", SplitProbe{}) == "64-true:true:32");
  CHECK(dispatch<pr::lightning_presets>("16-true", SplitProbe{}) == "16-true:true:8");
  CHECK(dispatch<pr::lightning_presets>("bf16-true", SplitProbe{}) == "bf16-true:true:8");
  CHECK(dispatch<pr::lightning_presets>("16", SplitProbe{}) == "16-mixed:mixed:18");
  CHECK(dispatch<pr::lightning_presets>("bf16-mixed", SplitProbe{}) == "bf16-mixed:mixed:18");
}

TEST_CASE("an unknown string throws ValueError listing every valid string", "[policy][registry]") {
  const std::string expected_list =
      "32-true, 64-true, 16-true, bf16-true, 16-mixed, bf16-mixed; "
      "aliases: 32 (32-true), 64 (64-true), 16 (16-mixed), bf16 (bf16-mixed)";
  CHECK(Lightning::valid_names() == expected_list);
  CHECK_FALSE(Lightning::contains("fp8"));
  CHECK_FALSE(Lightning::contains("BF16-mixed"));  // Lightning's strings are exact
  CHECK_FALSE(Lightning::contains(""));
  CHECK_THROWS_AS(Lightning::index_of("bf16-mix"), ValueError);
  try {
    (void)Lightning::index_of("bf16-mix");
    FAIL("no exception");
  } catch (const ValueError& e) {
    CHECK(e.message() == "unknown precision 'bf16-mix'; valid: " + expected_list);
  }

  // dispatch throws before calling anything.
  int calls = 0;
  CHECK_THROWS_AS(dispatch<pr::lightning_presets>("transformer-engine", Counter{&calls}), ValueError);
  CHECK(calls == 0);
  dispatch<pr::lightning_presets>("16", Counter{&calls});
  CHECK(calls == 1);
}

TEST_CASE("for_each_preset visits every preset in order", "[policy][registry]") {
  std::vector<std::string_view> names;
  for_each_preset<pr::lightning_presets>([&names]<class P>() { names.push_back(P::name); });
  CHECK(names == std::vector<std::string_view>{"32-true", "64-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed"});

  const auto entries = Lightning::entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    CHECK(entries[i].index == i);
    CHECK(entries[i].name == names[i]);
    CHECK_FALSE(entries[i].description.empty());
  }
  REQUIRE(entries[4].aliases.size() == 1);
  CHECK(entries[4].aliases[0] == "16");
  CHECK(entries[2].aliases.empty());  // 16-true and bf16-true have no alias
  CHECK(entries[3].aliases.empty());
}

TEST_CASE("a family from another header extends the registry without a central list", "[policy][registry]") {
  CHECK(Extended::index_of("bf16-true-sr") == 6);
  CHECK(Extended::index_of("bf16") == 5);
  CHECK(dispatch<concat_presets_t<pr::lightning_presets, ExtraPresets>>("nf4", Is<nf4_frozen>{}));
  CHECK(dispatch<concat_presets_t<pr::lightning_presets, ExtraPresets>>(
      "bf16-true-sr", []<class P>() { return policy_traits<P>::stochastic_rounding; }));
  CHECK(Extended::valid_names().find("bf16-mixed, bf16-true-sr, nf4; aliases:") != std::string::npos);
  // The family on its own is a registry too.
  CHECK(PresetRegistry<ExtraPresets>::valid_names() == "bf16-true-sr, nf4");
  std::vector<std::string_view> names;
  for_each_preset<concat_presets_t<pr::lightning_presets, ExtraPresets>>(
      [&names]<class P>() { names.push_back(P::name); });
  CHECK(names.size() == 8);
  CHECK(names.back() == "nf4");
}
