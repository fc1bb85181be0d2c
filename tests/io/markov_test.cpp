// Properties of the Markov corpus that the golden file does not pin: the sampling rule at the
// cumulative boundaries, batch structure, saving and restoring a stream's position, independence
// of streams, the entropy rate against the empirical loss of the true distribution, bad arguments.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixtape/io/markov.hpp"

using namespace mixtape;
using io::MarkovChain;
using io::MarkovStream;

namespace {

/// Test seed: MIXTAPE_TEST_SEED when set (to reproduce a failure), otherwise fresh.
std::uint64_t test_seed() {
  if (const char* s = std::getenv("MIXTAPE_TEST_SEED")) return std::strtoull(s, nullptr, 0);
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

/// The peer's scan, written independently of the library's branch-free count.
std::int32_t scan_next(const MarkovChain& chain, std::int64_t token, double u) {
  const auto succ = chain.successors(token);
  const auto prob = chain.probabilities(token);
  double acc = 0.0;
  for (std::size_t j = 0; j < succ.size(); ++j) {
    acc += prob[j];
    if (u < acc) return succ[j];
  }
  return succ.back();
}

/// P(b | a), summing a repeated successor's probabilities.
double transition(const MarkovChain& chain, std::int64_t a, std::int32_t b) {
  const auto succ = chain.successors(a);
  const auto prob = chain.probabilities(a);
  double p = 0.0;
  for (std::size_t j = 0; j < succ.size(); ++j) p += succ[j] == b ? prob[j] : 0.0;
  return p;
}

struct Batch {
  std::vector<std::int32_t> inputs, targets;  // (B, T) each
  bool operator==(const Batch&) const = default;
};

Batch draw(MarkovStream& s, std::int64_t batch, std::int64_t tokens) {
  Batch b{std::vector<std::int32_t>(static_cast<std::size_t>(batch * tokens)),
          std::vector<std::int32_t>(static_cast<std::size_t>(batch * tokens))};
  s.next_batch(batch, tokens, b.inputs.data(), b.targets.data());
  return b;
}

// A stream keeps a pointer to its chain: making one from a temporary chain does not compile.
template <class C>
concept StreamFrom = requires { std::declval<C>().stream(0); };
static_assert(StreamFrom<const MarkovChain&> && !StreamFrom<const MarkovChain> && !StreamFrom<MarkovChain>);
static_assert(std::is_constructible_v<MarkovStream, const MarkovChain&, std::uint64_t>);
static_assert(!std::is_constructible_v<MarkovStream, MarkovChain, std::uint64_t>);

}  // namespace

TEST_CASE("markov defaults, stream starts and the splitmix64 known answer", "[io][markov]") {
  const MarkovChain chain(256);
  CHECK(chain.vocab() == 256);
  CHECK(chain.fanout() == 4);
  CHECK(chain.seed() == 1234);
  // splitmix64 from state 0 (Vigna's reference implementation): e220a8397b1dcdaf, 6e789e6aa1b965f4.
  std::uint64_t state = 0;
  CHECK(io::detail::splitmix64_next(state) == 0xe220a8397b1dcdafull);
  CHECK(io::detail::splitmix64_next(state) == 0x6e789e6aa1b965f4ull);
  CHECK(MarkovStream::start_state(1234, 0) == (1234ull ^ 0x5DEECE66Dull));
  CHECK(MarkovStream::start_state(1234, 3) == (1234ull ^ 0x5DEECE66Dull) + 3 * 0xD1B54A32D192ED03ull);
  const MarkovStream s = chain.stream(io::kMarkovValidationStream);
  CHECK(s.index() == 1);
  CHECK(s.state() == MarkovStream::start_state(1234, 1));
}

TEST_CASE("markov tables: probabilities sum to one, cumulative sums are the running sums", "[io][markov]") {
  for (const auto& [vocab, fanout, seed] : {std::tuple<std::int64_t, std::int64_t, std::uint64_t>{256, 4, 1234},
                                           {2, 3, 1234}, {97, 1, 7}, {1000, 7, 99}}) {
    const MarkovChain chain(vocab, fanout, seed);
    INFO("vocab " << vocab << ", fanout " << fanout << ", seed " << seed);
    for (std::int64_t a = 0; a < vocab; ++a) {
      const auto succ = chain.successors(a);
      const auto prob = chain.probabilities(a);
      const auto cum = chain.cumulative(a);
      REQUIRE(static_cast<std::int64_t>(succ.size()) == fanout);
      double total = 0.0, running = 0.0;
      for (std::int64_t j = 0; j < fanout; ++j) total += chain.weight(a, j);
      for (std::int64_t j = 0; j < fanout; ++j) {
        const double w = chain.weight(a, j);
        CHECK((w >= 1.0 && w < 4.0));
        CHECK((succ[j] >= 0 && succ[j] < vocab));
        CHECK(prob[j] == w / total);
        running += prob[j];
        CHECK(cum[j] == running);
      }
      // F divisions and F - 1 additions of numbers in (0, 1], each off by half an ulp at most.
      CHECK(std::abs(cum[fanout - 1] - 1.0) <= 2.0 * fanout * std::numeric_limits<double>::epsilon());
    }
  }
  // Another seed gives another chain.
  const MarkovChain a(256), b(256, 4, 1235);
  CHECK_FALSE(std::equal(a.successors(0).begin(), a.successors(0).end(), b.successors(0).begin()));
}

TEST_CASE("markov weight 1 + 3u rounds the same fused or not", "[io][markov]") {
  // markov_weight relies on this identity instead of a guard against contraction (its comment gives
  // the proof); std::fma rounds once whatever the build's contraction setting.
  const std::uint64_t seed = test_seed();
  INFO("MIXTAPE_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  std::vector<std::uint64_t> ks;
  for (const std::uint64_t edge : {std::uint64_t{0}, (std::uint64_t{1} << 53) / 3, (std::uint64_t{2} << 53) / 3,
                                   (std::uint64_t{1} << 53) - 1}) {
    for (std::uint64_t d = 0; d < 64; ++d) ks.push_back(std::min(edge + d, (std::uint64_t{1} << 53) - 1));
    for (std::uint64_t d = 1; d < 64 && d <= edge; ++d) ks.push_back(edge - d);
  }
  for (int i = 0; i < 200000; ++i) ks.push_back(rng() >> 11);
  int wrong = 0;
  for (const std::uint64_t k : ks) {
    const double u = static_cast<double>(k) * 0x1p-53;
    if (io::detail::markov_weight(k << 11) != std::fma(u, 3.0, 1.0) && ++wrong <= 4) FAIL_CHECK("k = " << k);
  }
  CHECK(wrong == 0);
}

TEST_CASE("markov batches equal the spec's one-sequence-at-a-time loop", "[io][markov]") {
  // next_batch samples 8 sequences side by side from precomputed generator states; this is the
  // spec's loop (one draw after another, the peer's scan) for batch sizes around and past 8.
  for (const std::int64_t vocab : {256, 50304}) {
    const MarkovChain chain(vocab);
    MarkovStream s = chain.stream(3);
    std::uint64_t state = s.state();
    for (const auto& [batch, tokens] :
         {std::pair<std::int64_t, std::int64_t>{16, 128}, {13, 7}, {9, 1}, {8, 33}, {7, 2}, {25, 40}}) {
      INFO("vocab " << vocab << ", B " << batch << ", T " << tokens);
      std::vector<std::int32_t> in, out;
      for (std::int64_t b = 0; b < batch; ++b) {
        auto token = static_cast<std::int32_t>(io::detail::splitmix64_next(state) % static_cast<std::uint64_t>(vocab));
        for (std::int64_t t = 0; t < tokens; ++t) {
          in.push_back(token);
          token = scan_next(chain, token, io::detail::unit_double(io::detail::splitmix64_next(state)));
          out.push_back(token);
        }
      }
      CHECK(draw(s, batch, tokens) == Batch{in, out});
      CHECK(s.state() == state);
    }
  }
}

TEST_CASE("markov sampling rule equals the peer's scan, also on the cumulative boundaries", "[io][markov]") {
  const std::uint64_t seed = test_seed();
  INFO("MIXTAPE_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  for (const auto& [vocab, fanout] : {std::pair<std::int64_t, std::int64_t>{256, 4}, {2, 5}, {50, 1}, {300, 7}}) {
    const MarkovChain chain(vocab, fanout);
    INFO("vocab " << vocab << ", fanout " << fanout);
    for (std::int64_t a = 0; a < vocab; ++a) {
      std::vector<double> us = {0.0, 1.0 - 0x1p-53};
      for (const double c : chain.cumulative(a)) {
        us.push_back(c);
        us.push_back(std::nextafter(c, 0.0));
        us.push_back(std::nextafter(c, 2.0));
      }
      for (int i = 0; i < 8; ++i) us.push_back(io::detail::unit_double(rng()));
      for (const double u : us) {
        INFO("token " << a << ", u " << u);
        CHECK(chain.next_token(a, u) == scan_next(chain, a, u));
      }
    }
  }
}

TEST_CASE("markov batches are successor chains, targets shifted by one", "[io][markov]") {
  for (const auto& [vocab, fanout] : {std::pair<std::int64_t, std::int64_t>{256, 4}, {2, 3}, {1001, 2}}) {
    const MarkovChain chain(vocab, fanout);
    MarkovStream s = chain.stream(4);
    for (const auto& [batch, tokens] : {std::pair<std::int64_t, std::int64_t>{16, 128}, {3, 1}, {1, 2}, {5, 17}}) {
      INFO("vocab " << vocab << ", B " << batch << ", T " << tokens);
      const Batch b = draw(s, batch, tokens);
      int wrong = 0;
      for (std::int64_t r = 0; r < batch; ++r) {
        for (std::int64_t t = 0; t < tokens; ++t) {
          const auto i = static_cast<std::size_t>(r * tokens + t);
          const bool shifted = t + 1 == tokens || b.targets[i] == b.inputs[i + 1];
          const bool successor = transition(chain, b.inputs[i], b.targets[i]) > 0.0;
          wrong += shifted && successor ? 0 : 1;
        }
      }
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("markov stream: restoring the state reproduces the continuation", "[io][markov]") {
  const std::uint64_t seed = test_seed();
  INFO("MIXTAPE_TEST_SEED=" << seed);
  std::mt19937_64 rng(seed);
  const MarkovChain chain(256);
  MarkovStream s = chain.stream(0);
  for (int round = 0; round < 8; ++round) {
    const auto batch = static_cast<std::int64_t>(1 + rng() % 9), tokens = static_cast<std::int64_t>(1 + rng() % 70);
    draw(s, batch, tokens);  // move somewhere
    const std::uint64_t saved = s.state();
    const Batch first = draw(s, batch, tokens), second = draw(s, tokens, batch);
    const std::uint64_t end = s.state();
    // The same stream object, rewound.
    s.set_state(saved);
    CHECK(draw(s, batch, tokens) == first);
    CHECK(draw(s, tokens, batch) == second);
    CHECK(s.state() == end);
    // A new stream object restored from a checkpointed state.
    MarkovStream restored(chain, 0);
    restored.set_state(saved);
    CHECK(draw(restored, batch, tokens) == first);
  }
  // reset() returns to the start; a batch is its sequences drawn one at a time.
  s.reset();
  const Batch whole = draw(s, 4, 9);
  s.reset();
  std::vector<std::int32_t> in, out;
  for (int r = 0; r < 4; ++r) {
    const Batch one = draw(s, 1, 9);
    in.insert(in.end(), one.inputs.begin(), one.inputs.end());
    out.insert(out.end(), one.targets.begin(), one.targets.end());
  }
  CHECK(whole == Batch{in, out});
}

TEST_CASE("markov stream: skip_batches lands where drawing would", "[io][markov]") {
  const MarkovChain chain(256);
  MarkovStream drawn = chain.stream(2), skipped = chain.stream(2);
  for (int i = 0; i < 5; ++i) draw(drawn, 3, 11);
  skipped.skip_batches(5, 3, 11);
  CHECK(skipped.state() == drawn.state());
  CHECK(draw(skipped, 2, 7) == draw(drawn, 2, 7));
  // A count large enough to wrap 2^64 draws wraps exactly like the draws would.
  MarkovStream far = chain.stream(2), near = chain.stream(2);
  far.skip_batches(std::uint64_t{1} << 62, 2, 1);  // 2^62 batches of 2 (1 + 1) = 2^64 draws
  CHECK(far.state() == near.state());
}

TEST_CASE("markov streams are independent", "[io][markov]") {
  // Stream j + d is stream j shifted by n(d) = d * stride / gamma mod 2^64 draws (both constants are
  // odd, so gamma is invertible mod 2^64). No two streams a distance d < 65536 apart come within
  // 2^47 draws of each other.
  std::uint64_t inverse = io::detail::kSplitMixGamma;  // Newton: x <- x (2 - g x), 3 -> 6 -> ... 96 bits
  for (int i = 0; i < 5; ++i) inverse *= 2 - io::detail::kSplitMixGamma * inverse;
  REQUIRE(inverse * io::detail::kSplitMixGamma == 1);
  const std::uint64_t per_stream = io::detail::kStreamStride * inverse;
  std::uint64_t closest = ~std::uint64_t{0};
  for (std::uint64_t d = 1; d < 65536; ++d) {
    const std::uint64_t n = d * per_stream;
    closest = std::min({closest, n, 0 - n});
  }
  CHECK(closest >= (std::uint64_t{1} << 47));
  // The shift itself: stream 2 moved forward n(3) draws is stream 5, token for token.
  const MarkovChain chain(256);
  MarkovStream s2 = chain.stream(2), s5 = chain.stream(5);
  s2.set_state(s2.state() + 3 * per_stream * io::detail::kSplitMixGamma);
  CHECK(s2.state() == s5.state());
  CHECK(draw(s2, 2, 5) == draw(s5, 2, 5));

  // Tokens of two streams agree at a position about as often as two independent stationary draws:
  // P(match) = sum_a pi_a^2, plus the start tokens' uniform law. Bound: mean + 6 sd of the binomial.
  const std::int64_t batch = 16, tokens = 128, n = batch * tokens;
  double match_p = 0.0;
  for (const double p : chain.stationary()) match_p += p * p;
  match_p = std::max(match_p, 1.0 / 256);
  const double bound = n * match_p + 6.0 * std::sqrt(n * match_p * (1 - match_p));
  std::vector<Batch> firsts;
  for (std::uint64_t k = 0; k < 6; ++k) {
    MarkovStream s = chain.stream(k);
    firsts.push_back(draw(s, batch, tokens));
  }
  for (std::size_t i = 0; i < firsts.size(); ++i) {
    for (std::size_t j = i + 1; j < firsts.size(); ++j) {
      std::int64_t same = 0;
      for (std::int64_t e = 0; e < n; ++e) same += firsts[i].targets[e] == firsts[j].targets[e] ? 1 : 0;
      INFO("streams " << i << " and " << j << ": " << same << " equal tokens of " << n << ", bound " << bound);
      CHECK(static_cast<double>(same) <= bound);
    }
  }
}

TEST_CASE("markov stationary distribution is a fixed point of the chain", "[io][markov]") {
  const MarkovChain chain(256);
  const auto pi = chain.stationary();
  CHECK(chain.stationary_iterations() < MarkovChain::kMaxPowerIterations);
  double total = 0.0;
  std::vector<double> next(pi.size(), 0.0);
  for (std::size_t a = 0; a < pi.size(); ++a) {
    CHECK(pi[a] >= 0.0);
    total += pi[a];
    const auto succ = chain.successors(static_cast<std::int64_t>(a));
    const auto prob = chain.probabilities(static_cast<std::int64_t>(a));
    for (std::size_t j = 0; j < succ.size(); ++j) next[static_cast<std::size_t>(succ[j])] += pi[a] * prob[j];
  }
  // Each of the 256 sums (and each step's 1024 products) adds at most about eps per unit of mass.
  CHECK(std::abs(total - 1.0) <= 1024 * std::numeric_limits<double>::epsilon());
  double change = 0.0;
  for (std::size_t a = 0; a < pi.size(); ++a) change += std::abs(next[a] - pi[a]);
  CHECK(change <= 1e-13);
}

TEST_CASE("markov entropy rate equals the empirical loss of the true distribution", "[io][markov]") {
  // Mean of -log P(target | input) over B = 64 independent sequences of T = 1024 tokens. The
  // sequences are independent, so the spread of their means gives the standard error including the
  // chain's autocorrelation; the start tokens (uniform, not stationary) bias the mean by O(1 / T)
  // relative, far below the bound of 6 standard errors.
  const MarkovChain chain(256);
  MarkovStream s = chain.stream(7);
  const std::int64_t batch = 64, tokens = 1024;
  const Batch b = draw(s, batch, tokens);
  std::vector<double> means;
  for (std::int64_t r = 0; r < batch; ++r) {
    double sum = 0.0;
    for (std::int64_t t = 0; t < tokens; ++t) {
      const auto i = static_cast<std::size_t>(r * tokens + t);
      sum -= std::log(transition(chain, b.inputs[i], b.targets[i]));
    }
    means.push_back(sum / tokens);
  }
  double mean = 0.0, var = 0.0;
  for (const double m : means) mean += m / batch;
  for (const double m : means) var += (m - mean) * (m - mean) / (batch - 1);
  const double stderr_mean = std::sqrt(var / batch);
  INFO("empirical " << mean << " +- " << stderr_mean << ", entropy rate " << chain.entropy_rate());
  CHECK(std::abs(mean - chain.entropy_rate()) <= 6.0 * stderr_mean);
  CHECK(stderr_mean < 0.02);  // the check above is not vacuous
}

TEST_CASE("markov bad arguments throw ValueError naming the value", "[io][markov][errors]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_AS(MarkovChain(1), ValueError);
  CHECK_THROWS_WITH(MarkovChain(1), Contains("vocab") && Contains("got 1"));
  CHECK_THROWS_WITH(MarkovChain(0), Contains("got 0"));
  CHECK_THROWS_WITH(MarkovChain(-5), Contains("got -5"));
  CHECK_THROWS_WITH(MarkovChain(std::int64_t{1} << 31), Contains("got 2147483648"));
  CHECK_THROWS_AS(MarkovChain(256, 0), ValueError);
  CHECK_THROWS_WITH(MarkovChain(256, 0), Contains("fanout") && Contains("got 0"));

  const MarkovChain chain(256);
  CHECK_THROWS_WITH(chain.successors(256), Contains("token") && Contains("got 256"));
  CHECK_THROWS_WITH(chain.probabilities(-1), Contains("got -1"));
  CHECK_THROWS_WITH(chain.next_token(300, 0.5), Contains("got 300"));
  CHECK_THROWS_WITH(chain.weight(0, 4), Contains("got 4"));

  MarkovStream s = chain.stream(0);
  std::vector<std::int32_t> in(64), out(64);
  CHECK_THROWS_AS(s.next_batch(0, 8, in.data(), out.data()), ValueError);
  CHECK_THROWS_WITH(s.next_batch(0, 8, in.data(), out.data()), Contains("B") && Contains("got 0"));
  CHECK_THROWS_WITH(s.next_batch(-3, 8, in.data(), out.data()), Contains("got -3"));
  CHECK_THROWS_AS(s.next_batch(2, 0, in.data(), out.data()), ValueError);
  CHECK_THROWS_WITH(s.next_batch(2, 0, in.data(), out.data()), Contains("T") && Contains("got 0"));
  CHECK_THROWS_WITH(s.next_batch(2, -1, in.data(), out.data()), Contains("got -1"));
  CHECK_THROWS_AS(s.next_batch(2, 8, nullptr, out.data()), ValueError);
  CHECK_THROWS_WITH(s.skip_batches(1, 2, 0), Contains("got 0"));
  CHECK_THROWS_AS(s.next_batch(std::int64_t{1} << 40, std::int64_t{1} << 40, in.data(), out.data()), ValueError);
  // The checked overload: both spans must hold B T elements.
  CHECK_THROWS_AS(s.next_batch(2, 8, std::span(in).first(15), std::span(out).first(16)), ShapeError);
  CHECK_THROWS_WITH(s.next_batch(2, 8, std::span(in).first(16), std::span(out).first(17)),
                    Contains("16") && Contains("got 17"));
  // Nothing above moved the stream.
  CHECK(s.state() == MarkovStream::start_state(1234, 0));
  s.next_batch(2, 8, std::span(in).first(16), std::span(out).first(16));
  CHECK(s.state() == MarkovStream::start_state(1234, 0) + 18 * io::detail::kSplitMixGamma);
}
