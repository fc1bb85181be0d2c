// mlp_bench: the peer's MLP benchmark (../shared/reference/torch_gpt.py mlp) with mixtape: `depth`
// Linear(width, width) layers with tanh-GELUs between them, MSE against a fixed target in f32
// (`F.mse_loss(net(x).float(), y)`), AdamW (0.9, 0.95), clip 1.0, the same input every step; the
// peer's timing (device synchronize before and after each step, median over the timed steps) and
// its JSON fields. FLOPs are the peer's count: 2 (3 depth - 1) width^2 rows (the input needs no
// gradient, so autograd runs 3 depth - 1 GEMMs).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <mixtape/mixtape.hpp>

#include "peer_flags.hpp"

namespace mt = mixtape;
namespace ag = mixtape::autograd;

namespace {

/// The peer's `nn.Sequential(Linear, GELU, ..., Linear)`.
template <class P>
class DeepMlp : public mt::nn::Module {
 public:
  using compute_type = typename mt::nn::Linear<P>::compute_type;
  DeepMlp(mt::nn::ParameterStore& store, std::int64_t width, std::int64_t depth) : Module(mt::nn::ModuleScope{store, ""}) {
    for (std::int64_t i = 0; i < depth; ++i) {
      // torch's nn.Linear default (kaiming_uniform(a = sqrt(5)) and its bias rule): U(-1/sqrt(in), 1/sqrt(in)).
      const auto init = mt::nn::Init::uniform(1.0 / std::sqrt(static_cast<double>(width)));
      layers_.push_back(std::make_unique<mt::nn::Linear<P>>(scope("net." + std::to_string(2 * i)), width, width, init, init));
      register_child(*layers_.back());
    }
  }
  /// // x (rows, width) -> (rows, width)
  ag::Var<compute_type> operator()(ag::Tape& tape, ag::Var<compute_type> x) const {
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      x = (*layers_[i])(tape, x);
      if (i + 1 < layers_.size()) x = mt::nn::Gelu{}(tape, x);
    }
    return x;
  }

 private:
  std::vector<std::unique_ptr<mt::nn::Linear<P>>> layers_;
};

/// torch's `.to(dtype)`: the same tensor when it already has that type, else a cast.
template <class To, class From>
ag::Var<To> as(ag::Tape& tape, const ag::Var<From>& v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else {
    return ag::cast<To>(tape, v);
  }
}

template <class P>
bench::BenchLine run(const bench::PeerFlags& f, bool allow_tf32) {
  using C = typename DeepMlp<P>::compute_type;
  using Param = typename mt::policy_traits<P>::param_type;
  using Clock = std::chrono::steady_clock;
  auto ctx = mt::ExecutionContext::on(mt::parse_device(f.device),
                                      {.host_threads = f.threads, .seed = 0, .allow_tf32 = allow_tf32});
  mt::nn::ParameterStore store;
  DeepMlp<P> net(store, f.width, f.depth);
  store.allocate(ctx);
  mt::nn::initialize(ctx, store);
  mt::optim::AdamW<P> opt(ctx, store, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  mt::optim::TrainStep<P, mt::optim::AdamW<P>> step(
      ctx, store, opt, {.schedule = {.base_lr = f.lr, .warmup_steps = f.warmup_steps}, .clip_norm = 1.0,
                        .cuda_graph = f.cuda_graph});
  // The peer's X and Y: N(0, 1) f32; X.to(param dtype) outside the step, autocast's cast inside it.
  auto x32 = mt::Tensor<float>::empty(ctx, {f.rows, f.width});
  auto y = mt::Tensor<float>::empty(ctx, {f.rows, f.width});
  mt::kernels::normal(ctx, x32, 0.0, 1.0);
  mt::kernels::normal(ctx, y, 0.0, 1.0);
  auto x = mt::Tensor<Param>::empty(ctx, {f.rows, f.width});
  mt::kernels::convert(ctx, x32, x);
  x32 = {};
  ctx.synchronize();
  ctx.allocator().counters().reset_peaks();
  ag::Tape tape(ctx);
  std::vector<double> times;
  double loss_first = 0;
  for (std::int64_t s = 0; s < f.warmup + f.steps; ++s) {
    ctx.synchronize();
    const auto t0 = Clock::now();
    step(ctx, tape, [&](ag::Tape& tp, int) { return ag::mse(tp, as<float>(tp, net(tp, as<C>(tp, ag::constant(x)))), y); });
    ctx.synchronize();
    if (s >= f.warmup) times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    if (s == 0) loss_first = step.scalars().read(ctx).loss;
  }
  std::sort(times.begin(), times.end());
  const double t = times[times.size() / 2];
  bench::BenchLine b;
  b.workload = "mlp";
  b.precision = train::precision_report_name(P::name, allow_tf32);
  b.cuda_graph = f.cuda_graph && ctx.is_cuda();
  b.per_s = static_cast<double>(f.rows) / t;
  b.step_ms = t * 1e3;
  b.tflops = 2.0 * static_cast<double>(3 * f.depth - 1) * static_cast<double>(f.width * f.width) *
             static_cast<double>(f.rows) / t / 1e12;
  b.peak_mib = static_cast<double>(ctx.allocator().counters().peak_total()) / (1 << 20);
  b.loss_first = loss_first;
  b.loss_last = step.scalars().read(ctx).loss;
#if defined(MIXTAPE_WITH_CUDA)
  if (ctx.is_cuda()) {
    cudaDeviceProp prop{};
    MIXTAPE_CUDA_CHECK(cudaGetDeviceProperties(&prop, ctx.device().index()));
    b.device = prop.name;
  }
#endif
  if (!ctx.is_cuda()) b.device = "cpu x" + std::to_string(ctx.host_threads());
  return b;
}

using Presets = mt::PresetRegistry<mt::preset_list<mt::precision::f32_true, mt::precision::f16_mixed,
                                                   mt::precision::bf16_mixed, mt::precision::bf16_true>>;

}  // namespace

int main(int argc, char** argv) {
  try {
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::printf("usage: mlp_bench [flags]\n%s  precisions: %s, tf32\n", bench::peer_flags_help(),
                    Presets::valid_names().c_str());
        return 0;
      }
    }
    const bench::PeerFlags f = bench::parse_peer_flags(argc, argv);
    const train::PrecisionFlag precision = train::parse_precision_flag(f.precision);
    bench::print_bench_line(Presets::dispatch(precision.policy, [&]<class P>() { return run<P>(f, precision.allow_tf32); }));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlp_bench: %s\n", e.what());
    return 2;
  }
}
