/// @file peer_flags.hpp
/// @brief The PyTorch peer's command line (../shared/reference/torch_gpt.py) for gpt_bench and
///        mlp_bench: the same flags with the same defaults, so `compare.sh` passes one argument list
///        to both sides, and the JSON line both print.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include <mixtape/core/error.hpp>

#include "train/flag_values.hpp"

namespace bench {

/// The peer's flags (its defaults: the GPT-2 small shape, 20 timed steps after 5 untimed ones).
struct PeerFlags {
  std::string precision = "bf16-mixed";
  double lr = 3e-4;
  std::int64_t warmup_steps = 0;  ///< linear lr warm-up
  std::int64_t val_tokens = 65536;
  std::string device = "cuda";
  int threads = 0;
  std::int64_t steps = 20, warmup = 5;  ///< timed steps, untimed steps before them
  std::int64_t batch = 16, ctx = 1024, vocab = 50304, d = 768, layers = 12, heads = 12;
  std::int64_t width = 8192, depth = 4, rows = 16384;  ///< mlp
  bool cuda_graph = true;  ///< mixtape's own: replay each step as one CUDA graph
  std::int64_t ce_chunk_rows = 0;  ///< mixtape's own: rows of logits the head forms at a time (0: default)
};

inline const char* peer_flags_help() {
  return "  --precision NAME   (bf16-mixed)    --lr X (3e-4)   --warmup-steps N (0: lr warm-up)\n"
         "  --steps N (20 timed) --warmup N (5 untimed)   --device cuda|cpu (cuda)   --threads N\n"
         "  gpt: --batch 16 --ctx 1024 --vocab 50304 --d 768 --layers 12 --heads 12 --val-tokens 65536\n"
         "  mlp: --width 8192 --depth 4 --rows 16384\n"
         "  --cuda-graph on|off (on): mixtape's counterpart of the peer's --compile reduce-overhead\n"
         "  --ce-chunk-rows N (0: 2048 rows, at most 256 MiB): gpt, rows of logits the tied head forms at a time\n";
}

/// Parses the peer's flags. @throws mixtape::ValueError naming the flag and what it expects
inline PeerFlags parse_peer_flags(int argc, char** argv) {
  PeerFlags f;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      MIXTAPE_EXPECT(i + 1 < argc, mixtape::ValueError, flag, ": expected a value");
      return argv[++i];
    };
    auto integer = [&](std::int64_t lo) { return train::flag_integer(flag, value(), lo); };
    if (flag == "--precision") f.precision = value();
    else if (flag == "--lr") f.lr = train::flag_positive(flag, value());
    else if (flag == "--warmup-steps") f.warmup_steps = integer(0);
    else if (flag == "--val-tokens") f.val_tokens = integer(0);
    else if (flag == "--device") f.device = value();
    else if (flag == "--threads") f.threads = static_cast<int>(integer(0));
    else if (flag == "--steps") f.steps = integer(1);
    else if (flag == "--warmup") f.warmup = integer(0);
    else if (flag == "--batch") f.batch = integer(1);
    else if (flag == "--ctx") f.ctx = integer(1);
    else if (flag == "--vocab") f.vocab = integer(2);
    else if (flag == "--d") f.d = integer(1);
    else if (flag == "--layers") f.layers = integer(1);
    else if (flag == "--heads") f.heads = integer(1);
    else if (flag == "--width") f.width = integer(1);
    else if (flag == "--depth") f.depth = integer(1);
    else if (flag == "--rows") f.rows = integer(1);
    else if (flag == "--ce-chunk-rows") f.ce_chunk_rows = integer(0);
    else if (flag == "--cuda-graph") f.cuda_graph = train::flag_on_off(flag, value());
    else if (flag == "--compile") {
      MIXTAPE_THROW(mixtape::ValueError, "--compile is the peer's (torch.compile); mixtape compiles ahead of time, and "
                    "--cuda-graph on|off is its counterpart of reduce-overhead");
    } else {
      MIXTAPE_THROW(mixtape::ValueError, "unknown flag '", flag, "' (--help lists the flags)");
    }
  }
  MIXTAPE_EXPECT(f.d % f.heads == 0, mixtape::ValueError, "--d ", f.d, " must be divisible by --heads ", f.heads);
  return f;
}

/// A JSON number, or null for NaN and infinities.
inline std::string json_number(double x, const char* format = "%.6f") {
  char b[48];
  std::snprintf(b, sizeof b, format, x);
  return std::isfinite(x) ? std::string(b) : std::string("null");
}

/// The peer's fields, plus what identifies our side ("impl", "cuda_graph").
struct BenchLine {
  const char* workload = "gpt";
  std::string precision;
  bool cuda_graph = false;
  double per_s = 0, step_ms = 0, tflops = 0, peak_mib = 0, loss_first = 0, loss_last = 0;
  double entropy_rate = std::nan(""), val_loss = std::nan("");  ///< gpt only
  std::string device;
};

inline void print_bench_line(const BenchLine& b) {
  std::string extra;
  if (std::string(b.workload) == "gpt")
    extra = ", \"entropy_rate\": " + json_number(b.entropy_rate, "%.10f") + ", \"val_loss\": " + json_number(b.val_loss);
  std::printf("{\"workload\": \"%s\", \"impl\": \"mixtape\", \"precision\": \"%s\", \"compile\": null, "
              "\"cuda_graph\": %s, \"per_s\": %.1f, \"step_ms\": %.4f, \"tflops\": %.3f, \"peak_mib\": %.1f, "
              "\"loss_first\": %s, \"loss_last\": %s%s, \"device\": \"%s\"}\n",
              b.workload, b.precision.c_str(), b.cuda_graph ? "true" : "false", b.per_s, b.step_ms, b.tflops,
              b.peak_mib, json_number(b.loss_first).c_str(), json_number(b.loss_last).c_str(), extra.c_str(),
              b.device.c_str());
  std::fflush(stdout);
}

}  // namespace bench
