// The same graph on CUDA (kernels from the .cu helper) and on the host: gradients agree.
#include "autograd_test_util.hpp"

#include "mixtape/autograd/ops_linear.hpp"

#include "autograd_cuda_helpers.hpp"
#include "autograd_cuda_body.inc"

using namespace mixtape;

TEST_CASE("CUDA autograd equals the host tape", "[cuda][autograd]") {
  auto host = ExecutionContext::host();
  auto dev = ExecutionContext::cuda(0);
  for (const Shape& sa : {Shape{1, 2}, Shape{7, 10}, Shape{129, 64}}) {
    INFO("shape " << sa);
    auto a = atest::random_tensor<float>(host, sa);
    auto b = atest::random_tensor<float>(host, {sa[0], 3});
    const acuda::Grads h = acuda_impl::run(host, a, b);
    const acuda::Grads d = acuda::run_graph(dev, to_device(dev, a, Device::cuda(0)), to_device(dev, b, Device::cuda(0)));
    // Element-wise gradients are computed identically on both backends (no reduction in their
    // path): bitwise equal. The loss is a reduction: equal within the order-dependence of a sum of
    // n positive-or-mixed f32 terms, n u sum|terms| with u = 2^-24.
    REQUIRE(h.ga == d.ga);
    REQUIRE(h.gb == d.gb);
    const double n = static_cast<double>(a.numel() + b.numel());
    CHECK(std::abs(h.loss - d.loss) <= n * 0x1p-24 * (std::abs(h.loss) + 10 * n));
  }
}

TEST_CASE("CUDA model chain (embedding, LayerNorm, linear, GELU, cross-entropy) equals the host", "[cuda][autograd]") {
  auto host = ExecutionContext::host();
  auto dev = ExecutionContext::cuda(0);
  const std::int64_t V = 37, C = 24, N = 50;
  auto table = atest::random_tensor<float>(host, {V, C}, -1, 1);
  auto w1 = atest::random_tensor<float>(host, {4 * C, C}, -0.3, 0.3);
  auto b1 = atest::random_tensor<float>(host, {4 * C}, -0.1, 0.1);
  auto w2 = atest::random_tensor<float>(host, {V, 4 * C}, -0.3, 0.3);
  auto ids = Tensor<std::int32_t>::empty(host, {N});
  auto targets = Tensor<std::int32_t>::empty(host, {N});
  std::uniform_int_distribution<std::int32_t> u(0, static_cast<std::int32_t>(V - 1));
  for (std::int64_t i = 0; i < N; ++i) {
    ids.data()[i] = u(atest::rng());
    targets.data()[i] = u(atest::rng());
  }
  const auto h = acuda_impl::chain(host, table, w1, b1, w2, ids, targets);
  auto on = [&](const auto& t) { return to_device(dev, t, Device::cuda(0)); };
  const auto d = acuda::run_chain(dev, on(table), on(w1), on(b1), on(w2), on(ids), on(targets));
  // Both sides compute in f32 with different summation orders (GEMM blocking, reductions): the
  // results agree to a few units of f32 roundoff times the reduction depth (4C = 96 terms in the
  // deepest GEMM): |d - h| <= 4 * 96 * 2^-24 * (|h| + max|h|) per element, gradients and loss.
  auto close = [](const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    INFO(what);
    REQUIRE(a.size() == b.size());
    float scale = 0;
    for (float x : a) scale = std::max(scale, std::abs(x));
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - b[i]) <= 4 * 96 * 0x1p-24 * (std::abs(a[i]) + scale));
  };
  close({h.loss}, {d.loss}, "loss");
  close(h.d_table, d.d_table, "d_table");
  close(h.d_gamma, d.d_gamma, "d_gamma");
  close(h.d_w1, d.d_w1, "d_w1");
  close(h.d_b1, d.d_b1, "d_b1");
}
