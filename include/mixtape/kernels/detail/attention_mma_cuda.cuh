/// @file attention_mma_cuda.cuh
/// @brief The tensor-core building blocks of the fused attention (only in `.cu` units): operand
///        formats (16-bit: m16n8k16; f32 as TF32: m16n8k8), cp.async tile loads, ldmatrix and
///        mma wrappers, and the fragment products the kernels in attention_cuda.cuh are written in.
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
/// Shared-memory rows are padded by 16 bytes (pitch D + 8 halves or D + 4 floats): the 8 row
/// addresses of one 8x8 matrix then fall in 8 different 16-byte bank groups (no ldmatrix bank
/// conflicts).
///
/// TF32 (m16n8k8, .tf32 operands, one f32 a register; PTX ISA "Matrix Fragments for mma.m16n8k8"):
///   A (16 x 8):  a0 = (g, t)  a1 = (g+8, t)  a2 = (g, t+4)  a3 = (g+8, t+4)
///   B (8 x 8):   b0 = (k t, n g)  b1 = (k t+4, n g)           C as above.
/// A k-step is 8 floats, 32 bytes, as the 16 halves of the 16-bit k-step, and ldmatrix.b16 hands
/// lane l the 32-bit word l%4 of row l/4: so the A operand and the B operand from X[n][k] load with
/// the same instructions at the same byte addresses as above. The other two differ, and use the
/// freedom to number a product's k index in any order shared by both operands: an accumulator
/// tile's columns 2t, 2t+1 (c0, c1) become k slots t and t+4, so A = (c0, c2, c1, c3) rounded to
/// TF32, and B from X[k][n] (k down the rows) reads rows 2t and 2t+1 with plain 32-bit loads (two
/// rows of the D + 4 pitch are 8 banks apart, so the 32 lanes hit 32 banks).
#pragma once

#if !defined(__CUDACC__)
#error "attention_mma_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/numeric/numeric.hpp"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {
namespace attn {

inline constexpr int kThreads = 128;  // 4 warps

/// The operand formats: bf16 and f16 (16-bit elements, m16n8k16) and f32 multiplied as TF32 (32-bit
/// elements, m16n8k8). Either way a k-step is 32 bytes of a row and a row is padded by 16 bytes.
template <class T>
struct Operand {
  static_assert(std::is_same_v<T, bf16> || std::is_same_v<T, f16> || std::is_same_v<T, float>);
  using Elem = std::conditional_t<std::is_same_v<T, float>, float, std::uint16_t>;  // storage
  static constexpr bool kTf32 = std::is_same_v<T, float>;
  static constexpr int kK = 32 / static_cast<int>(sizeof(Elem));    // k of one mma
  static constexpr int kPad = 16 / static_cast<int>(sizeof(Elem));  // row padding, elements
  static constexpr int kChunk = kPad;                               // elements of a 16-byte chunk
};
template <class T>
using elem_t = typename Operand<T>::Elem;

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

/// c += a b for one 16 x 8 x kK tile (f32 accumulate).
template <class T>
__device__ __forceinline__ void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  if constexpr (std::is_same_v<T, bf16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else if constexpr (std::is_same_v<T, f16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

/// f32 rounded to TF32 (nearest, ties away from zero: cvt.rna), in an f32 register's bits.
__device__ __forceinline__ std::uint32_t to_tf32(float x) {
  std::uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

/// Two floats rounded (nearest even) into one register of T pairs: `lo` in the lower half.
template <class T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  std::uint32_t r;
  if constexpr (std::is_same_v<T, bf16>) {
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  } else {
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  }
  return r;
}
template <class T>
__device__ __forceinline__ float2 unpack2(std::uint32_t v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
  } else {
    float lo, hi;
    asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.f32.f16 %0, l;\n cvt.f32.f16 %1, h;\n}\n"
        : "=f"(lo), "=f"(hi)
        : "r"(v));
    return make_float2(lo, hi);
  }
}

/// Writes (or adds into) two adjacent output elements of type G (T's bits, or float).
template <class T, class G>
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
      const float2 o = unpack2<T>(*p);
      x0 = o.x + x0;
      x1 = o.y + x1;
    }
    *p = pack2<T>(x0, x1);
  }
}

/// Rows [row0, row0 + kRows) of a (seq, D) matrix with row stride ld into a padded shared tile,
/// zero-filling rows >= seq; one cp.async per 16 bytes, spread over the block.
template <class T, int kRows, int D>
__device__ __forceinline__ void load_tile(elem_t<T>* s, const elem_t<T>* g, std::int64_t ld, int row0, int seq) {
  using Op = Operand<T>;
  constexpr int kChunks = D / Op::kChunk, kPitch = D + Op::kPad;
  static_assert((kRows * kChunks) % kThreads == 0);
#pragma unroll
  for (int it = 0; it < kRows * kChunks / kThreads; ++it) {
    const int idx = it * kThreads + static_cast<int>(threadIdx.x);
    const int r = idx / kChunks, ch = idx % kChunks, gr = row0 + r;
    const bool ok = gr < seq;
    cp_async16(s + r * kPitch + ch * Op::kChunk, g + static_cast<std::int64_t>(ok ? gr : 0) * ld + ch * Op::kChunk,
               ok);
  }
}

