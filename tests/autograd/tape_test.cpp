// Tape semantics: assign-then-accumulate, parameter sinks across micro-batches, gradient-ready
// hooks, saved-tensor versions, no-grad scope, arena reuse and the errors of misuse.
#include "autograd_test_util.hpp"

using namespace mixtape;
using namespace mixtape::autograd;

namespace {
const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host();
  return ctx;
}
}  // namespace

TEST_CASE("a value used twice accumulates; the first write assigns", "[autograd][tape]") {
  Tape tape(host());
  auto xt = atest::random_tensor<double>(host(), {3, 4});
  auto x = leaf(tape, xt);
  auto y = add(tape, mul(tape, x, x), x);  // dy/dx = 2x + 1
  backward(tape, sum(tape, y));
  const auto g = grad(tape, x);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) CHECK(g.at({i, j}) == 2 * xt.at({i, j}) + 1);
  CHECK(tape.node_count() == 3);  // mul, add, sum
}

TEST_CASE("parameter gradients go to the sink and accumulate across micro-batches", "[autograd][tape]") {
  auto w = atest::random_tensor<double>(host(), {5});
  auto gbuf = Tensor<double>::empty(host(), {5});
  kernels::fill(host(), gbuf, 12345.0);  // stale contents: the first write must not read them
  GradSink sink{gbuf, false, {}};
  int ready = 0;
  sink.on_ready = [&] { ++ready; };
  Tape tape(host());
  for (int micro = 0; micro < 3; ++micro) {
    auto p = parameter(tape, w, sink);
    auto x = constant(atest::random_tensor<double>(host(), {5}));
    auto l = sum(tape, add(tape, mul(tape, p, x), p));  // uses p twice: dl/dp = x + 1
    backward(tape, l);
    CHECK(ready == micro + 1);  // once per backward, after the last use
    tape.clear();
  }
  // Three micro-batches of (x + 1): the sum of the three x plus 3.
  for (int i = 0; i < 5; ++i) CHECK(std::abs(gbuf.at({i})) < 3 * 2 + 3 + 1e-12);
  sink.has_data = false;  // the optimizer's zero_grad: no memset, the next write assigns
  auto p = parameter(tape, w, sink);
  backward(tape, sum(tape, p));
  for (int i = 0; i < 5; ++i) CHECK(gbuf.at({i}) == 1.0);
}

TEST_CASE("a saved tensor modified in place is caught at backward", "[autograd][tape]") {
  Tape tape(host());
  auto a = leaf(tape, atest::random_tensor<double>(host(), {4}));
  auto b = leaf(tape, atest::random_tensor<double>(host(), {4}));
  auto l = sum(tape, mul(tape, a, b));
  b.value().storage()->bump_version();  // what an in-place op does
  CHECK_THROWS_AS(backward(tape, l), ValueError);
  tape.clear();
  auto l2 = sum(tape, mul(tape, leaf(tape, a.value()), constant(b.value())));
  CHECK_NOTHROW(backward(tape, l2));
}

TEST_CASE("no-grad scope records nothing; values still compute", "[autograd][tape]") {
  Tape tape(host());
  auto x = leaf(tape, atest::random_tensor<double>(host(), {3}));
  {
    NoGradGuard guard(tape);
    auto y = mul(tape, x, x);
    CHECK_FALSE(y.requires_grad());
    CHECK(tape.node_count() == 0);
    CHECK(y.value().at({1}) == x.value().at({1}) * x.value().at({1}));
  }
  CHECK(tape.recording());
  CHECK(mul(tape, x, x).requires_grad());
}

TEST_CASE("recording the same step again reuses the arena", "[autograd][tape]") {
  Tape tape(host());
  auto xt = atest::random_tensor<float>(host(), {8});
  auto step = [&] {
    auto x = leaf(tape, xt);
    Var<float> y = x;
    for (int i = 0; i < 200; ++i) y = add(tape, y, x);
    backward(tape, sum(tape, y));
    const auto g = grad(tape, x);
    CHECK(g.at({0}) == 201.0f);
    tape.clear();
  };
  step();
  const auto capacity = tape.arena().capacity();
  step();
  CHECK(tape.arena().capacity() == capacity);
}

TEST_CASE("misuse gives clear errors", "[autograd][tape]") {
  Tape tape(host());
  auto a = leaf(tape, atest::random_tensor<double>(host(), {2, 3}));
  auto b = leaf(tape, atest::random_tensor<double>(host(), {3, 2}));
  CHECK_THROWS_WITH(add(tape, a, b), Catch::Contains("shapes must match, expected (2, 3), got (3, 2)"));
  CHECK_THROWS_WITH(backward(tape, a), Catch::Contains("expected a one-element loss, got shape (2, 3)"));
  auto l = sum(tape, a);
  backward(tape, l);
  CHECK_THROWS_WITH(backward(tape, l), Catch::Contains("already ran on this recording"));
  CHECK_THROWS_WITH(grad(tape, b), Catch::Contains("no gradient reached this value"));
  auto c = constant(atest::random_tensor<double>(host(), {1}));
  tape.clear();
  CHECK_THROWS_WITH(backward(tape, c), Catch::Contains("does not require grad"));
  CHECK_THROWS_AS(split_last(tape, a, 2), ShapeError);
  GradSink wrong{Tensor<double>::empty(host(), {4}), false, {}};
  CHECK_THROWS_AS(parameter(tape, a.value(), wrong), ShapeError);
}

