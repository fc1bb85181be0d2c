/// @file fill.hpp
/// @brief `kernels::fill` (defined with the other element-wise ops in elementwise.hpp); this header
///        exists so code that only fills can say so.
#pragma once

#include "mixtape/kernels/elementwise.hpp"
