// A bump allocator for the buffers of one forward/backward pass. reset() keeps the memory, so a
// decode loop that needs the same buffers each token does no malloc after the first token. When
// a pass outgrows the current block, a new block (twice as large) is chained; reset() keeps every
// block and the next pass refills them in order, so a pass like an earlier one touches no fresh
// memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace llmkit {

class Arena {
 public:
  explicit Arena(size_t initial_bytes = 0);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Returns `bytes` of uninitialised memory aligned to `align` (a power of two, <= 4096).
  void* alloc(size_t bytes, size_t align = 64);
  template <typename T>
  T* alloc_array(size_t n) { return static_cast<T*>(alloc(n * sizeof(T), alignof(T) < 64 ? 64 : alignof(T))); }

  // Frees everything allocated since construction or the last reset (memory is kept).
  void reset();

  // A point to come back to: rewind(mark()) frees everything allocated after the mark (memory
  // is kept), so a loop can release each iteration's intermediates (a transformer layer's) while
  // what was allocated before the mark stays valid. Marks must be rewound in LIFO order and only
  // until the next reset.
  struct Mark {
    size_t block = 0, used = 0, used_total = 0;
  };
  Mark mark() const { return {cur_, blocks_.empty() ? 0 : blocks_[cur_].used, used_total_}; }
  void rewind(const Mark& m);

  size_t used() const { return used_total_; }
  size_t high_water() const { return high_water_; }
  size_t capacity() const;
  // How many times the arena had to ask the system for memory (tests assert this stays flat).
  size_t system_allocations() const { return system_allocs_; }

 private:
  struct Block {
    uint8_t* data;
    size_t size;
    size_t used;
  };
  void add_block(size_t min_bytes);

  std::vector<Block> blocks_;
  size_t cur_ = 0;  // the block being filled
  size_t used_total_ = 0;
  size_t high_water_ = 0;
  size_t system_allocs_ = 0;
};

}  // namespace llmkit
