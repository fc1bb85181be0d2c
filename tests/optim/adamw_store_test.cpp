// AdamW, Sgd and TrainStep over a parameter store: the segment tables address each parameter in the
// shared flat buffers exactly as a standalone update of that parameter would; decay follows the
// parameters' flags; compute copies follow the weights; two policies in one store; skipped steps;
// and a small GPT that learns the Markov chain on the host.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mixtape/io/markov.hpp"
#include "mixtape/nn/gpt.hpp"
#include "mixtape/nn/init.hpp"
#include "mixtape/optim/adamw.hpp"
#include "mixtape/optim/sgd.hpp"
#include "mixtape/optim/train_step.hpp"

using namespace mixtape;
using namespace mixtape::nn;
namespace ag = mixtape::autograd;

namespace {
const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host();
  return ctx;
}

std::mt19937_64& rng() {
  static std::mt19937_64 r(Catch::rngSeed() ? Catch::rngSeed() : std::random_device{}());
  return r;
}

template <class T>
void fill_uniform(const Tensor<T>& t, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  auto c = Tensor<T>::empty(host(), t.shape());
  for (std::int64_t i = 0; i < c.numel(); ++i) c.data()[i] = static_cast<T>(u(rng()));
  kernels::copy(host(), c, t);
}

template <class T>
Tensor<T> clone_of(const TensorRef& r) {
  return kernels::clone(host(), r.as<T>());
}
}  // namespace

