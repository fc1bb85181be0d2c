/// @file attention_cuda.cuh
/// @brief CUDA fused causal self-attention (only in `.cu` units), flash-attention-2 style:
///        tensor-core `mma.sync.m16n8k16` (f16 / bf16 in, f32 accumulate) fed by `ldmatrix`,
///        cp.async double-buffered tiles, online softmax in registers; head dims 32, 64, 128.
///
/// Kernels (128 threads = 4 warps; each warp owns 16 rows of its block's tile):
///  - forward: grid (query blocks of 64, B*H). Q stays in shared memory; key/value tiles of 64
///    stream through two cp.async stages up to the diagonal (tiles above it are never loaded,
///    the diagonal tile is masked). S = Q K^T and the running (max, sum) live in registers;
///    P = round_T(exp(z - running max)) goes straight from the S accumulator into the A operand
///    of O += P V; O is divided by the row sum and rounded once. lse = max + log(sum).
///  - backward (deterministic: every output element is written by exactly one thread, summed in a
///    fixed order, no atomics): D = rowsum(dO * O) (a thread per row, the rows staged in shared
///    memory); dK/dV parallel over key blocks of 64, looping over the query tiles at or below the
///    diagonal and recomputing S^T and P^T from lse; dQ parallel over query blocks of 64,
///    recomputing S, P and dP.
///
/// Rounding points are the host's (attention_host.hpp): scores, softmax, dP and dS in f32; P and
/// dS rounded to T (cvt.rn, nearest even, as the host's cast) as mma operands; outputs rounded once.
///
/// Fragment layouts relied on (PTX ISA, "Matrix Fragments for mma.m16n8k16" with .f16/.bf16
/// operands; lane = 4 * g + t, g = groupID = lane / 4, t = threadID_in_group = lane % 4):
///   A (16 x 16, row):  a0 = (g, 2t..2t+1)  a1 = (g+8, 2t..2t+1)  a2 = (g, 2t+8..2t+9)  a3 = (g+8, 2t+8..2t+9)
///   B (16 x 8, col):   b0 = (k 2t..2t+1, n g)  b1 = (k 2t+8..2t+9, n g)
///   C (16 x 8, f32):   c0, c1 = (g, 2t..2t+1)  c2, c3 = (g+8, 2t..2t+1)
/// so the C fragments of two adjacent n-tiles (columns 16kk..16kk+15) are, element for element,
/// the A fragment of k-step kk: a0 = C[2kk].{c0,c1}, a1 = C[2kk].{c2,c3}, a2 = C[2kk+1].{c0,c1},
/// a3 = C[2kk+1].{c2,c3} (the lower half of each 32-bit register holds the lower column).
/// ldmatrix.x4 gives register i = matrix i, with lane holding row lane/4, columns 2(lane%4)..+1
/// of it, each lane l supplying the address of row l%8 of matrix l/8; with .trans the matrix is
/// transposed on the way (lane holds rows 2(lane%4)..+1 of column lane/4). Hence for a tile
/// stored row-major in shared memory:
///   A operand (rows r, cols k):            address row l%16, col 8(l/16)        -> a0..a3
///   B operand from X[n][k] (S = Q K^T):    address row l%8 + 8(l/16), col 8((l/8)%2)
///                                          -> b0, b1 of n-tile 0, b0, b1 of n-tile 1
///   B operand from X[k][n] (O = P V):      .trans, address row l%16, col 8(l/16) -> the same
/// Shared-memory rows are padded by 16 bytes (pitch D + 8 elements): the 8 row addresses of one
/// 8x8 matrix then fall in 8 different 16-byte bank groups (no ldmatrix bank conflicts).
#pragma once

