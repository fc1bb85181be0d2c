/// @file attention_cuda.cuh
/// @brief CUDA fused causal self-attention (only in `.cu` units), flash-attention-2 style:
///        tensor-core `mma.sync` (f16 / bf16 operands: m16n8k16; f32 operands: TF32 m16n8k8;
///        f32 accumulate) fed by `ldmatrix`, cp.async double-buffered tiles, online softmax in
///        registers; head dims 32, 64, 128.
///
/// Kernels (128 threads = 4 warps; each warp owns 16 rows of its block's tile, or two such m-tiles):
///  - forward: grid (query blocks of 128 for D <= 64, else 64; B*H); a warp owns 16 rows per 64 of
///    the block, each K / V fragment feeding all of them. Q stays in shared memory; key/value tiles of 64
///    (32 for TF32 at D = 128) stream through two cp.async stages up to the diagonal (tiles above it are never loaded,
///    the diagonal tile is masked). S = Q K^T and the running (max, sum) live in registers;
///    P = round_T(exp(z - running max)) goes straight from the S accumulator into the A operand
///    of O += P V; O is divided by the row sum and rounded once. lse = max + log(sum).
///  - backward (deterministic: every output element is written by exactly one thread, summed in a
///    fixed order, no atomics): D = rowsum(dO * O) (rows staged in shared memory); dK/dV parallel
///    over key blocks of 64, looping over the query tiles at or below the diagonal, recomputing S^T
///    and P^T from lse, and storing each tile's dS^T (rounded to T, as its mma operand) into a
///    workspace of 64 x 64 tiles; dQ = dS K parallel over query blocks of 64, reading those tiles
///    (one GEMM a tile instead of recomputing S, P and dP). The workspace holds the causal tiles of
///    a group of heads (kAttentionDsBytes at most); larger batches run group by group.
///
/// Rounding points are the host's (attention_host.hpp): scores, softmax, dP and dS in f32; P and
/// dS rounded to T (cvt.rn, nearest even, as the host's cast) as mma operands; outputs rounded once.
/// f32 operands (only on a context with ContextOptions::allow_tf32, as every f32 GEMM there) are
/// multiplied as TF32: q, k, v and dO are rounded to TF32 (cvt.rna, nearest, ties away from zero)
/// in shared memory as each tile lands, P and dS as they become mma operands; everything else is
/// f32 as above, and the outputs are f32.
///
/// The fragment layouts and the operand formats are in attention_mma_cuda.cuh.
#pragma once

