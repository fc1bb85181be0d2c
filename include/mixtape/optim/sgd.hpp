/// @file sgd.hpp
/// @brief `Sgd<Ps...>`: torch.optim.SGD (momentum, dampening, Nesterov, coupled weight decay on the
///        parameters registered with `decay`) over an nn::ParameterStore, one multi-tensor launch per
///        dtype group; lr, step and found_inf read on the device.
///
/// The momentum buffer is the parameter's first-moment view (the store allocates it from the
/// policy's state type); it starts as the gradient at the first step, as torch's does. Groups,
/// rounding and the error for an unnamed policy are those of AdamW (adamw.hpp, store_groups.hpp).
///
/// @code
///   optim::Sgd<precision::f32_true> opt(ctx, store, {.momentum = 0.9});
///   opt.step(ctx, scalars);
/// @endcode
#pragma once

#include <tuple>
#include <utility>
#include <vector>

#include "mixtape/optim/step_scalars.hpp"
#include "mixtape/optim/store_groups.hpp"

namespace mixtape::optim {

using kernels::SgdHyper;

MIXTAPE_BACKEND_BEGIN

/// @tparam Ps  the policies of the store's modules (one group each)
template <PrecisionPolicy... Ps>
class Sgd : public StoreOptimizer<Sgd<Ps...>, SgdHyper, Ps...> {
 public:
  /// @param store  an allocated store; its buffers must outlive the optimizer
  Sgd(const ExecutionContext& ctx, nn::ParameterStore& store, const SgdHyper& hyper = {},
      const OptimizerOptions& options = {})
      : StoreOptimizer<Sgd<Ps...>, SgdHyper, Ps...>("Sgd", ctx, store, hyper, options) {}

  /// The kernels' view of one policy's group (the momentum buffer is the first-moment view).
  template <PrecisionPolicy P>
  static auto kernel_group(const detail::PolicyGroup<P>& pg) {
    const StoreGroup<P>& g = pg.group;
    using T = typename StoreGroup<P>::types;
    kernels::SgdGroup<typename T::param, typename T::grad, typename T::moment1, typename T::master, typename T::compute> k;
    k.param = g.param;
    k.grad = g.grad;
    k.momentum_buffer = g.moment1;
    k.master = g.master;
    k.compute = g.compute;
    k.compensation = g.compensation;
    k.segments = &pg.table;
    k.rng_stream = pg.stream;
    return k;
  }
  /// One group's update in update math U.
  template <class U, class Group>
  static void launch(const ExecutionContext& ctx, const StepScalars& s, const Group& g, const SgdHyper& h,
                     const kernels::UpdateOptions& o) {
    kernels::sgd_update<U>(ctx, s, g, h, o);
  }
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::optim
