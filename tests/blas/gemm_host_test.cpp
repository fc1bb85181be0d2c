// Host GEMM against the plain long-double reference of blas_test_util.hpp, within the derived
// bounds: every operand / output dtype combination, every transpose combination, odd sizes that
// cross every blocking edge (MR 12 / 4, NR 32 / 16, MC 96 / 144, KC 192 / 256 / 512), padded leading
// dimensions, batches with a shared B, every epilogue with alpha and beta, amax; each instruction
// set the CPU has. Then the thread-count invariance, the tensor form and the typed errors.
#include "blas_test_util.hpp"

#include "mixtape/blas/gemm.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"

using namespace mixtape;
using btest::Case;
using btest::Problem;
using blas::Epilogue;
using blas::HostIsa;

namespace {

ExecutionContext& host(int threads = 2) {
  static std::vector<std::unique_ptr<ExecutionContext>> ctxs(9);
  auto& c = ctxs[static_cast<std::size_t>(threads)];
  if (!c) c = std::make_unique<ExecutionContext>(ExecutionContext::host(ContextOptions{threads}));
  return *c;
}

std::vector<HostIsa> isas() {
  std::vector<HostIsa> v{HostIsa::portable};
  if (blas::detail::host::cpu_has_avx2()) v.push_back(HostIsa::avx2);
  if (blas::detail::host::cpu_has_avx512()) v.push_back(HostIsa::avx512);
  if (blas::detail::host::cpu_has_avx512_bf16()) v.push_back(HostIsa::avx512_bf16);
  return v;
}

double run_and_check(const Case& c, std::mt19937_64& rng, int threads = 2) {
  Problem p(c, rng);
  blas::gemm(host(threads), p.host_desc());
  return btest::check(p, p, btest::host_tol(c.ab));
}

const std::vector<std::pair<DType, DType>> kCombos = {
    {DType::f64, DType::f64}, {DType::f64, DType::f32}, {DType::f64, DType::f16}, {DType::f64, DType::bf16},
    {DType::f32, DType::f32}, {DType::f32, DType::f16}, {DType::f32, DType::bf16}, {DType::f16, DType::f32},
    {DType::f16, DType::f16}, {DType::f16, DType::bf16}, {DType::bf16, DType::f32}, {DType::bf16, DType::f16},
    {DType::bf16, DType::bf16}};

}  // namespace

TEST_CASE("gemm host: every dtype and transpose combination against the reference", "[blas][host]") {
  const std::uint64_t seed = btest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const std::vector<std::array<std::int64_t, 3>> shapes = {{1, 1, 1}, {7, 33, 129}, {33, 7, 1}, {13, 129, 7}, {150, 100, 520},
                                                           {2, 300, 33}};
  double worst = 0;
  for (HostIsa isa : isas()) {
    for (const auto& [ab, cd] : kCombos) {
      for (const auto& s : shapes) {
        for (int t = 0; t < 4; ++t) {
          Case c;
          c.m = s[0];
          c.n = s[1];
          c.k = s[2];
          c.ab = ab;
          c.c = cd;
          c.ta = t & 1;
          c.tb = t & 2;
          c.isa = isa;
          worst = std::max(worst, run_and_check(c, rng));
        }
      }
    }
  }
  WARN("worst error / bound: " << worst);
}

TEST_CASE("gemm host: padded leading dimensions, batches, a shared B", "[blas][host]") {
  const std::uint64_t seed = btest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (HostIsa isa : isas()) {
    for (const auto& [ab, cd] : kCombos) {
      for (int t = 0; t < 4; ++t) {
        Case c;
        c.m = 29;
        c.n = 41;
        c.k = 67;
        c.batch = 3;
        c.pad = 5;
        c.ab = ab;
        c.c = cd;
        c.ta = t & 1;
        c.tb = t & 2;
        c.isa = isa;
        c.beta = 0.5;
        c.broadcast_b = t == 3;
        run_and_check(c, rng);
      }
    }
  }
}

