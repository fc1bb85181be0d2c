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

#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "mixtape/optim/step_scalars.hpp"
#include "mixtape/optim/store_groups.hpp"

namespace mixtape::optim {

using kernels::AdamWHyper;

MIXTAPE_BACKEND_BEGIN

/// @tparam Ps  the policies of the store's modules (one group each; a parameter belongs to the
///             first policy whose formats it has)
template <PrecisionPolicy... Ps>
class AdamW {
  static_assert(sizeof...(Ps) >= 1, "AdamW: name the policy of the model's modules");

 public:
  /// @param store  an allocated store; its buffers must outlive the optimizer
  AdamW(const ExecutionContext& ctx, nn::ParameterStore& store, const AdamWHyper& hyper = {},
        const OptimizerOptions& options = {})
      : store_(&store), hyper_(hyper), options_(options), groups_(build(ctx, store, options)) {
    kernels::detail::check_hyper(hyper_);
  }

  const AdamWHyper& hyper() const noexcept { return hyper_; }
  /// The flat gradient buffers (for GradScaler's unscale and for clipping).
  std::vector<TensorRef> grads() const { return detail::gradient_buffers(*store_); }
  /// Parameters each group updates, by name (for tests and summaries).
  template <std::size_t I>
  const std::vector<std::string>& group_names() const noexcept { return std::get<I>(groups_).group.names; }

  /// One optimizer step: every group checked, the step counted (or the skip, when found_inf is
  /// set), then one update launch per non-empty group.
  void step(const ExecutionContext& ctx, const StepScalars& scalars) const {
    std::apply([&](const auto&... g) { (check(ctx, scalars, g), ...); }, groups_);
    kernels::advance_step(ctx, scalars);
    std::apply([&](const auto&... g) { (update(ctx, scalars, g), ...); }, groups_);
  }

 private:
  using Groups = std::tuple<detail::PolicyGroup<Ps>...>;

  static Groups build(const ExecutionContext& ctx, nn::ParameterStore& store, const OptimizerOptions& options) {
    MIXTAPE_EXPECT(store.allocated(), ValueError, "AdamW: allocate the parameter store first");
    std::vector<bool> claimed(store.size(), false);
    // Braced initialisation evaluates left to right: the first policy claims first.
    Groups g = [&]<std::size_t... I>(std::index_sequence<I...>) {
      return Groups{detail::make_policy_group<Ps>(ctx, store, claimed, options, static_cast<std::uint32_t>(I))...};
    }(std::index_sequence_for<Ps...>{});
    expect_all_claimed("AdamW", store, claimed, policy_labels<Ps...>());
    return g;
  }

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
    if (!pg.group.empty()) kernels::adamw_update<U>(ctx, s, kernel_group(pg), hyper_, update_options(pg));
  }

  nn::ParameterStore* store_;
  AdamWHyper hyper_;
  OptimizerOptions options_;
  Groups groups_;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::optim
