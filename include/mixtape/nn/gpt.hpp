/// @file gpt.hpp
/// @brief `Block<P>` and `Gpt<P>`: the peer's pre-LN GPT (../shared/reference/torch_gpt.py), token
///        plus learned position embeddings, n blocks of x += attn(LN(x)); x += MLP(LN(x)), a final
///        LayerNorm and an LM head tied to the token embedding, with the peer's names and init.
///
/// Names: `wte.weight`, `wpe.weight`, `blocks.{i}.ln1.{weight,bias}`, `blocks.{i}.qkv.*`,
/// `blocks.{i}.proj.*`, `blocks.{i}.ln2.*`, `blocks.{i}.fc.*`, `blocks.{i}.out.*`,
/// `lnf.{weight,bias}`. Init: N(0, 0.02) for matrices, N(0, 0.02 / sqrt(2 * layers)) for `proj`
/// and `out` weights, zero biases, unit LayerNorm gains (nn::initialize draws them from the
/// context's seed, in registration order).
///
/// How a policy flows through it (design.md): the embeddings and the residual stream are in the
/// policy's residual type (f32 under mixed policies, as autocast leaves `embedding` and `add`
/// alone); each LayerNorm computes statistics in f32 and writes the compute type its GEMM reads;
/// attention, the MLP and the head run in the GEMM compute type; the loss is f32 (f64 under
/// 64-true), a fused log-softmax over the logits, formed a chunk of rows at a time with the head
/// (autograd/ops_linear_cross_entropy.hpp).
///
/// @code
///   nn::ParameterStore store;
///   nn::Gpt<precision::bf16_mixed> gpt(store, {.vocab = 256, .ctx = 128, .dim = 128, .layers = 2, .heads = 4});
///   store.allocate(ctx);
///   nn::initialize(ctx, store);
///   autograd::Tape tape(ctx);
///   auto loss = gpt.loss(tape, ids, targets);   // ids, targets (B, T) int32 on ctx's device
///   autograd::backward(tape, loss);
/// @endcode
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "mixtape/nn/attention.hpp"
#include "mixtape/nn/embedding.hpp"
#include "mixtape/nn/layer_norm.hpp"
#include "mixtape/nn/mlp.hpp"

namespace mixtape::nn {

/// The GPT's shape (the peer's flags).
struct GptConfig {
  std::int64_t vocab = 256;
  std::int64_t ctx = 128;  ///< longest sequence (rows of the position table)
  std::int64_t dim = 128;
  std::int64_t layers = 2;
  std::int64_t heads = 4;

  /// Parameters of the model (the tied head counted once): 12 L d^2 + 13 L d + (V + ctx + 2) d.
  constexpr std::int64_t parameter_count() const noexcept {
    return 12 * layers * dim * dim + 13 * layers * dim + (vocab + ctx + 2) * dim;
  }
  /// Training FLOPs per token, the peer's count: 6 N (N without biases and norms) + 12 L d T.
  constexpr double flops_per_token() const noexcept {
    const double n = 12.0 * layers * dim * dim + static_cast<double>(vocab + ctx) * dim;
    return 6.0 * n + 12.0 * layers * dim * ctx;
  }
};

MIXTAPE_BACKEND_BEGIN

/// One pre-LN transformer block.
/// @tparam P  the block's precision policy
template <PrecisionPolicy P>
class Block : public Module {
 public:
  using traits = policy_traits<P>;
  using residual_type = typename traits::residual_type;
  using compute_type = typename Linear<P>::compute_type;

  /// @param layers  the model's block count (scales the residual projections' init)
  Block(const ModuleScope& scope, std::int64_t dim, std::int64_t heads, std::int64_t layers)
      : Module(scope),
        ln1_(this->scope("ln1"), dim),
        attn_(ModuleScope{scope.store, scope.prefix}, dim, heads, residual_std(layers)),
        ln2_(this->scope("ln2"), dim),
        mlp_(ModuleScope{scope.store, scope.prefix}, dim, 4 * dim, residual_std(layers)) {
    static_assert(std::is_same_v<typename LayerNorm<P>::output_type, compute_type>,
                  "Block: the LayerNorm output type must be the type the next GEMM reads");
    register_child(ln1_);
    register_child(attn_);
    register_child(ln2_);
    register_child(mlp_);
  }

  /// // x (B, T, C) in the residual type -> (B, T, C)
  autograd::Var<residual_type> operator()(autograd::Tape& tape, const autograd::Var<residual_type>& x) const {
    const auto h = autograd::add(tape, x, attn_(tape, ln1_(tape, x)));
    return autograd::add(tape, h, mlp_(tape, ln2_(tape, h)));
  }

  /// The block with each residual add fused into the LayerNorm that reads its sum: given x and
  /// xn = ln1(x), returns the block's output and `next` of it (the following block's ln1, or the
  /// final LayerNorm). The values and gradients of operator() then next(...), bit for bit.
  /// // x (B, T, C) residual, xn (B, T, C) -> sum (B, T, C) residual, norm (B, T, C)
  autograd::AddLayerNorm<residual_type, compute_type> forward_to(autograd::Tape& tape,
                                                                 const autograd::Var<residual_type>& x,
                                                                 const autograd::Var<compute_type>& xn,
                                                                 const LayerNorm<P>& next) const {
    const auto h = ln2_.add_and_norm(tape, x, attn_(tape, xn));
    return next.add_and_norm(tape, h.sum, mlp_(tape, h.norm));
  }