TEST_CASE("AdamW<bf16-mixed> over a GPT store equals a standalone update of every parameter",
          "[optim][adamw][store]") {
  ParameterStore store;
  Gpt<precision::bf16_mixed> gpt(store, {.vocab = 24, .ctx = 8, .dim = 16, .layers = 2, .heads = 2});
  store.allocate(host());
  initialize(host(), store);
  const kernels::AdamWHyper hyper{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  optim::AdamW<precision::bf16_mixed> opt(host(), store, hyper);
  CHECK(opt.group_names<0>().size() == store.size());
  optim::StepScalars scalars(host());
  scalars.set_lr(host(), 3e-3f);

  // The reference: each parameter's own buffers, updated alone, decay by its flag.
  struct Ref {
    Tensor<float> w, g, m, v;
    Tensor<bf16> c;
    bool decay;
  };
  std::vector<Ref> refs;
  for (int step = 0; step < 3; ++step) {
    for (std::size_t i = 0; i < store.size(); ++i) fill_uniform(store[i].view(ParamRole::grad).as<float>(), -1, 1);
    if (step == 0) {
      for (std::size_t i = 0; i < store.size(); ++i) {
        Parameter& p = store[i];
        Ref r{clone_of<float>(p.view(ParamRole::weight)), {}, clone_of<float>(p.view(ParamRole::moment1)),
              clone_of<float>(p.view(ParamRole::moment2)), {}, p.decay()};
        if (p.has(ParamRole::compute)) r.c = clone_of<bf16>(p.view(ParamRole::compute));
        refs.push_back(r);
      }
    }
    for (std::size_t i = 0; i < store.size(); ++i) refs[i].g = clone_of<float>(store[i].view(ParamRole::grad));
    opt.step(host(), scalars);
    // Standalone: one scalar set per parameter, stepped the same number of times.
    for (std::size_t i = 0; i < store.size(); ++i) {
      Ref& r = refs[i];
      kernels::StepScalarValues v = scalars.read(host());
      v.step -= 1;  // the reference's advance_step counts this update again
      optim::StepScalars s(host(), v);
      kernels::AdamWHyper h = hyper;
      if (!r.decay) h.weight_decay = 0;
      if (r.c.defined()) {
        kernels::adamw_step(host(), s, h, {},
                            kernels::AdamWGroup<float, float, float, float, float, bf16>{
                                r.w.flatten(), r.g.flatten(), r.m.flatten(), r.v.flatten(), {}, r.c.flatten()});
      } else {
        kernels::adamw_step(host(), s, h, {},
                            kernels::AdamWGroup<float>{r.w.flatten(), r.g.flatten(), r.m.flatten(), r.v.flatten()});
      }
    }
  }
  for (std::size_t i = 0; i < store.size(); ++i) {
    const Parameter& p = store[i];
    INFO(p.name());
    CHECK(to_vector(host(), p.view(ParamRole::weight).as<float>()) == to_vector(host(), refs[i].w));
    CHECK(to_vector(host(), p.view(ParamRole::moment1).as<float>()) == to_vector(host(), refs[i].m));
    CHECK(to_vector(host(), p.view(ParamRole::moment2).as<float>()) == to_vector(host(), refs[i].v));
    if (p.has(ParamRole::compute)) {
      const auto w = to_vector(host(), p.view(ParamRole::weight).as<float>());
      const auto c = to_vector(host(), p.view(ParamRole::compute).as<bf16>());
      bool same = true;
      for (std::size_t j = 0; j < w.size(); ++j) same = same && c[j] == bf16(w[j]);
      CHECK(same);  // the GEMM copy is the nearest bf16 of the updated weight
    }
  }
  CHECK(scalars.read(host()).step == 3);
}

TEST_CASE("Sgd<32-true> with momentum over a store equals a standalone update of every parameter",
          "[optim][sgd][store]") {
  ParameterStore store;
  Linear<precision::f32_true> fc(ModuleScope{store, "fc"}, 9, 5);
  LayerNorm<precision::f32_true> ln(ModuleScope{store, "ln"}, 5);
  store.allocate(host());
  initialize(host(), store);
  const kernels::SgdHyper hyper{.momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01, .nesterov = false};
  optim::Sgd<precision::f32_true> opt(host(), store, hyper);
  optim::StepScalars scalars(host());
  scalars.set_lr(host(), 5e-2f);
  std::vector<Tensor<float>> w, m;
  for (std::size_t i = 0; i < store.size(); ++i) {
    w.push_back(clone_of<float>(store[i].view(ParamRole::weight)));
    m.push_back(clone_of<float>(store[i].view(ParamRole::moment1)));
  }
  for (int step = 0; step < 3; ++step) {
    for (std::size_t i = 0; i < store.size(); ++i) fill_uniform(store[i].view(ParamRole::grad).as<float>(), -1, 1);
    opt.step(host(), scalars);
    for (std::size_t i = 0; i < store.size(); ++i) {
      kernels::StepScalarValues v = scalars.read(host());
      v.step -= 1;
      optim::StepScalars s(host(), v);
      kernels::SgdHyper h = hyper;
      if (!store[i].decay()) h.weight_decay = 0;
      kernels::sgd_step(host(), s, h, {},
                        kernels::SgdGroup<float>{w[i].flatten(), clone_of<float>(store[i].view(ParamRole::grad)).flatten(),
                                                 m[i].flatten()});
    }
  }
  for (std::size_t i = 0; i < store.size(); ++i) {
    INFO(store[i].name());
    CHECK(to_vector(host(), store[i].view(ParamRole::weight).as<float>()) == to_vector(host(), w[i]));
    CHECK(to_vector(host(), store[i].view(ParamRole::moment1).as<float>()) == to_vector(host(), m[i]));
  }
}

TEST_CASE("AdamW with an f32 master for bf16 parameters: the master is updated, the parameter is its rounding",
          "[optim][adamw][store][master]") {
  // MS-AMP O1's optimizer shape on the host: bf16 weights and gradients, f32 master and moments.
  struct P : PolicyWith<precision::bf16_true, role::master<f32>, role::state<f32>> {};
  ParameterStore store;
  Linear<P> fc(ModuleScope{store, "fc"}, 24, 8);
  store.allocate(host());
  initialize(host(), store);
  REQUIRE(fc.weight().view(ParamRole::master).dtype() == DType::f32);
  REQUIRE(fc.weight().view(ParamRole::weight).dtype() == DType::bf16);
  fill_uniform(fc.weight().view(ParamRole::grad).as<bf16>(), -1, 1);
  fill_uniform(fc.bias()->view(ParamRole::grad).as<bf16>(), -1, 1);
  const auto master0 = to_vector(host(), fc.weight().view(ParamRole::master).as<float>());
  optim::AdamW<P> opt(host(), store, {.beta2 = 0.95, .weight_decay = 0.1});
  optim::StepScalars scalars(host());
  scalars.set_lr(host(), 1e-4f);  // below half a bf16 ulp of most weights: only the master moves
  opt.step(host(), scalars);
  const auto master = to_vector(host(), fc.weight().view(ParamRole::master).as<float>());
  const auto weight = to_vector(host(), fc.weight().view(ParamRole::weight).as<bf16>());
  int moved = 0;
  bool rounded = true;
  for (std::size_t i = 0; i < master.size(); ++i) {
    moved += master[i] != master0[i];
    rounded = rounded && weight[i] == bf16(master[i]);
  }
  CHECK(moved == static_cast<int>(master.size()));  // every master element took its update
  CHECK(rounded);                                   // the stored weight is the nearest bf16 of it
}

TEST_CASE("AdamW: a non-finite step is skipped and counted, nothing changes", "[optim][adamw][store]") {
  ParameterStore store;
  Linear<precision::f32_true> fc(ModuleScope{store, "fc"}, 8, 4);
  store.allocate(host());
  initialize(host(), store);
  fill_uniform(fc.weight().view(ParamRole::grad).as<float>(), -1, 1);
  fill_uniform(fc.bias()->view(ParamRole::grad).as<float>(), -1, 1);
  optim::AdamW<precision::f32_true> opt(host(), store);
  optim::StepScalars scalars(host());
  scalars.set_lr(host(), 1e-2f);
  scalars.set(host(), &kernels::StepScalarValues::found_inf, 1.0f);
  const auto before = to_vector(host(), store.buffer(ParamRole::weight, DType::f32).as<float>());
  opt.step(host(), scalars);
  CHECK(to_vector(host(), store.buffer(ParamRole::weight, DType::f32).as<float>()) == before);
  const auto v = scalars.read(host());
  CHECK(v.step == 0);
  CHECK(v.skipped == 1);
}

TEST_CASE("AdamW over a store of two policies needs both named", "[optim][adamw][store][errors]") {
  ParameterStore store;
  Linear<precision::f32_true> a(ModuleScope{store, "a"}, 8, 4);
  Linear<precision::bf16_true> b(ModuleScope{store, "b"}, 4, 2);
  store.allocate(host());
  initialize(host(), store);
  CHECK_THROWS_WITH(optim::AdamW<precision::f32_true>(host(), store),
                    Catch::Contains("parameter 'b.weight' has formats (weight bf16, compute none, master none, grad "
                                    "bf16, moment1 bf16, moment2 bf16) of none of the optimizer's policies (32-true)"));
  optim::AdamW<precision::f32_true, precision::bf16_true> opt(host(), store);
  CHECK(opt.group_names<0>() == std::vector<std::string>{"a.weight", "a.bias"});
  CHECK(opt.group_names<1>() == std::vector<std::string>{"b.weight", "b.bias"});
  CHECK(opt.grads().size() == 2);  // the f32 and the bf16 gradient buffers
  fill_uniform(a.weight().view(ParamRole::grad).as<float>(), -1, 1);
  fill_uniform(a.bias()->view(ParamRole::grad).as<float>(), -1, 1);
  fill_uniform(b.weight().view(ParamRole::grad).as<bf16>(), -1, 1);
  fill_uniform(b.bias()->view(ParamRole::grad).as<bf16>(), -1, 1);
  const auto wa = to_vector(host(), a.weight().view(ParamRole::weight).as<float>());
  const auto wb = to_vector(host(), b.weight().view(ParamRole::weight).as<bf16>());
  optim::StepScalars scalars(host());
  scalars.set_lr(host(), 1e-1f);
  opt.step(host(), scalars);
  CHECK(to_vector(host(), a.weight().view(ParamRole::weight).as<float>()) != wa);
  CHECK(to_vector(host(), b.weight().view(ParamRole::weight).as<bf16>()) != wb);
}

namespace {
/// Trains a small GPT on the Markov chain with TrainStep and returns the mean loss of the first and
/// last 10 steps.
template <PrecisionPolicy P>
std::pair<double, double> train_small(int steps, optim::StepScalarValues* last = nullptr) {
  const std::int64_t V = 32, T = 16, B = 8;
  ParameterStore store;
  Gpt<P> gpt(store, {.vocab = V, .ctx = T, .dim = 32, .layers = 1, .heads = 2});
  store.allocate(host());
  initialize(host(), store);
  optim::AdamW<P> opt(host(), store, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  optim::TrainStep<P, optim::AdamW<P>> step(host(), store, opt,
                                            {.schedule = {.base_lr = 3e-3, .warmup_steps = 10}, .clip_norm = 1.0});
  const io::MarkovChain chain(V);
  io::MarkovStream data = chain.stream(0);
  auto x = Tensor<std::int32_t>::empty(host(), {B, T}), y = Tensor<std::int32_t>::empty(host(), {B, T});
  ag::Tape tape(host());
  double first = 0, lastl = 0;
  for (int s = 0; s < steps; ++s) {
    data.next_batch(B, T, x.data(), y.data());
    step(host(), tape, [&](ag::Tape& t, int) { return gpt.loss(t, x, y); });
    const double l = step.scalars().read(host()).loss;
    if (s < 10) first += l / 10;
    if (s >= steps - 10) lastl += l / 10;
  }
  if (last) *last = step.scalars().read(host());
  return {first, lastl};
}
}  // namespace

TEST_CASE("TrainStep: a small GPT learns the Markov chain under 32-true and 16-mixed", "[optim][train][gpt]") {
  const double entropy = io::MarkovChain(32).entropy_rate();
  optim::StepScalarValues v{};
  const auto [first, last] = train_small<precision::f32_true>(150, &v);
  INFO("32-true: first " << first << " last " << last << " entropy rate " << entropy);
  CHECK(first > std::log(32.0) - 0.2);  // starts near uniform: ln V
  CHECK(last < first - 1.0);             // learned most of the way down
  CHECK(last > entropy - 0.05);          // and no better than the chain allows (fresh data)
  CHECK(v.step == 150);
  CHECK(v.loss_scale == 1.0f);  // no scaler under 32-true
  const auto [f16first, f16last] = train_small<precision::f16_mixed>(150, &v);
  INFO("16-mixed: first " << f16first << " last " << f16last);
  CHECK(f16last < f16first - 1.0);
  CHECK(v.step + v.skipped == 150);
  CHECK(v.loss_scale == 65536.0f / static_cast<float>(1 << v.skipped));  // backs off once per skipped step
}

namespace {
using StoreBytes = std::vector<std::vector<unsigned char>>;

/// The bytes of every store buffer; none for the gradients (after TrainStep they hold the last
/// backward's values, unclipped where the clip went into the update: zero_grad drops them).
StoreBytes store_bytes(const ParameterStore& store) {
  StoreBytes out;
  for (const auto& b : store.buffers()) {
    const auto* p = static_cast<const unsigned char*>(b.data.data());
    out.emplace_back(p, b.role == ParamRole::grad ? p : p + b.data.nbytes());
  }
  return out;
}

/// Every store buffer of a small GPT after `steps` steps: through TrainStep, or through the same
/// calls written out with the clip in place (torch's order: clip_grad_norm_, then step). The store
/// starts from `init`'s bytes when given (the context's generator has moved on since the first
/// initialisation), and `init_out` receives the starting bytes.
template <PrecisionPolicy P>
StoreBytes clipped_steps(bool train_step, int steps, const StoreBytes* init, StoreBytes* init_out = nullptr) {
  const std::int64_t V = 32, T = 16, B = 8;
  ParameterStore store;
  Gpt<P> gpt(store, {.vocab = V, .ctx = T, .dim = 32, .layers = 1, .heads = 2});
  store.allocate(host());
  initialize(host(), store);
  if (init) {
    REQUIRE(init->size() == store.buffers().size());
    for (std::size_t i = 0; i < init->size(); ++i)
      std::memcpy(store.buffers()[i].data.data(), (*init)[i].data(), (*init)[i].size());
  }
  if (init_out) *init_out = store_bytes(store);
  constexpr bool kScaled = optim::TrainStep<P, optim::AdamW<P>>::kScaled;
  optim::AdamW<P> opt(host(), store, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
  // A clip norm far below the gradients' norm, so that every step clips (clip_coef well under 1).
  const optim::TrainStepOptions o{.schedule = {.base_lr = 3e-3, .warmup_steps = 2}, .clip_norm = 0.05};
  optim::TrainStep<P, optim::AdamW<P>> step(host(), store, opt, o);
  optim::StepScalars scalars(host());
  optim::GradScaler scaler(host(), scalars, {.enabled = kScaled});
  const io::MarkovChain chain(V);
  io::MarkovStream data = chain.stream(3);
  auto x = Tensor<std::int32_t>::empty(host(), {B, T}), y = Tensor<std::int32_t>::empty(host(), {B, T});
  ag::Tape tape(host());
  for (int s = 0; s < steps; ++s) {
    data.next_batch(B, T, x.data(), y.data());
    if (train_step) {
      step(host(), tape, [&](ag::Tape& t, int) { return gpt.loss(t, x, y); });
      continue;
    }
    kernels::apply_lr_schedule(host(), scalars, o.schedule);
    const auto loss = gpt.loss(tape, x, y);
    using L = typename std::remove_cvref_t<decltype(loss)>::element_type;
    auto seed = Tensor<L>::empty(host(), Shape{1});
    kernels::fill(host(), seed, 1.0);
    optim::scale_loss(host(), scaler, seed, seed);  // a copy when the policy does not scale
    ag::backward(tape, loss, seed);
    tape.clear();
    optim::unscale_grads(host(), scaler, opt.grads());  // in place, as torch
    optim::clip_grad_norm(host(), scalars, opt.grads(), {.max_norm = o.clip_norm});
    REQUIRE(scalars.read(host()).clip_coef < 0.5f);
    opt.step(host(), scalars);
    optim::update_scale(host(), scaler);
    store.zero_grad();
  }
  return store_bytes(store);
}
}  // namespace

TEMPLATE_TEST_CASE("TrainStep: the clip (and the unscale) folded into the update give the in-place passes' bits",
                   "[optim][train][clip]", precision::f32_true, precision::bf16_mixed, precision::bf16_true,
                   precision::f16_true, precision::f16_mixed) {
  // f32 gradients (32-true, bf16-mixed) and narrow ones (bf16-true, 16-true): the update rounds
  // g * clip_coef to the gradient type as the in-place clip stores it; 16-mixed also defers
  // GradScaler's unscale into the norm and the update.
  StoreBytes init;
  const auto a = clipped_steps<TestType>(true, 4, nullptr, &init);
  const auto b = clipped_steps<TestType>(false, 4, &init);
  REQUIRE(a != init);  // the steps moved the parameters
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("store buffer " << i);
    CHECK(a[i] == b[i]);
  }
}
