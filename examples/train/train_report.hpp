/// @file train_report.hpp
/// @brief The end-of-run summary of train_gpt: losses against the entropy rate, speed, and the
///        allocator's peak bytes per role beside the policy's memory model.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

#include <mixtape/core/allocator.hpp>

#include "train_options.hpp"

namespace train {

inline double mib(std::int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

inline void print_summary(const RunResult& r, std::FILE* out = stdout) {
  std::fprintf(out, "\n%-26s %s on %s\n", "run", r.precision.c_str(), r.device.c_str());
  std::fprintf(out, "%-26s %lld (%lld skipped)\n", "steps", static_cast<long long>(r.steps + r.skipped),
               static_cast<long long>(r.skipped));
  std::fprintf(out, "%-26s %.4f (mean of the last steps)\n", "train loss", r.train_loss);
  if (r.entropy_rate >= 0) {
    std::fprintf(out, "%-26s %.4f (gap to the entropy rate %.4f: %.4f nats)\n", "validation loss", r.val_loss,
                 r.entropy_rate, r.val_loss - r.entropy_rate);
  } else {
    std::fprintf(out, "%-26s %.4f\n", "validation loss", r.val_loss);
  }
  std::fprintf(out, "%-26s %.0f tokens/s (median step %.2f ms, loop %.1f s)\n", "speed", r.tokens_per_s, r.step_ms,
               r.seconds);
  std::fprintf(out, "%-26s %lld parameters; model %.1f B/param x params = %.2f MiB, store allocated %.2f MiB\n",
               "memory model", static_cast<long long>(r.parameters), r.model_bytes_per_param,
               mib(static_cast<std::int64_t>(r.model_bytes_per_param * static_cast<double>(r.parameters))),
               mib(r.store_bytes));
  std::fprintf(out, "%-26s", "peak MiB by role");
  for (int i = 0; i < mixtape::kMemoryRoleCount; ++i) {
    if (r.peak_bytes[i] == 0) continue;
    const auto name = mixtape::memory_role_name(static_cast<mixtape::MemoryRole>(i));
    std::fprintf(out, " %.*s %.2f", static_cast<int>(name.size()), name.data(), mib(r.peak_bytes[i]));
  }
  std::fprintf(out, "; total %.2f\n", mib(r.peak_total));
  if (!r.sample.empty()) std::fprintf(out, "%-26s %s\n", "sample", r.sample.c_str());
}

/// One JSON line with the peer's fields (../shared/reference/torch_gpt.py), for scripts that pair
/// the two and print ratios.
/// A JSON number, or null for NaN and infinities (which JSON cannot spell).
inline std::string json_number(double x, const char* format = "%.6f") {
  char b[48];
  std::snprintf(b, sizeof b, format, x);
  return std::isfinite(x) ? std::string(b) : std::string("null");
}

inline void print_json(const RunResult& r, std::FILE* out = stdout) {
  const double first = r.train_curve.empty() ? std::nan("") : r.train_curve.front().loss;
  const double last = r.train_curve.empty() ? std::nan("") : r.train_curve.back().loss;
  std::fprintf(out,
               "{\"workload\": \"gpt\", \"impl\": \"mixtape\", \"precision\": \"%s\", \"per_s\": %.1f, "
               "\"step_ms\": %.4f, \"peak_mib\": %.2f, \"loss_first\": %s, \"loss_last\": %s, "
               "\"entropy_rate\": %s, \"val_loss\": %s, \"steps\": %lld, \"skipped\": %lld, "
               "\"device\": \"%s\"}\n",
               r.precision.c_str(), r.tokens_per_s, r.step_ms, mib(r.peak_total), json_number(first).c_str(),
               json_number(last).c_str(), json_number(r.entropy_rate, "%.10f").c_str(), json_number(r.val_loss).c_str(),
               static_cast<long long>(r.steps + r.skipped), static_cast<long long>(r.skipped), r.device.c_str());
}

}  // namespace train
