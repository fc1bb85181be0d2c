/// @file parameter.hpp
/// @brief Parameters as views of flat buffers, one buffer per (role, dtype): stored weight, compute
///        copy, master copy, gradient, first and second moment.
///
/// Flat buffers give multi-tensor optimizer launches (one per dtype group), one grad-norm pass,
/// bucketed all-reduce and optimizer-state sharding directly (design.md, "Parameters"). A parameter
/// is registered with the formats its policy names for each role, so one store can hold modules of
/// different policies (a bf16 block and an f32 head). The store lives in nn/ (not optim/) because
/// modules register their parameters while they are built and nn sits above optim in the layers.
///
/// - Compute copies are owned, not cached: where the GEMM type is narrower than the stored weight,
///   the parameter owns the narrower copy and the optimizer step writes it with the master.
/// - A frozen parameter has no gradient and no optimizer state.
/// - A tied parameter is one object, registered once and used by two modules (one gradient buffer).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mixtape/autograd/tape.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/core/transfer.hpp"
#include "mixtape/policy.hpp"

namespace mixtape::nn {

/// The roles a parameter may have a buffer for.
enum class ParamRole : std::uint8_t { weight, compute, master, grad, moment1, moment2 };
inline constexpr int kParamRoleCount = 6;

constexpr std::string_view param_role_name(ParamRole r) noexcept {
  constexpr std::string_view kNames[kParamRoleCount] = {"weight", "compute", "master", "grad", "moment1", "moment2"};
  return kNames[static_cast<int>(r)];
}

constexpr MemoryRole memory_role(ParamRole r) noexcept {
  switch (r) {
    case ParamRole::weight:
    case ParamRole::compute:
      return MemoryRole::weights;
    case ParamRole::master:
      return MemoryRole::master;
    case ParamRole::grad:
      return MemoryRole::gradients;
    default:
      return MemoryRole::optimizer_state;
  }
}

/// How a parameter is initialised (the peer's GPT scheme: N(0, std) for matrices, zeros for biases,
/// ones for LayerNorm gains; torch's nn.Linear default: U(-1/sqrt(in), 1/sqrt(in)) for both).
struct Init {
  enum class Kind : std::uint8_t { normal, zeros, ones, uniform } kind = Kind::normal;
  double stddev = 0.02;  ///< normal: the standard deviation; uniform: the bound b of U(-b, b)
  static Init normal(double s) { return {Kind::normal, s}; }
  static Init zeros() { return {Kind::zeros, 0}; }
  static Init ones() { return {Kind::ones, 0}; }
  static Init uniform(double bound) { return {Kind::uniform, bound}; }
};

/// What a module asks for when it registers a parameter: a name, a shape and the dtype of each role
/// (nullopt: the role has no buffer).
struct ParameterSpec {
  std::string name;
  Shape shape;
  std::optional<DType> dtypes[kParamRoleCount];
  Init init;
  bool decay = true;  ///< weight decay applies (the peer: 2-D weights only)
};

namespace detail {
template <class T>
std::optional<DType> role_dtype() {
  if constexpr (std::is_same_v<T, none_t>) {
    return std::nullopt;
  } else {
    return dtype_v<T>;
  }
}
}  // namespace detail

/// The spec of a parameter under policy `P`: weight in the parameter type, a compute copy when the
/// GEMM compute type differs from it (`with_compute_copy`: for matrices that feed GEMMs), master,
/// gradient and moments from the policy's roles; none of the trainable roles when frozen.
/// @tparam P  the precision policy of the module that owns the parameter
template <PrecisionPolicy P>
ParameterSpec spec_for(std::string name, const Shape& shape, Init init, bool decay, bool with_compute_copy) {
  using R = policy_traits<P>;
  ParameterSpec s;
  s.name = std::move(name);
  s.shape = shape;
  s.init = init;
  s.decay = decay;
  s.dtypes[static_cast<int>(ParamRole::weight)] = dtype_v<typename R::param_type>;
  if constexpr (ScalarElement<typename R::gemm_compute_type>) {
    if (with_compute_copy && !std::is_same_v<typename R::gemm_compute_type, typename R::param_type>)
      s.dtypes[static_cast<int>(ParamRole::compute)] = dtype_v<typename R::gemm_compute_type>;
  }
  s.dtypes[static_cast<int>(ParamRole::master)] = detail::role_dtype<typename R::master_type>();
  s.dtypes[static_cast<int>(ParamRole::grad)] = detail::role_dtype<typename R::grad_type>();
  if (s.dtypes[static_cast<int>(ParamRole::grad)]) {
    s.dtypes[static_cast<int>(ParamRole::moment1)] = detail::role_dtype<typename R::moment1_type>();
    s.dtypes[static_cast<int>(ParamRole::moment2)] = detail::role_dtype<typename R::moment2_type>();
  }
  return s;
}

/// One parameter: its spec, and views of the store's flat buffers once allocated.
class Parameter {
 public:
  explicit Parameter(ParameterSpec spec) : spec_(std::move(spec)) {}

