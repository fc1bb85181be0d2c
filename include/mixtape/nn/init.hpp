/// @file init.hpp
/// @brief Initialising a store's parameters (the peer's scheme, reproducible from a seed) and
///        refreshing compute copies from the stored or master weights.
#pragma once

#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/kernels/random.hpp"
#include "mixtape/nn/parameter.hpp"

namespace mixtape::nn {
MIXTAPE_BACKEND_BEGIN

/// Writes every role of `p` that holds weights (weight, compute copy, master) from one f32 draw, so
/// every policy starts from the same values up to its rounding (the peer initialises in f32 and then
/// converts the module, `module.to(dtype)`). Moments start at zero.
inline void initialize(const ExecutionContext& ctx, Parameter& p) {
  auto draw = Tensor<float>::empty(ctx, p.shape(), MemoryRole::workspace);
  switch (p.spec().init.kind) {
    case Init::Kind::normal:
      kernels::normal(ctx, draw, 0.0, p.spec().init.stddev);
      break;
    case Init::Kind::zeros:
      kernels::fill(ctx, draw, 0.0f);
      break;
    case Init::Kind::ones:
      kernels::fill(ctx, draw, 1.0f);
      break;
    case Init::Kind::uniform:
      kernels::uniform(ctx, draw, -p.spec().init.stddev, p.spec().init.stddev);
      break;
  }
  for (ParamRole r : {ParamRole::weight, ParamRole::compute, ParamRole::master}) {
    if (!p.has(r)) continue;
    const TensorRef& v = p.view(r);
    visit_dtype(v.dtype(), [&]<class T>() {
      if constexpr (ScalarElement<T>) kernels::convert(ctx, draw, v.as<T>());
    });
  }
  for (ParamRole r : {ParamRole::moment1, ParamRole::moment2}) {
    if (p.has(r)) kernels::fill(ctx, p.view(r), 0.0);
  }
}

/// Initialises every parameter of `store` in registration order from the context's Philox stream
/// (`ctx.seed()`), so a seed fixes the model whatever the device.
inline void initialize(const ExecutionContext& ctx, ParameterStore& store) {
  MIXTAPE_EXPECT(store.allocated(), ValueError, "initialize: allocate the parameter store first");
  for (std::size_t i = 0; i < store.size(); ++i) initialize(ctx, store[i]);
}

MIXTAPE_BACKEND_END
}  // namespace mixtape::nn
