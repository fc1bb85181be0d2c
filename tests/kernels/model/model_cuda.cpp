// GPU tests of the model kernels. This unit is compiled by the host compiler: its kernels:: calls
// are the host backend, and mcuda:: calls reach the CUDA backend instantiated in model_cuda_*.cu.
//  - bit for bit equal to the host: GELU, the bias / positional adds and gradients, LayerNorm's
//    dgamma / dbeta (same statistics in), the embedding gather and gradient, the MSE gradient;
//  - within the derived tolerances of model_reference.hpp: LayerNorm y / mean / rstd / dx, softmax,
//    cross-entropy, the MSE;
//  - deterministic (two runs, same bits): LayerNorm backward, embedding backward, bias gradient,
//    softmax, cross-entropy;
//  - sizes from one row to GPT-2 small (rows of C = 768, B T = 8192 positions, V = 50304);
//    misaligned dense views (the scalar paths) next to aligned ones (the 16-byte packs);
//  - out-of-range targets and ids: NaN rows and the status record; typed errors.
#include "model_reference.hpp"

#include <tuple>

#include "model_cuda_helpers.hpp"
#include "mixtape/core/transfer.hpp"
#include "mixtape/kernels/activation.hpp"
#include "mixtape/kernels/broadcast.hpp"
#include "mixtape/kernels/embedding.hpp"
#include "mixtape/kernels/layernorm.hpp"
#include "mixtape/kernels/loss.hpp"
#include "mixtape/kernels/softmax.hpp"

using namespace mixtape;
namespace k = mixtape::kernels;
using i32 = std::int32_t;
using i64 = std::int64_t;

