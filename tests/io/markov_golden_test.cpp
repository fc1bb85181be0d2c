// The Markov corpus against the PyTorch peer (markov_golden.inc, made by gen_markov_golden.py from
// torch_gpt.py's Markov class): tables and tokens bit for bit, the entropy rate within 1e-12.
// Built twice: with the tests' -ffp-contract=off, and as test_io_markov_contract with
// -O3 -march=native -ffp-contract=fast, where the header must still give the same bits.
#include <catch2/catch.hpp>

#include <bit>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "mixtape/io/markov.hpp"

using mixtape::io::MarkovChain;
using mixtape::io::MarkovStream;

namespace {

struct GoldenChain {
  std::int64_t vocab;
  double entropy_rate;
};

struct GoldenRow {
  std::int64_t vocab;
  std::int64_t token;
  std::int32_t successors[4];
  double weights[4];
  double probabilities[4];
  double cumulative[4];
};

struct GoldenBatch {
  std::int64_t vocab;
  std::uint64_t stream;
  bool fresh;  // restart the stream before this batch; otherwise continue the previous one
  std::int64_t batch;
  std::int64_t tokens;
  std::uint64_t state_after;
  std::int32_t inputs[64];   // (B, T), B T <= 64
  std::int32_t targets[64];  // (B, T)
};

#include "io/markov_golden.inc"

// One chain per vocabulary for the whole executable (the 50304 one takes a few tens of ms).
const MarkovChain& chain_for(std::int64_t vocab) {
  static std::map<std::int64_t, std::unique_ptr<MarkovChain>> chains;
  auto& c = chains[vocab];
  if (!c) c = std::make_unique<MarkovChain>(vocab);
  return *c;
}

std::uint64_t bits(double x) { return std::bit_cast<std::uint64_t>(x); }

}  // namespace

TEST_CASE("markov tables equal the peer's bit for bit", "[io][markov][golden]") {
  for (const GoldenRow& row : kGoldenRows) {
    const MarkovChain& chain = chain_for(row.vocab);
    INFO("vocab " << row.vocab << ", token " << row.token);
    REQUIRE(chain.fanout() == 4);
    const auto succ = chain.successors(row.token);
    const auto prob = chain.probabilities(row.token);
    const auto cum = chain.cumulative(row.token);
    for (int j = 0; j < 4; ++j) {
      INFO("successor " << j);
      CHECK(succ[j] == row.successors[j]);
      CHECK(bits(chain.weight(row.token, j)) == bits(row.weights[j]));
      CHECK(bits(prob[j]) == bits(row.probabilities[j]));
      CHECK(bits(cum[j]) == bits(row.cumulative[j]));
    }
  }
}

TEST_CASE("markov entropy rate equals the peer's within 1e-12 relative", "[io][markov][golden]") {
  // Both sides sum the same products in the same order, but the peer runs a fixed 500 power-iteration
  // steps where mixtape stops at an L1 change of 1e-14 (an error of that order in pi, so of at most
  // 1e-14 log(F) in H); 1e-12 leaves two orders of magnitude for that and for log's last bit.
  for (const GoldenChain& g : kGoldenChains) {
    const MarkovChain& chain = chain_for(g.vocab);
    INFO("vocab " << g.vocab << ": " << chain.stationary_iterations() << " power-iteration steps, last change "
                  << chain.stationary_change());
    CHECK(chain.stationary_change() <= MarkovChain::kStationaryTolerance);
    CHECK(std::abs(chain.entropy_rate() - g.entropy_rate) <= 1e-12 * g.entropy_rate);
  }
  // The figure in ../shared/reference/README.md.
  CHECK(std::round(chain_for(256).entropy_rate() * 1e4) == 13294.0);
}

TEST_CASE("markov streams yield the peer's tokens and states", "[io][markov][golden]") {
  std::unique_ptr<MarkovStream> stream;
  for (const GoldenBatch& g : kGoldenBatches) {
    INFO("vocab " << g.vocab << ", stream " << g.stream << (g.fresh ? ", fresh" : ", continued") << ", B " << g.batch
                  << ", T " << g.tokens);
    const MarkovChain& chain = chain_for(g.vocab);
    if (g.fresh) {
      stream = std::make_unique<MarkovStream>(chain.stream(g.stream));
    }
    REQUIRE(stream);
    REQUIRE(&stream->chain() == &chain);
    const std::int64_t n = g.batch * g.tokens;
    std::vector<std::int32_t> inputs(static_cast<std::size_t>(n), -1), targets(static_cast<std::size_t>(n), -1);
    stream->next_batch(g.batch, g.tokens, inputs.data(), targets.data());
    int wrong = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      if (inputs[i] != g.inputs[i] || targets[i] != g.targets[i]) {
        if (++wrong <= 4) {
          FAIL_CHECK("element " << i << ": got (" << inputs[i] << ", " << targets[i] << "), peer (" << g.inputs[i]
                                << ", " << g.targets[i] << ")");
        }
      }
    }
    CHECK(wrong == 0);
    CHECK(stream->state() == g.state_after);
  }
}

TEST_CASE("markov digest: the bits of pi and H, for comparing builds", "[.][digest]") {
  // Hidden (run with "[digest]"): same_bits.cmake runs it in test_io_markov (-ffp-contract=off) and
  // test_io_markov_contract (-ffp-contract=fast -march=native) and requires the same lines.
  for (const GoldenChain& g : kGoldenChains) {
    const MarkovChain& chain = chain_for(g.vocab);
    std::uint64_t digest = 0xcbf29ce484222325ull;  // FNV-1a over the 64-bit words of pi
    for (const double p : chain.stationary()) digest = (digest ^ bits(p)) * 0x100000001b3ull;
    std::printf("markov-digest vocab %lld entropy %a steps %d pi %016llx\n", static_cast<long long>(g.vocab),
                chain.entropy_rate(), chain.stationary_iterations(), static_cast<unsigned long long>(digest));
  }
  SUCCEED();
}
