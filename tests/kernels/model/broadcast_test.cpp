// Broadcast ops on the host: bias add and positional add against long-double references, the
// bias / positional gradients against references and, bit for bit, against an emulation of the
// documented reduction order (fixed row chunks, 8 lanes, chunk partials in order), central
// differences in f64, accumulation, thread-count independence and the typed errors.
#include "model_reference.hpp"

#include "mixtape/kernels/broadcast.hpp"

using namespace mixtape;
namespace k = mixtape::kernels;

namespace {

ExecutionContext& host() {
  static ExecutionContext ctx = ExecutionContext::host();
  return ctx;
}

/// The column sums of dy (rows, cols) in A by broadcast_host.hpp's documented steps, written
/// independently of the library's loops.
template <class A, class G, class D>
std::vector<D> emulate_column_sum(const std::vector<G>& dy, const std::vector<D>& old, std::int64_t rows, std::int64_t cols,
                                  bool accumulate) {
  const std::int64_t chunks = std::clamp<std::int64_t>((rows + 63) / 64, 1, 256);
  const std::int64_t per = (rows + chunks - 1) / chunks;
  std::vector<D> out(static_cast<std::size_t>(cols));
  for (std::int64_t c = 0; c < cols; ++c) {
    A total = 0;
    for (std::int64_t g = 0; g < chunks; ++g) {
      A chunk = 0;
      for (int lane = 0; lane < 8; ++lane) {
        A s = 0;
        for (std::int64_t r = g * per + lane; r < std::min(rows, (g + 1) * per); r += 8) s += k::detail::to_acc<A>(dy[r * cols + c]);
        chunk = lane == 0 ? s : chunk + s;
      }
      total = g == 0 ? chunk : total + chunk;
    }
    out[c] = accumulate ? k::detail::cast<D>(k::detail::to_acc<A>(old[c]) + total) : k::detail::cast<D>(total);
  }
  return out;
}

template <class G, class D>
void check_bias_grad(std::mt19937_64& rng) {
  using A = k::compute_t<G, D>;
  const double u_a = ktest::unit_roundoff<A>();
  for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{2, 5, 768}, Shape{1000, 9}, Shape{70000, 3}}) {
    for (bool accumulate : {false, true}) {
      INFO("shape " << s << " accumulate " << accumulate);
      const std::int64_t cols = s[s.rank() - 1], rows = s.numel() / cols;
      auto dy = mref::random_tensor<G>(host(), s, rng, -1, 1);
      auto db = mref::random_tensor<D>(host(), {cols}, rng, -1, 1);
      const auto old = mref::elements(db);
      k::bias_grad(host(), dy, db, accumulate);
      std::vector<double> ref(cols), err(cols);
      for (std::int64_t c = 0; c < cols; ++c) {
        mref::LD sum = 0, mag = 0;
        for (std::int64_t r = 0; r < rows; ++r) {
          sum += ktest::to_double(dy.data()[r * cols + c]);
          mag += std::fabs(ktest::to_double(dy.data()[r * cols + c]));
        }
        ref[c] = double(accumulate ? sum + ktest::to_double(old[c]) : sum);
        // any order of `rows` terms: gamma_rows(u_a) sum|dy|; accumulate: one more rounding.
        err[c] = mref::gam(double(rows), u_a) * double(mag) + (accumulate ? u_a * std::fabs(ref[c]) : 0.0);
      }
      mref::require_close("dbias", ktest::values(db), ref, mref::with_output_rounding<D>(ref, err));
      mref::require_same_bits("dbias in the documented order", mref::elements(db),
                              emulate_column_sum<A>(mref::elements(dy), old, rows, cols, accumulate));
    }
  }
}

