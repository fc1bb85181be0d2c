// Allocators and counters per role; the host thread pool's partition and error handling.
#include <catch2/catch.hpp>

#include <atomic>
#include <numeric>
#include <vector>

#include "mixtape/core/tensor.hpp"

using namespace mixtape;

TEST_CASE("current and peak bytes are counted per role", "[core][memory]") {
  HostAllocator a;
  auto& c = a.counters();
  void* w = a.allocate(1000, MemoryRole::weights);
  void* g = a.allocate(300, MemoryRole::gradients);
  CHECK(c.current(MemoryRole::weights) == 1000);
  CHECK(c.current(MemoryRole::gradients) == 300);
  CHECK(c.current_total() == 1300);
  a.deallocate(g, 300, MemoryRole::gradients);
  void* s = a.allocate(200, MemoryRole::optimizer_state);
  // The total peak is the peak of the sum (1300), not the sum of per-role peaks (1500).
  CHECK(c.peak_total() == 1300);
  CHECK(c.peak(MemoryRole::gradients) == 300);
  CHECK(c.current(MemoryRole::gradients) == 0);
  c.reset_peaks();
  CHECK(c.peak_total() == 1200);
  a.deallocate(w, 1000, MemoryRole::weights);
  a.deallocate(s, 200, MemoryRole::optimizer_state);
  CHECK(c.current_total() == 0);
  CHECK(a.allocate(0, MemoryRole::workspace) == nullptr);
  CHECK_THROWS_AS(a.allocate(-1, MemoryRole::workspace), ValueError);
}

TEST_CASE("tensors count their bytes under their role until the last view goes", "[core][memory]") {
  auto ctx = ExecutionContext::host();
  auto& c = ctx.allocator().counters();
  {
    auto w = Tensor<bf16>::empty(ctx, {64, 32}, MemoryRole::weights);
    auto view = w.transposed();
    CHECK(c.current(MemoryRole::weights) == 64 * 32 * 2);
    w = Tensor<bf16>();
    CHECK(c.current(MemoryRole::weights) == 64 * 32 * 2);  // the view keeps the storage alive
    CHECK(reinterpret_cast<std::uintptr_t>(view.data()) % kAllocationAlignment == 0);
  }
  CHECK(c.current(MemoryRole::weights) == 0);
  CHECK(c.peak(MemoryRole::weights) == 64 * 32 * 2);
  for (int r = 0; r < kMemoryRoleCount; ++r) CHECK(!memory_role_name(static_cast<MemoryRole>(r)).empty());
}

TEST_CASE("every host allocation is aligned", "[core][memory]") {
  HostAllocator a;
  for (std::int64_t bytes : {1, 3, 17, 100, 4097}) {
    void* p = a.allocate(bytes, MemoryRole::activations);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 16 == 0);
    a.deallocate(p, bytes, MemoryRole::activations);
  }
}

TEST_CASE("parallel_for covers the range once with static, reproducible chunks", "[core][threads]") {
  ThreadPool pool(4);
  CHECK(pool.size() == 4);
  for (std::int64_t n : {1, 3, 4, 1000, 100003}) {
    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
    std::vector<std::pair<std::int64_t, std::int64_t>> ranges(4, {-1, -1});
    pool.parallel_for(n, 1, [&](std::int64_t b, std::int64_t e, int c) {
      ranges[c] = {b, e};
      for (std::int64_t i = b; i < e; ++i) hits[i]++;
    });
    for (auto& h : hits) REQUIRE(h.load() == 1);
    const int chunks = pool.chunk_count(n, 1);
    for (int c = 0; c < chunks; ++c) CHECK(ranges[c] == ThreadPool::chunk_range(n, chunks, c));
  }
  CHECK(pool.chunk_count(10, 4) == 2);
}

TEST_CASE("parallel_for rethrows a chunk's exception and survives nesting", "[core][threads]") {
  ThreadPool pool(3);
  CHECK_THROWS_AS(pool.parallel_for(30, 1,
                                    [](std::int64_t b, std::int64_t, int) {
                                      if (b > 0) MIXTAPE_THROW(ValueError, "chunk at ", b);
                                    }),
                  ValueError);
  std::atomic<std::int64_t> total{0};
  pool.parallel_for(9, 1, [&](std::int64_t b, std::int64_t e, int) {
    pool.parallel_for(e - b, 1, [&](std::int64_t ib, std::int64_t ie, int) { total += ie - ib; });
  });
  CHECK(total.load() == 9);
  // The pool is usable after an exception.
  std::atomic<int> count{0};
  pool.parallel_for(6, 1, [&](std::int64_t b, std::int64_t e, int) { count += static_cast<int>(e - b); });
  CHECK(count.load() == 6);
}
