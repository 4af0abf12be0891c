// The dynamic proxy's cache of security contexts: which context an identity that comes back reuses,
// and which one makes room. O(1) lookup, insert and eviction with thousands of entries.
#pragma once

#include <cloak/identity.hpp>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace cloak {

struct context_cache_stats {
  std::uint64_t hits = 0;       // find() returned a cached context
  std::uint64_t misses = 0;     // find() found none
  std::uint64_t evictions = 0;  // insert() dropped the least recently used entry to make room
};

// A least-recently-used map from (identity, token generation) to a context id. A hash table with
// linear probing indexes a fixed pool of entries threaded on an intrusive recency list; everything
// is allocated by the constructor, so find and insert never allocate or throw. Not thread-safe.
class context_cache {
 public:
  explicit context_cache(std::size_t capacity);  // 0: caches nothing
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t size() const noexcept { return size_; }

  // The context cached for `who` made for `generation` (callers that do not key by token pass 0),
  // now the most recently used; 0 when there is none. Counts a hit or a miss.
  std::uint64_t find(const identity& who, std::uint64_t generation) noexcept;
  // The context the next insert would evict (the least recently used, when full); 0 if there is
  // room. A proxy releases it with the establish that makes the new one.
  std::uint64_t victim() const noexcept;
  // Caches `context` (non-zero) for a key find() just missed, as the most recently used. Returns
  // the context it evicted (victim() before the call), or 0.
  std::uint64_t insert(const identity& who, std::uint64_t generation,
                       std::uint64_t context) noexcept;
  // Forgets every entry (the connection that holds them is gone, or the blanket changed); calls
  // `each` with every context it held, least recently used first. Counters are kept.
  template <typename F>
  void clear(F&& each) noexcept(noexcept(each(std::uint64_t{}))) {
    for (std::uint32_t i = lru_; i != none; i = entries_[i].newer) each(entries_[i].context);
    reset();
  }
  void clear() noexcept { reset(); }

  // The cached contexts from least to most recently used (for tests and reports; allocates).
  std::vector<std::uint64_t> contexts_by_recency() const;
  const context_cache_stats& stats() const noexcept { return stats_; }

 private:
  static constexpr std::uint32_t none = ~std::uint32_t{0};
  struct entry {
    identity who;
    std::uint64_t generation = 0;
    std::uint64_t context = 0;
    std::uint64_t hash = 0;
    std::uint32_t older = none;  // the recency list: towards lru_
    std::uint32_t newer = none;  // towards mru_
  };
  static std::uint64_t hash_of(const identity& who, std::uint64_t generation) noexcept;
  std::size_t slot_of(const identity& who, std::uint64_t generation, std::uint64_t hash,
                      bool& found) const noexcept;
  void unlink(std::uint32_t i) noexcept;
  void push_newest(std::uint32_t i) noexcept;
  void erase_slot(std::size_t slot) noexcept;
  void reset() noexcept;

  std::size_t capacity_;
  std::size_t size_ = 0;
  std::vector<entry> entries_;        // the pool: entries_[0, size_) are in use until full
  std::vector<std::uint32_t> table_;  // entry index per slot, `none` when empty; power of two
  std::size_t mask_ = 0;
  std::uint32_t lru_ = none;
  std::uint32_t mru_ = none;
  context_cache_stats stats_;
};

}  // namespace cloak
