// The interface between the GPU test bodies (gemm_cuda_test.cpp, host compiler: its blas:: calls are
// the host backend) and the CUDA backend (gemm_cuda_helper.cu, nvcc: blas::gemm with cuBLASLt).
#pragma once

#include "mixtape/blas/gemm_types.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"

namespace mixtape::blas {
struct MatmulOptions;
}

namespace bcuda {

using namespace mixtape;

/// blas::gemm compiled by nvcc (host and CUDA backends).
void gemm(const ExecutionContext& ctx, const blas::GemmDesc& desc);

/// blas::matmul compiled by nvcc, for the element types instantiated in the .cu unit.
template <class TA, class TC>
void matmul(const ExecutionContext& ctx, const Tensor<TA>& a, const Tensor<TA>& b, const Tensor<TC>& c,
            const blas::MatmulOptions& options);

}  // namespace bcuda
