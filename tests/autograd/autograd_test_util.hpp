// Random inputs for autograd tests (fresh each run; the seed is reported on failure).
#pragma once

#include <catch2/catch.hpp>

#include <random>

#include "mixtape/autograd/ops_basic.hpp"

namespace atest {

inline std::mt19937_64& rng() {
  static std::mt19937_64 r(Catch::rngSeed() ? Catch::rngSeed() : std::random_device{}());
  return r;
}

template <class T>
mixtape::Tensor<T> random_tensor(const mixtape::ExecutionContext& ctx, const mixtape::Shape& shape, double lo = -2,
                                 double hi = 2) {
  auto t = mixtape::Tensor<T>::empty(ctx, shape, mixtape::Device::cpu());
  std::uniform_real_distribution<double> u(lo, hi);
  T* p = t.data();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(u(rng()));
  return t;
}

}  // namespace atest