template <class X, class B, class Y>
void check_add_bias(std::mt19937_64& rng) {
  using A = k::compute_t<X, B>;
  for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{2, 5, 768}}) {
    INFO("shape " << s);
    const std::int64_t cols = s[s.rank() - 1];
    auto x = mref::random_tensor<X>(host(), s, rng, -4, 4);
    auto b = mref::random_tensor<B>(host(), {cols}, rng, -1, 1);
    auto y = Tensor<Y>::empty(host(), s);
    k::add_bias(host(), x, b, y);
    std::vector<double> ref(s.numel()), err(s.numel());
    for (std::int64_t i = 0; i < s.numel(); ++i) {
      ref[i] = ktest::to_double(x.data()[i]) + ktest::to_double(b.data()[i % cols]);  // exact in double
      err[i] = ktest::unit_roundoff<A>() * std::fabs(ref[i]);                           // one add in A
    }
    mref::require_close("add_bias", ktest::values(y), ref, mref::with_output_rounding<Y>(ref, err));
    if constexpr (std::is_same_v<X, Y>) {  // in place gives the same bits
      k::add_bias(host(), x, b, x);
      REQUIRE(ktest::bitwise_equal(x, y));
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("add_bias matches the reference", "[kernels][broadcast]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_add_bias<TestType, TestType, TestType>(rng);
}

TEST_CASE("add_bias with mixed types", "[kernels][broadcast]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_add_bias<bf16, float, bf16>(rng);
  check_add_bias<float, bf16, float>(rng);
}

TEMPLATE_TEST_CASE("bias_grad matches the reference and the documented order", "[kernels][broadcast]", double, float, bf16,
                   f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_bias_grad<TestType, TestType>(rng);
}

TEST_CASE("bias_grad of a bf16 gradient into f32", "[kernels][broadcast]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_bias_grad<bf16, float>(rng);
}

TEST_CASE("positional add and gradient match the reference", "[kernels][broadcast]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (bool accumulate : {false, true}) {
    const std::int64_t B = 3, T = 5, C = 7;
    auto x = mref::random_tensor<float>(host(), {B, T, C}, rng, -2, 2);
    auto pos = mref::random_tensor<float>(host(), {T, C}, rng, -1, 1);
    auto y = Tensor<float>::empty(host(), {B, T, C});
    k::add_positional(host(), x, pos, y);
    for (std::int64_t i = 0; i < B * T * C; ++i)
      REQUIRE(y.data()[i] == x.data()[i] + pos.data()[i % (T * C)]);  // one correctly rounded f32 add
    auto dy = mref::random_tensor<float>(host(), {B, T, C}, rng, -1, 1);
    auto dpos = mref::random_tensor<double>(host(), {T, C}, rng, -1, 1);
    const auto old = mref::elements(dpos);
    k::positional_grad(host(), dy, dpos, accumulate);
    // f32 terms summed in double (compute_t<f32, f64>): exact for 3 terms of 24-bit values.
    for (std::int64_t i = 0; i < T * C; ++i) {
      double want = 0;
      for (std::int64_t b = 0; b < B; ++b) want += dy.data()[b * T * C + i];
      REQUIRE(dpos.data()[i] == (accumulate ? old[i] + want : want));
    }
  }
}

TEST_CASE("bias and positional gradients in f64 match central differences", "[kernels][broadcast][gradcheck]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const std::int64_t B = 2, T = 3, C = 4;
  auto x = mref::random_tensor<double>(host(), {B, T, C}, rng, -2, 2);
  auto bias = mref::random_tensor<double>(host(), {C}, rng, -1, 1);
  auto pos = mref::random_tensor<double>(host(), {T, C}, rng, -1, 1);
  auto w = mref::random_tensor<double>(host(), {B, T, C}, rng, -1, 1);
  auto h = Tensor<double>::empty(host(), {B, T, C}), y = Tensor<double>::empty(host(), {B, T, C});
  auto dbias = Tensor<double>::empty(host(), {C}), dpos = Tensor<double>::empty(host(), {T, C});
  k::bias_grad(host(), w, dbias, false);
  k::positional_grad(host(), w, dpos, false);
  const auto wv = ktest::values(w);
  auto objective = [&] {
    k::add_bias(host(), x, bias, h);
    k::add_positional(host(), h, pos, y);
    return mref::dot(wv, ktest::values(y));
  };
  // Two adds per output: 2 u |y| each, |y| <= 4.
  const double rounding = mref::weighted(wv, std::vector<double>(wv.size(), 8 * ktest::unit_roundoff<double>()));
  for (std::int64_t c = 0; c < C; ++c)
    mref::require_gradient_matches("d/dbias", bias.data()[c], dbias.data()[c], objective, rounding);
  for (std::int64_t i = 0; i < T * C; ++i)
    mref::require_gradient_matches("d/dpos", pos.data()[i], dpos.data()[i], objective, rounding);
}

TEST_CASE("bias_grad does not depend on the host thread count", "[kernels][broadcast][determinism]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  auto one = ExecutionContext::host({.host_threads = 1});
  auto four = ExecutionContext::host({.host_threads = 4});
  auto dy = mref::random_tensor<bf16>(one, {5000, 48}, rng, -1, 1);
  auto a = Tensor<float>::empty(one, {48}), b = Tensor<float>::empty(one, {48});
  k::bias_grad(one, dy, a, false);
  k::bias_grad(four, dy, b, false);
  REQUIRE(ktest::bitwise_equal(a, b));
}

TEST_CASE("broadcast ops reject bad operands with typed errors", "[kernels][broadcast][errors]") {
  auto x = Tensor<float>::empty(host(), {2, 3, 4});
  auto b5 = Tensor<float>::empty(host(), {5});
  try {
    k::add_bias(host(), x, b5, x);
    FAIL("no exception");
  } catch (const ShapeError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("expected the bias of shape (4)") && Catch::Contains("got (5)"));
  }
  REQUIRE_THROWS_AS(k::bias_grad(host(), x, b5, false), ShapeError);
  REQUIRE_THROWS_AS(k::add_positional(host(), x, Tensor<float>::empty(host(), {4, 3}), x), ShapeError);
  REQUIRE_THROWS_AS(k::add_positional(host(), x, Tensor<float>::empty(host(), {3, 4, 1}), x), ShapeError);
  REQUIRE_THROWS_AS(k::positional_grad(host(), x, Tensor<float>::empty(host(), {2, 4}), false), ShapeError);
  REQUIRE_THROWS_AS(k::add_bias(host(), x.transposed(), Tensor<float>::empty(host(), {3}), Tensor<float>::empty(host(), {2, 4, 3})),
                    ShapeError);
}
