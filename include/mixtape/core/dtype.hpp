/// @file dtype.hpp
/// @brief Runtime element-type tags (`DType`), the map from C++ element types to them, storage
///        sizes from format traits, and `visit_dtype` to get back from a tag to a type.
#pragma once

#include <cstdint>
#include <string_view>

#include "mixtape/core/error.hpp"
#include "mixtape/numeric/numeric.hpp"
#include "mixtape/quant/formats.hpp"

namespace mixtape {

/// The element type of a type-erased tensor. Packed block formats (nf4, fp4) store their codes
/// only; their per-block statistics are attached tensors (see Tensor::set_scale).
enum class DType : std::uint8_t { f64, f32, f16, bf16, e4m3, e5m2, i64, i32, i16, u16, i8, u8, nf4, fp4 };

inline constexpr int kDTypeCount = 14;

/// @tparam T an element type; `dtype_of<T>::value` is its tag. Undefined for other types.
template <class T>
struct dtype_of;

#define MIXTAPE_DTYPE_OF(Type, Tag) \
  template <>                       \
  struct dtype_of<Type> {           \
    static constexpr DType value = DType::Tag; \
  }
MIXTAPE_DTYPE_OF(double, f64);
MIXTAPE_DTYPE_OF(float, f32);
MIXTAPE_DTYPE_OF(f16, f16);
MIXTAPE_DTYPE_OF(bf16, bf16);
MIXTAPE_DTYPE_OF(e4m3, e4m3);
MIXTAPE_DTYPE_OF(e5m2, e5m2);
MIXTAPE_DTYPE_OF(std::int64_t, i64);
MIXTAPE_DTYPE_OF(std::int32_t, i32);
MIXTAPE_DTYPE_OF(std::int16_t, i16);
MIXTAPE_DTYPE_OF(std::uint16_t, u16);
MIXTAPE_DTYPE_OF(std::int8_t, i8);
MIXTAPE_DTYPE_OF(std::uint8_t, u8);
MIXTAPE_DTYPE_OF(quant::nf4, nf4);
MIXTAPE_DTYPE_OF(quant::fp4, fp4);
#undef MIXTAPE_DTYPE_OF

template <class T>
inline constexpr DType dtype_v = dtype_of<T>::value;

/// An element type that has a DType tag.
template <class T>
concept Element = requires { dtype_of<T>::value; };

/// A packed block format: elements are not addressable one by one.
template <class T>
concept PackedElement = Element<T> && quant::quant_traits<T>::is_quantized && (quant::quant_traits<T>::bits < 8);

/// Elements with one addressable value each (every DType but nf4 and fp4).
template <class T>
concept ScalarElement = Element<T> && !PackedElement<T>;

/// Calls `f.template operator()<T>()` with the element type of `dtype` and returns its result.
template <class F>
decltype(auto) visit_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f64: return f.template operator()<double>();
    case DType::f32: return f.template operator()<float>();
    case DType::f16: return f.template operator()<f16>();
    case DType::bf16: return f.template operator()<bf16>();
    case DType::e4m3: return f.template operator()<e4m3>();
    case DType::e5m2: return f.template operator()<e5m2>();
    case DType::i64: return f.template operator()<std::int64_t>();
    case DType::i32: return f.template operator()<std::int32_t>();
    case DType::i16: return f.template operator()<std::int16_t>();
    case DType::u16: return f.template operator()<std::uint16_t>();
    case DType::i8: return f.template operator()<std::int8_t>();
    case DType::u8: return f.template operator()<std::uint8_t>();
    case DType::nf4: return f.template operator()<quant::nf4>();
    case DType::fp4: return f.template operator()<quant::fp4>();
  }
  MIXTAPE_THROW(DTypeError, "visit_dtype: invalid DType value ", static_cast<int>(dtype));
}

/// The canonical short name ("f32", "bf16", "nf4", ...), as used in checkpoints and messages.
constexpr std::string_view dtype_name(DType dtype) noexcept {
  constexpr std::string_view kNames[kDTypeCount] = {"f64", "f32", "f16", "bf16", "e4m3", "e5m2", "i64",
                                                    "i32", "i16", "u16", "i8",   "u8",   "nf4",  "fp4"};
  const auto i = static_cast<int>(dtype);
  return i < kDTypeCount ? kNames[i] : std::string_view("invalid");
}

inline std::ostream& operator<<(std::ostream& os, DType dtype) { return os << dtype_name(dtype); }

/// Bits of storage per element (4 for the packed formats).
constexpr int dtype_bits(DType dtype) noexcept {
  constexpr int kBits[kDTypeCount] = {64, 32, 16, 16, 8, 8, 64, 32, 16, 16, 8, 8, 4, 4};
  const auto i = static_cast<int>(dtype);
  return i < kDTypeCount ? kBits[i] : 0;
}

/// True for the floating-point formats (f64 ... e5m2).
constexpr bool is_floating(DType dtype) noexcept { return static_cast<int>(dtype) <= static_cast<int>(DType::e5m2); }

/// True for the packed block formats (nf4, fp4).
constexpr bool is_packed(DType dtype) noexcept { return dtype == DType::nf4 || dtype == DType::fp4; }

/// Bytes needed to store `numel` elements of `T`: for packed formats the codes of whole blocks,
/// from the format's quant_traits, so the last partial block fits.
template <Element T>
constexpr std::int64_t storage_bytes(std::int64_t numel) noexcept {
  if constexpr (PackedElement<T>) {
    return quant::quant_traits<T>::storage_bytes(numel);
  } else {
    return numel * static_cast<std::int64_t>(sizeof(T));
  }
}

/// Runtime form of storage_bytes.
inline std::int64_t storage_bytes(DType dtype, std::int64_t numel) {
  return visit_dtype(dtype, [numel]<class T>() { return storage_bytes<T>(numel); });
}

}  // namespace mixtape
