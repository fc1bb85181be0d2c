// linear_cross_entropy against the unfused linear + cross_entropy and against exact values computed
// in double from the same (quantised) inputs, for f64, f32 and bf16, several chunk sizes and loss
// seeds; a tied table getting both of its gradient contributions; no-grad mode; memory; errors.
#include "autograd_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "mixtape/autograd/ops_linear_cross_entropy.hpp"

using namespace mixtape;
using namespace mixtape::autograd;

namespace {
const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host();
  return ctx;
}

Tensor<std::int32_t> random_ids(std::int64_t n, std::int32_t v) {
  auto t = Tensor<std::int32_t>::empty(host(), {n});
  std::uniform_int_distribution<std::int32_t> u(0, v - 1);
  for (std::int64_t i = 0; i < n; ++i) t.data()[i] = u(atest::rng());
  return t;
}

template <class T>
std::vector<double> widen(const Tensor<T>& t) {
  std::vector<double> out;
  for (const T& x : to_vector(host(), t)) out.push_back(static_cast<double>(x));
  return out;
}

template <class T>
constexpr double unit_roundoff() {
  return static_cast<double>(std::numeric_limits<T>::epsilon()) / 2;
}

struct Run {
  double loss = 0;
  std::vector<double> gh, gw;
};

/// Loss and the gradients of h and w under `seed`: fused with `chunk` rows (0: the default), or the
/// unfused linear + cross_entropy when `fused` is false.
template <class T>
Run run(const Tensor<T>& h, const Tensor<T>& w, const Tensor<std::int32_t>& targets, double seed, bool fused,
        std::int64_t chunk = 0) {
  using L = kernels::compute_t<T>;
  Tape tape(host());
  const auto hv = leaf(tape, h), wv = leaf(tape, w);
  const auto loss = fused ? linear_cross_entropy(tape, hv, wv, targets, {.chunk_rows = chunk})
                          : cross_entropy(tape, linear(tape, hv, wv), targets);
  auto s = Tensor<L>::empty(host(), {1});
  s.data()[0] = static_cast<L>(seed);
  tape.backward(loss.slot(), s);
  return {static_cast<double>(loss.value().data()[0]), widen(grad(tape, hv)), widen(grad(tape, wv))};
}

/// Exact loss and gradients from the T values of h and w, with bounds on any computation that
/// rounds where both paths round. First-order error terms (u: unit roundoffs; u_T of the compute
/// type T, u_A of the accumulate type A, u_G of a gradient's type; g_k = k u_A / (1 - k u_A)):
///  - logits: an A sum of C products, rounded to T: dz_n = max_v (u_T |z| + g_C sum_k |h_k w_vk|);
///  - the row's lse and each p = exp(z - lse): perturbed by the logits (2 dz_n), the sum of V
///    exponentials (g_V) and A roundings of z, lse and their difference, so a relative error of
///    e_n = 2 dz_n + g_V + 4 u_A (1 + max_v |z_v| + |lse|) in p and an absolute one in the loss;
///  - d = p - onehot in T (the unfused path also scales it in A): (u_T + u_A) |d| + e_n p;
///  - dh = s sum_v d_v w_vc (s = seed / N) by a GEMM in A (g_V), then scaled in A and rounded to
///    u_G: s ((u_T + u_A + g_V) sum |d||w| + sum e_n p |w|) + (u_A + u_G) |dh|; dw likewise over
///    the N rows (g_N: chunking reorders the sum, the bound holds for any order);
///  - the loss: the mean of (e_n + u_A |loss_n|) plus its rounding to A.
/// The bounds are doubled for second-order terms; each path is within them, so the two paths are
/// within twice them of each other.
struct Exact {
  double loss = 0, loss_bound = 0;
  std::vector<double> gh, gh_bound, gw, gw_bound;
};