namespace {

// Created on first use and never destroyed (no CUDA call during static destruction).
ExecutionContext& dev() {
  static auto* ctx = new ExecutionContext(ExecutionContext::cuda(0));
  return *ctx;
}
ExecutionContext& host() {
  static auto* ctx = new ExecutionContext(ExecutionContext::host());
  return *ctx;
}

/// A device copy of a host tensor; `misaligned` puts it one element into its storage (a dense
/// view whose rows are not 16-byte aligned: the kernels' scalar paths).
template <class T>
Tensor<T> up(const Tensor<T>& h, bool misaligned = false) {
  if (!misaligned) return to_device(dev(), h, Device::cuda(0));
  auto storage = Tensor<T>::empty(dev(), {h.numel() + 1});
  auto view = storage.slice(0, 1, h.numel()).reshape(h.shape());
  mixtape::copy(dev(), h, view);
  return view;
}
template <class T>
std::vector<T> down(const Tensor<T>& d) {
  return to_vector(dev(), d);
}
template <class T>
Tensor<T> dev_empty(const Shape& s, bool misaligned = false) {
  if (!misaligned) return Tensor<T>::empty(dev(), s);
  return Tensor<T>::empty(dev(), {s.numel() + 1}).slice(0, 1, s.numel()).reshape(s);
}
Tensor<i64> status_tensor() {
  auto s = Tensor<i64>::empty(dev(), {1});
  k::reset_index_status(dev(), s);
  return s;
}
Shape lead_of(const Shape& s) { return Shape(s.span().first(static_cast<std::size_t>(s.rank() - 1))); }

template <class I>
Tensor<I> random_ids(const Shape& s, std::int64_t vocab, std::mt19937_64& rng) {
  auto t = Tensor<I>::empty(host(), s);
  std::uniform_int_distribution<std::int64_t> d(0, vocab - 1);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<I>(d(rng));
  return t;
}
template <class I>
std::vector<std::int64_t> as_int64(const Tensor<I>& t) {
  return std::vector<std::int64_t>(t.data(), t.data() + t.numel());
}

// ------------------------------------------------------------------ GELU

template <class In, class Out>
void gelu_case(const Shape& s, std::mt19937_64& rng, bool misaligned) {
  INFO("gelu " << ktest::type_name<In>() << "->" << ktest::type_name<Out>() << " shape " << s << " misaligned " << misaligned);
  auto x = mref::random_tensor<In>(host(), s, rng, -6, 6);
  auto y = Tensor<Out>::empty(host(), s);
  k::gelu_forward(host(), x, y);
  auto yd = dev_empty<Out>(s, misaligned);
  mcuda::gelu_forward(dev(), up(x, misaligned), yd);
  mref::require_same_bits("gelu_forward", down(yd), mref::elements(y));
  if constexpr (std::is_same_v<In, Out> && !std::is_same_v<In, f16>) {
    for (bool acc : {false, true}) {
      auto dy = mref::random_tensor<In>(host(), s, rng, -2, 2);
      auto dx = mref::random_tensor<In>(host(), s, rng, -1, 1);
      auto dxd = up(dx, misaligned);
      k::gelu_backward(host(), x, dy, dx, acc);
      mcuda::gelu_backward(dev(), up(x, misaligned), up(dy, misaligned), dxd, acc);
      mref::require_same_bits("gelu_backward", down(dxd), mref::elements(dx));
    }
  }
}

// ------------------------------------------------------------------ LayerNorm

template <class In, class W, class Out, class S>
void layernorm_case(const Shape& s, std::mt19937_64& rng, bool misaligned) {
  using A = k::compute_t<In, W>;
  const double u_a = ktest::unit_roundoff<A>();
  INFO("layernorm " << ktest::type_name<In>() << "/" << ktest::type_name<W>() << "->" << ktest::type_name<Out>() << " shape "
                    << s << " misaligned " << misaligned);
  const std::int64_t cols = s[s.rank() - 1], rows = s.numel() / cols;
  const Shape lead = lead_of(s);
  auto x = mref::random_tensor<In>(host(), s, rng, -1, 3);
  auto gamma = mref::random_tensor<W>(host(), {cols}, rng, 0.5, 1.5);
  auto beta = mref::random_tensor<W>(host(), {cols}, rng, -0.5, 0.5);
  auto xd = up(x, misaligned), gd = up(gamma, misaligned), bd = up(beta, misaligned);
  auto yd = dev_empty<Out>(s, misaligned);
  auto md = dev_empty<S>(lead), rd = dev_empty<S>(lead);
  mcuda::layernorm_forward(dev(), xd, gd, bd, yd, md, rd, 1e-5);
  const auto r = mref::layernorm_reference(ktest::values(x), ktest::values(gamma), ktest::values(beta), rows, cols, 1e-5, u_a);
  mref::require_close("y", mref::widen(down(yd)), r.y, mref::with_output_rounding<Out>(r.y, r.y_err));
  mref::require_close("mean", mref::widen(down(md)), r.mean, mref::with_output_rounding<S>(r.mean, r.mean_err));
  mref::require_close("rstd", mref::widen(down(rd)), r.rstd, mref::with_output_rounding<S>(r.rstd, r.rstd_err));

  // Backward from the statistics rounded to S, identical on both sides.
  using G = Out;
  auto mean = Tensor<S>::empty(host(), lead), rstd = Tensor<S>::empty(host(), lead);
  for (std::int64_t i = 0; i < rows; ++i) {
    mean.data()[i] = static_cast<S>(r.mean[i]);
    rstd.data()[i] = static_cast<S>(r.rstd[i]);
  }
  auto dy = mref::random_tensor<G>(host(), s, rng, -1, 1);
  for (int acc = 0; acc < 4; ++acc) {
    const bool acc_dx = acc & 1, acc_p = acc & 2;
    INFO("accumulate dx " << acc_dx << " params " << acc_p);
    auto dx = mref::random_tensor<In>(host(), s, rng, -1, 1);
    auto dg = mref::random_tensor<W>(host(), {cols}, rng, -1, 1), db = mref::random_tensor<W>(host(), {cols}, rng, -1, 1);
    const auto old_dx = ktest::values(dx);
    std::vector<Tensor<In>> dxd = {up(dx, misaligned), up(dx, misaligned)};
    std::vector<Tensor<W>> dgd = {up(dg), up(dg)}, dbd = {up(db), up(db)};
    const auto meand = up(mean), rstdd = up(rstd), dyd = up(dy, misaligned);
    for (int run = 0; run < 2; ++run)
      mcuda::layernorm_backward(dev(), xd, gd, meand, rstdd, dyd, dxd[run], dgd[run], dbd[run], acc_dx, acc_p);
    k::layernorm_backward(host(), x, gamma, mean, rstd, dy, dx, dg, db, acc_dx, acc_p);
    auto g = mref::layernorm_grad_reference(ktest::values(x), ktest::values(gamma), ktest::values(mean), ktest::values(rstd),
                                            ktest::values(dy), rows, cols, ktest::unit_roundoff<k::compute_t<In, W, G>>());
    if (acc_dx) {
      for (std::size_t i = 0; i < g.dx.size(); ++i) {
        g.dx[i] += old_dx[i];
        g.dx_err[i] += u_a * std::fabs(g.dx[i]);
      }
    }
    mref::require_close("dx", mref::widen(down(dxd[0])), g.dx, mref::with_output_rounding<In>(g.dx, g.dx_err));
    mref::require_same_bits("dx, two runs", down(dxd[0]), down(dxd[1]));
    mref::require_same_bits("dgamma vs host", down(dgd[0]), mref::elements(dg));
    mref::require_same_bits("dbeta vs host", down(dbd[0]), mref::elements(db));
    mref::require_same_bits("dgamma, two runs", down(dgd[0]), down(dgd[1]));
    mref::require_same_bits("dbeta, two runs", down(dbd[0]), down(dbd[1]));
  }
}

// ------------------------------------------------------------------ softmax

template <class In, class Out>
void softmax_case(const Shape& s, k::SoftmaxMask mask, std::mt19937_64& rng, bool misaligned) {
  using A = k::compute_t<In, Out>;
  const bool causal = mask == k::SoftmaxMask::causal;
  INFO("softmax " << ktest::type_name<In>() << "->" << ktest::type_name<Out>() << " shape " << s << " causal " << causal
                  << " misaligned " << misaligned);
  const std::int64_t cols = s[s.rank() - 1], rows = s.numel() / cols, tile = s.rank() >= 2 ? s[s.rank() - 2] : 1;
  const double scale = 0.125;
  auto x = mref::random_tensor<In>(host(), s, rng, -30, 30);
  auto xd = up(x, misaligned);
  std::vector<Tensor<Out>> yd = {dev_empty<Out>(s, misaligned), dev_empty<Out>(s, misaligned)};
  for (auto& y : yd) mcuda::softmax_forward(dev(), xd, y, scale, mask);
  std::vector<double> ref, err;
  mref::softmax_reference(ktest::values(x), rows, cols, tile, scale, causal, ktest::unit_roundoff<A>(), ref, err);
  const auto y0 = down(yd[0]);
  mref::require_close("softmax", mref::widen(y0), ref, mref::with_output_rounding<Out>(ref, err));
  mref::require_same_bits("softmax, two runs", y0, down(yd[1]));
}

template <class Y, class DY, class DX>
void softmax_backward_case(const Shape& s, k::SoftmaxMask mask, std::mt19937_64& rng, bool misaligned) {
  using A = k::compute_t<Y, DY>;
  const double u_a = ktest::unit_roundoff<A>();
  const bool causal = mask == k::SoftmaxMask::causal;
  INFO("softmax_backward " << ktest::type_name<Y>() << "/" << ktest::type_name<DY>() << " shape " << s << " causal " << causal);
  const std::int64_t cols = s[s.rank() - 1], rows = s.numel() / cols, tile = s[s.rank() - 2];
  const double scale = 0.37;
  auto x = mref::random_tensor<double>(host(), s, rng, -8, 8);
  std::vector<double> yref, yerr;
  mref::softmax_reference(ktest::values(x), rows, cols, tile, scale, causal, u_a, yref, yerr);
  auto y = Tensor<Y>::empty(host(), s);
  for (std::int64_t i = 0; i < s.numel(); ++i) y.data()[i] = convert<Y>(yref[i]);
  auto dy = mref::random_tensor<DY>(host(), s, rng, -1, 1);
  for (bool acc : {false, true}) {
    auto dx = mref::random_tensor<DX>(host(), s, rng, -1, 1);
    const auto old = ktest::values(dx);
    auto dxd = up(dx, misaligned);
    mcuda::softmax_backward(dev(), up(y, misaligned), up(dy, misaligned), dxd, scale, mask, acc);
    std::vector<double> ref, err;
    mref::softmax_grad_reference(ktest::values(y), ktest::values(dy), rows, cols, tile, scale, causal, u_a, ref, err);
    for (std::int64_t i = 0; i < s.numel(); ++i) {
      const bool masked = causal && (i % cols) >= mref::visible(i / cols, cols, tile, true);
      if (acc) {
        ref[i] += old[i];
        if (!masked) err[i] += u_a * std::fabs(ref[i]);
      }
    }
    mref::require_close("softmax_backward", mref::widen(down(dxd)), ref, mref::with_output_rounding<DX>(ref, err));
  }
}

// ------------------------------------------------------------------ cross-entropy

template <class T, class I, class L, class G>
void cross_entropy_case(const Shape& s, std::mt19937_64& rng, bool misaligned) {
  using A = k::compute_t<T>;
  const double u_a = ktest::unit_roundoff<A>();
  INFO("cross_entropy " << ktest::type_name<T>() << " shape " << s << " misaligned " << misaligned);
  const std::int64_t vocab = s[s.rank() - 1], rows = s.numel() / vocab;
  const Shape lead = lead_of(s);
  auto z = mref::random_tensor<T>(host(), s, rng, -8, 8);
  auto t = random_ids<I>(lead, vocab, rng);
  auto zd = up(z, misaligned), td = up(t);
  std::vector<Tensor<L>> losses = {dev_empty<L>(lead), dev_empty<L>(lead)}, lse = {dev_empty<L>(lead), dev_empty<L>(lead)},
                         mean = {dev_empty<L>({1}), dev_empty<L>({1})};
  auto status = status_tensor();
  for (int run = 0; run < 2; ++run) mcuda::cross_entropy_forward(dev(), zd, td, losses[run], lse[run], mean[run], status);
  REQUIRE_FALSE(k::read_index_status(dev(), status).error);
  const auto r = mref::cross_entropy_reference<L>(ktest::values(z), as_int64(t), rows, vocab, u_a);
  mref::require_close("losses", mref::widen(down(losses[0])), r.loss, mref::with_output_rounding<L>(r.loss, r.loss_err));
  mref::require_close("lse", mref::widen(down(lse[0])), r.lse, mref::with_output_rounding<L>(r.lse, r.lse_err));
  mref::require_close("mean", mref::widen(down(mean[0])), {r.mean}, mref::with_output_rounding<L>({r.mean}, {r.mean_err}));
  mref::require_same_bits("losses, two runs", down(losses[0]), down(losses[1]));
  mref::require_same_bits("mean, two runs", down(mean[0]), down(mean[1]));

  auto lse_h = Tensor<L>::empty(host(), lead);
  for (std::int64_t i = 0; i < rows; ++i) lse_h.data()[i] = static_cast<L>(r.lse[i]);
  std::vector<L> dl = {static_cast<L>(2.5)};
  auto dloss = up(Tensor<L>::wrap(dl.data(), {1}));
  for (bool acc : {false, true}) {
    auto dz = mref::random_tensor<G>(host(), s, rng, -1e-3, 1e-3);
    const auto old = ktest::values(dz);
    auto dzd = up(dz, misaligned);
    mcuda::cross_entropy_backward(dev(), zd, td, up(lse_h), dloss, dzd, acc, status);
    std::vector<double> ref, err;
    mref::cross_entropy_grad_reference(ktest::values(z), as_int64(t), ktest::values(lse_h), double(dl[0]), rows, vocab, u_a,
                                       ref, err);
    if (acc) {
      for (std::size_t i = 0; i < ref.size(); ++i) {
        ref[i] += old[i];
        err[i] += u_a * std::fabs(ref[i]);
      }
    }
    mref::require_close("dlogits", mref::widen(down(dzd)), ref, mref::with_output_rounding<G>(ref, err));
  }
  if constexpr (std::is_same_v<T, G>) {  // in place equals out of place
    auto out = dev_empty<G>(s, misaligned);
    auto lse_d = up(lse_h);
    mcuda::cross_entropy_backward(dev(), zd, td, lse_d, dloss, out, false, status);
    mcuda::cross_entropy_backward(dev(), zd, td, lse_d, dloss, zd, false, status);
    mref::require_same_bits("in place", down(zd), down(out));
  }
}

/// cross_entropy_rows_grad (the one-pass kernel where a row fits its registers, else the two
/// kernels): losses and lse against the long-double reference, p - onehot against the reference
/// gradient of the rows' sum evaluated at the device's own lse (whose error the lse check bounds),
/// in place equal to out of place, two runs equal.
template <class T, class I, class L>
void cross_entropy_rows_grad_case(const Shape& s, std::mt19937_64& rng, bool misaligned) {
  using A = k::compute_t<T>;
  const double u_a = ktest::unit_roundoff<A>();
  INFO("cross_entropy_rows_grad " << ktest::type_name<T>() << " shape " << s << " misaligned " << misaligned);
  const std::int64_t vocab = s[s.rank() - 1], rows = s.numel() / vocab;
  const Shape lead = lead_of(s);
  auto z = mref::random_tensor<T>(host(), s, rng, -8, 8);
  auto t = random_ids<I>(lead, vocab, rng);
  auto td = up(t);
  auto status = status_tensor();
  auto zd = up(z, misaligned);
  auto out = dev_empty<T>(s, misaligned);
  auto losses = dev_empty<L>(lead), lse = dev_empty<L>(lead), losses2 = dev_empty<L>(lead), lse2 = dev_empty<L>(lead);
  mcuda::cross_entropy_rows_grad(dev(), zd, td, losses, lse, out, status);       // out of place
  mcuda::cross_entropy_rows_grad(dev(), zd, td, losses2, lse2, zd, status);      // in place
  REQUIRE_FALSE(k::read_index_status(dev(), status).error);
  const auto r = mref::cross_entropy_reference<L>(ktest::values(z), as_int64(t), rows, vocab, u_a);
  mref::require_close("losses", mref::widen(down(losses)), r.loss, mref::with_output_rounding<L>(r.loss, r.loss_err));
  mref::require_close("lse", mref::widen(down(lse)), r.lse, mref::with_output_rounding<L>(r.lse, r.lse_err));
  std::vector<double> ref, err;
  mref::cross_entropy_grad_reference(ktest::values(z), as_int64(t), mref::widen(down(lse)), double(rows), rows, vocab, u_a,
                                     ref, err);
  mref::require_close("p - onehot", mref::widen(down(out)), ref, mref::with_output_rounding<T>(ref, err));
  mref::require_same_bits("in place: losses", down(losses2), down(losses));
  mref::require_same_bits("in place: lse", down(lse2), down(lse));
  mref::require_same_bits("in place: p - onehot", down(zd), down(out));
}

// ------------------------------------------------------------------ embedding

template <class I, class T, class O>
void embedding_forward_case(const Shape& ids_shape, std::int64_t vocab, std::int64_t cols, std::mt19937_64& rng,
                            bool misaligned) {
  INFO("embedding_forward ids " << ids_shape << " V " << vocab << " C " << cols << " misaligned " << misaligned);
  auto table = mref::random_tensor<T>(host(), {vocab, cols}, rng, -3, 3);
  auto ids = random_ids<I>(ids_shape, vocab, rng);
  std::vector<std::int64_t> e(ids_shape.span().begin(), ids_shape.span().end());
  e.push_back(cols);
  const Shape out_shape{std::span<const std::int64_t>(e)};
  auto out = Tensor<O>::empty(host(), out_shape);
  k::embedding_forward(host(), ids, table, out);
  auto outd = dev_empty<O>(out_shape, misaligned);
  mcuda::embedding_forward(dev(), up(ids), up(table, misaligned), outd, status_tensor());
  mref::require_same_bits("embedding_forward", down(outd), mref::elements(out));
}

template <class I, class G, class D>
void embedding_backward_case(const Shape& ids_shape, std::int64_t vocab, std::int64_t cols, std::mt19937_64& rng,
                             bool misaligned) {
  INFO("embedding_backward ids " << ids_shape << " V " << vocab << " C " << cols << " misaligned " << misaligned);
  auto ids = random_ids<I>(ids_shape, vocab, rng);
  auto dout = mref::random_tensor<G>(host(), {ids.numel(), cols}, rng, -1, 1);
  const auto idsd = up(ids.reshape({ids.numel()}));
  const auto doutd = up(dout, misaligned);
  for (bool acc : {false, true}) {
    INFO("accumulate " << acc);
    auto dt = mref::random_tensor<D>(host(), {vocab, cols}, rng, -1, 1);
    std::vector<Tensor<D>> dtd = {up(dt, misaligned), up(dt, misaligned)};
    for (auto& d : dtd) mcuda::embedding_backward(dev(), idsd, doutd, d, acc, status_tensor());
    k::embedding_backward(host(), ids.reshape({ids.numel()}), dout, dt, acc);
    const auto got = down(dtd[0]);
    mref::require_same_bits("embedding_backward vs host", got, mref::elements(dt));
    mref::require_same_bits("embedding_backward, two runs", got, down(dtd[1]));
  }
}

// ------------------------------------------------------------------ broadcast

template <class X, class B, class Y>
void add_bias_case(const Shape& s, std::mt19937_64& rng, bool misaligned) {
  INFO("add_bias shape " << s << " misaligned " << misaligned);
  const std::int64_t cols = s[s.rank() - 1];
  auto x = mref::random_tensor<X>(host(), s, rng, -4, 4);
  auto b = mref::random_tensor<B>(host(), {cols}, rng, -1, 1);
  auto y = Tensor<Y>::empty(host(), s);
  k::add_bias(host(), x, b, y);
  auto yd = dev_empty<Y>(s, misaligned);
  mcuda::add_bias(dev(), up(x, misaligned), up(b), yd);
  mref::require_same_bits("add_bias", down(yd), mref::elements(y));
}

template <class G, class D>
void bias_grad_case(const Shape& s, std::mt19937_64& rng, bool misaligned) {
  INFO("bias_grad shape " << s << " misaligned " << misaligned);
  const std::int64_t cols = s[s.rank() - 1];
  auto dy = mref::random_tensor<G>(host(), s, rng, -1, 1);
  const auto dyd = up(dy, misaligned);
  for (bool acc : {false, true}) {
    auto db = mref::random_tensor<D>(host(), {cols}, rng, -1, 1);
    std::vector<Tensor<D>> dbd = {up(db), up(db)};
    for (auto& d : dbd) mcuda::bias_grad(dev(), dyd, d, acc);
    k::bias_grad(host(), dy, db, acc);
    mref::require_same_bits("bias_grad vs host", down(dbd[0]), mref::elements(db));
    mref::require_same_bits("bias_grad, two runs", down(dbd[0]), down(dbd[1]));
  }
}

}  // namespace

