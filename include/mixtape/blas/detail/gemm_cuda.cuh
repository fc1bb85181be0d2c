/// @file gemm_cuda.cuh
/// @brief The CUDA GEMM (only in `.cu` units): cuBLASLt with the epilogue fused where cuBLASLt has
///        an algorithm for it, otherwise a plain cuBLASLt GEMM and a separate epilogue kernel; bias
///        gradients and amax by deterministic reduction kernels.
///
/// Row-major C (m x n, ld) is column-major C^T (n x m, same ld), so C = op(A) op(B) runs as
/// C^T = op(B)^T op(A)^T: cuBLASLt's A is our B and its B our A, with the same transpose flags and
/// leading dimensions. cuBLASLt's bias (length = rows of its D) is then our bias along n, its
/// BGRADA (reduce its A over k) our bgrad_b, its BGRADB our bgrad_a.
///
/// Paths, per call:
///  1. fused: one cublasLtMatmul with CUBLASLT_EPILOGUE_*, when `fuse_epilogue`, k > 0, the types
///     are a cuBLASLt combination (f64 -> f64; f32 -> f32; f16 -> f16 | f32; bf16 -> bf16 | f32)
///     and the heuristic returns an algorithm for the epilogue (the answer is cached per key);
///  2. plain + reduction: for no epilogue and bgrad_a / bgrad_b when (1) is not taken: a plain
///     cublasLtMatmul into C, and for the bias gradient a reduction of A or B over k;
///  3. separate epilogue: a plain cublasLtMatmul (alpha, beta = 0) into an f32 (f64 for f64
///     operands) buffer from the stream-ordered pool, then one kernel applies beta, bias, GELU,
///     aux, the GELU backward and rounds once into C; dgelu_bgrad sums that kernel's final values.
/// Every reduction is a warp per output summing a fixed strided subset in order and then a fixed
/// shuffle tree: no atomics on floating-point values, the same bits on every run. amax maxes |C|
/// per block and combines blocks with an integer atomicMax on the f32 bit patterns of |C|, which is
/// exact and order-independent (NaN's pattern is above inf's, so a NaN wins).
#pragma once

#if !defined(__CUDACC__)
#error "gemm_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <type_traits>

#include "mixtape/blas/detail/gelu.hpp"
#include "mixtape/blas/detail/gemm_cublaslt.hpp"
#include "mixtape/blas/gemm_types.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/elementwise_cuda.cuh"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::blas::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

using i64 = std::int64_t;
using kernels::detail::gpu::DeviceScope;
using kernels::detail::gpu::grid_for;

inline constexpr int kThreads = 256;

inline cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f64: return CUDA_R_64F;
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: MIXTAPE_THROW(DTypeError, "gemm: no cuBLASLt type for ", dtype_name(t));
  }
}

/// Element `i` of a vector of runtime dtype `t` (f64 / f32 / f16 / bf16) as Acc.
template <class Acc>
__device__ __forceinline__ Acc load_as(const void* p, DType t, i64 i) {
  using kernels::detail::to_acc;
  switch (t) {
    case DType::f64: return to_acc<Acc>(static_cast<const double*>(p)[i]);
    case DType::f32: return to_acc<Acc>(static_cast<const float*>(p)[i]);
    case DType::f16: return to_acc<Acc>(static_cast<const f16*>(p)[i]);
    default: return to_acc<Acc>(static_cast<const bf16*>(p)[i]);
  }
}
template <class Acc>
__device__ __forceinline__ void store_as(void* p, DType t, i64 i, Acc v) {
  using kernels::detail::cast;
  switch (t) {
    case DType::f64: static_cast<double*>(p)[i] = cast<double>(v); break;
    case DType::f32: static_cast<float*>(p)[i] = cast<float>(v); break;
    case DType::f16: static_cast<f16*>(p)[i] = cast<f16>(v); break;
    default: static_cast<bf16*>(p)[i] = cast<bf16>(v); break;
  }
}

