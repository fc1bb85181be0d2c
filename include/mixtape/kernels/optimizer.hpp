/// @file optimizer.hpp
/// @brief Multi-tensor optimizer kernels on both backends: AdamW and SGD updates of flat parameter
///        groups (master and compute copies written in the same pass; nearest, stochastic or Kahan
///        rounding), GradScaler's unscale / non-finite check / scale update, the global gradient
///        norm and clip coefficient, and the device-side learning-rate schedule. Every per-step
///        value is read from and written to the step scalars in device memory: nothing syncs, and a
///        whole step can be captured in one CUDA graph.
///
/// **Groups.** Parameters are views of one flat buffer per (role, dtype) (design.md,
/// "Parameters"), so a *group* is a set of flat buffers: parameter, gradient, moments, optional
/// master, optional compute copy, optional Kahan compensation. One launch per group. Without a
/// `SegmentTable` the buffers have one length and one layout and every element decays. With one
/// (built once, kept in device memory) each segment, a parameter or a run of them, has its own
/// offset in each buffer and its own weight-decay flag (no decay on 1-D parameters), so buffers laid
/// out independently (nn::ParameterStore pads per dtype, keeps compute copies for matrices only)
/// are updated in place; elements outside every segment (padding, frozen parameters) are never
/// touched. The table's chunks (at most kOptimizerChunk elements, 64-byte descriptors) map one to
/// a CUDA block, so the per-buffer offsets and the flag cost one descriptor read per block.
///
/// **Order within a step** (torch's, with GradScaler and clipping):
/// @code
///   kernels::apply_lr_schedule(ctx, scalars, schedule);          // lr for this step, on device
///   optim::unscale_grads(ctx, scaler, grads);                      // inv_scale, found_inf, g *= inv
///   optim::clip_grad_norm(ctx, scalars, grads, {.max_norm = 1.0}); // norm, clip_coef, g *= coef
///   kernels::adamw_step(ctx, scalars, hyper, {}, group_f32, group_bf16);  // skipped if found_inf
///   optim::update_scale(ctx, scaler);                              // torch's scaler.update()
///   scalars.snapshot(ctx);                                         // progress bar, one step late
/// @endcode
/// `adamw_step` first counts the step (`advance_step`: step += 1, or skipped += 1 when found_inf is
/// set), then runs each group; a group's kernel returns at once when found_inf is set, so a
/// skipped step leaves parameters, moments and copies bitwise unchanged.
///
/// **Determinism.** The update kernels are element-wise: host and CUDA give identical bits
/// (optimizer_ops.hpp says when: no fma contraction on either side; the tests build with
/// `--fmad=false`, a user build that contracts may differ by an ulp). Stochastic rounding draws
/// Philox words keyed by (context seed, element index, device-side step, group stream), never a
/// host-side offset, so a captured graph replays new draws each step. The gradient norm is a
/// fixed-order two-pass reduction (bitwise reproducible per backend, host vs CUDA within rounding).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <span>
#include <vector>

#include "mixtape/config.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/core/transfer.hpp"
#include "mixtape/kernels/detail/optimizer_host.hpp"
#include "mixtape/kernels/detail/optimizer_ops.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/policy/roles.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/optimizer_cuda.cuh"
#endif

namespace mixtape::kernels {

/// A run [begin, begin + length) of a group whose buffers are laid out alike (the same offset in
/// every buffer), with one weight-decay setting.
struct DecaySegment {
  std::int64_t begin = 0;
  std::int64_t length = 0;
  bool decay = true;
};

/// A run of `length` elements of a group (a parameter, or adjacent ones) with its element offset in
/// each buffer (`offset[slot::param]` ... `offset[slot::compensation]`) and its weight-decay
/// setting. `offset[slot::compute]` may be -1: the run has no compute copy (a bias next to matrices).
struct ParamSegment {
  std::int64_t length = 0;
  std::int64_t offset[kGroupSlots] = {};
  bool decay = true;

  /// The same offset in every buffer.
  static constexpr ParamSegment uniform(const DecaySegment& d) noexcept {
    ParamSegment p;
    p.length = d.length;
    for (auto& o : p.offset) o = d.begin;
    p.decay = d.decay;
    return p;
  }
};

/// The names of the slots, for messages.
constexpr const char* slot_name(int s) noexcept {
  constexpr const char* kNames[kGroupSlots] = {"param", "grad", "moment1", "moment2", "master", "compute", "compensation"};
  return s >= 0 && s < kGroupSlots ? kNames[s] : "invalid";
}

/// The chunks of a group with their per-buffer offsets and weight-decay flags, on the context's
/// device; built once per group layout (parameter buffers do not move) and shared by the group's
/// updates. Elements outside every segment are never touched (padding, frozen parameters).
class SegmentTable {
 public:
  SegmentTable() = default;

