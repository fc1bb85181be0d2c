// Host element-wise ops: map (1..3 inputs, mixed element types, strided views) against float64
// references, fill, copy / contiguous / clone, and the typed errors at the op boundary.
#include "kernels_test_util.hpp"

#include <functional>
#include <utility>

#include "mixtape/kernels/elementwise.hpp"

using namespace mixtape;
using ktest::elem;

namespace {

enum class View { dense, transposed, sliced };

const char* view_name(View v) { return v == View::dense ? "dense" : v == View::transposed ? "transposed" : "sliced"; }

/// A host view of logical shape `s`: dense; transposed (the last two dimensions swapped in storage;
/// for rank 1, every other element); or sliced (the last dimension a window at offset 1 of a
/// storage 3 wider, so rows are padded and the first element is misaligned).
template <class T>
Tensor<T> make_view(const ExecutionContext& ctx, const Shape& s, View kind) {
  if (kind == View::dense) return Tensor<T>::empty(ctx, s);
  Shape storage_shape = s;
  if (kind == View::sliced) {
    storage_shape[s.rank() - 1] += 3;
    return Tensor<T>::empty(ctx, storage_shape).slice(-1, 1, s[s.rank() - 1]);
  }
  if (s.rank() == 1) {
    auto base = Tensor<T>::empty(ctx, {2 * s[0]});
    Layout l = Layout::contiguous(s);
    l.strides[0] = 2;
    return Tensor<T>(base.storage(), l);
  }
  std::swap(storage_shape[s.rank() - 1], storage_shape[s.rank() - 2]);
  return Tensor<T>::empty(ctx, storage_shape).transposed(-1, -2);
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{1}, {7}, {33, 65}, {3, 5, 17}, {2, 129, 131}, {70001}};
  return s;
}

/// Checks kernels::map(op) for Out <- In... on every shape and several view combinations:
///  1. each element equals cast<Out>(op(x...)) computed here, bit for bit (the engine's plumbing);
///  2. it is within (u_Out + k u_acc) * magnitude + subnormal floor of the float64 reference, where
///     ref(x...) returns {exact value, magnitude of its terms} and k is the number of roundings in
///     the compute type (the classic model fl(a op b) = (a op b)(1 + d), |d| <= u);
///  3. dense and strided operands, 1 and 4 threads, give identical bits.
template <class Out, class... In, class Op, class Ref>
void check_map(const Op& op, Ref ref, int roundings, double lo, double hi) {
  using A = kernels::compute_t<In...>;
  const double u_out = ktest::unit_roundoff<Out>(), u_acc = ktest::unit_roundoff<A>();
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  ContextOptions one, four;
  one.host_threads = 1;
  four.host_threads = 4;
  auto c1 = ExecutionContext::host(one);
  auto c4 = ExecutionContext::host(four);
  const View kinds[3] = {View::dense, View::transposed, View::sliced};
  int combo = 0;
  for (const Shape& s : shapes()) {
    // Dense inputs and the dense reference result.
    std::tuple<Tensor<In>...> dense_in{Tensor<In>::empty(c4, s)...};
    std::apply([&](auto&... t) { (ktest::fill_random(t, rng, lo, hi), ...); }, dense_in);
    auto dense_out = Tensor<Out>::empty(c4, s);
    std::apply([&](auto&... t) { kernels::map(c4, op, dense_out, t...); }, dense_in);
    for (int v = 0; v < 3; ++v, ++combo) {
      const View out_kind = kinds[v];
      // Each input gets a different kind, rotating with the output's.
      auto in = [&]<std::size_t... K>(std::index_sequence<K...>) {
        return std::tuple<Tensor<In>...>{make_view<In>(c1, s, kinds[(v + 1 + K) % 3])...};
      }(std::index_sequence_for<In...>{});
      [&]<std::size_t... K>(std::index_sequence<K...>) {
        (ktest::copy_values(std::get<K>(dense_in), std::get<K>(in)), ...);
      }(std::index_sequence_for<In...>{});
      auto out = make_view<Out>(c1, s, out_kind);
      std::apply([&](auto&... t) { kernels::map(c1, op, out, t...); }, in);
      INFO("Out " << ktest::type_name<Out>() << " In" << ((std::string(" ") + ktest::type_name<In>()) + ...) << " shape "
                  << s << " out view " << view_name(out_kind) << " seed " << seed);
      REQUIRE(ktest::bitwise_equal(out, dense_out));
      for (std::int64_t i = 0; i < out.numel(); ++i) {
        const Out y = elem(out, i);
        const Out expected = [&]<std::size_t... K>(std::index_sequence<K...>) {
          return kernels::detail::cast<Out>(op(elem(std::get<K>(in), i)...));
        }(std::index_sequence_for<In...>{});
        const auto [r, mag] = [&]<std::size_t... K>(std::index_sequence<K...>) {
          return ref(ktest::to_double(elem(std::get<K>(in), i))...);
        }(std::index_sequence_for<In...>{});
        INFO("element " << i);
        REQUIRE(std::memcmp(&y, &expected, sizeof(Out)) == 0);
        if constexpr (std::is_integral_v<Out>) {
          REQUIRE(y == kernels::detail::float_to_int<Out>(r));
        } else {
          const double tol = (u_out + roundings * u_acc) * (1 + u_out) * mag + ktest::subnormal_floor<Out>();
          REQUIRE(std::fabs(ktest::to_double(y) - r) <= tol);
        }
      }
    }
  }
}

