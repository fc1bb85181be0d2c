// CUDA instantiations of GELU, LayerNorm, the broadcast ops and the embedding for the GPU test
// (see model_cuda_helpers.hpp).
#include "model_cuda_helpers.hpp"

#include "mixtape/kernels/activation.hpp"
#include "mixtape/kernels/broadcast.hpp"
#include "mixtape/kernels/embedding.hpp"
#include "mixtape/kernels/layernorm.hpp"

namespace mcuda {

namespace k = mixtape::kernels;
using i32 = std::int32_t;
using i64 = std::int64_t;
using Ctx = ExecutionContext;

template <class In, class Out>
void gelu_forward(const Ctx& ctx, const Tensor<In>& x, const Tensor<Out>& y) {
  k::gelu_forward(ctx, x, y);
}
template <class In, class DY, class DX>
void gelu_backward(const Ctx& ctx, const Tensor<In>& x, const Tensor<DY>& dy, const Tensor<DX>& dx, bool acc) {
  k::gelu_backward(ctx, x, dy, dx, acc);
}
template <class In, class W, class Out, class S>
void layernorm_forward(const Ctx& ctx, const Tensor<In>& x, const Tensor<W>& g, const Tensor<W>& b, const Tensor<Out>& y,
                       const Tensor<S>& mean, const Tensor<S>& rstd, double eps) {
  k::layernorm_forward(ctx, x, g, b, y, mean, rstd, eps);
}
template <class X, class R, class W, class Out, class S>
void add_layernorm_forward(const Ctx& ctx, const Tensor<X>& x, const Tensor<R>& r, const Tensor<X>& h, const Tensor<W>& g,
                           const Tensor<W>& b, const Tensor<Out>& y, const Tensor<S>& mean, const Tensor<S>& rstd,
                           double eps) {
  k::add_layernorm_forward(ctx, x, r, h, g, b, y, mean, rstd, eps);
}
template <class In, class W, class S, class G, class DX, class DW>
void layernorm_backward(const Ctx& ctx, const Tensor<In>& x, const Tensor<W>& g, const Tensor<S>& mean,
                        const Tensor<S>& rstd, const Tensor<G>& dy, const Tensor<DX>& dx, const Tensor<DW>& dg,
                        const Tensor<DW>& db, bool acc_dx, bool acc_params) {
  k::layernorm_backward(ctx, x, g, mean, rstd, dy, dx, dg, db, acc_dx, acc_params);
}
template <class In, class W, class S, class G, class DX, class DW, class DC>
void layernorm_backward_copy(const Ctx& ctx, const Tensor<In>& x, const Tensor<W>& g, const Tensor<S>& mean,
                             const Tensor<S>& rstd, const Tensor<G>& dy, const Tensor<DX>& dx, const Tensor<DW>& dg,
                             const Tensor<DW>& db, bool acc_dx, const Tensor<DC>& copy) {
  k::layernorm_backward(ctx, x, g, mean, rstd, dy, dx, dg, db, acc_dx, false, copy);
}
template <class X, class B, class Y>
void add_bias(const Ctx& ctx, const Tensor<X>& x, const Tensor<B>& b, const Tensor<Y>& y) {
  k::add_bias(ctx, x, b, y);
}
template <class G, class D>
void bias_grad(const Ctx& ctx, const Tensor<G>& dy, const Tensor<D>& db, bool acc) {
  k::bias_grad(ctx, dy, db, acc);
}
template <class X, class P, class Y>
void add_positional(const Ctx& ctx, const Tensor<X>& x, const Tensor<P>& pos, const Tensor<Y>& y) {
  k::add_positional(ctx, x, pos, y);
}
template <class G, class D>
void positional_grad(const Ctx& ctx, const Tensor<G>& dy, const Tensor<D>& dpos, bool acc) {
  k::positional_grad(ctx, dy, dpos, acc);
}
template <class I, class T, class O>
void embedding_forward(const Ctx& ctx, const Tensor<I>& ids, const Tensor<T>& table, const Tensor<O>& out,
                       const Status& status) {
  k::embedding_forward(ctx, ids, table, out, status);
}
template <class I, class G, class D>
void embedding_backward(const Ctx& ctx, const Tensor<I>& ids, const Tensor<G>& dout, const Tensor<D>& dtable, bool acc,
                        const Status& status) {
  k::embedding_backward(ctx, ids, dout, dtable, acc, status);
}

#define T_ const Tensor
template void gelu_forward(const Ctx&, T_<float>&, T_<float>&);
template void gelu_forward(const Ctx&, T_<bf16>&, T_<bf16>&);
template void gelu_forward(const Ctx&, T_<f16>&, T_<f16>&);
template void gelu_forward(const Ctx&, T_<double>&, T_<double>&);
template void gelu_backward(const Ctx&, T_<float>&, T_<float>&, T_<float>&, bool);
template void gelu_backward(const Ctx&, T_<bf16>&, T_<bf16>&, T_<bf16>&, bool);
template void gelu_backward(const Ctx&, T_<double>&, T_<double>&, T_<double>&, bool);

template void layernorm_forward(const Ctx&, T_<float>&, T_<float>&, T_<float>&, T_<float>&, T_<float>&, T_<float>&, double);
template void layernorm_forward(const Ctx&, T_<float>&, T_<float>&, T_<float>&, T_<bf16>&, T_<float>&, T_<float>&, double);
template void layernorm_forward(const Ctx&, T_<bf16>&, T_<bf16>&, T_<bf16>&, T_<bf16>&, T_<float>&, T_<float>&, double);
template void layernorm_forward(const Ctx&, T_<double>&, T_<double>&, T_<double>&, T_<double>&, T_<double>&, T_<double>&,
                                double);
template void add_layernorm_forward(const Ctx&, T_<float>&, T_<bf16>&, T_<float>&, T_<float>&, T_<float>&, T_<bf16>&,
                                    T_<float>&, T_<float>&, double);
template void add_layernorm_forward(const Ctx&, T_<bf16>&, T_<bf16>&, T_<bf16>&, T_<bf16>&, T_<bf16>&, T_<bf16>&,
                                    T_<float>&, T_<float>&, double);
template void add_layernorm_forward(const Ctx&, T_<double>&, T_<double>&, T_<double>&, T_<double>&, T_<double>&,
                                    T_<double>&, T_<double>&, T_<double>&, double);
template void layernorm_backward(const Ctx&, T_<float>&, T_<float>&, T_<float>&, T_<float>&, T_<float>&, T_<float>&,
                                 T_<float>&, T_<float>&, bool, bool);
template void layernorm_backward(const Ctx&, T_<float>&, T_<float>&, T_<float>&, T_<float>&, T_<bf16>&, T_<float>&,
                                 T_<float>&, T_<float>&, bool, bool);
template void layernorm_backward(const Ctx&, T_<bf16>&, T_<bf16>&, T_<float>&, T_<float>&, T_<bf16>&, T_<bf16>&, T_<bf16>&,
                                 T_<bf16>&, bool, bool);
template void layernorm_backward(const Ctx&, T_<double>&, T_<double>&, T_<double>&, T_<double>&, T_<double>&, T_<double>&,
                                 T_<double>&, T_<double>&, bool, bool);

template void layernorm_backward_copy(const Ctx&, T_<float>&, T_<float>&, T_<float>&, T_<float>&, T_<bf16>&, T_<float>&,
                                      T_<float>&, T_<float>&, bool, T_<bf16>&);
template void layernorm_backward_copy(const Ctx&, T_<bf16>&, T_<bf16>&, T_<float>&, T_<float>&, T_<bf16>&, T_<bf16>&,
                                      T_<bf16>&, T_<bf16>&, bool, T_<bf16>&);
template void layernorm_backward_copy(const Ctx&, T_<double>&, T_<double>&, T_<double>&, T_<double>&, T_<double>&,
                                      T_<double>&, T_<double>&, T_<double>&, bool, T_<double>&);

template void add_bias(const Ctx&, T_<float>&, T_<float>&, T_<float>&);
template void add_bias(const Ctx&, T_<bf16>&, T_<float>&, T_<bf16>&);
template void add_bias(const Ctx&, T_<double>&, T_<double>&, T_<double>&);
template void bias_grad(const Ctx&, T_<float>&, T_<float>&, bool);
template void bias_grad(const Ctx&, T_<bf16>&, T_<float>&, bool);
template void bias_grad(const Ctx&, T_<bf16>&, T_<bf16>&, bool);
template void bias_grad(const Ctx&, T_<double>&, T_<double>&, bool);
template void add_positional(const Ctx&, T_<float>&, T_<float>&, T_<float>&);
template void positional_grad(const Ctx&, T_<float>&, T_<float>&, bool);

template void embedding_forward(const Ctx&, T_<i32>&, T_<float>&, T_<float>&, const Status&);
template void embedding_forward(const Ctx&, T_<i32>&, T_<float>&, T_<bf16>&, const Status&);
template void embedding_forward(const Ctx&, T_<i64>&, T_<bf16>&, T_<bf16>&, const Status&);
template void embedding_forward(const Ctx&, T_<i32>&, T_<double>&, T_<double>&, const Status&);
template void embedding_backward(const Ctx&, T_<i32>&, T_<float>&, T_<float>&, bool, const Status&);
template void embedding_backward(const Ctx&, T_<i32>&, T_<bf16>&, T_<float>&, bool, const Status&);
template void embedding_backward(const Ctx&, T_<i64>&, T_<bf16>&, T_<bf16>&, bool, const Status&);
template void embedding_backward(const Ctx&, T_<i32>&, T_<double>&, T_<double>&, bool, const Status&);
#undef T_

}  // namespace mcuda
