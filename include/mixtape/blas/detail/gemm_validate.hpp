/// @file gemm_validate.hpp
/// @brief The checks every GEMM passes before a backend sees it (both backends rely on them): sizes,
///        dtypes, leading dimensions, strides, epilogue pointers, alignment. Each failure is a typed
///        exception naming what was expected and what came.
#pragma once

#include <cstdint>

#include "mixtape/blas/gemm_types.hpp"
#include "mixtape/core/dtype.hpp"
#include "mixtape/core/error.hpp"

namespace mixtape::blas::detail {

/// f64, f32, f16 or bf16: the formats the backends multiply.
constexpr bool is_gemm_float(DType t) noexcept {
  return t == DType::f64 || t == DType::f32 || t == DType::f16 || t == DType::bf16;
}

inline void check_operand_dtype(const char* op, const char* what, DType t) {
  MIXTAPE_EXPECT(t != DType::e4m3 && t != DType::e5m2, DTypeError, op,
                 ": e4m3/e5m2 operands are not supported by this build's GEMM backends; supported: f64, f32, f16, bf16 (got ",
                 what, " ", dtype_name(t), ")");
  MIXTAPE_EXPECT(is_gemm_float(t), DTypeError, op, ": expected ", what, " of f64, f32, f16 or bf16, got ", dtype_name(t));
}

inline void check_scale(const char* op, const char* what, const float* scale, ScaleMode mode) {
  MIXTAPE_EXPECT(mode == ScaleMode::none && scale == nullptr, ValueError, op, ": ", what, " has scale mode ",
                 scale_mode_name(mode), (scale != nullptr ? " and a scale pointer" : ""),
                 "; scales apply to FP8 operands, which this build's GEMM backends do not take (expected ScaleMode::none ",
                 "and a null scale)");
}

/// A stored matrix of rows x cols with leading dimension ld (row-major).
inline void check_ld(const char* op, const char* what, std::int64_t rows, std::int64_t cols, std::int64_t ld, bool transposed) {
  if (rows == 0 || cols == 0) return;
  MIXTAPE_EXPECT(ld >= cols && ld >= 1, ShapeError, op, ": ", what, " is stored as ", rows, " x ", cols,
                 transposed ? " (transposed)" : "", " row-major, so it needs a leading dimension >= ", cols, ", got ", ld);
}

/// Batch items of an output must not overlap (they are written concurrently).
inline void check_output_batch(const char* op, const char* what, std::int64_t batch, std::int64_t rows, std::int64_t cols,
                               std::int64_t ld, std::int64_t stride) {
  if (batch <= 1 || rows == 0 || cols == 0) return;
  const std::int64_t need = (rows - 1) * ld + cols;
  MIXTAPE_EXPECT(stride >= need, ShapeError, op, ": ", what, " batch items overlap: expected a batch stride >= ", need,
                 " (", rows, " rows of ld ", ld, "), got ", stride);
}

template <class P>
inline void check_aligned(const char* op, const char* what, P* p, DType t) {
  const auto bytes = static_cast<std::uintptr_t>(dtype_bits(t) / 8);
  MIXTAPE_EXPECT(p == nullptr || reinterpret_cast<std::uintptr_t>(p) % bytes == 0, ValueError, op, ": ", what, " pointer ",
                 static_cast<const void*>(p), " is not aligned to its ", bytes, "-byte elements");
}

/// Throws unless `d` is a GEMM both backends can run.
inline void validate(const GemmDesc& d, const char* op = "gemm") {
  MIXTAPE_EXPECT(d.m >= 0 && d.n >= 0 && d.k >= 0, ShapeError, op, ": expected m, n, k >= 0, got m ", d.m, ", n ", d.n,
                 ", k ", d.k);
  MIXTAPE_EXPECT(d.batch >= 1, ShapeError, op, ": expected batch >= 1, got ", d.batch);
  check_operand_dtype(op, "A", d.a.dtype);
  check_operand_dtype(op, "B", d.b.dtype);
  MIXTAPE_EXPECT(d.a.dtype == d.b.dtype, DTypeError, op, ": A and B must have one dtype, expected B ", dtype_name(d.a.dtype),
                 " (A's), got ", dtype_name(d.b.dtype));
  MIXTAPE_EXPECT(d.c.dtype != DType::e4m3 && d.c.dtype != DType::e5m2, DTypeError, op,
                 ": e4m3/e5m2 outputs are not supported by this build's GEMM backends; supported: f32, f16, bf16, and f64 ",
                 "with f64 operands (got C ", dtype_name(d.c.dtype), ")");
  MIXTAPE_EXPECT(is_gemm_float(d.c.dtype), DTypeError, op, ": expected C of f32, f16 or bf16 (or f64 with f64 operands), got ",
                 dtype_name(d.c.dtype));
  MIXTAPE_EXPECT(d.c.dtype != DType::f64 || d.a.dtype == DType::f64, DTypeError, op,
                 ": an f64 output needs f64 operands (", dtype_name(d.a.dtype), " operands accumulate in f32), got A ",
                 dtype_name(d.a.dtype), " and C f64");
  check_scale(op, "A", d.a.scale, d.a.scale_mode);
  check_scale(op, "B", d.b.scale, d.b.scale_mode);
  MIXTAPE_EXPECT(d.c.scale == nullptr, ValueError, op,
                 ": C has an output scale; output scales quantise to FP8, which this build's GEMM backends do not produce ",
                 "(expected a null scale)");
  MIXTAPE_EXPECT(static_cast<int>(d.host_isa) < kHostIsaCount, ValueError, op, ": invalid host_isa value ", static_cast<int>(d.host_isa));

  const bool at = d.a.transpose, bt = d.b.transpose;
  check_ld(op, "A", at ? d.k : d.m, at ? d.m : d.k, d.a.ld, at);
  check_ld(op, "B", bt ? d.n : d.k, bt ? d.k : d.n, d.b.ld, bt);
  check_ld(op, "C", d.m, d.n, d.c.ld, false);
  MIXTAPE_EXPECT(d.a.batch_stride >= 0 && d.b.batch_stride >= 0 && d.c.batch_stride >= 0, ShapeError, op,
                 ": expected batch strides >= 0, got A ", d.a.batch_stride, ", B ", d.b.batch_stride, ", C ", d.c.batch_stride);
  check_output_batch(op, "C", d.batch, d.m, d.n, d.c.ld, d.c.batch_stride);

  const bool empty_c = d.m == 0 || d.n == 0;
  MIXTAPE_EXPECT(empty_c || d.c.data != nullptr, ValueError, op, ": C is ", d.m, " x ", d.n, " but its pointer is null");
  MIXTAPE_EXPECT(d.m * d.k == 0 || d.a.data != nullptr, ValueError, op, ": A is ", d.m, " x ", d.k, " but its pointer is null");
  MIXTAPE_EXPECT(d.k * d.n == 0 || d.b.data != nullptr, ValueError, op, ": B is ", d.k, " x ", d.n, " but its pointer is null");
  check_aligned(op, "A", d.a.data, d.a.dtype);
  check_aligned(op, "B", d.b.data, d.b.dtype);
  check_aligned(op, "C", d.c.data, d.c.dtype);
  MIXTAPE_EXPECT(d.c.amax == nullptr || reinterpret_cast<std::uintptr_t>(d.c.amax) % 4 == 0, ValueError, op,
                 ": the amax pointer is not 4-byte aligned");

  // Epilogue.
  const GemmEpilogue& e = d.epilogue;
  MIXTAPE_EXPECT(static_cast<int>(e.kind) < kEpilogueCount, ValueError, op, ": invalid epilogue value ",
                 static_cast<int>(e.kind));
  const std::string_view name = epilogue_name(e.kind);
  if (epilogue_reads_bias(e.kind)) {
    MIXTAPE_EXPECT(e.bias != nullptr || d.n == 0, ValueError, op, ": epilogue ", name, " needs a bias pointer (n = ", d.n,
                   " elements), got null");
    MIXTAPE_EXPECT(is_gemm_float(e.bias_dtype), DTypeError, op, ": expected a bias of f64, f32, f16 or bf16, got ",
                   dtype_name(e.bias_dtype));
    check_aligned(op, "bias", e.bias, e.bias_dtype);
  } else {
    MIXTAPE_EXPECT(e.bias == nullptr, ValueError, op, ": epilogue ", name, " reads no bias, but a bias pointer was given");
  }
  if (epilogue_uses_aux(e.kind)) {
    MIXTAPE_EXPECT(e.aux != nullptr || empty_c, ValueError, op, ": epilogue ", name, " needs an aux pointer (", d.m, " x ",
                   d.n, " pre-activations in C's dtype), got null");
    check_ld(op, "aux", d.m, d.n, e.aux_ld, false);
    MIXTAPE_EXPECT(e.aux_batch_stride >= 0, ShapeError, op, ": expected an aux batch stride >= 0, got ", e.aux_batch_stride);
    if (epilogue_writes_aux(e.kind)) check_output_batch(op, "aux", d.batch, d.m, d.n, e.aux_ld, e.aux_batch_stride);
    check_aligned(op, "aux", e.aux, d.c.dtype);
  } else {
    MIXTAPE_EXPECT(e.aux == nullptr, ValueError, op, ": epilogue ", name, " uses no aux buffer, but an aux pointer was given");
  }
  if (epilogue_writes_bias_grad(e.kind)) {
    const std::int64_t len = e.kind == Epilogue::bgrad_a ? d.m : d.n;
    MIXTAPE_EXPECT(e.bias_grad != nullptr || len == 0, ValueError, op, ": epilogue ", name, " needs a bias_grad pointer (",
                   len, " elements), got null");
    MIXTAPE_EXPECT(is_gemm_float(e.bias_grad_dtype), DTypeError, op, ": expected a bias_grad of f64, f32, f16 or bf16, got ",
                   dtype_name(e.bias_grad_dtype));
    MIXTAPE_EXPECT(d.batch == 1, ShapeError, op, ": epilogue ", name, " needs batch == 1 (one bias gradient), got batch ",
                   d.batch);
    check_aligned(op, "bias_grad", e.bias_grad, e.bias_grad_dtype);
  } else {
    MIXTAPE_EXPECT(e.bias_grad == nullptr, ValueError, op, ": epilogue ", name,
                   " writes no bias gradient, but a bias_grad pointer was given");
  }
}

}  // namespace mixtape::blas::detail
