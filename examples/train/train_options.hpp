/// @file train_options.hpp
/// @brief What train_gpt and precision_sweep share: the run options and their command-line flags,
///        the result of one run, and `train_policy<P>`, declared here and instantiated once per
///        policy in its own translation unit (policy_unit.cpp.in), so the examples build in
///        parallel and a binary's build stays bounded as presets grow.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <mixtape/core/allocator.hpp>
#include <mixtape/core/error.hpp>
#include <mixtape/policy/roles.hpp>

#include "flag_values.hpp"

namespace train {

/// One training run.
struct TrainOptions {
  // model (the peer's flags; defaults: the small GPT of the convergence recipe)
  std::int64_t vocab = 256, ctx = 128, dim = 128, layers = 2, heads = 4;
  // optimisation (the peer: AdamW (0.9, 0.95), eps 1e-8, weight decay 0.1 on 2-D weights, clip 1.0)
  std::int64_t batch = 16, steps = 800;
  double lr = 1e-3;
  std::int64_t warmup = 50;  ///< linear lr warmup steps
  std::optional<mixtape::UpdateRounding> rounding;  ///< overrides the policy's update rounding
  std::uint64_t seed = 1234;
  // data
  std::string data = "markov";     ///< "markov", a FILE.bin glob (llm.c shards) or a FILE.txt (bytes)
  std::int64_t val_tokens = 65536;  ///< validation tokens (stream 1 / the held-out split)
  std::int64_t val_every = 0;       ///< validate every N steps too (0: only at the end)
  // device and output
  std::string device = "auto";  ///< "auto" (cuda when present), "cpu", "cuda", "cuda:N"
  int threads = 0;              ///< host worker threads (0: all cores)
  std::string log;              ///< JSON-lines log file ("" for none)
  std::string save, resume;     ///< checkpoint directories
  std::int64_t sample = 0;      ///< tokens to generate after training
  bool quiet = false;           ///< no progress output (the sweep prints its own)
  bool cuda_graph = true;       ///< CUDA: replay each step as one captured graph (TrainStepOptions)
  std::int64_t untimed_steps = 0;  ///< first steps left out of the median step time (warm-up)
  std::int64_t ce_chunk_rows = 0;  ///< rows of logits the head forms at a time (0: the default budget)
  std::string precision = "bf16-mixed";  ///< the policy to dispatch (a registered preset)
  bool allow_tf32 = false;               ///< f32 GEMMs on TF32 tensor cores (--precision tf32)
};

/// A point of a loss curve.
struct CurvePoint {
  std::int64_t step;
  double loss;
};

/// What a run reports.
struct RunResult {
  std::string precision;
  std::string device;
  std::int64_t parameters = 0;
  std::int64_t steps = 0, skipped = 0;
  double train_loss = 0;    ///< mean of the last min(10, steps) steps
  double val_loss = 0;
  double entropy_rate = -1; ///< markov data only
  double tokens_per_s = 0;  ///< over all steps after the first, wall clock, device synchronised
  double step_ms = 0;       ///< median step time (the peer's measure: data ready, synchronised before and after)
  std::string device_name;  ///< the GPU's name, or "cpu xN" (N host threads)
  double seconds = 0;       ///< the whole training loop
  std::int64_t peak_bytes[mixtape::kMemoryRoleCount] = {};
  std::int64_t peak_total = 0;
  double model_bytes_per_param = 0;  ///< the policy's memory model: weights + copies + grads + AdamW state
  std::int64_t store_bytes = 0;      ///< what the parameter store allocated (weights, grads, state)
  std::vector<CurvePoint> train_curve, val_curve;
  std::string sample;  ///< generated tokens, space separated
};

/// Trains the GPT under policy P (defined in train_run.hpp, instantiated per policy).
template <class P>
RunResult train_policy(const TrainOptions& options);

/// Parses the shared flags; `extra(flag, value)` may consume others (returns false if unknown).
/// @throws mixtape::ValueError for a bad or unknown flag, naming what was expected
template <class Extra>
TrainOptions parse_train_flags(int argc, char** argv, Extra&& extra) {
  TrainOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      MIXTAPE_EXPECT(i + 1 < argc, mixtape::ValueError, flag, ": expected a value");
      return argv[++i];
    };
    auto integer = [&](std::int64_t lo) { return flag_integer(flag, value(), lo); };
    if (flag == "--precision") {
      const PrecisionFlag p = parse_precision_flag(value());
      o.precision = p.policy;
      o.allow_tf32 = p.allow_tf32;
    }
    else if (flag == "--vocab") o.vocab = integer(2);
    else if (flag == "--ctx") o.ctx = integer(1);
    else if (flag == "--d") o.dim = integer(1);
    else if (flag == "--layers") o.layers = integer(1);
    else if (flag == "--heads") o.heads = integer(1);
    else if (flag == "--batch") o.batch = integer(1);
    else if (flag == "--steps") o.steps = integer(1);
    else if (flag == "--lr") o.lr = flag_positive(flag, value());
    else if (flag == "--warmup") o.warmup = integer(0);
    else if (flag == "--seed") o.seed = static_cast<std::uint64_t>(integer(0));
    else if (flag == "--data") o.data = value();
    else if (flag == "--val-tokens") o.val_tokens = integer(0);
    else if (flag == "--val-every") o.val_every = integer(0);
    else if (flag == "--device") o.device = value();
    else if (flag == "--threads") o.threads = static_cast<int>(integer(0));
    else if (flag == "--log") o.log = value();
    else if (flag == "--save") o.save = value();
    else if (flag == "--resume") o.resume = value();
    else if (flag == "--sample") o.sample = integer(0);
    else if (flag == "--quiet") o.quiet = true;
    else if (flag == "--ce-chunk-rows") o.ce_chunk_rows = integer(0);
    else if (flag == "--cuda-graph") o.cuda_graph = flag_on_off(flag, value());
    else if (flag == "--update-rounding") {
      const std::string v = value();
      if (v == "nearest") o.rounding = mixtape::UpdateRounding::nearest;
      else if (v == "stochastic") o.rounding = mixtape::UpdateRounding::stochastic;
      else if (v == "kahan") o.rounding = mixtape::UpdateRounding::kahan;
      else MIXTAPE_THROW(mixtape::ValueError, "--update-rounding: expected nearest, stochastic or kahan, got '", v, "'");
    } else if (!extra(flag, value)) {
      MIXTAPE_THROW(mixtape::ValueError, "unknown flag '", flag, "' (--help lists the flags)");
    }
  }
  MIXTAPE_EXPECT(o.dim % o.heads == 0, mixtape::ValueError, "--d ", o.dim, " must be divisible by --heads ", o.heads);
  return o;
}

/// The shared flags' help text.
inline const char* train_flags_help() {
  return "  --precision NAME        a registered precision string, or tf32: 32-true with TF32 GEMMs\n"
         "                          (default bf16-mixed)\n"
         "  --vocab V --ctx T --d C --layers L --heads H   model shape (default 256 128 128 2 4)\n"
         "  --batch B --steps N --lr X --warmup W --seed S  (default 16 800 1e-3 50 1234)\n"
         "  --update-rounding nearest|stochastic|kahan      override the policy's update rounding\n"
         "  --data markov|FILE.bin|FILE.txt   training data (default: the built-in Markov corpus)\n"
         "  --val-tokens N --val-every K      validation tokens (65536) and interval (0: at the end)\n"
         "  --device auto|cpu|cuda|cuda:N     (default: cuda when a GPU is present)\n"
         "  --threads N                       host threads (default: all cores)\n"
         "  --cuda-graph on|off               CUDA: replay each step as one captured graph (default on)\n"
         "  --ce-chunk-rows N                 rows of logits formed at a time by the head (0: 2048, at most 256 MiB)\n"
         "  --log FILE.jsonl --save DIR --resume DIR --sample N --quiet\n";
}

}  // namespace train
