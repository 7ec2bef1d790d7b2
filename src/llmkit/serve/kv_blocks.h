// The block manager of the paged KV cache: which pages of the shared pool (models::KVPages) each
// running sequence holds, with prefix caching across requests.
//
//   * Reservation. A sequence reserves, when admitted, every page it can still need (prompt +
//     max_tokens, less the pages it shares), and takes them one at a time as it grows: no running
//     sequence ever waits for a page or is preempted, and admission is the only place that says no.
//   * Prefix caching. A page that is full and computed is published under a hash of the whole
//     token prefix up to its end (chain(parent hash, its 16 tokens)), with its tokens and parent
//     hash kept to verify a match exactly. A new prompt takes, for its leading whole pages, the
//     published pages with the same prefix: a reference each, shared read-only with whoever else
//     holds them (concurrent requests included). Pages are only ever written below a sequence's own
//     n_past, past its shared ones, so a shared page is never written again.
//   * Eviction. A published page nobody holds stays cached; a reservation takes never-published
//     free pages first, then the least recently released cached page (which is unpublished).
//
// Every K/V input is in the key: the pool belongs to one model, and a token's K/V depends only on
// the tokens before it (per-request adapters, when they come, go into the hash seed).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace llmkit::serve {

class BlockManager {
 public:
  static constexpr int64_t kPage = 16;  // positions per page (models::kKVPage)
  static constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ull;

  explicit BlockManager(int64_t n_pages);

  // The prefix hash of a page from its parent's (kRootHash for the first page) and its kPage tokens.
  static uint64_t chain(uint64_t parent, const int32_t* tokens);

  // The published page holding tokens[0 .. kPage) after the prefix hashed `parent`, or -1.
  int32_t lookup(uint64_t parent, const int32_t* tokens) const;
  // Takes one more reference on a page (a published one found by lookup).
  void acquire(int32_t page);
  // Drops a reference; at zero a published page stays cached (evictable), any other is free.
  void release(int32_t page);

  // Pages that reservations can still claim: free + cached - reserved.
  int64_t available() const { return static_cast<int64_t>(free_.size()) + static_cast<int64_t>(lru_.size()) - reserved_; }
  // Reserves n pages; false (and nothing reserved) when fewer are available.
  bool reserve(int64_t n);
  void unreserve(int64_t n);
  // One page out of the caller's reservation, with one reference: a free page, else the least
  // recently released cached one (unpublished first).
  int32_t take();
  // Marks a full, computed page as holding tokens[0 .. kPage) after the prefix `parent`, under
  // `hash` = chain(parent, tokens). If another page already holds that prefix, this one stays
  // private (it is freed on release) and the call returns false.
  bool publish(int32_t page, uint64_t parent, uint64_t hash, const int32_t* tokens);

  int64_t total() const { return static_cast<int64_t>(pages_.size()); }
  int64_t used() const { return used_; }                                   // held by a sequence
  int64_t cached() const { return static_cast<int64_t>(lru_.size()); }      // published, held by none
  int64_t free() const { return static_cast<int64_t>(free_.size()); }
  int64_t reserved() const { return reserved_; }
  int32_t refs(int32_t page) const { return pages_[static_cast<size_t>(page)].ref; }

 private:
  struct Page {
    int32_t ref = 0;
    bool published = false;
    uint64_t hash = 0, parent = 0;
    std::array<int32_t, kPage> tokens{};
    std::list<int32_t>::iterator lru;  // valid while cached
  };
  void unpublish(Page& p);

  std::vector<Page> pages_;
  std::vector<int32_t> free_;                      // ref 0, not published
  std::list<int32_t> lru_;                         // ref 0, published: least recently released first
  std::unordered_map<uint64_t, int32_t> by_hash_;  // published pages
  int64_t reserved_ = 0, used_ = 0;
};

}  // namespace llmkit::serve
