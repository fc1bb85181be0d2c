// Host tests of the per-step scalars, the learning-rate schedule, GradScaler (scale, unscale_,
// found_inf, update over thousands of steps against a plain transcription of torch's rules) and the
// gradient norm / clip coefficient against a long-double reference.
#include "optim_test_util.hpp"

#include <cstring>
#include <limits>
#include <string>

#include "mixtape/optim/clip.hpp"
#include "mixtape/optim/grad_scaler.hpp"

using namespace mixtape;
using namespace otest;

namespace {

ExecutionContext& host() {
  static auto* ctx = new ExecutionContext(ExecutionContext::host());
  return *ctx;
}

template <class E, class F>
void require_throws(F&& f, const std::string& part) {
  try {
    f();
  } catch (const E& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(part) != std::string::npos);
    return;
  }
  FAIL("expected an exception containing: " << part);
}

/// torch's GradScaler.update transcribed: products in double, rounded to float, no growth to inf.
struct TorchScalerRef {
  float scale;
  std::int32_t tracker = 0;
  double growth, backoff;
  std::int32_t interval;
  void update(bool found_inf) {
    if (found_inf) {
      scale = static_cast<float>(static_cast<double>(scale) * backoff);
      tracker = 0;
    } else if (tracker + 1 == interval) {
      const float grown = static_cast<float>(static_cast<double>(scale) * growth);
      if (std::isfinite(grown)) scale = grown;
      tracker = 0;
    } else {
      tracker += 1;
    }
  }
};

}  // namespace

TEST_CASE("step scalars: initial values, stream-ordered writes, snapshots read one step late", "[optim][scalars]") {
  auto& ctx = host();
  optim::StepScalars s(ctx);
  auto v = s.read(ctx);
  CHECK(v.loss_scale == 1.0f);
  CHECK(v.inv_scale == 1.0f);
  CHECK(v.clip_coef == 1.0f);
  CHECK(v.found_inf == 0.0f);
  CHECK(v.step == 0);
  CHECK(!s.read_previous().has_value());
  s.set_lr(ctx, 3e-4f);
  s.set(ctx, &StepScalarValues::skipped, std::int64_t{5});
  s.set(ctx, &StepScalarValues::found_inf, 1.0f);
  v = s.read(ctx);
  CHECK(v.lr == 3e-4f);
  CHECK(v.skipped == 5);
  s.clear_found_inf(ctx);
  CHECK(s.read(ctx).found_inf == 0.0f);
  const float loss_value = 2.5f;
  s.record_loss(ctx, Tensor<float>::wrap(const_cast<float*>(&loss_value), {1}));
  s.snapshot(ctx);
  s.set_lr(ctx, 1e-3f);
  const auto prev = s.read_previous();
  REQUIRE(prev.has_value());
  CHECK(prev->lr == 3e-4f);  // the snapshot's, not the later write
  CHECK(prev->loss == 2.5f);
  CHECK(s.view().device == Device::cpu());
  require_throws<ShapeError>([&] { s.record_loss(ctx, Tensor<float>::empty(ctx, {2})); }, "expected a loss of one element");
}

TEST_CASE("learning-rate schedule: the reference's warmup exactly, linear and cosine decay", "[optim][schedule]") {
  auto& ctx = host();
  const double base = 1e-3;
  kernels::LrSchedule warm{base, 50};
  optim::StepScalars s(ctx);
  for (int i = 0; i < 120; ++i) {
    kernels::apply_lr_schedule(ctx, s, warm);
    const auto v = s.read(ctx);
    // torch_gpt.py: g["lr"] = args.lr * min(1.0, (step + 1) / args.warmup_steps)
    const float expected = static_cast<float>(base * std::min(1.0, (i + 1) / 50.0));
    REQUIRE(v.lr == expected);
    REQUIRE(v.iteration == i + 1);
  }
  for (auto decay : {kernels::LrDecay::linear, kernels::LrDecay::cosine}) {
    const kernels::LrSchedule sch{base, 10, decay, 100, 1e-5};
    for (std::int64_t i : {0, 9, 10, 11, 60, 109, 110, 500}) {
      const double p = std::min(1.0, std::max(0.0, (i - 10) / 100.0));
      const double shape = decay == kernels::LrDecay::linear ? 1 - p : 0.5 * (1 + std::cos(M_PI * p));
      const double expected = i < 10 ? base * (i + 1) / 10.0 : 1e-5 + (base - 1e-5) * shape;
      const float got = kernels::detail::lr_at(sch, i);
      INFO("iteration " << i);
      // one rounding to float after double math: within an ulp of float
      REQUIRE(std::fabs(got - expected) <= 0x1p-23 * expected);
    }
  }
}

