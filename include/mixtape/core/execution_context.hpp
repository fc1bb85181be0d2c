/// @file execution_context.hpp
/// @brief The explicit context every op takes: device, stream, cuBLASLt handle and workspace,
///        allocators, host thread pool, pinned staging and the random-number offset.
///
/// There is no global or thread-local current context: ops receive one by reference, so two models
/// on two streams (or two devices) never share hidden state.
///
/// @code
///   auto ctx = mixtape::ExecutionContext::cuda(0);     // or ExecutionContext::host()
///   auto x = mixtape::Tensor<float>::empty(ctx, {4, 8});
///   ctx.synchronize();
/// @endcode
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>

#include "mixtape/core/allocator.hpp"
#include "mixtape/core/device.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/thread_pool.hpp"

#if defined(MIXTAPE_WITH_CUDA)
#include <cublasLt.h>
#endif

namespace mixtape {

#if defined(MIXTAPE_WITH_CUDA)
/// Checks a cuBLAS(Lt) call; throws CudaError with the status name and text.
#define MIXTAPE_CUBLAS_CHECK(expr)                                                                         \
  do {                                                                                                     \
    const cublasStatus_t mixtape_status_ = (expr);                                                        \
    if (mixtape_status_ != CUBLAS_STATUS_SUCCESS) {                                                        \
      throw ::mixtape::CudaError(::mixtape::detail::concat(#expr " failed: ", cublasLtGetStatusName(mixtape_status_), \
                                                           " (", cublasLtGetStatusString(mixtape_status_), ")"),   \
                                 static_cast<int>(mixtape_status_), __FILE__, __LINE__);                 \
    }                                                                                                      \
  } while (0)
#endif

/// Options for creating a context.
struct ContextOptions {
  int host_threads = 0;                           ///< host worker threads; 0 = hardware concurrency
  std::uint64_t seed = 0x6D69787461706521ULL;     ///< Philox key for this context's random draws
  std::int64_t gemm_workspace_bytes = 32 << 20;   ///< cuBLASLt workspace (32 MiB, cuBLAS's Hopper advice)
  std::int64_t staging_bytes = 8 << 20;           ///< each of the two pinned staging buffers
  /// f32 GEMMs on this context may run on TF32 tensor cores (inputs rounded to 10 mantissa bits,
  /// f32 accumulation): torch's `allow_tf32` / `set_float32_matmul_precision("high")`, a setting of
  /// the run rather than of the model, as in torch. The host GEMM ignores it (full f32).
  bool allow_tf32 = false;
};

/// Device, stream, libraries and allocators for one stream of work. Move-only.
class ExecutionContext {
 public:
  /// A host context: host allocator and a thread pool of `options.host_threads` threads.
  static ExecutionContext host(ContextOptions options = {}) { return ExecutionContext(Device::cpu(), options); }

  /// A CUDA context on `device`: a new non-blocking stream (never the legacy default stream, on which
  /// graph capture cannot begin), the device's stream-ordered pool, a cuBLASLt handle and workspace.
  static ExecutionContext cuda(int device = 0, ContextOptions options = {}) {
    return ExecutionContext(Device::cuda(device), options);
  }

  /// A context for `device` (host or CUDA).
  static ExecutionContext on(Device device, ContextOptions options = {}) { return ExecutionContext(device, options); }

  ExecutionContext(ExecutionContext&&) noexcept = default;
  ExecutionContext& operator=(ExecutionContext&&) noexcept = default;
  ~ExecutionContext() = default;

  Device device() const noexcept { return state_->device; }
  bool is_cuda() const noexcept { return state_->device.is_cuda(); }

  /// The allocator for tensors on this context's device.
  Allocator& allocator() const noexcept { return *state_->allocator; }
  const std::shared_ptr<Allocator>& allocator_ptr() const noexcept { return state_->allocator; }
  /// The allocator for host tensors made by this context (e.g. copies back from the device).
  Allocator& host_allocator() const noexcept { return *state_->host_allocator; }
  const std::shared_ptr<Allocator>& host_allocator_ptr() const noexcept { return state_->host_allocator; }
  /// The allocator for `device`, which must be this context's device or the host.
  const std::shared_ptr<Allocator>& allocator_for(Device device) const {
    if (device == state_->device) return state_->allocator;
    MIXTAPE_EXPECT(device.is_cpu(), DeviceError, "context on ", state_->device, " cannot allocate on ", device);
    return state_->host_allocator;
  }

  ThreadPool& pool() const noexcept { return *state_->pool; }
  int host_threads() const noexcept { return state_->pool->size(); }

