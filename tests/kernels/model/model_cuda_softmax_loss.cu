// CUDA instantiations of softmax, cross-entropy and MSE for the GPU test (see
// model_cuda_helpers.hpp).
#include "model_cuda_helpers.hpp"

#include "mixtape/kernels/loss.hpp"
#include "mixtape/kernels/softmax.hpp"

namespace mcuda {

namespace k = mixtape::kernels;
using i32 = std::int32_t;
using i64 = std::int64_t;
using Ctx = ExecutionContext;

template <class In, class Out>
void softmax_forward(const Ctx& ctx, const Tensor<In>& x, const Tensor<Out>& y, double scale, k::SoftmaxMask mask) {
  k::softmax_forward(ctx, x, y, scale, mask);
}
template <class Y, class DY, class DX>
void softmax_backward(const Ctx& ctx, const Tensor<Y>& y, const Tensor<DY>& dy, const Tensor<DX>& dx, double scale,
                      k::SoftmaxMask mask, bool acc) {
  k::softmax_backward(ctx, y, dy, dx, scale, mask, acc);
}
template <class T, class I, class L>
void cross_entropy_forward(const Ctx& ctx, const Tensor<T>& z, const Tensor<I>& t, const Tensor<L>& losses,
                           const Tensor<L>& lse, const Tensor<L>& mean, const Status& status) {
  k::cross_entropy_forward(ctx, z, t, losses, lse, mean, status);
}
template <class T, class I, class L, class G>
void cross_entropy_backward(const Ctx& ctx, const Tensor<T>& z, const Tensor<I>& t, const Tensor<L>& lse,
                            const Tensor<L>& dloss, const Tensor<G>& dz, bool acc, const Status& status) {
  k::cross_entropy_backward(ctx, z, t, lse, dloss, dz, acc, status);
}
template <class T, class I, class L>
void cross_entropy_rows_grad(const Ctx& ctx, const Tensor<T>& z, const Tensor<I>& t, const Tensor<L>& losses,
                             const Tensor<L>& lse, const Tensor<T>& dz, const Status& status) {
  k::cross_entropy_rows_grad(ctx, z, t, losses, lse, dz, status);
}
template <class X, class Y, class L>
void mse_forward(const Ctx& ctx, const Tensor<X>& x, const Tensor<Y>& y, const Tensor<L>& loss) {
  k::mse_forward(ctx, x, y, loss);
}
template <class X, class Y, class L, class DX>
void mse_backward(const Ctx& ctx, const Tensor<X>& x, const Tensor<Y>& y, const Tensor<L>& dloss, const Tensor<DX>& dx,
                  bool acc) {
  k::mse_backward(ctx, x, y, dloss, dx, acc);
}

#define T_ const Tensor
template void softmax_forward(const Ctx&, T_<float>&, T_<float>&, double, k::SoftmaxMask);
template void softmax_forward(const Ctx&, T_<bf16>&, T_<float>&, double, k::SoftmaxMask);
template void softmax_forward(const Ctx&, T_<bf16>&, T_<bf16>&, double, k::SoftmaxMask);
template void softmax_forward(const Ctx&, T_<f16>&, T_<f16>&, double, k::SoftmaxMask);
template void softmax_forward(const Ctx&, T_<double>&, T_<double>&, double, k::SoftmaxMask);
template void softmax_backward(const Ctx&, T_<float>&, T_<float>&, T_<float>&, double, k::SoftmaxMask, bool);
template void softmax_backward(const Ctx&, T_<float>&, T_<bf16>&, T_<bf16>&, double, k::SoftmaxMask, bool);
template void softmax_backward(const Ctx&, T_<bf16>&, T_<bf16>&, T_<bf16>&, double, k::SoftmaxMask, bool);
template void softmax_backward(const Ctx&, T_<double>&, T_<double>&, T_<double>&, double, k::SoftmaxMask, bool);

template void cross_entropy_forward(const Ctx&, T_<float>&, T_<i32>&, T_<float>&, T_<float>&, T_<float>&, const Status&);
template void cross_entropy_forward(const Ctx&, T_<bf16>&, T_<i32>&, T_<float>&, T_<float>&, T_<float>&, const Status&);
template void cross_entropy_forward(const Ctx&, T_<f16>&, T_<i64>&, T_<float>&, T_<float>&, T_<float>&, const Status&);
template void cross_entropy_forward(const Ctx&, T_<double>&, T_<i64>&, T_<double>&, T_<double>&, T_<double>&,
                                    const Status&);
template void cross_entropy_rows_grad(const Ctx&, T_<float>&, T_<i32>&, T_<float>&, T_<float>&, T_<float>&,
                                      const Status&);
template void cross_entropy_rows_grad(const Ctx&, T_<bf16>&, T_<i32>&, T_<float>&, T_<float>&, T_<bf16>&, const Status&);
template void cross_entropy_rows_grad(const Ctx&, T_<f16>&, T_<i64>&, T_<float>&, T_<float>&, T_<f16>&, const Status&);
template void cross_entropy_rows_grad(const Ctx&, T_<double>&, T_<i64>&, T_<double>&, T_<double>&, T_<double>&,
                                      const Status&);
template void cross_entropy_backward(const Ctx&, T_<float>&, T_<i32>&, T_<float>&, T_<float>&, T_<float>&, bool,
                                     const Status&);
template void cross_entropy_backward(const Ctx&, T_<bf16>&, T_<i32>&, T_<float>&, T_<float>&, T_<bf16>&, bool,
                                     const Status&);
template void cross_entropy_backward(const Ctx&, T_<f16>&, T_<i64>&, T_<float>&, T_<float>&, T_<f16>&, bool,
                                     const Status&);
template void cross_entropy_backward(const Ctx&, T_<double>&, T_<i64>&, T_<double>&, T_<double>&, T_<double>&, bool,
                                     const Status&);

template void mse_forward(const Ctx&, T_<float>&, T_<float>&, T_<float>&);
template void mse_forward(const Ctx&, T_<bf16>&, T_<float>&, T_<float>&);
template void mse_forward(const Ctx&, T_<double>&, T_<double>&, T_<double>&);
template void mse_backward(const Ctx&, T_<float>&, T_<float>&, T_<float>&, T_<float>&, bool);
template void mse_backward(const Ctx&, T_<bf16>&, T_<float>&, T_<float>&, T_<bf16>&, bool);
template void mse_backward(const Ctx&, T_<double>&, T_<double>&, T_<double>&, T_<double>&, bool);
#undef T_

}  // namespace mcuda
