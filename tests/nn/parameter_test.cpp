// The parameter store: flat buffers per (role, dtype), views, the memory model checked to the byte
// against the allocator's counters, mixed policies, tying, frozen parameters, initialisation.
#include <catch2/catch.hpp>

#include <cstring>

#include "mixtape/nn/init.hpp"
#include "mixtape/nn/module.hpp"

using namespace mixtape;
using namespace mixtape::nn;

namespace {
// A two-matrix module of policy P, like a Linear without bias plus a gain vector.
template <PrecisionPolicy P>
struct Toy : Module {
  Parameter* w;
  Parameter* g;
  Toy(const ModuleScope& s, std::int64_t in, std::int64_t out) : Module(s) {
    w = &register_parameter("weight", spec_for<P>("", {out, in}, Init::normal(0.02), true, true));
    g = &register_parameter("gain", spec_for<P>("", {out}, Init::ones(), false, false));
  }
};
}  // namespace

TEST_CASE("the memory model of each preset matches the allocated bytes exactly", "[nn][parameters]") {
  auto check = [&]<class P>() {
    INFO(P::name);
    auto ctx = ExecutionContext::host();
    ParameterStore store;
    Toy<P> toy(ModuleScope{store, "toy"}, 64, 32);  // matrix of 2048 (compute copy), gain of 32 (none)
    store.allocate(ctx);
    using M = memory_model<P>;
    const auto& c = ctx.allocator().counters();
    const double matrix = 64 * 32, vec = 32;
    CHECK(c.current(MemoryRole::weights) == (matrix + vec) * M::weight + matrix * M::compute_copy);
    CHECK(c.current(MemoryRole::master) == (matrix + vec) * M::master);
    CHECK(c.current(MemoryRole::gradients) == (matrix + vec) * M::gradient);
    CHECK(c.current(MemoryRole::optimizer_state) == (matrix + vec) * M::adamw_state);
  };
  PresetRegistry<precision::lightning_presets>::for_each(check);
}

TEST_CASE("views are 16-byte aligned slices of one buffer per (role, dtype)", "[nn][parameters]") {
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  Toy<precision::bf16_true> body(ModuleScope{store, "body"}, 7, 3);  // odd sizes need padding
  Toy<precision::f32_true> head(ModuleScope{store, "head"}, 3, 5);
  store.allocate(ctx);
  CHECK(body.w->name() == "body.weight");
  CHECK(head.g->name() == "head.gain");
  CHECK(body.w->view(ParamRole::weight).dtype() == DType::bf16);
  CHECK(head.w->view(ParamRole::weight).dtype() == DType::f32);
  CHECK(body.w->view(ParamRole::weight).aliases(body.g->view(ParamRole::weight)));  // one bf16 weight buffer
  CHECK_FALSE(body.w->view(ParamRole::weight).aliases(head.w->view(ParamRole::weight)));
  for (std::size_t i = 0; i < store.size(); ++i) {
    for (int r = 0; r < kParamRoleCount; ++r) {
      if (!store[i].has(static_cast<ParamRole>(r))) continue;
      const auto& v = store[i].view(static_cast<ParamRole>(r));
      CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % 16 == 0);
      CHECK(v.shape() == store[i].shape());
    }
  }
  CHECK_FALSE(body.w->has(ParamRole::compute));  // bf16 GEMMs read the bf16 weight itself
  CHECK(&store.at("head.weight") == head.w);
  CHECK(store.numel() == 7 * 3 + 3 + 3 * 5 + 5);
}

TEST_CASE("a tied parameter is one object with one gradient", "[nn][parameters]") {
  struct Tied : Module {
    Toy<precision::bf16_mixed> a;
    Parameter* shared;
    Tied(const ModuleScope& s) : Module(s), a(scope("a"), 4, 4) {
      register_child(a);
      register_tied("lm_head.weight", *a.w);
      shared = a.w;
    }
  };
  ParameterStore store;
  Tied t(ModuleScope{store, ""});
  std::vector<std::string> names;
  t.for_each_parameter([&](const std::string& n, Parameter&) { names.push_back(n); });
  CHECK(names == std::vector<std::string>{"lm_head.weight", "a.weight", "a.gain"});
  CHECK(t.parameter_count() == 16 + 4);
  CHECK(store.size() == 2);
}

