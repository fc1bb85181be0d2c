// precision_sweep: the compile-time precision experiment in one binary. Trains the same model on the
// same data from the same seed under every registered precision (or a --precisions list), then
// prints one table and writes an SVG of the loss curves.
//
//   precision_sweep [--precisions 32-true,bf16-mixed,...] [--svg FILE] [--max-gap [NAME=]X] [train_gpt's flags]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include <mixtape/policy.hpp>

#include "built_policies.hpp"
#include "train/loss_plot.hpp"
#include "train/train_options.hpp"

namespace mt = mixtape;
using Presets = mt::PresetRegistry<mt::precision::all_presets>;

int main(int argc, char** argv) {
  try {
    std::vector<std::string> names;
    std::string svg = "precision_sweep.svg";
    // --max-gap X (every policy) and --max-gap NAME=X (one policy): the validation loss may exceed the
    // entropy rate by at most X nats, else the sweep exits with status 1 (a convergence test).
    double max_gap = std::nan("");
    std::vector<std::pair<std::string, double>> max_gap_for;
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::printf("usage: precision_sweep [--precisions A,B,...] [--svg FILE] [--max-gap [NAME=]X] [flags]\n%s"
                    "  precisions: %s\n",
                    train::train_flags_help(), Presets::valid_names().c_str());
        return 0;
      }
    }
    train::TrainOptions o = train::parse_train_flags(argc, argv, [&](const std::string& flag, auto&& value) {
      if (flag == "--precisions") {
        std::stringstream ss(value());
        for (std::string n; std::getline(ss, n, ',');) names.push_back(std::string(Presets::info(n).name));  // checked
        return true;
      }
      if (flag == "--max-gap") {
        const std::string v = value();
        const auto eq = v.find('=');
        const std::string num = eq == std::string::npos ? v : v.substr(eq + 1);
        std::size_t used = 0;
        double x = -1;
        try {
          x = std::stod(num, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        MIXTAPE_EXPECT(used == num.size() && x > 0, mt::ValueError, "--max-gap: expected X or NAME=X with X > 0, got '",
                       v, "'");
        if (eq == std::string::npos) {
          max_gap = x;
        } else {
          max_gap_for.emplace_back(std::string(Presets::info(v.substr(0, eq)).name), x);
        }
        return true;
      }
      if (flag == "--svg") {
        svg = value();
        return true;
      }
      return false;
    });
    if (names.empty())  // every preset built into this binary
      for (const auto& e : Presets::entries())
        if (Presets::dispatch(e.name, []<class P>() { return train::kBuilt<P>; })) names.push_back(std::string(e.name));
    o.quiet = true;
    std::vector<train::RunResult> runs;
    for (const auto& n : names) {
      std::fprintf(stderr, "training %s ...\n", n.c_str());
      o.precision = n;
      runs.push_back(Presets::dispatch(n, [&]<class P>() -> train::RunResult {
        if constexpr (train::kBuilt<P>) {
          return train::train_policy<P>(o);
        } else {
          MIXTAPE_THROW(mt::ValueError, "precision '", P::name, "' is not built into this binary (built: ",
                        train::kBuiltPolicies, ")");
        }
      }));
      std::fprintf(stderr, "  validation loss %.4f, %.0f tokens/s\n", runs.back().val_loss, runs.back().tokens_per_s);
    }
    double best = 1e300;
    for (const auto& r : runs) best = std::min(best, r.val_loss);
    const double h = runs.front().entropy_rate;
    std::printf("\n%lld steps of %lld x %lld tokens on %s, seed %llu; entropy rate %.4f\n\n",
                static_cast<long long>(o.steps), static_cast<long long>(o.batch), static_cast<long long>(o.ctx),
                runs.front().device.c_str(), static_cast<unsigned long long>(o.seed), h);
    std::printf("| precision | val loss | gap to best | gap to entropy | tokens/s | peak MiB | bytes/param | skipped |\n"
                "|---|---|---|---|---|---|---|---|\n");
    for (const auto& r : runs) {
      std::printf("| %s | %.4f | %+.4f | %+.4f | %.0f | %.1f | %.0f | %lld |\n", r.precision.c_str(), r.val_loss,
                  r.val_loss - best, h >= 0 ? r.val_loss - h : std::nan(""), r.tokens_per_s,
                  static_cast<double>(r.peak_total) / (1 << 20), r.model_bytes_per_param,
                  static_cast<long long>(r.skipped));
    }
    train::write_loss_svg(svg, runs, h);
    std::printf("\nloss curves: %s\n", svg.c_str());
    int failed = 0;
    for (const auto& r : runs) {
      double limit = max_gap;
      for (const auto& [name, x] : max_gap_for)
        if (name == r.precision) limit = x;
      if (std::isnan(limit) || h < 0) continue;
      const double gap = r.val_loss - h;
      if (!(gap <= limit)) {  // NaN fails too
        std::printf("FAILED: %s ends %.4f nats above the entropy rate, more than the %.4f allowed\n",
                    r.precision.c_str(), gap, limit);
        ++failed;
      }
    }
    if (failed == 0 && (!std::isnan(max_gap) || !max_gap_for.empty())) std::printf("every gap within its limit\n");
    return failed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "precision_sweep: %s\n", e.what());
    return 2;
  }
}
