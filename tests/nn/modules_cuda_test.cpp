// The same bf16-mixed module chain on CUDA (kernels from the .cu helper) and on the host.
#include <catch2/catch.hpp>

#include <random>

#include "modules_cuda_helpers.hpp"
#include "modules_cuda_body.inc"

using namespace mixtape;

TEST_CASE("bf16-mixed modules on CUDA agree with the host", "[cuda][nn]") {
  auto host = ExecutionContext::host();
  auto dev = ExecutionContext::cuda(0);
  std::mt19937 rng(Catch::rngSeed() ? Catch::rngSeed() : std::random_device{}());
  std::uniform_int_distribution<std::int32_t> u(0, static_cast<std::int32_t>(ncuda_impl::kV - 1));
  std::vector<std::int32_t> ids(40), targets(40);
  for (auto& v : ids) v = u(rng);
  for (auto& v : targets) v = u(rng);
  std::vector<float> flat;
  const auto h = ncuda_impl::run(host, {}, ids, targets, &flat);
  const auto d = ncuda::run_chain(dev, flat, ids, targets);
  // Both read the same bf16 copies; they differ in f32 summation order (GEMMs over C = 32 and
  // V = 29 terms, LayerNorm and cross-entropy rows) and hence, rarely, in a bf16 rounding of an
  // activation (one ulp, 2^-8 relative) that then propagates linearly: per element
  // |d - h| <= 2^-7 (|h| + max|h|), a bound a wrong gradient (O(1) relative) cannot meet.
  CHECK(std::abs(d.loss - h.loss) <= 0x1p-7 * std::abs(h.loss));
  REQUIRE(d.grads.size() == h.grads.size());
  for (std::size_t p = 0; p < h.grads.size(); ++p) {
    INFO("parameter " << p);
    float scale = 0;
    for (float g : h.grads[p]) scale = std::max(scale, std::abs(g));
    REQUIRE(scale > 0);
    for (std::size_t i = 0; i < h.grads[p].size(); ++i)
      REQUIRE(std::abs(d.grads[p][i] - h.grads[p][i]) <= 0x1p-7 * (std::abs(h.grads[p][i]) + scale));
  }
}
