/// @file cuda_graph.hpp
/// @brief `CudaGraph`: the work a callable enqueues on a context's stream, captured once into a CUDA
///        graph and replayed with one launch (no per-kernel launch cost, no host work per replay).
///
/// What can be captured is what a training step of this library enqueues: kernels, cuBLASLt
/// calls, stream-ordered pool allocations (which become graph memory nodes, owned by the graph),
/// device-to-device and pinned copies. What cannot: anything that waits for the device
/// (`synchronize`, `item`, a blocking read of StepScalars), `cudaMalloc`, copies from pageable
/// host memory. Such a call fails inside the capture; `capture` then ends the capture, discards
/// the partial graph and throws CudaError naming the rule, so the stream is usable again.
///
/// A replay repeats exactly what the capture enqueued: the same kernels on the same addresses with
/// the same host-side arguments. Values that change from step to step must therefore live on the
/// device (learning rate, step count, loss scale: optim/step_scalars.hpp) and inputs must be
/// copied into the same tensors before each launch. cuBLASLt algorithms come from the process-wide
/// cache (blas/detail/gemm_cublaslt.hpp), so a graph captured after one eager run of the same work
/// replays the algorithms eager mode runs.
///
/// @code
///   CudaGraph graph;
///   graph.capture(ctx, [&] { step(ctx); });   // records, runs nothing
///   for (...) { copy(ctx, next_batch, x); graph.launch(ctx); }
/// @endcode
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"

#if defined(MIXTAPE_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace mixtape {

/// A captured, instantiated CUDA graph. Move-only; empty until `capture` succeeds.
class CudaGraph {
 public:
  CudaGraph() = default;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  CudaGraph(CudaGraph&& other) noexcept { swap(other); }
  CudaGraph& operator=(CudaGraph&& other) noexcept {
    CudaGraph(std::move(other)).swap(*this);
    return *this;
  }
  ~CudaGraph() { reset(); }

  /// Whether a graph has been captured.
  bool empty() const noexcept {
#if defined(MIXTAPE_WITH_CUDA)
    return exec_ == nullptr;
#else
    return true;
#endif
  }

  /// Kernel, copy, memset and memory nodes of the captured graph (0 when empty).
  std::size_t node_count() const noexcept { return nodes_; }

  /// Records the work `enqueue()` puts on ctx's stream (running none of it) and instantiates it,
  /// replacing any earlier graph.
  /// @throws BackendError for a host context; CudaError when the work cannot be captured (the
  ///         capture is ended and discarded first), or whatever `enqueue` throws
  template <class Enqueue>
  void capture(const ExecutionContext& ctx, Enqueue&& enqueue) {
    MIXTAPE_EXPECT(ctx.is_cuda(), BackendError, "CudaGraph::capture: expected a CUDA context, got one on ",
                   ctx.device());
#if defined(MIXTAPE_WITH_CUDA)
    reset();
    cudaStream_t stream = ctx.stream();
    MIXTAPE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      std::forward<Enqueue>(enqueue)();
    } catch (const std::exception& e) {
      // Leave capture mode whatever happened, so the stream takes work again.
      (void)cudaStreamEndCapture(stream, &graph);
      if (graph != nullptr) (void)cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      const auto* cuda = dynamic_cast<const CudaError*>(&e);
      throw CudaError(detail::concat("CudaGraph::capture: the captured work failed: ", e.what(),
                                     " (inside a capture nothing may wait for the device, call cudaMalloc or copy "
                                     "from pageable host memory)"),
                      cuda != nullptr ? cuda->code() : static_cast<int>(cudaErrorStreamCaptureInvalidated), __FILE__,
                      __LINE__);
    }
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    if (end != cudaSuccess) {
      if (graph != nullptr) (void)cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      throw CudaError(detail::concat("CudaGraph::capture: the capture was invalidated (", cudaGetErrorString(end),
                                     "): the work called something that cannot be captured"),
                      static_cast<int>(end), __FILE__, __LINE__);
    }
    graph_ = graph;
    MIXTAPE_CUDA_CHECK(cudaGraphGetNodes(graph_, nullptr, &nodes_));
    MIXTAPE_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
    MIXTAPE_CUDA_CHECK(cudaGraphUpload(exec_, stream));
#else
    (void)enqueue;
#endif
  }

  /// Enqueues one replay on ctx's stream (stream-ordered with the work around it).
  /// @throws ValueError when nothing was captured; BackendError for a host context
  void launch(const ExecutionContext& ctx) const {
    MIXTAPE_EXPECT(!empty(), ValueError, "CudaGraph::launch: nothing was captured");
    MIXTAPE_EXPECT(ctx.is_cuda(), BackendError, "CudaGraph::launch: expected a CUDA context, got one on ", ctx.device());
#if defined(MIXTAPE_WITH_CUDA)
    MIXTAPE_CUDA_CHECK(cudaGraphLaunch(exec_, ctx.stream()));
#endif
  }

  /// Destroys the graph (a replay in flight completes first: the driver defers the release).
  void reset() noexcept {
#if defined(MIXTAPE_WITH_CUDA)
    if (exec_ != nullptr) (void)cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) (void)cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
#endif
    nodes_ = 0;
  }

  void swap(CudaGraph& other) noexcept {
#if defined(MIXTAPE_WITH_CUDA)
    std::swap(graph_, other.graph_);
    std::swap(exec_, other.exec_);
#endif
    std::swap(nodes_, other.nodes_);
  }

 private:
#if defined(MIXTAPE_WITH_CUDA)
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
#endif
  std::size_t nodes_ = 0;
};

}  // namespace mixtape
