/// @file clip.hpp
/// @brief `clip_grad_norm`: torch.nn.utils.clip_grad_norm_ over all gradient groups, with the
///        norm and the clip coefficient computed on the device into the step scalars.
///
/// The global L2 norm of every gradient (one reduction over all dtype groups: per-block partial
/// sums of squares in double, combined in a fixed order, so the result is reproducible run to run;
/// NaN and inf propagate), then clip_coef = min(1, max_norm / (norm + 1e-6)) in float, as torch
/// computes it (a NaN norm gives a NaN coefficient, torch's clamp). By default the gradients are
/// then multiplied by the coefficient in place (torch); with `in_place = false` they are left as
/// they are and the update kernels multiply by it (`GradFactors{.clip = true}`), saving a pass.
///
/// Only the 2-norm (torch's default norm_type) is provided. torch's error_if_nonfinite has no
/// equivalent (it would need a host sync); `NonFiniteNorm::skip_step` instead sets found_inf, so
/// the optimizer skips the step on the device (clear it with StepScalars::clear_found_inf at the
/// start of a step that has no GradScaler).
///
/// @code
///   optim::clip_grad_norm(ctx, scalars, grads, {.max_norm = 1.0});   // torch's clip_grad_norm_(ps, 1.0)
/// @endcode
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>

#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/optimizer.hpp"
#include "mixtape/optim/step_scalars.hpp"

namespace mixtape::optim {

/// What a non-finite norm does.
enum class NonFiniteNorm : std::uint8_t {
  ignore,     ///< nothing (torch's default): the coefficient is NaN or 0 and multiplies the gradients
  skip_step,  ///< found_inf = 1: the optimizer skips the step and counts it
};

/// Options of clip_grad_norm.
struct ClipOptions {
  double max_norm = 1.0;
  /// Multiply the gradients by the coefficient now (torch); false: leave it to the update kernels.
  bool in_place = true;
  /// The gradients still carry the loss scale (UnscaleMode::deferred): the norm multiplies each
  /// element by inv_scale first. In place, the gradients stay scaled (times clip_coef) and the
  /// update still needs GradFactors{.inv_scale = true}.
  bool grads_scaled = false;
  NonFiniteNorm nonfinite = NonFiniteNorm::ignore;
};

MIXTAPE_BACKEND_BEGIN

/// grad_norm and clip_coef of all gradients into the step scalars, then (in place) g *= clip_coef.
/// @throws DTypeError for non-floating gradients; ShapeError for strided ones; DeviceError for
///         gradients or scalars off the context's device; ValueError for max_norm <= 0 or not finite
inline void clip_grad_norm(const ExecutionContext& ctx, const StepScalars& scalars, std::span<const TensorRef> grads,
                           const ClipOptions& options = {}) {
  kernels::grad_norm(ctx, scalars, grads, options.max_norm, options.grads_scaled,
                     options.nonfinite == NonFiniteNorm::skip_step);
  if (options.in_place) kernels::scale_by_clip_coef(ctx, scalars, grads);
}
inline void clip_grad_norm(const ExecutionContext& ctx, const StepScalars& scalars, std::initializer_list<TensorRef> grads,
                           const ClipOptions& options = {}) {
  clip_grad_norm(ctx, scalars, std::span<const TensorRef>(grads.begin(), grads.size()), options);
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::optim