using R2 = std::pair<double, double>;

}  // namespace

TEST_CASE("map ScaleBy over every element type, dense and strided", "[kernels][map]") {
  const kernels::ScaleBy op{0.37};
  // alpha is rounded once to the compute type: the reference uses that rounded alpha, then one
  // product rounding in the compute type and one rounding to Out.
  auto ref_f = [](double x) { return R2{double(float(0.37)) * x, std::fabs(double(float(0.37)) * x)}; };
  auto ref_d = [](double x) { return R2{0.37 * x, std::fabs(0.37 * x)}; };
  check_map<float, float>(op, ref_f, 1, -2, 2);
  check_map<double, double>(op, ref_d, 1, -2, 2);
  check_map<bf16, bf16>(op, ref_f, 1, -2, 2);
  check_map<f16, f16>(op, ref_f, 1, -2, 2);
  check_map<e4m3, e4m3>(op, ref_f, 1, -8, 8);
  check_map<e5m2, e5m2>(op, ref_f, 1, -8, 8);
  check_map<bf16, float>(op, ref_f, 1, -2, 2);
  check_map<std::int32_t, std::int32_t>(op, ref_d, 0, -1000, 1000);
}

TEST_CASE("map with two and three inputs of mixed element types", "[kernels][map]") {
  auto add = [](double a, double b) { return R2{a + b, std::fabs(a) + std::fabs(b)}; };
  check_map<bf16, f16, float>(kernels::Add{}, add, 1, -2, 2);
  check_map<double, double, float>(kernels::Add{}, add, 1, -2, 2);
  check_map<float, e4m3, bf16>(kernels::Add{}, add, 1, -4, 4);
  check_map<std::int32_t, std::int8_t, std::int16_t>(kernels::Add{}, add, 0, -100, 100);
  check_map<f16, bf16, e5m2>(kernels::Mul{}, [](double a, double b) { return R2{a * b, std::fabs(a * b)}; }, 1, -2, 2);
  check_map<float, float, float>(kernels::Div{}, [](double a, double b) { return R2{a / b, std::fabs(a / b)}; }, 1, 0.5, 2);
  check_map<float, float, float>(kernels::Axpby{0.5, -1.25},
                                 [](double a, double b) { return R2{0.5 * a - 1.25 * b, 0.5 * std::fabs(a) + 1.25 * std::fabs(b)}; },
                                 2, -2, 2);
  // One fma: a single rounding of the exact x * y + z.
  check_map<float, bf16, float, f16>(kernels::MulAdd{},
                                     [](double a, double b, double c) { return R2{a * b + c, std::fabs(a * b) + std::fabs(c)}; },
                                     1, -2, 2);
}