TEST_CASE("frozen parameters have no gradient or optimizer state", "[nn][parameters]") {
  using Frozen = Policy<bf16, bf16, none_t, none_t>;
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  Toy<Frozen> toy(ModuleScope{store, "frozen"}, 8, 8);
  store.allocate(ctx);
  CHECK(toy.w->frozen());
  CHECK_FALSE(toy.w->has(ParamRole::grad));
  CHECK_FALSE(toy.w->has(ParamRole::moment1));
  CHECK_THROWS_WITH(toy.w->sink(), Catch::Contains("is frozen"));
  CHECK_THROWS_WITH(toy.w->view(ParamRole::grad), Catch::Contains("its policy has none"));
  CHECK(ctx.allocator().counters().current(MemoryRole::gradients) == 0);
}

TEST_CASE("initialisation: one f32 draw per parameter, rounded into each policy's formats", "[nn][init]") {
  auto build = [&]<class P>(ExecutionContext& ctx, ParameterStore& store) {
    auto toy = std::make_unique<Toy<P>>(ModuleScope{store, "toy"}, 16, 8);
    store.allocate(ctx);
    initialize(ctx, store);
    return toy;
  };
  ContextOptions o;
  o.seed = 77;
  auto c32 = ExecutionContext::host(o);
  auto cbf = ExecutionContext::host(o);
  ParameterStore s32, sbf, smixed;
  auto t32 = build.template operator()<precision::f32_true>(c32, s32);
  auto tbf = build.template operator()<precision::bf16_true>(cbf, sbf);
  auto cmx = ExecutionContext::host(o);
  auto tmx = build.template operator()<precision::bf16_mixed>(cmx, smixed);
  const auto w32 = t32->w->view(ParamRole::weight).as<float>();
  const auto wbf = tbf->w->view(ParamRole::weight).as<bf16>();
  const auto copy = tmx->w->view(ParamRole::compute).as<bf16>();
  double sum2 = 0;
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 16; ++j) {
      const float x = w32.at({i, j});
      sum2 += double(x) * x;
      CHECK(wbf.at({i, j}).bits() == bf16(x).bits());
      CHECK(copy.at({i, j}).bits() == bf16(x).bits());  // the compute copy is written from the weight
      CHECK(tmx->w->view(ParamRole::weight).as<float>().at({i, j}) == x);
    }
    CHECK(t32->g->view(ParamRole::weight).as<float>().at({i}) == 1.0f);
  }
  // N(0, 0.02): the sample variance of 128 draws is within 4 standard errors (sqrt(2/128) relative).
  CHECK(std::abs(sum2 / 128 / (0.02 * 0.02) - 1) < 4 * std::sqrt(2.0 / 128));
}

TEST_CASE("store misuse is refused with the name", "[nn][parameters]") {
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  store.add(spec_for<precision::f32_true>("a", {2}, Init::zeros(), false, false));
  CHECK_THROWS_WITH(store.add(spec_for<precision::f32_true>("a", {2}, Init::zeros(), false, false)),
                    Catch::Contains("'a' is already registered"));
  CHECK_THROWS_WITH(store.at("b"), Catch::Contains("no parameter named 'b'"));
  CHECK_THROWS_WITH(store[0].view(ParamRole::weight), Catch::Contains("allocate the store first"));
  store.allocate(ctx);
  CHECK_THROWS_AS(store.add(spec_for<precision::f32_true>("c", {2}, Init::zeros(), false, false)), ValueError);
  CHECK_THROWS_AS(store.allocate(ctx), ValueError);
}

TEST_CASE("flat buffers start zeroed, padding included", "[nn][parameters]") {
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  Toy<precision::bf16_mixed> toy(ModuleScope{store, "t"}, 5, 3);  // 15 + 3 elements: padded views
  for (int i = 0; i < 8; ++i) {  // leave dirty freed blocks of the sizes the store will ask for
    auto dirty = Tensor<std::uint8_t>::empty(ctx, {64 + 32 * i});
    std::memset(dirty.data(), 0xFF, static_cast<std::size_t>(dirty.nbytes()));
  }
  store.allocate(ctx);
  for (const auto& b : store.buffers()) {
    const auto* bytes = static_cast<const unsigned char*>(b.data.data());
    std::int64_t nonzero = 0;
    for (std::int64_t i = 0; i < b.data.nbytes(); ++i) nonzero += bytes[i] != 0;
    CHECK(nonzero == 0);
  }
}