TEST_CASE("CUDA GELU equals host GELU bit for bit", "[cuda][kernels][gelu]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Shape& s : {Shape{1}, Shape{7}, Shape{33, 65}, Shape{3, (1 << 20) + 3}}) {
    for (bool mis : {false, true}) {
      gelu_case<float, float>(s, rng, mis);
      gelu_case<bf16, bf16>(s, rng, mis);
      gelu_case<f16, f16>(s, rng, mis);
      gelu_case<double, double>(s, rng, mis);
    }
  }
}

TEST_CASE("CUDA LayerNorm is within tolerance, deterministic, and its parameter gradients equal the host's",
          "[cuda][kernels][layernorm]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Shape& s : {Shape{1, 1}, Shape{1, 768}, Shape{3, 7}, Shape{2, 3, 100}, Shape{5, 3000}, Shape{8, 1024, 768}}) {
    layernorm_case<float, float, float, float>(s, rng, false);
    layernorm_case<float, float, bf16, float>(s, rng, false);
  }
  // Around the register kernel's limits (128 packs a row: 512 f32 or 1024 bf16 columns) and its
  // 2 / 4 pack slots (64 packs: 256 f32, 512 bf16 columns).
  for (const Shape& s : {Shape{4, 256}, Shape{4, 260}, Shape{3, 512}, Shape{3, 520}, Shape{2, 1024}, Shape{2, 1032}}) {
    layernorm_case<float, float, float, float>(s, rng, false);
    layernorm_case<bf16, bf16, bf16, float>(s, rng, false);
  }
  for (const Shape& s : {Shape{1, 768}, Shape{17, 33}, Shape{4, 2050}}) {
    layernorm_case<float, float, float, float>(s, rng, true);
    layernorm_case<bf16, bf16, bf16, float>(s, rng, false);
    layernorm_case<bf16, bf16, bf16, float>(s, rng, true);
    layernorm_case<double, double, double, double>(s, rng, false);
  }
}

