// Arena allocator; see arena.h.
#include "llmkit/base/arena.h"

#include <cstdlib>
#include <new>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "llmkit/base/check.h"

namespace llmkit {

Arena::Arena(size_t initial_bytes) {
  if (initial_bytes > 0) add_block(initial_bytes);
}

Arena::~Arena() {
  for (auto& b : blocks_) std::free(b.data);
}

// Blocks from this size on are 2 MiB-aligned and asked to be backed by transparent huge pages:
// a prompt's activations fill hundreds of MiB of fresh pages as the arena grows, and faulting them
// in 4 KiB pages cost ~3 us per page (Zen 3 KVM guest, THP "madvise"). Huge pages also cut TLB
// misses.
constexpr size_t kHugePage = size_t{2} << 20;
// ...but only for blocks of this size and more: a huge page is resident as a whole once touched,
// so a small arena (a transformer pass in micro-batches needs a few MiB) would carry the unused
// tails of its blocks in its RSS for no measurable gain.
constexpr size_t kHugePageMinBlock = size_t{16} << 20;

void Arena::add_block(size_t min_bytes) {
  size_t size = min_bytes < (1u << 16) ? (1u << 16) : min_bytes;
  const size_t align = size >= kHugePage ? kHugePage : 4096;
  size = (size + align - 1) & ~(align - 1);
  void* p = std::aligned_alloc(align, size);
  if (!p) throw Error(ErrorCode::kOutOfMemory, str_cat("arena could not allocate ", size, " bytes"));
#ifdef __linux__
  if (align == kHugePage && size >= kHugePageMinBlock) madvise(p, size, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  blocks_.push_back({static_cast<uint8_t*>(p), size, 0});
  ++system_allocs_;
}

void* Arena::alloc(size_t bytes, size_t align) {
  LLMKIT_ASSERT(align != 0 && (align & (align - 1)) == 0 && align <= 4096, "bad alignment ", align);
  if (blocks_.empty()) add_block(bytes + align);
  for (;;) {
    Block& b = blocks_[cur_];
    const size_t off = (b.used + align - 1) & ~(align - 1);
    if (off + bytes <= b.size) {
      used_total_ += (off - b.used) + bytes;
      b.used = off + bytes;
      if (used_total_ > high_water_) high_water_ = used_total_;
      return b.data + off;
    }
    if (cur_ + 1 < blocks_.size()) {
      ++cur_;  // a block kept from an earlier pass (empty since the reset)
      continue;
    }
    add_block((b.size * 2 > bytes + align) ? b.size * 2 : bytes + align);
    cur_ = blocks_.size() - 1;
  }
}

void Arena::reset() {
  // Blocks are kept and refilled in order: a pass that repeats the previous one's allocations (a
  // decode step, a same-sized prompt) lands in the same blocks and touches no fresh page. Folding
  // them into one high-water block instead (as this arena first did) faulted in and zeroed that
  // whole block again on the pass after every growth: up to ~15% of a SmolLM2 pp512 pass.
  for (auto& b : blocks_) b.used = 0;
  cur_ = 0;
  used_total_ = 0;
}

void Arena::rewind(const Mark& m) {
  if (blocks_.empty()) return;
  LLMKIT_ASSERT(m.block <= cur_ && m.used_total <= used_total_, "Arena::rewind to a mark taken after this point");
  for (size_t i = m.block + 1; i <= cur_; ++i) blocks_[i].used = 0;
  blocks_[m.block].used = m.used;
  cur_ = m.block;
  used_total_ = m.used_total;
}

size_t Arena::capacity() const {
  size_t c = 0;
  for (auto& b : blocks_) c += b.size;
  return c;
}

}  // namespace llmkit