TEST_CASE("map unary functors: Square, Abs, Negate, Identity conversion", "[kernels][map]") {
  check_map<float, bf16>(kernels::Square{}, [](double x) { return R2{x * x, x * x}; }, 1, -3, 3);
  check_map<f16, f16>(kernels::Abs{}, [](double x) { return R2{std::fabs(x), std::fabs(x)}; }, 0, -3, 3);
  check_map<e4m3, e4m3>(kernels::Negate{}, [](double x) { return R2{-x, std::fabs(x)}; }, 0, -3, 3);
  check_map<e5m2, double>(kernels::Identity{}, [](double x) { return R2{x, std::fabs(x)}; }, 0, -3, 3);
  check_map<double, std::int64_t>(kernels::AddScalar{0.5}, [](double x) { return R2{x + 0.5, std::fabs(x) + 0.5}; }, 1,
                                  -1e6, 1e6);
}

TEST_CASE("map in place (output aliases an input exactly)", "[kernels][map]") {
  auto ctx = ExecutionContext::host();
  std::mt19937_64 rng(ktest::fresh_seed());
  auto x = Tensor<bf16>::empty(ctx, {100, 77});
  ktest::fill_random(x, rng, -1, 1);
  const auto before = ktest::values(x);
  kernels::map(ctx, kernels::ScaleBy{2.0}, x, x);  // exact: scaling by 2
  const auto after = ktest::values(x);
  for (std::size_t i = 0; i < before.size(); ++i) REQUIRE(after[i] == 2 * before[i]);
  CHECK(x.storage()->version() == 1);
}

TEST_CASE("fill writes the value rounded once, only inside the view", "[kernels][fill]") {
  auto ctx = ExecutionContext::host();
  auto check = [&]<class T>(double value, T expected) {
    auto base = Tensor<T>::empty(ctx, {9, 40});
    kernels::fill(ctx, base, T{});
    auto view = base.slice(1, 3, 30).slice(0, 1, 7);
    kernels::fill(ctx, view, value);
    for (std::int64_t r = 0; r < 9; ++r)
      for (std::int64_t c = 0; c < 40; ++c) {
        const bool inside = r >= 1 && r < 8 && c >= 3 && c < 33;
        const T got = base.at({r, c});
        const T want = inside ? expected : T{};
        INFO(ktest::type_name<T>() << " at " << r << "," << c);
        REQUIRE(std::memcmp(&got, &want, sizeof(T)) == 0);
      }
  };
  check(0.1, 0.1);
  check(0.1, 0.1f);
  check(0.1, convert<bf16>(0.1));
  check(0.1, convert<f16>(0.1));
  check(300.0, convert<e4m3>(300.0));
  check(1e6, convert<e5m2>(1e6));  // overflows to inf (nearest-even, non-saturating)
  check(2.7, std::int32_t{2});     // integers truncate
  check(-2.7, std::int8_t{-2});
  // The value may also be given in the element type itself.
  auto h = Tensor<f16>::empty(ctx, {5});
  kernels::fill(ctx, h, f16(1.5f));
  CHECK(static_cast<float>(h.at({4})) == 1.5f);
}

