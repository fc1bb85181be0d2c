// The plain interface between the GPU test bodies (optim_cuda.cpp, compiled by the host compiler:
// its kernels:: and optim:: calls are the host backend, the reference) and the CUDA backend
// (optim_cuda_update.cu, optim_cuda_scaler.cu, compiled by nvcc, where these are defined and
// explicitly instantiated).
#pragma once

#include <span>

#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/optimizer.hpp"
#include "mixtape/optim/clip.hpp"
#include "mixtape/optim/grad_scaler.hpp"
#include "mixtape/optim/step_scalars.hpp"

namespace ocuda {

using namespace mixtape;

// optim_cuda_update.cu
template <class U, class P, class G, class M1, class M2, class W, class C>
void adamw_step(const ExecutionContext& ctx, const kernels::StepScalarsView& s, const kernels::AdamWHyper& h,
                const kernels::UpdateOptions& o, const kernels::AdamWGroup<P, G, M1, M2, W, C>& group);
template <class U, class P, class G, class M1, class W, class C>
void sgd_step(const ExecutionContext& ctx, const kernels::StepScalarsView& s, const kernels::SgdHyper& h,
              const kernels::UpdateOptions& o, const kernels::SgdGroup<P, G, M1, W, C>& group);

// optim_cuda_scaler.cu
void unscale_grads(const ExecutionContext& ctx, optim::GradScaler& scaler, std::span<const TensorRef> grads,
                   optim::UnscaleMode mode);
void update_scale(const ExecutionContext& ctx, optim::GradScaler& scaler);
void clip_grad_norm(const ExecutionContext& ctx, const optim::StepScalars& s, std::span<const TensorRef> grads,
                    const optim::ClipOptions& options);
void scale_by_clip_coef(const ExecutionContext& ctx, const kernels::StepScalarsView& s, std::span<const TensorRef> grads);
void apply_lr_schedule(const ExecutionContext& ctx, const kernels::StepScalarsView& s, const kernels::LrSchedule& schedule);
void scale_loss(const ExecutionContext& ctx, const optim::GradScaler& scaler, const Tensor<float>& loss,
                const Tensor<float>& out);

}  // namespace ocuda
