// Gpt<P>: the peer's parameter names, shapes and init; the whole model's gradients against central
// differences in f64; each policy's gradients against the f64 model.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "mixtape/nn/gpt.hpp"
#include "mixtape/nn/init.hpp"

using namespace mixtape;
using namespace mixtape::nn;
namespace ag = mixtape::autograd;

namespace {
const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host({.seed = 1234});
  return ctx;
}

std::mt19937_64& rng() {
  static std::mt19937_64 r(Catch::rngSeed() ? Catch::rngSeed() : std::random_device{}());
  return r;
}

Tensor<std::int32_t> random_ids(std::int64_t b, std::int64_t t, std::int32_t vocab) {
  auto ids = Tensor<std::int32_t>::empty(host(), {b, t});
  std::uniform_int_distribution<std::int32_t> u(0, vocab - 1);
  for (std::int64_t i = 0; i < ids.numel(); ++i) ids.data()[i] = u(rng());
  return ids;
}

/// Every weight-holding view of the store filled from uniform draws (f64 source, so every policy
/// gets the same values up to its rounding), biases and gains included: nothing is zero or one.
void randomize(ParameterStore& store, std::uint64_t seed, double scale = 0.3) {
  for (std::size_t i = 0; i < store.size(); ++i) {
    Parameter& p = store[i];
    std::mt19937_64 r(seed + i);
    std::uniform_real_distribution<double> u(-scale, scale);
    std::vector<double> v(static_cast<std::size_t>(p.numel()));
    for (auto& x : v) x = u(r);
    if (p.name().find("ln") != std::string::npos && p.name().ends_with("weight"))
      for (auto& x : v) x += 1.0;
    const auto src = Tensor<double>::wrap(v.data(), p.shape());
    for (ParamRole role : {ParamRole::weight, ParamRole::compute, ParamRole::master}) {
      if (!p.has(role)) continue;
      visit_dtype(p.view(role).dtype(), [&]<class T>() {
        if constexpr (ScalarElement<T>) kernels::convert(host(), src, p.view(role).as<T>());
      });
    }
  }
}

std::vector<double> grad_of(const Parameter& p) {
  std::vector<double> out;
  visit_dtype(p.view(ParamRole::grad).dtype(), [&]<class T>() {
    if constexpr (ScalarElement<T>) {
      for (auto x : to_vector(host(), p.view(ParamRole::grad).as<T>())) out.push_back(static_cast<double>(x));
    }
  });
  return out;
}
}  // namespace

TEST_CASE("Gpt registers the peer's parameters, names, shapes, decay flags and init", "[nn][gpt]") {
  ParameterStore store;
  const GptConfig cfg{.vocab = 64, .ctx = 16, .dim = 32, .layers = 2, .heads = 4};
  Gpt<precision::f32_true> gpt(store, cfg);
  std::vector<std::string> names;
  gpt.for_each_parameter([&](const std::string& n, Parameter&) { names.push_back(n); });
  std::vector<std::string> expected{"wte.weight", "wpe.weight"};
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* m : {"ln1", "qkv", "proj", "ln2", "fc", "out"})
      for (const char* w : {"weight", "bias"}) expected.push_back(b + m + "." + w);
  }
  expected.push_back("lnf.weight");
  expected.push_back("lnf.bias");
  CHECK(names == expected);
  CHECK(gpt.parameter_count() == cfg.parameter_count());
  CHECK(store.numel() == cfg.parameter_count());
  CHECK(store.at("blocks.1.fc.weight").shape() == Shape{128, 32});
  CHECK(store.at("blocks.0.qkv.weight").shape() == Shape{96, 32});
  CHECK(store.at("wpe.weight").shape() == Shape{16, 32});
  // The peer decays 2-D weights only (embeddings included), and scales the residual projections.
  for (const auto& n : expected) {
    INFO(n);
    const Parameter& p = store.at(n);
    CHECK(p.decay() == (p.shape().rank() == 2));
    if (n.ends_with("proj.weight") || n.ends_with("out.weight")) CHECK(p.spec().init.stddev == Approx(0.02 / 2.0));
    if (n.ends_with(".bias")) CHECK(p.spec().init.kind == Init::Kind::zeros);
  }
  store.allocate(host());
  initialize(host(), store);
  // A scaled projection's sample standard deviation is close to 0.01 (4096 draws: +-5%).
  const auto w = to_vector(host(), store.at("blocks.0.out.weight").view(ParamRole::weight).as<float>());
  double ss = 0;
  for (float x : w) ss += double(x) * x;
  CHECK(std::sqrt(ss / w.size()) == Approx(0.01).epsilon(0.05));
}