template <class X, class R, class W, class Out, class S>
void add_layernorm_case(const Shape& s, std::mt19937_64& rng, bool misaligned) {
  INFO("add_layernorm " << ktest::type_name<X>() << " + " << ktest::type_name<R>() << " -> " << ktest::type_name<Out>()
                        << " shape " << s << " misaligned " << misaligned);
  const std::int64_t cols = s[s.rank() - 1];
  const Shape lead = lead_of(s);
  auto x = mref::random_tensor<X>(host(), s, rng, -2, 2);
  auto r = mref::random_tensor<R>(host(), s, rng, -1, 1);
  auto gamma = mref::random_tensor<W>(host(), {cols}, rng, 0.5, 1.5);
  auto beta = mref::random_tensor<W>(host(), {cols}, rng, -0.5, 0.5);
  auto xd = up(x, misaligned), rd = up(r, misaligned), gd = up(gamma), bd = up(beta);
  auto hd = dev_empty<X>(s, misaligned);
  auto yd = dev_empty<Out>(s, misaligned), y2 = dev_empty<Out>(s, misaligned);
  auto md = dev_empty<S>(lead), sd = dev_empty<S>(lead), m2 = dev_empty<S>(lead), s2 = dev_empty<S>(lead);
  mcuda::add_layernorm_forward(dev(), xd, rd, hd, gd, bd, yd, md, sd, 1e-5);
  // h: the host's add, bit for bit (both backends round x + r once); y, mean and rstd: the CUDA
  // LayerNorm of that h, bit for bit (the fused kernel's passes are the unfused kernel's).
  auto h = Tensor<X>::empty(host(), s);
  k::map(host(), k::Add{}, h, x, r);
  mref::require_same_bits("h", down(hd), mref::elements(h));
  mcuda::layernorm_forward(dev(), hd, gd, bd, y2, m2, s2, 1e-5);
  mref::require_same_bits("y", down(yd), down(y2));
  mref::require_same_bits("mean", down(md), down(m2));
  mref::require_same_bits("rstd", down(sd), down(s2));

  // Backward with the branch's gradient written alongside dx (written and accumulated): dx as
  // without it, bit for bit, and the copy the host's cast of that dx.
  using G = Out;
  auto dy = up(mref::random_tensor<G>(host(), s, rng, -1, 1), misaligned);
  for (const bool acc : {false, true}) {
    INFO("accumulate dx " << acc);
    auto dx0 = mref::random_tensor<X>(host(), s, rng, -1, 1);
    auto dx1 = up(dx0, misaligned), dx2 = up(dx0, misaligned);
    auto dg = dev_empty<W>({cols}), db = dev_empty<W>({cols}), dg2 = dev_empty<W>({cols}), db2 = dev_empty<W>({cols});
    auto copy = dev_empty<R>(s, misaligned);
    mcuda::layernorm_backward_copy(dev(), hd, gd, md, sd, dy, dx1, dg, db, acc, copy);
    mcuda::layernorm_backward(dev(), hd, gd, md, sd, dy, dx2, dg2, db2, acc, false);
    mref::require_same_bits("dx", down(dx1), down(dx2));
    auto dx_host = Tensor<X>::empty(host(), s);
    const auto dxv = down(dx2);
    std::copy(dxv.begin(), dxv.end(), dx_host.data());
    auto cast = Tensor<R>::empty(host(), s);
    k::map(host(), k::ScaleBy{1.0}, cast, dx_host);
    mref::require_same_bits("dx_copy", down(copy), mref::elements(cast));
  }
}