  const LayerNorm<P>& ln1() const noexcept { return ln1_; }

  const CausalSelfAttention<P>& attention() const noexcept { return attn_; }
  const Mlp<P>& mlp() const noexcept { return mlp_; }

  static double residual_std(std::int64_t layers) { return 0.02 / std::sqrt(2.0 * static_cast<double>(layers)); }

 private:
  LayerNorm<P> ln1_;
  CausalSelfAttention<P> attn_;
  LayerNorm<P> ln2_;
  Mlp<P> mlp_;
};

/// The GPT.
/// @tparam P  the model's precision policy
template <PrecisionPolicy P>
class Gpt : public Module {
 public:
  using traits = policy_traits<P>;
  using param_type = typename traits::param_type;
  using residual_type = typename traits::residual_type;
  using compute_type = typename Linear<P>::compute_type;
  /// The loss's type: f32 (f64 under 64-true).
  using loss_type = kernels::compute_t<compute_type>;

  /// Registers every parameter in `store` (allocate and initialize the store afterwards).
  Gpt(ParameterStore& store, const GptConfig& config)
      : Module(ModuleScope{store, ""}),
        config_(check(config)),
        wte_(scope("wte"), config.vocab, config.dim, /*tied_head=*/true),
        wpe_(scope("wpe"), config.ctx, config.dim) {
    static_assert(std::is_same_v<param_type, residual_type>,
                  "Gpt: the embeddings are added into the residual stream without a cast");
    register_child(wte_);
    register_child(wpe_);
    for (std::int64_t i = 0; i < config.layers; ++i) {
      blocks_.push_back(std::make_unique<Block<P>>(scope("blocks." + std::to_string(i)), config.dim, config.heads,
                                                   config.layers));
      register_child(*blocks_.back());
    }
    lnf_ = std::make_unique<LayerNorm<P>>(scope("lnf"), config.dim);
    register_child(*lnf_);
  }

  const GptConfig& config() const noexcept { return config_; }
  const Embedding<P>& wte() const noexcept { return wte_; }
  const Block<P>& block(std::size_t i) const { return *blocks_.at(i); }

  /// Logits of every position (sampling; the loss never forms them all). // ids (B, T) int32 or
  /// int64 -> (B * T, V) in the compute type
  template <class I>
  autograd::Var<compute_type> logits(autograd::Tape& tape, const Tensor<I>& ids) const {
    return wte_.head(tape, hidden(tape, ids));  // (B*T, V)
  }

  /// Mean cross-entropy of next-token prediction, through the tied head one chunk of rows at a
  /// time (autograd::linear_cross_entropy: the values of cross_entropy(logits), without the full
  /// logits or their gradient in memory). // ids, targets (B, T) -> (1)
  template <class I>
  autograd::Var<loss_type> loss(autograd::Tape& tape, const Tensor<I>& ids, const Tensor<I>& targets,
                                const autograd::LinearCrossEntropyOptions& options = {}) const {
    MIXTAPE_EXPECT(targets.shape() == ids.shape(), ShapeError, "Gpt: expected targets of the ids' shape ", ids.shape(),
                   ", got ", targets.shape());
    const auto h = hidden(tape, ids);  // (B*T, C)
    return autograd::linear_cross_entropy(tape, h, wte_.head_weight(tape), targets.flatten(), options);
  }

 private:
  /// The final LayerNorm's output, the head's input. // ids (B, T) -> (B * T, C) in the compute type
  template <class I>
  autograd::Var<compute_type> hidden(autograd::Tape& tape, const Tensor<I>& ids) const {
    MIXTAPE_EXPECT(ids.rank() == 2 && ids.size(1) >= 1 && ids.size(1) <= config_.ctx, ShapeError, "Gpt: expected ids (B, T) with 1 <= T <= ",
                   config_.ctx, ", got ", ids.shape());
    const std::int64_t b = ids.size(0), t = ids.size(1), c = config_.dim;
    auto x = autograd::reshape(tape, wte_(tape, ids), {b, t, c});          // (B, T, C)
    x = autograd::add_positional(tape, x, wpe_.table(tape));
    // Each residual add is fused into the LayerNorm after it (Block::forward_to).
    auto xn = blocks_.front()->ln1()(tape, x);
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const LayerNorm<P>& next = i + 1 < blocks_.size() ? blocks_[i + 1]->ln1() : *lnf_;
      auto out = blocks_[i]->forward_to(tape, x, xn, next);
      x = std::move(out.sum);
      xn = std::move(out.norm);
    }
    return autograd::reshape(tape, xn, {b * t, c});  // (B*T, C)
  }

  static const GptConfig& check(const GptConfig& c) {
    MIXTAPE_EXPECT(c.vocab > 0 && c.ctx > 0 && c.dim > 0 && c.layers > 0 && c.heads > 0 && c.dim % c.heads == 0,
                   ValueError, "Gpt: expected positive vocab, ctx, dim, layers and heads with dim divisible by heads, got "
                   "vocab ", c.vocab, ", ctx ", c.ctx, ", dim ", c.dim, ", layers ", c.layers, ", heads ", c.heads);
    return c;
  }

  GptConfig config_;
  Embedding<P> wte_;
  Embedding<P> wpe_;
  std::vector<std::unique_ptr<Block<P>>> blocks_;
  std::unique_ptr<LayerNorm<P>> lnf_;
};

MIXTAPE_BACKEND_END
}  // namespace mixtape::nn