TEST_CASE("Gpt<64-true>: every parameter's gradient against central differences", "[nn][gpt][gradcheck]") {
  ParameterStore store;
  const GptConfig cfg{.vocab = 11, .ctx = 6, .dim = 8, .layers = 2, .heads = 2};
  Gpt<precision::f64_true> gpt(store, cfg);
  store.allocate(host());
  randomize(store, 7);
  const auto ids = random_ids(2, 5, 11), targets = random_ids(2, 5, 11);  // T = 5 < ctx: unused wpe row
  auto loss_at = [&]() {
    ag::Tape t(host());
    ag::NoGradGuard ng(t);
    return gpt.loss(t, ids, targets).value().at({0});
  };
  ag::Tape tape(host());
  ag::backward(tape, gpt.loss(tape, ids, targets));
  int checked = 0;
  for (std::size_t i = 0; i < store.size(); ++i) {
    Parameter& p = store[i];
    const auto g = grad_of(p);
    auto w = p.view(ParamRole::weight).as<double>();
    std::uniform_int_distribution<std::int64_t> pick(0, p.numel() - 1);
    for (int k = 0; k < 4; ++k) {
      const std::int64_t j = k == 0 && p.name() == "wpe.weight" ? p.numel() - 1 : pick(rng());
      double* x = w.data() + j;  // a view of the flat buffer: contiguous
      const double x0 = *x, h = 1e-5;
      *x = x0 + h;
      const double up = loss_at();
      *x = x0 - h;
      const double down = loss_at();
      *x = x0;
      const double fd = (up - down) / (2 * h);
      // Central differences: truncation h^2 |f'''| / 6 and cancellation 2 eps |f| / (2h); with
      // |f| ~ 3 and third derivatives O(10), both are below 1e-9.
      INFO(p.name() << "[" << j << "] analytic " << g[j] << " numeric " << fd);
      CHECK(std::abs(g[j] - fd) <= 1e-7 + 1e-6 * std::abs(fd));
      ++checked;
    }
  }
  CHECK(checked == 4 * static_cast<int>(store.size()));
}

namespace {
/// Loss and gradients of Gpt<P> on fixed ids, parameters from `randomize`.
template <PrecisionPolicy P>
std::pair<double, std::map<std::string, std::vector<double>>> run_policy(const GptConfig& cfg, const Tensor<std::int32_t>& ids,
                                                                         const Tensor<std::int32_t>& targets) {
  ParameterStore store;
  Gpt<P> gpt(store, cfg);
  store.allocate(host());
  randomize(store, 99);
  ag::Tape tape(host());
  const auto loss = gpt.loss(tape, ids, targets);
  ag::backward(tape, loss);
  std::map<std::string, std::vector<double>> grads;
  for (std::size_t i = 0; i < store.size(); ++i) grads[store[i].name()] = grad_of(store[i]);
  return {static_cast<double>(loss.value().at({0})), grads};
}

/// max over parameters of ||g - g64|| / ||g64||.
double worst_relative_error(const std::map<std::string, std::vector<double>>& g,
                            const std::map<std::string, std::vector<double>>& ref, std::string& worst) {
  double out = 0;
  for (const auto& [name, r] : ref) {
    const auto& x = g.at(name);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < r.size(); ++i) {
      num += (x[i] - r[i]) * (x[i] - r[i]);
      den += r[i] * r[i];
    }
    const double e = std::sqrt(num / den);
    if (e > out) {
      out = e;
      worst = name;
    }
  }
  return out;
}
}  // namespace

