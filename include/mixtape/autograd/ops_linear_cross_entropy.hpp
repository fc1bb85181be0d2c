/// @file ops_linear_cross_entropy.hpp
/// @brief `linear_cross_entropy`: the mean cross-entropy of the logits h W^T against integer
///        targets, without ever holding more than one chunk of rows of logits (the LM head and its
///        loss of a GPT, whose full (B*T, V) logits and their gradient would dominate memory).
///
/// Equal in value and gradients to `cross_entropy(tape, linear(tape, h, W), targets)` with the same
/// rounding points: the logits are rounded to T (the compute type), the logits' gradient is formed
/// in T. Per chunk of rows, the forward
///  1. forms logits = h_chunk W^T in a reusable (rows, V) buffer of T,
///  2. writes that chunk's per-row losses and logsumexp and, when a gradient is needed, overwrites
///     the logits with p - onehot in T in the same pass (kernels::cross_entropy_rows_grad: the
///     gradient of the chunk's sum, so that no 1/N is applied in T: values in [-1, 1] fit every half
///     format; on CUDA one read of the logits and one write),
///  3. and accumulates dH = (p - onehot) W and dW = (p - onehot)^T h in the accumulate type A (f32;
///     f64 for f64) by GEMMs.
/// The loss is the mean over all N rows (kernels::cross_entropy_mean: the same bits as the unfused
/// forward). The backward only scales: dh = dH * dloss / N and dW * dloss / N are written, or
/// accumulated, into h's and W's gradients in their gradient types (a tied table's compute copy
/// routes to the parameter's f32 gradient like `linear`, so both of its uses add up).
///
/// Why the gradient is formed in the forward and scaled afterwards: with dloss and N powers of two
/// (a loss scale 2^16, N = B*T), rounding p - onehot to T and scaling exactly by dloss / N gives
/// the values the unfused path's rounded dloss (p - onehot) / N gives, so the two agree (bit for bit
/// on the host with one chunk); where a half format would underflow the unfused path's tiny
/// values, this one keeps them.
///
/// Memory (N rows, C features, V classes, chunk rows R): one (R, V) chunk of logits in T, the
/// per-row losses and lse (2 N of L) during the forward; with a gradient, dH (N, C) and dW (V, C)
/// in A, held until backward (or the tape's clear). Peak: R V sizeof(T) + (N + V) C sizeof(A)
/// + 2 N sizeof(L). GPT-2 small in bf16 (N = 16384, C = 768, V = 50304, R = 2048): 197 MiB + 48 MiB
/// + 147 MiB, against 3.3 GB of logits and their gradient unfused. Without a gradient (no-grad
/// mode, or neither h nor W requires one) only the loss is computed and nothing is saved.
///
/// @code
///   auto loss = autograd::linear_cross_entropy(tape, h, w, targets);   // h (N, C), w (V, C), targets (N)
///   autograd::backward(tape, loss);                                    // h's and w's gradients
/// @endcode
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "mixtape/autograd/ops_linear.hpp"
#include "mixtape/kernels/loss.hpp"

