/// @file allocator.hpp
/// @brief Host (aligned) and CUDA stream-ordered pool allocators with current and peak bytes
///        counted per memory role.
///
/// The CUDA allocator uses the device's stream-ordered memory pool (`cudaMallocAsync`) with its
/// release threshold at the maximum, so freed blocks stay in the pool and allocations made during
/// stream capture become graph memory nodes (CUB's caching allocator calls `cudaMalloc` and
/// `cudaEventQuery`, which capture forbids). Counters are per role, so the policy's compile-time
/// memory model can be checked to the byte and peaks compared with PyTorch's max_memory_allocated.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string_view>

#include "mixtape/core/device.hpp"
#include "mixtape/core/error.hpp"

namespace mixtape {

/// What an allocation is for; every byte is counted under exactly one role.
enum class MemoryRole : std::uint8_t {
  weights,          ///< parameters in their storage format (and their compute copies)
  master,           ///< master copies of parameters narrower than their update math
  gradients,        ///< parameter gradients
  optimizer_state,  ///< optimizer moments and per-step scalars
  activations,      ///< forward outputs, saved tensors and their gradients
  workspace,        ///< scratch for GEMMs, reductions and staging
  graph,            ///< memory owned by captured CUDA graphs
};
inline constexpr int kMemoryRoleCount = 7;

constexpr std::string_view memory_role_name(MemoryRole role) noexcept {
  constexpr std::string_view kNames[kMemoryRoleCount] = {"weights",     "master",    "gradients", "optimizer_state",
                                                         "activations", "workspace", "graph"};
  return kNames[static_cast<int>(role)];
}

/// Current and peak bytes per role and in total. Thread-safe; the total peak is the peak of the
/// sum (what a device's capacity limits), not the sum of the per-role peaks.
class MemoryCounters {
 public:
  void add(MemoryRole role, std::int64_t bytes) noexcept {
    const auto r = static_cast<std::size_t>(role);
    raise_peak(peak_[r], current_[r].fetch_add(bytes, std::memory_order_relaxed) + bytes);
    raise_peak(total_peak_, total_.fetch_add(bytes, std::memory_order_relaxed) + bytes);
  }
  void remove(MemoryRole role, std::int64_t bytes) noexcept {
    current_[static_cast<std::size_t>(role)].fetch_sub(bytes, std::memory_order_relaxed);
    total_.fetch_sub(bytes, std::memory_order_relaxed);
  }
  std::int64_t current(MemoryRole role) const noexcept { return current_[static_cast<std::size_t>(role)].load(); }
  std::int64_t peak(MemoryRole role) const noexcept { return peak_[static_cast<std::size_t>(role)].load(); }
  std::int64_t current_total() const noexcept { return total_.load(); }
  std::int64_t peak_total() const noexcept { return total_peak_.load(); }

  /// Sets every peak to the current value (start of a measured region).
  void reset_peaks() noexcept {
    for (int r = 0; r < kMemoryRoleCount; ++r) peak_[r].store(current_[r].load());
    total_peak_.store(total_.load());
  }

 private:
  static void raise_peak(std::atomic<std::int64_t>& peak, std::int64_t value) noexcept {
    std::int64_t seen = peak.load(std::memory_order_relaxed);
    while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
    }
  }
  std::array<std::atomic<std::int64_t>, kMemoryRoleCount> current_{};
  std::array<std::atomic<std::int64_t>, kMemoryRoleCount> peak_{};
  std::atomic<std::int64_t> total_{0};
  std::atomic<std::int64_t> total_peak_{0};
};

/// Every allocation is aligned to at least this many bytes (16-byte vector loads need 16; 64 keeps
/// host rows on cache lines).
inline constexpr std::size_t kAllocationAlignment = 64;