#if !defined(__CUDACC__)
#error "attention_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/kernels/detail/attention_host.hpp"
#include "mixtape/kernels/detail/attention_mma_cuda.cuh"
#include "mixtape/kernels/detail/elementwise_cuda.cuh"
#include "mixtape/kernels/detail/row_group_cuda.cuh"
#include "mixtape/numeric/numeric.hpp"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {
namespace attn {

inline constexpr int kDs = 64;  // dS^T workspace tiles: kDs keys x kDs queries, row-major, T

/// log2(e) and ln(2) in f32: the kernels keep scores in base-2 units (z log2 e), so that each
/// softmax weight is one exp2f (the multi-function unit's ex2 plus a range fix-up, within 2 ulp
/// as expf is, but a few instructions instead of expf's range reduction); lse stays natural.
inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

/// Tile sizes per operand type and head dim (rows of the block's own tile, rows of the streamed
/// tiles), each chosen to stay within 255 registers without spills: dK/dV streams 32-row query
/// tiles at D = 128, and for TF32 (whose P and dS A fragments take twice the registers) at every
/// D; the forward gives a warp two m-tiles only for 16-bit operands at D <= 64, and streams 32-key
/// tiles for TF32 at D = 128.
template <class T, int D>
struct Tiles {
  using Op = Operand<T>;
  static constexpr int kBytes = static_cast<int>(sizeof(typename Op::Elem));
  static constexpr int kPitch = D + Op::kPad;
  static constexpr int kFwdWarpTiles = D <= 64 && !Op::kTf32 ? 2 : 1;           // forward: 16-row m-tiles a warp
  static constexpr int kFwdQ = 64 * kFwdWarpTiles;                              // forward: own queries
  static constexpr int kFwdK = D == 128 && Op::kTf32 ? 32 : 64;                 // forward: streamed keys
  static constexpr int kDkvK = 64, kDkvQ = D == 128 || Op::kTf32 ? 32 : 64;     // dK dV: own keys, streamed queries
  static constexpr int kDqQ = 64, kDqK = 64;                  // dQ: own queries, streamed dS^T / K tiles
  static constexpr int kDsPitch = kDs + Op::kPad;             // a dS^T tile row in shared memory
  static constexpr int kFwdSmem = (kFwdQ + 4 * kFwdK) * kPitch * kBytes;
  static constexpr int kDkvSmem =
      (2 * kDkvK + 4 * kDkvQ) * kPitch * kBytes + 4 * kDkvQ * 4 + kDkvK * kDsPitch * kBytes;
  static constexpr int kDqSmem = 2 * (kDqK * kPitch + kDqK * kDsPitch) * kBytes;
};

/// Causal dS^T tiles of a head: tile (query block qb, key block kb), kb <= qb, at qb (qb + 1) / 2 + kb.
__host__ __device__ constexpr std::int64_t ds_tile_index(std::int64_t qb, std::int64_t kb) {
  return qb * (qb + 1) / 2 + kb;
}

/// One key tile of the online softmax for a warp's 16 rows (row0 + g, row0 + g + 8): scores s
/// (raw Q K^T) become P = exp2(z - m) with z in base-2 units, the running maximum m and the
/// unrounded row sum l are updated, and o is rescaled to the new maximum. Masked cells (above the
/// diagonal or past T) get z = -inf, so P = 0 there.
template <int kBc, int D>
__device__ __forceinline__ void online_softmax_tile(float (&s)[kBc / 8][4], float (&m)[2], float (&l)[2],
                                                    float (&o)[D / 8][4], int key0, int row0, int seq, float scale2,
                                                    int lane) {
  const int g = lane / 4, t = lane % 4;
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
}

/// The forward. A warp owns kFwdWarpTiles m-tiles of 16 query rows, 64 rows apart (rows
/// q0 + 64 mt + 16 warp + [0, 16)), so each K and V fragment it loads from shared memory feeds
/// that many mma (FA2's 128-row blocks at D <= 64). Every row's arithmetic is the same sequence
/// of 64-key tiles whatever the block height, so the block height does not change any bit. On a
/// 128-row block's last key tile m-tile 0 lies wholly above the diagonal and is skipped.
template <class T, int D>
__global__ void __launch_bounds__(kThreads, 1)
    attention_forward_kernel(const elem_t<T>* __restrict__ qkv, elem_t<T>* __restrict__ y,
                             float* __restrict__ lse, int seq, int heads, float scale) {
  using Tl = Tiles<T, D>;
  using Elem = elem_t<T>;
  constexpr int kM = Tl::kFwdWarpTiles, kBr = Tl::kFwdQ, kBc = Tl::kFwdK, kP = Tl::kPitch;
  constexpr int kMStride = kBr / kM;  // rows between a warp's m-tiles
  extern __shared__ __align__(16) unsigned char smem[];
  auto* sq = reinterpret_cast<Elem*>(smem);
  Elem* sk = sq + kBr * kP;  // 2 stages
  Elem* sv = sk + 2 * kBc * kP;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4;
  const int q0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kBr;  // the longest rows first
  const int bh = static_cast<int>(blockIdx.y), b = bh / heads, h = bh % heads;
  const std::int64_t c = static_cast<std::int64_t>(heads) * D, ld = 3 * c;
  const Elem* q = qkv + static_cast<std::int64_t>(b) * seq * ld + static_cast<std::int64_t>(h) * D;
  const Elem* k = q + c;
  const Elem* v = q + 2 * c;
  const int n_tiles = min((seq + kBc - 1) / kBc, (q0 + kBr + kBc - 1) / kBc);  // up to the diagonal
  const float scale2 = scale * kLog2e;  // scores and their running maximum m in base-2 units
  load_tile<T, kBr, D>(sq, q, ld, q0, seq);
  load_tile<T, kBc, D>(sk, k, ld, 0, seq);
  load_tile<T, kBc, D>(sv, v, ld, 0, seq);
  cp_async_commit();

  const int row0 = q0 + warp * 16;  // m-tile mt's rows: row0 + kMStride mt + g (elements 0, 1), + 8 (2, 3)
  const Elem* sq_warp = sq + warp * 16 * kP;
  float o[kM][D / 8][4] = {};
  float m[kM][2], l[kM][2];
#pragma unroll
  for (int mt = 0; mt < kM; ++mt) m[mt][0] = m[mt][1] = -infinity<float>(), l[mt][0] = l[mt][1] = 0.f;
  for (int j = 0; j < n_tiles; ++j) {
    if (j + 1 < n_tiles) {
      load_tile<T, kBc, D>(sk + ((j + 1) & 1) * kBc * kP, k, ld, (j + 1) * kBc, seq);
      load_tile<T, kBc, D>(sv + ((j + 1) & 1) * kBc * kP, v, ld, (j + 1) * kBc, seq);
    }
    cp_async_commit();
    cp_async_wait<1>();  // tile j (and Q) landed
    if (j == 0) round_tile<T, kBr, D>(sq);
    round_tile<T, kBc, D>(sk + (j & 1) * kBc * kP);
    round_tile<T, kBc, D>(sv + (j & 1) * kBc * kP);
    __syncthreads();
    const Elem* ck = sk + (j & 1) * kBc * kP;
    const Elem* cv = sv + (j & 1) * kBc * kP;
    const int key0 = j * kBc;
    // Whether m-tile 0 sees a key of this tile; the later m-tiles' rows are below its rows, so
    // they do whenever it does. m-tile kM - 1 always runs: with 64-key tiles the tiles stop at its
    // diagonal, and a wholly masked 32-key tile (TF32, D = 128) leaves m, l and o as they were.
    const bool all_live = key0 <= row0 + 15;
    float s[kM][kBc / 8][4] = {};
    if (all_live)
      mma_tiles_a_bt<T, 0, kM, kMStride, D, kBc, kP>(s, sq_warp, ck, lane);
    else
      mma_tiles_a_bt<T, kM - 1, kM, kMStride, D, kBc, kP>(s, sq_warp, ck, lane);
    std::uint32_t pa[kM][kBc / Operand<T>::kK][4];
#pragma unroll
    for (int mt = 0; mt < kM; ++mt) {
      if (mt < kM - 1 && !all_live) continue;
      online_softmax_tile<kBc, D>(s[mt], m[mt], l[mt], o[mt], key0, row0 + mt * kMStride, seq, scale2, lane);
      to_a_frags<T, kBc>(pa[mt], s[mt]);
    }
    if (all_live)
      mma_tiles_p_b<T, 0, kM, kBc, D, kP>(o, pa, cv, lane);
    else
      mma_tiles_p_b<T, kM - 1, kM, kBc, D, kP>(o, pa, cv, lane);
    __syncthreads();  // stage j & 1 is refilled by the next iteration's prefetch
  }
  cp_async_wait<0>();
#pragma unroll
  for (int mt = 0; mt < kM; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = quad_sum(l[mt][r]);
      const int row = row0 + mt * kMStride + g + 8 * r;
      if (row >= seq) continue;
      Elem* yr = y + (static_cast<std::int64_t>(b) * seq + row) * c + static_cast<std::int64_t>(h) * D;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt)
        store_pair<T>(yr + nt * 8 + 2 * t, o[mt][nt][2 * r] / sum, o[mt][nt][2 * r + 1] / sum, false);
      if (t == 0) lse[static_cast<std::int64_t>(bh) * seq + row] = m[mt][r] * kLn2 + log_of(sum);
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
template <class T, int D>
__global__ void __launch_bounds__(kRowdotRows)
    attention_rowdot_kernel(const elem_t<T>* __restrict__ y, const elem_t<T>* __restrict__ dy,
                            float* __restrict__ dvec, std::int64_t rows, int seq, int heads) {
  using Op = Operand<T>;
  using Elem = elem_t<T>;
  constexpr int kChunks = D / Op::kChunk, kPitch = D + Op::kPad;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* sy = reinterpret_cast<Elem*>(smem);
  Elem* sd = sy + kRowdotRows * kPitch;
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * kRowdotRows;
  const int n = static_cast<int>(min(static_cast<std::int64_t>(kRowdotRows), rows - row0));
  const auto* gy = reinterpret_cast<const uint4*>(y + row0 * D);
  const auto* gd = reinterpret_cast<const uint4*>(dy + row0 * D);
#pragma unroll
  for (int it = 0; it < kChunks; ++it) {
    const int i = it * kRowdotRows + static_cast<int>(threadIdx.x), r = i / kChunks, ch = i % kChunks;
    if (r < n) {
      *reinterpret_cast<uint4*>(sy + r * kPitch + ch * Op::kChunk) = gy[i];
      *reinterpret_cast<uint4*>(sd + r * kPitch + ch * Op::kChunk) = gd[i];
    }
  }
  __syncthreads();
  const int r = static_cast<int>(threadIdx.x);
  if (r >= n) return;
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const uint4 a = *reinterpret_cast<const uint4*>(sy + r * kPitch + i * Op::kChunk);
    const uint4 d = *reinterpret_cast<const uint4*>(sd + r * kPitch + i * Op::kChunk);
    const std::uint32_t av[4] = {a.x, a.y, a.z, a.w}, dv[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      if constexpr (Op::kTf32) {  // dO as the products see it (dP = dO V^T), so D_i = sum_j P_ij dP_ij
        acc += __uint_as_float(to_tf32(__uint_as_float(dv[w]))) * __uint_as_float(av[w]);
      } else {
        const float2 yf = unpack2<T>(av[w]), df = unpack2<T>(dv[w]);
        acc += df.x * yf.x;
        acc += df.y * yf.y;
      }
    }
  }
  const std::int64_t idx = row0 + r, bt = idx / heads;
  const int h = static_cast<int>(idx % heads);
  const std::int64_t b = bt / seq, tt = bt % seq;
  dvec[(b * heads + h) * seq + tt] = acc;
}

/// dQ = dS K for one query block of 64 and head bh0 + blockIdx.y, from the dS^T tiles the dK/dV
/// kernel stored (`ds`: the group's heads, ds_tile_index order), summed over key tiles in order.
template <class T, int D, class G>
__global__ void __launch_bounds__(kThreads, 1)
    attention_dq_kernel(const elem_t<T>* __restrict__ qkv, const elem_t<T>* __restrict__ ds,
                        G* __restrict__ dqkv, int seq, int heads, int bh0, std::int64_t ds_head_tiles,
                        bool accumulate) {
  using Tl = Tiles<T, D>;
  using Elem = elem_t<T>;
  constexpr int kChunk = Operand<T>::kChunk;
  constexpr int kBr = Tl::kDqQ, kBc = Tl::kDqK, kP = Tl::kPitch, kSP = Tl::kDsPitch;
  static_assert(kBr == kDs && kBc == kDs);
  extern __shared__ __align__(16) unsigned char smem[];
  auto* sk = reinterpret_cast<Elem*>(smem);  // 2 stages
  Elem* sds = sk + 2 * kBc * kP;              // 2 stages
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4;
  const int qb = static_cast<int>(gridDim.x - 1 - blockIdx.x);  // the longest rows first
  const int q0 = qb * kBr;
  const int bh = bh0 + static_cast<int>(blockIdx.y), b = bh / heads, h = bh % heads;
  const std::int64_t c = static_cast<std::int64_t>(heads) * D, ld = 3 * c;
  const std::int64_t head_off = static_cast<std::int64_t>(b) * seq * ld + static_cast<std::int64_t>(h) * D;
  const Elem* k = qkv + head_off + c;
  const Elem* ds_q =
      ds + (static_cast<std::int64_t>(blockIdx.y) * ds_head_tiles + ds_tile_index(qb, 0)) * kDs * kDs;
  // dS^T tile j of this query block: kDs rows (keys) of kDs queries, 16-byte chunks over the block.
  auto load_ds = [&](Elem* dst, int j) {
    const Elem* src = ds_q + static_cast<std::int64_t>(j) * kDs * kDs;
#pragma unroll
    for (int it = 0; it < kDs * kDs / kChunk / kThreads; ++it) {
      const int idx = it * kThreads + static_cast<int>(threadIdx.x);
      const int r = idx / (kDs / kChunk), ch = idx % (kDs / kChunk);
      cp_async16(dst + r * kSP + ch * kChunk, src + r * kDs + ch * kChunk, true);
    }
  };
  const int n_tiles = qb + 1;  // key tiles up to the diagonal
  load_tile<T, kBc, D>(sk, k, ld, 0, seq);
  load_ds(sds, 0);
  cp_async_commit();
  float dq[D / 8][4] = {};
  for (int j = 0; j < n_tiles; ++j) {
    if (j + 1 < n_tiles) {
      load_tile<T, kBc, D>(sk + ((j + 1) & 1) * kBc * kP, k, ld, (j + 1) * kBc, seq);
      load_ds(sds + ((j + 1) & 1) * kBc * kSP, j + 1);
    }
    cp_async_commit();
    cp_async_wait<1>();
    round_tile<T, kBc, D>(sk + (j & 1) * kBc * kP);  // dS^T was stored rounded
    __syncthreads();
    // dq (this warp's 16 queries x D) += dS (16 x kBc keys) K (kBc x D)
    mma_at_b<T, kBc, D, kSP, kP>(dq, sds + (j & 1) * kBc * kSP + warp * 16, sk + (j & 1) * kBc * kP, lane);
    __syncthreads();  // stage j & 1 is refilled by the next iteration's prefetch
  }
  cp_async_wait<0>();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = q0 + warp * 16 + g + 8 * r;
    if (row >= seq) continue;
    G* out = dqkv + head_off + static_cast<std::int64_t>(row) * ld;
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt)
      store_pair<T>(out + nt * 8 + 2 * t, dq[nt][2 * r], dq[nt][2 * r + 1], accumulate);
  }
}

