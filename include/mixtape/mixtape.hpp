/// @file mixtape.hpp
/// @brief Umbrella header: scalar formats, precision policies, tensors and contexts, kernels, GEMM,
///        autograd, parameters and modules, optimizer math, the Markov corpus.
///
/// Include it from `.cpp` units for the host backend, from `.cu` units for host and CUDA
/// (docs/backends.md).
#pragma once

#include "mixtape/config.hpp"
#include "mixtape/autograd/gradcheck.hpp"
#include "mixtape/autograd/ops_basic.hpp"
#include "mixtape/autograd/ops_linear.hpp"
#include "mixtape/autograd/ops_nn.hpp"
#include "mixtape/blas/gemm.hpp"
#include "mixtape/core/allocator.hpp"
#include "mixtape/core/device.hpp"
#include "mixtape/core/dtype.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/layout.hpp"
#include "mixtape/core/philox.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/core/thread_pool.hpp"
#include "mixtape/core/transfer.hpp"
#include "mixtape/io/markov.hpp"
#include "mixtape/kernels/kernels.hpp"
#include "mixtape/kernels/optimizer.hpp"
#include "mixtape/nn/embedding.hpp"
#include "mixtape/nn/init.hpp"
#include "mixtape/nn/layer_norm.hpp"
#include "mixtape/nn/linear.hpp"
#include "mixtape/nn/module.hpp"
#include "mixtape/nn/parameter.hpp"
#include "mixtape/numeric/numeric.hpp"
#include "mixtape/optim/clip.hpp"
#include "mixtape/optim/grad_scaler.hpp"
#include "mixtape/optim/step_scalars.hpp"
#include "mixtape/policy.hpp"
#include "mixtape/quant/formats.hpp"
