/// @file tape.hpp
/// @brief The explicit reverse-mode tape: one node per tensor op in an arena, gradient slots with
///        "first write assigns, later writes accumulate", versioned saved tensors, a no-grad scope
///        and per-parameter gradient-ready hooks.
///
/// There is no global or thread-local tape: ops take a `Tape&` (design.md, "The tape"). A step is
/// record (forward) -> `backward(loss)` -> `clear()`; the arena keeps its blocks, so recording the
/// same step again allocates nothing on the host.
///
/// Memory during backward follows torch's: as soon as a node's backward has run, the node is
/// destroyed (its saved tensors freed) and so are the gradients of its outputs, which nothing reads
/// again. What stays is the gradient of every leaf (and parameter sink), and of any intermediate
/// value marked with `retain_grad` before backward. Without this the peak of a step is every saved
/// activation plus every intermediate gradient at once (GPT-2 small's step peaked at 11.3 GB on an
/// H100 that way, about 3 GB of it gradients nothing would read again: bench/NOTES.md).
///
/// @code
///   autograd::Tape tape(ctx);
///   auto x = tape.leaf(x_tensor);                    // requires grad
///   auto y = autograd::mul(tape, x, x);              // records one node
///   auto loss = autograd::sum(tape, y);
///   tape.backward(loss);                             // x's gradient: 2x
///   Tensor<float> gx = tape.grad(x);
/// @endcode
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mixtape/autograd/arena.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/core/transfer.hpp"

namespace mixtape::autograd {

class Tape;

/// Where a parameter's gradient goes: a view of the parameter store's flat gradient buffer, in the
/// policy's gradient type (which may differ from the value's type, e.g. f32 gradients of a bf16
/// compute copy). `has_data` is false after the optimizer's zero_grad, so the first write of the
/// next backward assigns; writes of later micro-batches accumulate (gradient accumulation).
struct GradSink {
  TensorRef grad;
  bool has_data = false;
  /// Called once per backward when every use of the parameter has written its gradient
  /// (data-parallel overlap starts the all-reduce of a bucket here). A tied parameter used through
  /// several values (the token embedding and the LM head) fires once, after its last use.
  std::function<void()> on_ready;
  /// Uses recorded but not yet back-propagated, over every value that routes here (kept by the tape).
  int pending_uses = 0;
};

/// A tensor saved for backward, with the storage version it had when saved.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(TensorRef t) : tensor_(std::move(t)), version_(tensor_.storage()->version()) {}
  /// The tensor; throws ValueError if it was modified in place after being saved.
  template <Element T>
  Tensor<T> get(const char* op) const {
    MIXTAPE_EXPECT(tensor_.storage()->version() == version_, ValueError, op,
                   ": a tensor saved for backward was modified in place (version ", version_, " when saved, ",
                   tensor_.storage()->version(), " now); clone it before modifying");
    return tensor_.as<T>();
  }

 private:
  TensorRef tensor_;
  std::uint64_t version_ = 0;
};

/// One recorded op. Its backward reads the gradients of its outputs and writes those of its inputs.
class Node {
 public:
  virtual ~Node() = default;
  virtual void backward(Tape& tape) = 0;
  virtual const char* name() const noexcept = 0;

  static constexpr int kMaxInputs = 8;
  static constexpr int kMaxOutputs = 8;
  std::int32_t inputs[kMaxInputs];    ///< gradient slots of inputs that require grad (-1: none)
  std::int32_t outputs[kMaxOutputs];  ///< gradient slots of outputs (-1: not differentiable)
  int input_count = 0;
  int output_count = 0;
};

/// Where a backward writes a gradient contribution, and whether it must accumulate.
struct GradTarget {
  TensorRef grad;
  bool accumulate = false;
};

class Tape {
 public:
  explicit Tape(const ExecutionContext& ctx) : ctx_(&ctx) {}
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;
  ~Tape() { clear(); }

  const ExecutionContext& ctx() const noexcept { return *ctx_; }

  /// Whether ops record nodes (false inside a NoGradGuard).
  bool recording() const noexcept { return recording_; }
  void set_recording(bool on) noexcept { recording_ = on; }

  /// Number of recorded nodes and slots (for tests and diagnostics).
  std::size_t node_count() const noexcept { return nodes_.size(); }
  std::size_t slot_count() const noexcept { return slots_.size(); }

  // ---- used by ops while recording ----

  /// A new gradient slot for a value of `shape`/`dtype` on `device`, owned by the tape, or routed to
  /// `sink` (a parameter's gradient).
  std::int32_t new_slot(const Shape& shape, DType dtype, Device device, GradSink* sink = nullptr) {
    Slot slot;
    slot.shape = shape;
    slot.dtype = dtype;
    slot.device = device;
    slot.sink = sink;
    slots_.push_back(std::move(slot));
    return static_cast<std::int32_t>(slots_.size() - 1);
  }

