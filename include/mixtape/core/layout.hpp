/// @file layout.hpp
/// @brief Shape, strides and offset of a tensor view (int64 throughout), and the views built on
///        them: transpose, slice, split along the last dimension, reshape.
///
/// A Layout is trivially copyable so kernels take it by value. Strides and offset count elements;
/// for packed 4-bit formats only contiguous layouts with offset 0 are allowed (elements are not
/// addressable one by one), which Tensor enforces.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <span>
#include <type_traits>

#include "mixtape/core/error.hpp"

namespace mixtape {

inline constexpr int kMaxRank = 8;

/// A shape of rank 0..kMaxRank with int64 extents.
class Shape {
 public:
  constexpr Shape() noexcept = default;
  Shape(std::initializer_list<std::int64_t> extents) : Shape(std::span<const std::int64_t>(extents.begin(), extents.size())) {}
  explicit Shape(std::span<const std::int64_t> extents) {
    MIXTAPE_EXPECT(extents.size() <= kMaxRank, ShapeError, "shape: expected rank <= ", kMaxRank, ", got ",
                   extents.size());
    rank_ = static_cast<int>(extents.size());
    for (int i = 0; i < rank_; ++i) {
      MIXTAPE_EXPECT(extents[i] >= 0, ShapeError, "shape: extents must be non-negative, got ",
                     detail::shape_string(extents));
      extents_[i] = extents[i];
    }
  }
  constexpr int rank() const noexcept { return rank_; }
  constexpr std::int64_t operator[](int i) const noexcept { return extents_[i]; }
  constexpr std::int64_t& operator[](int i) noexcept { return extents_[i]; }
  std::span<const std::int64_t> span() const noexcept { return {extents_.data(), static_cast<std::size_t>(rank_)}; }
  constexpr std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= extents_[i];
    return n;
  }
  std::string to_string() const { return detail::shape_string(span()); }
  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.extents_[i] != b.extents_[i]) return false;
    return true;
  }

 private:
  int rank_ = 0;
  std::array<std::int64_t, kMaxRank> extents_{};
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.to_string(); }

/// Shape, element strides and element offset of a view.
struct Layout {
  Shape shape;
  std::array<std::int64_t, kMaxRank> strides{};
  std::int64_t offset = 0;

  /// Row-major strides for `shape`.
  static Layout contiguous(const Shape& shape, std::int64_t offset = 0) {
    Layout l;
    l.shape = shape;
    l.offset = offset;
    std::int64_t stride = 1;
    for (int i = shape.rank() - 1; i >= 0; --i) {
      l.strides[i] = stride;
      stride *= shape[i];
    }
    return l;
  }

  int rank() const noexcept { return shape.rank(); }
  std::int64_t numel() const noexcept { return shape.numel(); }

  /// True when the view covers a dense row-major block (extent-1 dimensions may have any stride).
  bool is_contiguous() const noexcept {
    std::int64_t expected = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expected) return false;
      expected *= shape[i];
    }
    return true;
  }

  /// Largest element index reachable from the offset, plus one (0 for empty views).
  std::int64_t extent() const noexcept {
    if (numel() == 0) return 0;
    std::int64_t last = offset;
    for (int i = 0; i < rank(); ++i) last += (shape[i] - 1) * strides[i];
    return last + 1;
  }

  /// Normalises a possibly negative dimension index.
  int dim(int d, const char* op) const {
    const int r = rank();
    MIXTAPE_EXPECT(d >= -r && d < r, ShapeError, op, ": dimension ", d, " out of range for rank ", r);
    return d < 0 ? d + r : d;
  }

  /// The view with dimensions `a` and `b` swapped (no data moves).
  Layout transposed(int a, int b) const {
    Layout l = *this;
    a = dim(a, "transpose");
    b = dim(b, "transpose");
    std::swap(l.shape[a], l.shape[b]);
    std::swap(l.strides[a], l.strides[b]);
    return l;
  }

  /// Elements [start, start + length) along `d`.
  Layout sliced(int d, std::int64_t start, std::int64_t length) const {
    d = dim(d, "slice");
    MIXTAPE_EXPECT(start >= 0 && length >= 0 && start + length <= shape[d], ShapeError, "slice: expected [start, start + length) within [0, ",
                   shape[d], ") along dimension ", d, " of ", shape, ", got start ", start, ", length ", length);
    Layout l = *this;
    l.offset += start * strides[d];
    l.shape[d] = length;
    return l;
  }

  /// The same elements with another shape; one extent may be -1 (inferred). Needs a contiguous view.
  Layout reshaped(std::span<const std::int64_t> extents) const {
    MIXTAPE_EXPECT(is_contiguous(), ShapeError, "reshape: expected a contiguous view, got shape ", shape,
                   " with non-row-major strides (copy it first)");
    std::array<std::int64_t, kMaxRank> e{};
    MIXTAPE_EXPECT(extents.size() <= kMaxRank, ShapeError, "reshape: rank ", extents.size(), " > ", kMaxRank);
    int infer = -1;
    std::int64_t known = 1;
    for (std::size_t i = 0; i < extents.size(); ++i) {
      e[i] = extents[i];
      if (extents[i] == -1) {
        MIXTAPE_EXPECT(infer < 0, ShapeError, "reshape: at most one extent may be -1, got ", detail::shape_string(extents));
        infer = static_cast<int>(i);
      } else {
        known *= extents[i];
      }
    }
    if (infer >= 0 && known != 0) e[infer] = numel() / known;
    const Shape target(std::span<const std::int64_t>(e.data(), extents.size()));
    MIXTAPE_EXPECT(target.numel() == numel(), ShapeError, "reshape: cannot view ", shape, " (", numel(),
                   " elements) as ", detail::shape_string(extents));
    return contiguous(target, offset);
  }
};

}  // namespace mixtape