namespace mixtape::autograd {

/// Options of `linear_cross_entropy`.
struct LinearCrossEntropyOptions {
  /// Rows of logits formed at a time; 0 picks kLinearCrossEntropyChunkRows, fewer where those would
  /// take more than kLinearCrossEntropyChunkBytes of the compute type, spread evenly over the chunks
  /// (a multiple of 8 rows when that is at least 8, for aligned GEMM operands).
  std::int64_t chunk_rows = 0;
};

/// Rows of the default chunk. Each chunk's dW GEMM reads and writes the (V, C) accumulator in f32,
/// 8 V C bytes, against 2 R V C flops: the traffic hides under the math once R exceeds about
/// 4 x (flop rate / bandwidth), ~870 rows on an H100 (~650 TFLOP/s in bf16, ~3 TB/s). Measured there
/// on GPT-2 small bf16-mixed (bench/NOTES.md): 664-row chunks 44.1 ms a step, 2048-row chunks 41.3 ms
/// for 133 MiB more.
inline constexpr std::int64_t kLinearCrossEntropyChunkRows = 2048;

/// The most memory the default chunk of logits may take.
inline constexpr std::int64_t kLinearCrossEntropyChunkBytes = std::int64_t{256} << 20;

namespace detail {

/// Rows per chunk for N rows of V classes of `elem_bytes` each (see LinearCrossEntropyOptions).
inline std::int64_t linear_cross_entropy_chunk(std::int64_t requested, std::int64_t rows, std::int64_t vocab,
                                               std::int64_t elem_bytes) {
  if (requested != 0) return std::min(requested, rows);
  const std::int64_t cap = std::min(kLinearCrossEntropyChunkRows,
                                    std::max<std::int64_t>(1, kLinearCrossEntropyChunkBytes / (vocab * elem_bytes)));
  // Even chunks: 16384 rows under a 1334-row cap are 13 chunks of 1264, not 12 of 1334 and one of 376.
  const std::int64_t chunks = (rows + cap - 1) / cap;
  std::int64_t r = (rows + chunks - 1) / chunks;
  if (r >= 8) {
    r = (r + 7) / 8 * 8;
    if (r > cap && cap >= 8) r = cap - cap % 8;  // rounding up must not pass the cap
  }
  return std::min(r, rows);
}

/// g = x * (dloss / n), dloss read on the op's device (no host synchronisation).
/// @tparam L the loss element type
template <class L>
struct ScaleByLossGrad {
  const L* dloss;
  std::int64_t n;
  template <class X>
  MIXTAPE_HOST_DEVICE kernels::compute_t<X, L> operator()(X x) const noexcept {
    using A = kernels::compute_t<X, L>;
    using kernels::detail::to_acc;
    return to_acc<A>(x) * (to_acc<A>(*dloss) / static_cast<A>(n));
  }
};

/// g = x * (dloss / n) + g, one fma (the same bits on host and CUDA).
/// @tparam L the loss element type
template <class L>
struct ScaleByLossGradAccumulate {
  const L* dloss;
  std::int64_t n;
  template <class X, class G>
  MIXTAPE_HOST_DEVICE kernels::compute_t<X, G, L> operator()(X x, G old) const noexcept {
    using A = kernels::compute_t<X, G, L>;
    using kernels::detail::to_acc;
    return kernels::detail::fma_exact<A>(to_acc<A>(x), to_acc<A>(*dloss) / static_cast<A>(n), to_acc<A>(old));
  }
};

}  // namespace detail

MIXTAPE_BACKEND_BEGIN
namespace nodes {

/// g (+)= src * dloss / n in g's type. // src, g: one shape
template <class A, class L, class G>
void write_scaled_grad(const ExecutionContext& ctx, const Tensor<A>& src, const Tensor<L>& dloss, std::int64_t n,
                       const Tensor<G>& g, bool accumulate) {
  if (accumulate) {
    kernels::map(ctx, autograd::detail::ScaleByLossGradAccumulate<L>{dloss.data(), n}, g, src, g);
  } else {
    kernels::map(ctx, autograd::detail::ScaleByLossGrad<L>{dloss.data(), n}, g, src);
  }
}

/// @tparam T  the compute type of h, W and the logits
/// @tparam A  the accumulate type of the saved gradients, also the loss type
template <GradElement T, class A>
struct LinearCrossEntropyNode final : Node {
  Tensor<A> dh, dw;  // (N, C), (V, C): the sums of (p - onehot) products, before dloss / N
  std::int64_t rows;
  LinearCrossEntropyNode(Tensor<A> h, Tensor<A> w, std::int64_t n) : dh(std::move(h)), dw(std::move(w)), rows(n) {}
  const char* name() const noexcept override { return "linear_cross_entropy"; }
  void backward(Tape& tape) override {
    const auto dloss = out_grad<A>(tape, *this);  // device scalar: a loss scale folds in here
    if (dh.defined())
      write_grad<T>(tape, inputs[0], [&](const auto& g, bool acc) { write_scaled_grad(tape.ctx(), dh, dloss, rows, g, acc); });
    if (dw.defined())
      write_grad<T>(tape, inputs[1], [&](const auto& g, bool acc) { write_scaled_grad(tape.ctx(), dw, dloss, rows, g, acc); });
  }
};

}  // namespace nodes

/// Mean cross-entropy of the logits h W^T against `targets`, one chunk of rows of logits at a time;
/// in f32 (f64 for f64). Equals `cross_entropy(tape, linear(tape, h, weight), targets)`.
/// // h (N, C), weight (V, C), targets (N) int32/int64 in [0, V) -> (1)
/// @throws ShapeError for mismatched shapes, DeviceError for operands off the tape's device,
///         ValueError for a negative chunk_rows or (host) an out-of-range target (naming its row;
///         CUDA makes that row's loss and gradients NaN, as cross_entropy does).
template <GradElement T, class I>
Var<kernels::compute_t<T>> linear_cross_entropy(Tape& tape, const Var<T>& h, const Var<T>& weight, const Tensor<I>& targets,
                                                const LinearCrossEntropyOptions& options = {}) {
  constexpr const char* kOp = "linear_cross_entropy";
  using L = kernels::compute_t<T>;
  const ExecutionContext& ctx = tape.ctx();
  MIXTAPE_EXPECT(weight.shape().rank() == 2 && weight.shape()[0] >= 1 && weight.shape()[1] >= 1, ShapeError, kOp,
                 ": expected a weight (V, C) with V, C >= 1, got ", weight.shape());
  const std::int64_t v = weight.shape()[0], c = weight.shape()[1];
  MIXTAPE_EXPECT(h.shape().rank() == 2 && h.shape()[1] == c && h.shape()[0] >= 1, ShapeError, kOp, ": expected h (N, ", c,
                 ") with N >= 1 for a weight ", weight.shape(), ", got ", h.shape());
  const std::int64_t n = h.shape()[0];
  MIXTAPE_EXPECT(targets.defined() && targets.shape() == Shape{n}, ShapeError, kOp, ": expected targets of shape (", n,
                 "), got ", targets.defined() ? targets.shape().to_string() : std::string("an empty handle"));
  MIXTAPE_EXPECT(options.chunk_rows >= 0, ValueError, kOp, ": expected chunk_rows >= 0 (0: the default), got ",
                 options.chunk_rows);
  MIXTAPE_EXPECT(h.device() == ctx.device() && weight.device() == ctx.device() && targets.device() == ctx.device(),
                 DeviceError, kOp, ": expected every operand on the tape's device ", ctx.device(), ", got h on ",
                 h.device(), ", weight on ", weight.device(), ", targets on ", targets.device());
  MIXTAPE_EXPECT(targets.is_contiguous(), ShapeError, kOp, ": expected contiguous targets");
  // Checked before anything runs, so the message names the batch's row, not a chunk's.
  if (!ctx.is_cuda()) kernels::detail::expect_indices_in_range(kOp, "target", targets.data(), n, v);

  const bool grad_h = h.requires_grad() && tape.recording();
  const bool grad_w = weight.requires_grad() && tape.recording();
  auto y = autograd::detail::make_output<L>(tape, Shape{1}, h.device(), grad_h || grad_w);
  const Tensor<T> hc = h.value().is_contiguous() ? h.value() : kernels::contiguous(ctx, h.value());
  const Tensor<T> w = weight.value();
  const std::int64_t chunk = detail::linear_cross_entropy_chunk(options.chunk_rows, n, v, sizeof(T));
  auto logits = Tensor<T>::empty(ctx, Shape{chunk, v}, MemoryRole::workspace);
  auto losses = Tensor<L>::empty(ctx, Shape{n}, MemoryRole::workspace);
  auto lse = Tensor<L>::empty(ctx, Shape{n}, MemoryRole::workspace);
  Tensor<L> dh, dw;
  if (grad_h) dh = Tensor<L>::empty(ctx, Shape{n, c}, MemoryRole::activations);
  if (grad_w) dw = Tensor<L>::empty(ctx, Shape{v, c}, MemoryRole::activations);
  for (std::int64_t r0 = 0; r0 < n; r0 += chunk) {
    const std::int64_t r = std::min(chunk, n - r0);
    const Tensor<T> z = logits.slice(0, 0, r);  // (r, V)
    const Tensor<T> hr = hc.slice(0, r0, r);    // (r, C)
    const Tensor<I> tr = targets.slice(0, r0, r);
    const Tensor<L> lr = lse.slice(0, r0, r);
    blas::matmul(ctx, hr, w.transposed(), z);
    if (!grad_h && !grad_w) {
      kernels::cross_entropy_rows(ctx, z, tr, losses.slice(0, r0, r), lr);
      continue;
    }
    kernels::cross_entropy_rows_grad(ctx, z, tr, losses.slice(0, r0, r), lr, z);  // z becomes p - onehot
    if (grad_h) blas::matmul(ctx, z, w, dh.slice(0, r0, r));  // (r, V) (V, C)
    if (grad_w) {
      blas::MatmulOptions o;
      o.beta = r0 == 0 ? 0.0 : 1.0;
      blas::matmul(ctx, z.transposed(), hr, dw, o);  // (V, r) (r, C)
    }
  }
  kernels::cross_entropy_mean(ctx, losses, y.value());
  if (y.requires_grad())
    tape.record<nodes::LinearCrossEntropyNode<T, L>>(std::array{h.slot(), weight.slot()}, std::array{y.slot()}, dh, dw, n);
  return y;
}

MIXTAPE_BACKEND_END
}  // namespace mixtape::autograd
