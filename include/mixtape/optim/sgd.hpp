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
class Sgd {
  static_assert(sizeof...(Ps) >= 1, "Sgd: name the policy of the model's modules");

 public:
  /// @param store  an allocated store; its buffers must outlive the optimizer
  Sgd(const ExecutionContext& ctx, nn::ParameterStore& store, const SgdHyper& hyper = {},
      const OptimizerOptions& options = {})
      : store_(&store), hyper_(hyper), options_(options), groups_(build(ctx, store, options)) {
    kernels::detail::check_hyper(hyper_);
  }

  const SgdHyper& hyper() const noexcept { return hyper_; }
  /// The flat gradient buffers (for GradScaler's unscale and for clipping).
  std::vector<TensorRef> grads() const { return detail::gradient_buffers(*store_); }
  template <std::size_t I>
  const std::vector<std::string>& group_names() const noexcept { return std::get<I>(groups_).group.names; }

  /// One optimizer step: checks, the step counted (or skipped), one launch per non-empty group.
  void step(const ExecutionContext& ctx, const StepScalars& scalars) const {
    std::apply([&](const auto&... g) { (check(ctx, scalars, g), ...); }, groups_);
    kernels::advance_step(ctx, scalars);
    std::apply([&](const auto&... g) { (update(ctx, scalars, g), ...); }, groups_);
  }

 private:
  using Groups = std::tuple<detail::PolicyGroup<Ps>...>;

  static Groups build(const ExecutionContext& ctx, nn::ParameterStore& store, const OptimizerOptions& options) {
    MIXTAPE_EXPECT(store.allocated(), ValueError, "Sgd: allocate the parameter store first");
    std::vector<bool> claimed(store.size(), false);
    Groups g = [&]<std::size_t... I>(std::index_sequence<I...>) {
      return Groups{detail::make_policy_group<Ps>(ctx, store, claimed, options, static_cast<std::uint32_t>(I))...};
    }(std::index_sequence_for<Ps...>{});
    expect_all_claimed("Sgd", store, claimed, policy_labels<Ps...>());
    return g;
  }

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

  template <PrecisionPolicy P>
  kernels::UpdateOptions update_options(const detail::PolicyGroup<P>& pg) const {
    return kernels::UpdateOptions{pg.rounding, options_.factors};
  }

  template <PrecisionPolicy P>
  void check(const ExecutionContext& ctx, const StepScalars& s, const detail::PolicyGroup<P>& pg) const {
    if (!pg.group.empty()) kernels::detail::check_group(ctx, s, kernel_group(pg), hyper_, update_options(pg));
  }

  template <PrecisionPolicy P>
  void update(const ExecutionContext& ctx, const StepScalars& s, const detail::PolicyGroup<P>& pg) const {
    using U = typename StoreGroup<P>::types::update_math;
    if (!pg.group.empty()) kernels::sgd_update<U>(ctx, s, kernel_group(pg), hyper_, update_options(pg));
  }

  nn::ParameterStore* store_;
  SgdHyper hyper_;
  OptimizerOptions options_;
  Groups groups_;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::optim
