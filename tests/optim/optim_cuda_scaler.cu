// CUDA instantiations of the scaler, clip, norm and schedule operations the GPU tests call (see
// optim_cuda_helpers.hpp).
#include "optim_cuda_helpers.hpp"

namespace ocuda {

void unscale_grads(const ExecutionContext& ctx, optim::GradScaler& scaler, std::span<const TensorRef> grads,
                   optim::UnscaleMode mode) {
  optim::unscale_grads(ctx, scaler, grads, mode);
}
void update_scale(const ExecutionContext& ctx, optim::GradScaler& scaler) { optim::update_scale(ctx, scaler); }
void clip_grad_norm(const ExecutionContext& ctx, const optim::StepScalars& s, std::span<const TensorRef> grads,
                    const optim::ClipOptions& options) {
  optim::clip_grad_norm(ctx, s, grads, options);
}
void scale_by_clip_coef(const ExecutionContext& ctx, const kernels::StepScalarsView& s, std::span<const TensorRef> grads) {
  kernels::scale_by_clip_coef(ctx, s, grads);
}
void apply_lr_schedule(const ExecutionContext& ctx, const kernels::StepScalarsView& s, const kernels::LrSchedule& schedule) {
  kernels::apply_lr_schedule(ctx, s, schedule);
}
void scale_loss(const ExecutionContext& ctx, const optim::GradScaler& scaler, const Tensor<float>& loss,
                const Tensor<float>& out) {
  optim::scale_loss(ctx, scaler, loss, out);
}

}  // namespace ocuda
