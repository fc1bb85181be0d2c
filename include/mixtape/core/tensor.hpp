/// @file tensor.hpp
/// @brief `Tensor<T>` (typed) and `TensorRef` (runtime dtype) views over reference-counted storage,
///        with optional attached scale / inverse scale / amax and a column-wise copy.
///
/// A tensor is a Layout over a Storage: views (transpose, slice, split, reshape) share the storage
/// and never copy. Storage sizes come from the element format's traits, so packed 4-bit blocks fit.
/// Attachments carry what scaled formats need beside their codes: TransformerEngine's FP8 tensors
/// (scale, scale_inv, amax, and the transposed copy Hopper's TN-only FP8 GEMMs read), MS-AMP's
/// ScalingTensors, and bitsandbytes' per-block absmax (as `scale`). Views share their base's
/// attachments, which describe the whole tensor.
///
/// @code
///   auto ctx = ExecutionContext::host();
///   auto x = Tensor<float>::empty(ctx, {2, 3, 4});        // (B, T, C)
///   auto xt = x.transposed(-2, -1);                        // (B, C, T) view
///   auto [q, k, v] = split3(Tensor<float>::empty(ctx, {2, 3, 12}).split_last(3));
/// @endcode
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "mixtape/core/allocator.hpp"
#include "mixtape/core/dtype.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/layout.hpp"