  /// Philox key of this context's random draws.
  std::uint64_t seed() const noexcept { return state_->seed; }
  void set_seed(std::uint64_t seed) noexcept { state_->seed = seed; }
  /// The current Philox offset: the counter base of the next random draw.
  std::uint64_t rng_offset() const noexcept { return state_->rng_offset; }
  void set_rng_offset(std::uint64_t offset) noexcept { state_->rng_offset = offset; }
  /// Reserves `count` counters and returns the first: each draw uses a disjoint counter range, so
  /// its values depend on (seed, offset, index) only, never on the launch shape.
  /// Const like allocator(): ops take the context by const reference and advance the shared state
  /// behind the handle (the offset is part of the stream's state, not of the handle).
  std::uint64_t reserve_rng(std::uint64_t count) const noexcept {
    const std::uint64_t first = state_->rng_offset;
    state_->rng_offset += count;
    return first;
  }

  /// Whether f32 GEMMs may use TF32 (ContextOptions::allow_tf32).
  bool allow_tf32() const noexcept { return state_->options.allow_tf32; }

  /// The stream as an opaque pointer (null for a host context).
  void* stream_handle() const noexcept {
#if defined(MIXTAPE_WITH_CUDA)
    return state_->stream;
#else
    return nullptr;
#endif
  }

#if defined(MIXTAPE_WITH_CUDA)
  cudaStream_t stream() const noexcept { return state_->stream; }
  /// The cuBLASLt handle and its workspace (created on first use).
  cublasLtHandle_t cublaslt() const {
    require_cuda("cublaslt");
    std::call_once(state_->cublas_once, [s = state_.get()] { s->create_cublaslt(); });
    return state_->cublaslt;
  }
  void* gemm_workspace() const {
    (void)cublaslt();
    return state_->workspace;
  }
  std::int64_t gemm_workspace_bytes() const noexcept { return state_->options.gemm_workspace_bytes; }
  /// Pinned staging buffer `i` (0 or 1) of staging_bytes() bytes, allocated on first use.
  void* staging(int i) const {
    std::call_once(state_->staging_once, [s = state_.get()] {
      for (auto& b : s->staging) b = s->pinned.allocate(s->options.staging_bytes, MemoryRole::workspace);
    });
    return state_->staging[i];
  }
  std::int64_t staging_bytes() const noexcept { return state_->options.staging_bytes; }
#endif

  /// Waits until all work queued on this context's stream is done (no-op on the host, whose ops
  /// complete before they return).
  void synchronize() const {
#if defined(MIXTAPE_WITH_CUDA)
    if (is_cuda()) MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(state_->stream));
#endif
  }

  /// Makes this context's device current on the calling thread (CUDA runtime calls follow it).
  void make_current() const {
#if defined(MIXTAPE_WITH_CUDA)
    if (is_cuda()) MIXTAPE_CUDA_CHECK(cudaSetDevice(state_->device.index()));
#endif
  }

 private:
  struct State {
    Device device;
    ContextOptions options;
    std::shared_ptr<Allocator> allocator;
    std::shared_ptr<Allocator> host_allocator;
    std::unique_ptr<ThreadPool> pool;
    std::uint64_t seed = 0;
    std::uint64_t rng_offset = 0;
#if defined(MIXTAPE_WITH_CUDA)
    cudaStream_t stream = nullptr;
    std::once_flag cublas_once, staging_once;
    cublasLtHandle_t cublaslt = nullptr;
    void* workspace = nullptr;
    PinnedAllocator pinned;
    void* staging[2] = {nullptr, nullptr};

    void create_cublaslt() {
      MIXTAPE_CUBLAS_CHECK(cublasLtCreate(&cublaslt));
      workspace = allocator->allocate(options.gemm_workspace_bytes, MemoryRole::workspace, stream);
    }
    ~State() {
      if (!device.is_cuda()) return;
      (void)cudaSetDevice(device.index());
      if (stream) (void)cudaStreamSynchronize(stream);
      for (auto* b : staging) pinned.deallocate(b, options.staging_bytes, MemoryRole::workspace);
      if (workspace) allocator->deallocate(workspace, options.gemm_workspace_bytes, MemoryRole::workspace, stream);
      if (cublaslt) (void)cublasLtDestroy(cublaslt);
      if (stream) {
        (void)cudaStreamSynchronize(stream);
        (void)cudaStreamDestroy(stream);
      }
    }
#endif
  };

  ExecutionContext(Device device, const ContextOptions& options) : state_(std::make_unique<State>()) {
    detail::check_device_usable(device);
    state_->device = device;
    state_->options = options;
    state_->seed = options.seed;
    state_->pool = std::make_unique<ThreadPool>(options.host_threads);
    state_->host_allocator = std::make_shared<HostAllocator>();
#if defined(MIXTAPE_WITH_CUDA)
    if (device.is_cuda()) {
      MIXTAPE_CUDA_CHECK(cudaSetDevice(device.index()));
      MIXTAPE_CUDA_CHECK(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking));
      state_->allocator = std::make_shared<CudaPoolAllocator>(device.index());
      return;
    }
#endif
    state_->allocator = state_->host_allocator;
  }

  void require_cuda(const char* what) const {
    MIXTAPE_EXPECT(is_cuda(), DeviceError, what, ": expected a CUDA context, got one on ", state_->device);
  }

  std::unique_ptr<State> state_;
};

}  // namespace mixtape