TEST_CASE("gemm host: every epilogue with alpha, beta and amax", "[blas][host]") {
  const std::uint64_t seed = btest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  struct Types {
    DType ab, c, bias;
  };
  const std::vector<Types> types = {{DType::f32, DType::f32, DType::f32},   {DType::bf16, DType::bf16, DType::bf16},
                                    {DType::bf16, DType::f32, DType::f32},  {DType::f16, DType::f16, DType::f32},
                                    {DType::f64, DType::f64, DType::f64},   {DType::bf16, DType::bf16, DType::f32}};
  double worst = 0;
  for (HostIsa isa : isas()) {
    for (int e = 0; e < blas::kEpilogueCount; ++e) {
      for (const Types& ty : types) {
        for (int v = 0; v < 4; ++v) {
          Case c;
          c.epi = static_cast<Epilogue>(e);
          const bool bgrad = blas::epilogue_writes_bias_grad(c.epi);
          c.m = 37 + 150 * (v == 3);  // more than one MC block of rows for the bias-gradient partials
          c.n = 45;
          c.k = 70;
          c.batch = bgrad ? 1 : 2;
          c.pad = v % 2 ? 3 : 0;
          c.ab = ty.ab;
          c.c = ty.c;
          c.bias_t = ty.bias;
          c.bgrad_t = ty.bias;
          c.ta = v == 1 || v == 3;
          c.tb = v >= 2;
          c.alpha = v % 2 ? -0.75 : 1.0;
          c.beta = v >= 2 ? 0.5 : 0.0;
          c.amax = true;
          c.isa = isa;
          worst = std::max(worst, run_and_check(c, rng));
        }
      }
    }
  }
  WARN("worst error / bound: " << worst);
}

TEST_CASE("gemm host: k = 0 and empty outputs", "[blas][host]") {
  std::mt19937_64 rng(btest::fresh_seed());
  Case c;  // C = beta C + bias, then GELU
  c.m = 5;
  c.n = 9;
  c.k = 0;
  c.beta = 2;
  c.epi = Epilogue::bias_gelu_aux;
  c.amax = true;
  run_and_check(c, rng);
  c.epi = Epilogue::bgrad_b;  // sums over an empty k are 0
  c.amax = false;
  run_and_check(c, rng);
  c.m = 0;  // nothing to write, but the bias gradient of B over k still has n entries
  c.k = 4;
  run_and_check(c, rng);
}

TEST_CASE("gemm host: the same bits for every thread count", "[blas][host]") {
  std::mt19937_64 rng(btest::fresh_seed());
  for (HostIsa isa : isas()) {
    for (int variant = 0; variant < 3; ++variant) {
      Case c;
      c.m = 300;
      c.n = 200;
      c.k = 600;
      c.isa = isa;
      c.amax = true;
      if (variant == 0) {
        c.ab = c.c = c.bgrad_t = DType::bf16;
        c.epi = Epilogue::dgelu_bgrad;
        c.tb = true;
      } else if (variant == 1) {
        c.ab = DType::f32;
        c.c = DType::f32;
        c.epi = Epilogue::bias_gelu_aux;
        c.batch = 3;
        c.ta = true;
      } else {
        c.ab = c.c = c.bias_t = DType::f64;
        c.epi = Epilogue::bias;
        c.m = 7;  // fewer row blocks than threads: the columns are split
      }
      INFO(c.str());
      Problem ref(c, rng);
      blas::gemm(host(1), ref.host_desc());
      btest::check(ref, ref, btest::host_tol(c.ab));
      for (int threads : {2, 3, 5, 8}) {
        Problem p = ref;
        p.c = p.c0;
        if (p.aux.count()) p.aux = p.aux0;
        if (p.bgrad.count()) p.bgrad.fill(std::numeric_limits<double>::quiet_NaN());
        p.amax = -1;
        blas::gemm(host(threads), p.host_desc());
        INFO("threads " << threads);
        CHECK(p.c.bits_equal(ref.c));
        CHECK(p.aux.bits_equal(ref.aux));
        CHECK(p.bgrad.bits_equal(ref.bgrad));
        CHECK(std::memcmp(&p.amax, &ref.amax, 4) == 0);
      }
    }
  }
}

