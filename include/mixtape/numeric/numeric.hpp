/// @file numeric.hpp
/// @brief Umbrella header of mixtape's numeric layer: the scalar formats f16, bf16, e4m3, e5m2
///        (and the f32/f64 aliases), the rounding modes, `convert` and `numeric_traits`.
///
/// The layer is the top of mixtape's stack (design.md, "Layers"): it uses nothing but the standard
/// library and config.hpp, and in host-only code no CUDA header. A `.cu` unit additionally gets
/// the CUDA conversion instructions on the device (numeric/detail/cuda_intrinsics.hpp), with results
/// identical to the host code.
///
///  - float16.hpp: `f16`, `f32`, `f64`
///  - bfloat16.hpp: `bf16`
///  - float8.hpp: `e4m3`, `e5m2` (OCP FP8)
///  - rounding.hpp: `Rounding` and the exact conversion rules
///  - convert.hpp: `convert<To, R>(x, random)`
///  - numeric_traits.hpp: `numeric_traits<T>`, `ScalarFormat<T>`
#pragma once

#include "mixtape/numeric/bfloat16.hpp"
#include "mixtape/numeric/convert.hpp"
#include "mixtape/numeric/float16.hpp"
#include "mixtape/numeric/float8.hpp"
#include "mixtape/numeric/numeric_traits.hpp"
#include "mixtape/numeric/rounding.hpp"
