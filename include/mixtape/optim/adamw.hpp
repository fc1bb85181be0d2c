/// @file adamw.hpp
/// @brief `AdamW<Ps...>`: torch.optim.AdamW over an nn::ParameterStore, one multi-tensor launch per
///        dtype group, the step's lr, step count, found_inf and gradient factors read on the device.
///
/// Decoupled weight decay applies to the parameters registered with `decay` (the peer's 2-D
/// weights), not to biases, LayerNorm gains or other 1-D parameters. Bias correction as torch. The
/// update math is the policy's (f32, or f64 under 64-true); where a master copy exists it is the
/// updated value and the parameter is written from it; owned compute copies (the bf16 GEMM copies of
/// a mixed policy) are written in the same pass. Rounding of the narrow results is the policy's
/// `update_rounding` (nearest unless stated), or `Options::rounding` for every group.
///
/// A store holding modules of several policies needs every one of them named:
/// `optim::AdamW<precision::bf16_mixed, precision::f32_true> opt(ctx, store, hyper);`. A trainable
/// parameter none of them describes is a ValueError at construction, naming it and its formats.
///
/// @code
///   optim::AdamW<precision::bf16_mixed> opt(ctx, store, {.beta1 = 0.9, .beta2 = 0.95, .weight_decay = 0.1});
///   ... backward ...
///   optim::clip_grad_norm(ctx, scalars, opt.grads(), {.max_norm = 1.0});
///   opt.step(ctx, scalars);   // skipped (and counted) when found_inf is set
/// @endcode
#pragma once


#include "mixtape/optim/step_scalars.hpp"
#include "mixtape/optim/store_groups.hpp"

namespace mixtape::optim {

using kernels::AdamWHyper;

MIXTAPE_BACKEND_BEGIN

/// @tparam Ps  the policies of the store's modules (one group each; a parameter belongs to the
///             first policy whose formats it has)
template <PrecisionPolicy... Ps>
class AdamW : public StoreOptimizer<AdamW<Ps...>, AdamWHyper, Ps...> {
 public:
  /// @param store  an allocated store; its buffers must outlive the optimizer
  AdamW(const ExecutionContext& ctx, nn::ParameterStore& store, const AdamWHyper& hyper = {},
        const OptimizerOptions& options = {})
      : StoreOptimizer<AdamW<Ps...>, AdamWHyper, Ps...>("AdamW", ctx, store, hyper, options) {}

  /// The kernels' view of one policy's group.
  template <PrecisionPolicy P>
  static auto kernel_group(const detail::PolicyGroup<P>& pg) {
    const StoreGroup<P>& g = pg.group;
    using T = typename StoreGroup<P>::types;
    kernels::AdamWGroup<typename T::param, typename T::grad, typename T::moment1, typename T::moment2,
                        typename T::master, typename T::compute>
        k;
    k.param = g.param;
    k.grad = g.grad;
    k.exp_avg = g.moment1;
    k.exp_avg_sq = g.moment2;
    k.master = g.master;
    k.compute = g.compute;
    k.compensation = g.compensation;
    k.segments = &pg.table;
    k.rng_stream = pg.stream;
    return k;
  }
  /// One group's update in update math U.
  template <class U, class Group>
  static void launch(const ExecutionContext& ctx, const StepScalars& s, const Group& g, const AdamWHyper& h,
                     const kernels::UpdateOptions& o) {
    kernels::adamw_update<U>(ctx, s, g, h, o);
  }
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::optim