/// Arguments of the separate epilogue kernel (path 3).
template <class Acc>
struct EpilogueArgs {
  Acc* tmp;  // batch x m x n, dense: alpha op(A) op(B) in, the final values out when keep
  i64 batch, m, n;
  void* c;
  i64 ldc, c_stride;
  Acc beta;
  const void* bias;
  DType bias_type;
  void* aux;
  i64 aux_ld, aux_stride;
  Epilogue kind;
  bool keep;
};

template <class Acc, class TC>
__global__ void __launch_bounds__(kThreads) epilogue_kernel(EpilogueArgs<Acc> a) {
  using kernels::detail::cast;
  using kernels::detail::to_acc;
  const i64 mn = a.m * a.n, total = a.batch * mn;
  const bool gelu = epilogue_gelu(a.kind), dgelu = epilogue_dgelu(a.kind), write_aux = epilogue_writes_aux(a.kind);
  for (i64 idx = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 bi = idx / mn, r = idx - bi * mn, i = r / a.n, j = r - i * a.n;
    Acc v = a.tmp[idx];
    TC* cp = static_cast<TC*>(a.c) + bi * a.c_stride + i * a.ldc + j;
    if (a.beta != Acc(0)) v += a.beta * to_acc<Acc>(*cp);
    if (a.bias != nullptr) v += load_as<Acc>(a.bias, a.bias_type, j);
    TC* xp = a.aux != nullptr ? static_cast<TC*>(a.aux) + bi * a.aux_stride + i * a.aux_ld + j : nullptr;
    if (write_aux) *xp = cast<TC>(v);
    if (gelu) {
      v = gelu_tanh(v);
    } else if (dgelu) {
      v *= gelu_tanh_grad(to_acc<Acc>(*xp));
    }
    *cp = cast<TC>(v);
    if (a.keep) a.tmp[idx] = v;
  }
}

/// out[o] = sum_{q < len} p[o * os + q * qs] (a warp per output, fixed order), written as out_type.
template <class Acc, class T>
__global__ void __launch_bounds__(kThreads) sum_k_kernel(const T* p, i64 count, i64 os, i64 len, i64 qs, void* out,
                                                         DType out_type) {
  using kernels::detail::to_acc;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const i64 warps = static_cast<i64>(gridDim.x) * (kThreads / 32);
  for (i64 o = static_cast<i64>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32; o < count; o += warps) {
    Acc s = 0;
    for (i64 q = lane; q < len; q += 32) s += to_acc<Acc>(p[o * os + q * qs]);
    for (int w = 16; w > 0; w /= 2) s += __shfl_xor_sync(0xFFFFFFFFu, s, w);
    if (lane == 0) store_as<Acc>(out, out_type, o, s);
  }
}

/// Block maxima of |C| as f32 bit patterns, combined by atomicMax on unsigned integers (exact).
template <class TC>
__global__ void __launch_bounds__(kThreads) amax_kernel(const TC* c, i64 batch, i64 m, i64 n, i64 ldc, i64 stride,
                                                        unsigned* out) {
  using kernels::detail::to_acc;
  const i64 mn = m * n, total = batch * mn;
  unsigned mx = 0;
  for (i64 idx = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<i64>(gridDim.x) * blockDim.x) {
    const i64 bi = idx / mn, r = idx - bi * mn, i = r / n, j = r - i * n;
    const float v = static_cast<float>(to_acc<double>(c[bi * stride + i * ldc + j]));
    mx = max(mx, __float_as_uint(v) & 0x7FFFFFFFu);
  }
  for (int w = 16; w > 0; w /= 2) mx = max(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, w));
  __shared__ unsigned warp_max[kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = mx;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) mx = max(mx, warp_max[w]);
    if (mx != 0) atomicMax(out, mx);
  }
}

