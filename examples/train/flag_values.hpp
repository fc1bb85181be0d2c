/// @file flag_values.hpp
/// @brief Typed values of command-line flags for the examples and benchmarks, each error naming
///        the flag, what it expects and what came.
#pragma once

#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

#include <mixtape/core/error.hpp>

namespace train {

/// `text` as an integer >= lo. @throws mixtape::ValueError naming `flag`
inline std::int64_t flag_integer(const std::string& flag, const std::string& text, std::int64_t lo) {
  std::size_t used = 0;
  std::int64_t x = 0;
  try {
    x = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MIXTAPE_EXPECT(used == text.size() && x >= lo, mixtape::ValueError, flag, ": expected an integer >= ", lo, ", got '",
                 text, "'");
  return x;
}

/// `text` as a finite number > 0. @throws mixtape::ValueError naming `flag`
inline double flag_positive(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  double x = 0;
  try {
    x = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MIXTAPE_EXPECT(used == text.size() && x > 0 && std::isfinite(x), mixtape::ValueError, flag,
                 ": expected a positive number, got '", text, "'");
  return x;
}

/// `text` as on (true) or off (false). @throws mixtape::ValueError naming `flag`
inline bool flag_on_off(const std::string& flag, const std::string& text) {
  MIXTAPE_EXPECT(text == "on" || text == "off", mixtape::ValueError, flag, ": expected on or off, got '", text, "'");
  return text == "on";
}

/// A precision flag's value split into the policy and the run's TF32 setting: "tf32" is the
/// peer's name for 32-true with TF32 GEMMs (torch's allow_tf32, a setting of the run rather than of
/// the model), so it runs the 32-true policy on a context with ContextOptions::allow_tf32; every
/// other name is a policy's and passes through.
struct PrecisionFlag {
  std::string policy;       ///< the registered preset to dispatch
  bool allow_tf32 = false;  ///< f32 GEMMs on TF32 tensor cores
};

/// The name a report gives a run of `policy_name`: "tf32" for the TF32 run, else the policy's.
inline std::string precision_report_name(std::string_view policy_name, bool allow_tf32) {
  return allow_tf32 ? std::string("tf32") : std::string(policy_name);
}

/// `--precision`'s value as a PrecisionFlag (names are checked later, by the preset registry).
inline PrecisionFlag parse_precision_flag(const std::string& text) {
  if (text == "tf32") return {"32-true", true};
  return {text, false};
}

}  // namespace train