TEST_CASE("Gpt under each policy: loss and gradients against the f64 model", "[nn][gpt][precision]") {
  const GptConfig cfg{.vocab = 32, .ctx = 16, .dim = 32, .layers = 2, .heads = 4};
  const auto ids = random_ids(2, 16, 32), targets = random_ids(2, 16, 32);
  const auto [loss64, g64] = run_policy<precision::f64_true>(cfg, ids, targets);
  // First-order error analysis: every gradient is a sum of products along paths through the same
  // ops, each op rounding its result once in the type it is stored in, so the normwise relative
  // error is kappa * u for the unit roundoff u of the narrowest type on the path, with a network
  // factor kappa that depends on the model and data, not on u. The f32 run measures kappa (its
  // only roundings are f32); a policy computing in a type with unit roundoff u must then stay
  // within kappa * u, with a factor 4 for the extra roundings a mixed policy adds at casts (the
  // f32 path has none of those) and for kappa's own spread.
  std::string worst;
  const auto [loss32, g32] = run_policy<precision::f32_true>(cfg, ids, targets);
  const double e32 = worst_relative_error(g32, g64, worst);
  const double kappa = std::max(e32 / 0x1p-24, 8.0);
  INFO("f32: worst relative gradient error " << e32 << " (" << worst << "), kappa " << kappa);
  CHECK(e32 <= 512 * 0x1p-24);  // the f32 model itself: kappa far below the reduction lengths
  CHECK(std::abs(loss32 - loss64) <= kappa * 0x1p-24 * std::abs(loss64));
  auto check_policy = [&](const char* name, double u, double loss, const auto& g) {
    std::string w;
    const double e = worst_relative_error(g, g64, w);
    INFO(name << ": worst relative gradient error " << e << " (" << w << "), bound " << 4 * kappa * u);
    CHECK(e <= 4 * kappa * u);
    CHECK(std::abs(loss - loss64) <= 4 * kappa * u * std::abs(loss64));
  };
  {
    const auto [l, g] = run_policy<precision::bf16_mixed>(cfg, ids, targets);
    check_policy("bf16-mixed", 0x1p-8, l, g);
  }
  {
    const auto [l, g] = run_policy<precision::f16_mixed>(cfg, ids, targets);
    check_policy("16-mixed", 0x1p-11, l, g);
  }
  {
    const auto [l, g] = run_policy<precision::bf16_true>(cfg, ids, targets);
    check_policy("bf16-true", 0x1p-8, l, g);
  }
  {
    const auto [l, g] = run_policy<precision::f16_true>(cfg, ids, targets);
    check_policy("16-true", 0x1p-11, l, g);
  }
}

TEST_CASE("Gpt rejects ids longer than its context and a bad shape", "[nn][gpt][errors]") {
  ParameterStore store;
  CHECK_THROWS_WITH((Gpt<precision::f32_true>(store, {.vocab = 8, .ctx = 4, .dim = 6, .layers = 1, .heads = 4})),
                    Catch::Contains("dim divisible by heads, got vocab 8, ctx 4, dim 6, layers 1, heads 4"));
  ParameterStore s2;
  Gpt<precision::f32_true> gpt(s2, {.vocab = 8, .ctx = 4, .dim = 8, .layers = 1, .heads = 2});
  s2.allocate(host());
  initialize(host(), s2);
  ag::Tape tape(host());
  const auto ids = random_ids(2, 5, 8);
  CHECK_THROWS_WITH(gpt.loss(tape, ids, ids), Catch::Contains("expected ids (B, T) with 1 <= T <= 4, got (2, 5)"));
}