template <class T>
Exact exact(const Tensor<T>& h_, const Tensor<T>& w_, const Tensor<std::int32_t>& targets, double seed, double u_gh,
            double u_gw) {
  using A = kernels::compute_t<T>;
  const double ut = unit_roundoff<T>(), ua = unit_roundoff<A>();
  auto gamma = [&](double k) { return k * ua / (1 - k * ua); };
  const auto h = widen(h_), w = widen(w_);
  const std::int64_t n = h_.size(0), c = h_.size(1), v = w_.size(0);
  const double s = seed / static_cast<double>(n);
  Exact e;
  e.gh.assign(n * c, 0);
  e.gh_bound.assign(n * c, 0);
  e.gw.assign(v * c, 0);
  e.gw_bound.assign(v * c, 0);
  std::vector<double> z(v), p(v);
  for (std::int64_t r = 0; r < n; ++r) {
    const std::int64_t t = targets.data()[r];
    double dz = 0, zmax = -INFINITY, zabs_max = 0;
    for (std::int64_t j = 0; j < v; ++j) {
      double acc = 0, mag = 0;
      for (std::int64_t k = 0; k < c; ++k) {
        acc += h[r * c + k] * w[j * c + k];
        mag += std::abs(h[r * c + k] * w[j * c + k]);
      }
      z[j] = acc;
      dz = std::max(dz, ut * std::abs(acc) + gamma(static_cast<double>(c)) * mag);
      zmax = std::max(zmax, acc);
      zabs_max = std::max(zabs_max, std::abs(acc));
    }
    double sum = 0;
    for (std::int64_t j = 0; j < v; ++j) sum += std::exp(z[j] - zmax);
    const double lse = zmax + std::log(sum);
    const double en = 2 * dz + gamma(static_cast<double>(v)) + 4 * ua * (1 + zabs_max + std::abs(lse));
    const double loss_n = lse - z[t];
    e.loss += loss_n / static_cast<double>(n);
    e.loss_bound += (en + ua * std::abs(loss_n)) / static_cast<double>(n);
    for (std::int64_t j = 0; j < v; ++j) p[j] = std::exp(z[j] - lse);
    for (std::int64_t j = 0; j < v; ++j) {
      const double d = p[j] - (j == t ? 1.0 : 0.0);
      const double dd = (ut + ua) * std::abs(d) + en * p[j];  // the error of d, before the GEMMs' own
      for (std::int64_t k = 0; k < c; ++k) {
        e.gh[r * c + k] += s * d * w[j * c + k];
        e.gh_bound[r * c + k] += s * ((gamma(static_cast<double>(v)) * std::abs(d) + dd) * std::abs(w[j * c + k]));
        e.gw[j * c + k] += s * d * h[r * c + k];
        e.gw_bound[j * c + k] += s * ((gamma(static_cast<double>(n)) * std::abs(d) + dd) * std::abs(h[r * c + k]));
      }
    }
  }
  for (std::size_t i = 0; i < e.gh.size(); ++i) e.gh_bound[i] = 2 * (e.gh_bound[i] + (ua + u_gh) * std::abs(e.gh[i]));
  for (std::size_t i = 0; i < e.gw.size(); ++i) e.gw_bound[i] = 2 * (e.gw_bound[i] + (ua + u_gw) * std::abs(e.gw[i]));
  e.loss_bound = 2 * (e.loss_bound + ua * std::abs(e.loss));
  return e;
}

/// Every |x - ref| <= scale * bound, reporting the worst element.
void require_within(const char* what, const std::vector<double>& x, const std::vector<double>& ref,
                    const std::vector<double>& bound, double scale) {
  REQUIRE(x.size() == ref.size());
  std::size_t worst = 0;
  double worst_ratio = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double ratio = std::abs(x[i] - ref[i]) / (scale * bound[i]);
    if (!(ratio <= worst_ratio)) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  INFO(what << ": worst at " << worst << ": " << x[worst] << " vs " << ref[worst] << ", bound " << scale * bound[worst]);
  CHECK(worst_ratio <= 1);
}
}  // namespace

