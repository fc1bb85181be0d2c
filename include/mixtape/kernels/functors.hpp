/// @file functors.hpp
/// @brief Common element-wise functors for `kernels::map`: each widens its operands exactly to the
///        compute type (`compute_t`: float for f16/bf16/fp8/f32 operands, double when an operand is
///        f64 or a 32/64-bit integer) and returns the result in that type; `map` then rounds it
///        once into the output's element type (nearest-even).
///
/// A functor is any copyable type with a `MIXTAPE_HOST_DEVICE` call operator taking the input
/// elements and returning something `cast` accepts (a float format or an integer); no extended
/// lambdas are needed.
///
/// Bitwise equality between host and CUDA holds when each result is one correctly rounded IEEE
/// operation (Add, Sub, Mul, Div, ScaleBy, Square, Abs, Negate, Identity, MulAdd, which uses an
/// explicit fma) whatever the compiler's contraction flags. Functors with two roundings (Axpby)
/// are identical only when neither side contracts `a * x + b * y` into an fma: the tests build
/// with -ffp-contract=off / --fmad=false; a user build that contracts may differ by an ulp.
///
/// @code
///   kernels::map(ctx, kernels::ScaleBy{0.5}, y, x);   // y = 0.5 * x
///   kernels::map(ctx, kernels::Add{}, z, x, y);       // z = x + y, any element types
/// @endcode
#pragma once

#include <cmath>

#include "mixtape/config.hpp"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::kernels {

namespace detail {
template <class A>
MIXTAPE_HOST_DEVICE inline A fma_exact(A a, A b, A c) noexcept {
  if constexpr (std::is_same_v<A, float>) {
    return ::fmaf(a, b, c);  // correctly rounded on host (libm) and device
  } else {
    return ::fma(a, b, c);
  }
}
}  // namespace detail

/// y = x (a conversion when the output type differs).
struct Identity {
  template <class X>
  MIXTAPE_HOST_DEVICE constexpr X operator()(X x) const noexcept {
    return x;
  }
};

/// y = -x.
struct Negate {
  template <class X>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X> operator()(X x) const noexcept {
    return -detail::to_acc<compute_t<X>>(x);
  }
};

/// y = |x|.
struct Abs {
  template <class X>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X> operator()(X x) const noexcept {
    return detail::abs_exact(detail::to_acc<compute_t<X>>(x));
  }
};

/// y = x * x.
struct Square {
  template <class X>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X> operator()(X x) const noexcept {
    const auto v = detail::to_acc<compute_t<X>>(x);
    return v * v;
  }
};

/// y = alpha * x, alpha rounded once to the compute type (float for narrow operands).
struct ScaleBy {
  double alpha = 1.0;
  template <class X>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X> operator()(X x) const noexcept {
    using A = compute_t<X>;
    return static_cast<A>(alpha) * detail::to_acc<A>(x);
  }
};

/// y = x + c.
struct AddScalar {
  double c = 0.0;
  template <class X>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X> operator()(X x) const noexcept {
    using A = compute_t<X>;
    return detail::to_acc<A>(x) + static_cast<A>(c);
  }
};

/// z = x + y.
struct Add {
  template <class X, class Y>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X, Y> operator()(X x, Y y) const noexcept {
    using A = compute_t<X, Y>;
    return detail::to_acc<A>(x) + detail::to_acc<A>(y);
  }
};

/// z = x - y.
struct Sub {
  template <class X, class Y>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X, Y> operator()(X x, Y y) const noexcept {
    using A = compute_t<X, Y>;
    return detail::to_acc<A>(x) - detail::to_acc<A>(y);
  }
};

/// z = x * y.
struct Mul {
  template <class X, class Y>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X, Y> operator()(X x, Y y) const noexcept {
    using A = compute_t<X, Y>;
    return detail::to_acc<A>(x) * detail::to_acc<A>(y);
  }
};

/// z = x / y.
struct Div {
  template <class X, class Y>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X, Y> operator()(X x, Y y) const noexcept {
    using A = compute_t<X, Y>;
    return detail::to_acc<A>(x) / detail::to_acc<A>(y);
  }
};

/// z = alpha * x + beta * y (three roundings in the compute type; see the file comment on
/// contraction).
struct Axpby {
  double alpha = 1.0;
  double beta = 1.0;
  template <class X, class Y>
  MIXTAPE_HOST_DEVICE constexpr compute_t<X, Y> operator()(X x, Y y) const noexcept {
    using A = compute_t<X, Y>;
    const A ax = static_cast<A>(alpha) * detail::to_acc<A>(x);
    const A by = static_cast<A>(beta) * detail::to_acc<A>(y);
    return ax + by;
  }
};

/// w = x * y + z with one rounding (an explicit fma: identical on host and device under any
/// contraction flags).
struct MulAdd {
  template <class X, class Y, class Z>
  MIXTAPE_HOST_DEVICE compute_t<X, Y, Z> operator()(X x, Y y, Z z) const noexcept {
    using A = compute_t<X, Y, Z>;
    return detail::fma_exact<A>(detail::to_acc<A>(x), detail::to_acc<A>(y), detail::to_acc<A>(z));
  }
};

/// y = c (no inputs; what `fill` maps).
template <class T>
struct Constant {
  T value;
  MIXTAPE_HOST_DEVICE constexpr T operator()() const noexcept { return value; }
};

}  // namespace mixtape::kernels