/// The row-major GEMM `d` as cuBLASLt's column-major C^T = op(B)^T op(A)^T, writing `c` (type
/// c_type, leading dimension ldc, batch stride c_stride) with `beta`; no epilogue.
inline lt::Problem col_major(const GemmDesc& d, void* c, DType c_type, i64 ldc, i64 c_stride, double beta) {
  lt::Problem p;
  const bool f64 = d.a.dtype == DType::f64;
  p.compute = f64 ? CUBLAS_COMPUTE_64F
                  : (d.a.dtype == DType::f32 && d.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  p.scale_type = f64 ? CUDA_R_64F : CUDA_R_32F;
  p.a_type = cuda_type(d.b.dtype);
  p.transa = d.b.transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
  p.a = d.b.data;
  p.lda = d.b.ld;
  p.stride_a = d.b.batch_stride;
  p.b_type = cuda_type(d.a.dtype);
  p.transb = d.a.transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
  p.b = d.a.data;
  p.ldb = d.a.ld;
  p.stride_b = d.a.batch_stride;
  p.c_type = cuda_type(c_type);
  p.c = c;
  p.ldc = ldc;
  p.stride_c = c_stride;
  p.m = d.n;
  p.n = d.m;
  p.k = d.k;
  p.batch = d.batch;
  p.alpha = d.alpha;
  p.beta = beta;
  p.reduced_precision_reduction = d.allow_reduced_precision_reduction;
  return p;
}

/// Whether cuBLASLt multiplies A's dtype into `c` directly (its non-FP8 type table).
inline bool lt_types(DType a, DType c) {
  switch (a) {
    case DType::f64: return c == DType::f64;
    case DType::f32: return c == DType::f32;
    case DType::f16: return c == DType::f16 || c == DType::f32;
    case DType::bf16: return c == DType::bf16 || c == DType::f32;
    default: return false;
  }
}

inline cublasLtEpilogue_t lt_epilogue(Epilogue e) {
  switch (e) {
    case Epilogue::none: return CUBLASLT_EPILOGUE_DEFAULT;
    case Epilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epilogue::gelu: return CUBLASLT_EPILOGUE_GELU;
    case Epilogue::bias_gelu: return CUBLASLT_EPILOGUE_GELU_BIAS;
    case Epilogue::gelu_aux: return CUBLASLT_EPILOGUE_GELU_AUX;
    case Epilogue::bias_gelu_aux: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case Epilogue::dgelu: return CUBLASLT_EPILOGUE_DGELU;
    case Epilogue::dgelu_bgrad: return CUBLASLT_EPILOGUE_DGELU_BGRAD;
    case Epilogue::bgrad_a: return CUBLASLT_EPILOGUE_BGRADB;  // row-major A is cuBLASLt's B
    case Epilogue::bgrad_b: return CUBLASLT_EPILOGUE_BGRADA;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

/// Path 1: the fused cublasLtMatmul; false when cuBLASLt has no algorithm (nothing enqueued).
inline bool try_fused(const ExecutionContext& ctx, const GemmDesc& d) {
  const GemmEpilogue& e = d.epilogue;
  if (!d.fuse_epilogue || d.k == 0 || !lt_types(d.a.dtype, d.c.dtype)) return false;
  // cuBLASLt evaluates GELU and its derivative to about 2^-32 even for f64 (seen on H100, CUDA
  // 13.0): f64 GEMMs keep f64 GELUs in the separate epilogue kernel.
  if (d.a.dtype == DType::f64 && (epilogue_gelu(e.kind) || epilogue_dgelu(e.kind))) return false;
  lt::Problem p = col_major(d, d.c.data, d.c.dtype, d.c.ld, d.c.batch_stride, d.c.beta);
  p.epilogue = lt_epilogue(e.kind);
  if (epilogue_reads_bias(e.kind)) {
    p.bias = const_cast<void*>(e.bias);
    p.bias_type = cuda_type(e.bias_dtype);
  } else if (epilogue_writes_bias_grad(e.kind)) {
    p.bias = e.bias_grad;
    p.bias_type = cuda_type(e.bias_grad_dtype);
  }
  if (epilogue_uses_aux(e.kind)) {
    p.aux = e.aux;
    p.aux_ld = e.aux_ld;
    p.aux_stride = e.aux_batch_stride;
  }
  return lt::run(ctx, p);
}

/// A non-owning tensor over device memory (for the pool's allocations and raw pointers).
template <class T>
Tensor<T> device_buffer(const ExecutionContext& ctx, i64 count) {
  return Tensor<T>::empty(ctx, {count}, MemoryRole::workspace);
}

/// bias_grad[o] = sum over k of op(X), X = A (bgrad_a, o < m) or B (bgrad_b, o < n).
inline void bgrad_operand(const ExecutionContext& ctx, const GemmDesc& d) {
  const bool use_a = d.epilogue.kind == Epilogue::bgrad_a;
  const GemmOperand& x = use_a ? d.a : d.b;
  const i64 count = use_a ? d.m : d.n;
  if (count == 0) return;
  // op(A)(o, q) = a[o * rs + q * cs]; op(B)(q, o) = b[q * rs + o * cs].
  const i64 rs = x.transpose ? 1 : x.ld, cs = x.transpose ? x.ld : 1;
  const i64 os = use_a ? rs : cs, qs = use_a ? cs : rs;
  const unsigned grid = grid_for(count, kThreads / 32);
  visit_dtype(x.dtype, [&]<class T>() {
    if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, f16> || std::is_same_v<T, bf16>) {
      using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
      sum_k_kernel<Acc, T><<<grid, kThreads, 0, ctx.stream()>>>(static_cast<const T*>(x.data), count, os, d.k, qs,
                                                              d.epilogue.bias_grad, d.epilogue.bias_grad_dtype);
      MIXTAPE_CUDA_CHECK(cudaGetLastError());
    }
  });
}

/// Path 3: plain GEMM into an accumulate-type buffer, then the epilogue kernel.
template <class Acc>
void separate_epilogue(const ExecutionContext& ctx, const GemmDesc& d) {
  const i64 total = d.batch * d.m * d.n;
  auto tmp = device_buffer<Acc>(ctx, total);
  if (d.k > 0) {
    const lt::Problem p = col_major(d, tmp.data(), dtype_v<Acc>, d.n, d.m * d.n, 0.0);
    MIXTAPE_EXPECT(lt::run(ctx, p), BackendError, "gemm: cuBLASLt offers no algorithm for ", dtype_name(d.a.dtype),
                   " operands with a ", dtype_name(dtype_v<Acc>), " output (m ", d.m, ", n ", d.n, ", k ", d.k, ")");
  } else {
    MIXTAPE_CUDA_CHECK(cudaMemsetAsync(tmp.data(), 0, sizeof(Acc) * static_cast<std::size_t>(total), ctx.stream()));
  }
  EpilogueArgs<Acc> a;
  a.tmp = tmp.data();
  a.batch = d.batch;
  a.m = d.m;
  a.n = d.n;
  a.c = d.c.data;
  a.ldc = d.c.ld;
  a.c_stride = d.c.batch_stride;
  a.beta = static_cast<Acc>(d.c.beta);
  a.bias = epilogue_reads_bias(d.epilogue.kind) ? d.epilogue.bias : nullptr;
  a.bias_type = d.epilogue.bias_dtype;
  a.aux = epilogue_uses_aux(d.epilogue.kind) ? d.epilogue.aux : nullptr;
  a.aux_ld = d.epilogue.aux_ld;
  a.aux_stride = d.epilogue.aux_batch_stride;
  a.kind = d.epilogue.kind;
  a.keep = d.epilogue.kind == Epilogue::dgelu_bgrad;
  const unsigned grid = grid_for(total, kThreads * 4);
  visit_dtype(d.c.dtype, [&]<class TC>() {
    if constexpr (std::is_same_v<TC, float> || std::is_same_v<TC, f16> || std::is_same_v<TC, bf16> ||
                  (std::is_same_v<TC, double> && std::is_same_v<Acc, double>)) {
      epilogue_kernel<Acc, TC><<<grid, kThreads, 0, ctx.stream()>>>(a);
      MIXTAPE_CUDA_CHECK(cudaGetLastError());
    }
  });
  if (a.keep) {  // column sums of the final values (m x n, dense): bias_grad[j] = sum_i v[i][j]
    sum_k_kernel<Acc, Acc><<<grid_for(d.n, kThreads / 32), kThreads, 0, ctx.stream()>>>(
        tmp.data(), d.n, 1, d.m, d.n, d.epilogue.bias_grad, d.epilogue.bias_grad_dtype);
    MIXTAPE_CUDA_CHECK(cudaGetLastError());
  }
}

/// The CUDA GEMM. `d` is valid (gemm_validate.hpp) and its pointers are on ctx's device.
inline void gemm(const ExecutionContext& ctx, const GemmDesc& d) {
  DeviceScope scope(ctx.device().index());
  const Epilogue kind = d.epilogue.kind;
  const bool empty = d.m == 0 || d.n == 0;
  bool bias_grad_done = false;
  auto& counters = lt::algo_cache();
  if (!empty) {
    if (try_fused(ctx, d)) {
      bias_grad_done = true;
      counters.fused.fetch_add(1, std::memory_order_relaxed);
    } else if ((kind == Epilogue::none || kind == Epilogue::bgrad_a || kind == Epilogue::bgrad_b) && d.k > 0 &&
               lt_types(d.a.dtype, d.c.dtype)) {
      const lt::Problem p = col_major(d, d.c.data, d.c.dtype, d.c.ld, d.c.batch_stride, d.c.beta);
      MIXTAPE_EXPECT(lt::run(ctx, p), BackendError, "gemm: cuBLASLt offers no algorithm for ", dtype_name(d.a.dtype),
                     " operands with a ", dtype_name(d.c.dtype), " output (m ", d.m, ", n ", d.n, ", k ", d.k, ")");
      counters.plain.fetch_add(1, std::memory_order_relaxed);
    } else {
      if (d.a.dtype == DType::f64) {
        separate_epilogue<double>(ctx, d);
      } else {
        separate_epilogue<float>(ctx, d);
      }
      bias_grad_done = kind == Epilogue::dgelu_bgrad;
      counters.separate.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (!bias_grad_done) {
    if (kind == Epilogue::bgrad_a || kind == Epilogue::bgrad_b) {
      bgrad_operand(ctx, d);
    } else if (kind == Epilogue::dgelu_bgrad && d.n > 0) {  // m == 0: the sums are empty
      MIXTAPE_CUDA_CHECK(cudaMemsetAsync(d.epilogue.bias_grad, 0,
                                         static_cast<std::size_t>(d.n * dtype_bits(d.epilogue.bias_grad_dtype) / 8),
                                         ctx.stream()));
    }
  }
  if (d.c.amax != nullptr) {
    MIXTAPE_CUDA_CHECK(cudaMemsetAsync(d.c.amax, 0, sizeof(float), ctx.stream()));
    if (!empty) {
      const unsigned grid = grid_for(d.batch * d.m * d.n, kThreads * 8);
      visit_dtype(d.c.dtype, [&]<class TC>() {
        if constexpr (std::is_same_v<TC, double> || std::is_same_v<TC, float> || std::is_same_v<TC, f16> ||
                      std::is_same_v<TC, bf16>) {
          amax_kernel<TC><<<grid, kThreads, 0, ctx.stream()>>>(static_cast<const TC*>(d.c.data), d.batch, d.m, d.n, d.c.ld,
                                                             d.c.batch_stride, reinterpret_cast<unsigned*>(d.c.amax));
          MIXTAPE_CUDA_CHECK(cudaGetLastError());
        }
      });
    }
  }
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::blas::detail
