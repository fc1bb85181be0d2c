/// @file module.hpp
/// @brief `Module`: a node of the model tree with named parameters, named non-parameter state and
///        children, dotted full names matching PyTorch's (`blocks.3.qkv.weight`), and visitors.
///
/// Modules register their parameters into a ParameterStore while they are constructed; the store
/// owns the buffers, the module keeps pointers. A module is templated on its own policy, so a child
/// may use another policy than its parent (a bf16 body with an f32 head).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mixtape/nn/parameter.hpp"

namespace mixtape::nn {

/// Where a module registers itself: the store and its dotted name prefix.
struct ModuleScope {
  ParameterStore& store;
  std::string prefix;  ///< "" for the root, else "blocks.3.attn" etc.
  /// The scope of a child named `name`.
  ModuleScope child(const std::string& name) const { return {store, prefix.empty() ? name : prefix + "." + name}; }
  /// The full name of a parameter or state entry named `name` in this scope.
  std::string full(const std::string& name) const { return prefix.empty() ? name : prefix + "." + name; }
};

class Module {
 public:
  explicit Module(const ModuleScope& scope) : store_(&scope.store), prefix_(scope.prefix) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// The dotted prefix of this module ("" for the root).
  const std::string& prefix() const noexcept { return prefix_; }
  ParameterStore& store() const noexcept { return *store_; }

  /// Calls `f(full_name, parameter)` for this module's parameters and then its children's, in
  /// registration order. A tied parameter is visited under each name it has.
  void for_each_parameter(const std::function<void(const std::string&, Parameter&)>& f) const {
    for (const auto& [name, p] : parameters_) f(name, *p);
    for (const Module* c : children_) c->for_each_parameter(f);
  }
  /// Calls `f(full_name, tensor)` for every named non-parameter state tensor (FP8 scales, amax
  /// histories, running statistics), this module's first.
  void for_each_state(const std::function<void(const std::string&, const TensorRef&)>& f) const {
    for (const auto& [name, t] : state_) f(name, t);
    for (const Module* c : children_) c->for_each_state(f);
  }
  /// Elements of the parameters reachable from this module, each tied parameter once.
  std::int64_t parameter_count() const {
    std::vector<const Parameter*> seen;
    std::int64_t n = 0;
    for_each_parameter([&](const std::string&, Parameter& p) {
      for (const Parameter* s : seen)
        if (s == &p) return;
      seen.push_back(&p);
      n += p.numel();
    });
    return n;
  }

 protected:
  /// Registers a new parameter under this module's prefix.
  Parameter& register_parameter(const std::string& name, ParameterSpec spec) {
    spec.name = full(name);
    Parameter& p = store_->add(std::move(spec));
    parameters_.emplace_back(p.name(), &p);
    return p;
  }
  /// Uses a parameter another module registered (weight tying): one object, one gradient buffer.
  void register_tied(const std::string& name, Parameter& p) { parameters_.emplace_back(full(name), &p); }
  void register_child(Module& child) { children_.push_back(&child); }
  void register_state(const std::string& name, TensorRef t) { state_.emplace_back(full(name), std::move(t)); }
  std::string full(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  ModuleScope scope(const std::string& child_name) const { return ModuleScope{*store_, full(child_name)}; }

 private:
  ParameterStore* store_;
  std::string prefix_;
  std::vector<std::pair<std::string, Parameter*>> parameters_;
  std::vector<std::pair<std::string, TensorRef>> state_;
  std::vector<const Module*> children_;
};

}  // namespace mixtape::nn
