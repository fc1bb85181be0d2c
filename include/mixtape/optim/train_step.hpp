/// @file train_step.hpp
/// @brief `TrainStep<P, Optimizer>`: one training step in torch's order, with no host
///        synchronisation: device-side lr schedule, forward and backward (micro-batches accumulate,
///        the loss seeded with the policy's loss scale), GradScaler unscale, global-norm clipping,
///        the optimizer update (skipped and counted on a non-finite gradient), the scale update.
///
/// The policy decides what a Lightning user gets for it: a dynamic GradScaler under 16-mixed (and
/// any policy stating `LossScaling::dynamic`), none otherwise. What the step needs per step lives in
/// the StepScalars (lr, step, loss scale, found_inf, clip coefficient, norm, skipped count, loss);
/// read it one step late with `scalars().read_previous()` (never blocks) or `read(ctx)` (blocks).
///
/// **CUDA graphs.** With `cuda_graph` set on a CUDA context, the first step runs eagerly (it warms
/// the cuBLASLt algorithm cache and every lazily created buffer), the second is captured into one
/// CUDA graph (core/cuda_graph.hpp) and every step from then on is one graph launch: no kernel
/// launches and no host work per step beyond copying the next batch. The forward must then read
/// the same input tensors each step (copy new data into them before calling) with the same shapes,
/// and the micro-batch count must stay the same; everything that changes between steps (lr, step,
/// loss scale, found_inf) already lives on the device. After the capture the pool's cached blocks
/// are released (the graph owns the memory its step allocates), so eager work and the graph do not
/// both hold a step's activations.
///
/// @code
///   optim::AdamW<P> opt(ctx, store, {.beta1 = 0.9, .beta2 = 0.95, .weight_decay = 0.1});
///   optim::TrainStep<P, optim::AdamW<P>> step(ctx, store, opt, {.schedule = {.base_lr = 1e-3, .warmup_steps = 50}});
///   for (...) step(ctx, tape, [&](autograd::Tape& t, int) { return gpt.loss(t, x, y); });
/// @endcode
#pragma once

#include <type_traits>

#include "mixtape/autograd/var.hpp"
#include "mixtape/core/cuda_graph.hpp"
#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/nn/parameter.hpp"
#include "mixtape/optim/clip.hpp"
#include "mixtape/optim/grad_scaler.hpp"
#include "mixtape/optim/step_scalars.hpp"

namespace mixtape::optim {

/// Options of a TrainStep.
struct TrainStepOptions {
  LrSchedule schedule{};      ///< evaluated on the device each step (base_lr, warmup, decay)
  double clip_norm = 1.0;     ///< global gradient-norm clip (torch's clip_grad_norm_); <= 0: none
  GradScalerOptions scaler{}; ///< used when the policy scales the loss dynamically
  bool cuda_graph = false;    ///< CUDA: replay the step as one captured graph from the second step on
};

MIXTAPE_BACKEND_BEGIN

/// @tparam P          the model's precision policy (decides the loss scaling)
/// @tparam Optimizer  an optimizer with `grads()`, `options()` and `step(ctx, scalars,
///                    extra_factors)` (AdamW, Sgd: StoreOptimizer)
template <PrecisionPolicy P, class Optimizer>
class TrainStep {
 public:
  /// Whether the policy scales the loss (a GradScaler runs).
  static constexpr bool kScaled = policy_traits<P>::loss_scaling == LossScaling::dynamic;

  /// `store` and `optimizer` must outlive the step.
  TrainStep(const ExecutionContext& ctx, nn::ParameterStore& store, Optimizer& optimizer,
            const TrainStepOptions& options = {})
      : store_(&store),
        optimizer_(&optimizer),
        options_(options),
        scalars_(ctx, {}),
        scaler_(ctx, scalars_, with_enabled(options.scaler)),
        loss32_(Tensor<float>::empty(ctx, Shape{1}, MemoryRole::workspace)) {}

  /// Runs one step: `forward(tape, i)` for each micro-batch i in [0, micro_batches) returns the
  /// micro-batch's mean loss (a one-element Var); gradients of all micro-batches accumulate, each
  /// weighted 1 / micro_batches, then the update runs once.
  /// @throws ValueError for micro_batches < 1, or a forward whose loss does not require grad
  template <class Forward>
  void operator()(const ExecutionContext& ctx, autograd::Tape& tape, Forward&& forward, int micro_batches = 1) {
    MIXTAPE_EXPECT(micro_batches >= 1, ValueError, "TrainStep: expected at least one micro-batch, got ", micro_batches);
    if (!options_.cuda_graph || !ctx.is_cuda() || eager_steps_ == 0) {
      enqueue(ctx, tape, forward, micro_batches);
      ++eager_steps_;
    } else {
      if (graph_.empty()) {
        graph_micro_batches_ = micro_batches;
        graph_.capture(ctx, [&] { enqueue(ctx, tape, forward, micro_batches); });
        release_pool_cache(ctx);
      }
      MIXTAPE_EXPECT(micro_batches == graph_micro_batches_, ValueError, "TrainStep: the captured step runs ",
                     graph_micro_batches_, " micro-batches, this call asks for ", micro_batches);
      graph_.launch(ctx);
    }
    scalars_.snapshot(ctx);
  }