TEST_CASE("matmul: tensor views map to the descriptor", "[blas][host]") {
  auto& ctx = host();
  std::mt19937_64 rng(btest::fresh_seed());
  std::uniform_real_distribution<double> u(-1, 1);
  auto rand = [&]<class T>(Tensor<T> t) {
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = convert<T>(u(rng));
    return t;
  };
  // Linear: y = x W^T + b, W stored (out, in); W^T is a transposed view, read in place.
  auto x = rand(Tensor<bf16>::empty(ctx, {33, 24}));
  auto w = rand(Tensor<bf16>::empty(ctx, {40, 24}));
  auto b = rand(Tensor<float>::empty(ctx, {40}));
  auto y = Tensor<bf16>::empty(ctx, {33, 40});
  auto pre = Tensor<bf16>::empty(ctx, {33, 40});
  auto amax = Tensor<float>::empty(ctx, {1});
  blas::MatmulOptions o;
  o.epilogue = Epilogue::bias_gelu_aux;
  o.bias = b;
  o.aux = pre;
  o.amax = amax;
  blas::matmul(ctx, x, w.transposed(), y, o);
  // The same through the raw descriptor.
  blas::GemmDesc d;
  d.m = 33;
  d.n = 40;
  d.k = 24;
  d.a = {x.data(), DType::bf16, false, 24, 0, nullptr, blas::ScaleMode::none};
  d.b = {w.data(), DType::bf16, true, 24, 0, nullptr, blas::ScaleMode::none};
  auto y2 = Tensor<bf16>::empty(ctx, {33, 40});
  auto pre2 = Tensor<bf16>::empty(ctx, {33, 40});
  float amax2 = -1;
  d.c.data = y2.data();
  d.c.dtype = DType::bf16;
  d.c.ld = 40;
  d.c.amax = &amax2;
  d.epilogue.kind = Epilogue::bias_gelu_aux;
  d.epilogue.bias = b.data();
  d.epilogue.bias_dtype = DType::f32;
  d.epilogue.aux = pre2.data();
  d.epilogue.aux_ld = 40;
  blas::gemm(ctx, d);
  CHECK(std::memcmp(y.data(), y2.data(), 33 * 40 * 2) == 0);
  CHECK(std::memcmp(pre.data(), pre2.data(), 33 * 40 * 2) == 0);
  CHECK(amax.data()[0] == amax2);
  CHECK(y.storage()->version() == 1);

  // Attention-shaped batches: scores = q k^T with k^T a transposed view of (B*H, T, D).
  auto q = rand(Tensor<float>::empty(ctx, {6, 17, 8}));
  auto k = rand(Tensor<float>::empty(ctx, {6, 17, 8}));
  auto s = Tensor<float>::empty(ctx, {6, 17, 17});
  blas::MatmulOptions half;
  half.alpha = 0.5;
  blas::matmul(ctx, q, k.transposed(), s, half);
  for (int bh : {0, 5}) {
    for (int i : {0, 16}) {
      for (int j : {0, 9}) {
        double ref = 0;
        for (int e = 0; e < 8; ++e) ref += double(q.at({bh, i, e})) * double(k.at({bh, j, e}));
        CHECK(std::fabs(s.at({bh, i, j}) - 0.5 * ref) <= 1e-5);
      }
    }
  }
  // A rank-2 operand is shared by every batch item; a q/k/v split of a fused projection is a view.
  auto qkv = rand(Tensor<f16>::empty(ctx, {4, 5, 3 * 8}));
  auto parts = qkv.split_last(3);
  auto proj = rand(Tensor<f16>::empty(ctx, {8, 6}));
  auto out = Tensor<float>::empty(ctx, {4, 5, 6});
  blas::matmul(ctx, parts[1], proj, out);
  double ref = 0;
  for (int e = 0; e < 8; ++e) ref += double(static_cast<float>(parts[1].at({3, 4, e}))) * double(static_cast<float>(proj.at({e, 5})));
  CHECK(std::fabs(out.at({3, 4, 5}) - ref) <= 1e-5);
}