  /// @param segments  runs whose offsets increase without overlap in every buffer, in segment order
  /// @throws ValueError for negative lengths or offsets (except compute), or runs out of order or
  ///         overlapping in some buffer
  SegmentTable(const ExecutionContext& ctx, std::span<const ParamSegment> segments) : device_(ctx.device()) {
    build(ctx, segments);
  }

  /// A table for a group laid out alike in every buffer.
  /// @param numel     the buffers' element count
  /// @param segments  sorted, non-overlapping runs inside [0, numel)
  SegmentTable(const ExecutionContext& ctx, std::int64_t numel, std::span<const DecaySegment> segments)
      : device_(ctx.device()) {
    MIXTAPE_EXPECT(numel >= 0, ValueError, "SegmentTable: expected a non-negative element count, got ", numel);
    std::vector<ParamSegment> ps;
    std::int64_t end = 0;
    for (std::size_t k = 0; k < segments.size(); ++k) {
      const DecaySegment& d = segments[k];
      MIXTAPE_EXPECT(d.begin >= end && d.length >= 0 && d.begin + d.length <= numel, ValueError,
                     "SegmentTable: expected segment ", k, " inside [", end, ", ", numel,
                     ") after the previous one, got [", d.begin, ", ", d.begin + d.length, ")");
      end = d.begin + d.length;
      ps.push_back(ParamSegment::uniform(d));
    }
    build(ctx, ps);
  }
  SegmentTable(const ExecutionContext& ctx, std::int64_t numel, std::initializer_list<DecaySegment> segments)
      : SegmentTable(ctx, numel, std::span<const DecaySegment>(segments.begin(), segments.size())) {}

  std::int64_t chunk_count() const noexcept { return static_cast<std::int64_t>(host_.size()); }
  Device device() const noexcept { return device_; }
  /// One past the last element a segment covers in buffer `slot` (0 when none does).
  std::int64_t extent(int slot) const noexcept { return extent_[slot]; }
  /// The chunk descriptors on device() (device memory for a CUDA table).
  const OptimizerChunk* chunks() const noexcept {
    if (host_.empty()) return nullptr;
    return device_.is_cuda() ? reinterpret_cast<const OptimizerChunk*>(device_bytes_.data()) : host_.data();
  }
  std::span<const OptimizerChunk> host_chunks() const noexcept { return host_; }

 private:
  void build(const ExecutionContext& ctx, std::span<const ParamSegment> segments) {
    std::int64_t end[kGroupSlots] = {};
    for (std::size_t k = 0; k < segments.size(); ++k) {
      const ParamSegment& p = segments[k];
      MIXTAPE_EXPECT(p.length >= 0, ValueError, "SegmentTable: expected a non-negative length for segment ", k, ", got ",
                     p.length);
      for (int b = 0; b < kGroupSlots; ++b) {
        const std::int64_t o = p.offset[b];
        if (o < 0) {
          MIXTAPE_EXPECT(b == slot::compute && o == -1, ValueError, "SegmentTable: segment ", k, " has offset ", o,
                         " in the ", slot_name(b), " buffer; expected >= 0 (-1 only for compute: no copy)");
          continue;
        }
        MIXTAPE_EXPECT(o >= end[b], ValueError, "SegmentTable: expected segment ", k, " at or after element ", end[b],
                       " of the ", slot_name(b), " buffer (segments in order, not overlapping), got offset ", o);
        end[b] = o + p.length;
      }
      for (std::int64_t j = 0; j < p.length; j += kOptimizerChunk) {
        OptimizerChunk c;
        for (int b = 0; b < kGroupSlots; ++b) c.offset[b] = p.offset[b] < 0 ? -1 : p.offset[b] + j;
        c.length = static_cast<std::int32_t>(std::min<std::int64_t>(kOptimizerChunk, p.length - j));
        c.decay = p.decay ? 1 : 0;
        host_.push_back(c);
      }
    }
    for (int b = 0; b < kGroupSlots; ++b) extent_[b] = end[b];
    if (device_.is_cuda() && !host_.empty()) {
      const auto bytes = static_cast<std::int64_t>(host_.size() * sizeof(OptimizerChunk));
      device_bytes_ = Tensor<std::uint8_t>::empty(ctx, {bytes}, MemoryRole::optimizer_state);
      mixtape::copy(ctx, Tensor<std::uint8_t>::wrap(reinterpret_cast<std::uint8_t*>(host_.data()), {bytes}),
                    device_bytes_);
    }
  }

