// Token files: llm.c shards and text files, the validation split, batches and their positions, and
// every malformed input refused with the file and the problem named.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "mixtape/io/token_file.hpp"

using namespace mixtape;
namespace fs = std::filesystem;

namespace {
fs::path scratch() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("mixtape_tokens_" + std::to_string(std::random_device{}()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

std::vector<std::int32_t> random_tokens(std::size_t n, std::int32_t vocab) {
  static std::mt19937 rng(Catch::rngSeed() ? Catch::rngSeed() : std::random_device{}());
  std::uniform_int_distribution<std::int32_t> u(0, vocab - 1);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = u(rng);
  return t;
}

/// Raw bytes of a shard with the given header fields and tokens.
void write_raw(const fs::path& p, std::int32_t magic, std::int32_t version, std::int32_t count,
               const std::vector<std::uint16_t>& tokens) {
  std::vector<std::int32_t> header(256, 0);
  header[0] = magic, header[1] = version, header[2] = count;
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(header.data()), 1024);
  f.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(2 * tokens.size()));
}
}  // namespace

TEST_CASE("llm.c shards: written, globbed in name order, split and batched", "[io][tokens]") {
  const auto a = random_tokens(300, 1000), b = random_tokens(200, 1000);
  io::write_shard((scratch() / "data_000.bin").string(), a);
  io::write_shard((scratch() / "data_001.bin").string(), b);
  CHECK(io::read_shard((scratch() / "data_000.bin").string(), 1000) == a);
  const auto d = io::TokenDataset::open((scratch() / "data_*.bin").string(), 1000, 100);
  REQUIRE(d.files().size() == 2);
  CHECK(d.size() == 500);
  CHECK(d.train_size() == 400);
  CHECK(d.val_size() == 100);
  std::vector<std::int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  CHECK(d.tokens() == all);
  // Batches: consecutive windows of B*T+1 tokens, targets shifted by one, wrapping inside the split.
  auto c = d.train_cursor();
  std::vector<std::int32_t> x(2 * 50), y(2 * 50);
  for (int k = 0; k < 3; ++k) {
    const std::int64_t p = c.position();
    c.next_batch(2, 50, x.data(), y.data());
    for (int i = 0; i < 100; ++i) {
      CHECK(x[i] == all[p + i]);
      CHECK(y[i] == all[p + i + 1]);
    }
  }
  CHECK(c.position() == 300);
  c.next_batch(2, 50, x.data(), y.data());  // 300 + 101 > 400: wraps to the start
  CHECK(x[0] == all[0]);
  CHECK(c.position() == 100);
  c.set_position(250);
  c.next_batch(2, 50, x.data(), y.data());
  CHECK(x[0] == all[250]);
  CHECK_THROWS_WITH(c.set_position(400), Catch::Contains("position 400 is outside the split [0, 400)"));
  auto v = d.val_cursor();
  v.next_batch(1, 99, x.data(), y.data());
  CHECK(x[0] == all[400]);
  CHECK(y[98] == all[499]);
  CHECK_THROWS_WITH(v.next_batch(1, 100, x.data(), y.data()), Catch::Contains("needs 101 tokens, the split has 100"));
}

TEST_CASE("a text file's bytes are its tokens", "[io][tokens]") {
  const std::string text = "hello, mixtape\n\xff";
  std::ofstream((scratch() / "t.txt"), std::ios::binary) << text;
  const auto d = io::TokenDataset::open((scratch() / "t.txt").string(), 256, 4);
  REQUIRE(d.size() == static_cast<std::int64_t>(text.size()));
  CHECK(d.tokens()[0] == 'h');
  CHECK(d.tokens().back() == 255);
  CHECK(d.val_size() == 4);
  CHECK_THROWS_WITH(io::TokenDataset::open((scratch() / "t.txt").string(), 128, 4),
                    Catch::Contains("the vocabulary must be at least 256, got 128"));
}

TEST_CASE("malformed token files are refused, naming the file and the problem", "[io][tokens][errors]") {
  const auto p = (scratch() / "bad.bin").string();
  write_raw(p, 12345, 1, 2, {1, 2});
  CHECK_THROWS_WITH(io::read_shard(p, 10), Catch::Contains("bad.bin': expected magic 20240520 (an llm.c .bin shard), got 12345"));
  write_raw(p, io::kShardMagic, 2, 2, {1, 2});
  CHECK_THROWS_WITH(io::read_shard(p, 10), Catch::Contains("expected version 1 (uint16 tokens), got 2"));
  write_raw(p, io::kShardMagic, 1, 5, {1, 2});
  CHECK_THROWS_WITH(io::read_shard(p, 10),
                    Catch::Contains("the header says 5 tokens (1034 bytes), the file has 1028 bytes (truncated)"));
  write_raw(p, io::kShardMagic, 1, 1, {1, 2});
  CHECK_THROWS_WITH(io::read_shard(p, 10), Catch::Contains("the header says 1 tokens (1026 bytes), the file has 1028 bytes"));
  write_raw(p, io::kShardMagic, 1, 3, {1, 2, 10});
  CHECK_THROWS_WITH(io::read_shard(p, 10), Catch::Contains("token 10 at position 2 is outside the vocabulary of 10"));
  std::ofstream((scratch() / "short.bin"), std::ios::binary) << "abc";
  CHECK_THROWS_WITH(io::read_shard((scratch() / "short.bin").string(), 10),
                    Catch::Contains("expected a 1024-byte header, got a file of 3 bytes"));
  CHECK_THROWS_WITH(io::read_shard((scratch() / "missing.bin").string(), 10), Catch::Contains("cannot open it"));
  CHECK_THROWS_WITH(io::TokenDataset::open((scratch() / "nothing_*.bin").string(), 10, 0),
                    Catch::Contains("no file matches"));
  CHECK_THROWS_WITH(io::write_shard((scratch() / "big.bin").string(), {70000}), Catch::Contains("does not fit uint16"));
}
