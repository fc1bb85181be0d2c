/// @file gemm_types.hpp
/// @brief The GEMM descriptor every backend takes: operands with dtype, transpose flag, leading
///        dimension, batch stride and (for the FP8 work) scale pointer and mode; the output with
///        beta, output scale and amax; bias, auxiliary and bias-gradient pointers for the epilogues;
///        compute flags. Plain data: no tensor, no context, no backend.
///
/// Conventions (row-major, like PyTorch):
///
///     C (m x n) = epilogue(alpha * op(A) (m x k) * op(B) (k x n) + beta * C)
///
/// `op(X)` is X or X^T (`transpose`). A stored matrix is row-major with a leading dimension `ld`
/// (the distance in elements between consecutive rows of the *stored* matrix): A stored is m x k
/// (k x m when transposed), B stored is k x n (n x k when transposed), C is m x n, never transposed.
/// Batched: `batch` matrices, operand `batch_stride` elements apart (0 broadcasts one matrix).
#pragma once

#include <cstdint>
#include <string_view>

#include "mixtape/core/dtype.hpp"

namespace mixtape::blas {

/// How an operand's scale pointer is read. Only `none` is accepted today: operand scales belong to
/// FP8 operands (TransformerEngine's per-tensor scale_inv, per-row, and DeepSeek-style 1x128 /
/// 128x128 block scales), which this build's backends do not take yet. The modes exist so that the
/// descriptor does not change shape when they arrive.
enum class ScaleMode : std::uint8_t { none, per_tensor, per_row, block_1x128, block_128x128 };

/// What happens to `v = alpha * op(A) op(B) + beta * C` before it is stored (cuBLASLt's epilogues,
/// restated for row-major C; `bias` has n elements and is broadcast over rows):
///
/// | kind            | C                    | also                                              |
/// |-----------------|----------------------|---------------------------------------------------|
/// | none            | v                    |                                                   |
/// | bias            | v + bias             |                                                   |
/// | gelu            | gelu(v)              |                                                   |
/// | bias_gelu       | gelu(v + bias)       |                                                   |
/// | gelu_aux        | gelu(v)              | aux = v (the pre-activation, for backward)        |
/// | bias_gelu_aux   | gelu(v + bias)       | aux = v + bias                                    |
/// | dgelu           | v * gelu'(aux)       | aux is read (the saved pre-activation)            |
/// | dgelu_bgrad     | v * gelu'(aux)       | bias_grad[j] = sum_i C[i][j] (n elements)         |
/// | bgrad_a         | v                    | bias_grad[i] = sum_k op(A)[i][k] (m elements)     |
/// | bgrad_b         | v                    | bias_grad[j] = sum_k op(B)[k][j] (n elements)     |
///
/// gelu is the tanh approximation (PyTorch's `approximate="tanh"`, cuBLASLt's GELU):
/// gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
///
/// Bias gradients: dgelu_bgrad sums the product *after* the GELU backward, in the accumulate type,
/// before rounding to C's type (cuBLASLt's DGELU_BGRAD). bgrad_a and bgrad_b reduce an input operand
/// over the GEMM's k dimension and are not scaled by alpha (cuBLASLt's BGRADA / BGRADB, named for
/// the row-major operands: row-major C = A B is computed as column-major C^T = B^T A^T, so bgrad_a
/// is cuBLASLt's BGRADB and bgrad_b its BGRADA). A Linear layer's weight gradient
/// dW (out x in) = dY^T X with A = dY (tokens x out, transposed) gets the bias gradient
/// sum_tokens dY with bgrad_a. Bias-gradient epilogues take batch == 1.
enum class Epilogue : std::uint8_t {
  none,
  bias,
  gelu,
  bias_gelu,
  gelu_aux,
  bias_gelu_aux,
  dgelu,
  dgelu_bgrad,
  bgrad_a,
  bgrad_b,
};

inline constexpr int kEpilogueCount = 10;

constexpr std::string_view epilogue_name(Epilogue e) noexcept {
  constexpr std::string_view kNames[kEpilogueCount] = {"none",          "bias",  "gelu",        "bias_gelu", "gelu_aux",
                                                       "bias_gelu_aux", "dgelu", "dgelu_bgrad", "bgrad_a",   "bgrad_b"};
  const auto i = static_cast<int>(e);
  return i < kEpilogueCount ? kNames[i] : std::string_view("invalid");
}

/// The epilogue reads `bias` (n elements).
MIXTAPE_HOST_DEVICE constexpr bool epilogue_reads_bias(Epilogue e) noexcept {
  return e == Epilogue::bias || e == Epilogue::bias_gelu || e == Epilogue::bias_gelu_aux;
}
/// The epilogue applies GELU (forward).
MIXTAPE_HOST_DEVICE constexpr bool epilogue_gelu(Epilogue e) noexcept {
  return e == Epilogue::gelu || e == Epilogue::bias_gelu || e == Epilogue::gelu_aux || e == Epilogue::bias_gelu_aux;
}
/// The epilogue writes the pre-activation to `aux`.
MIXTAPE_HOST_DEVICE constexpr bool epilogue_writes_aux(Epilogue e) noexcept { return e == Epilogue::gelu_aux || e == Epilogue::bias_gelu_aux; }
/// The epilogue reads the saved pre-activation from `aux` (GELU backward).
MIXTAPE_HOST_DEVICE constexpr bool epilogue_dgelu(Epilogue e) noexcept { return e == Epilogue::dgelu || e == Epilogue::dgelu_bgrad; }
/// The epilogue uses `aux` (either direction).
MIXTAPE_HOST_DEVICE constexpr bool epilogue_uses_aux(Epilogue e) noexcept { return epilogue_writes_aux(e) || epilogue_dgelu(e); }
/// The epilogue writes `bias_grad`.
MIXTAPE_HOST_DEVICE constexpr bool epilogue_writes_bias_grad(Epilogue e) noexcept {
  return e == Epilogue::dgelu_bgrad || e == Epilogue::bgrad_a || e == Epilogue::bgrad_b;
}

constexpr std::string_view scale_mode_name(ScaleMode s) noexcept {
  constexpr std::string_view kNames[5] = {"none", "per_tensor", "per_row", "block_1x128", "block_128x128"};
  const auto i = static_cast<int>(s);
  return i < 5 ? kNames[i] : std::string_view("invalid");
}

/// Which host micro-kernels run (tests compare them; users keep `best`).
///  - best: the fastest this CPU supports (chosen at run time with `__builtin_cpu_supports`);
///  - portable: C++ with GCC / Clang vector extensions (16-byte vectors: SSE2, NEON), plain loops
///    with other compilers;
///  - avx2: AVX2 + FMA kernels for x86 CPUs without AVX-512 (f16 / bf16 widened while packing);
///  - avx512: AVX-512F FMA kernels (f16 / bf16 operands widened to f32 while packing);
///  - avx512_bf16: as avx512, but bf16 operands stay bf16 and multiply with `vdpbf16ps`.
/// Asking for an instruction set the CPU lacks throws BackendError.
enum class HostIsa : std::uint8_t { best, portable, avx2, avx512, avx512_bf16 };

inline constexpr int kHostIsaCount = 5;

constexpr std::string_view host_isa_name(HostIsa isa) noexcept {
  constexpr std::string_view kNames[kHostIsaCount] = {"best", "portable", "avx2", "avx512", "avx512_bf16"};
  const auto i = static_cast<int>(isa);
  return i < kHostIsaCount ? kNames[i] : std::string_view("invalid");
}

/// One input matrix.
struct GemmOperand {
  const void* data = nullptr;        ///< first element of batch 0
  DType dtype = DType::f32;          ///< f64, f32, f16 or bf16 (A and B agree)
  bool transpose = false;            ///< op(X) = X^T: the stored matrix is the transpose
  std::int64_t ld = 0;               ///< leading dimension of the stored (row-major) matrix
  std::int64_t batch_stride = 0;     ///< elements between batch items (0: one matrix for all)
  const float* scale = nullptr;      ///< FP8 dequantisation scale (must be null for now)
  ScaleMode scale_mode = ScaleMode::none;  ///< how `scale` is read (must be none for now)
};

/// The output matrix (also the `beta` input).
struct GemmOutput {
  void* data = nullptr;              ///< first element of batch 0
  DType dtype = DType::f32;          ///< f32, f16, bf16; f64 with f64 operands
  std::int64_t ld = 0;               ///< leading dimension (>= n)
  std::int64_t batch_stride = 0;     ///< elements between batch items
  double beta = 0.0;                 ///< 0: C is not read (NaNs in it do not propagate)
  const float* scale = nullptr;      ///< FP8 output quantisation scale (must be null for now)
  /// When set: one f32 that receives max |C| over every stored element of every batch item (the
  /// values as stored, after the epilogue and the rounding to C's type), NaN if any is NaN. On
  /// CUDA it is written on the stream: nothing is copied back.
  float* amax = nullptr;
};

/// Pointers the epilogue reads or writes (see Epilogue for which kind uses which).
struct GemmEpilogue {
  Epilogue kind = Epilogue::none;
  const void* bias = nullptr;        ///< n elements (bias kinds)
  DType bias_dtype = DType::f32;     ///< f64, f32, f16 or bf16
  void* bias_grad = nullptr;         ///< n elements (dgelu_bgrad, bgrad_b) or m (bgrad_a)
  DType bias_grad_dtype = DType::f32;  ///< f64, f32, f16 or bf16
  void* aux = nullptr;               ///< m x n pre-activations in C's dtype (written by *_aux, read by dgelu*)
  std::int64_t aux_ld = 0;           ///< leading dimension of aux (>= n)
  std::int64_t aux_batch_stride = 0; ///< elements between batch items of aux
};

/// The whole GEMM: sizes, operands, output, scalars, epilogue and flags.
///
/// Accumulation: f64 operands accumulate in f64; f32, f16 and bf16 operands in f32. Outputs: f32,
/// f16, bf16 for any operands, f64 for f64 operands. `bias`, `bias_grad` and `aux` follow the same
/// rules. Everything must live on the context's device.
struct GemmDesc {
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t batch = 1;
  GemmOperand a, b;
  GemmOutput c;
  double alpha = 1.0;
  GemmEpilogue epilogue;
  /// f32 operands on CUDA: let cuBLASLt round them to TF32 (10-bit mantissa) on the tensor cores.
  /// Off by default (PyTorch's default for matmul since 1.12). The host ignores it (full f32).
  bool allow_tf32 = false;
  /// CUDA with f16 / bf16 outputs: let cuBLASLt split k and add the partial sums in the output
  /// type (its INPLACE and OUTPUT_TYPE reduction schemes), which rounds each partial to 8 or 11
  /// bits. Off by default, unlike PyTorch's `allow_bf16_reduced_precision_reduction` (on): with it
  /// off, a split-k algorithm reduces in f32, and the accumulation is f32 as this page promises.
  /// The host never reduces in the output type.
  bool allow_reduced_precision_reduction = false;
  /// FP8 fast accumulation (cuBLASLt's FAST_ACCUM). Accepted and ignored: no FP8 operand reaches a
  /// backend yet, and it has no meaning for the other formats.
  bool fast_accumulation = false;
  /// CUDA: false runs the epilogue as a separate pass after a plain GEMM into an accumulate-type
  /// buffer (what happens anyway when cuBLASLt offers no fused algorithm); for tests.
  bool fuse_epilogue = true;
  /// Host: which micro-kernels run.
  HostIsa host_isa = HostIsa::best;
};

}  // namespace mixtape::blas