TEST_CASE("CUDA add_layernorm_forward and the backward's dx_copy give the unfused ops' bits", "[cuda][kernels][layernorm]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{2, 3, 100}, Shape{5, 3000}, Shape{8, 1024, 768}, Shape{3, 520},
                         Shape{3, 1032}}) {
    add_layernorm_case<float, bf16, float, bf16, float>(s, rng, false);
    add_layernorm_case<bf16, bf16, bf16, bf16, float>(s, rng, false);
  }
  for (const Shape& s : {Shape{1, 768}, Shape{17, 33}, Shape{4, 2050}}) {
    add_layernorm_case<float, bf16, float, bf16, float>(s, rng, true);
    add_layernorm_case<double, double, double, double, double>(s, rng, false);
  }
}

TEST_CASE("CUDA softmax is within tolerance and deterministic", "[cuda][kernels][softmax]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto mask : {k::SoftmaxMask::none, k::SoftmaxMask::causal}) {
    for (const Shape& s : {Shape{1, 1}, Shape{3, 17}, Shape{2, 3, 8, 8}, Shape{1, 2100, 2100}, Shape{4, 1024, 1024}}) {
      softmax_case<float, float>(s, mask, rng, false);
      softmax_case<bf16, float>(s, mask, rng, false);
      softmax_backward_case<float, float, float>(s, mask, rng, false);
      softmax_backward_case<float, bf16, bf16>(s, mask, rng, false);
    }
    for (const Shape& s : {Shape{1, 5}, Shape{4, 64, 64}, Shape{2, 3000}}) {
      softmax_case<float, float>(s, mask, rng, true);
      softmax_case<bf16, bf16>(s, mask, rng, false);
      softmax_case<f16, f16>(s, mask, rng, true);
      softmax_case<double, double>(s, mask, rng, false);
      softmax_backward_case<bf16, bf16, bf16>(s, mask, rng, true);
      softmax_backward_case<double, double, double>(s, mask, rng, false);
    }
  }
}

