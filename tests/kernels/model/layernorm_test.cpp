// LayerNorm on the host: forward (y, mean, rstd) and backward (dx, dgamma, dbeta) against
// long-double references with the tolerances derived in model_reference.hpp, for f64, f32, bf16,
// f16 and the mixed-policy type combinations; the f64 backward against central differences; the
// accumulate flags; determinism across thread counts; the residual add fused into the forward
// (the bits of the two calls); the typed errors.
#include "model_reference.hpp"

#include "mixtape/kernels/layernorm.hpp"

using namespace mixtape;
namespace k = mixtape::kernels;

namespace {

ExecutionContext& host() {
  static ExecutionContext ctx = ExecutionContext::host();
  return ctx;
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{1, 1}, {1, 768}, {3, 7}, {17, 33}, {2, 3, 100}, {300, 24}, {4, 2500}};
  return s;
}

template <class S>
std::vector<double> stat_tolerance(const std::vector<double>& ref, const std::vector<double>& err) {
  return mref::with_output_rounding<S>(ref, err);
}

template <class In, class W, class Out>
void check_forward(std::mt19937_64& rng) {
  using A = k::compute_t<In, W>;
  using S = A;
  const double u_a = ktest::unit_roundoff<A>();
  for (const Shape& s : shapes()) {
    INFO("shape " << s << " " << ktest::type_name<In>() << "/" << ktest::type_name<W>() << " -> " << ktest::type_name<Out>());
    const std::int64_t cols = s[s.rank() - 1], rows = s.numel() / cols;
    auto x = mref::random_tensor<In>(host(), s, rng, -1, 3);
    auto gamma = mref::random_tensor<W>(host(), {cols}, rng, 0.5, 1.5);
    auto beta = mref::random_tensor<W>(host(), {cols}, rng, -0.5, 0.5);
    auto y = Tensor<Out>::empty(host(), s);
    const Shape lead(s.span().first(static_cast<std::size_t>(s.rank() - 1)));
    auto mean = Tensor<S>::empty(host(), lead), rstd = Tensor<S>::empty(host(), lead);
    k::layernorm_forward(host(), x, gamma, beta, y, mean, rstd, 1e-5);
    const auto r = mref::layernorm_reference(ktest::values(x), ktest::values(gamma), ktest::values(beta), rows, cols, 1e-5, u_a);
    mref::require_close("y", ktest::values(y), r.y, mref::with_output_rounding<Out>(r.y, r.y_err));
    mref::require_close("mean", ktest::values(mean), r.mean, stat_tolerance<S>(r.mean, r.mean_err));
    mref::require_close("rstd", ktest::values(rstd), r.rstd, stat_tolerance<S>(r.rstd, r.rstd_err));
  }
}

