/// @file grad_scaler.hpp
/// @brief `GradScaler`: torch.amp.GradScaler's dynamic loss scaling with its state on the device
///        (scale, growth tracker, found_inf and inv_scale in the step scalars): `scale_loss`,
///        `unscale_grads` (torch's unscale_), `update_scale` (torch's update), all stream-ordered
///        with no host sync, and the scale / tracker readable for checkpoints.
///
/// Semantics (precision-reference.md section 6, exact):
///  - defaults init_scale 2^16, growth_factor 2, backoff_factor 0.5, growth_interval 2000;
///  - `scale_loss`: loss * scale in float;
///  - `unscale_grads`: inv = float(1 / double(scale)); found_inf = 0; then per gradient buffer,
///    found_inf = 1 if an element is inf or NaN, and g *= inv; f16 gradients are refused with
///    torch's "Attempting to unscale FP16 gradients." (a DTypeError) unless the options allow them
///    (a policy that states f16 gradients with dynamic scaling); a second call before
///    `update_scale` is a ValueError ("unscale_() has already been called ...");
///  - the optimizer skips its update when found_inf is set (the update kernels read it) and counts
///    the skip in `skipped`;
///  - `update_scale`: torch's _amp_update_scale_ kernel on the device (backoff on found_inf, grow
///    after growth_interval successful steps, never to inf);
///  - disabled: scale_loss copies, unscale_grads and update_scale do nothing.
///
/// The class holds the options and the host-side "unscaled since the last update" flag; the
/// operations that launch kernels are free functions in the backend namespace (a `.cpp` unit and a
/// `.cu` unit each get their own, docs/backends.md), so one GradScaler can be used from both.
///
/// Deferred unscaling (the llm.c way): `unscale_grads(ctx, scaler, grads, UnscaleMode::deferred)`
/// only computes inv_scale and found_inf; the gradient norm then takes `grads_scaled` and the
/// update kernels `GradFactors{.inv_scale = true}`, saving a read and a write of every gradient.
/// Both round g * inv_scale to the gradient type as the in-place unscale stores it, so the norm and
/// the update have the in-place path's bits (TrainStep always defers).
///
/// @code
///   optim::GradScaler scaler(ctx, scalars);                 // 2^16, 2.0, 0.5, 2000
///   optim::scale_loss(ctx, scaler, loss, loss);             // backward from the scaled loss
///   optim::unscale_grads(ctx, scaler, grads);
///   optim::clip_grad_norm(ctx, scalars, grads, {.max_norm = 1.0});
///   kernels::adamw_step(ctx, scalars, hyper, {}, group);    // skipped when found_inf
///   optim::update_scale(ctx, scaler);
/// @endcode
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/optimizer.hpp"
#include "mixtape/optim/step_scalars.hpp"

namespace mixtape::optim {

/// torch.amp.GradScaler's constructor arguments, plus whether f16 gradients may be unscaled.
struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  std::int32_t growth_interval = 2000;
  bool enabled = true;
  /// torch refuses to unscale f16 gradients; a policy that states f16 gradients with dynamic
  /// scaling sets this.
  bool allow_f16_grads = false;
};

/// What a checkpoint stores (torch's GradScaler.state_dict()).
struct GradScalerState {
  float scale = 65536.0f;
  std::int32_t growth_tracker = 0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  std::int32_t growth_interval = 2000;
};

/// How unscale_grads treats the gradients.
enum class UnscaleMode : std::uint8_t {
  in_place,  ///< g *= inv_scale (torch)
  deferred,  ///< check only; the norm and the update multiply by inv_scale (GradFactors)
};

/// Dynamic loss scaling over a StepScalars (which must outlive it).
class GradScaler {
 public:
  /// Writes init_scale and a zero growth tracker into `scalars` (stream-ordered).
  /// @throws ValueError for growth_factor <= 1, backoff_factor outside (0, 1), growth_interval < 1
  ///         or an init_scale that is not positive and finite
  GradScaler(const ExecutionContext& ctx, StepScalars& scalars, const GradScalerOptions& options = {})
      : scalars_(&scalars), options_(options) {
    MIXTAPE_EXPECT(options.growth_factor > 1.0, ValueError, "GradScaler: the growth factor must be > 1.0, got ",
                   options.growth_factor);
    MIXTAPE_EXPECT(options.backoff_factor > 0.0 && options.backoff_factor < 1.0, ValueError,
                   "GradScaler: the backoff factor must be in (0, 1), got ", options.backoff_factor);
    MIXTAPE_EXPECT(options.growth_interval >= 1, ValueError, "GradScaler: the growth interval must be >= 1, got ",
                   options.growth_interval);
    MIXTAPE_EXPECT(options.init_scale > 0.0 && options.init_scale <= std::numeric_limits<float>::max(), ValueError,
                   "GradScaler: the initial scale must be positive and finite in float, got ", options.init_scale);
    if (options.enabled) {
      scalars.set(ctx, &StepScalarValues::loss_scale, static_cast<float>(options.init_scale));
      scalars.set(ctx, &StepScalarValues::growth_tracker, std::int32_t{0});
    }
  }

