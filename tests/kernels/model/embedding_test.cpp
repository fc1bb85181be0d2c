// Embedding on the host: the gather (exact, or one nearest-even conversion), the gradient's
// scatter-add against a long-double reference and, bit for bit, against the documented order
// (positions in increasing order, summed in A from 0), central differences in f64, accumulation,
// thread-count independence, out-of-range ids and the typed errors.
#include "model_reference.hpp"

#include "mixtape/kernels/embedding.hpp"

using namespace mixtape;
namespace k = mixtape::kernels;

namespace {

ExecutionContext& host() {
  static ExecutionContext ctx = ExecutionContext::host();
  return ctx;
}

struct Case {
  Shape ids;
  std::int64_t vocab, cols;
};
const std::vector<Case>& cases() {
  static const std::vector<Case> c = {{{1}, 1, 1}, {{2, 5}, 3, 7}, {{4, 64}, 10, 33}, {{3, 100}, 50304, 8}, {{2, 9}, 4, 768}, {{700}, 50, 16}};
  return c;
}

template <class I>
Tensor<I> random_ids(const Shape& s, std::int64_t vocab, std::mt19937_64& rng) {
  auto t = Tensor<I>::empty(host(), s);
  std::uniform_int_distribution<std::int64_t> d(0, vocab - 1);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<I>(d(rng));
  return t;
}

Shape with_cols(const Shape& s, std::int64_t cols) {
  std::vector<std::int64_t> e(s.span().begin(), s.span().end());
  e.push_back(cols);
  return Shape(std::span<const std::int64_t>(e));
}

template <class T, class O, class I>
void check_forward(std::mt19937_64& rng) {
  for (const Case& c : cases()) {
    INFO("ids " << c.ids << " vocab " << c.vocab << " cols " << c.cols);
    auto table = mref::random_tensor<T>(host(), {c.vocab, c.cols}, rng, -3, 3);
    auto ids = random_ids<I>(c.ids, c.vocab, rng);
    auto out = Tensor<O>::empty(host(), with_cols(c.ids, c.cols));
    k::embedding_forward(host(), ids, table, out);
    std::vector<O> want(static_cast<std::size_t>(out.numel()));
    for (std::int64_t p = 0; p < ids.numel(); ++p)
      for (std::int64_t j = 0; j < c.cols; ++j)
        want[p * c.cols + j] = convert<O>(table.data()[static_cast<std::int64_t>(ids.data()[p]) * c.cols + j]);
    mref::require_same_bits("gather", mref::elements(out), want);
  }
}

template <class G, class D>
void check_backward(std::mt19937_64& rng) {
  using A = k::compute_t<G, D>;
  const double u_a = ktest::unit_roundoff<A>();
  for (const Case& c : cases()) {
    for (bool accumulate : {false, true}) {
      INFO("ids " << c.ids << " vocab " << c.vocab << " cols " << c.cols << " accumulate " << accumulate);
      auto ids = random_ids<std::int32_t>(c.ids, c.vocab, rng);
      auto dout = mref::random_tensor<G>(host(), with_cols(c.ids, c.cols), rng, -1, 1);
      auto dtable = mref::random_tensor<D>(host(), {c.vocab, c.cols}, rng, -1, 1);
      const auto old = mref::elements(dtable);
      k::embedding_backward(host(), ids, dout, dtable, accumulate);
      // The documented order: per row, positions in increasing order, summed in A from 0.
      std::vector<A> s(static_cast<std::size_t>(c.vocab * c.cols), A(0));
      std::vector<mref::LD> exact(s.size(), 0), mag(s.size(), 0);
      std::vector<std::int64_t> count(static_cast<std::size_t>(c.vocab), 0);
      for (std::int64_t p = 0; p < ids.numel(); ++p) {
        const std::int64_t v = ids.data()[p];
        ++count[v];
        for (std::int64_t j = 0; j < c.cols; ++j) {
          const A x = k::detail::to_acc<A>(dout.data()[p * c.cols + j]);
          s[v * c.cols + j] += x;
          exact[v * c.cols + j] += x;
          mag[v * c.cols + j] += std::fabs(x);
        }
      }
      std::vector<D> want(s.size());
      std::vector<double> ref(s.size()), err(s.size());
      for (std::size_t i = 0; i < s.size(); ++i) {
        const A o = k::detail::to_acc<A>(old[i]);
        want[i] = accumulate ? k::detail::cast<D>(o + s[i]) : k::detail::cast<D>(s[i]);
        ref[i] = double(accumulate ? exact[i] + o : exact[i]);
        // a row hit n times: gamma_n(u_a) sum|dout|; accumulate: one more rounding of old + s.
        err[i] = mref::gam(double(count[i / c.cols]), u_a) * double(mag[i]) + (accumulate ? u_a * std::fabs(ref[i]) : 0.0);
      }
      mref::require_close("d_table", ktest::values(dtable), ref, mref::with_output_rounding<D>(ref, err));
      mref::require_same_bits("d_table in the documented order", mref::elements(dtable), want);
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("embedding_forward gathers rows exactly", "[kernels][embedding]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_forward<TestType, TestType, std::int32_t>(rng);
  check_forward<TestType, TestType, std::int64_t>(rng);
}

TEST_CASE("embedding_forward converts to the output type with nearest-even", "[kernels][embedding]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_forward<float, bf16, std::int32_t>(rng);
  check_forward<bf16, float, std::int64_t>(rng);
  check_forward<double, f16, std::int32_t>(rng);
}

TEMPLATE_TEST_CASE("embedding_backward matches the reference and the documented order", "[kernels][embedding]", double,
                   float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_backward<TestType, TestType>(rng);
}

TEST_CASE("embedding_backward with a bf16 gradient into an f32 table gradient", "[kernels][embedding]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_backward<bf16, float>(rng);
  check_backward<float, bf16>(rng);
}

TEST_CASE("embedding_backward in f64 matches central differences of embedding_forward", "[kernels][embedding][gradcheck]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const std::int64_t vocab = 6, cols = 4;
  auto table = mref::random_tensor<double>(host(), {vocab, cols}, rng, -2, 2);
  auto ids = random_ids<std::int32_t>({3, 5}, vocab, rng);
  auto w = mref::random_tensor<double>(host(), {3, 5, cols}, rng, -1, 1);
  auto out = Tensor<double>::empty(host(), {3, 5, cols});
  auto dtable = Tensor<double>::empty(host(), {vocab, cols});
  k::embedding_backward(host(), ids, w, dtable, false);
  const auto wv = ktest::values(w);
  auto objective = [&] {
    k::embedding_forward(host(), ids, table, out);
    return mref::dot(wv, ktest::values(out));
  };
  // The gather is exact: the objective's only rounding is its long-double sum (below 1e-18 |terms|).
  const double rounding = 1e-17 * mref::weighted(wv, std::vector<double>(wv.size(), 2.0));
  for (std::int64_t j = 0; j < vocab * cols; ++j)
    mref::require_gradient_matches("d/dtable " + std::to_string(j), table.data()[j], dtable.data()[j], objective, rounding);
}

TEST_CASE("embedding_backward does not depend on the host thread count", "[kernels][embedding][determinism]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  auto one = ExecutionContext::host({.host_threads = 1});
  auto three = ExecutionContext::host({.host_threads = 3});
  auto ids = random_ids<std::int32_t>({1000}, 37, rng);
  auto dout = mref::random_tensor<bf16>(one, {1000, 40}, rng, -1, 1);
  auto a = Tensor<float>::empty(one, {37, 40}), b = Tensor<float>::empty(one, {37, 40});
  k::embedding_backward(one, ids, dout, a, false);
  k::embedding_backward(three, ids, dout, b, false);
  REQUIRE(ktest::bitwise_equal(a, b));
}

TEST_CASE("embedding rejects out-of-range ids naming the position and the value", "[kernels][embedding][errors]") {
  auto table = Tensor<float>::empty(host(), {5, 3});
  auto out = Tensor<float>::empty(host(), {4, 3});
  for (std::int64_t bad : {std::int64_t{5}, std::int64_t{-2}, std::int64_t{1} << 40}) {
    std::vector<std::int64_t> iv = {0, 4, 1, bad};
    auto ids = Tensor<std::int64_t>::wrap(iv.data(), {4});
    try {
      k::embedding_forward(host(), ids, table, out);
      FAIL("no exception");
    } catch (const ValueError& e) {
      REQUIRE_THAT(e.what(), Catch::Contains("id " + std::to_string(bad) + " at row 3") && Catch::Contains("[0, 5)"));
    }
    REQUIRE_THROWS_AS(k::embedding_backward(host(), ids, out, table, true), ValueError);
  }
}

TEST_CASE("embedding takes runtime-typed ids and rejects bad operands", "[kernels][embedding][errors]") {
  auto table = Tensor<float>::empty(host(), {5, 3});
  std::fill(table.data(), table.data() + 15, 1.5f);
  auto out = Tensor<float>::empty(host(), {2, 3});
  auto ids = Tensor<std::int32_t>::empty(host(), {2});
  ids.data()[0] = 1;
  ids.data()[1] = 4;
  k::embedding_forward(host(), TensorRef(ids), table, out);
  REQUIRE(out.data()[5] == 1.5f);
  k::embedding_backward(host(), TensorRef(ids), out, table, false);
  REQUIRE(table.data()[0] == 0.0f);
  REQUIRE(table.data()[3] == 1.5f);
  REQUIRE_THROWS_AS(k::embedding_forward(host(), TensorRef(Tensor<std::int16_t>::empty(host(), {2})), table, out), DTypeError);
  try {
    k::embedding_forward(host(), ids, table, Tensor<float>::empty(host(), {2, 4}));
    FAIL("no exception");
  } catch (const ShapeError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("expected out of shape (2, 3)") && Catch::Contains("got (2, 4)"));
  }
  REQUIRE_THROWS_AS(k::embedding_forward(host(), ids, Tensor<float>::empty(host(), {15}), out), ShapeError);
  REQUIRE_THROWS_AS(k::embedding_forward(host(), ids, Tensor<float>::empty(host(), {0, 3}), out), ShapeError);
  REQUIRE_THROWS_AS(k::embedding_backward(host(), ids, out, Tensor<float>::empty(host(), {5, 3}).transposed(), false),
                    ShapeError);
}
