// nvcc side of the GPU GEMM tests: the CUDA backend of blas::gemm / blas::matmul.
#include "gemm_cuda_helper.hpp"

#include "mixtape/blas/gemm.hpp"

namespace bcuda {

void gemm(const ExecutionContext& ctx, const blas::GemmDesc& desc) { blas::gemm(ctx, desc); }

template <class TA, class TC>
void matmul(const ExecutionContext& ctx, const Tensor<TA>& a, const Tensor<TA>& b, const Tensor<TC>& c,
            const blas::MatmulOptions& options) {
  blas::matmul(ctx, a, b, c, options);
}

template void matmul<float, float>(const ExecutionContext&, const Tensor<float>&, const Tensor<float>&, const Tensor<float>&,
                                   const blas::MatmulOptions&);
template void matmul<bf16, bf16>(const ExecutionContext&, const Tensor<bf16>&, const Tensor<bf16>&, const Tensor<bf16>&,
                                 const blas::MatmulOptions&);

}  // namespace bcuda
