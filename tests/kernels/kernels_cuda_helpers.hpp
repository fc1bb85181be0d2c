// The plain interface between the GPU test bodies (kernels_cuda.cpp, compiled by the host compiler:
// its kernels:: calls are the host backend) and the CUDA backend (kernels_cuda_*.cu, compiled by
// nvcc, where the templates below are defined and explicitly instantiated).
#pragma once

#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/functors.hpp"
#include "mixtape/numeric/numeric.hpp"

namespace kcuda {

using namespace mixtape;

// kernels_cuda_elementwise.cu
template <class Op, class Out, class... In>
void map(const ExecutionContext& ctx, const Op& op, const Tensor<Out>& out, const Tensor<In>&... in);
template <class T>
void fill(const ExecutionContext& ctx, const Tensor<T>& out, double value);
template <class In, class Out>
void convert(const ExecutionContext& ctx, const Tensor<In>& in, const Tensor<Out>& out, Rounding rounding);
template <class T>
void uniform(const ExecutionContext& ctx, const Tensor<T>& out, double lo, double hi);
template <class T>
void normal(const ExecutionContext& ctx, const Tensor<T>& out, double mean, double stddev);
template <class T>
Tensor<T> contiguous(const ExecutionContext& ctx, const Tensor<T>& view);
template <class T>
void copy(const ExecutionContext& ctx, const Tensor<T>& src, const Tensor<T>& dst);

// kernels_cuda_reduce.cu (default accumulators; sum_f64acc: OverrideAccumT = double)
template <class T, class O>
void sum(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out);
template <class T, class O>
void sum_f64acc(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out);
template <class T, class O>
void max(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out);
template <class T, class O>
void amax(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out);
template <class T, class O>
void mean_var(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out);
template <class T, class O>
void sum_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out);
template <class T, class O>
void max_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out);
template <class T, class O>
void amax_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out);
template <class T, class O>
void mean_var_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& mean, const Tensor<O>& var);

}  // namespace kcuda