/// TF32 operands: the chunks this thread's load_tile of the same tile brought in, rounded to TF32
/// in place. Call after cp_async_wait covers the tile and before the barrier that publishes it
/// (a thread sees its own completed copies). A no-op for 16-bit operands.
template <class T, int kRows, int D>
__device__ __forceinline__ void round_tile(elem_t<T>* s) {
  if constexpr (Operand<T>::kTf32) {
    constexpr int kChunks = D / 4, kPitch = D + 4;
#pragma unroll
    for (int it = 0; it < kRows * kChunks / kThreads; ++it) {
      const int idx = it * kThreads + static_cast<int>(threadIdx.x), r = idx / kChunks, ch = idx % kChunks;
      auto* p = reinterpret_cast<uint4*>(s + r * kPitch + ch * 4);
      const float4 v = *reinterpret_cast<const float4*>(p);
      *p = make_uint4(to_tf32(v.x), to_tf32(v.y), to_tf32(v.z), to_tf32(v.w));
    }
  }
}

/// The B fragments of k-step kk, n-tiles 2 n2 and 2 n2 + 1, from X[k][n] (k down the rows of `sb`):
/// ldmatrix.trans for 16-bit operands; for TF32, rows 8 kk + 2t and 8 kk + 2t + 1 as k slots t and
/// t + 4 (the order to_a_frags gives the A side), plain 32-bit loads.
template <class T, int kPitch>
__device__ __forceinline__ void load_b_rows(std::uint32_t (&b)[4], const elem_t<T>* sb, int kk, int n2, int lane) {
  if constexpr (Operand<T>::kTf32) {
    const auto* r0 =
        reinterpret_cast<const std::uint32_t*>(sb + (kk * 8 + 2 * (lane % 4)) * kPitch + n2 * 16 + lane / 4);
    b[0] = r0[0];
    b[1] = r0[kPitch];
    b[2] = r0[8];
    b[3] = r0[kPitch + 8];
  } else {
    ldsm_x4_trans(b, sb + (kk * 16 + lane % 16) * kPitch + n2 * 16 + 8 * (lane / 16));
  }
}

