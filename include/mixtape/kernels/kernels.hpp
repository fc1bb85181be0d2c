/// @file kernels.hpp
/// @brief Umbrella header of the generic kernels: element-wise maps, fills, conversions, copies,
///        random fills and reductions, each with a host and (in `.cu` units) a CUDA implementation.
///
///  - functors.hpp: the common element-wise functors (ScaleBy, Add, Mul, Square, Abs, ...)
///  - elementwise.hpp: `map`, `fill`, `convert`, `copy`, `clone`, `contiguous`, `item`
///  - random.hpp: `uniform`, `normal` (Philox, core/philox.hpp)
///  - reduce.hpp: `sum`, `max`, `amax`, `mean_var` and their `_rows` forms
///  - activation.hpp, layernorm.hpp, softmax.hpp, loss.hpp, embedding.hpp, broadcast.hpp: the
///    model ops (GELU, LayerNorm, softmax, cross-entropy / MSE, embedding, bias and positional adds)
///  - optimizer.hpp: multi-tensor AdamW / SGD updates, unscale, grad norm, loss-scale update
#pragma once

#include "mixtape/kernels/activation.hpp"
#include "mixtape/kernels/broadcast.hpp"
#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/kernels/embedding.hpp"
#include "mixtape/kernels/functors.hpp"
#include "mixtape/kernels/layernorm.hpp"
#include "mixtape/kernels/loss.hpp"
#include "mixtape/kernels/optimizer.hpp"
#include "mixtape/kernels/random.hpp"
#include "mixtape/kernels/reduce.hpp"
#include "mixtape/kernels/softmax.hpp"
