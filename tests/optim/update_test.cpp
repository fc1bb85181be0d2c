// Host tests of the AdamW and SGD update kernels against plain long-double references of torch's
// formulas (optim_test_util.hpp, with the derived error bounds), for the storage combinations of
// the presets: f32 (32-true), f32 + bf16 compute copy (bf16-mixed), bf16 + f32 master (llm.c),
// bf16 everywhere with nearest or stochastic rounding (bf16-true), f64 (64-true), f16 + f32 master,
// and f32 with f64 update math. Also: weight decay per segment, gradient factors, skipped steps,
// stochastic rounding's unbiasedness, Kahan compensation, determinism across thread counts.
#include "optim_test_util.hpp"

#include <cstring>
#include <limits>
#include <string>
#include <tuple>

using namespace mixtape;
using namespace otest;
using kernels::AdamWGroup;
using kernels::AdamWHyper;
using kernels::DecaySegment;
using kernels::GradFactors;
using kernels::ParamSegment;
using kernels::SegmentTable;
using kernels::SgdGroup;
using kernels::SgdHyper;
using kernels::UpdateOptions;

namespace {

ExecutionContext& host() {
  static auto* ctx = new ExecutionContext(ExecutionContext::host());
  return *ctx;
}

/// Segments over n elements: decay, no decay, a one-element gap (a frozen parameter), decay.
std::vector<DecaySegment> test_segments(std::int64_t n) {
  if (n < 4) return {{0, n, true}};
  const std::int64_t a = n / 3, b = 2 * n / 3;
  return {{0, a, true}, {a, b - a, false}, {b + 1, n - b - 1, true}};
}

struct Setup {
  std::int64_t n;
  bool segments;
  GradFactors factors;
  UpdateRounding rounding = UpdateRounding::nearest;
  double lr;
  int steps = 5;
};

/// Runs `steps` AdamW steps on fresh random buffers and compares each with the reference.
template <class U, class P, class G, class M1, class M2, class W = float, class C = P>
void check_adamw(const std::string& name, const Setup& su, bool master, bool compute) {
  auto& ctx = host();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO(name << " n " << su.n << " seed " << seed);
  AdamWGroup<P, G, M1, M2, W, C> grp;
  grp.param = Tensor<P>::empty(ctx, {su.n}, MemoryRole::weights);
  grp.grad = Tensor<G>::empty(ctx, {su.n}, MemoryRole::gradients);
  grp.exp_avg = random_buffer<M1>(ctx, su.n, rng, -0.1, 0.1, MemoryRole::optimizer_state);
  grp.exp_avg_sq = random_buffer<M2>(ctx, su.n, rng, 0.01, 0.1, MemoryRole::optimizer_state);
  if (master) {
    grp.master = random_buffer<W>(ctx, su.n, rng, -2, 2, MemoryRole::master);
    for (std::int64_t i = 0; i < su.n; ++i) elem(grp.param, i) = convert<P>(elem(grp.master, i));
  } else {
    ktest::fill_random(grp.param, rng, -2, 2);
  }
  if (compute) grp.compute = random_buffer<C>(ctx, su.n, rng, -1, 1);
  const auto segs = test_segments(su.n);
  SegmentTable table;
  std::vector<char> flags(static_cast<std::size_t>(su.n), 1);
  if (su.segments) {
    table = SegmentTable(ctx, su.n, segs);
    grp.segments = &table;
    flags = decay_flags(su.n, segs);
  }
  const auto param0 = copy_of(ctx, grp.param);
  const AdamWHyper h{0.9, 0.95, 1e-8, 0.1};
  optim::StepScalars s(ctx);
  s.set_lr(ctx, static_cast<float>(su.lr));
  const double inv = su.factors.inv_scale ? 0.5 : 1.0, clip = su.factors.clip ? 0.75 : 1.0;
  s.set(ctx, &StepScalarValues::inv_scale, static_cast<float>(inv));
  s.set(ctx, &StepScalarValues::clip_coef, static_cast<float>(clip));

  AdamRef ref;
  if (master) {
    ref.init(grp.master, grp.exp_avg, grp.exp_avg_sq);
  } else {
    ref.init(grp.param, grp.exp_avg, grp.exp_avg_sq);
  }
  RoundingModel model;
  model.u = ktest::unit_roundoff<U>();
  model.s_param = master ? store_roundoff<W, U>() : store_roundoff<P, U>();
  model.s_m1 = store_roundoff<M1, U>();
  model.s_m2 = store_roundoff<M2, U>();
  model.factors = int(su.factors.inv_scale) + int(su.factors.clip);
  model.u_factor = ktest::unit_roundoff<kernels::detail::opmath_t<G>>() + store_roundoff<G, kernels::detail::opmath_t<G>>();
  model.stochastic = su.rounding == UpdateRounding::stochastic;
  const double lr32 = static_cast<double>(static_cast<float>(su.lr));

  for (int k = 1; k <= su.steps; ++k) {
    INFO("step " << k);
    fill_grad(grp.grad, rng);
    kernels::adamw_step<U>(ctx, s, h, UpdateOptions{su.rounding, su.factors}, grp);
    ref.step(exact_grads(grp.grad, inv, clip), flags, lr32, k, h, model);
    REQUIRE(s.read(ctx).step == k);
    require_within("exp_avg", grp.exp_avg, ref.m, ref.em, seed);
    require_within("exp_avg_sq", grp.exp_avg_sq, ref.v, ref.ev, seed);
    if (master) {
      require_within("master", grp.master, ref.p, ref.ep, seed);
    } else {
      require_within("param", grp.param, ref.p, ref.ep, seed);
    }
    // Copies are the rounding of the stored primary: exactly under nearest, a neighbour otherwise.
    for (std::int64_t i = 0; i < su.n; ++i) {
      if (flags[i] < 0) continue;
      const double primary = master ? to_double(elem(grp.master, i)) : to_double(elem(grp.param, i));
      if (su.rounding == UpdateRounding::nearest) {
        if (master) {
          const P pm = convert<P>(elem(grp.master, i));
          REQUIRE(std::memcmp(&elem(grp.param, i), &pm, sizeof(P)) == 0);
        }
        if (compute) {
          const C cm = master ? convert<C>(elem(grp.master, i)) : convert<C>(elem(grp.param, i));
          REQUIRE(std::memcmp(&elem(grp.compute, i), &cm, sizeof(C)) == 0);
        }
      } else if (compute) {
        // a neighbour of the primary: within one ulp, <= 2 u_C |x| in the normal range
        REQUIRE(std::fabs(to_double(elem(grp.compute, i)) - primary) <=
                2 * ktest::unit_roundoff<C>() * std::fabs(primary) + ktest::subnormal_floor<C>());
      }
    }
    // The gap between segments is never touched.
    for (std::int64_t i = 0; i < su.n; ++i)
      if (flags[i] < 0) REQUIRE(to_double(elem(grp.param, i)) == to_double(elem(param0, i)));
  }
}

template <class U, class P, class G, class M1, class W = float, class C = P>
void check_sgd(const std::string& name, const Setup& su, const SgdHyper& h, bool master, bool compute) {
  auto& ctx = host();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO(name << " n " << su.n << " seed " << seed);
  SgdGroup<P, G, M1, W, C> grp;
  grp.param = Tensor<P>::empty(ctx, {su.n});
  grp.grad = Tensor<G>::empty(ctx, {su.n});
  if (h.momentum != 0) grp.momentum_buffer = random_buffer<M1>(ctx, su.n, rng, -1, 1);  // overwritten at step 1
  if (master) {
    grp.master = random_buffer<W>(ctx, su.n, rng, -2, 2);
    for (std::int64_t i = 0; i < su.n; ++i) elem(grp.param, i) = convert<P>(elem(grp.master, i));
  } else {
    ktest::fill_random(grp.param, rng, -2, 2);
  }
  if (compute) grp.compute = random_buffer<C>(ctx, su.n, rng, -1, 1);
  const auto segs = test_segments(su.n);
  SegmentTable table;
  std::vector<char> flags(static_cast<std::size_t>(su.n), 1);
  if (su.segments) {
    table = SegmentTable(ctx, su.n, segs);
    grp.segments = &table;
    flags = decay_flags(su.n, segs);
  }
  optim::StepScalars s(ctx);
  s.set_lr(ctx, static_cast<float>(su.lr));
  const double inv = su.factors.inv_scale ? 0.25 : 1.0, clip = su.factors.clip ? 0.5 : 1.0;
  s.set(ctx, &StepScalarValues::inv_scale, static_cast<float>(inv));
  s.set(ctx, &StepScalarValues::clip_coef, static_cast<float>(clip));
  SgdRef ref;
  if (master) {
    ref.init(grp.master, grp.momentum_buffer);
  } else {
    ref.init(grp.param, grp.momentum_buffer);
  }
  RoundingModel model;
  model.u = ktest::unit_roundoff<U>();
  model.s_param = master ? store_roundoff<W, U>() : store_roundoff<P, U>();
  model.s_m1 = store_roundoff<M1, U>();
  model.factors = int(su.factors.inv_scale) + int(su.factors.clip);
  model.u_factor = ktest::unit_roundoff<kernels::detail::opmath_t<G>>() + store_roundoff<G, kernels::detail::opmath_t<G>>();
  model.stochastic = su.rounding == UpdateRounding::stochastic;
  const double lr32 = static_cast<double>(static_cast<float>(su.lr));
  for (int k = 1; k <= su.steps; ++k) {
    INFO("step " << k);
    fill_grad(grp.grad, rng);
    kernels::sgd_step<U>(ctx, s, h, UpdateOptions{su.rounding, su.factors}, grp);
    ref.step(exact_grads(grp.grad, inv, clip), flags, lr32, k, h, model);
    if (h.momentum != 0) require_within("momentum_buffer", grp.momentum_buffer, ref.buf, ref.eb, seed);
    if (master) {
      require_within("master", grp.master, ref.p, ref.ep, seed);
    } else {
      require_within("param", grp.param, ref.p, ref.ep, seed);
    }
    if (compute && su.rounding == UpdateRounding::nearest) {
      for (std::int64_t i = 0; i < su.n; ++i) {
        if (flags[i] < 0) continue;
        const C cm = master ? convert<C>(elem(grp.master, i)) : convert<C>(elem(grp.param, i));
        REQUIRE(std::memcmp(&elem(grp.compute, i), &cm, sizeof(C)) == 0);
      }
    }
  }
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

}  // namespace

TEST_CASE("adamw f32 [f32 math] matches the reference", "[optim][adamw]") {
  for (std::int64_t n : {1, 37, 20003}) {
    check_adamw<float, float, float, float, float>("f32", {n, false, {}, UpdateRounding::nearest, 1e-2}, false, false);
    check_adamw<float, float, float, float, float>("f32 segments", {n, true, {}, UpdateRounding::nearest, 1e-2}, false, false);
  }
}

TEST_CASE("adamw f32 + bf16 compute copy with inv_scale and clip factors (bf16-mixed)", "[optim][adamw]") {
  for (std::int64_t n : {5, 16389})
    check_adamw<float, float, float, float, float, float, bf16>("f32+bf16 copy", {n, true, {true, true}, UpdateRounding::nearest, 1e-2},
                                                               false, true);
}

TEST_CASE("adamw bf16 parameters with an f32 master (llm.c)", "[optim][adamw]") {
  for (std::int64_t n : {3, 1000})
    check_adamw<float, bf16, bf16, float, float, float, bf16>("bf16+f32 master", {n, true, {}, UpdateRounding::nearest, 1e-2},
                                                              true, false);
  check_adamw<float, bf16, bf16, float, float, float, bf16>("bf16+f32 master sr", {1000, true, {}, UpdateRounding::stochastic, 1e-2},
                                                            true, false);
}

TEST_CASE("adamw bf16-true: nearest and stochastic", "[optim][adamw]") {
  for (auto r : {UpdateRounding::nearest, UpdateRounding::stochastic})
    for (std::int64_t n : {2, 3001})
      check_adamw<float, bf16, bf16, bf16, bf16, float, bf16>("bf16-true", {n, true, {}, r, 5e-2}, false, false);
}

TEST_CASE("adamw f64 [f64 math], f32 [f64 math], f16 + f32 master", "[optim][adamw]") {
  check_adamw<double, double, double, double, double, double, double>("f64", {1001, true, {true, false}, UpdateRounding::nearest, 1e-2},
                                                                       false, false);
  check_adamw<double, float, float, float, float>("f32 [f64 math]", {1001, true, {false, true}, UpdateRounding::nearest, 1e-2}, false,
                                                  false);
  check_adamw<float, f16, f16, float, float, float, f16>("f16+f32 master", {777, false, {}, UpdateRounding::nearest, 1e-2}, true, false);
  // master, parameter and compute copy all written in one pass
  check_adamw<float, f16, f16, float, float, float, bf16>("f16+f32 master+bf16 copy", {777, true, {true, true}, UpdateRounding::nearest, 1e-2},
                                                          true, true);
  check_adamw<float, f16, f16, float, float, float, bf16>("f16+f32 master+bf16 copy sr",
                                                          {777, true, {}, UpdateRounding::stochastic, 1e-2}, true, true);
}

TEST_CASE("sgd matches the reference: momentum, dampening, nesterov, plain, masters", "[optim][sgd]") {
  for (std::int64_t n : {1, 37, 20003}) {
    check_sgd<float, float, float, float>("momentum+dampening", {n, true, {}, UpdateRounding::nearest, 0.05},
                                          SgdHyper{0.9, 0.1, 0.01, false}, false, false);
    check_sgd<float, float, float, float>("nesterov", {n, true, {true, true}, UpdateRounding::nearest, 0.05},
                                          SgdHyper{0.9, 0.0, 0.01, true}, false, false);
  }
  check_sgd<float, float, float, float>("plain", {333, false, {}, UpdateRounding::nearest, 0.05}, SgdHyper{0, 0, 0.01, false}, false,
                                        false);
  check_sgd<float, float, float, float, float, bf16>("f32+bf16 copy", {333, true, {}, UpdateRounding::nearest, 0.05},
                                                     SgdHyper{0.9, 0.0, 0.0, false}, false, true);
  check_sgd<float, bf16, bf16, float>("bf16+master", {333, true, {}, UpdateRounding::nearest, 0.05}, SgdHyper{0.9, 0.0, 0.01, false},
                                      true, false);
  check_sgd<float, bf16, bf16, bf16>("bf16-true sr", {333, true, {}, UpdateRounding::stochastic, 0.05},
                                     SgdHyper{0.9, 0.0, 0.01, false}, false, false);
  check_sgd<double, double, double, double>("f64", {333, true, {}, UpdateRounding::nearest, 0.05}, SgdHyper{0.5, 0.2, 0.01, false},
                                            false, false);
}

/// AdamW steps with GradScaler's unscale and the clip deferred (the norm and the update multiply
/// as they read) against the in-place unscale, norm and clip: the same norm, clip_coef and bits in
/// every buffer (GradFactors' contract), for gradients of every width, down to subnormal and
/// flushed products.
template <class U, class P, class G, class M1, class M2, class W = float, class C = P>
void check_deferred_factors(const char* name, bool master) {
  auto& ctx = host();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO(name << " seed " << seed);
  const std::int64_t n = 3001;
  AdamWGroup<P, G, M1, M2, W, C> a, b;
  a.param = random_buffer<P>(ctx, n, rng, -1, 1);
  a.grad = Tensor<G>::empty(ctx, {n}, MemoryRole::gradients);
  a.exp_avg = random_buffer<M1>(ctx, n, rng, -0.1, 0.1);
  a.exp_avg_sq = random_buffer<M2>(ctx, n, rng, 0.01, 0.1);
  if (master) a.master = random_buffer<W>(ctx, n, rng, -1, 1);
  b.param = copy_of(ctx, a.param);
  b.grad = Tensor<G>::empty(ctx, {n}, MemoryRole::gradients);
  b.exp_avg = copy_of(ctx, a.exp_avg);
  b.exp_avg_sq = copy_of(ctx, a.exp_avg_sq);
  if (master) b.master = copy_of(ctx, a.master);
  optim::StepScalars sa(ctx), sb(ctx);
  for (auto* s : {&sa, &sb}) {
    s->set_lr(ctx, 1e-2f);
    s->set(ctx, &StepScalarValues::inv_scale, 0.3f);  // not a power of two: every product rounds
  }
  const AdamWHyper h{0.9, 0.95, 1e-8, 0.1};
  for (const double scale : {1.0, 1e-6, 1e-39}) {  // normal, f16-subnormal, bf16/f32-subnormal products
    INFO("gradient scale " << scale);
    fill_grad(a.grad, rng, scale);
    ktest::copy_values(a.grad, b.grad);
    const std::vector<TensorRef> ga{a.grad}, gb{b.grad};
    kernels::unscale_and_check(ctx, sa, ga);
    kernels::grad_norm(ctx, sa, ga, 0.5);
    kernels::scale_by_clip_coef(ctx, sa, ga);
    kernels::unscale_and_check(ctx, sb, gb, /*write=*/false);
    kernels::grad_norm(ctx, sb, gb, 0.5, /*grads_scaled=*/true);
    const StepScalarValues va = sa.read(ctx), vb = sb.read(ctx);
    CHECK(std::memcmp(&va.grad_norm, &vb.grad_norm, sizeof va.grad_norm) == 0);
    CHECK(std::memcmp(&va.clip_coef, &vb.clip_coef, sizeof va.clip_coef) == 0);
    if (scale == 1.0) CHECK(va.clip_coef < 0.5f);  // the clip is active
    kernels::adamw_step<U>(ctx, sa, h, UpdateOptions{}, a);
    kernels::adamw_step<U>(ctx, sb, h, UpdateOptions{UpdateRounding::nearest, GradFactors{true, true}}, b);
    CHECK(same_bits(a.param, b.param));
    CHECK(same_bits(a.exp_avg, b.exp_avg));
    CHECK(same_bits(a.exp_avg_sq, b.exp_avg_sq));
    if (master) CHECK(same_bits(a.master, b.master));
  }
}

TEST_CASE("deferred inv_scale and clip factors give the in-place unscale and clip's bits", "[optim][adamw][factors]") {
  check_deferred_factors<float, float, float, float, float>("f32", false);
  check_deferred_factors<double, float, float, float, float>("f32 [f64 math]", false);
  check_deferred_factors<float, bf16, bf16, bf16, bf16>("bf16-true", false);
  check_deferred_factors<float, f16, f16, float, float, float>("f16 + f32 master", true);
}

TEST_CASE("a skipped step leaves everything bitwise unchanged and does not advance the step", "[optim][skip]") {
  auto& ctx = host();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  const std::int64_t n = 5000;
  AdamWGroup<bf16, bf16, float, float, float, bf16> a;
  a.param = random_buffer<bf16>(ctx, n, rng, -1, 1);
  a.grad = random_buffer<bf16>(ctx, n, rng, -1, 1);
  a.exp_avg = random_buffer<float>(ctx, n, rng, -1, 1);
  a.exp_avg_sq = random_buffer<float>(ctx, n, rng, 0, 1);
  a.master = random_buffer<float>(ctx, n, rng, -1, 1);
  a.compute = random_buffer<bf16>(ctx, n, rng, -1, 1);
  SgdGroup<float> b;
  b.param = random_buffer<float>(ctx, n, rng, -1, 1);
  b.grad = random_buffer<float>(ctx, n, rng, -1, 1);
  b.momentum_buffer = random_buffer<float>(ctx, n, rng, -1, 1);
  optim::StepScalars s(ctx);
  s.set_lr(ctx, 0.01f);
  kernels::adamw_step(ctx, s, AdamWHyper{}, UpdateOptions{UpdateRounding::stochastic}, a);
  kernels::sgd_step(ctx, s, SgdHyper{0.9}, {}, b);
  REQUIRE(s.read(ctx).step == 2);
  s.set(ctx, &StepScalarValues::found_inf, 1.0f);
  const auto before = std::make_tuple(copy_of(ctx, a.param), copy_of(ctx, a.exp_avg), copy_of(ctx, a.exp_avg_sq),
                                      copy_of(ctx, a.master), copy_of(ctx, a.compute), copy_of(ctx, b.param),
                                      copy_of(ctx, b.momentum_buffer));
  kernels::adamw_step(ctx, s, AdamWHyper{}, UpdateOptions{UpdateRounding::stochastic}, a);
  kernels::sgd_step(ctx, s, SgdHyper{0.9}, {}, b);
  CHECK(same_bits(std::get<0>(before), a.param));
  CHECK(same_bits(std::get<1>(before), a.exp_avg));
  CHECK(same_bits(std::get<2>(before), a.exp_avg_sq));
  CHECK(same_bits(std::get<3>(before), a.master));
  CHECK(same_bits(std::get<4>(before), a.compute));
  CHECK(same_bits(std::get<5>(before), b.param));
  CHECK(same_bits(std::get<6>(before), b.momentum_buffer));
  auto v = s.read(ctx);
  CHECK(v.step == 2);
  CHECK(v.skipped == 2);  // both optimizers counted their skip
  s.clear_found_inf(ctx);
  kernels::adamw_step(ctx, s, AdamWHyper{}, {}, a);
  v = s.read(ctx);
  CHECK(v.step == 3);
  CHECK(!same_bits(std::get<0>(before), a.param));
  // A NaN flag skips as well (found_inf != 0).
  s.set(ctx, &StepScalarValues::found_inf, std::numeric_limits<float>::quiet_NaN());
  const auto p3 = copy_of(ctx, a.param);
  kernels::adamw_step(ctx, s, AdamWHyper{}, {}, a);
  CHECK(same_bits(p3, a.param));
  CHECK(s.read(ctx).step == 3);
}

// Updates of a quarter ulp: nearest rounding loses all of them, stochastic rounding keeps them in
// expectation, Kahan compensation keeps them deterministically.
TEST_CASE("bf16 tiny updates: nearest loses them, stochastic keeps them on average, Kahan keeps them", "[optim][rounding]") {
  auto& ctx = host();
  const std::int64_t n = 65536;
  const int steps = 16;
  const float lr = 0x1p-10f;  // a quarter of bf16's ulp just below 1 (2^-8)
  const AdamWHyper h{0.9, 0.999, 1e-8, 0.0};
  // With g = 1 throughout, m_hat = v_hat = 1 exactly, so every update is lr / (1 + eps).
  const long double upd = static_cast<long double>(lr) / (1 + 1e-8L);
  const long double expected = 1 - steps * upd;
  auto make = [&] {
    AdamWGroup<bf16, bf16, float, float> g;
    g.param = Tensor<bf16>::empty(ctx, {n});
    g.grad = Tensor<bf16>::empty(ctx, {n});
    g.exp_avg = Tensor<float>::empty(ctx, {n});
    g.exp_avg_sq = Tensor<float>::empty(ctx, {n});
    kernels::fill(ctx, g.param, 1.0);
    kernels::fill(ctx, g.grad, 1.0);
    kernels::fill(ctx, g.exp_avg, 0.0);
    kernels::fill(ctx, g.exp_avg_sq, 0.0);
    return g;
  };
  auto run = [&](AdamWGroup<bf16, bf16, float, float>& g, UpdateRounding r) {
    optim::StepScalars s(ctx);
    s.set_lr(ctx, lr);
    for (int k = 0; k < steps; ++k) kernels::adamw_step(ctx, s, h, UpdateOptions{r}, g);
  };
  auto nearest = make();
  run(nearest, UpdateRounding::nearest);
  for (std::int64_t i = 0; i < n; ++i) REQUIRE(to_double(elem(nearest.param, i)) == 1.0);

  const std::uint64_t seed = fresh_seed();
  INFO("context seed " << seed);
  host().set_seed(seed);
  auto sr = make();
  run(sr, UpdateRounding::stochastic);
  long double mean = 0;
  for (std::int64_t i = 0; i < n; ++i) mean += to_double(elem(sr.param, i));
  mean /= n;
  // Each stochastic rounding is exactly unbiased for an f32 input (rounding.hpp: 16 discarded bits
  // <= 32), so E[p] follows the f32 trajectory, which is within 2 u_f32 per step of the exact one.
  // Each rounding adds variance <= ulp^2 / 4 (ulp = 2^-8 below 1), independently per element and
  // step: sd(mean) <= sqrt(steps / 4) 2^-8 / sqrt(n). Allow 6 sd (failure probability ~1e-9).
  const double sd = std::sqrt(steps / 4.0) * 0x1p-8 / std::sqrt(static_cast<double>(n));
  const double tol = 6 * sd + steps * 2 * 0x1p-24;
  INFO("stochastic mean " << static_cast<double>(mean) << " expected " << static_cast<double>(expected) << " tol " << tol);
  CHECK(std::fabs(static_cast<double>(mean - expected)) <= tol);
  CHECK(std::fabs(1.0 - static_cast<double>(expected)) > 50 * tol);  // the test can tell the modes apart

  auto kahan = make();
  kahan.compensation = Tensor<bf16>::empty(ctx, {n});
  kernels::fill(ctx, kahan.compensation, 0.0);
  run(kahan, UpdateRounding::kahan);
  // p + c tracks the exact sum: per step the f32 math errs by <= 2 u_f32 (|x - p0| + |s| <= 2^-7)
  // plus 5 u_f32 of the update, and storing c (|c| < ulp = 2^-8) in bf16 loses <= 2^-9 |c|.
  const double kahan_tol = steps * (2 * 0x1p-24 * 0x1p-7 + 5 * 0x1p-24 * 0x1p-10 + 0x1p-9 * 0x1p-8);
  for (std::int64_t i = 0; i < n; i += 997) {
    const double p = to_double(elem(kahan.param, i)), c = to_double(elem(kahan.compensation, i));
    INFO("element " << i << " p " << p << " c " << c);
    REQUIRE(std::fabs(p + c - static_cast<double>(expected)) <= kahan_tol);
    REQUIRE(std::fabs(p - static_cast<double>(expected)) <= 0x1p-9 + kahan_tol);  // half an ulp
  }
}

TEST_CASE("updates are bitwise independent of the thread count; streams and steps decorrelate draws", "[optim][determinism]") {
  const std::uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  auto run = [&](int threads, std::uint32_t stream) {
    auto ctx = ExecutionContext::host({.host_threads = threads});
    std::mt19937_64 rng(seed);
    const std::int64_t n = 100003;
    AdamWGroup<bf16, bf16, bf16, bf16> g;
    g.param = random_buffer<bf16>(ctx, n, rng, -1, 1);
    g.grad = random_buffer<bf16>(ctx, n, rng, -1, 1);
    g.exp_avg = random_buffer<bf16>(ctx, n, rng, -1, 1);
    g.exp_avg_sq = random_buffer<bf16>(ctx, n, rng, 0, 1);
    g.rng_stream = stream;
    const std::vector<DecaySegment> segs{{0, 5000, false}, {5000, n - 5000, true}};
    SegmentTable table(ctx, n, segs);
    g.segments = &table;
    optim::StepScalars s(ctx);
    s.set_lr(ctx, 1e-3f);
    for (int k = 0; k < 3; ++k) kernels::adamw_step(ctx, s, AdamWHyper{}, UpdateOptions{UpdateRounding::stochastic}, g);
    return copy_of(ctx, g.param);
  };
  const auto one = run(1, 0), three = run(3, 0), other_stream = run(2, 7);
  CHECK(same_bits(one, three));
  CHECK(!same_bits(one, other_stream));
}

// The layout nn::ParameterStore gives: a frozen parameter in the weight buffer only, per-dtype
// padding, a compute copy for matrices only. The update must equal the one of a compact group
// laid out alike, element by element, and leave padding and the frozen parameter alone.
TEST_CASE("segments with per-buffer offsets update a ParameterStore-like layout", "[optim][segments]") {
  auto& ctx = host();
  const std::uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  namespace sl = kernels::slot;
  // Trainable parameters W1 (10, decay, copy), b1 (3, no decay, no copy), W2 (17, decay, copy).
  const std::int64_t len[3] = {10, 3, 17};
  const bool dec[3] = {true, false, true};
  const std::int64_t w_off[3] = {8, 20, 24};   // weight f32: frozen F (5, padded to 8) first
  const std::int64_t g_off[3] = {0, 12, 16};   // grad / moments / master f32: padded to 4
  const std::int64_t c_off[3] = {0, -1, 16};   // compute bf16: matrices only, padded to 8
  const std::int64_t compact_off[3] = {0, 10, 13};
  std::vector<ParamSegment> segs;
  std::vector<DecaySegment> compact_segs;
  for (int k = 0; k < 3; ++k) {
    ParamSegment p;
    p.length = len[k];
    p.decay = dec[k];
    for (int b = 0; b < kernels::kGroupSlots; ++b) p.offset[b] = g_off[k];
    p.offset[sl::param] = w_off[k];
    p.offset[sl::compute] = c_off[k];
    segs.push_back(p);
    compact_segs.push_back({compact_off[k], len[k], dec[k]});
  }
  SegmentTable table(ctx, segs), compact_table(ctx, 30, compact_segs);
  REQUIRE(table.extent(sl::param) == 41);
  REQUIRE(table.extent(sl::compute) == 33);
  AdamWGroup<float, float, float, float, float, bf16> scattered{random_buffer<float>(ctx, 44, rng, -1, 1),
                                                                random_buffer<float>(ctx, 36, rng, -1, 1),
                                                                random_buffer<float>(ctx, 36, rng, -1, 1),
                                                                random_buffer<float>(ctx, 36, rng, 0, 1)};
  scattered.compute = random_buffer<bf16>(ctx, 40, rng, -1, 1);
  scattered.segments = &table;
  AdamWGroup<float, float, float, float, float, bf16> compact{Tensor<float>::empty(ctx, {30}), Tensor<float>::empty(ctx, {30}),
                                                              Tensor<float>::empty(ctx, {30}), Tensor<float>::empty(ctx, {30})};
  compact.compute = Tensor<bf16>::empty(ctx, {30});
  compact.segments = &compact_table;
  auto gather = [&](const auto& from, const auto& to, const std::int64_t* off) {
    for (int k = 0; k < 3; ++k)
      for (std::int64_t j = 0; j < len[k]; ++j) elem(to, compact_off[k] + j) = elem(from, off[k] + j);
  };
  gather(scattered.param, compact.param, w_off);
  gather(scattered.exp_avg, compact.exp_avg, g_off);
  gather(scattered.exp_avg_sq, compact.exp_avg_sq, g_off);
  const auto weight0 = copy_of(ctx, scattered.param);
  const auto compute0 = copy_of(ctx, scattered.compute);
  optim::StepScalars s1(ctx), s2(ctx);
  s1.set_lr(ctx, 0.01f), s2.set_lr(ctx, 0.01f);
  for (int step = 0; step < 3; ++step) {
    fill_grad(scattered.grad, rng);
    gather(scattered.grad, compact.grad, g_off);
    kernels::adamw_step(ctx, s1, AdamWHyper{0.9, 0.95, 1e-8, 0.1}, {}, scattered);
    kernels::adamw_step(ctx, s2, AdamWHyper{0.9, 0.95, 1e-8, 0.1}, {}, compact);
  }
  for (int k = 0; k < 3; ++k) {
    for (std::int64_t j = 0; j < len[k]; ++j) {
      INFO("parameter " << k << " element " << j);
      REQUIRE(elem(scattered.param, w_off[k] + j) == elem(compact.param, compact_off[k] + j));
      REQUIRE(elem(scattered.exp_avg, g_off[k] + j) == elem(compact.exp_avg, compact_off[k] + j));
      REQUIRE(elem(scattered.exp_avg_sq, g_off[k] + j) == elem(compact.exp_avg_sq, compact_off[k] + j));
      if (c_off[k] >= 0) REQUIRE(to_double(elem(scattered.compute, c_off[k] + j)) == to_double(elem(compact.compute, compact_off[k] + j)));
    }
  }
  // Untouched: the frozen parameter and the padding of the weight buffer, and the compute padding.
  for (std::int64_t i : {0, 1, 2, 3, 4, 5, 6, 7, 18, 19, 23, 41, 42, 43}) REQUIRE(elem(scattered.param, i) == elem(weight0, i));
  for (std::int64_t i : {10, 11, 12, 13, 14, 15, 33, 34, 39}) REQUIRE(to_double(elem(scattered.compute, i)) == to_double(elem(compute0, i)));
}

TEST_CASE("optimizer kernels reject bad inputs with typed errors", "[optim][errors]") {
  auto& ctx = host();
  std::mt19937_64 rng(1);
  auto f = [&](std::int64_t n) { return random_buffer<float>(ctx, n, rng, -1, 1); };
  optim::StepScalars s(ctx);
  AdamWGroup<float> g{f(37), f(37), f(37), f(37)};
  auto step = [&](const AdamWGroup<float>& grp, UpdateOptions o = {}, AdamWHyper h = {}) {
    kernels::adamw_step(ctx, s, h, o, grp);
  };
  SECTION("sizes") {
    auto bad = g;
    bad.exp_avg = f(36);
    require_throws<ShapeError>([&] { step(bad); }, "exp_avg must have the parameter's 37 elements, got 36");
    bad = g;
    bad.grad = f(38);
    require_throws<ShapeError>([&] { step(bad); }, "the gradient must have the parameter's 37 elements, got 38");
    bad = g;
    bad.compute = Tensor<float>::empty(ctx, {2, 18});
    require_throws<ShapeError>([&] { step(bad); }, "the compute copy must have the parameter's 37 elements, got 36");
    SegmentTable t(ctx, 38, {{0, 38, true}});
    bad = AdamWGroup<float>{f(38), f(38), f(37), f(38)};
    bad.segments = &t;
    require_throws<ShapeError>([&] { step(bad); },
                               "exp_avg has 37 elements, expected at least 38 (the segment table's extent in the moment1 buffer)");
    // Groups are checked before the step counts: nothing changed.
    CHECK(s.read(ctx).step == 0);
    CHECK(s.read(ctx).skipped == 0);
  }
  SECTION("layouts and handles") {
    auto bad = g;
    bad.param = Tensor<float>::empty(ctx, {6, 7}).transposed();
    bad.grad = f(42), bad.exp_avg = f(42), bad.exp_avg_sq = f(42);
    require_throws<ShapeError>([&] { step(bad); }, "must be a dense (flat) buffer");
    bad = g;
    bad.exp_avg_sq = Tensor<float>();
    require_throws<ValueError>([&] { step(bad); }, "expected exp_avg_sq to have storage");
  }
  SECTION("rounding against the buffers") {
    require_throws<ValueError>([&] { step(g, {UpdateRounding::kahan}); }, "Kahan rounding needs a compensation buffer");
    auto bad = g;
    bad.compensation = f(37);
    require_throws<ValueError>([&] { step(bad); }, "a compensation buffer is used only with Kahan rounding");
    bad.master = f(37);
    require_throws<ValueError>([&] { step(bad, {UpdateRounding::kahan}); }, "expected no master copy, got one");
  }
  SECTION("hyperparameters") {
    require_throws<ValueError>([&] { step(g, {}, AdamWHyper{1.0}); }, "invalid beta1, expected a value in [0, 1), got 1");
    require_throws<ValueError>([&] { step(g, {}, AdamWHyper{0.9, -0.1}); }, "invalid beta2");
    require_throws<ValueError>([&] { step(g, {}, AdamWHyper{0.9, 0.99, 1e-8, -1}); }, "invalid weight_decay");
    SgdGroup<float> sg{f(37), f(37)};
    require_throws<ValueError>([&] { kernels::sgd_step(ctx, s, SgdHyper{0.9, 0.1, 0, true}, {}, sg); },
                               "Nesterov momentum requires a momentum and zero dampening");
    require_throws<ValueError>([&] { kernels::sgd_step(ctx, s, SgdHyper{0.9}, {}, sg); },
                               "momentum 0.9 needs a momentum buffer, got none");
  }
  SECTION("segment tables") {
    require_throws<ValueError>([&] { SegmentTable(ctx, 10, {{0, 6, true}, {5, 5, false}}); },
                               "expected segment 1 inside [6, 10) after the previous one, got [5, 10)");
    require_throws<ValueError>([&] { SegmentTable(ctx, 10, {{0, 11, true}}); }, "got [0, 11)");
    ParamSegment a{4, {0, 0, 0, 0, 0, 0, 0}, true}, b{4, {4, 2, 4, 4, 4, 4, 4}, true};
    const ParamSegment ab[] = {a, b};
    require_throws<ValueError>([&] { SegmentTable(ctx, ab); },
                               "expected segment 1 at or after element 4 of the grad buffer (segments in order, not overlapping), got offset 2");
    b.offset[kernels::slot::grad] = 4;
    b.offset[kernels::slot::moment2] = -1;
    const ParamSegment ab2[] = {a, b};
    require_throws<ValueError>([&] { SegmentTable(ctx, ab2); }, "segment 1 has offset -1 in the moment2 buffer");
  }
  SECTION("schedules") {
    require_throws<ValueError>([&] { kernels::apply_lr_schedule(ctx, s, {.warmup_steps = -1}); },
                               "expected non-negative warmup_steps");
  }
}
