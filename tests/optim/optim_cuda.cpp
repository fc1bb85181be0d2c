// GPU tests of the optimizer kernels. This unit is compiled by the host compiler: its kernels:: and
// optim:: calls are the host backend (the reference), and ocuda:: calls reach the CUDA backend
// instantiated in optim_cuda_*.cu. The update kernels, unscale, in-place clip, the scaler update
// and the warmup / linear schedule must be bitwise identical between the two (the tests build with
// --fmad=false); the gradient norm within the rounding of two summation orders. Finally a whole
// step (schedule, unscale, norm and clip, AdamW, scaler update) is captured into a CUDA graph,
// which fails if anything in it syncs with the host, and replayed against the eager step.
#include "optim_test_util.hpp"

#include <chrono>
#include <cstring>
#include <limits>
#include <thread>

#include "optim_cuda_helpers.hpp"
#include "mixtape/core/transfer.hpp"

using namespace mixtape;
using namespace otest;
using kernels::AdamWGroup;
using kernels::AdamWHyper;
using kernels::DecaySegment;
using kernels::GradFactors;
using kernels::SegmentTable;
using kernels::SgdGroup;
using kernels::SgdHyper;
using kernels::UpdateOptions;

namespace {

// Created on first use and never destroyed: no CUDA call runs during static destruction.
ExecutionContext& dev() {
  static auto* ctx = new ExecutionContext(ExecutionContext::cuda(0));
  return *ctx;
}
ExecutionContext& host() {
  static auto* ctx = new ExecutionContext(ExecutionContext::host());
  return *ctx;
}

template <class T>
Tensor<T> to_dev(const Tensor<T>& h) {
  if (!h.defined()) return {};
  return to_device(dev(), h, Device::cuda(0), h.storage()->role());
}

/// Device tensor equals host tensor bit for bit.
template <class T>
void require_same_bits(const char* what, const Tensor<T>& h, const Tensor<T>& d) {
  if (!h.defined()) return;
  const auto back = to_vector(dev(), d);
  const std::int64_t i = ktest::first_bitwise_difference(back.data(), h.data(), h.numel());
  INFO(what << ": first difference at element " << i << " of " << h.numel());
  if (i >= 0) INFO("device " << to_double(back[i]) << " host " << to_double(h.data()[i]));
  REQUIRE(i < 0);
}

void require_same_scalars(const optim::StepScalars& h, const optim::StepScalars& d) {
  const auto a = h.read(host()), b = d.read(dev());
  INFO("host step " << a.step << " skipped " << a.skipped << " scale " << a.loss_scale << " lr " << a.lr
                    << "; device step " << b.step << " skipped " << b.skipped << " scale " << b.loss_scale << " lr "
                    << b.lr);
  REQUIRE(std::memcmp(&a, &b, sizeof a) == 0);
}

std::vector<DecaySegment> gap_segments(std::int64_t n) {
  return {{0, n / 2, true}, {n / 2, n / 4, false}, {n / 2 + n / 4 + 1, n - n / 2 - n / 4 - 1, true}};
}

/// Runs the same AdamW steps (one skipped) on host and device copies of one group, comparing every
/// buffer and the step scalars bitwise after each step.
template <class U, class P, class G, class M1, class M2, class W, class C>
void check_adamw_twins(const char* name, std::int64_t n, bool master, bool compute, UpdateRounding rounding,
                       GradFactors factors) {
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO(name << " n " << n << " rounding " << static_cast<int>(rounding) << " seed " << seed);
  AdamWGroup<P, G, M1, M2, W, C> h;
  h.param = random_buffer<P>(host(), n, rng, -1, 1);
  h.grad = random_buffer<G>(host(), n, rng, -1, 1);
  h.exp_avg = random_buffer<M1>(host(), n, rng, -0.1, 0.1);
  h.exp_avg_sq = random_buffer<M2>(host(), n, rng, 0, 0.1);
  if (master) h.master = random_buffer<W>(host(), n, rng, -1, 1);
  if (compute) h.compute = random_buffer<C>(host(), n, rng, -1, 1);
  if (rounding == UpdateRounding::kahan) h.compensation = random_buffer<P>(host(), n, rng, -1e-3, 1e-3);
  const auto segs = gap_segments(n);
  SegmentTable th(host(), n, segs), td(dev(), n, segs);
  h.segments = &th;
  h.rng_stream = 3;
  AdamWGroup<P, G, M1, M2, W, C> d{to_dev(h.param), to_dev(h.grad), to_dev(h.exp_avg), to_dev(h.exp_avg_sq),
                                   to_dev(h.master), to_dev(h.compute), to_dev(h.compensation), &td, 3};
  optim::StepScalars sh(host()), sd(dev());
  for (auto* p : {&sh, &sd}) {
    auto& ctx = p == &sh ? host() : dev();
    p->set_lr(ctx, 3e-3f);
    p->set(ctx, &StepScalarValues::inv_scale, 0.3f);
    p->set(ctx, &StepScalarValues::clip_coef, 0.7f);
  }
  const AdamWHyper hyper{0.9, 0.95, 1e-8, 0.1};
  for (int k = 0; k < 4; ++k) {
    INFO("step " << k);
    fill_grad(h.grad, rng);
    copy(dev(), h.grad, d.grad);
    if (k == 2) {  // a skipped step
      sh.set(host(), &StepScalarValues::found_inf, 1.0f);
      sd.set(dev(), &StepScalarValues::found_inf, 1.0f);
    } else if (k == 3) {
      sh.clear_found_inf(host());
      sd.clear_found_inf(dev());
    }
    kernels::adamw_step<U>(host(), sh, hyper, UpdateOptions{rounding, factors}, h);
    ocuda::adamw_step<U>(dev(), sd, hyper, UpdateOptions{rounding, factors}, d);
    require_same_bits("param", h.param, d.param);
    require_same_bits("exp_avg", h.exp_avg, d.exp_avg);
    require_same_bits("exp_avg_sq", h.exp_avg_sq, d.exp_avg_sq);
    require_same_bits("master", h.master, d.master);
    require_same_bits("compute", h.compute, d.compute);
    require_same_bits("compensation", h.compensation, d.compensation);
    require_same_scalars(sh, sd);
  }
}

template <class U, class P, class G, class M1, class W, class C>
void check_sgd_twins(const char* name, std::int64_t n, const SgdHyper& hyper, bool master, bool compute,
                     UpdateRounding rounding) {
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO(name << " n " << n << " rounding " << static_cast<int>(rounding) << " seed " << seed);
  SgdGroup<P, G, M1, W, C> h;
  h.param = random_buffer<P>(host(), n, rng, -1, 1);
  h.grad = random_buffer<G>(host(), n, rng, -1, 1);
  h.momentum_buffer = random_buffer<M1>(host(), n, rng, -1, 1);
  if (master) h.master = random_buffer<W>(host(), n, rng, -1, 1);
  if (compute) h.compute = random_buffer<C>(host(), n, rng, -1, 1);
  if (rounding == UpdateRounding::kahan) h.compensation = random_buffer<P>(host(), n, rng, -1e-3, 1e-3);
  const auto segs = gap_segments(n);
  SegmentTable th(host(), n, segs), td(dev(), n, segs);
  h.segments = &th;
  SgdGroup<P, G, M1, W, C> d{to_dev(h.param), to_dev(h.grad), to_dev(h.momentum_buffer), to_dev(h.master),
                             to_dev(h.compute), to_dev(h.compensation), &td, 0};
  optim::StepScalars sh(host()), sd(dev());
  sh.set_lr(host(), 0.05f);
  sd.set_lr(dev(), 0.05f);
  for (int k = 0; k < 4; ++k) {
    INFO("step " << k);
    fill_grad(h.grad, rng);
    copy(dev(), h.grad, d.grad);
    kernels::sgd_step<U>(host(), sh, hyper, UpdateOptions{rounding}, h);
    ocuda::sgd_step<U>(dev(), sd, hyper, UpdateOptions{rounding}, d);
    require_same_bits("param", h.param, d.param);
    require_same_bits("momentum", h.momentum_buffer, d.momentum_buffer);
    require_same_bits("master", h.master, d.master);
    require_same_bits("compute", h.compute, d.compute);
    require_same_bits("compensation", h.compensation, d.compensation);
    require_same_scalars(sh, sd);
  }
}

}  // namespace

