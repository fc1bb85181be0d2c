// CUDA instantiations of the update kernels the GPU tests call (see optim_cuda_helpers.hpp): the
// storage combinations of the presets, each with the three rounding modes.
#include "optim_cuda_helpers.hpp"

namespace ocuda {

template <class U, class P, class G, class M1, class M2, class W, class C>
void adamw_step(const ExecutionContext& ctx, const kernels::StepScalarsView& s, const kernels::AdamWHyper& h,
                const kernels::UpdateOptions& o, const kernels::AdamWGroup<P, G, M1, M2, W, C>& group) {
  kernels::adamw_step<U>(ctx, s, h, o, group);
}
template <class U, class P, class G, class M1, class W, class C>
void sgd_step(const ExecutionContext& ctx, const kernels::StepScalarsView& s, const kernels::SgdHyper& h,
              const kernels::UpdateOptions& o, const kernels::SgdGroup<P, G, M1, W, C>& group) {
  kernels::sgd_step<U>(ctx, s, h, o, group);
}

#define OCUDA_ADAMW(U, P, G, M1, M2, W, C)                                                                        \
  template void adamw_step<U, P, G, M1, M2, W, C>(const ExecutionContext&, const kernels::StepScalarsView&,        \
                                                  const kernels::AdamWHyper&, const kernels::UpdateOptions&,      \
                                                  const kernels::AdamWGroup<P, G, M1, M2, W, C>&)
OCUDA_ADAMW(float, float, float, float, float, float, bf16);         // bf16-mixed: f32 + bf16 compute copy
OCUDA_ADAMW(float, bf16, bf16, float, float, float, bf16);           // llm.c: bf16 + f32 master
OCUDA_ADAMW(float, bf16, bf16, bf16, bf16, float, bf16);             // bf16-true
OCUDA_ADAMW(double, double, double, double, double, float, double);  // 64-true
OCUDA_ADAMW(float, f16, f16, float, float, float, f16);              // f16 + f32 master
OCUDA_ADAMW(double, float, float, float, float, float, float);       // f32 with f64 update math

#define OCUDA_SGD(U, P, G, M1, W, C)                                                                                 \
  template void sgd_step<U, P, G, M1, W, C>(const ExecutionContext&, const kernels::StepScalarsView&,                \
                                            const kernels::SgdHyper&, const kernels::UpdateOptions&,                \
                                            const kernels::SgdGroup<P, G, M1, W, C>&)
OCUDA_SGD(float, float, float, float, float, bf16);
OCUDA_SGD(float, bf16, bf16, bf16, float, bf16);

}  // namespace ocuda
