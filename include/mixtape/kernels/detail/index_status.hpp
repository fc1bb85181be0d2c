/// @file index_status.hpp
/// @brief The device-side record of an out-of-range index (a token id of `embedding_*`, a target
///        of `cross_entropy_*`), and the calls that clear and check it.
///
/// Host ops throw ValueError naming the row and the value before writing anything. A CUDA op
/// cannot throw without a host synchronisation, so it (a) never reads or writes out of bounds:
/// the offending row's outputs become NaN (a gathered row, a loss, a gradient row), which the loss
/// and the optimizer's found-inf check cannot miss; and (b) when given a status tensor, records
/// the smallest offending row and its value there, to be checked when the caller chooses (once per
/// step, or one step late, or in tests):
///
/// @code
///   auto status = Tensor<std::int64_t>::empty(ctx, {1});
///   kernels::reset_index_status(ctx, status);                         // no error recorded
///   kernels::embedding_forward(ctx, ids, wte, x, status);
///   kernels::cross_entropy_forward(ctx, logits, targets, losses, lse, loss, status);
///   kernels::check_index_status(ctx, status, "gpt step");  // syncs; ValueError naming row, value
/// @endcode
///
/// Encoding: one int64, -1 when clear, else (row << 32) | (uint32) value, kept by an integer
/// atomicMin over the rows that fail (so the smallest row wins, whatever the timing: the record is
/// deterministic). Rows must be below 2^31 (the ops check); a value is kept modulo 2^32 and shown
/// as int32.
#pragma once

#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/core/transfer.hpp"

namespace mixtape::kernels {

/// The status value that means "no out-of-range index recorded".
inline constexpr std::int64_t kIndexStatusClear = -1;

/// A decoded status.
struct IndexStatus {
  bool error = false;       ///< an out-of-range index was recorded
  std::int64_t row = 0;     ///< the smallest row (or position) holding one
  std::int32_t value = 0;   ///< its value (modulo 2^32)
};

namespace detail {

MIXTAPE_HOST_DEVICE constexpr std::int64_t encode_index_error(std::int64_t row, std::int64_t value) noexcept {
  return static_cast<std::int64_t>((static_cast<std::uint64_t>(row) << 32) |
                                   static_cast<std::uint32_t>(static_cast<std::uint64_t>(value)));
}

constexpr IndexStatus decode_index_status(std::int64_t s) noexcept {
  if (s < 0) return {};
  return {true, s >> 32, static_cast<std::int32_t>(static_cast<std::uint32_t>(s & 0xFFFFFFFF))};
}

#if defined(__CUDACC__)
/// Records (row, value) in `status` when it is given (device code; the integer atomicMin keeps the
/// smallest row, independent of the order the threads arrive in).
__device__ __forceinline__ void record_index_error(std::int64_t* status, std::int64_t row, std::int64_t value) {
  if (status != nullptr)
    atomicMin(reinterpret_cast<unsigned long long*>(status), static_cast<unsigned long long>(encode_index_error(row, value)));
}
#endif

/// Throws ValueError for the first index outside [0, limit) (host ops check before writing).
template <class I>
void expect_indices_in_range(const char* op, const char* what, const I* idx, std::int64_t n, std::int64_t limit) {
  for (std::int64_t i = 0; i < n; ++i) {
    const auto v = static_cast<std::int64_t>(idx[i]);
    MIXTAPE_EXPECT(v >= 0 && v < limit, ValueError, op, ": ", what, " ", v, " at row ", i, " is out of range [0, ", limit,
                   ")");
  }
}

/// Checks a status tensor given to an op: one element, dense, on the context's device (an
/// undefined tensor means "no status wanted").
inline void expect_status(const char* op, const ExecutionContext& ctx, const Tensor<std::int64_t>& status) {
  if (!status.defined()) return;
  MIXTAPE_EXPECT(status.device() == ctx.device(), DeviceError, op, ": the index status must be on the context's device, expected ",
                 ctx.device(), ", got ", status.device());
  MIXTAPE_EXPECT(status.numel() == 1, ShapeError, op, ": expected an index status of one element, got shape ", status.shape());
}

}  // namespace detail

/// Clears `status` (one int64 on the context's device) to kIndexStatusClear, on the context's
/// stream (no synchronisation).
inline void reset_index_status(const ExecutionContext& ctx, const Tensor<std::int64_t>& status) {
  MIXTAPE_EXPECT(status.defined(), ValueError, "reset_index_status: expected a tensor with storage, got an empty handle");
  detail::expect_status("reset_index_status", ctx, status);
  if (status.device().is_cpu()) {
    *status.data() = kIndexStatusClear;
    return;
  }
#if defined(MIXTAPE_WITH_CUDA)
  // All bytes 0xFF: -1 as int64, the largest value for the unsigned atomicMin.
  MIXTAPE_CUDA_CHECK(cudaMemsetAsync(status.data(), 0xFF, sizeof(std::int64_t), ctx.stream()));
#endif
}

/// Reads `status` (waits for the context's stream: for tests, checks once a step and logging).
inline IndexStatus read_index_status(const ExecutionContext& ctx, const Tensor<std::int64_t>& status) {
  MIXTAPE_EXPECT(status.defined(), ValueError, "read_index_status: expected a tensor with storage, got an empty handle");
  detail::expect_status("read_index_status", ctx, status);
  std::int64_t value = kIndexStatusClear;
  mixtape::copy(ctx, status, Tensor<std::int64_t>::wrap(&value, status.shape()));
  ctx.synchronize();
  return detail::decode_index_status(value);
}

/// Throws ValueError naming `what`, the row and the value when `status` records an error.
inline void check_index_status(const ExecutionContext& ctx, const Tensor<std::int64_t>& status, const char* what) {
  const IndexStatus s = read_index_status(ctx, status);
  MIXTAPE_EXPECT(!s.error, ValueError, what, ": index ", s.value, " at row ", s.row, " is out of range");
}

}  // namespace mixtape::kernels
