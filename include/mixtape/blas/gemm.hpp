/// @file gemm.hpp
/// @brief One GEMM interface for every format: `blas::gemm(ctx, GemmDesc)` on raw pointers and
///        `blas::matmul(ctx, a, b, c, options)` on tensor views, with cuBLASLt on CUDA and a packed,
///        vectorised, multi-threaded host GEMM that is also the reference.
///
/// Row-major like PyTorch: C = epilogue(alpha * op(A) op(B) + beta * C), op = identity or
/// transpose, optional strided batch (gemm_types.hpp has the descriptor and the epilogues).
///
/// @code
///   blas::matmul(ctx, x, w.transposed(), y);                         // y = x W^T (Linear, no copy)
///   blas::MatmulOptions o;  o.epilogue = blas::Epilogue::bias_gelu_aux;
///   o.bias = b;  o.aux = pre;  blas::matmul(ctx, x, w.transposed(), h, o);  // h = gelu(x W^T + b)
///   blas::matmul(ctx, q, k.transposed(), att);                        // (B*H, T, D) x (B*H, D, T)
/// @endcode
///
/// Backends (what runs where):
///  - host (a context on the CPU): detail/gemm_host.hpp. f32 accumulation for f32 / f16 / bf16
///    operands, f64 for f64. Kernels picked at run time: AVX-512 (bf16 through `vdpbf16ps` on AMD
///    CPUs with AVX512_BF16, where it is twice as fast), AVX2 + FMA, or portable C++; epilogues,
///    bias gradients and amax on the host. Bitwise identical for any thread count (one kernel
///    family). `allow_tf32` is ignored (full f32). Measured on a 2-core AMD EPYC (Zen 5): about 205
///    GFLOP/s per core in f32 and 405 in bf16, 90% of the cores' FMA / dot-product peak.
///  - CUDA (a `.cu` unit, a CUDA context): detail/gemm_cuda.cuh. cuBLASLt with the epilogue fused
///    when cuBLASLt has an algorithm for it (every epilogue when bias / bias_grad have C's dtype,
///    or are f32 with f32 outputs; not GELUs of f64 GEMMs, which cuBLASLt evaluates to ~2^-32);
///    otherwise, and with `fuse_epilogue = false`, a plain cuBLASLt GEMM into an f32 / f64 buffer
///    and one epilogue kernel. Split-k partial sums are added in f32 unless
///    `allow_reduced_precision_reduction`. amax is a reduction kernel after the GEMM. A `.cpp`
///    unit given a CUDA context throws BackendError (docs/backends.md).
///
/// The cuBLASLt algorithm is chosen once per (device, shape, batch, strides, dtypes, transposes,
/// epilogue, bias type, aux layout, pointer alignments, workspace size, TF32, reduction schemes)
/// and cached for the process, shared by every context and handle on that device (heuristics
/// depend on the device and the problem, not the handle): the same problem always runs the same
/// algorithm, which keeps results run-to-run identical and lets a CUDA graph captured after a
/// first eager call replay exactly what eager mode ran (tested). `algo_cache_stats()` reports hits,
/// misses and the path each GEMM took.
///
/// Errors: ShapeError (sizes, leading dimensions, layouts), DTypeError (unsupported or mismatched
/// formats; FP8 operands are refused by name), DeviceError (a tensor off the context's device),
/// ValueError (missing or superfluous epilogue pointers, scale modes), BackendError.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>

#include "mixtape/blas/detail/gemm_host.hpp"
#include "mixtape/blas/detail/gemm_validate.hpp"
#include "mixtape/blas/gemm_types.hpp"
#include "mixtape/config.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"

#if defined(MIXTAPE_WITH_CUDA)
#include "mixtape/blas/detail/gemm_cublaslt.hpp"
#endif
#if MIXTAPE_HAS_KERNELS
#include "mixtape/blas/detail/gemm_cuda.cuh"
#endif

