/// @file transfer.hpp
/// @brief Copies between tensors on any devices: host to host (strided), host and device through
///        the context's pinned staging buffers, device to device (same device or peer).
///
/// Copies run on the context's stream and do not synchronize with the host, except where host
/// memory must be read or released: a device-to-host copy returns when the bytes are on the host,
/// and a host-to-device copy returns when its pageable source has been staged (the source may then
/// be changed or freed). Strided device views are made contiguous by kernels::contiguous first.
#pragma once

#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "mixtape/core/tensor.hpp"

namespace mixtape {

namespace detail {

/// Copies a strided host view element by element (elements of `elem` bytes).
inline void copy_host_strided(const TensorRef& src, const TensorRef& dst, std::int64_t elem) {
  const Layout& ls = src.layout();
  const Layout& ld = dst.layout();
  const auto* s = static_cast<const std::byte*>(src.storage()->data());
  auto* d = static_cast<std::byte*>(dst.storage()->data());
  const int rank = ls.rank();
  std::array<std::int64_t, kMaxRank> index{};
  const std::int64_t n = ls.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t os = ls.offset, od = ld.offset;
    for (int k = 0; k < rank; ++k) {
      os += index[k] * ls.strides[k];
      od += index[k] * ld.strides[k];
    }
    std::memcpy(d + od * elem, s + os * elem, static_cast<std::size_t>(elem));
    for (int k = rank - 1; k >= 0; --k) {
      if (++index[k] < ls.shape[k]) break;
      index[k] = 0;
    }
  }
}

#if defined(MIXTAPE_WITH_CUDA)
/// RAII pair of timing-free events guarding the two staging buffers.
struct StagingEvents {
  cudaEvent_t events[2] = {nullptr, nullptr};
  StagingEvents() {
    for (auto& e : events) MIXTAPE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  ~StagingEvents() {
    for (auto& e : events) (void)cudaEventDestroy(e);
  }
};

inline void copy_host_to_device(const ExecutionContext& ctx, const std::byte* src, std::byte* dst, std::int64_t bytes) {
  const std::int64_t chunk = ctx.staging_bytes();
  StagingEvents ev;
  bool used[2] = {false, false};
  for (std::int64_t off = 0, i = 0; off < bytes; off += chunk, ++i) {
    const int b = static_cast<int>(i & 1);
    if (used[b]) MIXTAPE_CUDA_CHECK(cudaEventSynchronize(ev.events[b]));  // staging buffer b free again
    const std::int64_t n = std::min(chunk, bytes - off);
    std::memcpy(ctx.staging(b), src + off, static_cast<std::size_t>(n));
    MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(dst + off, ctx.staging(b), static_cast<std::size_t>(n), cudaMemcpyHostToDevice,
                                       ctx.stream()));
    MIXTAPE_CUDA_CHECK(cudaEventRecord(ev.events[b], ctx.stream()));
    used[b] = true;
  }
  for (int b = 0; b < 2; ++b)
    if (used[b]) MIXTAPE_CUDA_CHECK(cudaEventSynchronize(ev.events[b]));
}

inline void copy_device_to_host(const ExecutionContext& ctx, const std::byte* src, std::byte* dst, std::int64_t bytes) {
  const std::int64_t chunk = ctx.staging_bytes();
  StagingEvents ev;
  const std::int64_t chunks = (bytes + chunk - 1) / chunk;
  auto issue = [&](std::int64_t i) {
    const std::int64_t off = i * chunk, n = std::min(chunk, bytes - off);
    MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(ctx.staging(static_cast<int>(i & 1)), src + off, static_cast<std::size_t>(n),
                                       cudaMemcpyDeviceToHost, ctx.stream()));
    MIXTAPE_CUDA_CHECK(cudaEventRecord(ev.events[i & 1], ctx.stream()));
  };
  if (chunks > 0) issue(0);
  for (std::int64_t i = 0; i < chunks; ++i) {
    if (i + 1 < chunks) issue(i + 1);  // the next chunk streams while this one is copied out
    MIXTAPE_CUDA_CHECK(cudaEventSynchronize(ev.events[i & 1]));
    const std::int64_t off = i * chunk, n = std::min(chunk, bytes - off);
    std::memcpy(dst + off, ctx.staging(static_cast<int>(i & 1)), static_cast<std::size_t>(n));
  }
}
#endif

}  // namespace detail

