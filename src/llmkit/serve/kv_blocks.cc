// The KV block manager; see kv_blocks.h.
#include "llmkit/serve/kv_blocks.h"

#include <algorithm>

#include "llmkit/base/check.h"

namespace llmkit::serve {

BlockManager::BlockManager(int64_t n_pages) {
  LLMKIT_ASSERT(n_pages > 0 && n_pages <= (int64_t{1} << 30));
  pages_.resize(static_cast<size_t>(n_pages));
  free_.reserve(static_cast<size_t>(n_pages));
  for (int64_t i = n_pages - 1; i >= 0; --i) free_.push_back(static_cast<int32_t>(i));  // page 0 first
}

uint64_t BlockManager::chain(uint64_t parent, const int32_t* tokens) {
  // splitmix64 finaliser over the parent hash and each token: a 64-bit hash of the whole prefix.
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  uint64_t h = mix(parent + 0x9e3779b97f4a7c15ull);
  for (int64_t i = 0; i < kPage; ++i) h = mix(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1)));
  return h;
}

int32_t BlockManager::lookup(uint64_t parent, const int32_t* tokens) const {
  auto it = by_hash_.find(chain(parent, tokens));
  if (it == by_hash_.end()) return -1;
  const Page& p = pages_[static_cast<size_t>(it->second)];
  if (p.parent != parent || !std::equal(p.tokens.begin(), p.tokens.end(), tokens)) return -1;  // a hash collision
  return it->second;
}

void BlockManager::acquire(int32_t page) {
  Page& p = pages_[static_cast<size_t>(page)];
  LLMKIT_ASSERT(p.published || p.ref > 0);
  if (p.ref == 0) {  // cached: leaves the LRU list
    lru_.erase(p.lru);
    ++used_;
  }
  ++p.ref;
}

void BlockManager::release(int32_t page) {
  Page& p = pages_[static_cast<size_t>(page)];
  LLMKIT_ASSERT(p.ref > 0);
  if (--p.ref > 0) return;
  --used_;
  if (p.published) {
    lru_.push_back(page);
    p.lru = std::prev(lru_.end());
  } else {
    free_.push_back(page);
  }
}

bool BlockManager::reserve(int64_t n) {
  LLMKIT_ASSERT(n >= 0);
  if (n > available()) return false;
  reserved_ += n;
  return true;
}

void BlockManager::unreserve(int64_t n) {
  LLMKIT_ASSERT(n >= 0 && n <= reserved_);
  reserved_ -= n;
}

void BlockManager::unpublish(Page& p) {
  auto it = by_hash_.find(p.hash);
  if (it != by_hash_.end() && &pages_[static_cast<size_t>(it->second)] == &p) by_hash_.erase(it);
  p.published = false;
}

int32_t BlockManager::take() {
  LLMKIT_ASSERT(reserved_ > 0);
  int32_t page;
  if (!free_.empty()) {
    page = free_.back();
    free_.pop_back();
  } else {
    LLMKIT_ASSERT(!lru_.empty());
    page = lru_.front();
    lru_.pop_front();
    unpublish(pages_[static_cast<size_t>(page)]);
  }
  --reserved_;
  ++used_;
  pages_[static_cast<size_t>(page)].ref = 1;
  return page;
}

bool BlockManager::publish(int32_t page, uint64_t parent, uint64_t hash, const int32_t* tokens) {
  Page& p = pages_[static_cast<size_t>(page)];
  LLMKIT_ASSERT(p.ref > 0);
  if (p.published) return true;
  if (by_hash_.count(hash)) return false;  // another page holds this prefix already
  p.published = true;
  p.hash = hash;
  p.parent = parent;
  std::copy(tokens, tokens + kPage, p.tokens.begin());
  by_hash_.emplace(hash, page);
  return true;
}

}  // namespace llmkit::serve
