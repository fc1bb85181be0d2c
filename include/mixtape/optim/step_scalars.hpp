/// @file step_scalars.hpp
/// @brief `StepScalars`: the per-step scalars of training (learning rate, Adam step, loss scale,
///        growth tracker, found_inf, clip coefficient, gradient norm, skipped-step counter, a loss)
///        in device memory, with stream-ordered host writes and a pinned readback that a progress
///        bar reads one step late without ever blocking.
///
/// Why on the device: kernels read and write these values during a step (found_inf decides
/// whether the update runs; the scaler's update changes the scale; a schedule sets the learning
/// rate from the iteration), so the host never waits for the GPU inside a step and a whole step
/// can be captured in one CUDA graph (design.md, "Per-step scalars live on the device"). The
/// layout is `kernels::StepScalarValues` (64 bytes, kernels/detail/optimizer_ops.hpp, where each
/// field is documented); for a host context the same struct lives in host memory and every
/// operation completes before it returns.
///
/// **Learning rate.** Two ways, both stream-ordered:
///  - on the device: `kernels::apply_lr_schedule(ctx, scalars, schedule)` evaluates warmup plus
///    constant, linear or cosine decay at the device-side `iteration` and advances it. This is the
///    way for captured graphs: the graph's replay computes each step's lr itself.
///  - from the host: `set_lr(ctx, lr)` copies the value through a pinned slot with
///    cudaMemcpyAsync, ordered with the step's kernels. Eight slots rotate; the host waits only
///    when the stream is eight writes behind. Not for use inside stream capture (the slot ring
///    waits on events); a graph takes its lr from the device-side schedule instead.
///
/// **Readback one step late.** `snapshot(ctx)` at the end of a step queues an async copy into one
/// of two pinned slots plus an event; `read_previous()` returns the newest snapshot whose event
/// has completed (usually the previous step's), never blocking. `read(ctx)` is the blocking form
/// for tests and checkpoints.
///
/// **Across ranks.** found_inf is a float 0/1 at a fixed address (`view().values` +
/// offsetof(found_inf)): a data-parallel step all-reduces those 4 bytes with MAX before the
/// optimizer reads them, so every rank skips the same step.
///
/// @code
///   optim::StepScalars scalars(ctx);                                     // device memory
///   kernels::apply_lr_schedule(ctx, scalars, {.base_lr = 3e-4, .warmup_steps = 50});
///   kernels::adamw_step(ctx, scalars, hyper, {}, group);
///   scalars.snapshot(ctx);
///   if (auto v = scalars.read_previous()) std::printf("step %lld lr %g\n", (long long)v->step, v->lr);
/// @endcode
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>

#include "mixtape/core/allocator.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/optimizer_ops.hpp"

namespace mixtape::optim {

using kernels::LrDecay;
using kernels::LrSchedule;
using kernels::StepScalarsView;
using kernels::StepScalarValues;

/// Owner of one StepScalarValues in the context's device memory (MemoryRole::optimizer_state),
/// plus the pinned host slots for stream-ordered writes and one-step-late reads. Move-only.
class StepScalars {
 public:
  /// Pinned slots for host writes (a write reuses a slot once its copy has run).
  static constexpr int kWriteSlots = 8;
  /// Pinned slots for snapshots.
  static constexpr int kReadSlots = 2;

