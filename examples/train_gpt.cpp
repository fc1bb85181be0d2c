// train_gpt: trains the GPT of ../shared/reference/torch_gpt.py under any registered precision.
//
//   train_gpt [--precision NAME] [--steps N] [--device cpu|cuda] ...   (--help lists the flags)
//
// Each policy's training loop is instantiated in its own translation unit (train/policy_unit.cpp.in);
// this file only parses the flags and dispatches the precision string through the registry.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <mixtape/policy.hpp>

#include "built_policies.hpp"
#include "train/train_options.hpp"
#include "train/train_report.hpp"

namespace mt = mixtape;
using Presets = mt::PresetRegistry<mt::precision::all_presets>;

int main(int argc, char** argv) {
  try {
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::printf("usage: train_gpt [flags]\n%s  --json                  the summary on stderr, one JSON line on stdout\n"
                    "  precisions: %s\n", train::train_flags_help(),
                    Presets::valid_names().c_str());
        return 0;
      }
    }
    bool json = false;
    const train::TrainOptions o = train::parse_train_flags(argc, argv, [&](const std::string& flag, auto&&) {
      if (flag != "--json") return false;
      json = true;  // a flag without a value
      return true;
    });
    const train::RunResult r = Presets::dispatch(o.precision, [&]<class P>() -> train::RunResult {  // unknown: lists valid
      if constexpr (train::kBuilt<P>) {
        return train::train_policy<P>(o);
      } else {
        MIXTAPE_THROW(mt::ValueError, "precision '", P::name, "' is not built into this binary (built: ",
                      train::kBuiltPolicies, "); reconfigure with -DMIXTAPE_EXAMPLE_POLICIES=\"...\" to add it");
      }
    });
    train::print_summary(r, json ? stderr : stdout);
    if (json) train::print_json(r);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_gpt: %s\n", e.what());
    return 2;
  }
}