  Device device_;
  std::vector<OptimizerChunk> host_;
  std::int64_t extent_[kGroupSlots] = {};
  Tensor<std::uint8_t> device_bytes_;
};

/// How an update writes narrow results.
struct UpdateOptions {
  /// nearest-even, stochastic (parameters, copies and moments) or Kahan (parameters, with the
  /// group's compensation buffer; moments and copies nearest).
  UpdateRounding rounding = UpdateRounding::nearest;
  /// Step scalars that multiply the gradient inside the update (deferred unscale / clip).
  GradFactors factors{};
};

/// One AdamW dtype group: flat buffers of one length n. The *primary* (what the update math
/// reads and writes) is the master when given, else the parameter.
/// @tparam P   parameter storage (f64, f32, f16, bf16, ...)
/// @tparam G   gradient element type
/// @tparam M1  first-moment storage
/// @tparam M2  second-moment storage
/// @tparam W   master storage (used when `master` is defined)
/// @tparam C   compute-copy storage (used when `compute` is defined)
template <FloatElement P, FloatElement G = P, FloatElement M1 = P, FloatElement M2 = M1, FloatElement W = float,
          FloatElement C = P>
struct AdamWGroup {
  Tensor<P> param;         ///< (n) parameters: updated, or written from the master
  Tensor<G> grad;          ///< (n)
  Tensor<M1> exp_avg;      ///< (n) first moment m
  Tensor<M2> exp_avg_sq;   ///< (n) second moment v
  Tensor<W> master{};      ///< (n) optional master copy
  Tensor<C> compute{};     ///< (n) optional owned compute copy (e.g. bf16 of f32 parameters)
  Tensor<P> compensation{};///< (n) Kahan compensation, required by UpdateRounding::kahan
  const SegmentTable* segments = nullptr;  ///< weight-decay flags; null: decay everywhere
  std::uint32_t rng_stream = 0;            ///< Philox stream; distinct per group of one model
};

/// One SGD dtype group (see AdamWGroup).
/// @tparam P   parameter storage
/// @tparam G   gradient element type
/// @tparam M1  momentum-buffer storage
/// @tparam W   master storage (used when `master` is defined)
/// @tparam C   compute-copy storage (used when `compute` is defined)
template <FloatElement P, FloatElement G = P, FloatElement M1 = P, FloatElement W = float, FloatElement C = P>
struct SgdGroup {
  Tensor<P> param;             ///< (n)
  Tensor<G> grad;              ///< (n)
  Tensor<M1> momentum_buffer{};///< (n) required when momentum != 0
  Tensor<W> master{};          ///< (n) optional
  Tensor<C> compute{};         ///< (n) optional
  Tensor<P> compensation{};    ///< (n) Kahan only
  const SegmentTable* segments = nullptr;
  std::uint32_t rng_stream = 0;
};

namespace detail {

inline void expect_scalars(const char* op, const ExecutionContext& ctx, const StepScalarsView& s) {
  MIXTAPE_EXPECT(s.values != nullptr, ValueError, op, ": expected step scalars with storage, got an empty handle");
  MIXTAPE_EXPECT(s.device == ctx.device(), DeviceError, op, ": the step scalars must be on the context's device, expected ",
                 ctx.device(), ", got ", s.device);
}

/// A flat buffer of a group: storage on the context's device, dense, with the group's n elements.
inline void expect_flat(const char* op, const char* what, const ExecutionContext& ctx,
                        const mixtape::detail::TensorBase& t, std::int64_t n) {
  MIXTAPE_EXPECT(t.defined(), ValueError, op, ": expected ", what, " to have storage, got an empty handle");
  MIXTAPE_EXPECT(t.device() == ctx.device(), DeviceError, op, ": ", what, " must be on the context's device, expected ",
                 ctx.device(), ", got ", t.device());
  MIXTAPE_EXPECT(t.is_contiguous(), ShapeError, op, ": ", what, " must be a dense (flat) buffer, got a strided view of shape ",
                 t.shape());
  MIXTAPE_EXPECT(t.numel() == n, ShapeError, op, ": ", what, " must have the parameter's ", n, " elements, got ",
                 t.numel(), " (shape ", t.shape(), ")");
}

/// Buffer `t` of a group in slot `slot`: with a segment table, dense and reaching the table's
/// extent in that slot; without one, flat with the group's n elements.
inline void expect_buffer(const char* op, const char* what, const ExecutionContext& ctx,
                          const mixtape::detail::TensorBase& t, const SegmentTable* table, int slot, std::int64_t n) {
  if (table == nullptr) {
    expect_flat(op, what, ctx, t, n);
    return;
  }
  expect_flat(op, what, ctx, t, t.numel());
  MIXTAPE_EXPECT(t.numel() >= table->extent(slot), ShapeError, op, ": ", what, " has ", t.numel(),
                 " elements, expected at least ", table->extent(slot), " (the segment table's extent in the ",
                 slot_name(slot), " buffer)");
}

inline void expect_table(const char* op, const ExecutionContext& ctx, const SegmentTable* s) {
  if (s == nullptr) return;
  MIXTAPE_EXPECT(s->device() == ctx.device(), DeviceError, op, ": the segment table must be on the context's device, expected ",
                 ctx.device(), ", got ", s->device());
}

inline void expect_in(const char* op, const char* name, double v, double lo, double hi, bool hi_open) {
  const bool ok = v >= lo && (hi_open ? v < hi : v <= hi);
  MIXTAPE_EXPECT(ok, ValueError, op, ": invalid ", name, ", expected a value in [", lo, ", ", hi, hi_open ? ")" : "]",
                 ", got ", v);
}

inline void check_hyper(const AdamWHyper& h) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  expect_in("adamw", "beta1", h.beta1, 0.0, 1.0, true);
  expect_in("adamw", "beta2", h.beta2, 0.0, 1.0, true);
  expect_in("adamw", "eps", h.eps, 0.0, kInf, true);
  expect_in("adamw", "weight_decay", h.weight_decay, 0.0, kInf, true);
}

inline void check_hyper(const SgdHyper& h) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  expect_in("sgd", "momentum", h.momentum, 0.0, kInf, true);
  expect_in("sgd", "dampening", h.dampening, -kInf, kInf, true);
  expect_in("sgd", "weight_decay", h.weight_decay, 0.0, kInf, true);
  MIXTAPE_EXPECT(!h.nesterov || (h.momentum > 0.0 && h.dampening == 0.0), ValueError,
                 "sgd: Nesterov momentum requires a momentum and zero dampening, got momentum ", h.momentum,
                 " and dampening ", h.dampening);
}