  /// Whether steps replay a captured CUDA graph now.
  bool graphed() const noexcept { return !graph_.empty(); }
  /// Nodes of the captured step (0 before the capture).
  std::size_t graph_nodes() const noexcept { return graph_.node_count(); }

  StepScalars& scalars() noexcept { return scalars_; }
  const StepScalars& scalars() const noexcept { return scalars_; }
  GradScaler& scaler() noexcept { return scaler_; }
  const TrainStepOptions& options() const noexcept { return options_; }

 private:
  /// One step's work, enqueued on ctx's stream; nothing in it waits for the device, so it can be
  /// captured.
  template <class Forward>
  void enqueue(const ExecutionContext& ctx, autograd::Tape& tape, Forward& forward, int micro_batches) {
    kernels::apply_lr_schedule(ctx, scalars_, options_.schedule);
    for (int i = 0; i < micro_batches; ++i) {
      const auto loss = forward(tape, i);
      using L = typename std::remove_cvref_t<decltype(loss)>::element_type;
      auto seed = Tensor<L>::empty(ctx, Shape{1}, MemoryRole::workspace);
      kernels::fill(ctx, seed, 1.0 / micro_batches);
      if constexpr (kScaled) scale_loss(ctx, scaler_, seed, seed);
      autograd::backward(tape, loss, seed);
      if (i == micro_batches - 1) kernels::convert(ctx, loss.value(), loss32_);
      tape.clear();
    }
    zero_untouched_grads(ctx);
    const std::vector<TensorRef> grads = optimizer_->grads();
    // GradScaler's unscale and the clip are deferred: the unscale only checks for inf / NaN, and
    // the norm and the update multiply each gradient by inv_scale and clip_coef as they read it,
    // rounding each product as the in-place passes would store it (GradFactors), so the bits are
    // the in-place passes' without a read and write of every gradient for each (GPT-2 small: 0.36 ms
    // of an H100 step apiece). zero_grad below drops the gradients, so nothing reads them raw.
    if constexpr (kScaled) unscale_grads(ctx, scaler_, grads, UnscaleMode::deferred);
    const bool clip = options_.clip_norm > 0;
    if (clip) {
      clip_grad_norm(ctx, scalars_, grads,
                     ClipOptions{.max_norm = options_.clip_norm, .in_place = false, .grads_scaled = kScaled});
    }
    optimizer_->step(ctx, scalars_, kernels::GradFactors{.inv_scale = kScaled, .clip = clip});
    if constexpr (kScaled) update_scale(ctx, scaler_);
    store_->zero_grad();
    scalars_.record_loss(ctx, loss32_);
  }

  /// The eager steps' freed blocks stay cached in the stream-ordered pool; the graph allocates its
  /// own, so the cache is returned to the device once the graph exists.
  static void release_pool_cache(const ExecutionContext& ctx) {
#if defined(MIXTAPE_WITH_CUDA)
    ctx.synchronize();
    if (auto* pool = dynamic_cast<CudaPoolAllocator*>(&ctx.allocator()))
      MIXTAPE_CUDA_CHECK(cudaMemPoolTrimTo(pool->pool(), 0));
#else
    (void)ctx;
#endif
  }

  static GradScalerOptions with_enabled(GradScalerOptions o) {
    o.enabled = kScaled;
    // A policy that states f16 gradients with dynamic scaling has chosen to unscale them.
    o.allow_f16_grads = o.allow_f16_grads || std::is_same_v<typename policy_traits<P>::grad_type, f16>;
    return o;
  }

  /// A trainable parameter the loss did not reach has no gradient this step, but its slice of the
  /// flat buffer still holds the previous step's values: it is zeroed rather than applied again.
  /// (torch leaves such a gradient None and skips the parameter; here its moments still decay.)
  void zero_untouched_grads(const ExecutionContext& ctx) {
    for (std::size_t i = 0; i < store_->size(); ++i) {
      nn::Parameter& p = (*store_)[i];
      if (!p.frozen() && !p.has_grad()) zero_bytes(ctx, p.view(nn::ParamRole::grad));
    }
  }

  nn::ParameterStore* store_;
  Optimizer* optimizer_;
  TrainStepOptions options_;
  StepScalars scalars_;
  GradScaler scaler_;
  Tensor<float> loss32_;
  CudaGraph graph_;
  std::int64_t eager_steps_ = 0;
  int graph_micro_batches_ = 0;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::optim