/// dK and dV for one key block of 64 and head bh0 + blockIdx.y; each query tile's dS^T (rounded to
/// T, the dK product's operand) also goes to `ds` (the group's heads, ds_tile_index order) for dQ.
template <class T, int D, class G>
__global__ void __launch_bounds__(kThreads, 1)
    attention_dkdv_kernel(const elem_t<T>* __restrict__ qkv, const elem_t<T>* __restrict__ dy,
                          const float* __restrict__ lse, const float* __restrict__ dvec, G* __restrict__ dqkv,
                          elem_t<T>* __restrict__ ds, int seq, int heads, int bh0, std::int64_t ds_head_tiles,
                          float scale, bool accumulate) {
  using Tl = Tiles<T, D>;
  using Elem = elem_t<T>;
  constexpr int kChunk = Operand<T>::kChunk;
  constexpr int kBc = Tl::kDkvK, kBr = Tl::kDkvQ, kP = Tl::kPitch, kSP = Tl::kDsPitch;
  static_assert(kBc == kDs && kDs % kBr == 0);
  extern __shared__ __align__(16) unsigned char smem[];
  auto* sk = reinterpret_cast<Elem*>(smem);
  Elem* sv = sk + kBc * kP;
  Elem* sq = sv + kBc * kP;     // 2 stages
  Elem* sdo = sq + 2 * kBr * kP;  // 2 stages
  auto* slse = reinterpret_cast<float*>(sdo + 2 * kBr * kP);  // 2 stages
  float* sd = slse + 2 * kBr;                                  // 2 stages
  auto* sds = reinterpret_cast<Elem*>(sd + 2 * kBr);  // dS^T of the tile, kBc x kBr
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4;
  const int kb = static_cast<int>(blockIdx.x), k0 = kb * kBc;  // the first key blocks see the most queries
  const int bh = bh0 + static_cast<int>(blockIdx.y), b = bh / heads, h = bh % heads;
  Elem* ds_h = ds + static_cast<std::int64_t>(blockIdx.y) * ds_head_tiles * kDs * kDs;
  const std::int64_t c = static_cast<std::int64_t>(heads) * D, ld = 3 * c;
  const std::int64_t head_off = static_cast<std::int64_t>(b) * seq * ld + static_cast<std::int64_t>(h) * D;
  const Elem* q = qkv + head_off;
  const Elem* k = q + c;
  const Elem* v = q + 2 * c;
  const Elem* dyh = dy + static_cast<std::int64_t>(b) * seq * c + static_cast<std::int64_t>(h) * D;
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
  load_tile<T, kBc, D>(sk, k, ld, k0, seq);
  load_tile<T, kBc, D>(sv, v, ld, k0, seq);
  load_tile<T, kBr, D>(sq, q, ld, i_begin * kBr, seq);
  load_tile<T, kBr, D>(sdo, dyh, c, i_begin * kBr, seq);
  cp_async_commit();
  load_stats(0, i_begin);

  const int key_base = k0 + warp * 16;  // this warp's keys: key_base + g (elements 0, 1), + g + 8 (2, 3)
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};
  for (int i = i_begin; i < n_qt; ++i) {
    const int st = (i - i_begin) & 1;
    if (i + 1 < n_qt) {
      load_tile<T, kBr, D>(sq + (st ^ 1) * kBr * kP, q, ld, (i + 1) * kBr, seq);
      load_tile<T, kBr, D>(sdo + (st ^ 1) * kBr * kP, dyh, c, (i + 1) * kBr, seq);
      load_stats(st ^ 1, i + 1);
    }
    cp_async_commit();
    cp_async_wait<1>();
    if (i == i_begin) {
      round_tile<T, kBc, D>(sk);
      round_tile<T, kBc, D>(sv);
    }
    round_tile<T, kBr, D>(sq + st * kBr * kP);
    round_tile<T, kBr, D>(sdo + st * kBr * kP);
    __syncthreads();
    const int q0 = i * kBr;
    Elem* ds_w = sds + warp * 16 * kSP;  // this warp's 16 rows of dS^T
    if (q0 + kBr - 1 >= key_base) {  // else every (query, key) pair of the warp is above the diagonal
      const Elem* cq = sq + st * kBr * kP;
      const Elem* cdo = sdo + st * kBr * kP;
      const float* cl = slse + st * kBr;
      const float* cd = sd + st * kBr;
      float s[kBr / 8][4] = {}, dp[kBr / 8][4] = {};
      mma_a_bt<T, D, kBr, kP>(s, sk + warp * 16 * kP, cq, lane);    // S^T (keys x queries)
      mma_a_bt<T, D, kBr, kP>(dp, sv + warp * 16 * kP, cdo, lane);  // dP^T
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
      std::uint32_t pa[kBr / Operand<T>::kK][4];
      to_a_frags<T, kBr>(pa, s);
      mma_p_b<T, kBr, D, kP>(dv, pa, cdo, lane);  // dV += P^T dO
      to_a_frags<T, kBr>(pa, dp);
      mma_p_b<T, kBr, D, kP>(dk, pa, cq, lane);  // dK += dS^T Q
      if constexpr (Operand<T>::kTf32) {  // n-tile kk's columns 2t, 2t + 1 were k slots t, t + 4
#pragma unroll
        for (int kk = 0; kk < kBr / 8; ++kk) {
          *reinterpret_cast<uint2*>(ds_w + g * kSP + kk * 8 + 2 * t) = make_uint2(pa[kk][0], pa[kk][2]);
          *reinterpret_cast<uint2*>(ds_w + (g + 8) * kSP + kk * 8 + 2 * t) = make_uint2(pa[kk][1], pa[kk][3]);
        }
      } else {
#pragma unroll
        for (int kk = 0; kk < kBr / 16; ++kk) {  // the A fragments' layout (see the file comment)
          *reinterpret_cast<std::uint32_t*>(ds_w + g * kSP + kk * 16 + 2 * t) = pa[kk][0];
          *reinterpret_cast<std::uint32_t*>(ds_w + (g + 8) * kSP + kk * 16 + 2 * t) = pa[kk][1];
          *reinterpret_cast<std::uint32_t*>(ds_w + g * kSP + kk * 16 + 8 + 2 * t) = pa[kk][2];
          *reinterpret_cast<std::uint32_t*>(ds_w + (g + 8) * kSP + kk * 16 + 8 + 2 * t) = pa[kk][3];
        }
      }
    } else {
#pragma unroll
      for (int kk = 0; kk < kBr / 8; ++kk)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          Elem* z = ds_w + (g + 8 * r) * kSP + kk * 8 + 2 * t;
          z[0] = Elem{};
          z[1] = Elem{};
        }
    }
    __syncthreads();  // dS^T complete: out to the workspace, 16 bytes a thread at a time
    {
      const int qb = q0 / kDs, qcol = q0 % kDs;  // kBr = 32 tiles fill half of a kDs x kDs tile
      Elem* tile = ds_h + ds_tile_index(qb, kb) * kDs * kDs + qcol;
#pragma unroll
      for (int it = 0; it < kBc * kBr / kChunk / kThreads; ++it) {
        const int idx = it * kThreads + static_cast<int>(threadIdx.x);
        const int r = idx / (kBr / kChunk), ch = idx % (kBr / kChunk);
        *reinterpret_cast<uint4*>(tile + r * kDs + ch * kChunk) =
            *reinterpret_cast<const uint4*>(sds + r * kSP + ch * kChunk);
      }
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
      store_pair<T>(out + c + nt * 8 + 2 * t, dk[nt][2 * r], dk[nt][2 * r + 1], accumulate);
      store_pair<T>(out + 2 * c + nt * 8 + 2 * t, dv[nt][2 * r], dv[nt][2 * r + 1], accumulate);
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

}  // namespace attn