/// Allocates and frees device or host memory, counting bytes per role.
///
/// `stream` is the CUDA stream (as `void*`, null for the host) on which the memory is first used and
/// on which it is freed: CUDA pool memory is stream-ordered.
class Allocator {
 public:
  virtual ~Allocator() = default;
  Allocator() = default;
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  /// @post the result is kAllocationAlignment-aligned, or null when bytes == 0.
  void* allocate(std::int64_t bytes, MemoryRole role, void* stream = nullptr) {
    MIXTAPE_EXPECT(bytes >= 0, ValueError, "allocate: expected a non-negative byte count, got ", bytes);
    if (bytes == 0) return nullptr;
    void* p = allocate_impl(bytes, stream);
    counters_.add(role, bytes);
    return p;
  }
  void deallocate(void* p, std::int64_t bytes, MemoryRole role, void* stream = nullptr) noexcept {
    if (p == nullptr) return;
    deallocate_impl(p, bytes, stream);
    counters_.remove(role, bytes);
  }

  virtual Device device() const noexcept = 0;
  MemoryCounters& counters() noexcept { return counters_; }
  const MemoryCounters& counters() const noexcept { return counters_; }

 protected:
  virtual void* allocate_impl(std::int64_t bytes, void* stream) = 0;
  virtual void deallocate_impl(void* p, std::int64_t bytes, void* stream) noexcept = 0;

 private:
  MemoryCounters counters_;
};

/// Host memory from the aligned global operator new.
class HostAllocator final : public Allocator {
 public:
  Device device() const noexcept override { return Device::cpu(); }

 protected:
  void* allocate_impl(std::int64_t bytes, void*) override {
    // Round up so vectorised host loops may read whole 64-byte lines at the tail.
    const auto rounded = (static_cast<std::size_t>(bytes) + kAllocationAlignment - 1) / kAllocationAlignment *
                         kAllocationAlignment;
    void* p = ::operator new(rounded, std::align_val_t(kAllocationAlignment), std::nothrow);
    MIXTAPE_EXPECT(p != nullptr, OutOfMemoryError, "host allocation of ", bytes, " bytes failed");
    return p;
  }
  void deallocate_impl(void* p, std::int64_t, void*) noexcept override {
    ::operator delete(p, std::align_val_t(kAllocationAlignment));
  }
};

#if defined(MIXTAPE_WITH_CUDA)
/// Device memory from the device's default stream-ordered pool, with the release threshold raised to
/// its maximum so the pool keeps freed memory (no cudaMalloc in steady state, graph-capture safe).
class CudaPoolAllocator final : public Allocator {
 public:
  explicit CudaPoolAllocator(int device) : device_(device) {
    detail::check_device_usable(Device::cuda(device));
    MIXTAPE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool_, device));
    std::uint64_t threshold = UINT64_MAX;
    MIXTAPE_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold));
  }
  Device device() const noexcept override { return Device::cuda(device_); }
  cudaMemPool_t pool() const noexcept { return pool_; }

 protected:
  void* allocate_impl(std::int64_t bytes, void* stream) override {
    void* p = nullptr;
    MIXTAPE_CUDA_CHECK(cudaMallocFromPoolAsync(&p, static_cast<std::size_t>(bytes), pool_,
                                               static_cast<cudaStream_t>(stream)));
    return p;  // pool allocations are at least 256-byte aligned
  }
  void deallocate_impl(void* p, std::int64_t, void* stream) noexcept override {
    (void)cudaFreeAsync(p, static_cast<cudaStream_t>(stream));
  }

 private:
  int device_;
  cudaMemPool_t pool_ = nullptr;
};

/// Page-locked host memory, for staging copies between host and device.
class PinnedAllocator final : public Allocator {
 public:
  Device device() const noexcept override { return Device::cpu(); }

 protected:
  void* allocate_impl(std::int64_t bytes, void*) override {
    void* p = nullptr;
    MIXTAPE_CUDA_CHECK(cudaMallocHost(&p, static_cast<std::size_t>(bytes)));
    return p;
  }
  void deallocate_impl(void* p, std::int64_t, void*) noexcept override { (void)cudaFreeHost(p); }
};
#endif

}  // namespace mixtape
