/// @file checkpoint.hpp
/// @brief Training checkpoints in safetensors: every buffer of every parameter in its stored
///        format and real dtype (weights, compute copies, master copies, AdamW / SGD moments), the
///        step scalars (step, lr schedule position, loss scale and growth tracker, skipped count),
///        and string metadata the trainer adds (model shape, precision, data position, RNG offset),
///        so a resumed run continues bit for bit on the same device and build.
///
/// Names: a parameter's weight under its own name (`blocks.0.qkv.weight`, loadable by other tools),
/// its other roles as `blocks.0.qkv.weight:compute`, `:master`, `:moment1`, `:moment2`; the step
/// scalars as `train.step_scalars` (U8, the 64-byte StepScalarValues). Gradients are not saved: a
/// step ends with them forgotten.
///
/// Loading checks everything before it writes anything: every tensor the model has must be in the
/// file with the same dtype and shape, and the file may hold nothing else; a mismatch is a
/// ValueError naming the tensor and both sides, and the model is left untouched. Saving writes a
/// temporary file and renames it (safetensors.hpp), so an existing checkpoint survives a failed
/// write.
///
/// @code
///   io::save_checkpoint(ctx, store, step.scalars(), {{"step", "800"}}, "run/checkpoint.safetensors");
///   auto meta = io::load_checkpoint(ctx, store, step.scalars(), "run/checkpoint.safetensors");
/// @endcode
#pragma once

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "mixtape/core/transfer.hpp"
#include "mixtape/io/safetensors.hpp"
#include "mixtape/nn/parameter.hpp"
#include "mixtape/optim/step_scalars.hpp"

namespace mixtape::io {

inline constexpr const char* kStepScalarsName = "train.step_scalars";

namespace detail {

/// The checkpoint name of role `r` of parameter `name`.
inline std::string checkpoint_name(const std::string& name, nn::ParamRole r) {
  return r == nn::ParamRole::weight ? name : name + ":" + std::string(nn::param_role_name(r));
}

/// Every (name, view) a store's checkpoint holds, in store order.
inline std::vector<std::pair<std::string, TensorRef>> checkpoint_views(const nn::ParameterStore& store) {
  std::vector<std::pair<std::string, TensorRef>> out;
  for (std::size_t i = 0; i < store.size(); ++i) {
    const nn::Parameter& p = store[i];
    for (int r = 0; r < nn::kParamRoleCount; ++r) {
      const auto role = static_cast<nn::ParamRole>(r);
      if (role == nn::ParamRole::grad || !p.has(role)) continue;
      out.emplace_back(checkpoint_name(p.name(), role), p.view(role));
    }
  }
  return out;
}

/// The bytes of a view, copied to the host (waits for the device).
inline std::vector<std::byte> host_bytes(const ExecutionContext& ctx, const TensorRef& v) {
  std::vector<std::byte> out(static_cast<std::size_t>(v.nbytes()));
  visit_dtype(v.dtype(), [&]<class T>() {
    if constexpr (ScalarElement<T>) {
      auto h = Tensor<T>::wrap(reinterpret_cast<T*>(out.data()), v.shape());
      mixtape::copy(ctx, v, TensorRef(h));
    }
  });
  ctx.synchronize();
  return out;
}

}  // namespace detail

/// Writes `path` (atomically): the store's buffers, the step scalars and `metadata`.
/// @throws ValueError when the file cannot be written (an existing `path` is then unchanged)
inline void save_checkpoint(const ExecutionContext& ctx, const nn::ParameterStore& store,
                            const optim::StepScalars& scalars, const std::map<std::string, std::string>& metadata,
                            const std::string& path) {
  MIXTAPE_EXPECT(store.allocated(), ValueError, "save_checkpoint: the parameter store is not allocated");
  SafetensorsWriter w;
  for (const auto& [name, view] : detail::checkpoint_views(store)) {
    const auto bytes = detail::host_bytes(ctx, view);
    w.add(name, view.dtype(), view.shape(), bytes);
  }
  const optim::StepScalarValues v = scalars.read(ctx);
  w.add(kStepScalarsName, DType::u8, Shape{static_cast<std::int64_t>(sizeof v)},
        std::as_bytes(std::span<const optim::StepScalarValues>(&v, 1)));
  for (const auto& [k, val] : metadata) w.metadata(k, val);
  w.metadata("format", "mixtape checkpoint 1");
  w.write(path);
}

/// Copies a checkpoint file into the store and the step scalars after checking that it matches
/// the model exactly; returns the metadata (a caller checks its own keys first, from f.metadata()).
/// @throws ValueError for a missing, truncated or corrupt file, a missing or extra tensor, or a
///         dtype or shape that differs (naming the tensor, the file's and the model's); nothing
///         is written then
inline std::map<std::string, std::string> load_checkpoint(const ExecutionContext& ctx, nn::ParameterStore& store,
                                                          optim::StepScalars& scalars, const SafetensorsFile& f) {
  MIXTAPE_EXPECT(store.allocated(), ValueError, "load_checkpoint: the parameter store is not allocated");
  const std::string& path = f.path();
  const auto views = detail::checkpoint_views(store);
  std::map<std::string, int> expected;
  for (const auto& [name, view] : views) {
    expected[name] = 1;
    MIXTAPE_EXPECT(f.contains(name), ValueError, "checkpoint '", path, "': no tensor '", name, "' (the model has ",
                   view.dtype(), " ", view.shape(), "); a checkpoint of another model or precision?");
    const auto& t = f.at(name);
    MIXTAPE_EXPECT(t.dtype == view.dtype() && t.shape == view.shape(), ValueError, "checkpoint '", path,
                   "': tensor '", name, "' is ", t.dtype, " ", t.shape, " in the file, the model has ", view.dtype(),
                   " ", view.shape());
  }
  for (const auto& [name, t] : f.tensors()) {
    if (name == kStepScalarsName) continue;
    MIXTAPE_EXPECT(expected.count(name) != 0, ValueError, "checkpoint '", path, "': tensor '", name,
                   "' is not in the model; a checkpoint of another model or precision?");
  }
  const auto& s = f.at(kStepScalarsName);
  MIXTAPE_EXPECT(s.dtype == DType::u8 && s.shape == Shape{static_cast<std::int64_t>(sizeof(optim::StepScalarValues))},
                 ValueError, "checkpoint '", path, "': '", kStepScalarsName, "' must be ",
                 sizeof(optim::StepScalarValues), " U8 bytes, got ", s.dtype, " ", s.shape);
  // Everything matches: now write.
  for (const auto& [name, view] : views) {
    const auto& t = f.at(name);
    visit_dtype(view.dtype(), [&]<class T>() {
      if constexpr (ScalarElement<T>) {
        // The file does not align its tensors: stage each one in an aligned buffer.
        std::vector<T> staged(static_cast<std::size_t>(view.numel()));
        std::memcpy(staged.data(), t.data.data(), t.data.size());
        mixtape::copy(ctx, TensorRef(Tensor<T>::wrap(staged.data(), view.shape())), view);
        ctx.synchronize();
      }
    });
  }
  optim::StepScalarValues v;
  std::memcpy(&v, s.data.data(), sizeof v);
  scalars.write(ctx, v);
  ctx.synchronize();
  return f.metadata();
}

/// load_checkpoint from a path (the file is read once, checked, then copied in).
inline std::map<std::string, std::string> load_checkpoint(const ExecutionContext& ctx, nn::ParameterStore& store,
                                                          optim::StepScalars& scalars, const std::string& path) {
  return load_checkpoint(ctx, store, scalars, SafetensorsFile::read(path));
}

}  // namespace mixtape::io
