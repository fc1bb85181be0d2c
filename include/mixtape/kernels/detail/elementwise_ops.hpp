/// @file elementwise_ops.hpp
/// @brief The per-element work of map, fill, convert, uniform and normal, in the one shape both
///        element-wise engines (host: elementwise_host.hpp, CUDA: elementwise_cuda.cuh) drive.
///
/// An *element-wise operation* is a copyable struct with
///
///     template <int P, class... In>
///     MIXTAPE_HOST_DEVICE void apply(std::int64_t base, Out* out, const In*... in) const;
///
/// writing out[k] for k in [0, P) from in_j[k], where `base + k` is the row-major linear index of
/// the element in the output's logical shape (what random draws are keyed by). The engines pass
/// registers (a 16-byte pack on the device), a tile of host memory, or single elements (P = 1); an
/// operation must give the same value for an index whichever way it is called, which is what makes
/// results independent of the launch shape and the host thread count.
#pragma once

#include <cmath>
#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/core/philox.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/functors.hpp"

namespace mixtape::kernels::detail {

/// out = cast<Out>(op(in...)) with nearest-even.
template <class Op, class Out>
struct MapOp {
  Op op;
  template <int P, class... In>
  MIXTAPE_HOST_DEVICE void apply(std::int64_t, Out* out, const In*... in) const {
    for (int k = 0; k < P; ++k) out[k] = cast<Out>(op(in[k]...));
  }
};

/// out = cast<Out, R>(in, word): stochastic modes take word (index % 4) of Philox block index / 4
/// of the draw at (seed, offset) (core/philox.hpp), so host and device round identically.
template <class Out, Rounding R>
struct ConvertOp {
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  template <int P, class In>
  MIXTAPE_HOST_DEVICE void apply(std::int64_t base, Out* out, const In* in) const {
    if constexpr (is_stochastic(R) && FloatElement<Out>) {
      PhiloxWords w{};
      for (int k = 0; k < P; ++k) {
        const auto i = static_cast<std::uint64_t>(base + k);
        if (k == 0 || (i & 3u) == 0) w = philox_block(seed, offset, i >> 2);
        out[k] = cast<Out, R>(in[k], w[static_cast<int>(i & 3u)]);
      }
    } else {
      for (int k = 0; k < P; ++k) out[k] = cast<Out, R>(in[k]);
    }
  }
};

/// Uniform on [lo, hi): u * (hi - lo) + lo with one fma in float (double for f64 outputs), then
/// rounded to Out (nearest-even; rounding may reach hi). Word mapping in core/philox.hpp.
template <class Out>
struct UniformOp {
  using A = std::conditional_t<std::is_same_v<Out, double>, double, float>;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  A lo = 0;
  A scale = 1;  // hi - lo, rounded once to A on the host
  template <int P>
  MIXTAPE_HOST_DEVICE void apply(std::int64_t base, Out* out) const {
    PhiloxWords w{};
    for (int k = 0; k < P; ++k) {
      const auto i = static_cast<std::uint64_t>(base + k);
      if constexpr (std::is_same_v<A, double>) {
        if (k == 0 || (i & 1u) == 0) w = philox_block(seed, offset, i >> 1);
        const int j = 2 * static_cast<int>(i & 1u);
        out[k] = fma_exact<double>(uniform_double(w[j], w[j + 1]), scale, lo);
      } else {
        if (k == 0 || (i & 3u) == 0) w = philox_block(seed, offset, i >> 2);
        out[k] = cast<Out>(fma_exact<float>(uniform_float(w[static_cast<int>(i & 3u)]), scale, lo));
      }
    }
  }
};

/// Normal(mean, std) by Box-Muller (word mapping in core/philox.hpp). log, sqrt, cos and sin are
/// the platform's (host libm, CUDA's device functions: both within a few ulps), so host and device
/// may differ by a few ulps in A before the final rounding to Out.
template <class Out>
struct NormalOp {
  using A = std::conditional_t<std::is_same_v<Out, double>, double, float>;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  A mean = 0;
  A stddev = 1;
  template <int P>
  MIXTAPE_HOST_DEVICE void apply(std::int64_t base, Out* out) const {
    PhiloxWords w{};
    for (int k = 0; k < P; ++k) {
      const auto i = static_cast<std::uint64_t>(base + k);
      A z;
      if constexpr (std::is_same_v<A, double>) {
        if (k == 0 || (i & 1u) == 0) w = philox_block(seed, offset, i >> 1);
        const double u1 = uniform_double_open0(w[0], w[1]);
        const double u2 = uniform_double(w[2], w[3]);
        const double r = ::sqrt(-2.0 * ::log(u1));
        const double t = 6.283185307179586 * u2;
        z = (i & 1u) ? r * ::sin(t) : r * ::cos(t);
      } else {
        if (k == 0 || (i & 3u) == 0) w = philox_block(seed, offset, i >> 2);
        const int j = 2 * static_cast<int>((i >> 1) & 1u);
        const float u1 = uniform_float_open0(w[j]);
        const float u2 = uniform_float(w[j + 1]);
        const float r = ::sqrtf(-2.0f * ::logf(u1));
        const float t = 6.2831853f * u2;
        z = (i & 1u) ? r * ::sinf(t) : r * ::cosf(t);
      }
      out[k] = cast<Out>(fma_exact<A>(z, stddev, mean));
    }
  }
};

}  // namespace mixtape::kernels::detail
