// The GPT under each of the six presets on CUDA (kernels from the .cu helper) against the host, on
// the same weights and ids: loss and every parameter's gradient.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "gpt_cuda_helpers.hpp"
#include "gpt_cuda_body.inc"

using namespace mixtape;

namespace {
/// ||a - b|| / ||b|| over one parameter's gradient.
double relative(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < b.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / den);
}
}  // namespace

TEST_CASE("Gpt on CUDA agrees with the host under every preset", "[cuda][nn][gpt]") {
  auto host = ExecutionContext::host();
  auto dev = ExecutionContext::cuda(0);
  std::mt19937 rng(Catch::rngSeed() ? Catch::rngSeed() : std::random_device{}());
  std::uniform_int_distribution<std::int32_t> u(0, static_cast<std::int32_t>(gcuda_impl::kConfig.vocab - 1));
  std::vector<std::int32_t> ids(gcuda_impl::kB * gcuda_impl::kT), targets(ids.size());
  for (auto& v : ids) v = u(rng);
  for (auto& v : targets) v = u(rng);
  // The network's error amplification kappa, measured on the host: the f32 model's normwise
  // gradient error against the f64 model, in units of f32's unit roundoff (gpt_test.cpp derives
  // why a policy computing in a type of unit roundoff u then stays within a small multiple of
  // kappa u). Host and CUDA each carry such an error, so they may differ by twice it; the factor 4
  // of gpt_test.cpp makes 8.
  std::vector<std::vector<double>> w64, w32;
  const auto r64 = gcuda_impl::run_named(host, "64-true", {}, ids, targets, &w64);
  const auto r32 = gcuda_impl::run_named(host, "32-true", {}, ids, targets, &w32);
  double e32 = 0;
  for (std::size_t p = 0; p < r64.grads.size(); ++p) e32 = std::max(e32, relative(r32.grads[p], r64.grads[p]));
  const double kappa = std::max(e32 / 0x1p-24, 8.0);
  const struct {
    const char* name;
    double u;
  } policies[] = {{"32-true", 0x1p-24}, {"64-true", 0x1p-53}, {"16-true", 0x1p-11},
                  {"bf16-true", 0x1p-8}, {"16-mixed", 0x1p-11}, {"bf16-mixed", 0x1p-8}};
  for (const auto& pol : policies) {
    INFO(pol.name << ", kappa " << kappa);
    std::vector<std::vector<double>> w;
    const auto h = gcuda_impl::run_named(host, pol.name, {}, ids, targets, &w);
    const auto d = gcuda::run_gpt_cuda(dev, pol.name, w, ids, targets);
    const double bound = 8 * kappa * pol.u;
    CHECK(std::abs(d.loss - h.loss) <= bound * std::abs(h.loss));
    REQUIRE(d.grads.size() == h.grads.size());
    for (std::size_t p = 0; p < h.grads.size(); ++p) {
      INFO("parameter " << p << ": relative error " << relative(d.grads[p], h.grads[p]) << ", bound " << bound);
      CHECK(relative(d.grads[p], h.grads[p]) <= bound);
    }
  }
}

TEST_CASE("TrainStep replayed as a CUDA graph gives the eager steps' bits", "[cuda][nn][gpt][graph]") {
  constexpr int kSteps = 5;
  std::mt19937 rng(Catch::rngSeed() ? Catch::rngSeed() : std::random_device{}());
  std::uniform_int_distribution<std::int32_t> u(0, static_cast<std::int32_t>(gcuda_impl::kConfig.vocab - 1));
  std::vector<std::vector<std::int32_t>> ids(kSteps), targets(kSteps);
  for (int s = 0; s < kSteps; ++s) {
    ids[s].resize(gcuda_impl::kB * gcuda_impl::kT);
    targets[s].resize(ids[s].size());
    for (auto& v : ids[s]) v = u(rng);
    for (auto& v : targets[s]) v = u(rng);
  }
  for (const char* precision : {"bf16-mixed", "16-mixed"}) {
    INFO(precision);
    // A context each, with one seed: both runs initialise the same weights.
    const auto eager = gcuda::train_gpt_cuda(ExecutionContext::cuda(0, {.seed = 7}), precision, kSteps, false, ids, targets);
    const auto graph = gcuda::train_gpt_cuda(ExecutionContext::cuda(0, {.seed = 7}), precision, kSteps, true, ids, targets);
    CHECK_FALSE(eager.graphed);
    REQUIRE(graph.graphed);
    CHECK(graph.graph_nodes > 0);
    // Same kernels, same algorithms, same order: the replayed steps (3 to 5) must give the eager bits,
    // which they cannot if anything a step changes (lr, AdamW's t, the loss scale) was baked into it.
    CHECK(graph.losses == eager.losses);
    REQUIRE(graph.buffers.size() == eager.buffers.size());
    for (std::size_t b = 0; b < eager.buffers.size(); ++b) {
      INFO("store buffer " << b);
      CHECK(graph.buffers[b] == eager.buffers[b]);
    }
    // And the steps did train: the loss moved.
    CHECK(eager.losses.front() != eager.losses.back());
  }
}
