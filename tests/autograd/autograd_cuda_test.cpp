// The same graph on CUDA (kernels from the .cu helper) and on the host: gradients agree.
#include "autograd_test_util.hpp"

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