TEST_CASE("GradScaler: scale, unscale_ with found_inf for inf and NaN, deferred mode", "[optim][scaler]") {
  auto& ctx = host();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  optim::StepScalars s(ctx);
  optim::GradScaler scaler(ctx, s, {.init_scale = 3.0});  // inv = float(1/3): not exact, so the rounding shows
  auto loss = random_buffer<float>(ctx, 1, rng, 1, 3);
  auto scaled = Tensor<float>::empty(ctx, {1});
  optim::scale_loss(ctx, scaler, loss, scaled);
  CHECK(elem(scaled, 0) == elem(loss, 0) * 3.0f);

  auto g32 = random_buffer<float>(ctx, 1001, rng, -100, 100, MemoryRole::gradients);
  auto g16 = random_buffer<bf16>(ctx, 77, rng, -100, 100, MemoryRole::gradients);
  auto g64 = random_buffer<double>(ctx, 3, rng, -100, 100, MemoryRole::gradients);
  const auto c32 = copy_of(ctx, g32);
  const auto c16 = copy_of(ctx, g16);
  const auto c64 = copy_of(ctx, g64);
  const float inv = static_cast<float>(1.0 / 3.0);
  optim::unscale_grads(ctx, scaler, {g32, g16, g64});
  auto v = s.read(ctx);
  CHECK(v.inv_scale == inv);
  CHECK(v.found_inf == 0.0f);
  for (std::int64_t i = 0; i < 1001; ++i) REQUIRE(elem(g32, i) == elem(c32, i) * inv);
  for (std::int64_t i = 0; i < 77; ++i)
    REQUIRE(to_double(elem(g16, i)) == to_double(convert<bf16>(static_cast<float>(elem(c16, i)) * inv)));
  for (std::int64_t i = 0; i < 3; ++i) REQUIRE(elem(g64, i) == elem(c64, i) * static_cast<double>(inv));
  optim::update_scale(ctx, scaler);
  CHECK(s.read(ctx).growth_tracker == 1);

  for (double bad : {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::quiet_NaN()}) {
    INFO("bad value " << bad);
    elem(g16, 40) = convert<bf16>(bad);
    optim::unscale_grads(ctx, scaler, {g32, g16});
    CHECK(s.read(ctx).found_inf == 1.0f);
    optim::update_scale(ctx, scaler);
    elem(g16, 40) = bf16(1.0f);
  }
  v = s.read(ctx);
  CHECK(v.loss_scale == 3.0f * 0.125f);  // three backoffs
  CHECK(v.growth_tracker == 0);

  // Deferred: only the check; gradients untouched.
  elem(g32, 5) = std::numeric_limits<float>::infinity();
  const auto d32 = copy_of(ctx, g32);
  optim::unscale_grads(ctx, scaler, {g32}, optim::UnscaleMode::deferred);
  CHECK(same_bits(d32, g32));
  CHECK(s.read(ctx).found_inf == 1.0f);
  CHECK(s.read(ctx).inv_scale == static_cast<float>(1.0 / (3.0 * 0.125)));
  optim::update_scale(ctx, scaler);

  // Checkpoint state.
  const auto st = scaler.state(ctx);
  CHECK(st.scale == 3.0f * 0.0625f);
  optim::StepScalars s2(ctx);
  optim::GradScaler restored(ctx, s2);
  restored.load_state(ctx, st);
  CHECK(restored.state(ctx).scale == st.scale);
  CHECK(restored.state(ctx).growth_tracker == st.growth_tracker);
}

TEST_CASE("GradScaler update follows torch's rules over 5000 steps", "[optim][scaler]") {
  auto& ctx = host();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  struct Case {
    optim::GradScalerOptions o;
    double p_inf;
  };
  const Case cases[] = {
      {{}, 0.0003},                                                    // torch defaults
      {{.init_scale = 1024, .growth_factor = 2, .backoff_factor = 0.5, .growth_interval = 7}, 0.05},
      {{.init_scale = 0x1p125, .growth_factor = 3, .backoff_factor = 0.25, .growth_interval = 3}, 0.01},  // hits the float limit
      {{.init_scale = 1.5, .growth_factor = 1.1, .backoff_factor = 0.9, .growth_interval = 1}, 0.2},    // inexact products
  };
  for (const auto& c : cases) {
    optim::StepScalars s(ctx);
    optim::GradScaler scaler(ctx, s, c.o);
    TorchScalerRef ref{static_cast<float>(c.o.init_scale), 0, c.o.growth_factor, c.o.backoff_factor, c.o.growth_interval};
    std::bernoulli_distribution inf(c.p_inf);
    bool saw_refusal = false;
    for (int step = 0; step < 5000; ++step) {
      const bool found = inf(rng);
      s.set(ctx, &StepScalarValues::found_inf, found ? 1.0f : 0.0f);
      const float before = ref.scale;
      ref.update(found);
      saw_refusal |= !found && ref.tracker == 0 && ref.scale == before && c.o.growth_interval > 0 && before > 1e38f;
      optim::update_scale(ctx, scaler);
      const auto v = s.read(ctx);
      INFO("case interval " << c.o.growth_interval << " step " << step);
      REQUIRE(std::memcmp(&v.loss_scale, &ref.scale, sizeof(float)) == 0);
      REQUIRE(v.growth_tracker == ref.tracker);
    }
    if (c.o.init_scale == 0x1p125) CHECK(saw_refusal);
  }
}

