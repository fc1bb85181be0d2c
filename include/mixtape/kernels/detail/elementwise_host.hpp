/// @file elementwise_host.hpp
/// @brief The host element-wise engine: static chunks over the context's thread pool; dense
///        operands in tiles of 64 elements (loops the compiler vectorises), strided operands by runs
///        along the innermost collapsed dimension. Results depend on the element index only, never
///        on the chunking, so any thread count gives the same bits.
#pragma once

#include <cstdint>
#include <tuple>
#include <utility>

#include "mixtape/core/cpu_features.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/strided.hpp"

namespace mixtape::kernels::detail {

/// Elements per host chunk below which a loop stays on the calling thread.
inline constexpr std::int64_t kHostElementwiseGrain = std::int64_t{1} << 15;
/// Elements per dense tile handed to an operation at once.
inline constexpr int kHostTile = 64;

/// Dense tiles [begin, end) of an element-wise operation.
template <class Op, class Out, class... In>
inline void dense_tiles(const Op& op, std::int64_t begin, std::int64_t end, Out* po, const In*... pin) {
  std::int64_t i = begin;
  for (; i + kHostTile <= end; i += kHostTile) op.template apply<kHostTile>(i, po + i, (pin + i)...);
  for (; i < end; ++i) op.template apply<1>(i, po + i, (pin + i)...);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MIXTAPE_HOST_FMA_TILES 1
/// The same loop compiled for AVX2 with FMA, chosen at run time (a header-only library cannot count
/// on the user's -march). Without it every explicit fma (GELU's tanh, the update math) is a call
/// into libm, about ten times slower. `flatten` inlines the whole operation so those fmas become
/// instructions; `fp-contract=off` keeps the compiler from fusing any multiply-add the source did
/// not write as an fma, so the bits stay those of the portable loop and of the CUDA kernels.
template <class Op, class Out, class... In>
__attribute__((target("avx2,fma"), optimize("fp-contract=off"), flatten)) void dense_tiles_fma(
    const Op& op, std::int64_t begin, std::int64_t end, Out* po, const In*... pin) {
  std::int64_t i = begin;
  for (; i + kHostTile <= end; i += kHostTile) op.template apply<kHostTile>(i, po + i, (pin + i)...);
  for (; i < end; ++i) op.template apply<1>(i, po + i, (pin + i)...);
}

#endif

/// Runs `op` over every element of `out` (see elementwise_ops.hpp for the operation's shape).
/// All operands have out's shape and live in host memory.
template <class Op, class Out, class... In>
void elementwise_host(ThreadPool& pool, const Op& op, const Tensor<Out>& out, const Tensor<In>&... in) {
  constexpr int N = 1 + static_cast<int>(sizeof...(In));
  const std::int64_t n = out.numel();
  if (n == 0) return;
  const Layout* const layouts[N] = {&out.layout(), &in.layout()...};
  const StridedPlan<N> plan = make_plan<N>(layouts);
  Out* const po = out.data();
  const std::tuple<const In*...> pin(in.data()...);
  constexpr auto seq = std::index_sequence_for<In...>{};

  if (plan.contiguous()) {
#if MIXTAPE_HOST_FMA_TILES
    const bool fma = mixtape::detail::cpu_has_avx2();
#endif
    pool.parallel_for(n, kHostElementwiseGrain, [&](std::int64_t begin, std::int64_t end, int) {
      [&]<std::size_t... K>(std::index_sequence<K...>) {
#if MIXTAPE_HOST_FMA_TILES
        if (fma) return dense_tiles_fma(op, begin, end, po, std::get<K>(pin)...);
#endif
        dense_tiles(op, begin, end, po, std::get<K>(pin)...);
      }(seq);
    });
    return;
  }
  std::int64_t s[N];  // innermost strides
  for (int k = 0; k < N; ++k) s[k] = plan.rank > 0 ? plan.strides[k][plan.rank - 1] : 0;
  pool.parallel_for(n, kHostElementwiseGrain, [&](std::int64_t begin, std::int64_t end, int) {
    for_each_run(plan, begin, end, [&](std::int64_t i, const std::int64_t (&off)[N], std::int64_t len) {
      [&]<std::size_t... K>(std::index_sequence<K...>) {
        for (std::int64_t j = 0; j < len; ++j)
          op.template apply<1>(i + j, po + off[0] + j * s[0], (std::get<K>(pin) + off[K + 1] + j * s[K + 1])...);
      }(seq);
    });
  });
}

}  // namespace mixtape::kernels::detail
