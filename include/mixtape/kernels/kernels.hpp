/// @file kernels.hpp
/// @brief Umbrella header of the generic kernels: element-wise maps, fills, conversions, copies,
///        random fills and reductions, each with a host and (in `.cu` units) a CUDA implementation.
///
///  - functors.hpp: the common element-wise functors (ScaleBy, Add, Mul, Square, Abs, ...)
///  - elementwise.hpp: `map`, `fill`, `convert`, `copy`, `clone`, `contiguous`, `item`
///  - random.hpp: `uniform`, `normal` (Philox, core/philox.hpp)
///  - reduce.hpp: `sum`, `max`, `amax`, `mean_var` and their `_rows` forms
#pragma once

#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/kernels/functors.hpp"
#include "mixtape/kernels/random.hpp"
#include "mixtape/kernels/reduce.hpp"