  /// Records a node of type `N` (constructed in the arena from `args`); its inputs' uses are counted.
  template <class N, class... Args>
  N& record(std::span<const std::int32_t> inputs, std::span<const std::int32_t> outputs, Args&&... args) {
    MIXTAPE_EXPECT(inputs.size() <= Node::kMaxInputs && outputs.size() <= Node::kMaxOutputs, ValueError,
                   "tape: a node takes at most ", Node::kMaxInputs, " inputs and ", Node::kMaxOutputs, " outputs");
    void* p = arena_.allocate(sizeof(N), alignof(N));
    N* node = new (p) N(std::forward<Args>(args)...);
    node->input_count = static_cast<int>(inputs.size());
    node->output_count = static_cast<int>(outputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      node->inputs[i] = inputs[i];
      if (inputs[i] >= 0) {
        ++slots_[inputs[i]].pending;
        if (slots_[inputs[i]].sink) ++slots_[inputs[i]].sink->pending_uses;
      }
    }
    for (std::size_t i = 0; i < outputs.size(); ++i) node->outputs[i] = outputs[i];
    nodes_.push_back(node);
    return *node;
  }

  // ---- used by backward functions ----

  /// The gradient of slot `s` if anything has written it in this backward, else an undefined ref.
  TensorRef grad_ref(std::int32_t s) const {
    if (s < 0) return {};
    const Slot& slot = slots_[s];
    return slot.written ? (slot.sink ? slot.sink->grad : slot.grad) : TensorRef();
  }

  /// Where to write a contribution to slot `s`: allocates a tape-owned gradient on first use. The
  /// first write of a backward assigns (no memset then add); later writes accumulate. Call
  /// `wrote(s)` after writing.
  GradTarget grad_target(std::int32_t s) {
    Slot& slot = slots_[s];
    if (slot.sink) return {slot.sink->grad, slot.written || slot.sink->has_data};
    if (!slot.grad.defined()) {
      slot.grad = visit_dtype(slot.dtype, [&]<class T>() -> TensorRef {
        if constexpr (ScalarElement<T>) {
          return Tensor<T>::empty(*ctx_, slot.shape, slot.device, MemoryRole::activations);
        } else {
          MIXTAPE_THROW(DTypeError, "tape: no gradient for packed ", dtype_name(dtype_v<T>), " values");
        }
      });
    }
    return {slot.grad, slot.written};
  }
  void wrote(std::int32_t s) noexcept {
    slots_[s].written = true;
    if (slots_[s].sink) slots_[s].sink->has_data = true;
  }

  /// Gives slot `to` the gradient of slot `from` as it is (reshaped to `to`'s shape), where `to`
  /// would otherwise receive a copy of it: an identity-like backward (add, add_bias, reshape). Only
  /// for `from` an output of the node whose backward runs, so that nothing reads its gradient
  /// afterwards (backward frees it next; not when retained), and `to` tape-owned with nothing
  /// written yet, of the same dtype and element count: later writes to `to` accumulate into the
  /// buffer in place as they would into a copy. Saves a read and a write of the gradient (GPT-2
  /// small: 26 copies, 0.8 ms of an H100 step). Returns false, doing nothing, otherwise.
  bool pass_grad(std::int32_t from, std::int32_t to) {
    if (from < 0 || to < 0 || from == to) return false;
    const Slot& src = slots_[from];
    Slot& dst = slots_[to];
    if (src.sink || src.retain || !src.written || !src.grad.defined() || dst.sink || dst.written ||
        dst.grad.defined() || dst.dtype != src.grad.dtype() || dst.device != src.grad.device() ||
        dst.shape.numel() != src.grad.numel())
      return false;
    dst.grad = reshape_ref(src.grad, dst.shape);
    dst.written = true;
    return true;
  }

  /// Keeps the gradient of slot `s` (an op's output) after backward has passed it, for reading
  /// with `slot_grad` (torch's `retain_grad`). Leaves keep theirs anyway.
  void retain_grad(std::int32_t s) {
    MIXTAPE_EXPECT(s >= 0 && static_cast<std::size_t>(s) < slots_.size(), ValueError,
                   "retain_grad: expected a value that requires grad on this tape, got slot ", s);
    slots_[s].retain = true;
  }

  // ---- running backward ----

