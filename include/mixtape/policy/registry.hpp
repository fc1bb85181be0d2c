/// @file registry.hpp
/// @brief From `--precision STRING` to a policy type: preset lists, a runtime lookup (string ->
///        index, name, description) and compile-time `for_each_preset` / `dispatch`.
///
/// There is no central list. Each family header defines its own `preset_list` (presets.hpp has
/// `precision::lightning_presets`; an FP8, MS-AMP or bitsandbytes header adds its own), and a
/// program names the families it wants:
/// @code
///   using presets = concat_presets_t<precision::lightning_presets, precision::fp8_presets>;
///   struct Train { template <class P> int operator()() const; };  // defined per policy elsewhere
///   int rc = dispatch<presets>(args.precision, Train{});            // throws ValueError if unknown
/// @endcode
///
/// A registry is a type, so two translation units that name different families get different
/// registries instead of one registry whose contents depend on what each unit included (no
/// self-registration: that would break the one-definition rule and link-order independence).
///
/// `dispatch` instantiates only *calls* to `f.template operator()<P>()`; when that member
/// template is declared but not defined in the calling unit, each policy's body can be defined
/// and explicitly instantiated in its own translation unit, so the build parallelises:
/// @code
///   // train_bf16_mixed.cpp
///   #include "train_impl.hpp"  // template <class P> int Train::operator()() const { ... }
///   template int Train::operator()<mixtape::precision::bf16_mixed>() const;
/// @endcode
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "mixtape/core/error.hpp"
#include "mixtape/policy/traits.hpp"

namespace mixtape {

/// A preset: a policy with a registry name and a one-line description; optionally
/// `static constexpr std::array<std::string_view, N> aliases` (other strings that select it).
///
/// Requires: `PrecisionPolicy<P>`, `P::name` and `P::description` convertible to `std::string_view`.
/// @tparam P  any type
template <class P>
concept Preset = PrecisionPolicy<P> && requires {
  { P::name } -> std::convertible_to<std::string_view>;
  { P::description } -> std::convertible_to<std::string_view>;
};

/// An ordered list of presets (a family, or a whole registry).
/// @tparam Ps  presets
template <Preset... Ps>
struct preset_list {
  static constexpr std::size_t size = sizeof...(Ps);
};

namespace detail {
template <class... Lists>
struct concat_presets;
template <>
struct concat_presets<> {
  using type = preset_list<>;
};
template <class... Ps>
struct concat_presets<preset_list<Ps...>> {
  using type = preset_list<Ps...>;
};
template <class... As, class... Bs, class... Rest>
struct concat_presets<preset_list<As...>, preset_list<Bs...>, Rest...>
    : concat_presets<preset_list<As..., Bs...>, Rest...> {};

template <class P>
constexpr std::span<const std::string_view> preset_aliases() {
  if constexpr (requires { P::aliases; }) {
    return std::span<const std::string_view>(P::aliases.data(), P::aliases.size());
  } else {
    return {};
  }
}
}  // namespace detail

/// The concatenation of preset lists, in order.
/// @tparam Lists  `preset_list`s
template <class... Lists>
using concat_presets_t = typename detail::concat_presets<Lists...>::type;

/// What the runtime knows about one preset.
struct PresetInfo {
  std::string_view name;                      ///< registry name, e.g. "bf16-mixed"
  std::string_view description;               ///< one line
  std::span<const std::string_view> aliases;  ///< other strings that select it, e.g. "bf16"
  std::size_t index;                          ///< position in the registry
};

namespace detail {
template <class... Ps>
constexpr std::array<PresetInfo, sizeof...(Ps)> preset_entries() {
  std::array<PresetInfo, sizeof...(Ps)> out{};
  std::size_t i = 0;
  ((out[i] = PresetInfo{std::string_view(Ps::name), std::string_view(Ps::description), preset_aliases<Ps>(), i}, ++i),
   ...);
  return out;
}

/// No string selects two presets.
template <class... Ps>
constexpr bool unique_preset_names() {
  constexpr std::size_t kCount = (sizeof...(Ps) + ... + preset_aliases<Ps>().size());
  std::array<std::string_view, kCount> all{};
  std::size_t n = 0;
  for (const PresetInfo& e : preset_entries<Ps...>()) {
    all[n++] = e.name;
    for (std::string_view a : e.aliases) all[n++] = a;
  }
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i + 1; j < n; ++j) {
      if (all[i] == all[j]) return false;
    }
  }
  return true;
}

