// gpt_bench: the peer's GPT benchmark (../shared/reference/torch_gpt.py gpt) with mixtape: the same
// flags and defaults (GPT-2 small, batch 16, AdamW (0.9, 0.95), clip 1.0, 5 untimed + 20 timed
// steps, fresh Markov batches), the same timing (the batch on the device before the clock starts,
// a device synchronize before and after each step, the median step) and one JSON line with the
// peer's fields. The training loop is train_gpt's (examples/train/train_run.hpp), one translation
// unit per policy.
#include <cstdio>
#include <exception>
#include <string>

#include <mixtape/nn/gpt.hpp>
#include <mixtape/policy.hpp>

#include "built_policies.hpp"
#include "peer_flags.hpp"
#include "train/train_options.hpp"

namespace mt = mixtape;
using Presets = mt::PresetRegistry<mt::precision::all_presets>;

int main(int argc, char** argv) {
  try {
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::printf("usage: gpt_bench [flags]\n%s  precisions: %s, tf32\n", bench::peer_flags_help(),
                    Presets::valid_names().c_str());
        return 0;
      }
    }
    const bench::PeerFlags f = bench::parse_peer_flags(argc, argv);
    train::TrainOptions o;
    o.vocab = f.vocab, o.ctx = f.ctx, o.dim = f.d, o.layers = f.layers, o.heads = f.heads;
    o.batch = f.batch;
    o.steps = f.warmup + f.steps;
    o.untimed_steps = f.warmup;
    o.lr = f.lr;
    o.warmup = f.warmup_steps;
    o.val_tokens = f.val_tokens;
    o.device = f.device;
    o.threads = f.threads;
    const train::PrecisionFlag precision = train::parse_precision_flag(f.precision);
    o.precision = precision.policy;
    o.allow_tf32 = precision.allow_tf32;
    o.cuda_graph = f.cuda_graph;
    o.ce_chunk_rows = f.ce_chunk_rows;
    o.quiet = true;
    const train::RunResult r = Presets::dispatch(o.precision, [&]<class P>() -> train::RunResult {
      if constexpr (train::kBuilt<P>) {
        return train::train_policy<P>(o);
      } else {
        MIXTAPE_THROW(mt::ValueError, "precision '", P::name, "' is not built into this binary (built: ",
                      train::kBuiltPolicies, ")");
      }
    });
    const mt::nn::GptConfig cfg{.vocab = f.vocab, .ctx = f.ctx, .dim = f.d, .layers = f.layers, .heads = f.heads};
    const double tokens = static_cast<double>(f.batch * f.ctx), step_s = r.step_ms * 1e-3;
    bench::BenchLine line;
    line.workload = "gpt";
    line.precision = r.precision;
    line.cuda_graph = f.cuda_graph && r.device != "cpu";
    line.per_s = tokens / step_s;
    line.step_ms = r.step_ms;
    line.tflops = cfg.flops_per_token() * tokens / step_s / 1e12;
    line.peak_mib = static_cast<double>(r.peak_total) / (1 << 20);
    line.loss_first = r.train_curve.empty() ? std::nan("") : r.train_curve.front().loss;
    line.loss_last = r.train_curve.empty() ? std::nan("") : r.train_curve.back().loss;
    line.entropy_rate = r.entropy_rate;
    line.val_loss = r.val_loss;
    line.device = r.device_name;
    bench::print_bench_line(line);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt_bench: %s\n", e.what());
    return 2;
  }
}