#if !defined(__CUDACC__)
#error "attention_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/kernels/detail/attention_host.hpp"
#include "mixtape/kernels/detail/elementwise_cuda.cuh"
#include "mixtape/kernels/detail/row_group_cuda.cuh"
#include "mixtape/numeric/numeric.hpp"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {
namespace attn {

inline constexpr int kThreads = 128;  // 4 warps

__device__ __forceinline__ std::uint32_t smem_u32(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

/// 16 bytes global -> shared, asynchronously; `valid` false zero-fills (rows past T).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(std::uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(std::uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

/// c += a b for one 16x8x16 tile (f32 accumulate).
template <bool kBf16>
__device__ __forceinline__ void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  if constexpr (kBf16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

/// Two floats rounded (nearest even) into one register of T pairs: `lo` in the lower half.
template <bool kBf16>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  std::uint32_t r;
  if constexpr (kBf16) {
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  } else {
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  }
  return r;
}
template <bool kBf16>
__device__ __forceinline__ float2 unpack2(std::uint32_t v) {
  if constexpr (kBf16) {
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
  } else {
    float lo, hi;
    asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.f32.f16 %0, l;\n cvt.f32.f16 %1, h;\n}\n"
        : "=f"(lo), "=f"(hi)
        : "r"(v));
    return make_float2(lo, hi);
  }
}

/// Writes (or adds into) two adjacent gradient elements of type G (T's bits, or float).
template <bool kBf16, class G>
__device__ __forceinline__ void store_pair(G* dst, float x0, float x1, bool accumulate) {
  if constexpr (std::is_same_v<G, float>) {
    auto* p = reinterpret_cast<float2*>(dst);
    if (accumulate) {
      const float2 o = *p;
      x0 = o.x + x0;
      x1 = o.y + x1;
    }
    *p = make_float2(x0, x1);
  } else {
    auto* p = reinterpret_cast<std::uint32_t*>(dst);
    if (accumulate) {
      const float2 o = unpack2<kBf16>(*p);
      x0 = o.x + x0;
      x1 = o.y + x1;
    }
    *p = pack2<kBf16>(x0, x1);
  }
}

/// Rows [row0, row0 + kRows) of a (seq, D) matrix with row stride ld into a padded shared tile,
/// zero-filling rows >= seq; one cp.async per 16 bytes, spread over the block.
template <int kRows, int D>
__device__ __forceinline__ void load_tile(std::uint16_t* s, const std::uint16_t* g, std::int64_t ld, int row0,
                                          int seq) {
  constexpr int kChunks = D / 8, kPitch = D + 8;
  static_assert((kRows * kChunks) % kThreads == 0);
#pragma unroll
  for (int it = 0; it < kRows * kChunks / kThreads; ++it) {
    const int idx = it * kThreads + static_cast<int>(threadIdx.x);
    const int r = idx / kChunks, ch = idx % kChunks, gr = row0 + r;
    const bool ok = gr < seq;
    cp_async16(s + r * kPitch + ch * 8, g + static_cast<std::int64_t>(ok ? gr : 0) * ld + ch * 8, ok);
  }
}

/// acc (16 x kN) += A (16 x kK, rows of `sa`) B^T with B = kN rows of `sb` (each kK long): both
/// operands row-major in shared memory, so plain ldmatrix for both (Q K^T, dO V^T, K Q^T, V dO^T).
template <bool kBf16, int kK, int kN, int kPitch>
__device__ __forceinline__ void mma_a_bt(float (&acc)[kN / 8][4], const std::uint16_t* sa, const std::uint16_t* sb,
                                         int lane) {
#pragma unroll
  for (int ks = 0; ks < kK / 16; ++ks) {
    std::uint32_t a[4];
    ldsm_x4(a, sa + (lane % 16) * kPitch + ks * 16 + 8 * (lane / 16));
#pragma unroll
    for (int n2 = 0; n2 < kN / 16; ++n2) {
      std::uint32_t b[4];
      ldsm_x4(b, sb + (n2 * 16 + lane % 8 + 8 * (lane / 16)) * kPitch + ks * 16 + 8 * ((lane / 8) % 2));
      mma<kBf16>(acc[2 * n2], a, b[0], b[1]);
      mma<kBf16>(acc[2 * n2 + 1], a, b[2], b[3]);
    }
  }
}

