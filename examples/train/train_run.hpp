/// @file train_run.hpp
/// @brief `train_policy<P>`: the training loop of train_gpt and precision_sweep for one policy:
///        GPT, AdamW with the peer's settings, TrainStep, data, validation, progress and log.
///
/// Included only by the per-policy translation units (policy_unit.cpp.in), which are compiled as
/// CUDA when the CUDA backend is on.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unistd.h>
#include <vector>

#include <mixtape/io/checkpoint.hpp>
#include <mixtape/io/token_file.hpp>
#include <mixtape/mixtape.hpp>

#include "train_options.hpp"

namespace train {

namespace detail {

/// The device a run uses: "auto" picks the first GPU when one is present and this unit was compiled
/// with the CUDA kernels (examples/CMakeLists.txt: MIXTAPE_EXAMPLES_CUDA), else the CPU.
inline mixtape::Device pick_device(const std::string& s) {
  if (s != "auto") return mixtape::parse_device(s);
#if MIXTAPE_HAS_KERNELS
  return mixtape::default_device();
#else
  return mixtape::Device::cpu();
#endif
}

/// The GPU's name (the peer's `torch.cuda.get_device_name()`), or "cpu xN".
inline std::string device_name(const mixtape::ExecutionContext& ctx) {
#if defined(MIXTAPE_WITH_CUDA)
  if (ctx.is_cuda()) {
    cudaDeviceProp prop{};
    MIXTAPE_CUDA_CHECK(cudaGetDeviceProperties(&prop, ctx.device().index()));
    return prop.name;
  }
#endif
  return "cpu x" + std::to_string(ctx.host_threads());
}

/// Progress on stderr: one rewritten line on a terminal, a plain line every tenth of the run
/// otherwise (logs, CI).
class Progress {
 public:
  Progress(std::int64_t steps, bool quiet) : steps_(steps), quiet_(quiet), tty_(isatty(fileno(stderr)) != 0) {}

  void update(std::int64_t step, double loss, double tokens_per_s, double eta_s) {
    if (quiet_) return;
    if (tty_) {
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(kWidth * step / std::max<std::int64_t>(steps_, 1));
      std::string bar(static_cast<std::size_t>(filled), '#');
      bar.resize(kWidth, '.');
      std::fprintf(stderr, "\r[%s] step %lld/%lld  loss %.4f  %.0f tok/s  ETA %.0fs   ", bar.c_str(),
                   static_cast<long long>(step), static_cast<long long>(steps_), loss, tokens_per_s, eta_s);
    } else if (step == steps_ || step % std::max<std::int64_t>(steps_ / 10, 1) == 0) {
      std::fprintf(stderr, "step %lld/%lld  loss %.4f  %.0f tok/s  ETA %.0fs\n", static_cast<long long>(step),
                   static_cast<long long>(steps_), loss, tokens_per_s, eta_s);
    }
  }
  void done() {
    if (!quiet_ && tty_) std::fputc('\n', stderr);
  }