TEST_CASE("a tied parameter used through two values fires its ready hook once, after both", "[autograd][tape]") {
  auto w = atest::random_tensor<double>(host(), {4});
  auto gbuf = Tensor<double>::empty(host(), {4});
  GradSink sink{gbuf, false, {}};
  int ready = 0;
  double seen = 0;
  sink.on_ready = [&] {
    ++ready;
    seen = gbuf.at({0});
  };
  Tape tape(host());
  auto a = parameter(tape, w, sink);  // e.g. the token-embedding lookup
  auto b = parameter(tape, w, sink);  // e.g. the tied LM head
  auto l = add(tape, sum(tape, scale(tape, a, 2.0)), sum(tape, scale(tape, b, 3.0)));
  backward(tape, l);
  CHECK(ready == 1);
  CHECK(seen == 5.0);  // both contributions were in when it fired
  CHECK(gbuf.at({3}) == 5.0);
}

TEST_CASE("backward frees saved tensors and intermediate gradients as it goes; retain_grad keeps one",
          "[autograd][tape]") {
  const auto& ctx = host();
  auto& counters = ctx.allocator().counters();
  auto xt = atest::random_tensor<double>(ctx, {64, 32});
  const std::int64_t before = counters.current(MemoryRole::activations);
  Tape tape(ctx);
  auto x = leaf(tape, xt);
  auto h = mul(tape, x, x);   // saves x twice (views), output h
  auto y = mul(tape, h, h);   // saves h, output y
  auto z = mul(tape, y, x);   // saves y and x
  retain_grad(tape, y);
  const auto l = sum(tape, z);
  const std::int64_t after_forward = counters.current(MemoryRole::activations);
  REQUIRE(after_forward > before);
  counters.reset_peaks();
  backward(tape, l);
  // Left: x's gradient (a leaf) and y's (retained), each one (64, 32) f64 tensor, and the values
  // still held by the Vars here (h, y, z, l); every intermediate gradient and saved-tensor node is gone.
  const std::int64_t one = 64 * 32 * static_cast<std::int64_t>(sizeof(double));
  CHECK(counters.current(MemoryRole::activations) - after_forward == 2 * one);
  // The peak while backward ran stays below forward + every gradient at once (4 of them + x's).
  CHECK(counters.peak(MemoryRole::activations) - after_forward <= 4 * one);
  // dl/dx = d(x^5)/dx = 5 x^4; dl/dy = x.
  const auto gx = grad(tape, x), gy = grad(tape, y);
  for (int i = 0; i < 64; i += 7)
    for (int j = 0; j < 32; j += 5) {
      const double v = xt.at({i, j});
      CHECK(gx.at({i, j}) == Approx(5 * v * v * v * v).epsilon(1e-14));
      CHECK(gy.at({i, j}) == v);
    }
  CHECK_THROWS_WITH(grad(tape, h), Catch::Contains("retain_grad(tape, value) before backward"));
  CHECK(tape.node_count() == 4);  // the nodes' slots in the arena stay until clear()
  tape.clear();
}

TEST_CASE("add and reshape hand their output's gradient to the first input instead of copying it",
          "[autograd][tape]") {
  const auto& ctx = host();
  auto& counters = ctx.allocator().counters();
  auto xt = atest::random_tensor<double>(ctx, {64, 32});
  auto ct = atest::random_tensor<double>(ctx, {64, 32});
  const std::int64_t one = 64 * 32 * static_cast<std::int64_t>(sizeof(double));
  for (const bool retain : {false, true}) {
    INFO("retain_grad on the sum: " << retain);
    Tape tape(ctx);
    auto x = leaf(tape, xt);
    // y = x + c x: add hands y's gradient to x, then mul's backward accumulates c * it into x in place.
    auto y = add(tape, x, mul(tape, x, constant(ct)));
    const auto l = sum(tape, reshape(tape, y, Shape{32, 64}));  // reshape hands its gradient on too
    if (retain) retain_grad(tape, y);
    counters.reset_peaks();
    const std::int64_t start = counters.current(MemoryRole::activations);
    backward(tape, l);
    // Passed on, the buffers are the reshape's output gradient (which becomes y's, then x's) and
    // mul's output gradient: 2 at once. Copied, y's gradient, x's and mul's output's would be live
    // together: 3. Retained, y's gradient must stay y's, so x gets a copy.
    const std::int64_t grown = counters.peak(MemoryRole::activations) - start;
    if (retain) {
      CHECK(grown >= 3 * one);
    } else {
      CHECK(grown >= 2 * one);
      CHECK(grown < 3 * one);
    }
    // dl/dx = 1 + c; a retained dl/dy stays 1 after x's accumulation.
    const auto gx = grad(tape, x);
    for (int i = 0; i < 64; i += 5)
      for (int j = 0; j < 32; j += 3) {
        CHECK(gx.at({i, j}) == 1 + ct.at({i, j}));
        if (retain) CHECK(grad(tape, y).at({i, j}) == 1.0);
      }
  }
}