/// acc (16 x kN) += P (16 x kK, register A fragments) B with B = kK rows of `sb` (each kN long,
/// row-major: the k index runs down the rows, hence ldmatrix.trans) (P V, dS K, P^T dO, dS^T Q).
template <bool kBf16, int kK, int kN, int kPitch>
__device__ __forceinline__ void mma_p_b(float (&acc)[kN / 8][4], const std::uint32_t (&pa)[kK / 16][4],
                                        const std::uint16_t* sb, int lane) {
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) {
#pragma unroll
    for (int n2 = 0; n2 < kN / 16; ++n2) {
      std::uint32_t b[4];
      ldsm_x4_trans(b, sb + (kk * 16 + lane % 16) * kPitch + n2 * 16 + 8 * (lane / 16));
      mma<kBf16>(acc[2 * n2], pa[kk], b[0], b[1]);
      mma<kBf16>(acc[2 * n2 + 1], pa[kk], b[2], b[3]);
    }
  }
}

/// The C fragments of a 16 x kN f32 tile rounded to T as the A fragments of the next mma.
template <bool kBf16, int kN>
__device__ __forceinline__ void to_a_frags(std::uint32_t (&pa)[kN / 16][4], const float (&c)[kN / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < kN / 16; ++kk) {
    pa[kk][0] = pack2<kBf16>(c[2 * kk][0], c[2 * kk][1]);
    pa[kk][1] = pack2<kBf16>(c[2 * kk][2], c[2 * kk][3]);
    pa[kk][2] = pack2<kBf16>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    pa[kk][3] = pack2<kBf16>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
  }
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xFFFFFFFFu, x, 1);
  return x + __shfl_xor_sync(0xFFFFFFFFu, x, 2);
}

/// log2(e) and ln(2) in f32: the kernels keep scores in base-2 units (z log2 e), so that each
/// softmax weight is one exp2f (the multi-function unit's ex2 plus a range fix-up, within 2 ulp
/// as expf is, but a few instructions instead of expf's range reduction); lse stays natural.
inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

/// Tile sizes per head dim (rows of the block's own tile, rows of the streamed tiles): the
/// backward kernels stream 32-row tiles at D = 128 to stay within 255 registers without spills.
template <int D>
struct Tiles {
  static constexpr int kPitch = D + 8;
  static constexpr int kFwdQ = 64, kFwdK = 64;                    // forward: own queries, streamed keys
  static constexpr int kDqQ = 64, kDqK = D == 128 ? 32 : 64;      // dQ: own queries, streamed keys
  static constexpr int kDkvK = 64, kDkvQ = D == 128 ? 32 : 64;    // dK dV: own keys, streamed queries
  static constexpr int kFwdSmem = (kFwdQ + 4 * kFwdK) * kPitch * 2;
  static constexpr int kDqSmem = (2 * kDqQ + 4 * kDqK) * kPitch * 2;
  static constexpr int kDkvSmem = (2 * kDkvK + 4 * kDkvQ) * kPitch * 2 + 4 * kDkvQ * 4;
};