TEST_CASE("CUDA cross-entropy is within tolerance and deterministic", "[cuda][kernels][loss]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Shape& s : {Shape{1, 1}, Shape{1, 5}, Shape{7, 33}, Shape{3, 2048}, Shape{5, 2049}, Shape{64, 50304}}) {
    cross_entropy_case<float, i32, float, float>(s, rng, false);
    cross_entropy_case<bf16, i32, float, bf16>(s, rng, false);
  }
  for (const Shape& s : {Shape{1, 5}, Shape{2, 3, 100}, Shape{4, 4099}}) {
    cross_entropy_case<float, i32, float, float>(s, rng, true);
    cross_entropy_case<f16, i64, float, f16>(s, rng, false);
    cross_entropy_case<double, i64, double, double>(s, rng, false);
  }
}

TEST_CASE("CUDA cross_entropy_rows_grad: one pass where a row fits, two kernels elsewhere", "[cuda][kernels][loss]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  // 2048 and below: the warp kernels; from 2049, rows that fit shared memory twice an SM (H100:
  // 57,824 bf16 / f16, 28,912 f32): the staged kernel, 50304 being GPT-2's head, 1,500 rows being
  // more than its grid (8 blocks an SM) so that blocks take a second row; then to 65,536 / 32,768
  // the register kernel; above, misaligned rows and f64: the two-kernel path.
  for (const Shape& s : {Shape{7, 33}, Shape{3, 2048}, Shape{5, 2056}, Shape{1500, 2056}, Shape{64, 50304}, Shape{2, 65536},
                         Shape{2, 65544}}) {
    cross_entropy_rows_grad_case<bf16, i32, float>(s, rng, false);
    cross_entropy_rows_grad_case<f16, i64, float>(s, rng, false);
  }
  for (const Shape& s : {Shape{5, 2052}, Shape{9, 32768}, Shape{2, 32772}}) {
    cross_entropy_rows_grad_case<float, i32, float>(s, rng, false);
    cross_entropy_rows_grad_case<float, i32, float>(s, rng, true);
  }
  cross_entropy_rows_grad_case<double, i64, double>(Shape{3, 4099}, rng, false);
}