/// The group's rounding against its buffers: Kahan needs a compensation buffer and no master.
inline void check_rounding(const char* op, UpdateRounding r, bool has_master, bool has_compensation) {
  const int v = static_cast<int>(r);
  MIXTAPE_EXPECT(v >= 0 && v <= 2, ValueError, op, ": expected an UpdateRounding value in [0, 2], got ", v);
  if (r == UpdateRounding::kahan) {
    MIXTAPE_EXPECT(has_compensation, ValueError, op,
                   ": Kahan rounding needs a compensation buffer (the group's `compensation`), got none");
    MIXTAPE_EXPECT(!has_master, ValueError, op,
                   ": Kahan rounding compensates the parameter itself, expected no master copy, got one");
  } else {
    MIXTAPE_EXPECT(!has_compensation, ValueError, op, ": a compensation buffer is used only with Kahan rounding, got one with ",
                   v == 0 ? "nearest" : "stochastic", " rounding");
  }
}

/// Every check of an AdamW group (before anything runs, so a bad group changes nothing).
template <class P, class G, class M1, class M2, class W, class C>
void check_group(const ExecutionContext& ctx, const StepScalarsView& s, const AdamWGroup<P, G, M1, M2, W, C>& group,
                 const AdamWHyper& hyper, const UpdateOptions& options) {
  constexpr const char* kOp = "adamw";
  expect_scalars(kOp, ctx, s);
  check_hyper(hyper);
  const SegmentTable* table = group.segments;
  expect_table(kOp, ctx, table);
  const std::int64_t n = group.param.numel();
  expect_buffer(kOp, "the parameter", ctx, group.param, table, slot::param, n);
  expect_buffer(kOp, "the gradient", ctx, group.grad, table, slot::grad, n);
  expect_buffer(kOp, "exp_avg", ctx, group.exp_avg, table, slot::moment1, n);
  expect_buffer(kOp, "exp_avg_sq", ctx, group.exp_avg_sq, table, slot::moment2, n);
  if (group.master.defined()) expect_buffer(kOp, "the master copy", ctx, group.master, table, slot::master, n);
  if (group.compute.defined()) expect_buffer(kOp, "the compute copy", ctx, group.compute, table, slot::compute, n);
  if (group.compensation.defined())
    expect_buffer(kOp, "the compensation buffer", ctx, group.compensation, table, slot::compensation, n);
  check_rounding(kOp, options.rounding, group.master.defined(), group.compensation.defined());
}