/// Copies `src` into `dst`: same dtype and shape, any devices. Device-side views must be contiguous
/// (host views may have any strides); packed formats must be contiguous everywhere.
inline void copy(const ExecutionContext& ctx, const TensorRef& src, const TensorRef& dst) {
  detail::expect_defined("copy", src);
  detail::expect_defined("copy", dst);
  MIXTAPE_EXPECT(src.dtype() == dst.dtype(), DTypeError, "copy: dtypes must match, expected ", dst.dtype(), ", got ",
                 src.dtype(), " (convert with kernels::convert)");
  detail::expect_same_shape("copy", dst, src);
  if (src.numel() == 0) return;
  const bool dense = src.is_contiguous() && dst.is_contiguous();
  const std::int64_t bytes = src.nbytes();
  if (src.device().is_cpu() && dst.device().is_cpu()) {
    if (dense) {
      std::memmove(dst.data(), src.data(), static_cast<std::size_t>(bytes));
    } else {
      MIXTAPE_EXPECT(!is_packed(src.dtype()), ShapeError, "copy: packed ", src.dtype(), " tensors must be contiguous");
      detail::copy_host_strided(src, dst, dtype_bits(src.dtype()) / 8);
    }
    return;
  }
#if defined(MIXTAPE_WITH_CUDA)
  MIXTAPE_EXPECT(dense, ShapeError, "copy: views on a CUDA device must be contiguous, got shapes ", src.shape(), " and ",
                 dst.shape(), " with strides; make them contiguous with kernels::contiguous first");
  const Device cuda_side = src.device().is_cuda() ? src.device() : dst.device();
  MIXTAPE_EXPECT(cuda_side == ctx.device(), DeviceError, "copy: expected a context on ", cuda_side, ", got one on ",
                 ctx.device());
  auto* s = static_cast<const std::byte*>(src.data());
  auto* d = static_cast<std::byte*>(dst.data());
  if (src.device().is_cpu()) {
    detail::copy_host_to_device(ctx, s, d, bytes);
  } else if (dst.device().is_cpu()) {
    detail::copy_device_to_host(ctx, s, d, bytes);
  } else if (src.device() == dst.device()) {
    MIXTAPE_CUDA_CHECK(cudaMemcpyAsync(d, s, static_cast<std::size_t>(bytes), cudaMemcpyDeviceToDevice, ctx.stream()));
  } else {
    MIXTAPE_CUDA_CHECK(cudaMemcpyPeerAsync(d, dst.device().index(), s, src.device().index(),
                                           static_cast<std::size_t>(bytes), ctx.stream()));
  }
#else
  (void)ctx;
  MIXTAPE_THROW(BackendError, "copy between ", src.device(), " and ", dst.device(),
                " needs the CUDA runtime; mixtape was built without it");
#endif
}

/// Sets every byte of a contiguous view to zero (+0 in every element format), on the context's
/// stream: no kernel needed, so it works from any translation unit.
inline void zero_bytes(const ExecutionContext& ctx, const TensorRef& t) {
  detail::expect_defined("zero_bytes", t);
  MIXTAPE_EXPECT(t.is_contiguous(), ShapeError, "zero_bytes: expected a contiguous view, got shape ", t.shape(),
                 " with strides");
  if (t.numel() == 0) return;
  if (t.device().is_cpu()) {
    std::memset(t.data(), 0, static_cast<std::size_t>(t.nbytes()));
    return;
  }
#if defined(MIXTAPE_WITH_CUDA)
  MIXTAPE_EXPECT(t.device() == ctx.device(), DeviceError, "zero_bytes: expected a context on ", t.device(),
                 ", got one on ", ctx.device());
  MIXTAPE_CUDA_CHECK(cudaMemsetAsync(t.data(), 0, static_cast<std::size_t>(t.nbytes()), ctx.stream()));
#else
  (void)ctx;
  MIXTAPE_THROW(BackendError, "zero_bytes on ", t.device(), " needs the CUDA runtime; mixtape was built without it");
#endif
}

/// A contiguous copy of `src` on `device`.
template <Element T>
Tensor<T> to_device(const ExecutionContext& ctx, const Tensor<T>& src, Device device,
                    MemoryRole role = MemoryRole::activations) {
  auto out = Tensor<T>::empty(ctx, src.shape(), device, role);
  copy(ctx, src, out);
  return out;
}

/// A host tensor holding `values` with `shape`, copied to `device` (default: the context's).
template <ScalarElement T>
Tensor<T> from_host(const ExecutionContext& ctx, std::span<const T> values, const Shape& shape, Device device,
                    MemoryRole role = MemoryRole::activations) {
  MIXTAPE_EXPECT(static_cast<std::int64_t>(values.size()) == shape.numel(), ShapeError, "from_host: shape ", shape,
                 " needs ", shape.numel(), " values, got ", values.size());
  auto out = Tensor<T>::empty(ctx, shape, device, role);
  copy(ctx, Tensor<T>::wrap(const_cast<T*>(values.data()), shape), out);
  return out;
}
template <ScalarElement T>
Tensor<T> from_host(const ExecutionContext& ctx, std::span<const T> values, const Shape& shape) {
  return from_host(ctx, values, shape, ctx.device());
}

/// The elements of `src` in row-major order, on the host (waits for the copy).
template <ScalarElement T>
std::vector<T> to_vector(const ExecutionContext& ctx, const Tensor<T>& src) {
  std::vector<T> out(static_cast<std::size_t>(src.numel()));
  copy(ctx, src, Tensor<T>::wrap(out.data(), src.shape()));
  return out;
}

}  // namespace mixtape
