// Checkpoints: a save/load round trip restores every buffer and the step scalars bit for bit and the
// run continues identically; truncated, corrupt and mismatched files are refused, naming the tensor
// and what differs, with the model untouched; a failed save leaves the old file.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "mixtape/io/checkpoint.hpp"
#include "mixtape/io/markov.hpp"
#include "mixtape/nn/gpt.hpp"
#include "mixtape/nn/init.hpp"
#include "mixtape/optim/adamw.hpp"
#include "mixtape/optim/train_step.hpp"

using namespace mixtape;
namespace fs = std::filesystem;
namespace ag = mixtape::autograd;

namespace {
const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host();
  return ctx;
}

fs::path scratch() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("mixtape_ckpt_" + std::to_string(std::random_device{}()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

/// A small GPT with its optimizer and step, trained on the Markov stream.
template <PrecisionPolicy P>
struct Run {
  nn::ParameterStore store;
  nn::Gpt<P> gpt;
  optim::AdamW<P> opt;
  optim::TrainStep<P, optim::AdamW<P>> step;
  io::MarkovChain chain{32};
  io::MarkovStream data = chain.stream(0);
  explicit Run(std::int64_t dim = 32)
      : gpt(store, {.vocab = 32, .ctx = 8, .dim = dim, .layers = 1, .heads = 2}),
        opt((store.allocate(host()), nn::initialize(host(), store), host()), store, {.beta2 = 0.95, .weight_decay = 0.1}),
        step(host(), store, opt, {.schedule = {.base_lr = 1e-2, .warmup_steps = 3}}) {}
  void train(int steps) {
    auto x = Tensor<std::int32_t>::empty(host(), {4, 8}), y = Tensor<std::int32_t>::empty(host(), {4, 8});
    ag::Tape tape(host());
    for (int s = 0; s < steps; ++s) {
      data.next_batch(4, 8, x.data(), y.data());
      step(host(), tape, [&](ag::Tape& t, int) { return gpt.loss(t, x, y); });
    }
  }
  std::vector<std::vector<std::byte>> buffers() const {
    std::vector<std::vector<std::byte>> out;
    for (const auto& b : store.buffers()) {
      if (b.role == nn::ParamRole::grad) continue;
      const auto* p = static_cast<const std::byte*>(b.data.data());
      out.emplace_back(p, p + b.data.nbytes());
    }
    return out;
  }
};
}  // namespace

TEST_CASE("a checkpoint restores every buffer and the step scalars, and training continues bit for bit",
          "[io][checkpoint]") {
  const auto file = (scratch() / "round.safetensors").string();
  Run<precision::bf16_mixed> a;
  a.train(5);
  io::save_checkpoint(host(), a.store, a.step.scalars(), {{"data.position", std::to_string(a.data.state())}}, file);
  Run<precision::bf16_mixed> b;
  CHECK(b.buffers() != a.buffers());
  const auto meta = io::load_checkpoint(host(), b.store, b.step.scalars(), file);
  b.data.set_state(std::stoull(meta.at("data.position")));
  CHECK(meta.at("format") == "mixtape checkpoint 1");
  CHECK(b.buffers() == a.buffers());
  const auto va = a.step.scalars().read(host()), vb = b.step.scalars().read(host());
  CHECK(std::memcmp(&va, &vb, sizeof va) == 0);
  a.train(4);
  b.train(4);
  CHECK(b.buffers() == a.buffers());
  CHECK(b.step.scalars().read(host()).step == 9);
  // Other tools read the weights under the parameters' own names, in their real dtypes.
  const auto f = io::SafetensorsFile::read(file);
  CHECK(f.at("blocks.0.qkv.weight").dtype == DType::f32);
  CHECK(f.at("blocks.0.qkv.weight:compute").dtype == DType::bf16);
  CHECK(f.at("wte.weight:moment2").shape == Shape{32, 32});
  CHECK_FALSE(f.contains("wte.weight:grad"));
}

TEST_CASE("truncated, corrupt and mismatched checkpoints are refused and the model is left untouched",
          "[io][checkpoint][errors]") {
  const auto good = (scratch() / "good.safetensors").string();
  Run<precision::bf16_mixed> a;
  a.train(2);
  io::save_checkpoint(host(), a.store, a.step.scalars(), {}, good);
  std::vector<char> bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& name, const std::vector<char>& b) {
    const auto p = (scratch() / name).string();
    std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
    return p;
  };
  Run<precision::bf16_mixed> b;
  const auto before = b.buffers();
  auto refuse = [&](const std::string& path, const std::string& message) {
    INFO(path);
    CHECK_THROWS_WITH(io::load_checkpoint(host(), b.store, b.step.scalars(), path), Catch::Contains(message));
    CHECK(b.buffers() == before);
  };
  refuse(write("cut.safetensors", std::vector<char>(bytes.begin(), bytes.begin() + bytes.size() / 2)),
         "outside the");
  refuse(write("header_cut.safetensors", std::vector<char>(bytes.begin(), bytes.begin() + 100)),
         "runs past the end of the file");
  auto corrupt = bytes;
  corrupt[8] = '[';  // the header's opening brace
  refuse(write("corrupt.safetensors", corrupt), "malformed header");
  corrupt = bytes;
  const std::string text(corrupt.begin(), corrupt.end());
  corrupt[text.find("\"F32\"") + 1] = 'Q';
  refuse(write("garbled.safetensors", corrupt), "has dtype 'Q32', expected one of");
  refuse((scratch() / "absent.safetensors").string(), "cannot open it");

  Run<precision::f32_true> other_precision;
  CHECK_THROWS_WITH(io::load_checkpoint(host(), other_precision.store, other_precision.step.scalars(), good),
                    Catch::Contains(":compute' is not in the model"));
  Run<precision::bf16_mixed> other_shape(16);
  const auto shape_before = other_shape.buffers();
  CHECK_THROWS_WITH(io::load_checkpoint(host(), other_shape.store, other_shape.step.scalars(), good),
                    Catch::Contains("tensor 'wte.weight' is f32 (32, 32) in the file, the model has f32 (32, 16)"));
  CHECK(other_shape.buffers() == shape_before);
}

TEST_CASE("a failed save leaves the previous checkpoint intact", "[io][checkpoint][errors]") {
  const auto dir = scratch() / "keep";
  fs::create_directories(dir);
  const auto file = (dir / "checkpoint.safetensors").string();
  Run<precision::f32_true> a;
  io::save_checkpoint(host(), a.store, a.step.scalars(), {{"step", "0"}}, file);
  const auto size = fs::file_size(file);
  // The temporary file cannot be created where a directory of that name stands.
  fs::create_directories(file + ".tmp");
  a.train(1);
  CHECK_THROWS_WITH(io::save_checkpoint(host(), a.store, a.step.scalars(), {{"step", "1"}}, file),
                    Catch::Contains("cannot create"));
  CHECK(fs::file_size(file) == size);
  CHECK(io::SafetensorsFile::read(file).metadata("step") == "0");
}