template <bool kBf16, int D>
__global__ void __launch_bounds__(kThreads, 1)
    attention_forward_kernel(const std::uint16_t* __restrict__ qkv, std::uint16_t* __restrict__ y,
                             float* __restrict__ lse, int seq, int heads, float scale) {
  using Tl = Tiles<D>;
  constexpr int kBr = Tl::kFwdQ, kBc = Tl::kFwdK, kP = Tl::kPitch;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* sq = reinterpret_cast<std::uint16_t*>(smem);
  std::uint16_t* sk = sq + kBr * kP;  // 2 stages
  std::uint16_t* sv = sk + 2 * kBc * kP;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4;
  const int q0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kBr;  // the longest rows first
  const int bh = static_cast<int>(blockIdx.y), b = bh / heads, h = bh % heads;
  const std::int64_t c = static_cast<std::int64_t>(heads) * D, ld = 3 * c;
  const std::uint16_t* q = qkv + static_cast<std::int64_t>(b) * seq * ld + static_cast<std::int64_t>(h) * D;
  const std::uint16_t* k = q + c;
  const std::uint16_t* v = q + 2 * c;
  const int n_tiles = min((seq + kBc - 1) / kBc, (q0 + kBr + kBc - 1) / kBc);  // up to the diagonal
  const float scale2 = scale * kLog2e;  // scores and their running maximum m in base-2 units
  load_tile<kBr, D>(sq, q, ld, q0, seq);
  load_tile<kBc, D>(sk, k, ld, 0, seq);
  load_tile<kBc, D>(sv, v, ld, 0, seq);
  cp_async_commit();

  const int row0 = q0 + warp * 16;  // this warp's rows: row0 + g (elements 0, 1), row0 + g + 8 (2, 3)
  float o[D / 8][4] = {};
  float m[2] = {-infinity<float>(), -infinity<float>()}, l[2] = {0.f, 0.f};
  for (int j = 0; j < n_tiles; ++j) {
    if (j + 1 < n_tiles) {
      load_tile<kBc, D>(sk + ((j + 1) & 1) * kBc * kP, k, ld, (j + 1) * kBc, seq);
      load_tile<kBc, D>(sv + ((j + 1) & 1) * kBc * kP, v, ld, (j + 1) * kBc, seq);
    }
    cp_async_commit();
    cp_async_wait<1>();  // tile j (and Q) landed
    __syncthreads();
    const std::uint16_t* ck = sk + (j & 1) * kBc * kP;
    const std::uint16_t* cv = sv + (j & 1) * kBc * kP;
    float s[kBc / 8][4] = {};
    mma_a_bt<kBf16, D, kBc, kP>(s, sq + warp * 16 * kP, ck, lane);
    const int key0 = j * kBc;
    const bool masked = key0 + kBc - 1 > row0 || key0 + kBc > seq;  // the diagonal tile, or past T
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < kBc / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float z = s[nt][e] * scale2;
        if (masked) {
          const int col = key0 + nt * 8 + 2 * t + (e & 1), row = row0 + g + 8 * (e >> 1);
          if (col > row || col >= seq) z = -infinity<float>();
        }
        s[nt][e] = z;
        mx[e >> 1] = fmaxf(mx[e >> 1], z);
      }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = quad_max(mx[r]);
      // Key 0 is visible to every row, so the maximum is finite from the first tile on.
      corr[r] = m[r] == -infinity<float>() ? 0.f : exp2f(m[r] - mx[r]);
      m[r] = mx[r];
      l[r] *= corr[r];
    }
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[nt][e] *= corr[e >> 1];
#pragma unroll
    for (int nt = 0; nt < kBc / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[nt][e] - m[e >> 1]);
        s[nt][e] = p;
        l[e >> 1] += p;  // the unrounded sum, as the host
      }
    std::uint32_t pa[kBc / 16][4];
    to_a_frags<kBf16, kBc>(pa, s);
    mma_p_b<kBf16, kBc, D, kP>(o, pa, cv, lane);
    __syncthreads();  // stage j & 1 is refilled by the next iteration's prefetch
  }
  cp_async_wait<0>();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float sum = quad_sum(l[r]);
    const int row = row0 + g + 8 * r;
    if (row >= seq) continue;
    std::uint16_t* yr = y + (static_cast<std::int64_t>(b) * seq + row) * c + static_cast<std::int64_t>(h) * D;
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt)
      *reinterpret_cast<std::uint32_t*>(yr + nt * 8 + 2 * t) =
          pack2<kBf16>(o[nt][2 * r] / sum, o[nt][2 * r + 1] / sum);
    if (t == 0) lse[static_cast<std::int64_t>(bh) * seq + row] = m[r] * kLn2 + log_of(sum);
  }
}

/// Rows of O and dO a rowdot block stages (one thread each).
inline constexpr int kRowdotRows = 128;