  /// Runs every recorded node in reverse order. `seed` is the gradient of `loss_slot` (a one-element
  /// tensor, e.g. ones or the loss scale, on the loss's device). Nodes none of whose outputs received
  /// a gradient are skipped. Gradient-ready hooks of parameters fire as their last use finishes.
  void backward(std::int32_t loss_slot, const TensorRef& seed) {
    MIXTAPE_EXPECT(loss_slot >= 0, ValueError, "backward: the loss does not require grad (no recorded path to it)");
    MIXTAPE_EXPECT(!in_backward_, ValueError, "backward: already running (a backward function called backward)");
    MIXTAPE_EXPECT(!backward_done_, ValueError,
                   "backward: already ran on this recording; clear() the tape and record the step again");
    const Slot& ls = slots_[loss_slot];
    MIXTAPE_EXPECT(ls.shape.numel() == 1, ShapeError, "backward: expected a one-element loss, got shape ", ls.shape);
    MIXTAPE_EXPECT(seed.numel() == 1 && seed.dtype() == ls.dtype && seed.device() == ls.device, ValueError,
                   "backward: expected a one-element ", ls.dtype, " seed on ", ls.device, ", got ", seed.dtype(),
                   " of shape ", seed.shape(), " on ", seed.device());
    in_backward_ = true;
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }
    } reset{in_backward_};
    GradTarget t = grad_target(loss_slot);
    mixtape::copy(*ctx_, reshape_ref(seed, t.grad.shape()), t.grad);  // same dtype: no kernel needed
    wrote(loss_slot);
    backward_done_ = true;
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
      Node& node = **it;
      bool any = false;
      for (int i = 0; i < node.output_count; ++i) any |= node.outputs[i] >= 0 && slots_[node.outputs[i]].written;
      if (any) node.backward(*this);
      for (int i = 0; i < node.input_count; ++i) release(node.inputs[i]);
      // Nothing reads this node's saved tensors or its outputs' gradients again: free them now.
      for (int i = 0; i < node.output_count; ++i) {
        if (node.outputs[i] < 0) continue;
        Slot& out = slots_[node.outputs[i]];
        if (out.retain || !out.written) continue;
        out.grad = {};
        out.freed = true;
      }
      node.~Node();
      *it = nullptr;
    }
  }

  /// Destroys every node and forgets every slot; the arena keeps its memory for the next step.
  void clear() noexcept {
    for (auto& slot : slots_)
      if (slot.sink) slot.sink->pending_uses = 0;  // uses recorded but never back-propagated
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it)
      if (*it != nullptr) (*it)->~Node();  // those backward has passed are gone already
    nodes_.clear();
    slots_.clear();
    arena_.clear();
    backward_done_ = false;
  }

  /// The tape-owned gradient of slot `s` after backward (undefined if nothing reached it).
  /// @throws ValueError for an op's output whose gradient backward freed (see `retain_grad`)
  TensorRef slot_grad(std::int32_t s) const {
    MIXTAPE_EXPECT(s < 0 || !slots_[s].freed, ValueError,
                   "grad: the gradient of an op's output is freed once backward has passed it; call "
                   "retain_grad(tape, value) before backward to keep it (leaves and parameters keep theirs)");
    return grad_ref(s);
  }

  const Arena& arena() const noexcept { return arena_; }

 private:
  struct Slot {
    Shape shape;
    DType dtype = DType::f32;
    Device device;
    GradSink* sink = nullptr;
    TensorRef grad;
    bool written = false;
    bool retain = false;    ///< keep the gradient after backward passes the producing op
    bool freed = false;     ///< backward freed the gradient
    int pending = 0;
  };

  void release(std::int32_t s) {
    if (s < 0) return;
    Slot& slot = slots_[s];
    --slot.pending;
    if (slot.sink && --slot.sink->pending_uses == 0 && slot.sink->has_data && slot.sink->on_ready) slot.sink->on_ready();
  }

  static TensorRef reshape_ref(const TensorRef& t, const Shape& shape) {
    return visit_dtype(t.dtype(), [&]<class T>() -> TensorRef { return t.as<T>().reshape(shape); });
  }

  const ExecutionContext* ctx_;
  Arena arena_;
  std::vector<Node*> nodes_;
  std::vector<Slot> slots_;
  bool recording_ = true;
  bool in_backward_ = false;
  bool backward_done_ = false;
};

/// Stops recording for its lifetime (evaluation, optimizer steps, EMA updates).
class NoGradGuard {
 public:
  explicit NoGradGuard(Tape& tape) : tape_(tape), previous_(tape.recording()) { tape.set_recording(false); }
  ~NoGradGuard() { tape_.set_recording(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  Tape& tape_;
  bool previous_;
};

}  // namespace mixtape::autograd