TEST_CASE("cuda adamw equals host bitwise for every storage combination and rounding", "[cuda][optim][adamw]") {
  using R = UpdateRounding;
  for (std::int64_t n : {1, 1000, 40007}) {
    for (R r : {R::nearest, R::stochastic, R::kahan}) {
      check_adamw_twins<float, float, float, float, float, float, bf16>("f32+bf16 copy", n, false, true, r, {true, true});
      check_adamw_twins<float, bf16, bf16, bf16, bf16, float, bf16>("bf16-true", n, false, false, r, {});
      check_adamw_twins<double, float, float, float, float, float, float>("f32 [f64 math]", n, false, false, r, {true, false});
    }
    for (R r : {R::nearest, R::stochastic}) {
      check_adamw_twins<float, bf16, bf16, float, float, float, bf16>("bf16+master", n, true, false, r, {false, true});
      check_adamw_twins<float, f16, f16, float, float, float, f16>("f16+master+copy", n, true, true, r, {true, true});
    }
    check_adamw_twins<double, double, double, double, double, float, double>("f64", n, false, false, R::nearest, {true, true});
  }
}

TEST_CASE("cuda sgd equals host bitwise", "[cuda][optim][sgd]") {
  using R = UpdateRounding;
  for (std::int64_t n : {7, 40007}) {
    check_sgd_twins<float, float, float, float, float, bf16>("f32 nesterov + copy", n, SgdHyper{0.9, 0, 0.01, true}, false, true,
                                                             R::nearest);
    check_sgd_twins<float, float, float, float, float, bf16>("f32 dampening", n, SgdHyper{0.9, 0.1, 0.01, false}, false, false,
                                                             R::nearest);
    for (R r : {R::nearest, R::stochastic, R::kahan})
      check_sgd_twins<float, bf16, bf16, bf16, float, bf16>("bf16", n, SgdHyper{0.9, 0, 0.01, false}, false, false, r);
  }
}