template <class In, class W, class G, class DX, class DW>
void check_backward(std::mt19937_64& rng) {
  using A = k::compute_t<In, W, G>;
  using S = A;
  const double u_a = ktest::unit_roundoff<A>();
  for (const Shape& s : shapes()) {
    for (int acc = 0; acc < 4; ++acc) {
      const bool acc_dx = acc & 1, acc_params = acc & 2;
      INFO("shape " << s << " accumulate dx " << acc_dx << " params " << acc_params);
      const std::int64_t cols = s[s.rank() - 1], rows = s.numel() / cols;
      auto x = mref::random_tensor<In>(host(), s, rng, -1, 3);
      auto gamma = mref::random_tensor<W>(host(), {cols}, rng, 0.5, 1.5);
      auto dy = mref::random_tensor<G>(host(), s, rng, -1, 1);
      const Shape lead(s.span().first(static_cast<std::size_t>(s.rank() - 1)));
      // The statistics as the forward would have stored them: the reference rounded to S.
      const auto fwd = mref::layernorm_reference(ktest::values(x), ktest::values(gamma), ktest::values(gamma), rows, cols,
                                                 1e-5, u_a);
      auto mean = Tensor<S>::empty(host(), lead), rstd = Tensor<S>::empty(host(), lead);
      for (std::int64_t i = 0; i < rows; ++i) {
        mean.data()[i] = static_cast<S>(fwd.mean[i]);
        rstd.data()[i] = static_cast<S>(fwd.rstd[i]);
      }
      auto dx = mref::random_tensor<DX>(host(), s, rng, -1, 1);
      auto dgamma = mref::random_tensor<DW>(host(), {cols}, rng, -1, 1);
      auto dbeta = mref::random_tensor<DW>(host(), {cols}, rng, -1, 1);
      const auto old_dx = ktest::values(dx), old_dg = ktest::values(dgamma), old_db = ktest::values(dbeta);
      k::layernorm_backward(host(), x, gamma, mean, rstd, dy, dx, dgamma, dbeta, acc_dx, acc_params);
      auto r = mref::layernorm_grad_reference(ktest::values(x), ktest::values(gamma), ktest::values(mean),
                                              ktest::values(rstd), ktest::values(dy), rows, cols, u_a);
      // Accumulating adds the old value in A: one more rounding of the sum.
      auto add_old = [&](std::vector<double>& ref, std::vector<double>& err, const std::vector<double>& old, bool on) {
        if (!on) return;
        for (std::size_t i = 0; i < ref.size(); ++i) {
          ref[i] += old[i];
          err[i] += u_a * std::fabs(ref[i]);
        }
      };
      add_old(r.dx, r.dx_err, old_dx, acc_dx);
      add_old(r.dgamma, r.dgamma_err, old_dg, acc_params);
      add_old(r.dbeta, r.dbeta_err, old_db, acc_params);
      mref::require_close("dx", ktest::values(dx), r.dx, mref::with_output_rounding<DX>(r.dx, r.dx_err));
      mref::require_close("dgamma", ktest::values(dgamma), r.dgamma, mref::with_output_rounding<DW>(r.dgamma, r.dgamma_err));
      mref::require_close("dbeta", ktest::values(dbeta), r.dbeta, mref::with_output_rounding<DW>(r.dbeta, r.dbeta_err));
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("layernorm_forward matches the long-double reference", "[kernels][layernorm]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_forward<TestType, TestType, TestType>(rng);
}

TEST_CASE("layernorm_forward with the mixed policies' types", "[kernels][layernorm]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_forward<float, float, bf16>(rng);  // f32 residual stream, f32 weights, bf16 GEMM input
  check_forward<float, float, f16>(rng);
  check_forward<bf16, float, float>(rng);
}

TEMPLATE_TEST_CASE("layernorm_backward matches the long-double reference", "[kernels][layernorm]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_backward<TestType, TestType, TestType, TestType, TestType>(rng);
}

TEST_CASE("layernorm_backward with the mixed policies' types", "[kernels][layernorm]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_backward<float, float, bf16, float, float>(rng);  // bf16 gradient from the GEMM, f32 elsewhere
  check_backward<float, float, float, float, bf16>(rng);
}

TEST_CASE("layernorm_backward in f64 matches central differences of layernorm_forward", "[kernels][layernorm][gradcheck]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const std::int64_t rows = 4, cols = 13;
  auto x = mref::random_tensor<double>(host(), {rows, cols}, rng, -1, 3);
  auto gamma = mref::random_tensor<double>(host(), {cols}, rng, 0.5, 1.5);
  auto beta = mref::random_tensor<double>(host(), {cols}, rng, -0.5, 0.5);
  auto w = mref::random_tensor<double>(host(), {rows, cols}, rng, -1, 1);
  auto y = Tensor<double>::empty(host(), {rows, cols});
  auto mean = Tensor<double>::empty(host(), {rows}), rstd = Tensor<double>::empty(host(), {rows});
  k::layernorm_forward(host(), x, gamma, beta, y, mean, rstd, 1e-5);
  auto dx = Tensor<double>::empty(host(), {rows, cols});
  auto dgamma = Tensor<double>::empty(host(), {cols}), dbeta = Tensor<double>::empty(host(), {cols});
  k::layernorm_backward(host(), x, gamma, mean, rstd, w, dx, dgamma, dbeta, false, false);
  const auto wv = ktest::values(w);
  auto objective = [&] {
    k::layernorm_forward(host(), x, gamma, beta, y, mean, rstd, 1e-5);
    return mref::dot(wv, ktest::values(y));
  };
  const auto r = mref::layernorm_reference(ktest::values(x), ktest::values(gamma), ktest::values(beta), rows, cols, 1e-5,
                                           ktest::unit_roundoff<double>());
  const double rounding = mref::weighted(wv, r.y_err);
  for (std::int64_t j = 0; j < rows * cols; ++j)
    mref::require_gradient_matches("d/dx " + std::to_string(j), x.data()[j], dx.data()[j], objective, rounding);
  for (std::int64_t c = 0; c < cols; ++c) {
    mref::require_gradient_matches("d/dgamma " + std::to_string(c), gamma.data()[c], dgamma.data()[c], objective, rounding);
    mref::require_gradient_matches("d/dbeta " + std::to_string(c), beta.data()[c], dbeta.data()[c], objective, rounding);
  }
}

TEST_CASE("layernorm results do not depend on the host thread count", "[kernels][layernorm][determinism]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  const std::int64_t rows = 700, cols = 96;
  auto one = ExecutionContext::host({.host_threads = 1});
  auto four = ExecutionContext::host({.host_threads = 4});
  auto x = mref::random_tensor<float>(one, {rows, cols}, rng, -1, 3);
  auto gamma = mref::random_tensor<float>(one, {cols}, rng, 0.5, 1.5);
  auto beta = mref::random_tensor<float>(one, {cols}, rng, -0.5, 0.5);
  auto dy = mref::random_tensor<bf16>(one, {rows, cols}, rng, -1, 1);
  std::vector<std::vector<float>> results;
  for (ExecutionContext* ctx : {&one, &four}) {
    auto y = Tensor<bf16>::empty(*ctx, {rows, cols});
    auto mean = Tensor<float>::empty(*ctx, {rows}), rstd = Tensor<float>::empty(*ctx, {rows});
    auto dx = Tensor<float>::empty(*ctx, {rows, cols});
    auto dg = Tensor<float>::empty(*ctx, {cols}), db = Tensor<float>::empty(*ctx, {cols});
    k::layernorm_forward(*ctx, x, gamma, beta, y, mean, rstd);
    k::layernorm_backward(*ctx, x, gamma, mean, rstd, dy, dx, dg, db, false, false);
    std::vector<float> all = mref::elements(rstd);
    for (const auto* t : {&dx, &dg, &db}) {
      const auto e = mref::elements(*t);
      all.insert(all.end(), e.begin(), e.end());
    }
    results.push_back(all);
  }
  mref::require_same_bits("1 vs 4 threads", results[0], results[1]);
}

namespace {
template <class T>
std::vector<T> raw(const Tensor<T>& t) {
  return std::vector<T>(t.data(), t.data() + t.numel());
}

/// add_layernorm_forward against kernels::map(Add) then layernorm_forward: the same bits.
template <class X, class R, class W, class Out>
void check_add_layernorm(std::mt19937_64& rng) {
  using S = k::compute_t<X, W>;
  for (const Shape& s : shapes()) {
    INFO("shape " << s << " " << ktest::type_name<X>() << " + " << ktest::type_name<R>() << ", " << ktest::type_name<W>()
                  << " -> " << ktest::type_name<Out>());
    const std::int64_t cols = s[s.rank() - 1];
    const Shape lead(s.span().first(static_cast<std::size_t>(s.rank() - 1)));
    auto x = mref::random_tensor<X>(host(), s, rng, -2, 2);
    auto r = mref::random_tensor<R>(host(), s, rng, -1, 1);
    auto gamma = mref::random_tensor<W>(host(), {cols}, rng, 0.5, 1.5);
    auto beta = mref::random_tensor<W>(host(), {cols}, rng, -0.5, 0.5);
    auto h = Tensor<X>::empty(host(), s), h2 = Tensor<X>::empty(host(), s);
    auto y = Tensor<Out>::empty(host(), s), y2 = Tensor<Out>::empty(host(), s);
    auto mean = Tensor<S>::empty(host(), lead), rstd = Tensor<S>::empty(host(), lead);
    auto mean2 = Tensor<S>::empty(host(), lead), rstd2 = Tensor<S>::empty(host(), lead);
    k::add_layernorm_forward(host(), x, r, h, gamma, beta, y, mean, rstd, 1e-5);
    k::map(host(), k::Add{}, h2, x, r);
    k::layernorm_forward(host(), h2, gamma, beta, y2, mean2, rstd2, 1e-5);
    mref::require_same_bits("h", raw(h), raw(h2));
    mref::require_same_bits("y", raw(y), raw(y2));
    mref::require_same_bits("mean", raw(mean), raw(mean2));
    mref::require_same_bits("rstd", raw(rstd), raw(rstd2));
  }
}
}  // namespace

TEST_CASE("add_layernorm_forward gives the bits of the add then layernorm_forward", "[kernels][layernorm]") {
  std::mt19937_64 rng(71);
  check_add_layernorm<float, bf16, float, bf16>(rng);  // bf16-mixed: f32 stream, bf16 branch
  check_add_layernorm<float, f16, float, f16>(rng);    // 16-mixed
  check_add_layernorm<bf16, bf16, bf16, bf16>(rng);    // bf16-true
  check_add_layernorm<float, float, float, float>(rng);
  check_add_layernorm<double, double, double, double>(rng);
}

TEST_CASE("layernorm_backward's dx_copy is the final dx rounded on, written or accumulated", "[kernels][layernorm]") {
  std::mt19937_64 rng(72);
  for (const Shape& s : shapes()) {
    for (const bool acc : {false, true}) {
      INFO("shape " << s << " accumulate " << acc);
      const std::int64_t cols = s[s.rank() - 1];
      const Shape lead(s.span().first(static_cast<std::size_t>(s.rank() - 1)));
      auto x = mref::random_tensor<float>(host(), s, rng, -2, 2);
      auto gamma = mref::random_tensor<float>(host(), {cols}, rng, 0.5, 1.5);
      auto beta = mref::random_tensor<float>(host(), {cols}, rng, -0.5, 0.5);
      auto y = Tensor<bf16>::empty(host(), s);
      auto mean = Tensor<float>::empty(host(), lead), rstd = Tensor<float>::empty(host(), lead);
      k::layernorm_forward(host(), x, gamma, beta, y, mean, rstd, 1e-5);
      auto dy = mref::random_tensor<bf16>(host(), s, rng, -1, 1);
      auto dx0 = mref::random_tensor<float>(host(), s, rng, -1, 1);
      auto dx1 = Tensor<float>::empty(host(), s), dx2 = Tensor<float>::empty(host(), s);
      k::copy(host(), dx0, dx1);
      k::copy(host(), dx0, dx2);
      auto dg1 = Tensor<float>::empty(host(), {cols}), db1 = Tensor<float>::empty(host(), {cols});
      auto dg2 = Tensor<float>::empty(host(), {cols}), db2 = Tensor<float>::empty(host(), {cols});
      auto copy = Tensor<bf16>::empty(host(), s), cast = Tensor<bf16>::empty(host(), s);
      k::layernorm_backward(host(), x, gamma, mean, rstd, dy, dx1, dg1, db1, acc, false, copy);
      k::layernorm_backward(host(), x, gamma, mean, rstd, dy, dx2, dg2, db2, acc, false);
      k::map(host(), k::ScaleBy{1.0}, cast, dx2);  // the cast AddNode's backward would make
      mref::require_same_bits("dx", raw(dx1), raw(dx2));
      mref::require_same_bits("dx_copy", raw(copy), raw(cast));
      mref::require_same_bits("dgamma", raw(dg1), raw(dg2));
    }
  }
}

TEST_CASE("layernorm rejects bad operands with typed errors", "[kernels][layernorm][errors]") {
  auto x = Tensor<float>::empty(host(), {4, 8});
  auto g = Tensor<float>::empty(host(), {8}), g9 = Tensor<float>::empty(host(), {9});
  auto y = Tensor<float>::empty(host(), {4, 8});
  auto m = Tensor<float>::empty(host(), {4}), m5 = Tensor<float>::empty(host(), {5});
  try {
    k::layernorm_forward(host(), x, g9, g, y, m, m);
    FAIL("no exception");
  } catch (const ShapeError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("gamma") && Catch::Contains("expected") && Catch::Contains("(8)") &&
                               Catch::Contains("got (9)"));
  }
  REQUIRE_THROWS_AS(k::layernorm_forward(host(), x, g, g, y, m5, m), ShapeError);
  auto wide = Tensor<float>::empty(host(), {4, 10});
  REQUIRE_THROWS_AS(k::layernorm_forward(host(), wide.slice(1, 1, 8), g, g, y, m, m), ShapeError);  // strided rows
  REQUIRE_THROWS_AS(k::layernorm_forward(host(), x, g, g, x, m, m), ValueError);                       // y overlaps x
  auto dx = Tensor<float>::empty(host(), {4, 8});
  REQUIRE_THROWS_AS(k::layernorm_backward(host(), x, g, m, m, dx, dx, g, g, false, false), ValueError);  // dx is dy
  REQUIRE_THROWS_AS(k::layernorm_backward(host(), x, g, m, m, y, dx, g9, g, false, false), ShapeError);
  auto r = Tensor<bf16>::empty(host(), {4, 8}), r5 = Tensor<bf16>::empty(host(), {5, 8});
  auto h = Tensor<float>::empty(host(), {4, 8});
  auto yb = Tensor<bf16>::empty(host(), {4, 8});
  try {
    k::add_layernorm_forward(host(), x, r5, h, g, g, yb, m, m);
    FAIL("no exception");
  } catch (const ShapeError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("add_layernorm_forward") && Catch::Contains("res") &&
                               Catch::Contains("(4, 8)") && Catch::Contains("got (5, 8)"));
  }
  REQUIRE_THROWS_WITH(k::add_layernorm_forward(host(), x, r, x, g, g, yb, m, m),
                      Catch::Contains("expected h to overlap none of x, res and y"));  // h is x
  REQUIRE_THROWS_AS(k::add_layernorm_forward(host(), x, r, h, g9, g, yb, m, m), ShapeError);
  REQUIRE_THROWS_AS(k::add_layernorm_forward(host(), x, r, h, g, g, yb, m5, m), ShapeError);
  auto dyb = Tensor<bf16>::empty(host(), {4, 8}), copy5 = Tensor<bf16>::empty(host(), {5, 8});
  REQUIRE_THROWS_WITH(k::layernorm_backward(host(), x, g, m, m, dyb, dx, g, g, false, false, dyb),
                      Catch::Contains("expected dx_copy to overlap none of dx, dy and x"));
  REQUIRE_THROWS_WITH(k::layernorm_backward(host(), x, g, m, m, dyb, dx, g, g, false, false, copy5),
                      Catch::Contains("dx_copy") && Catch::Contains("got (5, 8)"));
}