/// Every check of an SGD group.
template <class P, class G, class M1, class W, class C>
void check_group(const ExecutionContext& ctx, const StepScalarsView& s, const SgdGroup<P, G, M1, W, C>& group,
                 const SgdHyper& hyper, const UpdateOptions& options) {
  constexpr const char* kOp = "sgd";
  expect_scalars(kOp, ctx, s);
  check_hyper(hyper);
  const SegmentTable* table = group.segments;
  expect_table(kOp, ctx, table);
  const std::int64_t n = group.param.numel();
  expect_buffer(kOp, "the parameter", ctx, group.param, table, slot::param, n);
  expect_buffer(kOp, "the gradient", ctx, group.grad, table, slot::grad, n);
  if (hyper.momentum != 0.0) {
    MIXTAPE_EXPECT(group.momentum_buffer.defined(), ValueError, "sgd: momentum ", hyper.momentum,
                   " needs a momentum buffer, got none");
    expect_buffer(kOp, "the momentum buffer", ctx, group.momentum_buffer, table, slot::moment1, n);
  }
  if (group.master.defined()) expect_buffer(kOp, "the master copy", ctx, group.master, table, slot::master, n);
  if (group.compute.defined()) expect_buffer(kOp, "the compute copy", ctx, group.compute, table, slot::compute, n);
  if (group.compensation.defined())
    expect_buffer(kOp, "the compensation buffer", ctx, group.compensation, table, slot::compensation, n);
  check_rounding(kOp, options.rounding, group.master.defined(), group.compensation.defined());
}

/// The gradients of a type-erased list: storage on the context's device, dense, floating.
inline void expect_grads(const char* op, const ExecutionContext& ctx, std::span<const TensorRef> grads) {
  for (std::size_t k = 0; k < grads.size(); ++k) {
    const TensorRef& g = grads[k];
    MIXTAPE_EXPECT(g.defined(), ValueError, op, ": expected gradient ", k, " to have storage, got an empty handle");
    MIXTAPE_EXPECT(g.device() == ctx.device(), DeviceError, op, ": gradient ", k, " must be on the context's device, expected ",
                   ctx.device(), ", got ", g.device());
    MIXTAPE_EXPECT(is_floating(g.dtype()), DTypeError, op, ": gradient ", k,
                   " must be floating-point (f64, f32, f16, bf16, e4m3, e5m2), got ", g.dtype());
    MIXTAPE_EXPECT(g.is_contiguous(), ShapeError, op, ": gradient ", k, " must be a dense buffer, got a strided view of shape ",
                   g.shape());
  }
}

/// Calls f.template operator()<T>() with the element type of a floating dtype (checked before).
template <class F>
void visit_float(DType dtype, F&& f) {
  visit_dtype(dtype, [&]<class T>() {
    if constexpr (FloatElement<T>) f.template operator()<T>();
  });
}

template <class T>
T* data_or_null(const Tensor<T>& t) noexcept {
  return t.defined() ? t.data() : nullptr;
}

/// Address of a float field of the step scalars (device or host memory; no dereference).
inline float* scalar_field(StepScalarValues* s, std::size_t offset) noexcept {
  return reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(s) + offset);
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

namespace impl {

/// Runs a multi-tensor operation over a group of n elements on the context's backend; reporting
/// operations set *found_inf (in the step scalars) when they see a non-finite value.
template <class Op>
void run_multi_tensor(const char* name, const ExecutionContext& ctx, const Op& op, const SegmentTable* segments,
                      std::int64_t n, float* found_inf) {
  if (n == 0) return;
  const OptimizerChunk* chunks = segments != nullptr ? segments->chunks() : nullptr;
  const std::int64_t nchunks = segments != nullptr ? segments->chunk_count() : detail::implicit_chunks(n);
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    (void)name;
    detail::gpu::multi_tensor(ctx, op, chunks, nchunks, n, found_inf);
#else
    (void)op;
    (void)chunks;
    (void)found_inf;
    detail::throw_needs_cu(name, ctx.device());
#endif
    return;
  }
  if (detail::multi_tensor_host(ctx.pool(), op, chunks, nchunks, n) && found_inf != nullptr) *found_inf = 1.0f;
}