TEST_CASE("cuda unscale, in-place clip and scale_loss equal host bitwise; found_inf agrees", "[cuda][optim][scaler]") {
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  auto a = random_buffer<float>(host(), 40007, rng, -1e3, 1e3);
  auto b = random_buffer<bf16>(host(), 513, rng, -1e3, 1e3);
  auto c = random_buffer<f16>(host(), 77, rng, -1e3, 1e3);
  auto e = random_buffer<double>(host(), 5, rng, -1e3, 1e3);
  auto ad = to_dev(a);
  auto ed = to_dev(e);
  auto bd = to_dev(b);
  auto cd = to_dev(c);
  const std::vector<TensorRef> gh{a, b, c, e}, gd{ad, bd, cd, ed};
  optim::StepScalars sh(host()), sd(dev());
  const optim::GradScalerOptions o{.init_scale = 3.0, .allow_f16_grads = true};
  optim::GradScaler sch(host(), sh, o), scd(dev(), sd, o);
  for (int k = 0; k < 3; ++k) {
    INFO("round " << k);
    if (k == 1) {
      elem(b, 100) = convert<bf16>(std::numeric_limits<double>::infinity());
      copy(dev(), b, bd);
    } else if (k == 2) {
      elem(b, 100) = bf16(1.0f);
      elem(e, 4) = std::numeric_limits<double>::quiet_NaN();
      copy(dev(), b, bd);
      copy(dev(), e, ed);
    }
    optim::unscale_grads(host(), sch, gh);
    ocuda::unscale_grads(dev(), scd, gd, optim::UnscaleMode::in_place);
    require_same_bits("f32", a, ad);
    require_same_bits("bf16", b, bd);
    require_same_bits("f16", c, cd);
    require_same_bits("f64", e, ed);
    require_same_scalars(sh, sd);
    CHECK(sh.read(host()).found_inf == (k == 0 ? 0.0f : 1.0f));
    optim::update_scale(host(), sch);
    ocuda::update_scale(dev(), scd);
    require_same_scalars(sh, sd);
  }
  // In-place clip by a given coefficient.
  sh.set(host(), &StepScalarValues::clip_coef, 0.123f);
  sd.set(dev(), &StepScalarValues::clip_coef, 0.123f);
  kernels::scale_by_clip_coef(host(), sh, gh);
  ocuda::scale_by_clip_coef(dev(), sd, gd);
  require_same_bits("clip f32", a, ad);
  require_same_bits("clip bf16", b, bd);
  // scale_loss
  auto loss = random_buffer<float>(host(), 1, rng, 1, 10), out = Tensor<float>::empty(host(), {1});
  auto lossd = to_dev(loss), outd = to_dev(out);
  optim::scale_loss(host(), sch, loss, out);
  ocuda::scale_loss(dev(), scd, lossd, outd);
  require_same_bits("scale_loss", out, outd);
}