 private:
  std::int64_t steps_;
  bool quiet_, tty_;
};

/// Mean loss of `batches` batches of the validation stream, without recording.
template <class Model, class Stream>
double validate(const mixtape::ExecutionContext& ctx, const Model& gpt, Stream stream, std::int64_t batches,
                std::int64_t b, std::int64_t t) {
  std::vector<std::int32_t> xh(static_cast<std::size_t>(b * t)), yh(xh.size());
  auto x = mixtape::Tensor<std::int32_t>::empty(ctx, {b, t}), y = mixtape::Tensor<std::int32_t>::empty(ctx, {b, t});
  mixtape::autograd::Tape tape(ctx);
  mixtape::autograd::NoGradGuard no_grad(tape);
  double total = 0;
  for (std::int64_t i = 0; i < batches; ++i) {
    stream.next_batch(b, t, xh.data(), yh.data());
    mixtape::copy(ctx, mixtape::Tensor<std::int32_t>::wrap(xh.data(), {b, t}), x);
    mixtape::copy(ctx, mixtape::Tensor<std::int32_t>::wrap(yh.data(), {b, t}), y);
    const auto loss = gpt.loss(tape, x, y);
    total += static_cast<double>(mixtape::kernels::item(ctx, loss.value()));
    tape.clear();
  }
  return total / static_cast<double>(batches);
}

/// The training data: the Markov corpus (stream 0 trains, stream 1 validates) or token files
/// (io/token_file.hpp: the held-out tail validates).
class Data {
 public:
  explicit Data(const TrainOptions& o) : val_tokens_(o.val_tokens) {
    if (o.data == "markov") {
      chain_.emplace(o.vocab);
      stream_.emplace(chain_->stream(0));
    } else {
      tokens_.emplace(mixtape::io::TokenDataset::open(o.data, o.vocab, o.val_tokens));
      cursor_.emplace(tokens_->train_cursor());
    }
  }
  /// The corpus's entropy rate (-1 for files: unknown).
  double entropy_rate() const { return chain_ ? chain_->entropy_rate() : -1.0; }
  /// Validation batches of (b, t) for the requested tokens (0 when none are requested).
  std::int64_t val_batches(std::int64_t b, std::int64_t t) const {
    if (val_tokens_ <= 0) return 0;
    if (chain_) return std::max<std::int64_t>(1, val_tokens_ / (b * t));
    const std::int64_t n = (tokens_->val_size() - 1) / (b * t);
    MIXTAPE_EXPECT(n >= 1, mixtape::ValueError, "--val-tokens ", val_tokens_, ": the held-out split has ",
                   tokens_->val_size(), " tokens, fewer than one batch of ", b, " x ", t, " + 1");
    return n;
  }
  /// Where the next training batch starts (the Markov stream's state or the token position).
  std::uint64_t position() const {
    return stream_ ? stream_->state() : static_cast<std::uint64_t>(cursor_->position());
  }
  void set_position(std::uint64_t p) {
    if (stream_) {
      stream_->set_state(p);
    } else {
      cursor_->set_position(static_cast<std::int64_t>(p));
    }
  }
  /// The first token of the validation data (where --sample starts).
  void first_val_token(std::int64_t, std::int64_t, std::int32_t* x, std::int32_t* y) const {
    if (chain_) {
      chain_->stream(1).next_batch(1, 1, x, y);
    } else {
      (tokens_->val_size() >= 2 ? tokens_->val_cursor() : tokens_->train_cursor()).next_batch(1, 1, x, y);
    }
  }
  void next_train(std::int64_t b, std::int64_t t, std::int32_t* x, std::int32_t* y) {
    if (stream_) {
      stream_->next_batch(b, t, x, y);
    } else {
      cursor_->next_batch(b, t, x, y);
    }
  }
  /// Mean loss over `batches` validation batches, always from the split's start.
  template <class Model>
  double validate(const mixtape::ExecutionContext& ctx, const Model& gpt, std::int64_t batches, std::int64_t b,
                  std::int64_t t) const {
    if (chain_) return detail::validate(ctx, gpt, chain_->stream(1), batches, b, t);
    return detail::validate(ctx, gpt, tokens_->val_cursor(), batches, b, t);
  }

 private:
  std::int64_t val_tokens_;
  std::optional<mixtape::io::MarkovChain> chain_;
  std::optional<mixtape::io::MarkovStream> stream_;
  std::optional<mixtape::io::TokenDataset> tokens_;
  std::optional<mixtape::io::TokenCursor> cursor_;
};

/// `n` tokens sampled from the model (temperature 1, std::mt19937_64 seeded with `seed`), each
/// conditioned on the last ctx tokens so far, starting from `first`; as text for byte corpora.
template <class Model>
std::string sample(const mixtape::ExecutionContext& ctx, const Model& gpt, std::int32_t first, std::int64_t n,
                   std::int64_t context, std::uint64_t seed, bool as_text) {
  namespace mt = mixtape;
  std::vector<std::int32_t> tokens{first};
  std::mt19937_64 rng(seed);
  mt::autograd::Tape tape(ctx);
  mt::autograd::NoGradGuard no_grad(tape);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto t = static_cast<std::int64_t>(std::min<std::size_t>(tokens.size(), static_cast<std::size_t>(context)));
    const auto ids = mt::from_host<std::int32_t>(ctx, std::span(tokens).last(static_cast<std::size_t>(t)), {1, t});
    const auto logits = gpt.logits(tape, ids).value();  // (t, V)
    const auto last = mt::to_vector(ctx, logits.slice(0, t - 1, 1).flatten());
    double mx = -1e300;
    for (const auto& l : last) mx = std::max(mx, static_cast<double>(l));
    std::vector<double> w;
    for (const auto& l : last) w.push_back(std::exp(static_cast<double>(l) - mx));
    std::discrete_distribution<std::int32_t> pick(w.begin(), w.end());
    tokens.push_back(pick(rng));
    tape.clear();
  }
  std::string out;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (as_text) {  // bytes of a text corpus: printable ones as they are, the rest escaped
      const int c = tokens[i];
      out += (c >= 32 && c < 127) ? std::string(1, static_cast<char>(c)) : c == '\n' ? std::string("\\n") : "\\x" + std::to_string(c);
    } else {
      out += (i ? " " : "") + std::to_string(tokens[i]);
    }
  }
  return out;
}

}  // namespace detail