TEMPLATE_TEST_CASE("linear_cross_entropy: loss and gradients match the unfused path and the exact values",
                   "[autograd][linear_cross_entropy]", double, float, bf16) {
  using T = TestType;
  const std::int64_t n = 24, c = 16, v = 37;
  const auto h = atest::random_tensor<T>(host(), {n, c}, -1, 1);
  const auto w = atest::random_tensor<T>(host(), {v, c}, -1, 1);
  const auto targets = random_ids(n, static_cast<std::int32_t>(v));
  const double seed = GENERATE(1.0, 65536.0, 0.5);  // plain, a loss scale, a micro-batch's share
  const Exact ref = exact(h, w, targets, seed, unit_roundoff<T>(), unit_roundoff<T>());
  const Run unfused = run(h, w, targets, seed, false);
  for (std::int64_t chunk : {1, 5, 7, 8, 24, 100, 0}) {  // dividing N or not, N, more than N, default
    INFO("seed " << seed << ", chunk_rows " << chunk);
    const Run fused = run(h, w, targets, seed, true, chunk);
    CHECK(std::abs(fused.loss - ref.loss) <= ref.loss_bound);
    CHECK(std::abs(fused.loss - unfused.loss) <= 2 * ref.loss_bound);
    require_within("dh vs exact", fused.gh, ref.gh, ref.gh_bound, 1);
    require_within("dw vs exact", fused.gw, ref.gw, ref.gw_bound, 1);
    require_within("dh vs unfused", fused.gh, unfused.gh, ref.gh_bound, 2);
    require_within("dw vs unfused", fused.gw, unfused.gw, ref.gw_bound, 2);
  }
  // The reference path itself is within the same bounds (so they are not vacuous for it).
  CHECK(std::abs(unfused.loss - ref.loss) <= ref.loss_bound);
  require_within("unfused dh vs exact", unfused.gh, ref.gh, ref.gh_bound, 1);
  require_within("unfused dw vs exact", unfused.gw, ref.gw, ref.gw_bound, 1);
}

TEMPLATE_TEST_CASE("linear_cross_entropy: one chunk, N and the seed powers of two: the unfused path's bits",
                   "[autograd][linear_cross_entropy]", double, float, bf16) {
  // (p - onehot) rounded to T and then scaled exactly by seed / N equals the unfused path's
  // rounded seed (p - onehot) / N, and the GEMMs are the same calls: identical results.
  using T = TestType;
  const std::int64_t n = 32, c = 24, v = 29;
  const auto h = atest::random_tensor<T>(host(), {n, c}, -1, 1);
  const auto w = atest::random_tensor<T>(host(), {v, c}, -1, 1);
  const auto targets = random_ids(n, static_cast<std::int32_t>(v));
  const double seed = GENERATE(1.0, 65536.0, 0.5);
  const Run unfused = run(h, w, targets, seed, false);
  const Run fused = run(h, w, targets, seed, true, GENERATE(0, 32, 1000));
  CHECK(fused.loss == unfused.loss);
  CHECK(fused.gh == unfused.gh);
  CHECK(fused.gw == unfused.gw);
}

TEST_CASE("linear_cross_entropy: only h or only the weight requiring a gradient", "[autograd][linear_cross_entropy]") {
  const std::int64_t n = 10, c = 6, v = 9;
  const auto h = atest::random_tensor<double>(host(), {n, c}, -1, 1);
  const auto w = atest::random_tensor<double>(host(), {v, c}, -1, 1);
  const auto targets = random_ids(n, static_cast<std::int32_t>(v));
  const Exact ref = exact(h, w, targets, 1.0, unit_roundoff<double>(), unit_roundoff<double>());
  for (bool h_grad : {true, false}) {
    Tape tape(host());
    const auto hv = leaf(tape, h, h_grad), wv = leaf(tape, w, !h_grad);
    const auto loss = linear_cross_entropy(tape, hv, wv, targets, {.chunk_rows = 3});
    autograd::backward(tape, loss);
    if (h_grad) {
      require_within("dh", widen(grad(tape, hv)), ref.gh, ref.gh_bound, 1);
    } else {
      require_within("dw", widen(grad(tape, wv)), ref.gw, ref.gw_bound, 1);
    }
  }
}

namespace {
/// Gradient of a tied table: the head's contribution (through `head_w`, in TH) plus the embedding's
/// (rows of the head input's gradient added at their ids), into one f32 or f64 sink.
template <class TH, class S>
std::vector<double> tied_grad(const Tensor<S>& table, const Tensor<TH>& head_w, const Tensor<std::int32_t>& ids,
                              const Tensor<std::int32_t>& targets, bool fused) {
  Tape tape(host());
  GradSink sink;
  sink.grad = Tensor<S>::empty(host(), table.shape());
  const auto x = embedding<S>(tape, ids, parameter(tape, table, sink));  // (N, C)
  Var<TH> h;
  if constexpr (std::same_as<TH, S>) {
    h = x;
  } else {
    h = cast<TH>(tape, x);
  }
  const auto wv = parameter(tape, head_w, sink);
  const auto loss = fused ? linear_cross_entropy(tape, h, wv, targets, {.chunk_rows = 5})
                          : cross_entropy(tape, linear(tape, h, wv), targets);
  autograd::backward(tape, loss);
  return widen(sink.grad.as<S>());
}
}  // namespace