TEST_CASE("cuda scaler update and schedule equal host bitwise over many steps", "[cuda][optim][scaler]") {
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  optim::StepScalars sh(host()), sd(dev());
  const optim::GradScalerOptions o{.init_scale = 0x1p120, .growth_factor = 3, .backoff_factor = 0.3, .growth_interval = 4};
  optim::GradScaler sch(host(), sh, o), scd(dev(), sd, o);
  const kernels::LrSchedule warm_linear{1e-3, 20, kernels::LrDecay::linear, 150, 1e-5};
  std::bernoulli_distribution inf(0.1);
  for (int step = 0; step < 300; ++step) {
    INFO("step " << step);
    const float f = inf(rng) ? 1.0f : 0.0f;
    sh.set(host(), &StepScalarValues::found_inf, f);
    sd.set(dev(), &StepScalarValues::found_inf, f);
    optim::update_scale(host(), sch);
    ocuda::update_scale(dev(), scd);
    kernels::apply_lr_schedule(host(), sh, warm_linear);
    ocuda::apply_lr_schedule(dev(), sd, warm_linear);
    require_same_scalars(sh, sd);
  }
  // Cosine uses each side's cos: within an ulp of float.
  const kernels::LrSchedule cosine{1e-3, 10, kernels::LrDecay::cosine, 100, 0.0};
  for (int step = 0; step < 130; ++step) {
    kernels::apply_lr_schedule(host(), sh, cosine);
    ocuda::apply_lr_schedule(dev(), sd, cosine);
    const float lh = sh.read(host()).lr, ld = sd.read(dev()).lr;
    REQUIRE(std::fabs(lh - ld) <= 0x1p-23f * std::fabs(lh));
  }
}

