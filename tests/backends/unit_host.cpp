#define UNIT_PREFIX host_unit
#include "unit_body.inc"

namespace units {
std::string host_unit_fill_device(float value) {
  auto ctx = mixtape::ExecutionContext::cuda(0);
  auto t = mixtape::Tensor<float>::empty(ctx, {3, 5});
  try {
    mixtape::kernels::fill(ctx, t, value);
  } catch (const mixtape::BackendError& e) {
    return e.what();
  }
  return "no exception";
}
}  // namespace units
