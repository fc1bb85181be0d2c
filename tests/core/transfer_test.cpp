// Host copies (dense and strided) and the errors of copy().
#include <catch2/catch.hpp>

#include <random>

#include "mixtape/core/transfer.hpp"

using namespace mixtape;

TEST_CASE("host copy of dense and strided views", "[core][transfer]") {
  auto ctx = ExecutionContext::host();
  std::mt19937 rng(Catch::rngSeed());
  std::uniform_real_distribution<double> u(-3, 3);
  auto x = Tensor<double>::empty(ctx, {7, 5});
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < 5; ++j) x.at({i, j}) = u(rng);
  auto y = Tensor<double>::empty(ctx, {5, 7});
  copy(ctx, x.transposed(), y);  // strided source, dense destination
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < 5; ++j) CHECK(y.at({j, i}) == x.at({i, j}));
  auto z = Tensor<double>::empty(ctx, {7, 10});
  copy(ctx, x, z.slice(1, 5, 5));  // dense source, strided destination
  for (int i = 0; i < 7; ++i)
    for (int j = 0; j < 5; ++j) CHECK(z.at({i, j + 5}) == x.at({i, j}));
  const auto v = to_vector(ctx, x.transposed());
  CHECK(v[1] == x.at({1, 0}));
  const std::vector<float> values = {1.5f, -2.0f, 3.25f, 0.125f};
  auto t = from_host(ctx, std::span<const float>(values), {2, 2});
  CHECK(t.at({1, 0}) == 3.25f);
}

TEST_CASE("copy refuses mismatched dtypes, shapes and missing storage", "[core][transfer]") {
  auto ctx = ExecutionContext::host();
  auto a = Tensor<float>::empty(ctx, {2, 3});
  CHECK_THROWS_WITH(copy(ctx, a, Tensor<f16>::empty(ctx, {2, 3})), Catch::Contains("dtypes must match, expected f16, got f32"));
  CHECK_THROWS_WITH(copy(ctx, a, Tensor<float>::empty(ctx, {3, 2})), Catch::Contains("expected (3, 2), got (2, 3)"));
  CHECK_THROWS_AS(copy(ctx, Tensor<float>(), a), ValueError);
  const std::vector<float> three = {1, 2, 3};
  CHECK_THROWS_AS(from_host(ctx, std::span<const float>(three), {2, 2}), ShapeError);
}