/// D = rowsum(dO * O) per (batch, row, head) in f32, summed over d in order (the host's order).
/// The rows (b, t, h) lie contiguous, D elements each. Read straight, a thread per row, each
/// warp-wide 16-byte load touches 32 rows' lines and an SM's threads keep more lines live than L1
/// holds (0.85 TB/s measured); so the block first copies its rows of O and dO into shared memory
/// with consecutive threads on consecutive 16 bytes, then each thread sums its own row from there.
/// Rows are padded by 16 bytes: the 8 threads of a quarter-warp read 8 different bank groups.
template <bool kBf16, int D>
__global__ void __launch_bounds__(kRowdotRows)
    attention_rowdot_kernel(const std::uint16_t* __restrict__ y, const std::uint16_t* __restrict__ dy,
                            float* __restrict__ dvec, std::int64_t rows, int seq, int heads) {
  constexpr int kChunks = D / 8, kPitch = D + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* sy = reinterpret_cast<std::uint16_t*>(smem);
  std::uint16_t* sd = sy + kRowdotRows * kPitch;
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * kRowdotRows;
  const int n = static_cast<int>(min(static_cast<std::int64_t>(kRowdotRows), rows - row0));
  const auto* gy = reinterpret_cast<const uint4*>(y + row0 * D);
  const auto* gd = reinterpret_cast<const uint4*>(dy + row0 * D);
#pragma unroll
  for (int it = 0; it < kChunks; ++it) {
    const int i = it * kRowdotRows + static_cast<int>(threadIdx.x), r = i / kChunks, ch = i % kChunks;
    if (r < n) {
      *reinterpret_cast<uint4*>(sy + r * kPitch + ch * 8) = gy[i];
      *reinterpret_cast<uint4*>(sd + r * kPitch + ch * 8) = gd[i];
    }
  }
  __syncthreads();
  const int r = static_cast<int>(threadIdx.x);
  if (r >= n) return;
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const uint4 a = *reinterpret_cast<const uint4*>(sy + r * kPitch + i * 8);
    const uint4 d = *reinterpret_cast<const uint4*>(sd + r * kPitch + i * 8);
    const std::uint32_t av[4] = {a.x, a.y, a.z, a.w}, dv[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const float2 yf = unpack2<kBf16>(av[w]), df = unpack2<kBf16>(dv[w]);
      acc += df.x * yf.x;
      acc += df.y * yf.y;
    }
  }
  const std::int64_t idx = row0 + r, bt = idx / heads;
  const int h = static_cast<int>(idx % heads);
  const std::int64_t b = bt / seq, tt = bt % seq;
  dvec[(b * heads + h) * seq + tt] = acc;
}

template <bool kBf16, int D, class G>
__global__ void __launch_bounds__(kThreads, 1)
    attention_dq_kernel(const std::uint16_t* __restrict__ qkv, const std::uint16_t* __restrict__ dy,
                        const float* __restrict__ lse, const float* __restrict__ dvec, G* __restrict__ dqkv, int seq,
                        int heads, float scale, bool accumulate) {
  using Tl = Tiles<D>;
  constexpr int kBr = Tl::kDqQ, kBc = Tl::kDqK, kP = Tl::kPitch;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* sq = reinterpret_cast<std::uint16_t*>(smem);
  std::uint16_t* sdo = sq + kBr * kP;
  std::uint16_t* sk = sdo + kBr * kP;  // 2 stages
  std::uint16_t* sv = sk + 2 * kBc * kP;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4;
  const int q0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kBr;
  const int bh = static_cast<int>(blockIdx.y), b = bh / heads, h = bh % heads;
  const std::int64_t c = static_cast<std::int64_t>(heads) * D, ld = 3 * c;
  const std::int64_t head_off = static_cast<std::int64_t>(b) * seq * ld + static_cast<std::int64_t>(h) * D;
  const std::uint16_t* q = qkv + head_off;
  const std::uint16_t* k = q + c;
  const std::uint16_t* v = q + 2 * c;
  const std::uint16_t* dyh = dy + static_cast<std::int64_t>(b) * seq * c + static_cast<std::int64_t>(h) * D;
  const int n_tiles = min((seq + kBc - 1) / kBc, (q0 + kBr + kBc - 1) / kBc);
  const float scale2 = scale * kLog2e;
  load_tile<kBr, D>(sq, q, ld, q0, seq);
  load_tile<kBr, D>(sdo, dyh, c, q0, seq);
  load_tile<kBc, D>(sk, k, ld, 0, seq);
  load_tile<kBc, D>(sv, v, ld, 0, seq);
  cp_async_commit();

  const int row0 = q0 + warp * 16;
  float lse_r[2], d_r[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + g + 8 * r;
    lse_r[r] = row < seq ? lse[static_cast<std::int64_t>(bh) * seq + row] * kLog2e : 0.f;  // base 2
    d_r[r] = row < seq ? dvec[static_cast<std::int64_t>(bh) * seq + row] : 0.f;
  }
  float dq[D / 8][4] = {};
  for (int j = 0; j < n_tiles; ++j) {
    if (j + 1 < n_tiles) {
      load_tile<kBc, D>(sk + ((j + 1) & 1) * kBc * kP, k, ld, (j + 1) * kBc, seq);
      load_tile<kBc, D>(sv + ((j + 1) & 1) * kBc * kP, v, ld, (j + 1) * kBc, seq);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const std::uint16_t* ck = sk + (j & 1) * kBc * kP;
    const std::uint16_t* cv = sv + (j & 1) * kBc * kP;
    float s[kBc / 8][4] = {}, dp[kBc / 8][4] = {};
    mma_a_bt<kBf16, D, kBc, kP>(s, sq + warp * 16 * kP, ck, lane);
    mma_a_bt<kBf16, D, kBc, kP>(dp, sdo + warp * 16 * kP, cv, lane);
    const int key0 = j * kBc;
    const bool masked = key0 + kBc - 1 > row0 || key0 + kBc > seq;
#pragma unroll
    for (int nt = 0; nt < kBc / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float p = exp2f(s[nt][e] * scale2 - lse_r[e >> 1]);
        if (masked) {
          const int col = key0 + nt * 8 + 2 * t + (e & 1), row = row0 + g + 8 * (e >> 1);
          if (col > row || col >= seq) p = 0.f;
        }
        s[nt][e] = scale * (p * (dp[nt][e] - d_r[e >> 1]));  // dS, rounded to T below
      }
    std::uint32_t pa[kBc / 16][4];
    to_a_frags<kBf16, kBc>(pa, s);
    mma_p_b<kBf16, kBc, D, kP>(dq, pa, ck, lane);
    __syncthreads();
  }
  cp_async_wait<0>();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + g + 8 * r;
    if (row >= seq) continue;
    G* out = dqkv + head_off + static_cast<std::int64_t>(row) * ld;
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) store_pair<kBf16>(out + nt * 8 + 2 * t, dq[nt][2 * r], dq[nt][2 * r + 1], accumulate);
  }
}

