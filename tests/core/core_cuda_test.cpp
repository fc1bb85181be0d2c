// CUDA side of core/: contexts, the stream-ordered pool (also under graph capture), role counters,
// and copies through pinned staging. Runtime-API work only, so this is a host-compiled unit.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "mixtape/core/transfer.hpp"

using namespace mixtape;

namespace {
std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}
}  // namespace

TEST_CASE("a CUDA context owns a non-default stream, a pool and a cuBLASLt handle", "[cuda][core]") {
  auto ctx = ExecutionContext::cuda(0);
  CHECK(ctx.device() == Device::cuda(0));
  REQUIRE(ctx.stream() != nullptr);
  CHECK(ctx.stream() != cudaStreamLegacy);
  unsigned flags = 0;
  REQUIRE(cudaStreamGetFlags(ctx.stream(), &flags) == cudaSuccess);
  CHECK((flags & cudaStreamNonBlocking) != 0);
  CHECK(ctx.cublaslt() != nullptr);
  CHECK(ctx.gemm_workspace() != nullptr);
  CHECK(ctx.allocator().counters().current(MemoryRole::workspace) == ctx.gemm_workspace_bytes());
}

TEST_CASE("device tensors are aligned and counted per role", "[cuda][core]") {
  auto ctx = ExecutionContext::cuda(0);
  auto& c = ctx.allocator().counters();
  const auto before = c.current(MemoryRole::gradients);
  {
    auto g = Tensor<bf16>::empty(ctx, {3, 333}, MemoryRole::gradients);
    CHECK(g.device() == Device::cuda(0));
    CHECK(reinterpret_cast<std::uintptr_t>(g.data()) % 16 == 0);
    CHECK(c.current(MemoryRole::gradients) == before + 3 * 333 * 2);
  }
  CHECK(c.current(MemoryRole::gradients) == before);
  CHECK(c.peak(MemoryRole::gradients) >= 3 * 333 * 2);
}

TEST_CASE("host -> device -> device -> host round trip through pinned staging", "[cuda][core]") {
  ContextOptions options;
  options.staging_bytes = 1 << 20;  // small staging buffers so the copies take several chunks
  auto ctx = ExecutionContext::cuda(0, options);
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{(1 << 20) / 4 * 3 + 17}}) {
    const auto host = random_floats(n, static_cast<std::uint32_t>(n));
    auto d = from_host(ctx, std::span<const float>(host), {static_cast<std::int64_t>(n)});
    CHECK(d.device().is_cuda());
    auto d2 = Tensor<float>::empty(ctx, d.shape());
    copy(ctx, d, d2);
    CHECK(to_vector(ctx, d2) == host);
  }
}

TEST_CASE("pool allocations and copies can be captured in a CUDA graph", "[cuda][core]") {
  auto ctx = ExecutionContext::cuda(0);
  const auto host = random_floats(4096, 7);
  auto src = from_host(ctx, std::span<const float>(host), {4096});
  auto dst = Tensor<float>::empty(ctx, {4096});
  ctx.synchronize();
  cudaGraph_t graph = nullptr;
  REQUIRE(cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  {
    // A temporary allocated and freed inside the capture becomes a graph memory node.
    auto tmp = Tensor<float>::empty(ctx, {4096}, MemoryRole::workspace);
    copy(ctx, src, tmp);
    copy(ctx, tmp, dst);
  }
  REQUIRE(cudaStreamEndCapture(ctx.stream(), &graph) == cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  REQUIRE(cudaGraphLaunch(exec, ctx.stream()) == cudaSuccess);
  REQUIRE(cudaGraphLaunch(exec, ctx.stream()) == cudaSuccess);  // replays reuse the graph's memory
  ctx.synchronize();
  CHECK(to_vector(ctx, dst) == host);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST_CASE("copies refuse strided device views and foreign contexts", "[cuda][core]") {
  auto ctx = ExecutionContext::cuda(0);
  auto host_ctx = ExecutionContext::host();
  auto d = Tensor<float>::empty(ctx, {4, 6});
  CHECK_THROWS_AS(to_vector(ctx, d.transposed()), ShapeError);
  CHECK_THROWS_WITH(to_vector(host_ctx, d), Catch::Contains("expected a context on cuda:0, got one on cpu"));
}

TEST_CASE("CUDA failures become typed exceptions with the call, the error name, file and line", "[cuda][core]") {
  auto ctx = ExecutionContext::cuda(0);
  // A pool allocation far beyond any device (1 PiB): OutOfMemoryError naming the failed call.
  try {
    auto huge = Tensor<std::uint8_t>::empty(ctx, {std::int64_t{1} << 50});
    FAIL("a 1 PiB allocation succeeded");
  } catch (const OutOfMemoryError& e) {
    CHECK(std::string(e.what()).find("cudaMallocFromPoolAsync") != std::string::npos);
    CHECK(std::string(e.what()).find("cudaErrorMemoryAllocation") != std::string::npos);
    CHECK(std::string(e.file()).find("allocator.hpp") != std::string::npos);
    CHECK(e.line() > 0);
  }
  ctx.synchronize();  // the failed allocation left the stream usable
  // Any other runtime error: CudaError with the library's code.
  try {
    MIXTAPE_CUDA_CHECK(cudaSetDevice(1 << 20));
    FAIL("cudaSetDevice accepted a device that does not exist");
  } catch (const CudaError& e) {
    CHECK(e.code() == static_cast<int>(cudaErrorInvalidDevice));
    CHECK(std::string(e.what()).find("cudaSetDevice(1 << 20) failed: cudaErrorInvalidDevice") != std::string::npos);
    CHECK(std::string(e.file()).find("core_cuda_test.cpp") != std::string::npos);
  }
  (void)cudaGetLastError();
  auto ok = Tensor<float>::empty(ctx, {16});  // the context still works
  CHECK(ok.data() != nullptr);
}