TEST_CASE("cuda grad norm within rounding of the host's; clip coefficient follows", "[cuda][optim][clip]") {
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (std::int64_t n : {1, 1000, 3000001}) {
    auto a = random_buffer<float>(host(), n, rng, -1, 1);
    auto b = random_buffer<bf16>(host(), 999, rng, -2, 2);
    auto ad = to_dev(a);
    auto bd = to_dev(b);
    const std::vector<TensorRef> gh{a, b}, gd{ad, bd};
    optim::StepScalars sh(host()), sd(dev());
    for (bool scaled : {false, true}) {
      sh.set(host(), &StepScalarValues::inv_scale, 0.5f);
      sd.set(dev(), &StepScalarValues::inv_scale, 0.5f);
      const optim::ClipOptions opt{.max_norm = 1.0, .in_place = false, .grads_scaled = scaled};
      optim::clip_grad_norm(host(), sh, gh, opt);
      ocuda::clip_grad_norm(dev(), sd, gd, opt);
      const auto vh = sh.read(host()), vd = sd.read(dev());
      INFO("n " << n << " host " << vh.grad_norm << " device " << vd.grad_norm);
      // Both sum the squares in double (relative error <= (n + log2 n) 2^-53, positive terms) and
      // round once to float: the two floats are within an ulp (2^-23 relative) of each other.
      REQUIRE(std::fabs(vh.grad_norm - vd.grad_norm) <= 0x1p-23f * vh.grad_norm);
      REQUIRE(std::fabs(vh.clip_coef - vd.clip_coef) <= 0x1p-22f * vh.clip_coef);
    }
  }
  // Non-finite values propagate on the device too.
  auto a = random_buffer<float>(host(), 100, rng, -1, 1);
  elem(a, 7) = std::numeric_limits<float>::quiet_NaN();
  auto ad = to_dev(a);
  optim::StepScalars sd(dev());
  ocuda::clip_grad_norm(dev(), sd, std::vector<TensorRef>{ad}, {.max_norm = 1.0, .in_place = false,
                                                                 .nonfinite = optim::NonFiniteNorm::skip_step});
  const auto v = sd.read(dev());
  CHECK(std::isnan(v.grad_norm));
  CHECK(std::isnan(v.clip_coef));
  CHECK(v.found_inf == 1.0f);
}

TEST_CASE("cuda step scalars: a snapshot is read one step late and never blocks", "[cuda][optim][scalars]") {
  auto& ctx = dev();
  optim::StepScalars s(ctx);
  CHECK(!s.read_previous().has_value());
  s.set_lr(ctx, 1.0f);
  s.snapshot(ctx);
  ctx.synchronize();
  REQUIRE(s.read_previous().has_value());
  CHECK(s.read_previous()->lr == 1.0f);
  // Hold the stream for 300 ms, then queue step 2's write and snapshot behind it.
  MIXTAPE_CUDA_CHECK(cudaLaunchHostFunc(
      ctx.stream(), [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }, nullptr));
  s.set_lr(ctx, 2.0f);
  s.snapshot(ctx);
  const auto t0 = std::chrono::steady_clock::now();
  const auto prev = s.read_previous();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms < 100.0);
  REQUIRE(prev.has_value());
  CHECK(prev->lr == 1.0f);  // step 2's copy has not run yet
  ctx.synchronize();
  CHECK(s.read_previous()->lr == 2.0f);
  // record_loss copies a device scalar.
  auto loss = from_host(ctx, std::span<const float>(std::array{4.5f}), {1});
  s.record_loss(ctx, loss);
  CHECK(s.read(ctx).loss == 4.5f);
}