TEST_CASE("gemm: typed errors name what was expected and what came", "[blas][host][errors]") {
  auto& ctx = host();
  auto a = Tensor<float>::empty(ctx, {4, 6});
  auto b = Tensor<float>::empty(ctx, {7, 5});
  auto c = Tensor<float>::empty(ctx, {4, 5});
  auto expect_msg = [](auto&& f, const std::string& part) {
    try {
      f();
      FAIL("no exception; expected one containing: " << part);
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(e.message().find(part) != std::string::npos);
    }
  };
  // Mismatched inner dimension.
  CHECK_THROWS_AS(blas::matmul(ctx, a, b, c), ShapeError);
  expect_msg([&] { blas::matmul(ctx, a, b, c); }, "inner dimensions differ: A (4, 6) has k = 6, so B needs 6 rows, got B (7, 5)");
  // Wrong output shape.
  auto b2 = Tensor<float>::empty(ctx, {6, 5});
  CHECK_THROWS_AS(blas::matmul(ctx, a, b2, Tensor<float>::empty(ctx, {4, 6})), ShapeError);
  // Operand dtypes must agree.
  auto bb = Tensor<bf16>::empty(ctx, {6, 5});
  CHECK_THROWS_AS(blas::matmul(ctx, a, bb, c), DTypeError);
  expect_msg([&] { blas::matmul(ctx, a, bb, c); }, "A and B must have one dtype, expected B f32 (A's), got bf16");
  // An f64 output needs f64 operands.
  expect_msg([&] { blas::matmul(ctx, a, b2, Tensor<double>::empty(ctx, {4, 5})); }, "an f64 output needs f64 operands");
  // FP8 operands are refused by name.
  auto a8 = Tensor<e4m3>::empty(ctx, {4, 6});
  auto b8 = Tensor<e4m3>::empty(ctx, {6, 5});
  CHECK_THROWS_AS(blas::matmul(ctx, a8, b8, c), DTypeError);
  expect_msg([&] { blas::matmul(ctx, a8, b8, c); },
             "e4m3/e5m2 operands are not supported by this build's GEMM backends; supported: f64, f32, f16, bf16");
  // Integer operands.
  auto ai = Tensor<std::int8_t>::empty(ctx, {4, 6});
  expect_msg([&] { blas::matmul(ctx, ai, ai.transposed(), Tensor<float>::empty(ctx, {4, 4})); },
             "expected A of f64, f32, f16 or bf16, got i8");
  // Scale modes belong to FP8.
  blas::GemmDesc d;
  d.m = 4;
  d.n = 5;
  d.k = 6;
  d.a = {a.data(), DType::f32, false, 6, 0, nullptr, blas::ScaleMode::per_tensor};
  d.b = {b2.data(), DType::f32, false, 5, 0, nullptr, blas::ScaleMode::none};
  d.c.data = c.data();
  d.c.ld = 5;
  CHECK_THROWS_AS(blas::gemm(ctx, d), ValueError);
  expect_msg([&] { blas::gemm(ctx, d); }, "A has scale mode per_tensor");
  d.a.scale_mode = blas::ScaleMode::none;
  // Leading dimension too small.
  d.b.ld = 4;
  expect_msg([&] { blas::gemm(ctx, d); }, "B is stored as 6 x 5 row-major, so it needs a leading dimension >= 5, got 4");
  d.b.ld = 5;
  // Epilogue pointers: missing, superfluous, bias gradients of a batch.
  d.epilogue.kind = Epilogue::bias;
  CHECK_THROWS_AS(blas::gemm(ctx, d), ValueError);
  expect_msg([&] { blas::gemm(ctx, d); }, "epilogue bias needs a bias pointer (n = 5 elements), got null");
  d.epilogue.kind = Epilogue::none;
  d.epilogue.aux = c.data();
  expect_msg([&] { blas::gemm(ctx, d); }, "epilogue none uses no aux buffer, but an aux pointer was given");
  d.epilogue.aux = nullptr;
  d.epilogue.kind = Epilogue::bgrad_a;
  d.epilogue.bias_grad = c.data();
  d.batch = 2;
  d.c.batch_stride = 20;
  CHECK_THROWS_AS(blas::gemm(ctx, d), ShapeError);
  // Overlapping output batch items.
  d.epilogue = {};
  d.c.batch_stride = 10;
  expect_msg([&] { blas::gemm(ctx, d); }, "C batch items overlap: expected a batch stride >= 20");
  // A view with no unit stride is no GEMM operand.
  auto big = Tensor<float>::empty(ctx, {8, 12});
  auto strided = big.slice(0, 0, 4).reshape({4, 12}).slice(1, 0, 6);  // (4, 6) row-major window: fine
  blas::matmul(ctx, strided, b2, c);
  Layout l = Layout::contiguous(Shape{4, 6});
  l.strides = {12, 2};
  Tensor<float> every_other(big.storage(), l);
  CHECK_THROWS_AS(blas::matmul(ctx, every_other, b2, c), ShapeError);
  expect_msg([&] { blas::matmul(ctx, every_other, b2, c); }, "A is a (4, 6) view with strides (12, 2)");
  // C must be row-major.
  auto ct = Tensor<float>::empty(ctx, {5, 4}).transposed();
  expect_msg([&] { blas::matmul(ctx, a, b2, ct); }, "C must be row-major");
  // A tensor on another device (a wrapped pointer tagged cuda:0 is never touched).
  float fake[30];
  auto on_gpu = Tensor<float>::wrap(fake, {6, 5}, Device::cuda(0));
  CHECK_THROWS_AS(blas::matmul(ctx, a, on_gpu, c), DeviceError);
  expect_msg([&] { blas::matmul(ctx, a, on_gpu, c); }, "B must be on the context's device, expected cpu, got cuda:0");
  // The aux buffer holds C's dtype.
  blas::MatmulOptions o;
  o.epilogue = Epilogue::gelu_aux;
  o.aux = Tensor<bf16>::empty(ctx, {4, 5});
  expect_msg([&] { blas::matmul(ctx, a, b2, c, o); }, "aux holds pre-activations in C's dtype, expected f32, got bf16");
}
