/// @file store_groups.hpp
/// @brief The optimizer's view of an nn::ParameterStore: for a policy, the flat buffers of each role
///        and a segment table that names, per trainable parameter of that policy's formats, its
///        element offset in every buffer and whether it decays.
///
/// A store may hold modules of several policies (a bf16 body and an f32 head), and its buffers are
/// shared by format, not by policy: the f32 weight buffer of a bf16-mixed model also holds the
/// weights of an f32 head. A *dtype group* is therefore the set of parameters whose role formats
/// equal one policy's (weight, gradient, moments, master; with or without a compute copy), and its
/// segment table touches exactly their elements in the shared buffers. StoreOptimizer, the base of
/// the optimizer classes (adamw.hpp, sgd.hpp), keeps one group per policy it is given and launches
/// one multi-tensor update per group.
#pragma once

#include <optional>
#include <tuple>
#include <utility>
#include <string>
#include <type_traits>
#include <vector>

#include "mixtape/kernels/optimizer.hpp"
#include "mixtape/nn/parameter.hpp"
#include "mixtape/optim/step_scalars.hpp"
#include "mixtape/policy/describe.hpp"

namespace mixtape::optim {

namespace detail {

/// `T` itself, or `Fallback` for `none_t` (the kernels' group structs take a type for every slot;
/// an absent one is an undefined tensor).
template <class T, class Fallback>
using or_type = std::conditional_t<std::is_same_v<T, none_t>, Fallback, T>;

/// The element types of a policy's optimizer group.
/// @tparam P  a trainable precision policy with dense floating storage
template <PrecisionPolicy P>
struct GroupTypes {
  using R = policy_traits<P>;
  using param = typename R::param_type;
  using grad = typename R::grad_type;
  using moment1 = typename R::moment1_type;
  using moment2 = typename R::moment2_type;
  using master = or_type<typename R::master_type, float>;
  using compute = or_type<typename R::gemm_compute_type, param>;
  /// f64 where the policy says so, else f32: a half-precision policy's update still runs in f32
  /// and rounds once when it stores (torch's fused AdamW, what the peer runs on CUDA, does the same).
  using update_math = std::conditional_t<std::is_same_v<typename R::update_math_type, double>, double, float>;
  static constexpr bool has_master = !std::is_same_v<typename R::master_type, none_t>;
  static constexpr bool has_moment2 = !std::is_same_v<typename R::moment2_type, none_t>;
};

/// Whether parameter `p` has exactly the formats of policy P's groups (its compute copy, if any,
/// in P's GEMM compute type).
template <PrecisionPolicy P>
bool matches(const nn::Parameter& p) {
  using Tr = policy_traits<P>;
  using nn::ParamRole;
  const auto is = [&](ParamRole r, auto tag) {
    using T = typename decltype(tag)::type;
    const auto& d = p.spec().dtypes[static_cast<int>(r)];
    if constexpr (std::is_same_v<T, none_t>) {
      return !d.has_value();
    } else {
      return d.has_value() && *d == dtype_v<T>;
    }
  };
  const auto& c = p.spec().dtypes[static_cast<int>(ParamRole::compute)];
  bool compute_ok = !c.has_value();
  if constexpr (ScalarElement<typename Tr::gemm_compute_type>) compute_ok = compute_ok || *c == dtype_v<typename Tr::gemm_compute_type>;
  return is(ParamRole::weight, std::type_identity<typename Tr::param_type>{}) &&
         is(ParamRole::grad, std::type_identity<typename Tr::grad_type>{}) &&
         is(ParamRole::moment1, std::type_identity<typename Tr::moment1_type>{}) &&
         is(ParamRole::moment2, std::type_identity<typename Tr::moment2_type>{}) &&
         is(ParamRole::master, std::type_identity<typename Tr::master_type>{}) && compute_ok;
}

/// "weight f32, grad f32, ..." for messages.
inline std::string describe_formats(const nn::Parameter& p) {
  std::string s;
  for (int r = 0; r < nn::kParamRoleCount; ++r) {
    if (!s.empty()) s += ", ";
    s += nn::param_role_name(static_cast<nn::ParamRole>(r));
    s += ' ';
    s += p.spec().dtypes[r] ? std::string(dtype_name(*p.spec().dtypes[r])) : std::string("none");
  }
  return s;
}

}  // namespace detail

/// The buffers and segments of one policy's parameters in a store.
/// @tparam P  the policy whose formats select the parameters
template <PrecisionPolicy P>
struct StoreGroup {
  using types = detail::GroupTypes<P>;
  Tensor<typename types::param> param;
  Tensor<typename types::grad> grad;
  Tensor<typename types::moment1> moment1;
  Tensor<typename types::moment2> moment2{};
  Tensor<typename types::master> master{};
  Tensor<typename types::compute> compute{};
  Tensor<typename types::param> compensation{};  ///< Kahan only, owned by the optimizer
  std::vector<kernels::ParamSegment> segments;    ///< one per claimed parameter, in store order
  std::vector<std::string> names;                 ///< the claimed parameters' names
  bool empty() const noexcept { return segments.empty(); }
};

/// Claims, in store order, every unclaimed trainable parameter with P's formats and fills a
/// StoreGroup with the shared buffers and the parameters' offsets in them. `claimed` has one flag
/// per store parameter.
/// @param kahan  allocate a compensation buffer (zeroed) shaped like the parameter buffer
template <PrecisionPolicy P>
StoreGroup<P> claim_group(const ExecutionContext& ctx, nn::ParameterStore& store, std::vector<bool>& claimed, bool kahan) {
  using nn::ParamRole;
  using types = detail::GroupTypes<P>;
  StoreGroup<P> g;
  for (std::size_t i = 0; i < store.size(); ++i) {
    nn::Parameter& p = store[i];
    if (claimed[i] || p.frozen() || !detail::matches<P>(p)) continue;
    claimed[i] = true;
    kernels::ParamSegment s;
    s.length = p.numel();
    s.decay = p.decay();
    s.offset[kernels::slot::param] = p.view(ParamRole::weight).offset();
    s.offset[kernels::slot::grad] = p.view(ParamRole::grad).offset();
    s.offset[kernels::slot::moment1] = p.view(ParamRole::moment1).offset();
    // An absent buffer mirrors the parameter's offsets, which the table accepts as ordered.
    s.offset[kernels::slot::moment2] = types::has_moment2 ? p.view(ParamRole::moment2).offset() : s.offset[0];
    s.offset[kernels::slot::master] = types::has_master ? p.view(ParamRole::master).offset() : s.offset[0];
    s.offset[kernels::slot::compute] = p.has(ParamRole::compute) ? p.view(ParamRole::compute).offset() : -1;
    s.offset[kernels::slot::compensation] = s.offset[kernels::slot::param];
    g.segments.push_back(s);
    g.names.push_back(p.name());
  }
  if (g.empty()) return g;
  const auto flat = [&]<class T>(ParamRole r, std::type_identity<T>) {
    return store.buffer(r, dtype_v<T>).template as<T>();
  };
  g.param = flat(ParamRole::weight, std::type_identity<typename types::param>{});
  g.grad = flat(ParamRole::grad, std::type_identity<typename types::grad>{});
  g.moment1 = flat(ParamRole::moment1, std::type_identity<typename types::moment1>{});
  if constexpr (types::has_moment2) g.moment2 = flat(ParamRole::moment2, std::type_identity<typename types::moment2>{});
  if constexpr (types::has_master) g.master = flat(ParamRole::master, std::type_identity<typename types::master>{});
  for (const auto& s : g.segments) {
    if (s.offset[kernels::slot::compute] >= 0) {
      g.compute = flat(ParamRole::compute, std::type_identity<typename types::compute>{});
      break;
    }
  }
  if (kahan) {
    g.compensation = Tensor<typename types::param>::empty(ctx, g.param.shape(), MemoryRole::optimizer_state);
    zero_bytes(ctx, g.compensation);
  }
  return g;
}

/// Throws ValueError naming the first trainable parameter no group claimed.
inline void expect_all_claimed(const char* optimizer, const nn::ParameterStore& store, const std::vector<bool>& claimed,
                               const std::string& policies) {
  for (std::size_t i = 0; i < store.size(); ++i) {
    const nn::Parameter& p = store[i];
    MIXTAPE_EXPECT(claimed[i] || p.frozen(), ValueError, optimizer, ": parameter '", p.name(), "' has formats (",
                   detail::describe_formats(p), ") of none of the optimizer's policies (", policies,
                   "); list its module's policy among the optimizer's");
  }
}

/// A policy's registry name, or its parameter / GEMM / gradient formats when it has none.
template <PrecisionPolicy P>
std::string policy_label() {
  if constexpr (requires { P::name; }) {
    return std::string(P::name);
  } else {
    using T = policy_traits<P>;
    return "policy(" + format_name<typename T::param_type>() + " parameters, " +
           format_name<typename T::gemm_compute_type>() + " GEMMs, " + format_name<typename T::grad_type>() +
           " gradients)";
  }
}

/// "32-true, bf16-mixed" for messages.
template <PrecisionPolicy... Ps>
std::string policy_labels() {
  std::string s;
  ((s += (s.empty() ? "" : ", "), s += policy_label<Ps>()), ...);
  return s;
}

/// Options shared by the optimizer classes.
struct OptimizerOptions {
  /// Overrides every group's policy rounding (nearest, stochastic, kahan) when set.
  std::optional<UpdateRounding> rounding;
  /// Step scalars the update multiplies the gradient by (deferred unscale or clip).
  kernels::GradFactors factors{};
};

namespace detail {

/// One policy's group with its segment table and rounding.
template <PrecisionPolicy P>
struct PolicyGroup {
  StoreGroup<P> group;
  kernels::SegmentTable table;
  UpdateRounding rounding = UpdateRounding::nearest;
  std::uint32_t stream = 0;
};

template <PrecisionPolicy P>
PolicyGroup<P> make_policy_group(const ExecutionContext& ctx, nn::ParameterStore& store, std::vector<bool>& claimed,
                                 const OptimizerOptions& options, std::uint32_t stream) {
  static_assert(!policy_traits<P>::is_frozen, "an optimizer group needs a trainable policy");
  PolicyGroup<P> pg;
  pg.rounding = options.rounding.value_or(policy_traits<P>::update_rounding);
  pg.stream = stream;
  pg.group = claim_group<P>(ctx, store, claimed, pg.rounding == UpdateRounding::kahan);
  if (!pg.group.empty()) pg.table = kernels::SegmentTable(ctx, pg.group.segments);
  return pg;
}

/// Every trainable parameter's flat gradient buffers of a store (padding included: zeros).
inline std::vector<TensorRef> gradient_buffers(const nn::ParameterStore& store) {
  std::vector<TensorRef> out;
  for (const auto& b : store.buffers())
    if (b.role == nn::ParamRole::grad) out.push_back(b.data);
  return out;
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

/// What AdamW and Sgd share: one group per policy claimed from the store at construction, the
/// flat gradient buffers, and a step that checks every group, counts the step once and launches
/// one multi-tensor update per non-empty group.
/// @tparam Derived  the optimizer; provides `static auto kernel_group(const detail::PolicyGroup<P>&)`
///                  (the kernels' group struct) and `template <class U> static void
///                  launch(ctx, scalars, group, hyper, options)` (one group's update)
/// @tparam Hyper    its hyperparameters (kernels::AdamWHyper, kernels::SgdHyper)
/// @tparam Ps       the policies of the store's modules (a parameter belongs to the first whose
///                  formats it has)
template <class Derived, class Hyper, PrecisionPolicy... Ps>
class StoreOptimizer {
  static_assert(sizeof...(Ps) >= 1, "an optimizer needs the policy of the model's modules");

 public:
  const Hyper& hyper() const noexcept { return hyper_; }
  const OptimizerOptions& options() const noexcept { return options_; }
  /// The flat gradient buffers (for GradScaler's unscale and for clipping).
  std::vector<TensorRef> grads() const { return detail::gradient_buffers(*store_); }
  /// Parameters group I updates, by name (for tests and summaries).
  template <std::size_t I>
  const std::vector<std::string>& group_names() const noexcept { return std::get<I>(groups_).group.names; }

  /// One optimizer step: every group checked, the step counted (or the skip, when found_inf is
  /// set), then one update launch per non-empty group. `extra` adds gradient factors to the
  /// options' for this step (TrainStep's deferred clip).
  void step(const ExecutionContext& ctx, const StepScalars& scalars, const kernels::GradFactors& extra = {}) const {
    const kernels::GradFactors f{options_.factors.inv_scale || extra.inv_scale, options_.factors.clip || extra.clip};
    std::apply([&](const auto&... g) { (check(ctx, scalars, g, f), ...); }, groups_);
    kernels::advance_step(ctx, scalars);
    std::apply([&](const auto&... g) { (update(ctx, scalars, g, f), ...); }, groups_);
  }

 protected:
  /// @param name   the optimizer's name, for messages
  /// @param store  an allocated store; its buffers must outlive the optimizer
  StoreOptimizer(const char* name, const ExecutionContext& ctx, nn::ParameterStore& store, const Hyper& hyper,
                 const OptimizerOptions& options)
      : store_(&store), hyper_(hyper), options_(options), groups_(build(name, ctx, store, options)) {
    kernels::detail::check_hyper(hyper_);
  }

 private:
  using Groups = std::tuple<detail::PolicyGroup<Ps>...>;

  static Groups build(const char* name, const ExecutionContext& ctx, nn::ParameterStore& store,
                      const OptimizerOptions& options) {
    MIXTAPE_EXPECT(store.allocated(), ValueError, name, ": allocate the parameter store first");
    std::vector<bool> claimed(store.size(), false);
    // Braced initialisation evaluates left to right: the first policy claims first.
    Groups g = [&]<std::size_t... I>(std::index_sequence<I...>) {
      return Groups{detail::make_policy_group<Ps>(ctx, store, claimed, options, static_cast<std::uint32_t>(I))...};
    }(std::index_sequence_for<Ps...>{});
    expect_all_claimed(name, store, claimed, policy_labels<Ps...>());
    return g;
  }

  template <PrecisionPolicy P>
  static kernels::UpdateOptions update_options(const detail::PolicyGroup<P>& pg, const kernels::GradFactors& f) {
    return kernels::UpdateOptions{pg.rounding, f};
  }

  template <PrecisionPolicy P>
  void check(const ExecutionContext& ctx, const StepScalars& s, const detail::PolicyGroup<P>& pg,
             const kernels::GradFactors& f) const {
    if (!pg.group.empty()) kernels::detail::check_group(ctx, s, Derived::kernel_group(pg), hyper_, update_options(pg, f));
  }

  template <PrecisionPolicy P>
  void update(const ExecutionContext& ctx, const StepScalars& s, const detail::PolicyGroup<P>& pg,
              const kernels::GradFactors& f) const {
    using U = typename StoreGroup<P>::types::update_math;
    if (!pg.group.empty()) Derived::template launch<U>(ctx, s, Derived::kernel_group(pg), hyper_, update_options(pg, f));
  }

  nn::ParameterStore* store_;
  Hyper hyper_;
  OptimizerOptions options_;
  Groups groups_;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::optim