template <bool kBf16, int D, class G>
__global__ void __launch_bounds__(kThreads, 1)
    attention_dkdv_kernel(const std::uint16_t* __restrict__ qkv, const std::uint16_t* __restrict__ dy,
                          const float* __restrict__ lse, const float* __restrict__ dvec, G* __restrict__ dqkv,
                          int seq, int heads, float scale, bool accumulate) {
  using Tl = Tiles<D>;
  constexpr int kBc = Tl::kDkvK, kBr = Tl::kDkvQ, kP = Tl::kPitch;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* sk = reinterpret_cast<std::uint16_t*>(smem);
  std::uint16_t* sv = sk + kBc * kP;
  std::uint16_t* sq = sv + kBc * kP;     // 2 stages
  std::uint16_t* sdo = sq + 2 * kBr * kP;  // 2 stages
  auto* slse = reinterpret_cast<float*>(sdo + 2 * kBr * kP);  // 2 stages
  float* sd = slse + 2 * kBr;                                  // 2 stages
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4;
  const int k0 = static_cast<int>(blockIdx.x) * kBc;  // the first key blocks see the most queries
  const int bh = static_cast<int>(blockIdx.y), b = bh / heads, h = bh % heads;
  const std::int64_t c = static_cast<std::int64_t>(heads) * D, ld = 3 * c;
  const std::int64_t head_off = static_cast<std::int64_t>(b) * seq * ld + static_cast<std::int64_t>(h) * D;
  const std::uint16_t* q = qkv + head_off;
  const std::uint16_t* k = q + c;
  const std::uint16_t* v = q + 2 * c;
  const std::uint16_t* dyh = dy + static_cast<std::int64_t>(b) * seq * c + static_cast<std::int64_t>(h) * D;
  const float* lse_h = lse + static_cast<std::int64_t>(bh) * seq;
  const float* d_h = dvec + static_cast<std::int64_t>(bh) * seq;
  const int i_begin = k0 / kBr, n_qt = (seq + kBr - 1) / kBr;
  const float scale2 = scale * kLog2e;
  // lse and D of a query tile; past T, lse = +inf makes P = 0 there (and so dS = 0).
  auto load_stats = [&](int stage, int qt) {
    for (int i = static_cast<int>(threadIdx.x); i < kBr; i += kThreads) {
      const int row = qt * kBr + i;
      slse[stage * kBr + i] = row < seq ? lse_h[row] * kLog2e : infinity<float>();  // base 2
      sd[stage * kBr + i] = row < seq ? d_h[row] : 0.f;
    }
  };
  load_tile<kBc, D>(sk, k, ld, k0, seq);
  load_tile<kBc, D>(sv, v, ld, k0, seq);
  load_tile<kBr, D>(sq, q, ld, i_begin * kBr, seq);
  load_tile<kBr, D>(sdo, dyh, c, i_begin * kBr, seq);
  cp_async_commit();
  load_stats(0, i_begin);

  const int key_base = k0 + warp * 16;  // this warp's keys: key_base + g (elements 0, 1), + g + 8 (2, 3)
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};
  for (int i = i_begin; i < n_qt; ++i) {
    const int st = (i - i_begin) & 1;
    if (i + 1 < n_qt) {
      load_tile<kBr, D>(sq + (st ^ 1) * kBr * kP, q, ld, (i + 1) * kBr, seq);
      load_tile<kBr, D>(sdo + (st ^ 1) * kBr * kP, dyh, c, (i + 1) * kBr, seq);
      load_stats(st ^ 1, i + 1);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int q0 = i * kBr;
    if (q0 + kBr - 1 >= key_base) {  // else every (query, key) pair of the warp is above the diagonal
      const std::uint16_t* cq = sq + st * kBr * kP;
      const std::uint16_t* cdo = sdo + st * kBr * kP;
      const float* cl = slse + st * kBr;
      const float* cd = sd + st * kBr;
      float s[kBr / 8][4] = {}, dp[kBr / 8][4] = {};
      mma_a_bt<kBf16, D, kBr, kP>(s, sk + warp * 16 * kP, cq, lane);    // S^T (keys x queries)
      mma_a_bt<kBf16, D, kBr, kP>(dp, sv + warp * 16 * kP, cdo, lane);  // dP^T
      const bool masked = q0 < key_base + 15;
#pragma unroll
      for (int nt = 0; nt < kBr / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = nt * 8 + 2 * t + (e & 1);
          float p = exp2f(s[nt][e] * scale2 - cl[col]);
          if (masked && q0 + col < key_base + g + 8 * (e >> 1)) p = 0.f;
          s[nt][e] = p;
          dp[nt][e] = scale * (p * (dp[nt][e] - cd[col]));  // dS^T
        }
      std::uint32_t pa[kBr / 16][4];
      to_a_frags<kBf16, kBr>(pa, s);
      mma_p_b<kBf16, kBr, D, kP>(dv, pa, cdo, lane);  // dV += P^T dO
      to_a_frags<kBf16, kBr>(pa, dp);
      mma_p_b<kBf16, kBr, D, kP>(dk, pa, cq, lane);  // dK += dS^T Q
    }
    __syncthreads();
  }
  cp_async_wait<0>();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key_base + g + 8 * r;
    if (key >= seq) continue;
    G* out = dqkv + head_off + static_cast<std::int64_t>(key) * ld;
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      store_pair<kBf16>(out + c + nt * 8 + 2 * t, dk[nt][2 * r], dk[nt][2 * r + 1], accumulate);
      store_pair<kBf16>(out + 2 * c + nt * 8 + 2 * t, dv[nt][2 * r], dv[nt][2 * r + 1], accumulate);
    }
  }
}