TEMPLATE_TEST_CASE("linear_cross_entropy: a tied table receives both contributions", "[autograd][linear_cross_entropy]",
                   double, bf16) {
  // f64: one f64 table read by both uses. bf16: the bf16-mixed GPT's layout, an f32 table read by
  // the embedding and its bf16 compute copy read by the head, both into one f32 gradient.
  using T = TestType;
  using S = kernels::compute_t<T>;
  const std::int64_t n = 17, c = 8, v = 11;
  const auto table = atest::random_tensor<S>(host(), {v, c}, -1, 1);
  auto head_w = Tensor<T>::empty(host(), {v, c});
  kernels::convert(host(), table, head_w);
  const auto ids = random_ids(n, static_cast<std::int32_t>(v)), targets = random_ids(n, static_cast<std::int32_t>(v));
  auto h = Tensor<T>::empty(host(), {n, c});  // the head's input: the table's rows in T
  kernels::embedding_forward(host(), ids, head_w, h);
  // h's gradient is rounded to T (its slot), then added in S; the head's lands in S directly.
  const Exact ref = exact(h, head_w, targets, 1.0, unit_roundoff<T>(), unit_roundoff<S>());
  std::vector<double> expected = ref.gw, bound = ref.gw_bound;
  std::vector<double> magnitude(ref.gw.size());
  std::vector<int> adds(ref.gw.size(), 0);
  for (std::size_t i = 0; i < ref.gw.size(); ++i) magnitude[i] = std::abs(ref.gw[i]);
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t k = 0; k < c; ++k) {
      const std::size_t i = static_cast<std::size_t>(ids.data()[r] * c + k);
      expected[i] += ref.gh[r * c + k];
      bound[i] += ref.gh_bound[r * c + k];
      magnitude[i] += std::abs(ref.gh[r * c + k]);
      ++adds[i];
    }
  }
  // The embedding's additions in S: at most one rounding per added row (doubled as above).
  for (std::size_t i = 0; i < bound.size(); ++i) bound[i] += 2 * adds[i] * unit_roundoff<S>() * magnitude[i];
  const auto fused = tied_grad(table, head_w, ids, targets, true);
  const auto unfused = tied_grad(table, head_w, ids, targets, false);
  require_within("tied vs exact", fused, expected, bound, 1);
  require_within("tied vs unfused", fused, unfused, bound, 2);
}

TEST_CASE("linear_cross_entropy: no-grad mode computes the loss and saves nothing", "[autograd][linear_cross_entropy]") {
  const std::int64_t n = 13, c = 5, v = 7, chunk = 4;
  const auto h = atest::random_tensor<float>(host(), {n, c}, -1, 1);
  const auto w = atest::random_tensor<float>(host(), {v, c}, -1, 1);
  const auto targets = random_ids(n, static_cast<std::int32_t>(v));
  auto ctx = ExecutionContext::host();  // its own counters
  auto& counters = ctx.allocator().counters();
  const auto act = MemoryRole::activations, ws = MemoryRole::workspace;
  // Host tensors: ctx counts only what the op allocates.
  const auto &hc = h, &wc = w;
  const auto &tc = targets;
  // Workspace: one chunk of logits and the per-row losses and lse, with a gradient or without.
  const std::int64_t chunk_bytes = chunk * v * 4, rows_bytes = 2 * n * 4;
  float with_grad = 0;
  {
    Tape tape(ctx);
    const auto a0 = counters.current(act);
    counters.reset_peaks();
    const auto loss = linear_cross_entropy(tape, leaf(tape, hc), leaf(tape, wc), tc, {.chunk_rows = chunk});
    CHECK(tape.node_count() == 1);
    CHECK(counters.current(act) - a0 == 4 + (n * c + v * c) * 4);  // the loss, dH and dW
    CHECK(counters.peak(ws) - counters.current(ws) == chunk_bytes + rows_bytes);
    with_grad = loss.value().data()[0];
  }
  {
    Tape tape(ctx);
    NoGradGuard guard(tape);
    const auto a0 = counters.current(act);
    counters.reset_peaks();
    const auto loss = linear_cross_entropy(tape, leaf(tape, hc), leaf(tape, wc), tc, {.chunk_rows = chunk});
    CHECK_FALSE(loss.requires_grad());
    CHECK(tape.node_count() == 0);
    CHECK(counters.current(act) - a0 == 4);  // the loss only
    CHECK(counters.peak(ws) - counters.current(ws) == chunk_bytes + rows_bytes);
    CHECK(loss.value().data()[0] == with_grad);
  }
  {
    Tape tape(ctx);  // recording, but nothing requires a gradient
    const auto loss = linear_cross_entropy(tape, constant(hc), constant(wc), tc, {.chunk_rows = chunk});
    CHECK_FALSE(loss.requires_grad());
    CHECK(tape.node_count() == 0);
    CHECK(loss.value().data()[0] == with_grad);
  }
}

