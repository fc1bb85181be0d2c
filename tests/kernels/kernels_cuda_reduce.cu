// CUDA instantiations of the reductions the GPU tests call (see kernels_cuda_helpers.hpp).
#include "kernels_cuda_helpers.hpp"

#include <cstdint>

#include "mixtape/kernels/reduce.hpp"

namespace kcuda {

namespace k = mixtape::kernels;

template <class T, class O>
void sum(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  k::sum(ctx, in, out);
}
template <class T, class O>
void sum_f64acc(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  k::sum<double>(ctx, in, out);
}
template <class T, class O>
void max(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  k::max(ctx, in, out);
}
template <class T, class O>
void amax(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  k::amax(ctx, in, out);
}
template <class T, class O>
void mean_var(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  k::mean_var(ctx, in, out);
}
template <class T, class O>
void sum_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  k::sum_rows(ctx, in, out);
}
template <class T, class O>
void max_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  k::max_rows(ctx, in, out);
}
template <class T, class O>
void amax_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  k::amax_rows(ctx, in, out);
}
template <class T, class O>
void mean_var_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& mean, const Tensor<O>& var) {
  k::mean_var_rows(ctx, in, mean, var);
}

#define KCUDA_REDUCE(T, O)                                                                                   \
  template void sum(const ExecutionContext&, const Tensor<T>&, const Tensor<O>&);                            \
  template void max(const ExecutionContext&, const Tensor<T>&, const Tensor<O>&);                            \
  template void amax(const ExecutionContext&, const Tensor<T>&, const Tensor<O>&);                           \
  template void mean_var(const ExecutionContext&, const Tensor<T>&, const Tensor<O>&);                       \
  template void sum_rows(const ExecutionContext&, const Tensor<T>&, const Tensor<O>&);                       \
  template void max_rows(const ExecutionContext&, const Tensor<T>&, const Tensor<O>&);                       \
  template void amax_rows(const ExecutionContext&, const Tensor<T>&, const Tensor<O>&);                      \
  template void mean_var_rows(const ExecutionContext&, const Tensor<T>&, const Tensor<O>&, const Tensor<O>&)
KCUDA_REDUCE(float, float);
KCUDA_REDUCE(bf16, float);
KCUDA_REDUCE(e4m3, float);
KCUDA_REDUCE(double, double);
#undef KCUDA_REDUCE
template void sum_f64acc(const ExecutionContext&, const Tensor<float>&, const Tensor<double>&);

}  // namespace kcuda