  const std::string& name() const noexcept { return spec_.name; }
  const Shape& shape() const noexcept { return spec_.shape; }
  std::int64_t numel() const noexcept { return spec_.shape.numel(); }
  const ParameterSpec& spec() const noexcept { return spec_; }
  bool frozen() const noexcept { return !spec_.dtypes[static_cast<int>(ParamRole::grad)].has_value(); }
  bool decay() const noexcept { return spec_.decay; }
  bool has(ParamRole r) const noexcept { return spec_.dtypes[static_cast<int>(r)].has_value(); }

  /// The buffer of role `r` (throws ValueError when the role has none or the store is not allocated).
  const TensorRef& view(ParamRole r) const {
    const TensorRef& v = views_[static_cast<int>(r)];
    MIXTAPE_EXPECT(v.defined(), ValueError, "parameter ", spec_.name, ": no ", param_role_name(r), " buffer",
                   has(r) ? " yet (allocate the store first)" : " (its policy has none)");
    return v;
  }
  /// What the forward pass reads: the compute copy when there is one, else the stored weight.
  const TensorRef& compute_view() const { return view(has(ParamRole::compute) ? ParamRole::compute : ParamRole::weight); }

  /// The gradient sink the tape writes into (after allocation; frozen parameters have none).
  autograd::GradSink& sink() {
    MIXTAPE_EXPECT(!frozen(), ValueError, "parameter ", spec_.name, " is frozen: it has no gradient");
    return sink_;
  }
  /// Forgets the gradient without touching memory: the next backward's first write assigns.
  void zero_grad() noexcept { sink_.has_data = false; }
  bool has_grad() const noexcept { return sink_.has_data; }

 private:
  friend class ParameterStore;
  ParameterSpec spec_;
  TensorRef views_[kParamRoleCount];
  autograd::GradSink sink_;
};

/// Owns every parameter of a model and the flat buffers behind them.
class ParameterStore {
 public:
  ParameterStore() = default;
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  /// Registers a parameter (before allocate); names must be unique.
  Parameter& add(ParameterSpec spec) {
    MIXTAPE_EXPECT(!allocated_, ValueError, "parameter store: cannot add '", spec.name, "' after allocate()");
    MIXTAPE_EXPECT(by_name_.count(spec.name) == 0, ValueError, "parameter store: the name '", spec.name,
                   "' is already registered");
    MIXTAPE_EXPECT(spec.dtypes[static_cast<int>(ParamRole::weight)].has_value(), ValueError, "parameter '", spec.name,
                   "': a weight dtype is required");
    params_.push_back(std::make_unique<Parameter>(std::move(spec)));
    by_name_[params_.back()->name()] = params_.back().get();
    return *params_.back();
  }

