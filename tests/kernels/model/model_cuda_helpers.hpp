// The plain interface between the GPU test bodies (model_cuda.cpp, compiled by the host compiler:
// its kernels:: calls are the host backend) and the CUDA backend of the model kernels
// (model_cuda_*.cu, compiled by nvcc, where these templates are defined and explicitly
// instantiated for the type combinations the tests use).
#pragma once

#include <cstdint>

#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/softmax.hpp"

namespace mcuda {

using namespace mixtape;
using Status = Tensor<std::int64_t>;

// model_cuda_rows.cu: GELU, LayerNorm, broadcast, embedding
template <class In, class Out>
void gelu_forward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<Out>& y);
template <class In, class DY, class DX>
void gelu_backward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<DY>& dy, const Tensor<DX>& dx, bool acc);
template <class In, class W, class Out, class S>
void layernorm_forward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<W>& g, const Tensor<W>& b,
                       const Tensor<Out>& y, const Tensor<S>& mean, const Tensor<S>& rstd, double eps);
template <class X, class R, class W, class Out, class S>
void add_layernorm_forward(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<R>& r, const Tensor<X>& h,
                           const Tensor<W>& g, const Tensor<W>& b, const Tensor<Out>& y, const Tensor<S>& mean,
                           const Tensor<S>& rstd, double eps);
template <class In, class W, class S, class G, class DX, class DW>
void layernorm_backward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<W>& g, const Tensor<S>& mean,
                        const Tensor<S>& rstd, const Tensor<G>& dy, const Tensor<DX>& dx, const Tensor<DW>& dg,
                        const Tensor<DW>& db, bool acc_dx, bool acc_params);
template <class In, class W, class S, class G, class DX, class DW, class DC>
void layernorm_backward_copy(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<W>& g, const Tensor<S>& mean,
                             const Tensor<S>& rstd, const Tensor<G>& dy, const Tensor<DX>& dx, const Tensor<DW>& dg,
                             const Tensor<DW>& db, bool acc_dx, const Tensor<DC>& copy);
template <class X, class B, class Y>
void add_bias(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<B>& b, const Tensor<Y>& y);
template <class G, class D>
void bias_grad(const ExecutionContext& ctx, const Tensor<G>& dy, const Tensor<D>& db, bool acc);
template <class X, class P, class Y>
void add_positional(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<P>& pos, const Tensor<Y>& y);
template <class G, class D>
void positional_grad(const ExecutionContext& ctx, const Tensor<G>& dy, const Tensor<D>& dpos, bool acc);
template <class I, class T, class O>
void embedding_forward(const ExecutionContext& ctx, const Tensor<I>& ids, const Tensor<T>& table, const Tensor<O>& out,
                       const Status& status);
template <class I, class G, class D>
void embedding_backward(const ExecutionContext& ctx, const Tensor<I>& ids, const Tensor<G>& dout, const Tensor<D>& dtable,
                        bool acc, const Status& status);

// model_cuda_softmax_loss.cu: softmax, cross-entropy, MSE
template <class In, class Out>
void softmax_forward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<Out>& y, double scale,
                     kernels::SoftmaxMask mask);
template <class Y, class DY, class DX>
void softmax_backward(const ExecutionContext& ctx, const Tensor<Y>& y, const Tensor<DY>& dy, const Tensor<DX>& dx,
                      double scale, kernels::SoftmaxMask mask, bool acc);
template <class T, class I, class L>
void cross_entropy_forward(const ExecutionContext& ctx, const Tensor<T>& z, const Tensor<I>& t, const Tensor<L>& losses,
                           const Tensor<L>& lse, const Tensor<L>& mean, const Status& status);
template <class T, class I, class L, class G>
void cross_entropy_backward(const ExecutionContext& ctx, const Tensor<T>& z, const Tensor<I>& t, const Tensor<L>& lse,
                            const Tensor<L>& dloss, const Tensor<G>& dz, bool acc, const Status& status);
template <class T, class I, class L>
void cross_entropy_rows_grad(const ExecutionContext& ctx, const Tensor<T>& z, const Tensor<I>& t, const Tensor<L>& losses,
                             const Tensor<L>& lse, const Tensor<T>& dz, const Status& status);
template <class X, class Y, class L>
void mse_forward(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<Y>& y, const Tensor<L>& loss);
template <class X, class Y, class L, class DX>
void mse_backward(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<Y>& y, const Tensor<L>& dloss,
                  const Tensor<DX>& dx, bool acc);

}  // namespace mcuda