TEST_CASE("CUDA cross_entropy_rows_grad makes out-of-range rows NaN and records the first", "[cuda][kernels][loss][errors]") {
  const std::int64_t rows = 4, vocab = 4096;  // the one-pass kernel
  std::mt19937_64 rng(ktest::fresh_seed());
  auto z = mref::random_tensor<bf16>(host(), {rows, vocab}, rng, -2, 2);
  std::vector<i32> tv = {7, 4096, 0, -1};
  auto t = up(Tensor<i32>::wrap(tv.data(), {rows}));
  auto losses = dev_empty<float>({rows}), lse = dev_empty<float>({rows});
  auto dz = dev_empty<bf16>({rows, vocab});
  auto status = status_tensor();
  mcuda::cross_entropy_rows_grad(dev(), up(z), t, losses, lse, dz, status);
  const auto l = down(losses);
  for (std::int64_t i = 0; i < rows; ++i) REQUIRE(std::isnan(l[i]) == (i == 1 || i == 3));
  const auto g = mref::widen(down(dz));
  for (std::int64_t i = 0; i < rows * vocab; ++i) REQUIRE(std::isnan(g[i]) == (i / vocab == 1 || i / vocab == 3));
  const auto st = k::read_index_status(dev(), status);
  REQUIRE(st.error);
  REQUIRE(st.row == 1);
  REQUIRE(st.value == 4096);
}

TEST_CASE("CUDA cross-entropy makes out-of-range rows NaN and records the first", "[cuda][kernels][loss][errors]") {
  const std::int64_t rows = 6, vocab = 9;
  auto z = Tensor<float>::empty(host(), {rows, vocab});
  std::fill(z.data(), z.data() + rows * vocab, 0.25f);
  std::vector<i32> tv = {0, -5, 3, 99, 8, 2};
  auto t = up(Tensor<i32>::wrap(tv.data(), {rows}));
  auto losses = dev_empty<float>({rows}), lse = dev_empty<float>({rows}), mean = dev_empty<float>({1});
  auto status = status_tensor();
  mcuda::cross_entropy_forward(dev(), up(z), t, losses, lse, mean, status);
  const auto l = down(losses);
  for (std::int64_t i = 0; i < rows; ++i) REQUIRE(std::isnan(l[i]) == (i == 1 || i == 3));
  REQUIRE(std::isnan(down(mean)[0]));
  const auto st = k::read_index_status(dev(), status);
  REQUIRE(st.error);
  REQUIRE(st.row == 1);
  REQUIRE(st.value == -5);
  try {
    k::check_index_status(dev(), status, "cross_entropy");
    FAIL("no exception");
  } catch (const ValueError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("index -5 at row 1"));
  }
  k::reset_index_status(dev(), status);
  REQUIRE_FALSE(k::read_index_status(dev(), status).error);
  std::vector<float> one = {1.0f};
  auto dz = dev_empty<float>({rows, vocab});
  mcuda::cross_entropy_backward(dev(), up(z), t, lse, up(Tensor<float>::wrap(one.data(), {1})), dz, false, status);
  const auto g = down(dz);
  for (std::int64_t i = 0; i < rows * vocab; ++i) REQUIRE(std::isnan(g[i]) == (i / vocab == 1 || i / vocab == 3));
  REQUIRE(k::read_index_status(dev(), status).row == 1);
}

TEST_CASE("CUDA MSE is within tolerance and its gradient equals the host's", "[cuda][kernels][loss]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  auto check = [&]<class X, class Y, class L>(const Shape& s) {
    using A = k::compute_t<X, Y>;
    INFO("mse " << ktest::type_name<X>() << " shape " << s);
    auto x = mref::random_tensor<X>(host(), s, rng, -2, 2);
    auto y = mref::random_tensor<Y>(host(), s, rng, -2, 2);
    auto loss = dev_empty<L>({1});
    mcuda::mse_forward(dev(), up(x), up(y), loss);
    const auto xv = ktest::values(x), yv = ktest::values(y);
    long double sum = 0;
    for (std::size_t i = 0; i < xv.size(); ++i) sum += (static_cast<long double>(xv[i]) - yv[i]) * (static_cast<long double>(xv[i]) - yv[i]);
    const double want = double(sum / s.numel()), u_a = ktest::unit_roundoff<A>();
    mref::require_close("mse", mref::widen(down(loss)), {want},
                        mref::with_output_rounding<L>({want}, {(3 * u_a + mref::gam(double(s.numel()), u_a)) * want}));
    std::vector<L> dl = {static_cast<L>(0.75)};
    auto dloss_h = Tensor<L>::wrap(dl.data(), {1});
    for (bool acc : {false, true}) {
      auto dx = mref::random_tensor<X>(host(), s, rng, -1, 1);
      auto dxd = up(dx);
      mcuda::mse_backward(dev(), up(x), up(y), up(dloss_h), dxd, acc);
      k::mse_backward(host(), x, y, dloss_h, dx, acc);
      mref::require_same_bits("mse_backward", down(dxd), mref::elements(dx));
    }
  };
  for (const Shape& s : {Shape{1}, Shape{7}, Shape{33, 65}, Shape{16, 8192}}) {
    check.template operator()<float, float, float>(s);
    check.template operator()<bf16, float, float>(s);
    check.template operator()<double, double, double>(s);
  }
}

TEST_CASE("CUDA embedding equals the host's bit for bit and is deterministic", "[cuda][kernels][embedding]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  embedding_forward_case<i32, float, float>({8, 1024}, 50304, 768, rng, false);
  embedding_backward_case<i32, float, float>({8, 1024}, 50304, 768, rng, false);
  for (bool mis : {false, true}) {
    const std::vector<std::tuple<Shape, std::int64_t, std::int64_t>> cases = {
        {{1}, 1, 1}, {{2, 5}, 3, 7}, {{4, 64}, 10, 768}, {{3000}, 37, 40}, {{2, 33}, 50304, 16}};
    for (const auto& [ids, vocab, cols] : cases) {
      embedding_forward_case<i32, float, float>(ids, vocab, cols, rng, mis);
      embedding_forward_case<i32, float, bf16>(ids, vocab, cols, rng, mis);
      embedding_forward_case<i64, bf16, bf16>(ids, vocab, cols, rng, mis);
      embedding_forward_case<i32, double, double>(ids, vocab, cols, rng, mis);
      embedding_backward_case<i32, float, float>(ids, vocab, cols, rng, mis);
      embedding_backward_case<i32, bf16, float>(ids, vocab, cols, rng, mis);
      embedding_backward_case<i64, bf16, bf16>(ids, vocab, cols, rng, mis);
      embedding_backward_case<i32, double, double>(ids, vocab, cols, rng, mis);
    }
  }
}

