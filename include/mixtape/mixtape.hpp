/// @file mixtape.hpp
/// @brief Umbrella header: scalar formats, precision policies, tensors and contexts, kernels.
///
/// Include it from `.cpp` units for the host backend, from `.cu` units for host and CUDA
/// (docs/backends.md).
#pragma once

#include "mixtape/config.hpp"
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
#include "mixtape/numeric/numeric.hpp"
#include "mixtape/policy.hpp"
#include "mixtape/quant/formats.hpp"