/// Opts a kernel into more than 48 KiB of dynamic shared memory where it needs it.
template <class K>
void set_smem(K kernel, int bytes) {
  if (bytes > 48 * 1024)
    MIXTAPE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

/// Calls f.template operator()<D>() for head dim 32, 64 or 128 (checked by the caller).
template <class F>
void visit_head_dim(std::int64_t d, F&& f) {
  switch (d) {
    case 32: return f.template operator()<32>();
    case 64: return f.template operator()<64>();
    default: return f.template operator()<128>();
  }
}

template <class T>
inline constexpr bool kIsBf16 = std::is_same_v<T, bf16>;

}  // namespace attn

template <class T>
void causal_attention_forward(const ExecutionContext& ctx, const AttentionDims& dims, const T* qkv, T* y, float* lse,
                              float scale) {
  static_assert(std::is_same_v<T, bf16> || std::is_same_v<T, f16>);
  if (dims.batch == 0 || dims.seq == 0) return;
  DeviceScope scope(ctx.device().index());
  const auto* q = reinterpret_cast<const std::uint16_t*>(qkv);
  auto* yo = reinterpret_cast<std::uint16_t*>(y);
  const int seq = static_cast<int>(dims.seq), heads = static_cast<int>(dims.heads);
  attn::visit_head_dim(dims.head_dim, [&]<int D>() {
    using Tl = attn::Tiles<D>;
    auto kernel = attn::attention_forward_kernel<attn::kIsBf16<T>, D>;
    attn::set_smem(kernel, Tl::kFwdSmem);
    const dim3 grid(static_cast<unsigned>((seq + Tl::kFwdQ - 1) / Tl::kFwdQ), static_cast<unsigned>(dims.batch * heads));
    kernel<<<grid, attn::kThreads, Tl::kFwdSmem, ctx.stream()>>>(q, yo, lse, seq, heads, scale);
  });
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

/// `dvec` is (B, H, T) f32 scratch for D = rowsum(dO * O).
template <class T, class G>
void causal_attention_backward(const ExecutionContext& ctx, const AttentionDims& dims, const T* qkv, const T* y,
                               const T* dy, const float* lse, float* dvec, G* dqkv, float scale, bool accumulate) {
  static_assert(std::is_same_v<T, bf16> || std::is_same_v<T, f16>);
  static_assert(std::is_same_v<G, T> || std::is_same_v<G, float>);
  if (dims.batch == 0 || dims.seq == 0) return;
  DeviceScope scope(ctx.device().index());
  constexpr bool kBf16 = attn::kIsBf16<T>;
  using GB = std::conditional_t<std::is_same_v<G, float>, float, std::uint16_t>;
  const auto* q = reinterpret_cast<const std::uint16_t*>(qkv);
  const auto* yo = reinterpret_cast<const std::uint16_t*>(y);
  const auto* dyo = reinterpret_cast<const std::uint16_t*>(dy);
  auto* dq = reinterpret_cast<GB*>(dqkv);
  const int seq = static_cast<int>(dims.seq), heads = static_cast<int>(dims.heads);
  const std::int64_t rows = dims.batch * dims.seq * dims.heads;
  attn::visit_head_dim(dims.head_dim, [&]<int D>() {
    using Tl = attn::Tiles<D>;
    auto rowdot = attn::attention_rowdot_kernel<kBf16, D>;
    constexpr int kRowdotSmem = 2 * attn::kRowdotRows * (D + 8) * 2;
    attn::set_smem(rowdot, kRowdotSmem);
    rowdot<<<static_cast<unsigned>((rows + attn::kRowdotRows - 1) / attn::kRowdotRows), attn::kRowdotRows, kRowdotSmem,
             ctx.stream()>>>(yo, dyo, dvec, rows, seq, heads);
    MIXTAPE_CUDA_CHECK(cudaGetLastError());
    const auto bh = static_cast<unsigned>(dims.batch * heads);
    auto dkdv = attn::attention_dkdv_kernel<kBf16, D, GB>;
    attn::set_smem(dkdv, Tl::kDkvSmem);
    dkdv<<<dim3(static_cast<unsigned>((seq + Tl::kDkvK - 1) / Tl::kDkvK), bh), attn::kThreads, Tl::kDkvSmem,
           ctx.stream()>>>(q, dyo, lse, dvec, dq, seq, heads, scale, accumulate);
    MIXTAPE_CUDA_CHECK(cudaGetLastError());
    auto dqk = attn::attention_dq_kernel<kBf16, D, GB>;
    attn::set_smem(dqk, Tl::kDqSmem);
    dqk<<<dim3(static_cast<unsigned>((seq + Tl::kDqQ - 1) / Tl::kDqQ), bh), attn::kThreads, Tl::kDqSmem,
          ctx.stream()>>>(q, dyo, lse, dvec, dq, seq, heads, scale, accumulate);
  });
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