namespace mixtape {

/// Reference-counted bytes on one device. Owning storage returns its bytes to the allocator (on the
/// stream it was allocated on) when the last view goes; wrapped storage never frees.
class Storage {
 public:
  Storage(std::shared_ptr<Allocator> allocator, std::int64_t bytes, MemoryRole role, void* stream)
      : allocator_(std::move(allocator)), bytes_(bytes), role_(role), stream_(stream), device_(allocator_->device()) {
    data_ = allocator_->allocate(bytes, role, stream);
  }
  /// Non-owning storage over memory the caller keeps alive.
  Storage(void* data, std::int64_t bytes, Device device) : data_(data), bytes_(bytes), device_(device) {}
  ~Storage() {
    if (allocator_) allocator_->deallocate(data_, bytes_, role_, stream_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const noexcept { return data_; }
  std::int64_t bytes() const noexcept { return bytes_; }
  Device device() const noexcept { return device_; }
  MemoryRole role() const noexcept { return role_; }
  bool owning() const noexcept { return allocator_ != nullptr; }

  /// Incremented by every in-place write through an op; saved tensors compare it to detect changes.
  std::uint64_t version() const noexcept { return version_; }
  void bump_version() noexcept { ++version_; }

 private:
  std::shared_ptr<Allocator> allocator_;
  void* data_ = nullptr;
  std::int64_t bytes_ = 0;
  MemoryRole role_ = MemoryRole::activations;
  void* stream_ = nullptr;
  Device device_;
  std::uint64_t version_ = 0;
};

class TensorRef;
struct TensorAttachments;

namespace detail {

/// What Tensor<T> and TensorRef share: storage, layout, attachments.
class TensorBase {
 public:
  TensorBase() = default;
  TensorBase(std::shared_ptr<Storage> storage, Layout layout) : storage_(std::move(storage)), layout_(layout) {}

  bool defined() const noexcept { return storage_ != nullptr; }
  const Layout& layout() const noexcept { return layout_; }
  const Shape& shape() const noexcept { return layout_.shape; }
  int rank() const noexcept { return layout_.rank(); }
  std::int64_t size(int d) const { return layout_.shape[layout_.dim(d, "size")]; }
  std::int64_t stride(int d) const { return layout_.strides[layout_.dim(d, "stride")]; }
  std::int64_t numel() const noexcept { return layout_.numel(); }
  std::int64_t offset() const noexcept { return layout_.offset; }
  bool is_contiguous() const noexcept { return layout_.is_contiguous(); }
  Device device() const noexcept { return storage_ ? storage_->device() : Device::cpu(); }
  const std::shared_ptr<Storage>& storage() const noexcept { return storage_; }
  const std::shared_ptr<TensorAttachments>& attachments() const noexcept { return attachments_; }
  /// Whether two views share storage.
  bool aliases(const TensorBase& other) const noexcept { return storage_ && storage_ == other.storage_; }

 protected:
  void set_layout(const Layout& layout) noexcept { layout_ = layout; }
  TensorAttachments& mutable_attachments();
  void share_attachments(const TensorBase& other) { attachments_ = other.attachments_; }

  std::shared_ptr<Storage> storage_;
  Layout layout_;
  std::shared_ptr<TensorAttachments> attachments_;

  friend class ::mixtape::TensorRef;
};

}  // namespace detail

/// A typed tensor view.
///
/// @tparam T the element type (any type with a DType tag: f64 ... e5m2, integers, nf4, fp4).
template <Element T>
class Tensor : public detail::TensorBase {
 public:
  using element_type = T;
  static constexpr DType kDType = dtype_v<T>;

  Tensor() = default;
  Tensor(std::shared_ptr<Storage> storage, Layout layout) : TensorBase(std::move(storage), layout) { check_layout(); }

  /// Uninitialised storage for `shape` on `device` (default: the context's), counted under `role`.
  static Tensor empty(const ExecutionContext& ctx, const Shape& shape, MemoryRole role = MemoryRole::activations) {
    return empty(ctx, shape, ctx.device(), role);
  }
  static Tensor empty(const ExecutionContext& ctx, const Shape& shape, Device device,
                      MemoryRole role = MemoryRole::activations) {
    const std::int64_t bytes = storage_bytes<T>(shape.numel());
    void* stream = device.is_cuda() ? ctx.stream_handle() : nullptr;
    auto storage = std::make_shared<Storage>(ctx.allocator_for(device), bytes, role, stream);
    return Tensor(std::move(storage), Layout::contiguous(shape));
  }
  /// A non-owning contiguous view of memory the caller keeps alive.
  static Tensor wrap(T* data, const Shape& shape, Device device = Device::cpu()) {
    return Tensor(std::make_shared<Storage>(static_cast<void*>(data), storage_bytes<T>(shape.numel()), device),
                  Layout::contiguous(shape));
  }

  DType dtype() const noexcept { return kDType; }

  /// Pointer to the first element of the view. Packed formats: the first byte of the codes.
  T* data() const noexcept {
    if (!storage_) return nullptr;
    if constexpr (PackedElement<T>) {
      return static_cast<T*>(storage_->data());
    } else {
      return static_cast<T*>(storage_->data()) + layout_.offset;
    }
  }
  /// Bytes the view's elements need in this format (whole blocks for packed formats).
  std::int64_t nbytes() const noexcept { return storage_bytes<T>(numel()); }

  /// Host-side element access for tests and small tools; throws DeviceError for device tensors.
  T& at(std::initializer_list<std::int64_t> index) const
    requires ScalarElement<T>
  {
    MIXTAPE_EXPECT(device().is_cpu(), DeviceError, "at: expected a cpu tensor, got one on ", device());
    MIXTAPE_EXPECT(static_cast<int>(index.size()) == rank(), ShapeError, "at: expected ", rank(),
                   " indices for shape ", shape(), ", got ", index.size());
    std::int64_t off = layout_.offset;
    int d = 0;
    for (std::int64_t i : index) {
      MIXTAPE_EXPECT(i >= 0 && i < layout_.shape[d], ShapeError, "at: index ", i, " out of range [0, ",
                     layout_.shape[d], ") in dimension ", d);
      off += i * layout_.strides[d++];
    }
    return static_cast<T*>(storage_->data())[off];
  }

  // ---- views (share storage and attachments) ----
  Tensor transposed(int a = -2, int b = -1) const { return view(layout_.transposed(a, b)); }
  Tensor slice(int d, std::int64_t start, std::int64_t length) const { return view(layout_.sliced(d, start, length)); }
  Tensor reshape(std::initializer_list<std::int64_t> extents) const {
    return view(layout_.reshaped(std::span<const std::int64_t>(extents.begin(), extents.size())));
  }
  Tensor reshape(const Shape& shape) const { return view(layout_.reshaped(shape.span())); }
  Tensor flatten() const { return reshape({-1}); }
  /// `parts` equal views along the last dimension (q/k/v of a fused projection).
  std::vector<Tensor> split_last(int parts) const {
    MIXTAPE_EXPECT(rank() >= 1 && parts > 0 && size(-1) % parts == 0, ShapeError, "split_last: expected a last extent ",
                   "divisible by ", parts, ", got shape ", shape());
    std::vector<Tensor> out;
    const std::int64_t n = size(-1) / parts;
    for (int i = 0; i < parts; ++i) out.push_back(slice(-1, i * n, n));
    return out;
  }

  // ---- attachments ----
  /// Per-tensor (1 element), per-row or per-block f32 scale; the quantized value is x * scale.
  const Tensor<float>* scale() const noexcept;
  const Tensor<float>* scale_inv() const noexcept;
  const Tensor<float>* amax() const noexcept;
  const TensorRef* columnwise() const noexcept;
  void set_scale(Tensor<float> s);
  void set_scale_inv(Tensor<float> s);
  void set_amax(Tensor<float> a);
  void set_columnwise(TensorRef c);

  /// The type-erased view.
  TensorRef ref() const;

 private:
  Tensor view(const Layout& l) const {
    Tensor t(storage_, l);
    t.share_attachments(*this);
    return t;
  }
  void check_layout() const {
    if constexpr (PackedElement<T>) {
      MIXTAPE_EXPECT(layout_.is_contiguous() && layout_.offset == 0, ShapeError, dtype_name(kDType),
                     " tensors are packed: expected a contiguous view at offset 0, got shape ", shape(), " offset ",
                     layout_.offset);
    }
    if (storage_) {
      const std::int64_t need = PackedElement<T> ? storage_bytes<T>(numel())
                                                 : layout_.extent() * static_cast<std::int64_t>(sizeof(T));
      MIXTAPE_EXPECT(need <= storage_->bytes(), ShapeError, "tensor view of shape ", shape(), " needs ", need,
                     " bytes, its storage has ", storage_->bytes());
    }
  }
};

/// A tensor view whose element type is a runtime tag: for I/O, visitors and multi-tensor kernels.
class TensorRef : public detail::TensorBase {
 public:
  TensorRef() = default;
  template <Element T>
  TensorRef(const Tensor<T>& t) : TensorBase(t), dtype_(dtype_v<T>) {}  // NOLINT: implicit by design

  DType dtype() const noexcept { return dtype_; }
  void* data() const noexcept {
    if (!storage_) return nullptr;
    auto* base = static_cast<std::byte*>(storage_->data());
    return is_packed(dtype_) ? base : base + layout_.offset * (dtype_bits(dtype_) / 8);
  }
  std::int64_t nbytes() const { return storage_bytes(dtype_, numel()); }

  /// The typed view; throws DTypeError when the element type differs.
  template <Element T>
  Tensor<T> as() const {
    MIXTAPE_EXPECT(dtype_ == dtype_v<T>, DTypeError, "tensor is ", dtype_name(dtype_), ", expected ",
                   dtype_name(dtype_v<T>));
    Tensor<T> t(storage_, layout_);
    t.share_attachments(*this);
    return t;
  }

 private:
  DType dtype_ = DType::f32;
};

/// Optional companions of a scaled or quantized tensor.
struct TensorAttachments {
  Tensor<float> scale;      ///< quantized = x * scale (TE, MS-AMP), or bitsandbytes' absmax per block
  Tensor<float> scale_inv;  ///< 1 / scale, what the GEMM consumes
  Tensor<float> amax;       ///< max |x| observed when the codes were written
  TensorRef columnwise;     ///< the transposed copy (Hopper FP8 GEMMs are TN-only)
};

inline TensorAttachments& detail::TensorBase::mutable_attachments() {
  if (!attachments_) attachments_ = std::make_shared<TensorAttachments>();
  return *attachments_;
}

template <Element T>
const Tensor<float>* Tensor<T>::scale() const noexcept {
  return attachments_ && attachments_->scale.defined() ? &attachments_->scale : nullptr;
}
template <Element T>
const Tensor<float>* Tensor<T>::scale_inv() const noexcept {
  return attachments_ && attachments_->scale_inv.defined() ? &attachments_->scale_inv : nullptr;
}
template <Element T>
const Tensor<float>* Tensor<T>::amax() const noexcept {
  return attachments_ && attachments_->amax.defined() ? &attachments_->amax : nullptr;
}
template <Element T>
const TensorRef* Tensor<T>::columnwise() const noexcept {
  return attachments_ && attachments_->columnwise.defined() ? &attachments_->columnwise : nullptr;
}
template <Element T>
void Tensor<T>::set_scale(Tensor<float> s) {
  MIXTAPE_EXPECT(s.device() == device(), DeviceError, "set_scale: scale on ", s.device(), ", tensor on ", device());
  mutable_attachments().scale = std::move(s);
}
template <Element T>
void Tensor<T>::set_scale_inv(Tensor<float> s) {
  MIXTAPE_EXPECT(s.device() == device(), DeviceError, "set_scale_inv: scale_inv on ", s.device(), ", tensor on ", device());
  mutable_attachments().scale_inv = std::move(s);
}
template <Element T>
void Tensor<T>::set_amax(Tensor<float> a) {
  MIXTAPE_EXPECT(a.device() == device(), DeviceError, "set_amax: amax on ", a.device(), ", tensor on ", device());
  mutable_attachments().amax = std::move(a);
}
template <Element T>
void Tensor<T>::set_columnwise(TensorRef c) {
  MIXTAPE_EXPECT(c.device() == device(), DeviceError, "set_columnwise: copy on ", c.device(), ", tensor on ", device());
  MIXTAPE_EXPECT(c.numel() == numel(), ShapeError, "set_columnwise: expected ", numel(), " elements, got ", c.numel());
  mutable_attachments().columnwise = std::move(c);
}
template <Element T>
TensorRef Tensor<T>::ref() const {
  return TensorRef(*this);
}

// ---- checks used at op boundaries ----
namespace detail {
inline void expect_same_shape(const char* op, const TensorBase& a, const TensorBase& b) {
  MIXTAPE_EXPECT(a.shape() == b.shape(), ShapeError, op, ": shapes must match, expected ", a.shape(), ", got ",
                 b.shape());
}
inline void expect_same_device(const char* op, const TensorBase& a, const TensorBase& b) {
  MIXTAPE_EXPECT(a.device() == b.device(), DeviceError, op, ": tensors must be on one device, expected ", a.device(),
                 ", got ", b.device());
}
inline void expect_defined(const char* op, const TensorBase& a) {
  MIXTAPE_EXPECT(a.defined(), ValueError, op, ": expected a tensor with storage, got an empty handle");
}
}  // namespace detail

}  // namespace mixtape