TEST_CASE("contiguous, clone and copy of strided views", "[kernels][copy]") {
  auto ctx = ExecutionContext::host();
  std::mt19937_64 rng(ktest::fresh_seed());
  auto base = Tensor<bf16>::empty(ctx, {6, 5, 40});
  ktest::fill_random(base, rng, -3, 3);
  // contiguous of a dense tensor is the tensor itself (like torch); of a view, a dense copy.
  auto same = kernels::contiguous(ctx, base);
  CHECK(same.aliases(base));
  auto view = base.transposed(0, 2).slice(0, 3, 31);  // (31, 5, 6), strided
  auto dense = kernels::contiguous(ctx, view);
  CHECK(dense.is_contiguous());
  CHECK_FALSE(dense.aliases(base));
  CHECK(dense.shape() == view.shape());
  CHECK(ktest::bitwise_equal(dense, view));
  auto cl = kernels::clone(ctx, base);
  CHECK_FALSE(cl.aliases(base));
  CHECK(ktest::bitwise_equal(cl, base));
  // kernels::copy between two strided views of one shape.
  auto dst_base = Tensor<bf16>::empty(ctx, {5, 6, 40});
  auto dst = dst_base.transposed(0, 1).slice(2, 5, 31).transposed(0, 2);  // (31, 5, 6)
  kernels::copy(ctx, view, dst);
  CHECK(ktest::bitwise_equal(dst, view));
  // Type-erased forms.
  auto dst2 = Tensor<bf16>::empty(ctx, view.shape());
  kernels::copy(ctx, TensorRef(view), TensorRef(dst2));
  CHECK(ktest::bitwise_equal(dst2, view));
  TensorRef dense_ref = kernels::contiguous(ctx, TensorRef(view));
  CHECK(dense_ref.is_contiguous());
  CHECK(ktest::bitwise_equal(dense_ref.as<bf16>(), view));
  // item reads one element.
  CHECK(bitwise_equal(kernels::item(ctx, view.slice(0, 2, 1).slice(1, 3, 1).slice(2, 4, 1)), view.at({2, 3, 4})));
}

// ---- errors ----

namespace {
/// A CUDA tensor handle over no memory: the op boundary must refuse it before touching anything.
template <class T>
Tensor<T> fake_cuda_tensor(const Shape& s) {
  return Tensor<T>::wrap(reinterpret_cast<T*>(std::uintptr_t{0x1000}), s, Device::cuda(0));
}
}  // namespace

TEST_CASE("element-wise ops reject bad operands with typed errors naming expected and got", "[kernels][errors]") {
  auto ctx = ExecutionContext::host();
  auto a = Tensor<float>::empty(ctx, {4, 8});
  auto b = Tensor<float>::empty(ctx, {4, 9});
  try {
    kernels::map(ctx, kernels::Add{}, a, a, b);
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    CHECK_THAT(e.what(), Catch::Contains("map") && Catch::Contains("input 1") && Catch::Contains("expected (4, 8)") &&
                             Catch::Contains("got (4, 9)"));
  }
  CHECK_THROWS_AS(kernels::convert(ctx, b, a), ShapeError);
  CHECK_THROWS_AS(kernels::copy(ctx, b, a), ShapeError);

  auto gpu = fake_cuda_tensor<float>({4, 8});
  try {
    kernels::map(ctx, kernels::Identity{}, gpu, a);
    FAIL("expected DeviceError");
  } catch (const DeviceError& e) {
    CHECK_THAT(e.what(), Catch::Contains("the output") && Catch::Contains("expected cpu") && Catch::Contains("got cuda:0"));
  }
  CHECK_THROWS_AS(kernels::map(ctx, kernels::Identity{}, a, gpu), DeviceError);
  CHECK_THROWS_AS(kernels::fill(ctx, gpu, 1.0), DeviceError);
  CHECK_THROWS_AS(kernels::contiguous(ctx, gpu), DeviceError);
  CHECK_THROWS_AS(kernels::copy(ctx, gpu, a), DeviceError);

  auto i = Tensor<std::int32_t>::empty(ctx, {4, 8});
  try {
    kernels::copy(ctx, TensorRef(a), TensorRef(i));
    FAIL("expected DTypeError");
  } catch (const DTypeError& e) {
    CHECK_THAT(e.what(), Catch::Contains("expected i32") && Catch::Contains("got f32"));
  }
  auto packed = Tensor<quant::nf4>::empty(ctx, {64});
  CHECK_THROWS_AS(kernels::fill(ctx, TensorRef(packed), 1.0), DTypeError);
  CHECK_THROWS_AS(kernels::convert(ctx, a, a, static_cast<Rounding>(9)), ValueError);
  CHECK_THROWS_AS(kernels::item(ctx, a), ShapeError);
  CHECK_THROWS_AS(kernels::map(ctx, kernels::Identity{}, Tensor<float>(), a), ValueError);
}