namespace mixtape::blas {

#if !defined(MIXTAPE_WITH_CUDA)
/// Counters of the cuBLASLt algorithm cache (always zero in a build without CUDA).
struct AlgoCacheStats {
  std::uint64_t hits = 0;     ///< lookups answered from the cache
  std::uint64_t misses = 0;   ///< heuristic queries (one per new key)
  std::uint64_t entries = 0;  ///< keys cached
  std::uint64_t fused = 0, plain = 0, separate = 0;  ///< CUDA GEMMs by path
};
inline AlgoCacheStats algo_cache_stats() noexcept { return {}; }
inline void clear_algo_cache() noexcept {}
#endif

/// Options of `matmul` (the tensor form of GemmDesc).
struct MatmulOptions {
  double alpha = 1.0;
  double beta = 0.0;                  ///< 0: C is not read
  Epilogue epilogue = Epilogue::none;
  TensorRef bias;                     ///< (n,): bias kinds
  TensorRef bias_grad;                ///< (n,) for dgelu_bgrad / bgrad_b, (m,) for bgrad_a
  TensorRef aux;                      ///< C's shape and dtype: *_aux kinds write it, dgelu* read it
  Tensor<float> amax;                 ///< one element: receives max |C| (on C's device)
  bool allow_tf32 = false;            ///< or the context's ContextOptions::allow_tf32
  bool allow_reduced_precision_reduction = false;  ///< see GemmDesc
  bool fast_accumulation = false;     ///< FP8 only: accepted and ignored
  bool fuse_epilogue = true;
  HostIsa host_isa = HostIsa::best;
};

namespace detail {

/// How a rank-2 view (rows x cols with strides sr, sc) is read by a GEMM: row-major with ld, or the
/// transpose of a row-major matrix (a column-major view, e.g. `w.transposed()`).
struct MatrixLayout {
  bool transpose = false;
  std::int64_t ld = 1;
};

inline MatrixLayout matrix_layout(const char* op, const char* what, std::int64_t rows, std::int64_t cols, std::int64_t sr,
                                  std::int64_t sc) {
  MIXTAPE_EXPECT(sr >= 0 && sc >= 0, ShapeError, op, ": ", what, " has negative strides (", sr, ", ", sc, ")");
  if ((cols <= 1 || sc == 1) && (rows <= 1 || sr >= cols)) return {false, std::max<std::int64_t>({rows <= 1 ? cols : sr, cols, 1})};
  if ((rows <= 1 || sr == 1) && (cols <= 1 || sc >= rows)) return {true, std::max<std::int64_t>({cols <= 1 ? rows : sc, rows, 1})};
  MIXTAPE_THROW(ShapeError, op, ": ", what, " is a (", rows, ", ", cols, ") view with strides (", sr, ", ", sc,
                "): expected a row-major matrix (unit stride along the last dimension) or a transposed one (unit stride ",
                "along the second-to-last), whose other stride is at least the extent it spans; copy it with ",
                "kernels::contiguous first");
}

inline void expect_on(const char* op, const char* what, const ExecutionContext& ctx, const mixtape::detail::TensorBase& t) {
  MIXTAPE_EXPECT(t.defined(), ValueError, op, ": expected ", what, " to have storage, got an empty handle");
  MIXTAPE_EXPECT(t.device() == ctx.device(), DeviceError, op, ": ", what, " must be on the context's device, expected ",
                 ctx.device(), ", got ", t.device());
}

/// A rank-1 vector of `len` elements with unit stride.
inline void expect_vector(const char* op, const char* what, const mixtape::detail::TensorBase& t, std::int64_t len) {
  MIXTAPE_EXPECT(t.rank() == 1 && t.size(0) == len, ShapeError, op, ": expected ", what, " of shape (", len, "), got ",
                 t.shape());
  MIXTAPE_EXPECT(len <= 1 || t.stride(0) == 1, ShapeError, op, ": expected ", what, " with unit stride, got stride ",
                 t.stride(0));
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

/// Runs the GEMM `desc` on the context's device and stream. Pointers must address memory on the
/// context's device (the raw form trusts its caller; `matmul` checks tensors' devices). Host:
/// returns when done. CUDA: enqueued on ctx.stream(); nothing syncs.
inline void gemm(const ExecutionContext& ctx, const GemmDesc& desc) {
  detail::validate(desc, "gemm");
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::gemm(ctx, desc);
#else
    MIXTAPE_THROW(BackendError, "gemm: tensors on ", ctx.device(),
                  " need a .cu translation unit; this one was compiled by the host compiler");
#endif
    return;
  }
  detail::host::gemm(ctx.pool(), desc);
}

/// c = epilogue(alpha * a b + beta * c) on tensor views.
///
/// Shapes: a (m, k), b (k, n), c (m, n); or batched (batch, m, k), (batch, k, n), (batch, m, n),
/// where a rank-2 a or b is shared by every batch item. a and b may be row-major or transposed
/// views (`w.transposed()` is read in place through the transpose flag); c and aux are row-major.
/// @tparam TA, TB  operand element types (one of f64, f32, f16, bf16; equal)
/// @tparam TC      output element type (f32, f16, bf16; f64 with f64 operands)
template <ScalarElement TA, ScalarElement TB, ScalarElement TC>
void matmul(const ExecutionContext& ctx, const Tensor<TA>& a, const Tensor<TB>& b, const Tensor<TC>& c,
            const MatmulOptions& options = {}) {
  constexpr const char* op = "matmul";
  detail::expect_on(op, "A", ctx, a);
  detail::expect_on(op, "B", ctx, b);
  detail::expect_on(op, "C", ctx, c);
  MIXTAPE_EXPECT((a.rank() == 2 || a.rank() == 3) && (b.rank() == 2 || b.rank() == 3), ShapeError, op,
                 ": expected A and B of rank 2 or 3 (batched), got shapes ", a.shape(), " and ", b.shape());
  const int rank = std::max(a.rank(), b.rank());
  MIXTAPE_EXPECT(c.rank() == rank, ShapeError, op, ": expected C of rank ", rank, " for A ", a.shape(), " and B ", b.shape(),
                 ", got shape ", c.shape());
  const std::int64_t batch = rank == 3 ? c.size(0) : 1;
  if (a.rank() == 3)
    MIXTAPE_EXPECT(a.size(0) == batch, ShapeError, op, ": batch sizes differ: C has ", batch, ", A has shape ", a.shape());
  if (b.rank() == 3)
    MIXTAPE_EXPECT(b.size(0) == batch, ShapeError, op, ": batch sizes differ: C has ", batch, ", B has shape ", b.shape());
  const std::int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  MIXTAPE_EXPECT(b.size(-2) == k, ShapeError, op, ": inner dimensions differ: A ", a.shape(), " has k = ", k, ", so B needs ",
                 k, " rows, got B ", b.shape());
  MIXTAPE_EXPECT(c.size(-2) == m && c.size(-1) == n, ShapeError, op, ": expected C of (", m, ", ", n, ") per batch item for A ",
                 a.shape(), " and B ", b.shape(), ", got ", c.shape());

  GemmDesc d;
  d.m = m;
  d.n = n;
  d.k = k;
  d.batch = batch;
  const auto la = detail::matrix_layout(op, "A", m, k, a.stride(-2), a.stride(-1));
  d.a = {a.data(), dtype_v<TA>, la.transpose, la.ld, a.rank() == 3 ? a.stride(0) : 0, nullptr, ScaleMode::none};
  const auto lb = detail::matrix_layout(op, "B", k, n, b.stride(-2), b.stride(-1));
  d.b = {b.data(), dtype_v<TB>, lb.transpose, lb.ld, b.rank() == 3 ? b.stride(0) : 0, nullptr, ScaleMode::none};
  const auto lc = detail::matrix_layout(op, "C", m, n, c.stride(-2), c.stride(-1));
  MIXTAPE_EXPECT(!lc.transpose, ShapeError, op, ": C must be row-major (unit stride along its last dimension), got ",
                 "strides (", c.stride(-2), ", ", c.stride(-1), ")");
  d.c.data = c.data();
  d.c.dtype = dtype_v<TC>;
  d.c.ld = lc.ld;
  d.c.batch_stride = rank == 3 ? c.stride(0) : 0;
  d.c.beta = options.beta;
  d.alpha = options.alpha;
  d.allow_tf32 = options.allow_tf32 || ctx.allow_tf32();
  d.allow_reduced_precision_reduction = options.allow_reduced_precision_reduction;
  d.fast_accumulation = options.fast_accumulation;
  d.fuse_epilogue = options.fuse_epilogue;
  d.host_isa = options.host_isa;

  const Epilogue kind = options.epilogue;
  d.epilogue.kind = kind;
  if (options.bias.defined()) {
    detail::expect_on(op, "the bias", ctx, options.bias);
    detail::expect_vector(op, "the bias", options.bias, n);
    d.epilogue.bias = options.bias.data();
    d.epilogue.bias_dtype = options.bias.dtype();
  }
  if (options.bias_grad.defined()) {
    detail::expect_on(op, "bias_grad", ctx, options.bias_grad);
    detail::expect_vector(op, "bias_grad", options.bias_grad, kind == Epilogue::bgrad_a ? m : n);
    d.epilogue.bias_grad = options.bias_grad.data();
    d.epilogue.bias_grad_dtype = options.bias_grad.dtype();
  }
  if (options.aux.defined()) {
    detail::expect_on(op, "aux", ctx, options.aux);
    MIXTAPE_EXPECT(options.aux.dtype() == dtype_v<TC>, DTypeError, op, ": aux holds pre-activations in C's dtype, expected ",
                   dtype_name(dtype_v<TC>), ", got ", dtype_name(options.aux.dtype()));
    MIXTAPE_EXPECT(options.aux.shape() == c.shape(), ShapeError, op, ": expected aux of C's shape ", c.shape(), ", got ",
                   options.aux.shape());
    const auto lx = detail::matrix_layout(op, "aux", m, n, options.aux.stride(-2), options.aux.stride(-1));
    MIXTAPE_EXPECT(!lx.transpose, ShapeError, op, ": aux must be row-major, got strides (", options.aux.stride(-2), ", ",
                   options.aux.stride(-1), ")");
    d.epilogue.aux = options.aux.data();
    d.epilogue.aux_ld = lx.ld;
    d.epilogue.aux_batch_stride = rank == 3 ? options.aux.stride(0) : 0;
  }
  if (options.amax.defined()) {
    detail::expect_on(op, "amax", ctx, options.amax);
    MIXTAPE_EXPECT(options.amax.numel() == 1, ShapeError, op, ": expected a one-element amax, got shape ",
                   options.amax.shape());
    d.c.amax = options.amax.data();
  }
  gemm(ctx, d);
  c.storage()->bump_version();
  if (epilogue_writes_aux(kind)) options.aux.storage()->bump_version();
  if (epilogue_writes_bias_grad(kind)) options.bias_grad.storage()->bump_version();
  if (options.amax.defined()) options.amax.storage()->bump_version();
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::blas