TEST_CASE("CUDA embedding leaves out-of-range ids out and records the first", "[cuda][kernels][embedding][errors]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  const std::int64_t vocab = 7, cols = 5;
  std::vector<i32> iv = {3, 1, 7, 3, -1, 6};
  auto table = mref::random_tensor<float>(host(), {vocab, cols}, rng, -1, 1);
  auto out = dev_empty<float>({6, cols});
  auto status = status_tensor();
  const auto idsd = up(Tensor<i32>::wrap(iv.data(), {6}));
  mcuda::embedding_forward(dev(), idsd, up(table), out, status);
  const auto o = down(out);
  for (std::int64_t i = 0; i < 6 * cols; ++i) REQUIRE(std::isnan(o[i]) == (i / cols == 2 || i / cols == 4));
  auto st = k::read_index_status(dev(), status);
  REQUIRE((st.error && st.row == 2 && st.value == 7));
  // The gradient equals the host's over the valid positions only.
  auto dout = mref::random_tensor<float>(host(), {6, cols}, rng, -1, 1);
  auto dt = dev_empty<float>({vocab, cols});
  k::reset_index_status(dev(), status);
  mcuda::embedding_backward(dev(), idsd, up(dout), dt, false, status);
  st = k::read_index_status(dev(), status);
  REQUIRE((st.error && st.row == 2));
  std::vector<i32> valid_ids = {3, 1, 3, 6};
  auto valid_dout = Tensor<float>::empty(host(), {4, cols});
  for (std::int64_t p = 0, q = 0; p < 6; ++p) {
    if (iv[p] < 0 || iv[p] >= vocab) continue;
    std::copy(dout.data() + p * cols, dout.data() + (p + 1) * cols, valid_dout.data() + q * cols);
    ++q;
  }
  auto want = Tensor<float>::empty(host(), {vocab, cols});
  k::embedding_backward(host(), Tensor<i32>::wrap(valid_ids.data(), {4}), valid_dout, want, false);
  mref::require_same_bits("valid positions only", down(dt), mref::elements(want));
}

TEST_CASE("CUDA broadcast ops equal the host's bit for bit; gradients are deterministic", "[cuda][kernels][broadcast]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{2, 5, 768}, Shape{8192, 768}, Shape{70000, 3}}) {
    for (bool mis : {false, true}) {
      add_bias_case<float, float, float>(s, rng, mis);
      add_bias_case<bf16, float, bf16>(s, rng, mis);
      add_bias_case<double, double, double>(s, rng, mis);
      bias_grad_case<float, float>(s, rng, mis);
      bias_grad_case<bf16, float>(s, rng, mis);
      bias_grad_case<bf16, bf16>(s, rng, mis);
      bias_grad_case<double, double>(s, rng, mis);
    }
  }
  // Positional add and gradient at GPT-2 small's (B, T, C) = (8, 1024, 768).
  auto x = mref::random_tensor<float>(host(), {8, 1024, 768}, rng, -2, 2);
  auto pos = mref::random_tensor<float>(host(), {1024, 768}, rng, -1, 1);
  auto y = Tensor<float>::empty(host(), {8, 1024, 768});
  auto yd = dev_empty<float>({8, 1024, 768});
  k::add_positional(host(), x, pos, y);
  mcuda::add_positional(dev(), up(x), up(pos), yd);
  mref::require_same_bits("add_positional", down(yd), mref::elements(y));
  auto dpos = Tensor<float>::empty(host(), {1024, 768});
  auto dposd = dev_empty<float>({1024, 768});
  k::positional_grad(host(), x, dpos, false);
  mcuda::positional_grad(dev(), up(x), dposd, false);
  mref::require_same_bits("positional_grad", down(dposd), mref::elements(dpos));
}

TEST_CASE("model kernels report backend and device errors", "[cuda][kernels][errors]") {
  auto xd = dev_empty<float>({4, 8});
  auto yd = dev_empty<float>({4, 8});
  auto xh = Tensor<float>::empty(host(), {4, 8});
  // This unit is host-compiled: its kernels:: calls cannot launch kernels.
  REQUIRE_THROWS_AS(k::gelu_forward(dev(), xd, yd), BackendError);
  REQUIRE_THROWS_AS(k::softmax_forward(dev(), xd, yd), BackendError);
  REQUIRE_THROWS_AS(k::bias_grad(dev(), xd, dev_empty<float>({8}), false), BackendError);
  // A host tensor given to a CUDA op.
  try {
    mcuda::softmax_forward(dev(), xh, yd, 1.0, k::SoftmaxMask::none);
    FAIL("no exception");
  } catch (const DeviceError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("expected cuda:0") && Catch::Contains("got cpu"));
  }
  REQUIRE_THROWS_AS(mcuda::embedding_forward(dev(), up(Tensor<i32>::empty(host(), {4})), xd, yd, Tensor<i64>::empty(host(), {1})),
                    DeviceError);
}