  /// Allocates the scalars on the context's device and writes `initial` (stream-ordered).
  explicit StepScalars(const ExecutionContext& ctx, const StepScalarValues& initial = {})
      : state_(std::make_unique<State>()) {
    state_->device = ctx.device();
    ctx.make_current();
    state_->storage = std::make_shared<Storage>(ctx.allocator_ptr(), static_cast<std::int64_t>(sizeof(StepScalarValues)),
                                                MemoryRole::optimizer_state, ctx.stream_handle());
#if defined(MIXTAPE_WITH_CUDA)
    if (ctx.is_cuda()) {
      state_->host = static_cast<unsigned char*>(state_->pinned.allocate(kPinnedBytes, MemoryRole::optimizer_state));
      for (auto& e : state_->write_events) MIXTAPE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      for (auto& e : state_->read_events) MIXTAPE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
#endif
    write(ctx, initial);
  }

  StepScalars(StepScalars&&) noexcept = default;
  StepScalars& operator=(StepScalars&&) noexcept = default;
  ~StepScalars() = default;

  /// The values' address (device memory for a CUDA context): what kernels take.
  StepScalarValues* values() const noexcept { return static_cast<StepScalarValues*>(state_->storage->data()); }
  Device device() const noexcept { return state_->device; }
  StepScalarsView view() const noexcept { return StepScalarsView{values(), state_->device}; }
  operator StepScalarsView() const noexcept { return view(); }  // NOLINT: kernels take the view

  /// Writes all values (stream-ordered; not inside stream capture).
  void write(const ExecutionContext& ctx, const StepScalarValues& v) { write_bytes(ctx, 0, &v, sizeof v); }

  /// Writes one field (stream-ordered; not inside stream capture), e.g.
  /// `scalars.set(ctx, &StepScalarValues::loss_scale, 1024.0f)`.
  /// @tparam F  the field's type
  template <class F>
  void set(const ExecutionContext& ctx, F StepScalarValues::*field, F value) {
    const StepScalarValues probe{};
    const auto offset = static_cast<std::size_t>(reinterpret_cast<const unsigned char*>(&(probe.*field)) -
                                                 reinterpret_cast<const unsigned char*>(&probe));
    write_bytes(ctx, offset, &value, sizeof(F));
  }

  /// The learning rate of the next update, from the host (see the file comment for the device way).
  void set_lr(const ExecutionContext& ctx, float lr) { set(ctx, &StepScalarValues::lr, lr); }

  /// found_inf = 0 (a stream-ordered memset: capture-safe). GradScaler's unscale clears it itself;
  /// clear it at the start of a step when found_inf is set by the norm alone (no scaler).
  void clear_found_inf(const ExecutionContext& ctx) {
    expect_context("clear_found_inf", ctx);
    unsigned char* p = reinterpret_cast<unsigned char*>(values()) + offsetof(StepScalarValues, found_inf);
#if defined(MIXTAPE_WITH_CUDA)
    if (ctx.is_cuda()) {
      MIXTAPE_CUDA_CHECK(cudaMemsetAsync(p, 0, sizeof(float), ctx.stream()));
      return;
    }
#endif
    std::memset(p, 0, sizeof(float));
  }

  /// loss = the single element of `loss` (a device-to-device copy: capture-safe), for the progress bar.
  void record_loss(const ExecutionContext& ctx, const Tensor<float>& loss) {
    expect_context("record_loss", ctx);
    MIXTAPE_EXPECT(loss.defined() && loss.numel() == 1, ShapeError, "record_loss: expected a loss of one element, got shape ",
                   loss.shape());
    MIXTAPE_EXPECT(loss.device() == state_->device, DeviceError, "record_loss: expected the loss on ", state_->device,
                   ", got it on ", loss.device());
    unsigned char* p = reinterpret_cast<unsigned char*>(values()) + offsetof(StepScalarValues, loss);
#if defined(MIXTAPE_WITH_CUDA)
    if (ctx.is_cuda()) {
      MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(p, loss.data(), sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream()));
      return;
    }
#endif
    std::memcpy(p, loss.data(), sizeof(float));
  }

  /// The current values, waiting for the stream (tests, checkpoints; never inside a step).
  StepScalarValues read(const ExecutionContext& ctx) const {
    expect_context("read", ctx);
    StepScalarValues v;
#if defined(MIXTAPE_WITH_CUDA)
    if (ctx.is_cuda()) {
      unsigned char* slot = state_->host + (kWriteSlots + kReadSlots) * sizeof(StepScalarValues);
      MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(slot, values(), sizeof v, cudaMemcpyDeviceToHost, ctx.stream()));
      MIXTAPE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
      std::memcpy(&v, slot, sizeof v);
      return v;
    }
#endif
    std::memcpy(&v, values(), sizeof v);
    return v;
  }