  /// Creates one flat buffer per (role, dtype) on `ctx`'s device and points every parameter at its
  /// slice. Each slice starts on a 16-byte boundary so vectorised kernels apply to every view.
  void allocate(const ExecutionContext& ctx) {
    MIXTAPE_EXPECT(!allocated_, ValueError, "parameter store: allocate() called twice");
    std::map<std::pair<int, DType>, std::int64_t> sizes;  // elements, padded
    std::vector<std::array<std::int64_t, kParamRoleCount>> offsets(params_.size());
    for (std::size_t i = 0; i < params_.size(); ++i) {
      for (int r = 0; r < kParamRoleCount; ++r) {
        const auto& d = params_[i]->spec_.dtypes[r];
        if (!d) continue;
        MIXTAPE_EXPECT(!is_packed(*d), DTypeError, "parameter '", params_[i]->name(), "': packed ", *d,
                       " storage needs the quantized-weight layer");
        std::int64_t& size = sizes[{r, *d}];
        offsets[i][r] = size;
        const std::int64_t align = 16 / (dtype_bits(*d) / 8);
        size += (params_[i]->numel() + align - 1) / align * align;
      }
    }
    for (const auto& [key, n] : sizes) {
      const auto role = static_cast<ParamRole>(key.first);
      buffers_.push_back(Buffer{role, visit_dtype(key.second, [&]<class T>() -> TensorRef {
                                  if constexpr (ScalarElement<T>) {
                                    return Tensor<T>::empty(ctx, Shape{n}, memory_role(role));
                                  } else {
                                    return {};
                                  }
                                })});
      // Whole-buffer passes (unscale, grad norm, clipping) also read the alignment padding between
      // views, which nothing else writes: it must hold zeros, not stale memory.
      zero_bytes(ctx, buffers_.back().data);
    }
    for (std::size_t i = 0; i < params_.size(); ++i) {
      Parameter& p = *params_[i];
      for (int r = 0; r < kParamRoleCount; ++r) {
        if (!p.spec_.dtypes[r]) continue;
        const TensorRef& flat = buffer(static_cast<ParamRole>(r), *p.spec_.dtypes[r]);
        p.views_[r] = visit_dtype(flat.dtype(), [&]<class T>() -> TensorRef {
          if constexpr (ScalarElement<T>) {
            return flat.as<T>().slice(0, offsets[i][r], p.numel()).reshape(p.shape());
          } else {
            return {};
          }
        });
      }
      if (!p.frozen()) p.sink_.grad = p.views_[static_cast<int>(ParamRole::grad)];
    }
    allocated_ = true;
  }

  bool allocated() const noexcept { return allocated_; }
  std::size_t size() const noexcept { return params_.size(); }
  Parameter& operator[](std::size_t i) { return *params_[i]; }
  const Parameter& operator[](std::size_t i) const { return *params_[i]; }
  /// The parameter named `name`; throws ValueError listing nothing but the name when absent.
  Parameter& at(const std::string& name) {
    auto it = by_name_.find(name);
    MIXTAPE_EXPECT(it != by_name_.end(), ValueError, "parameter store: no parameter named '", name, "'");
    return *it->second;
  }
  /// Total elements of all parameters (each tied parameter once).
  std::int64_t numel() const noexcept {
    std::int64_t n = 0;
    for (const auto& p : params_) n += p->numel();
    return n;
  }

  /// A flat buffer of the store (role, dtype).
  struct Buffer {
    ParamRole role;
    TensorRef data;
  };
  const std::vector<Buffer>& buffers() const noexcept { return buffers_; }
  const TensorRef& buffer(ParamRole role, DType dtype) const {
    for (const auto& b : buffers_)
      if (b.role == role && b.data.dtype() == dtype) return b.data;
    MIXTAPE_THROW(ValueError, "parameter store: no ", param_role_name(role), " buffer of ", dtype);
  }
  /// Forgets every gradient (no memset; the next backward assigns).
  void zero_grad() noexcept {
    for (auto& p : params_) p->zero_grad();
  }

 private:
  std::vector<std::unique_ptr<Parameter>> params_;
  std::map<std::string, Parameter*> by_name_;
  std::vector<Buffer> buffers_;
  bool allocated_ = false;
};

}  // namespace mixtape::nn
