/// @file arena.hpp
/// @brief A host bump arena for tape nodes: blocks that double in size, rewind to a mark, reuse
///        without freeing (Stan's `stack_alloc`, tiny-cuda-nn's arena).
///
/// A training step records the same nodes every time, so after the first step the arena's blocks
/// are reused and recording allocates nothing from the system.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "mixtape/core/error.hpp"

namespace mixtape::autograd {

class Arena {
 public:
  /// @param first_block_bytes size of the first block; later blocks double.
  explicit Arena(std::size_t first_block_bytes = 64 * 1024) : next_size_(first_block_bytes) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  /// A position to rewind to.
  struct Mark {
    std::size_t block = 0;
    std::size_t offset = 0;
  };

  /// `bytes` bytes aligned to `align` (a power of two no larger than alignof(std::max_align_t) * 4).
  void* allocate(std::size_t bytes, std::size_t align) {
    MIXTAPE_EXPECT(align != 0 && (align & (align - 1)) == 0 && align <= kBlockAlign, ValueError,
                   "arena: expected a power-of-two alignment <= ", kBlockAlign, ", got ", align);
    while (true) {
      if (current_ < blocks_.size()) {
        Block& b = blocks_[current_];
        const std::size_t start = (offset_ + align - 1) & ~(align - 1);
        if (start + bytes <= b.size) {
          offset_ = start + bytes;
          return b.data.get() + start;
        }
        ++current_;  // the rest of this block stays unused until the next rewind
        offset_ = 0;
        continue;
      }
      const std::size_t size = std::max(next_size_, bytes + align);
      auto* raw = static_cast<std::byte*>(::operator new[](size, std::align_val_t(kBlockAlign)));
      blocks_.push_back(Block{std::unique_ptr<std::byte[], AlignedDelete>(raw), size});
      next_size_ = size * 2;
    }
  }

  Mark mark() const noexcept { return {current_, offset_}; }
  /// Frees (for reuse) everything allocated after `m`. Objects placed there must be destroyed first.
  void rewind(Mark m) noexcept {
    current_ = m.block;
    offset_ = m.offset;
  }
  void clear() noexcept { rewind({}); }

  /// Bytes reserved from the system (all blocks).
  std::size_t capacity() const noexcept {
    std::size_t total = 0;
    for (const auto& b : blocks_) total += b.size;
    return total;
  }

 private:
  static constexpr std::size_t kBlockAlign = 64;
  struct AlignedDelete {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t(kBlockAlign)); }
  };
  struct Block {
    std::unique_ptr<std::byte[], AlignedDelete> data;
    std::size_t size = 0;
  };
  std::vector<Block> blocks_;
  std::size_t current_ = 0;
  std::size_t offset_ = 0;
  std::size_t next_size_;
};

}  // namespace mixtape::autograd