  bool enabled() const noexcept { return options_.enabled; }
  const GradScalerOptions& options() const noexcept { return options_; }
  StepScalars& scalars() const noexcept { return *scalars_; }
  /// Whether unscale_grads ran since the last update_scale.
  bool unscaled() const noexcept { return unscaled_; }

  /// The scale, tracker and options (waits for the stream: checkpoints, logging).
  GradScalerState state(const ExecutionContext& ctx) const {
    const StepScalarValues v = scalars_->read(ctx);
    return GradScalerState{v.loss_scale, v.growth_tracker, options_.growth_factor, options_.backoff_factor,
                           options_.growth_interval};
  }

  /// Restores a checkpoint's scale, tracker and factors (stream-ordered).
  void load_state(const ExecutionContext& ctx, const GradScalerState& st) {
    MIXTAPE_EXPECT(st.scale > 0.0f && st.scale <= std::numeric_limits<float>::max(), ValueError,
                   "GradScaler::load_state: expected a positive finite scale, got ", st.scale);
    options_.growth_factor = st.growth_factor;
    options_.backoff_factor = st.backoff_factor;
    options_.growth_interval = st.growth_interval;
    scalars_->set(ctx, &StepScalarValues::loss_scale, st.scale);
    scalars_->set(ctx, &StepScalarValues::growth_tracker, st.growth_tracker);
  }

  /// Bookkeeping of unscale_grads: throws ValueError when called twice before an update.
  void mark_unscaled() {
    MIXTAPE_EXPECT(!unscaled_, ValueError,
                   "unscale_() has already been called on this optimizer since the last update(): expected one "
                   "unscale_grads per step, got a second");
    unscaled_ = true;
  }
  /// Bookkeeping of update_scale.
  void mark_updated() noexcept { unscaled_ = false; }

 private:
  StepScalars* scalars_;
  GradScalerOptions options_;
  bool unscaled_ = false;
};

MIXTAPE_BACKEND_BEGIN

/// out = loss * scale (float math; double for f64), rounded to T; a copy when disabled. `out` may
/// be `loss`.
/// @tparam T  the loss's floating element type
template <kernels::FloatElement T>
void scale_loss(const ExecutionContext& ctx, const GradScaler& scaler, const Tensor<T>& loss, const Tensor<T>& out) {
  if (!scaler.enabled()) {
    if (!(out.defined() && loss.defined() && out.storage() == loss.storage() && out.offset() == loss.offset()))
      kernels::copy(ctx, loss, out);
    return;
  }
  kernels::scale_by_loss_scale(ctx, scaler.scalars(), loss, out);
}

/// torch's GradScaler.unscale_: inv_scale and a fresh found_inf on the device, then every
/// gradient checked (and, in place, multiplied by inv_scale).
/// @throws DTypeError for f16 gradients unless allowed ("Attempting to unscale FP16 gradients.")
///         or non-floating ones; ValueError when already called since the last update_scale.
inline void unscale_grads(const ExecutionContext& ctx, GradScaler& scaler, std::span<const TensorRef> grads,
                          UnscaleMode mode = UnscaleMode::in_place) {
  if (!scaler.enabled()) return;
  for (std::size_t k = 0; k < grads.size(); ++k) {
    MIXTAPE_EXPECT(scaler.options().allow_f16_grads || grads[k].dtype() != DType::f16, DTypeError,
                   "Attempting to unscale FP16 gradients. (expected f32, bf16 or f64 gradients, got f16 for gradient ",
                   k, "; a policy stating f16 gradients with dynamic scaling sets allow_f16_grads)");
  }
  kernels::detail::expect_scalars("unscale_grads", ctx, scaler.scalars());
  kernels::detail::expect_grads("unscale_grads", ctx, grads);
  scaler.mark_unscaled();
  kernels::begin_unscale(ctx, scaler.scalars());
  kernels::unscale_and_check(ctx, scaler.scalars(), grads, mode == UnscaleMode::in_place);
}
inline void unscale_grads(const ExecutionContext& ctx, GradScaler& scaler, std::initializer_list<TensorRef> grads,
                          UnscaleMode mode = UnscaleMode::in_place) {
  unscale_grads(ctx, scaler, std::span<const TensorRef>(grads.begin(), grads.size()), mode);
}

/// torch's GradScaler.update(): the scale and growth tracker from found_inf, on the device.
inline void update_scale(const ExecutionContext& ctx, GradScaler& scaler) {
  if (!scaler.enabled()) return;
  const GradScalerOptions& o = scaler.options();
  kernels::update_loss_scale(ctx, scaler.scalars(), o.growth_factor, o.backoff_factor, o.growth_interval);
  scaler.mark_updated();
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::optim