  /// Queues a copy of the current values into a pinned slot (end of a step; outside capture).
  void snapshot(const ExecutionContext& ctx) {
    expect_context("snapshot", ctx);
    const std::int64_t seq = state_->snapshots++;
#if defined(MIXTAPE_WITH_CUDA)
    if (ctx.is_cuda()) {
      const int k = static_cast<int>(seq % kReadSlots);
      unsigned char* slot = state_->host + (kWriteSlots + k) * sizeof(StepScalarValues);
      MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(slot, values(), sizeof(StepScalarValues), cudaMemcpyDeviceToHost, ctx.stream()));
      MIXTAPE_CUDA_CHECK(cudaEventRecord(state_->read_events[k], ctx.stream()));
      state_->read_seq[k] = seq;
      return;
    }
#endif
    StepScalarValues v;
    std::memcpy(&v, values(), sizeof v);
    state_->last = v;
    state_->last_seq = seq;
  }

  /// The newest snapshot whose copy has completed (empty before the first one completes). Never
  /// blocks: called during step N + 1 it returns step N's snapshot when that copy is done, else
  /// the one before.
  std::optional<StepScalarValues> read_previous() {
#if defined(MIXTAPE_WITH_CUDA)
    if (state_->device.is_cuda()) {
      int order[kReadSlots] = {0, 1};
      if (state_->read_seq[1] > state_->read_seq[0]) std::swap(order[0], order[1]);
      for (int k : order) {
        if (state_->read_seq[k] <= state_->last_seq) continue;
        const cudaError_t status = cudaEventQuery(state_->read_events[k]);
        if (status == cudaErrorNotReady) continue;
        MIXTAPE_CUDA_CHECK(status);
        StepScalarValues v;
        std::memcpy(&v, state_->host + (kWriteSlots + k) * sizeof(StepScalarValues), sizeof v);
        state_->last = v;
        state_->last_seq = state_->read_seq[k];
        break;
      }
    }
#endif
    return state_->last;
  }

 private:
  static constexpr std::int64_t kPinnedBytes =
      static_cast<std::int64_t>((kWriteSlots + kReadSlots + 1) * sizeof(StepScalarValues));

  struct State {
    Device device;
    std::shared_ptr<Storage> storage;
    std::optional<StepScalarValues> last;
    std::int64_t last_seq = -1;
    std::int64_t snapshots = 0;
#if defined(MIXTAPE_WITH_CUDA)
    PinnedAllocator pinned;
    unsigned char* host = nullptr;  // write ring, snapshot slots, blocking-read slot
    cudaEvent_t write_events[kWriteSlots] = {};
    bool write_used[kWriteSlots] = {};
    int next_write = 0;
    cudaEvent_t read_events[kReadSlots] = {};
    std::int64_t read_seq[kReadSlots] = {-1, -1};

    State() = default;
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State() {
      // Pending copies read or write the pinned slots: wait for them before freeing.
      for (auto& e : write_events)
        if (e) (void)cudaEventSynchronize(e), (void)cudaEventDestroy(e);
      for (auto& e : read_events)
        if (e) (void)cudaEventSynchronize(e), (void)cudaEventDestroy(e);
      if (host) pinned.deallocate(host, kPinnedBytes, MemoryRole::optimizer_state);
    }
#endif
  };

  void expect_context(const char* op, const ExecutionContext& ctx) const {
    MIXTAPE_EXPECT(ctx.device() == state_->device, DeviceError, "StepScalars::", op,
                   ": expected a context on the scalars' device ", state_->device, ", got one on ", ctx.device());
  }

  void write_bytes(const ExecutionContext& ctx, std::size_t offset, const void* src, std::size_t bytes) {
    expect_context("write", ctx);
    unsigned char* dst = reinterpret_cast<unsigned char*>(values()) + offset;
#if defined(MIXTAPE_WITH_CUDA)
    if (ctx.is_cuda()) {
      State& s = *state_;
      const int k = s.next_write;
      s.next_write = (k + 1) % kWriteSlots;
      if (s.write_used[k]) MIXTAPE_CUDA_CHECK(cudaEventSynchronize(s.write_events[k]));  // the slot's last copy ran
      unsigned char* slot = s.host + k * sizeof(StepScalarValues);
      std::memcpy(slot, src, bytes);
      MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, ctx.stream()));
      MIXTAPE_CUDA_CHECK(cudaEventRecord(s.write_events[k], ctx.stream()));
      s.write_used[k] = true;
      return;
    }
#endif
    std::memcpy(dst, src, bytes);
  }

  std::unique_ptr<State> state_;
};

}  // namespace mixtape::optim