template <class... Ps>
struct first_preset {
  using type = void;
};
template <class P, class... Ps>
struct first_preset<P, Ps...> {
  using type = P;
};
}  // namespace detail

template <class List>
class PresetRegistry;

/// The registry of one preset list: lookup by name or alias, the listing for `--help`, and
/// dispatch to a template callback.
/// @tparam Ps  the presets, in listing order
template <class... Ps>
class PresetRegistry<preset_list<Ps...>> {
 public:
  static constexpr std::size_t kSize = sizeof...(Ps);

  /// One entry per preset, in order.
  static constexpr std::array<PresetInfo, kSize> entries() { return detail::preset_entries<Ps...>(); }

  /// The index of the preset named (or aliased) `name`, if any.
  static constexpr std::optional<std::size_t> find(std::string_view name) noexcept {
    for (const PresetInfo& e : entries()) {
      if (e.name == name) return e.index;
      for (std::string_view a : e.aliases) {
        if (a == name) return e.index;
      }
    }
    return std::nullopt;
  }

  static constexpr bool contains(std::string_view name) noexcept { return find(name).has_value(); }

  /// The index of `name`.
  /// @throws ValueError naming every valid string when `name` is unknown
  static std::size_t index_of(std::string_view name) {
    if (const auto i = find(name)) return *i;
    MIXTAPE_THROW(ValueError, "unknown precision '", name, "'; valid: ", valid_names());
  }

  /// The entry of `name`. @throws ValueError when unknown
  static PresetInfo info(std::string_view name) { return entries()[index_of(name)]; }

  /// "32-true, 64-true, ...; aliases: 32 (32-true), ..." (what an unknown name lists).
  static std::string valid_names() {
    std::string names;
    std::string aliases;
    for (const PresetInfo& e : entries()) {
      if (!names.empty()) names += ", ";
      names += e.name;
      for (std::string_view a : e.aliases) {
        if (!aliases.empty()) aliases += ", ";
        aliases.append(a).append(" (").append(e.name).append(")");
      }
    }
    return aliases.empty() ? names : names + "; aliases: " + aliases;
  }

  /// Calls `f.template operator()<P>()` for each preset `P`, in order.
  /// @tparam F  a callable with a member template `operator()<P>()`
  template <class F>
  static constexpr void for_each(F&& f) {
    (f.template operator()<Ps>(), ...);
  }

  /// Calls `f.template operator()<P>()` for the preset named (or aliased) `name` and returns its
  /// result; every instantiation must return the same type.
  /// @tparam F  a callable with a member template `operator()<P>()`
  /// @throws ValueError when `name` is unknown (before calling anything)
  template <class F>
  static decltype(auto) dispatch(std::string_view name, F&& f) {
    static_assert(kSize > 0, "dispatch: the registry is empty");
    using R = decltype(f.template operator()<first_>());
    static_assert((std::is_same_v<R, decltype(f.template operator()<Ps>())> && ...),
                  "dispatch: f.template operator()<P>() must return the same type for every preset");
    using Fn = R (*)(F&);
    static constexpr Fn kTable[] = {&call_<Ps, F, R>...};
    return kTable[index_of(name)](f);
  }

 private:
  using first_ = typename detail::first_preset<Ps...>::type;

  template <class P, class F, class R>
  static R call_(F& f) {
    return f.template operator()<P>();
  }

  static_assert(detail::unique_preset_names<Ps...>(), "PresetRegistry: two presets share a name or alias");
  // Every preset obeys the rules (instantiating its traits reports the broken rule by name).
  static_assert(((sizeof(policy_traits<Ps>) > 0) && ...));
};

/// Calls `f.template operator()<P>()` for each preset of `List`.
/// @tparam List  a `preset_list`
/// @tparam F     a callable with a member template `operator()<P>()` (e.g. a template lambda)
template <class List, class F>
constexpr void for_each_preset(F&& f) {
  PresetRegistry<List>::for_each(std::forward<F>(f));
}

/// Calls `f.template operator()<P>()` for the preset of `List` named (or aliased) `name`.
/// @tparam List  a `preset_list`
/// @tparam F     a callable with a member template `operator()<P>()`, one return type for all presets
/// @throws ValueError listing every valid string when `name` is unknown
template <class List, class F>
decltype(auto) dispatch(std::string_view name, F&& f) {
  return PresetRegistry<List>::dispatch(name, std::forward<F>(f));
}

}  // namespace mixtape