template <class P>
RunResult train_policy(const TrainOptions& o) {
  namespace mt = mixtape;
  namespace ag = mixtape::autograd;
  using Clock = std::chrono::steady_clock;
  RunResult r;
  r.precision = precision_report_name(P::name, o.allow_tf32);
  const mt::Device device = detail::pick_device(o.device);
  r.device = device.to_string();
  auto ctx = mt::ExecutionContext::on(device, {.host_threads = o.threads, .seed = o.seed, .allow_tf32 = o.allow_tf32});
  r.device_name = detail::device_name(ctx);

  mt::nn::ParameterStore store;
  const mt::nn::GptConfig cfg{.vocab = o.vocab, .ctx = o.ctx, .dim = o.dim, .layers = o.layers, .heads = o.heads};
  mt::nn::Gpt<P> gpt(store, cfg);
  store.allocate(ctx);
  mt::nn::initialize(ctx, store);
  r.parameters = store.numel();
  r.model_bytes_per_param = mt::memory_model<P>::adamw_total;
  for (const auto& b : store.buffers()) r.store_bytes += b.data.nbytes();

  mt::optim::OptimizerOptions oo;
  oo.rounding = o.rounding;
  mt::optim::AdamW<P> opt(ctx, store, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1}, oo);
  mt::optim::TrainStep<P, mt::optim::AdamW<P>> step(
      ctx, store, opt,
      {.schedule = {.base_lr = o.lr, .warmup_steps = o.warmup}, .clip_norm = 1.0, .cuda_graph = o.cuda_graph});

  const std::int64_t b = o.batch, t = o.ctx;
  detail::Data data(o);
  r.entropy_rate = data.entropy_rate();
  const std::int64_t val_batches = data.val_batches(b, t);
  std::vector<std::int32_t> xh(static_cast<std::size_t>(b * t)), yh(xh.size());
  auto x = mt::Tensor<std::int32_t>::empty(ctx, {b, t}), y = mt::Tensor<std::int32_t>::empty(ctx, {b, t});

  // Checkpoints: what identifies the run (a resume must match it) and where it stands.
  const std::map<std::string, std::string> identity{
      {"precision", r.precision},           {"vocab", std::to_string(o.vocab)},  {"ctx", std::to_string(o.ctx)},
      {"d", std::to_string(o.dim)},         {"layers", std::to_string(o.layers)}, {"heads", std::to_string(o.heads)},
      {"batch", std::to_string(o.batch)},   {"data", o.data},                    {"seed", std::to_string(o.seed)}};
  std::int64_t first_step = 0;
  if (!o.resume.empty()) {
    const auto file = mt::io::SafetensorsFile::read(o.resume + "/checkpoint.safetensors");
    auto meta = file.metadata();
    for (const auto& [k, v] : identity) {  // before anything is loaded
      MIXTAPE_EXPECT(meta.count(k) != 0 && meta[k] == v, mt::ValueError, "--resume ", o.resume,
                     ": the checkpoint was trained with ", k, " '", meta.count(k) ? meta[k] : std::string("(none)"),
                     "', this run has '", v, "'");
    }
    mt::io::load_checkpoint(ctx, store, step.scalars(), file);
    first_step = std::stoll(meta.at("step"));
    data.set_position(std::stoull(meta.at("data.position")));
    ctx.set_rng_offset(std::stoull(meta.at("rng.offset")));
    MIXTAPE_EXPECT(first_step <= o.steps, mt::ValueError, "--resume ", o.resume, ": the checkpoint is at step ",
                   first_step, ", past --steps ", o.steps);
  }
  auto save = [&](std::int64_t done) {
    if (o.save.empty()) return;
    std::filesystem::create_directories(o.save);
    auto meta = identity;
    meta["step"] = std::to_string(done);
    meta["data.position"] = std::to_string(data.position());
    meta["rng.offset"] = std::to_string(ctx.rng_offset());
    mt::io::save_checkpoint(ctx, store, step.scalars(), meta, o.save + "/checkpoint.safetensors");
  };

  std::ofstream log;
  if (!o.log.empty()) {
    log.open(o.log);
    MIXTAPE_EXPECT(log.good(), mt::ValueError, "--log: cannot open '", o.log, "' for writing");
  }
  detail::Progress progress(o.steps, o.quiet);
  ag::Tape tape(ctx);
  std::vector<double> step_s;
  ctx.allocator().counters().reset_peaks();
  const auto t0 = Clock::now();
  auto t_first = t0;
  std::int64_t logged = 0;  // steps whose loss reached the host
  // JSON has no NaN or infinity: a non-finite value is written as null.
  const auto num = [](double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.7g", x);
    return std::isfinite(x) ? std::string(b) : std::string("null");
  };
  auto drain = [&](const mt::optim::StepScalarValues& v) {
    const std::int64_t done = v.step + v.skipped;
    if (done <= logged) return;
    logged = done;
    r.train_curve.push_back({done, static_cast<double>(v.loss)});
    if (log.is_open())
      log << "{\"step\": " << done << ", \"loss\": " << num(v.loss) << ", \"lr\": " << num(v.lr)
          << ", \"grad_norm\": " << num(v.grad_norm) << ", \"loss_scale\": " << num(v.loss_scale)
          << ", \"skipped\": " << v.skipped << "}\n";
  };
  for (std::int64_t s = first_step; s < o.steps; ++s) {
    // The peer's timing: the batch is on the device before the clock starts, with a device
    // synchronize before and after the step (so host overhead counts, data generation does not).
    data.next_train(b, t, xh.data(), yh.data());
    mt::copy(ctx, mt::Tensor<std::int32_t>::wrap(xh.data(), {b, t}), x);
    mt::copy(ctx, mt::Tensor<std::int32_t>::wrap(yh.data(), {b, t}), y);
    ctx.synchronize();
    const auto ts = Clock::now();
    step(ctx, tape, [&](ag::Tape& tp, int) { return gpt.loss(tp, x, y, {.chunk_rows = o.ce_chunk_rows}); });
    ctx.synchronize();
    const auto te = Clock::now();
    if (s - first_step >= o.untimed_steps) step_s.push_back(std::chrono::duration<double>(te - ts).count());
    if (s == first_step) t_first = te;
    if (auto v = step.scalars().read_previous()) drain(*v);
    const double elapsed = std::chrono::duration<double>(te - t_first).count();
    const std::int64_t timed_steps = s - first_step;
    const double tps = timed_steps > 0 ? static_cast<double>(timed_steps * b * t) / elapsed : 0.0;
    progress.update(s + 1, r.train_curve.empty() ? 0.0 : r.train_curve.back().loss, tps,
                    timed_steps > 0 ? elapsed / static_cast<double>(timed_steps) * static_cast<double>(o.steps - 1 - s)
                                    : 0.0);
    if (o.val_every > 0 && (s + 1) % o.val_every == 0 && s + 1 < o.steps) {
      const double vl = data.validate(ctx, gpt, val_batches, b, t);
      r.val_curve.push_back({s + 1, vl});
      if (log.is_open()) log << "{\"step\": " << s + 1 << ", \"val_loss\": " << num(vl) << "}\n";
    }
  }
  ctx.synchronize();
  const auto t_end = Clock::now();
  progress.done();
  drain(step.scalars().read(ctx));
  const auto final_v = step.scalars().read(ctx);
  r.steps = final_v.step;
  r.skipped = final_v.skipped;
  r.seconds = std::chrono::duration<double>(t_end - t0).count();
  const double timed = std::chrono::duration<double>(t_end - t_first).count();
  const std::int64_t ran = o.steps - first_step;
  r.tokens_per_s = ran > 1 ? static_cast<double>((ran - 1) * b * t) / timed
                           : static_cast<double>(ran * b * t) / r.seconds;
  std::sort(step_s.begin(), step_s.end());
  r.step_ms = step_s.empty() ? 0.0 : 1e3 * step_s[step_s.size() / 2];
  save(o.steps);
  for (int i = 0; i < mt::kMemoryRoleCount; ++i) r.peak_bytes[i] = ctx.allocator().counters().peak(static_cast<mt::MemoryRole>(i));
  r.peak_total = ctx.allocator().counters().peak_total();
  const std::size_t tail = std::min<std::size_t>(10, r.train_curve.size());
  r.train_loss = tail == 0 ? std::nan("") : 0.0;
  for (std::size_t i = r.train_curve.size() - tail; i < r.train_curve.size(); ++i)
    r.train_loss += r.train_curve[i].loss / static_cast<double>(tail);

  r.val_loss = val_batches > 0 ? data.validate(ctx, gpt, val_batches, b, t) : std::nan("");
  r.val_curve.push_back({o.steps, r.val_loss});
  if (o.sample > 0) {
    std::int32_t first = 0, unused = 0;
    data.first_val_token(b, t, &first, &unused);
    const bool text = o.data.size() >= 4 && o.data.compare(o.data.size() - 4, 4, ".txt") == 0;
    r.sample = detail::sample(ctx, gpt, first, o.sample, o.ctx, o.seed, text);
  }
  if (log.is_open()) log << "{\"step\": " << o.steps << ", \"val_loss\": " << num(r.val_loss) << "}\n";
  return r;
}

}  // namespace train