TEST_CASE("linear_cross_entropy: the default chunk is 2048 rows, even chunks under the memory cap",
          "[autograd][linear_cross_entropy]") {
  using mixtape::autograd::detail::linear_cross_entropy_chunk;
  // GPT-2 small's head, batch 16 x 1024: bf16 logits take 2048-row chunks (197 MiB), f32 would take
  // 2048 rows of 403 MiB, so the 256 MiB cap (1334 rows) spreads over 13 even chunks of 1264.
  CHECK(linear_cross_entropy_chunk(0, 16384, 50304, 2) == 2048);
  CHECK(linear_cross_entropy_chunk(0, 16384, 50304, 4) == 1264);
  CHECK(std::int64_t{1264} * 50304 * 4 <= mixtape::autograd::kLinearCrossEntropyChunkBytes);
  CHECK(linear_cross_entropy_chunk(0, 3000, 256, 2) == 1504);  // two even chunks, rounded up to 8 rows
  // 2668 f32 rows: two chunks of 1334 would round up to 1336, past the 1334-row cap; 1328 stays under.
  CHECK(linear_cross_entropy_chunk(0, 2668, 50304, 4) == 1328);
  CHECK(linear_cross_entropy_chunk(0, 2048, 256, 2) == 2048);  // the small GPT: one chunk
  CHECK(linear_cross_entropy_chunk(0, 5, 256, 4) == 5);
  CHECK(linear_cross_entropy_chunk(0, 100, std::int64_t{1} << 30, 4) == 1);  // a row over the cap: one at a time
  CHECK(linear_cross_entropy_chunk(7, 100, 50304, 2) == 7);  // a request is taken as it is, up to N
  CHECK(linear_cross_entropy_chunk(700, 100, 50304, 2) == 100);
}

TEST_CASE("linear_cross_entropy: bad shapes, chunk sizes and targets throw", "[autograd][linear_cross_entropy][errors]") {
  Tape tape(host());
  const std::int64_t n = 12, c = 4, v = 6;
  const auto h = leaf(tape, atest::random_tensor<float>(host(), {n, c}));
  const auto w = leaf(tape, atest::random_tensor<float>(host(), {v, c}));
  const auto targets = random_ids(n, static_cast<std::int32_t>(v));
  CHECK_THROWS_AS(linear_cross_entropy(tape, leaf(tape, atest::random_tensor<float>(host(), {n, c + 1})), w, targets),
                  ShapeError);
  CHECK_THROWS_WITH(linear_cross_entropy(tape, leaf(tape, atest::random_tensor<float>(host(), {2, n, c})), w, targets),
                    Catch::Contains("expected h (N, 4)"));
  CHECK_THROWS_WITH(linear_cross_entropy(tape, h, leaf(tape, atest::random_tensor<float>(host(), {v})), targets),
                    Catch::Contains("expected a weight (V, C)"));
  CHECK_THROWS_WITH(linear_cross_entropy(tape, h, w, random_ids(n - 1, static_cast<std::int32_t>(v))),
                    Catch::Contains("expected targets of shape (12), got (11)"));
  CHECK_THROWS_WITH(linear_cross_entropy(tape, h, w, targets, {.chunk_rows = -1}), Catch::Contains("chunk_rows >= 0"));
  auto bad = random_ids(n, static_cast<std::int32_t>(v));
  bad.data()[9] = static_cast<std::int32_t>(v);  // row 9 of the batch lies in the third chunk of 4
  CHECK_THROWS_WITH(linear_cross_entropy(tape, h, w, bad, {.chunk_rows = 4}),
                    Catch::Contains("target 6 at row 9 is out of range [0, 6)"));
  bad.data()[9] = -1;
  CHECK_THROWS_AS(linear_cross_entropy(tape, h, w, bad, {.chunk_rows = 4}), ValueError);
  CHECK(tape.node_count() == 0);  // nothing recorded by a failed call
}
