// The README's example, built and run by ctest so it stays true.
#include <mixtape/mixtape.hpp>  // in a .cu file for CUDA kernels, a .cpp file for the host only
#include <cstdio>
#include <vector>
namespace mt = mixtape;

int main() {
  using P = mt::precision::bf16_mixed;  // the precision is a type: swap in f32_true, bf16_true_sr, ...
  auto ctx = mt::ExecutionContext::on(mt::default_device());
  mt::nn::ParameterStore store;
  mt::nn::Gpt<P> gpt(store, {.vocab = 64, .ctx = 32, .dim = 64, .layers = 2, .heads = 4});
  store.allocate(ctx);
  mt::nn::initialize(ctx, store);  // N(0, 0.02), scaled residual projections, from ctx's seed
  mt::optim::AdamW<P> opt(ctx, store, {.beta1 = 0.9, .beta2 = 0.95, .weight_decay = 0.1});
  mt::optim::TrainStep<P, mt::optim::AdamW<P>> step(ctx, store, opt, {.schedule = {.base_lr = 3e-3, .warmup_steps = 30}});
  const mt::io::MarkovChain chain(64);  // synthetic data with a known best loss
  auto data = chain.stream(0);
  std::vector<std::int32_t> x(16 * 32), y(16 * 32);
  mt::autograd::Tape tape(ctx);
  for (int s = 0; s < 300; ++s) {
    data.next_batch(16, 32, x.data(), y.data());
    const auto xd = mt::from_host<std::int32_t>(ctx, x, {16, 32}), yd = mt::from_host<std::int32_t>(ctx, y, {16, 32});
    step(ctx, tape, [&](mt::autograd::Tape& t, int) { return gpt.loss(t, xd, yd); });  // forward, backward, AdamW
  }
  std::printf("loss %.3f, entropy rate %.3f\n", step.scalars().read(ctx).loss, chain.entropy_rate());
}
