// CUDA instantiations of the element-wise ops the GPU tests call (see kernels_cuda_helpers.hpp).
#include "kernels_cuda_helpers.hpp"

#include <cstdint>

#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/kernels/random.hpp"

namespace kcuda {

template <class Op, class Out, class... In>
void map(const ExecutionContext& ctx, const Op& op, const Tensor<Out>& out, const Tensor<In>&... in) {
  mixtape::kernels::map(ctx, op, out, in...);
}
template <class T>
void fill(const ExecutionContext& ctx, const Tensor<T>& out, double value) {
  mixtape::kernels::fill(ctx, out, value);
}
template <class In, class Out>
void convert(const ExecutionContext& ctx, const Tensor<In>& in, const Tensor<Out>& out, Rounding rounding) {
  mixtape::kernels::convert(ctx, in, out, rounding);
}
template <class T>
void uniform(const ExecutionContext& ctx, const Tensor<T>& out, double lo, double hi) {
  mixtape::kernels::uniform(ctx, out, lo, hi);
}
template <class T>
void normal(const ExecutionContext& ctx, const Tensor<T>& out, double mean, double stddev) {
  mixtape::kernels::normal(ctx, out, mean, stddev);
}
template <class T>
Tensor<T> contiguous(const ExecutionContext& ctx, const Tensor<T>& view) {
  return mixtape::kernels::contiguous(ctx, view);
}
template <class T>
void copy(const ExecutionContext& ctx, const Tensor<T>& src, const Tensor<T>& dst) {
  mixtape::kernels::copy(ctx, src, dst);
}

using i32 = std::int32_t;
namespace k = mixtape::kernels;

template void map(const ExecutionContext&, const k::ScaleBy&, const Tensor<bf16>&, const Tensor<bf16>&);
template void map(const ExecutionContext&, const k::ScaleBy&, const Tensor<float>&, const Tensor<float>&);
template void map(const ExecutionContext&, const k::ScaleBy&, const Tensor<i32>&, const Tensor<i32>&);
template void map(const ExecutionContext&, const k::Add&, const Tensor<bf16>&, const Tensor<f16>&, const Tensor<float>&);
template void map(const ExecutionContext&, const k::Axpby&, const Tensor<float>&, const Tensor<float>&, const Tensor<float>&);
template void map(const ExecutionContext&, const k::MulAdd&, const Tensor<float>&, const Tensor<bf16>&, const Tensor<float>&,
                  const Tensor<f16>&);
template void map(const ExecutionContext&, const k::Square&, const Tensor<float>&, const Tensor<e4m3>&);
template void map(const ExecutionContext&, const k::Div&, const Tensor<double>&, const Tensor<double>&, const Tensor<double>&);
template void map(const ExecutionContext&, const k::Identity&, const Tensor<e5m2>&, const Tensor<double>&);

template void fill(const ExecutionContext&, const Tensor<bf16>&, double);
template void fill(const ExecutionContext&, const Tensor<e4m3>&, double);
template void fill(const ExecutionContext&, const Tensor<i32>&, double);
template void fill(const ExecutionContext&, const Tensor<double>&, double);

#define KCUDA_CONVERT(From, To) \
  template void convert(const ExecutionContext&, const Tensor<From>&, const Tensor<To>&, Rounding)
KCUDA_CONVERT(float, bf16);
KCUDA_CONVERT(float, f16);
KCUDA_CONVERT(float, e4m3);
KCUDA_CONVERT(float, e5m2);
KCUDA_CONVERT(double, bf16);
KCUDA_CONVERT(bf16, e4m3);
KCUDA_CONVERT(float, i32);
KCUDA_CONVERT(i32, bf16);
#undef KCUDA_CONVERT

template void uniform(const ExecutionContext&, const Tensor<float>&, double, double);
template void uniform(const ExecutionContext&, const Tensor<double>&, double, double);
template void uniform(const ExecutionContext&, const Tensor<bf16>&, double, double);
template void uniform(const ExecutionContext&, const Tensor<e4m3>&, double, double);
template void normal(const ExecutionContext&, const Tensor<float>&, double, double);
template void normal(const ExecutionContext&, const Tensor<double>&, double, double);
template void normal(const ExecutionContext&, const Tensor<bf16>&, double, double);

template Tensor<bf16> contiguous(const ExecutionContext&, const Tensor<bf16>&);
template Tensor<float> contiguous(const ExecutionContext&, const Tensor<float>&);
template Tensor<double> contiguous(const ExecutionContext&, const Tensor<double>&);
template void copy(const ExecutionContext&, const Tensor<bf16>&, const Tensor<bf16>&);
template void copy(const ExecutionContext&, const Tensor<float>&, const Tensor<float>&);

}  // namespace kcuda