/// Runs f(values) in one device thread (or on the host) on the context's stream.
template <class F>
void update_scalars(const char* name, const ExecutionContext& ctx, const StepScalarsView& s, const F& f) {
  detail::expect_scalars(name, ctx, s);
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::scalar_update(ctx, f, s.values);
#else
    (void)f;
    detail::throw_needs_cu(name, ctx.device());
#endif
    return;
  }
  f(*s.values);
}

}  // namespace impl

/// Counts the coming update: step += 1, or skipped += 1 when found_inf is set. Call once per
/// optimizer step, before the groups' updates (`adamw_step` and `sgd_step` do).
inline void advance_step(const ExecutionContext& ctx, const StepScalarsView& s) {
  impl::update_scalars("advance_step", ctx, s, detail::AdvanceStepFn{});
}

/// lr = schedule(iteration), iteration += 1, on the device: a captured graph advances the schedule
/// by itself. Warmup and the constant and linear decays give the same bits on host and CUDA;
/// cosine uses each side's cos in double, so the float lr may differ by an ulp in rare cases.
inline void apply_lr_schedule(const ExecutionContext& ctx, const StepScalarsView& s, const LrSchedule& schedule) {
  MIXTAPE_EXPECT(schedule.warmup_steps >= 0 && schedule.decay_steps >= 0, ValueError,
                 "apply_lr_schedule: expected non-negative warmup_steps and decay_steps, got ", schedule.warmup_steps,
                 " and ", schedule.decay_steps);
  const int d = static_cast<int>(schedule.decay);
  MIXTAPE_EXPECT(d >= 0 && d <= 2, ValueError, "apply_lr_schedule: expected an LrDecay value in [0, 2], got ", d);
  impl::update_scalars("apply_lr_schedule", ctx, s, detail::ScheduleFn{schedule});
}

/// The AdamW update of one group (optimizer_ops.hpp: AdamWOp gives the formulas), reading lr,
/// step, found_inf and the gradient factors from the step scalars. Call advance_step first (once
/// for all groups of a step), or use adamw_step.
/// @tparam U  the update math: float or double (a policy's update_math_type)
/// @tparam P, G, M1, M2, W, C  the group's element types (deduced; see AdamWGroup)
/// @throws ShapeError / DeviceError / ValueError for buffers that do not fit the group; ValueError
///         for invalid hyperparameters or a rounding the buffers do not support.
template <class U = float, class P, class G, class M1, class M2, class W, class C>
void adamw_update(const ExecutionContext& ctx, const StepScalarsView& s, const AdamWGroup<P, G, M1, M2, W, C>& group,
                  const AdamWHyper& hyper, const UpdateOptions& options = {}) {
  static_assert(std::is_same_v<U, float> || std::is_same_v<U, double>, "adamw_update: the update math is float or double");
  detail::check_group(ctx, s, group, hyper, options);
  const std::int64_t n = group.param.numel();
  auto run = [&]<UpdateRounding R>() {
    detail::AdamWOp<U, R, P, G, M1, M2, W, C> op{
        {group.param.data(), detail::data_or_null(group.master), detail::data_or_null(group.compute),
         detail::data_or_null(group.compensation)},
        group.grad.data(), group.exp_avg.data(), group.exp_avg_sq.data(), s.values, hyper, options.factors,
        ctx.seed(), group.rng_stream};
    impl::run_multi_tensor("adamw_update", ctx, op, group.segments, n, nullptr);
  };
  switch (options.rounding) {
    case UpdateRounding::stochastic: run.template operator()<UpdateRounding::stochastic>(); break;
    case UpdateRounding::kahan: run.template operator()<UpdateRounding::kahan>(); break;
    case UpdateRounding::nearest: run.template operator()<UpdateRounding::nearest>(); break;
  }
  for (const auto* t : {&group.param.storage(), &group.exp_avg.storage(), &group.exp_avg_sq.storage(),
                        &group.master.storage(), &group.compute.storage(), &group.compensation.storage()})
    if (*t) (*t)->bump_version();
}

/// One AdamW optimizer step: every group checked, advance_step, then adamw_update for every group.
/// The step counter lives in the step scalars, so all groups of a model go into one call (one
/// optimizer per StepScalars); mixing AdamW and SGD groups means one advance_step, then
/// adamw_update and sgd_update.
/// @code
///   kernels::adamw_step(ctx, scalars, {.beta1 = 0.9, .beta2 = 0.95, .weight_decay = 0.1}, {}, group);
/// @endcode
/// @tparam U       the update math: float or double
/// @tparam Groups  AdamWGroup types
template <class U = float, class... Groups>
void adamw_step(const ExecutionContext& ctx, const StepScalarsView& s, const AdamWHyper& hyper,
                const UpdateOptions& options, const Groups&... groups) {
  (detail::check_group(ctx, s, groups, hyper, options), ...);  // all groups valid before the step counts
  advance_step(ctx, s);
  (adamw_update<U>(ctx, s, groups, hyper, options), ...);
}