/// acc[mt] (16 x kN each) += A_mt B^T for the warp's m-tiles mt in [kMBegin, kMEnd): A_mt is 16 rows
/// of `sa` starting at row kMStride * mt, B = kN rows of `sb` (each kK long). Each B fragment is
/// loaded once for all the m-tiles, so shared-memory traffic per mma falls with their count.
template <class T, int kMBegin, int kMEnd, int kMStride, int kK, int kN, int kPitch, int kM>
__device__ __forceinline__ void mma_tiles_a_bt(float (&acc)[kM][kN / 8][4], const elem_t<T>* sa, const elem_t<T>* sb,
                                               int lane) {
  constexpr int kStep = Operand<T>::kK, kHalf = kStep / 2;
#pragma unroll
  for (int ks = 0; ks < kK / kStep; ++ks) {
    std::uint32_t a[kM][4];
#pragma unroll
    for (int mt = kMBegin; mt < kMEnd; ++mt)
      ldsm_x4(a[mt], sa + (mt * kMStride + lane % 16) * kPitch + ks * kStep + kHalf * (lane / 16));
#pragma unroll
    for (int n2 = 0; n2 < kN / 16; ++n2) {
      std::uint32_t b[4];
      ldsm_x4(b, sb + (n2 * 16 + lane % 8 + 8 * (lane / 16)) * kPitch + ks * kStep + kHalf * ((lane / 8) % 2));
#pragma unroll
      for (int mt = kMBegin; mt < kMEnd; ++mt) {
        mma<T>(acc[mt][2 * n2], a[mt], b[0], b[1]);
        mma<T>(acc[mt][2 * n2 + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

/// acc[mt] (16 x kN each) += P_mt B for mt in [kMBegin, kMEnd): P_mt in register A fragments,
/// B = kK rows of `sb` (each kN long, load_b_rows), each B fragment loaded once for all.
template <class T, int kMBegin, int kMEnd, int kK, int kN, int kPitch, int kM>
__device__ __forceinline__ void mma_tiles_p_b(float (&acc)[kM][kN / 8][4],
                                              const std::uint32_t (&pa)[kM][kK / Operand<T>::kK][4],
                                              const elem_t<T>* sb, int lane) {
#pragma unroll
  for (int kk = 0; kk < kK / Operand<T>::kK; ++kk) {
#pragma unroll
    for (int n2 = 0; n2 < kN / 16; ++n2) {
      std::uint32_t b[4];
      load_b_rows<T, kPitch>(b, sb, kk, n2, lane);
#pragma unroll
      for (int mt = kMBegin; mt < kMEnd; ++mt) {
        mma<T>(acc[mt][2 * n2], pa[mt][kk], b[0], b[1]);
        mma<T>(acc[mt][2 * n2 + 1], pa[mt][kk], b[2], b[3]);
      }
    }
  }
}

/// acc (16 x kN) += A (16 x kK, rows of `sa`) B^T with B = kN rows of `sb` (each kK long): both
/// operands row-major in shared memory, so plain ldmatrix for both (Q K^T, dO V^T, K Q^T, V dO^T).
/// One m-tile of mma_tiles_a_bt.
template <class T, int kK, int kN, int kPitch>
__device__ __forceinline__ void mma_a_bt(float (&acc)[kN / 8][4], const elem_t<T>* sa, const elem_t<T>* sb,
                                         int lane) {
  mma_tiles_a_bt<T, 0, 1, 0, kK, kN, kPitch>(reinterpret_cast<float (&)[1][kN / 8][4]>(acc), sa, sb, lane);
}

/// acc (16 x kN) += P (16 x kK, register A fragments) B with B = kK rows of `sb` (each kN long,
/// row-major: the k index runs down the rows, load_b_rows) (P V, dS K, P^T dO, dS^T Q). One m-tile
/// of mma_tiles_p_b.
template <class T, int kK, int kN, int kPitch>
__device__ __forceinline__ void mma_p_b(float (&acc)[kN / 8][4], const std::uint32_t (&pa)[kK / Operand<T>::kK][4],
                                        const elem_t<T>* sb, int lane) {
  mma_tiles_p_b<T, 0, 1, kK, kN, kPitch>(reinterpret_cast<float (&)[1][kN / 8][4]>(acc),
                                         reinterpret_cast<const std::uint32_t (&)[1][kK / Operand<T>::kK][4]>(pa), sb,
                                         lane);
}

/// acc (16 x kN) += X^T (16 x kK) B with X stored kK rows of 16+ (X[k][m]: ldmatrix.trans gives the
/// 16-bit A fragments; TF32 reads rows 8 kk + 2t and + 1 as k slots t and t + 4, as load_b_rows)
/// and B = kK rows of `sb` (load_b_rows): dQ = dS K from dS^T tiles.
template <class T, int kK, int kN, int kXPitch, int kPitch>
__device__ __forceinline__ void mma_at_b(float (&acc)[kN / 8][4], const elem_t<T>* sx, const elem_t<T>* sb,
                                         int lane) {
#pragma unroll
  for (int kk = 0; kk < kK / Operand<T>::kK; ++kk) {
    std::uint32_t a[4];
    if constexpr (Operand<T>::kTf32) {
      const auto* r0 = reinterpret_cast<const std::uint32_t*>(sx + (kk * 8 + 2 * (lane % 4)) * kXPitch + lane / 4);
      a[0] = r0[0];
      a[1] = r0[8];
      a[2] = r0[kXPitch];
      a[3] = r0[kXPitch + 8];
    } else {
      ldsm_x4_trans(a, sx + (kk * 16 + 8 * (lane / 16) + lane % 8) * kXPitch + 8 * ((lane / 8) % 2));
    }
#pragma unroll
    for (int n2 = 0; n2 < kN / 16; ++n2) {
      std::uint32_t b[4];
      load_b_rows<T, kPitch>(b, sb, kk, n2, lane);
      mma<T>(acc[2 * n2], a, b[0], b[1]);
      mma<T>(acc[2 * n2 + 1], a, b[2], b[3]);
    }
  }
}

/// The C fragments of a 16 x kN f32 tile rounded to T as the A fragments of the next mma: for
/// 16-bit operands two adjacent n-tiles make a k-step; for TF32 one n-tile does, its columns 2t and
/// 2t + 1 becoming k slots t and t + 4.
template <class T, int kN>
__device__ __forceinline__ void to_a_frags(std::uint32_t (&pa)[kN / Operand<T>::kK][4], const float (&c)[kN / 8][4]) {
  if constexpr (Operand<T>::kTf32) {
#pragma unroll
    for (int kk = 0; kk < kN / 8; ++kk) {
      pa[kk][0] = to_tf32(c[kk][0]);
      pa[kk][1] = to_tf32(c[kk][2]);
      pa[kk][2] = to_tf32(c[kk][1]);
      pa[kk][3] = to_tf32(c[kk][3]);
    }
  } else {
#pragma unroll
    for (int kk = 0; kk < kN / 16; ++kk) {
      pa[kk][0] = pack2<T>(c[2 * kk][0], c[2 * kk][1]);
      pa[kk][1] = pack2<T>(c[2 * kk][2], c[2 * kk][3]);
      pa[kk][2] = pack2<T>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
      pa[kk][3] = pack2<T>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
    }
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

}  // namespace attn
}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