// A whole step captured into one CUDA graph: capture fails (cudaErrorStreamCaptureUnsupported and
// friends) if anything in it synchronizes with the host, allocates outside the stream-ordered pool
// or copies from pageable memory. Replays must equal the eager steps bit for bit, including a
// skipped step when a gradient becomes inf.
TEST_CASE("cuda: an AdamW step with scaler, clip and schedule captures into a graph and replays like eager", "[cuda][optim][graph]") {
  auto& ctx = dev();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  const std::int64_t n = 50021;
  AdamWGroup<float, float, float, float, float, bf16> h;
  h.param = random_buffer<float>(host(), n, rng, -1, 1);
  h.grad = random_buffer<float>(host(), n, rng, -1e3, 1e3);  // "scaled" gradients
  h.exp_avg = random_buffer<float>(host(), n, rng, -0.1, 0.1);
  h.exp_avg_sq = random_buffer<float>(host(), n, rng, 0, 0.1);
  h.compute = random_buffer<bf16>(host(), n, rng, -1, 1);
  const auto segs = gap_segments(n);
  SegmentTable table(ctx, n, segs);
  struct Twin {
    AdamWGroup<float, float, float, float, float, bf16> g;
    std::unique_ptr<optim::StepScalars> s;
    std::unique_ptr<optim::GradScaler> scaler;
  };
  auto make = [&] {
    Twin t;
    t.g = {to_dev(h.param), to_dev(h.grad), to_dev(h.exp_avg), to_dev(h.exp_avg_sq), {}, to_dev(h.compute), {}, &table, 0};
    t.s = std::make_unique<optim::StepScalars>(ctx);
    t.scaler = std::make_unique<optim::GradScaler>(ctx, *t.s, optim::GradScalerOptions{.init_scale = 1024, .growth_interval = 2});
    return t;
  };
  Twin eager = make(), graphed = make();
  const kernels::LrSchedule schedule{1e-3, 3};
  const AdamWHyper hyper{0.9, 0.95, 1e-8, 0.1};
  auto step = [&](Twin& t) {
    const std::vector<TensorRef> grads{t.g.grad};
    ocuda::apply_lr_schedule(ctx, *t.s, schedule);
    ocuda::unscale_grads(ctx, *t.scaler, grads, optim::UnscaleMode::in_place);
    ocuda::clip_grad_norm(ctx, *t.s, grads, {.max_norm = 1.0});
    ocuda::adamw_step<float>(ctx, *t.s, hyper, UpdateOptions{}, t.g);
    ocuda::update_scale(ctx, *t.scaler);
  };
  ctx.synchronize();
  cudaGraph_t graph = nullptr;
  MIXTAPE_CUDA_CHECK(cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeGlobal));
  step(graphed);
  MIXTAPE_CUDA_CHECK(cudaStreamEndCapture(ctx.stream(), &graph));
  cudaGraphExec_t exec = nullptr;
  MIXTAPE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  auto compare = [&] {
    ctx.synchronize();
    for (auto [e, g] : {std::pair{&eager.g.param, &graphed.g.param}, {&eager.g.grad, &graphed.g.grad},
                        {&eager.g.exp_avg, &graphed.g.exp_avg}, {&eager.g.exp_avg_sq, &graphed.g.exp_avg_sq}}) {
      const auto a = to_vector(ctx, *e), b = to_vector(ctx, *g);
      REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    }
    const auto ca = to_vector(ctx, eager.g.compute), cb = to_vector(ctx, graphed.g.compute);
    REQUIRE(std::memcmp(ca.data(), cb.data(), ca.size() * sizeof(bf16)) == 0);
    const auto va = eager.s->read(ctx), vb = graphed.s->read(ctx);
    REQUIRE(std::memcmp(&va, &vb, sizeof va) == 0);
    return va;
  };
  for (int k = 0; k < 2; ++k) {
    step(eager);
    MIXTAPE_CUDA_CHECK(cudaGraphLaunch(exec, ctx.stream()));
  }
  auto v = compare();
  CHECK(v.step == 2);
  CHECK(v.iteration == 2);
  CHECK(v.loss_scale == 2048.0f);  // grown once after growth_interval = 2 successful steps
  CHECK(v.lr == static_cast<float>(1e-3 * (2 / 3.0)));  // lr_at: base * min(1, (i + 1) / warmup)
  // An inf gradient: both skip the update, count it, and back off the scale.
  const float inf = std::numeric_limits<float>::infinity();
  for (auto* t : {&eager, &graphed})
    MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(t->g.grad.data() + 17, &inf, sizeof inf, cudaMemcpyHostToDevice, ctx.stream()));
  ctx.synchronize();
  const auto p_before = to_vector(ctx, graphed.g.param);
  step(eager);
  MIXTAPE_CUDA_CHECK(cudaGraphLaunch(exec, ctx.stream()));
  v = compare();
  CHECK(v.step == 2);
  CHECK(v.skipped == 1);
  CHECK(v.loss_scale == 1024.0f);
  const auto p_after = to_vector(ctx, graphed.g.param);
  CHECK(std::memcmp(p_before.data(), p_after.data(), p_before.size() * sizeof(float)) == 0);
  MIXTAPE_CUDA_CHECK(cudaGraphExecDestroy(exec));
  MIXTAPE_CUDA_CHECK(cudaGraphDestroy(graph));
}