/// The SGD update of one group (optimizer_ops.hpp: SgdOp), reading lr, step, found_inf and the
/// gradient factors from the step scalars. The momentum buffer starts as the gradient at step 1.
/// @tparam U  the update math: float or double
/// @tparam P, G, M1, W, C  the group's element types (deduced; see SgdGroup)
template <class U = float, class P, class G, class M1, class W, class C>
void sgd_update(const ExecutionContext& ctx, const StepScalarsView& s, const SgdGroup<P, G, M1, W, C>& group,
                const SgdHyper& hyper, const UpdateOptions& options = {}) {
  static_assert(std::is_same_v<U, float> || std::is_same_v<U, double>, "sgd_update: the update math is float or double");
  detail::check_group(ctx, s, group, hyper, options);
  const std::int64_t n = group.param.numel();
  auto run = [&]<UpdateRounding R>() {
    detail::SgdOp<U, R, P, G, M1, W, C> op{
        {group.param.data(), detail::data_or_null(group.master), detail::data_or_null(group.compute),
         detail::data_or_null(group.compensation)},
        group.grad.data(), hyper.momentum != 0.0 ? group.momentum_buffer.data() : nullptr, s.values, hyper,
        options.factors, ctx.seed(), group.rng_stream};
    impl::run_multi_tensor("sgd_update", ctx, op, group.segments, n, nullptr);
  };
  switch (options.rounding) {
    case UpdateRounding::stochastic: run.template operator()<UpdateRounding::stochastic>(); break;
    case UpdateRounding::kahan: run.template operator()<UpdateRounding::kahan>(); break;
    case UpdateRounding::nearest: run.template operator()<UpdateRounding::nearest>(); break;
  }
  for (const auto* t : {&group.param.storage(), &group.momentum_buffer.storage(), &group.master.storage(),
                        &group.compute.storage(), &group.compensation.storage()})
    if (*t) (*t)->bump_version();
}

/// One SGD optimizer step: every group checked, advance_step, then sgd_update for every group.
/// @tparam U       the update math: float or double
/// @tparam Groups  SgdGroup types
template <class U = float, class... Groups>
void sgd_step(const ExecutionContext& ctx, const StepScalarsView& s, const SgdHyper& hyper, const UpdateOptions& options,
              const Groups&... groups) {
  (detail::check_group(ctx, s, groups, hyper, options), ...);
  advance_step(ctx, s);
  (sgd_update<U>(ctx, s, groups, hyper, options), ...);
}

/// inv_scale = float(1 / double(loss_scale)), found_inf = 0: the start of GradScaler.unscale_.
inline void begin_unscale(const ExecutionContext& ctx, const StepScalarsView& s) {
  impl::update_scalars("begin_unscale", ctx, s, detail::BeginUnscaleFn{});
}

/// torch's _amp_foreach_non_finite_check_and_unscale_ over every gradient (one launch per
/// gradient buffer): found_inf = 1 when an element is inf or NaN (checked before the multiply);
/// when `write`, g = g * inv_scale in float (double for f64), rounded to g's type.
inline void unscale_and_check(const ExecutionContext& ctx, const StepScalarsView& s, std::span<const TensorRef> grads,
                              bool write = true) {
  detail::expect_scalars("unscale", ctx, s);
  detail::expect_grads("unscale", ctx, grads);
  float* found_inf = detail::scalar_field(s.values, offsetof(StepScalarValues, found_inf));
  for (const TensorRef& g : grads) {
    detail::visit_float(g.dtype(), [&]<class T>() {
      const Tensor<T> t = g.template as<T>();
      impl::run_multi_tensor("unscale", ctx, detail::UnscaleOp<T>{t.data(), s.values, write}, nullptr, t.numel(),
                             found_inf);
      if (write) t.storage()->bump_version();
    });
  }
}