/// The backward's dS^T workspace: the causal kDs x kDs tiles of one head, and how many heads one
/// group holds within kAttentionDsBytes (at least one), for elements of `element_bytes`. GPT-2
/// small (T 1024): 136 tiles, 1.1 MB a head in bf16, its 192 heads in one group (two in f32).
inline constexpr std::int64_t kAttentionDsBytes = std::int64_t{256} << 20;
constexpr std::int64_t attention_ds_tiles(std::int64_t seq) {
  const std::int64_t n = (seq + attn::kDs - 1) / attn::kDs;
  return n * (n + 1) / 2;
}
inline std::int64_t attention_ds_group_heads(const AttentionDims& d, std::int64_t element_bytes) {
  const std::int64_t head_bytes = attention_ds_tiles(d.seq) * attn::kDs * attn::kDs * element_bytes;
  return std::clamp<std::int64_t>(kAttentionDsBytes / std::max<std::int64_t>(head_bytes, 1), 1,
                                  std::max<std::int64_t>(d.batch * d.heads, 1));
}

/// T: bf16, f16, or f32 multiplied as TF32 (the caller checks the context allows it).
template <class T>
void causal_attention_forward(const ExecutionContext& ctx, const AttentionDims& dims, const T* qkv, T* y, float* lse,
                              float scale) {
  using Elem = attn::elem_t<T>;
  if (dims.batch == 0 || dims.seq == 0) return;
  DeviceScope scope(ctx.device().index());
  const auto* q = reinterpret_cast<const Elem*>(qkv);
  auto* yo = reinterpret_cast<Elem*>(y);
  const int seq = static_cast<int>(dims.seq), heads = static_cast<int>(dims.heads);
  attn::visit_head_dim(dims.head_dim, [&]<int D>() {
    using Tl = attn::Tiles<T, D>;
    auto kernel = attn::attention_forward_kernel<T, D>;
    attn::set_smem(kernel, Tl::kFwdSmem);
    const dim3 grid(static_cast<unsigned>((seq + Tl::kFwdQ - 1) / Tl::kFwdQ), static_cast<unsigned>(dims.batch * heads));
    kernel<<<grid, attn::kThreads, Tl::kFwdSmem, ctx.stream()>>>(q, yo, lse, seq, heads, scale);
  });
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

/// `dvec` is (B, H, T) f32 scratch for D = rowsum(dO * O); `ds` holds the dS^T tiles of
/// `group_heads` heads (attention_ds_tiles(T) tiles of kDs x kDs T each): the backward runs the
/// batch's B * H heads group by group. G: T or f32.
template <class T, class G>
void causal_attention_backward(const ExecutionContext& ctx, const AttentionDims& dims, const T* qkv, const T* y,
                               const T* dy, const float* lse, float* dvec, T* ds, std::int64_t group_heads, G* dqkv,
                               float scale, bool accumulate) {
  static_assert(std::is_same_v<G, T> || std::is_same_v<G, float>);
  using Elem = attn::elem_t<T>;
  if (dims.batch == 0 || dims.seq == 0) return;
  DeviceScope scope(ctx.device().index());
  using GB = std::conditional_t<std::is_same_v<G, float>, float, Elem>;
  const auto* q = reinterpret_cast<const Elem*>(qkv);
  const auto* yo = reinterpret_cast<const Elem*>(y);
  const auto* dyo = reinterpret_cast<const Elem*>(dy);
  auto* dso = reinterpret_cast<Elem*>(ds);
  auto* dq = reinterpret_cast<GB*>(dqkv);
  const int seq = static_cast<int>(dims.seq), heads = static_cast<int>(dims.heads);
  const std::int64_t rows = dims.batch * dims.seq * dims.heads, all_heads = dims.batch * dims.heads;
  const std::int64_t head_tiles = attention_ds_tiles(dims.seq);
  attn::visit_head_dim(dims.head_dim, [&]<int D>() {
    using Tl = attn::Tiles<T, D>;
    auto rowdot = attn::attention_rowdot_kernel<T, D>;
    constexpr int kRowdotSmem = 2 * attn::kRowdotRows * Tl::kPitch * Tl::kBytes;
    attn::set_smem(rowdot, kRowdotSmem);
    rowdot<<<static_cast<unsigned>((rows + attn::kRowdotRows - 1) / attn::kRowdotRows), attn::kRowdotRows, kRowdotSmem,
             ctx.stream()>>>(yo, dyo, dvec, rows, seq, heads);
    MIXTAPE_CUDA_CHECK(cudaGetLastError());
    auto dkdv = attn::attention_dkdv_kernel<T, D, GB>;
    attn::set_smem(dkdv, Tl::kDkvSmem);
    auto dqk = attn::attention_dq_kernel<T, D, GB>;
    attn::set_smem(dqk, Tl::kDqSmem);
    for (std::int64_t bh0 = 0; bh0 < all_heads; bh0 += group_heads) {
      const auto n = static_cast<unsigned>(std::min(group_heads, all_heads - bh0));
      const int first = static_cast<int>(bh0);
      dkdv<<<dim3(static_cast<unsigned>((seq + Tl::kDkvK - 1) / Tl::kDkvK), n), attn::kThreads, Tl::kDkvSmem,
             ctx.stream()>>>(q, dyo, lse, dvec, dq, dso, seq, heads, first, head_tiles, scale, accumulate);
      MIXTAPE_CUDA_CHECK(cudaGetLastError());
      dqk<<<dim3(static_cast<unsigned>((seq + Tl::kDqQ - 1) / Tl::kDqQ), n), attn::kThreads, Tl::kDqSmem,
            ctx.stream()>>>(q, dso, dq, seq, heads, first, head_tiles, accumulate);
      MIXTAPE_CUDA_CHECK(cudaGetLastError());
    }
  });
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
