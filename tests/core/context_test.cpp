// Devices and execution contexts, including the errors for devices that do not exist, and what a
// CudaGraph refuses on the host.
#include <catch2/catch.hpp>

#include "mixtape/core/cuda_graph.hpp"
#include "mixtape/core/execution_context.hpp"

using namespace mixtape;

TEST_CASE("devices parse, print and compare", "[core][device]") {
  CHECK(parse_device("cpu") == Device::cpu());
  CHECK(parse_device("cuda") == Device::cuda(0));
  CHECK(parse_device("cuda:3") == Device::cuda(3));
  CHECK(Device::cuda(2).to_string() == "cuda:2");
  CHECK(Device::cpu() != Device::cuda(0));
  CHECK_THROWS_AS(parse_device("gpu"), ValueError);
  CHECK_THROWS_WITH(parse_device("cuda:x"), Catch::Contains("expected cpu, cuda or cuda:N, got 'cuda:x'"));
}

TEST_CASE("a host context has a pool, an allocator and a Philox offset", "[core][context]") {
  ContextOptions options;
  options.host_threads = 2;
  options.seed = 42;
  auto ctx = ExecutionContext::host(options);
  CHECK(ctx.device() == Device::cpu());
  CHECK_FALSE(ctx.is_cuda());
  CHECK(ctx.host_threads() == 2);
  CHECK(ctx.seed() == 42);
  CHECK(ctx.stream_handle() == nullptr);
  CHECK(ctx.reserve_rng(100) == 0);
  CHECK(ctx.reserve_rng(5) == 100);
  CHECK(ctx.rng_offset() == 105);
  CHECK(&ctx.allocator_for(Device::cpu()) == &ctx.allocator_ptr());
  CHECK_THROWS_AS(ctx.allocator_for(Device::cuda(0)), DeviceError);
  ctx.synchronize();
  auto moved = std::move(ctx);
  CHECK(moved.seed() == 42);
}

TEST_CASE("a CUDA context on a device that does not exist is refused", "[core][context]") {
  const int count = cuda_device_count();
  if (kWithCudaRuntime) {
    CHECK_THROWS_AS(ExecutionContext::cuda(count + 7), DeviceError);
    CHECK_THROWS_WITH(ExecutionContext::cuda(count + 7), Catch::Contains("does not exist"));
  } else {
    CHECK(count == 0);
    CHECK_THROWS_AS(ExecutionContext::cuda(0), BackendError);
  }
  CHECK((count > 0) == default_device().is_cuda());
}

TEST_CASE("CudaGraph refuses host contexts and launches of nothing", "[core][graph]") {
  const auto ctx = ExecutionContext::host();
  CudaGraph graph;
  CHECK(graph.empty());
  CHECK(graph.node_count() == 0);
  int ran = 0;
  CHECK_THROWS_WITH(graph.capture(ctx, [&] { ++ran; }), Catch::Contains("expected a CUDA context, got one on cpu"));
  CHECK(ran == 0);  // nothing was enqueued or run
  CHECK_THROWS_WITH(graph.launch(ctx), Catch::Contains("nothing was captured"));
  CudaGraph moved(std::move(graph));
  CHECK(moved.empty());
}