/// The global L2 norm of all gradients into grad_norm, and clip_coef = min(1, max_norm / (norm +
/// 1e-6)) (torch's clip_grad_norm_), both in the step scalars; nothing is multiplied. Squares are
/// summed in double per fixed block, the block partials in a fixed order; NaN and inf propagate
/// to the norm and the coefficient.
/// @param grads_scaled     the gradients still carry the loss scale: each is multiplied by inv_scale
///                         first, as the in-place unscale would store it (a deferred unscale, with
///                         the in-place one's bits)
/// @param flag_nonfinite   set found_inf when the norm is not finite (skip the step without a scaler)
inline void grad_norm(const ExecutionContext& ctx, const StepScalarsView& s, std::span<const TensorRef> grads,
                      double max_norm, bool grads_scaled = false, bool flag_nonfinite = false) {
  detail::expect_scalars("grad_norm", ctx, s);
  detail::expect_grads("grad_norm", ctx, grads);
  MIXTAPE_EXPECT(max_norm > 0.0 && max_norm < std::numeric_limits<double>::infinity(), ValueError,
                 "grad_norm: expected a positive finite max_norm, got ", max_norm);
  const float max_f = detail::cast<float>(max_norm);
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    std::int64_t count = 0;
    for (const TensorRef& g : grads) count += detail::gpu::norm_blocks(g.numel());
    auto partials = Tensor<double>::empty(ctx, {std::max<std::int64_t>(count, 1)}, MemoryRole::workspace);
    std::int64_t offset = 0;
    for (const TensorRef& g : grads) {
      detail::visit_float(g.dtype(), [&]<class T>() {
        const Tensor<T> t = g.template as<T>();
        detail::gpu::norm_partials(ctx, t.data(), t.numel(), s.values, grads_scaled, partials.data() + offset);
        offset += detail::gpu::norm_blocks(t.numel());
      });
    }
    detail::gpu::norm_finish(ctx, partials.data(), count, s.values, max_f, flag_nonfinite);
#else
    detail::throw_needs_cu("grad_norm", ctx.device());
#endif
    return;
  }
  const float inv = s.values->inv_scale;
  std::vector<double> partials;
  for (const TensorRef& g : grads) {
    detail::visit_float(g.dtype(), [&]<class T>() {
      const Tensor<T> t = g.template as<T>();
      const std::size_t at = partials.size();
      partials.resize(at + static_cast<std::size_t>(detail::norm_host_partials(t.numel())));
      detail::norm_partials_host(ctx.pool(), t.data(), t.numel(), inv, grads_scaled, partials.data() + at);
    });
  }
  double total = 0.0;
  for (double p : partials) total += p;
  detail::finish_grad_norm(*s.values, total, max_f, flag_nonfinite);
}

/// g = g * clip_coef for every gradient (torch's in-place clip; float math, double for f64).
inline void scale_by_clip_coef(const ExecutionContext& ctx, const StepScalarsView& s, std::span<const TensorRef> grads) {
  detail::expect_scalars("clip", ctx, s);
  detail::expect_grads("clip", ctx, grads);
  float* coef = detail::scalar_field(s.values, offsetof(StepScalarValues, clip_coef));
  for (const TensorRef& g : grads) {
    detail::visit_float(g.dtype(), [&]<class T>() {
      const Tensor<T> t = g.template as<T>();
      impl::run_multi_tensor("clip", ctx, detail::ScaleByScalarOp<T>{t.data(), coef}, nullptr, t.numel(), nullptr);
      t.storage()->bump_version();
    });
  }
}

/// out = in * loss_scale (GradScaler.scale: float math, double for f64), rounded to T. `out` may
/// be `in`.
/// @tparam T  a floating element type
template <FloatElement T>
void scale_by_loss_scale(const ExecutionContext& ctx, const StepScalarsView& s, const Tensor<T>& in,
                         const Tensor<T>& out) {
  detail::expect_scalars("scale_loss", ctx, s);
  detail::expect_flat("scale_loss", "the input", ctx, in, in.numel());
  detail::expect_flat("scale_loss", "the output", ctx, out, in.numel());
  impl::run_multi_tensor("scale_loss", ctx, detail::ScaleLossOp<T>{in.data(), out.data(), s.values}, nullptr,
                         in.numel(), nullptr);
  out.storage()->bump_version();
}

/// torch's _amp_update_scale_ on the device: on found_inf, scale *= backoff and tracker = 0;
/// else tracker += 1 and, at growth_interval, scale *= growth (unless that overflows) and
/// tracker = 0.
inline void update_loss_scale(const ExecutionContext& ctx, const StepScalarsView& s, double growth, double backoff,
                              std::int32_t interval) {
  impl::update_scalars("update_loss_scale", ctx, s, detail::UpdateLossScaleFn{growth, backoff, interval});
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