TEST_CASE("GradScaler errors: f16 gradients, unscale twice, bad options, disabled", "[optim][scaler][errors]") {
  auto& ctx = host();
  std::mt19937_64 rng(3);
  optim::StepScalars s(ctx);
  optim::GradScaler scaler(ctx, s);
  auto g16 = random_buffer<f16>(ctx, 10, rng, -1, 1);
  auto g32 = random_buffer<float>(ctx, 10, rng, -1, 1);
  require_throws<DTypeError>([&] { optim::unscale_grads(ctx, scaler, {g32, g16}); }, "Attempting to unscale FP16 gradients.");
  CHECK(!scaler.unscaled());
  optim::unscale_grads(ctx, scaler, {g32});
  require_throws<ValueError>([&] { optim::unscale_grads(ctx, scaler, {g32}); }, "unscale_() has already been called");
  optim::update_scale(ctx, scaler);
  optim::unscale_grads(ctx, scaler, {g32});  // fine again after update
  optim::update_scale(ctx, scaler);

  optim::GradScaler f16_ok(ctx, s, {.allow_f16_grads = true});
  optim::unscale_grads(ctx, f16_ok, {g16});
  auto gi = Tensor<std::int32_t>::empty(ctx, {4});
  optim::GradScaler other(ctx, s);
  require_throws<DTypeError>([&] { optim::unscale_grads(ctx, other, {gi}); }, "must be floating-point");
  require_throws<ShapeError>([&] { optim::unscale_grads(ctx, other, {Tensor<float>::empty(ctx, {4, 5}).transposed()}); },
                             "must be a dense buffer");

  require_throws<ValueError>([&] { optim::GradScaler(ctx, s, {.growth_factor = 1.0}); }, "growth factor must be > 1.0");
  require_throws<ValueError>([&] { optim::GradScaler(ctx, s, {.backoff_factor = 1.0}); }, "backoff factor");
  require_throws<ValueError>([&] { optim::GradScaler(ctx, s, {.growth_interval = 0}); }, "growth interval");
  require_throws<ValueError>([&] { optim::GradScaler(ctx, s, {.init_scale = 0}); }, "initial scale");

  // Disabled: nothing happens, not even the twice-check (torch returns at once).
  optim::StepScalars s3(ctx);
  optim::GradScaler off(ctx, s3, {.enabled = false});
  const auto c32 = copy_of(ctx, g32);
  optim::unscale_grads(ctx, off, {g32, g16});
  optim::unscale_grads(ctx, off, {g32});
  optim::update_scale(ctx, off);
  CHECK(same_bits(c32, g32));
  CHECK(s3.read(ctx).loss_scale == 1.0f);
  auto out = Tensor<float>::empty(ctx, {10});
  optim::scale_loss(ctx, off, g32, out);
  CHECK(same_bits(out, g32));
}

