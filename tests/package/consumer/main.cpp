// A downstream project's first program: includes the umbrella header from an installed tree.
#include <mixtape/mixtape.hpp>

#include <cstdio>

int main() {
  auto ctx = mixtape::ExecutionContext::host();
  auto x = mixtape::Tensor<mixtape::bf16>::empty(ctx, {4, 4});
  mixtape::kernels::fill(ctx, x, 0.5f);
  const float v = static_cast<float>(x.at({3, 3}));
  std::printf("consumer: backend %s, x[3,3] = %g, cuda runtime %d\n", mixtape::backend_set_name(), v,
              static_cast<int>(mixtape::kWithCudaRuntime));
  return v == 0.5f ? 0 : 1;
}