TEST_CASE("global grad norm and clip coefficient over f32, bf16, f16 and f64 groups", "[optim][clip]") {
  auto& ctx = host();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  auto a = random_buffer<float>(ctx, 20011, rng, -1, 1, MemoryRole::gradients);
  auto b = random_buffer<bf16>(ctx, 77, rng, -3, 3, MemoryRole::gradients);
  auto c = random_buffer<f16>(ctx, 1000, rng, -1, 1, MemoryRole::gradients);
  auto d = random_buffer<double>(ctx, 3, rng, -10, 10, MemoryRole::gradients);
  const std::vector<TensorRef> grads{a, b, c, d};
  long double ref_sq = 0;
  std::int64_t total_n = 0;
  auto acc = [&](const auto& t, double scale) {
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const long double x = static_cast<long double>(to_double(elem(t, i))) * scale;
      ref_sq += x * x;
    }
    total_n += t.numel();
  };
  acc(a, 1), acc(b, 1), acc(c, 1), acc(d, 1);
  const double ref_norm = static_cast<double>(std::sqrt(ref_sq));
  // The sum of n squares in double errs by at most (n + log2 n) 2^-53 relative (all terms are
  // positive); the square root halves that, and the final rounding to float adds 2^-24.
  const double norm_tol = ref_norm * ((total_n + 20) * 0x1p-54 + 0x1p-24);
  optim::StepScalars s(ctx);
  for (double max_norm : {1.0, 1e6}) {
    const auto before = std::make_tuple(copy_of(ctx, a), copy_of(ctx, b), copy_of(ctx, c), copy_of(ctx, d));
    optim::clip_grad_norm(ctx, s, grads, {.max_norm = max_norm});
    const auto v = s.read(ctx);
    INFO("max_norm " << max_norm << " norm " << v.grad_norm << " reference " << ref_norm);
    REQUIRE(std::fabs(v.grad_norm - ref_norm) <= norm_tol);
    // torch: clip_coef = max_norm / (norm + 1e-6) in float, clamped to 1.
    const float coef = std::min(1.0f, static_cast<float>(max_norm) / (v.grad_norm + 1e-6f));
    REQUIRE(v.clip_coef == coef);
    // In place: g = T(float(g) * coef) (double for f64).
    for (std::int64_t i = 0; i < a.numel(); ++i) REQUIRE(elem(a, i) == elem(std::get<0>(before), i) * coef);
    for (std::int64_t i = 0; i < b.numel(); ++i)
      REQUIRE(to_double(elem(b, i)) == to_double(convert<bf16>(static_cast<float>(elem(std::get<1>(before), i)) * coef)));
    for (std::int64_t i = 0; i < c.numel(); ++i)
      REQUIRE(to_double(elem(c, i)) == to_double(convert<f16>(static_cast<float>(elem(std::get<2>(before), i)) * coef)));
    for (std::int64_t i = 0; i < d.numel(); ++i) REQUIRE(elem(d, i) == elem(std::get<3>(before), i) * static_cast<double>(coef));
    if (max_norm == 1.0) {
      ktest::copy_values(std::get<0>(before), a), ktest::copy_values(std::get<1>(before), b);
      ktest::copy_values(std::get<2>(before), c), ktest::copy_values(std::get<3>(before), d);
    }
  }

  SECTION("deferred: the norm of the unscaled gradients, the gradients untouched") {
    s.set(ctx, &StepScalarValues::inv_scale, 0.25f);
    const auto ca = copy_of(ctx, a);
    optim::clip_grad_norm(ctx, s, grads, {.max_norm = 1.0, .in_place = false, .grads_scaled = true});
    CHECK(same_bits(ca, a));
    const auto v = s.read(ctx);
    ref_sq = 0, total_n = 0;
    acc(a, 0.25), acc(b, 0.25), acc(c, 0.25), acc(d, 0.25);
    const double r = static_cast<double>(std::sqrt(ref_sq));
    CHECK(std::fabs(v.grad_norm - r) <= r * ((total_n + 20) * 0x1p-54 + 0x1p-24));
  }
  SECTION("non-finite gradients propagate; skip_step sets found_inf") {
    elem(b, 3) = convert<bf16>(std::numeric_limits<double>::infinity());
    kernels::grad_norm(ctx, s, grads, 1.0);
    auto v = s.read(ctx);
    CHECK(std::isinf(v.grad_norm));
    CHECK(v.clip_coef == 0.0f);
    CHECK(v.found_inf == 0.0f);  // torch's default: no flag
    elem(c, 9) = convert<f16>(std::numeric_limits<double>::quiet_NaN());
    optim::clip_grad_norm(ctx, s, grads, {.max_norm = 1.0, .in_place = false, .nonfinite = optim::NonFiniteNorm::skip_step});
    v = s.read(ctx);
    CHECK(std::isnan(v.grad_norm));
    CHECK(std::isnan(v.clip_coef));
    CHECK(v.found_inf == 1.0f);
  }
  SECTION("empty lists and bad inputs") {
    optim::clip_grad_norm(ctx, s, std::span<const TensorRef>{});
    CHECK(s.read(ctx).grad_norm == 0.0f);
    CHECK(s.read(ctx).clip_coef == 1.0f);
    require_throws<ValueError>([&] { optim::clip_grad_norm(ctx, s, grads, {.max_norm = 0}); }, "positive finite max_norm");
    auto gi = Tensor<std::int64_t>::empty(ctx, {3});
    require_throws<DTypeError>([&] { optim::clip_grad_norm(ctx, s, {a, gi}); }, "gradient 1 must be floating-point");
  }
}
