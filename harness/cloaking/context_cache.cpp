// The context cache: a hash table over a fixed pool threaded on a recency list, so that a
// population of thousands of identities costs the same per call as four (docs/design.md §1,
// "context cache").
#include <bit>
#include <cloak/context_cache.hpp>
#include <cloak/mix.hpp>

namespace cloak {

namespace {

using detail::mix;

}  // namespace

context_cache::context_cache(std::size_t capacity) : capacity_(capacity) {
  if (capacity_ == 0) return;
  entries_.resize(capacity_);
  // At most half full: a probe sequence stays a few slots long.
  table_.assign(std::bit_ceil(capacity_ * 2), none);
  mask_ = table_.size() - 1;
}

std::uint64_t context_cache::hash_of(const identity& who, std::uint64_t generation) noexcept {
  // Groups only refine equality: identities that differ only in groups share a probe sequence.
  std::uint64_t ids = (std::uint64_t{who.uid} << 32) | who.gid;
  return mix(ids ^ mix(generation + who.group_count));
}

std::size_t context_cache::slot_of(const identity& who, std::uint64_t generation,
                                   std::uint64_t hash, bool& found) const noexcept {
  std::size_t s = hash & mask_;
  for (;; s = (s + 1) & mask_) {
    std::uint32_t e = table_[s];
    if (e == none) break;
    const entry& x = entries_[e];
    if (x.hash == hash && x.generation == generation && x.who == who) {
      found = true;
      return s;
    }
  }
  found = false;
  return s;
}

void context_cache::unlink(std::uint32_t i) noexcept {
  entry& e = entries_[i];
  (e.older == none ? lru_ : entries_[e.older].newer) = e.newer;
  (e.newer == none ? mru_ : entries_[e.newer].older) = e.older;
  e.older = e.newer = none;
}

void context_cache::push_newest(std::uint32_t i) noexcept {
  entry& e = entries_[i];
  e.older = mru_;
  e.newer = none;
  (mru_ == none ? lru_ : entries_[mru_].newer) = i;
  mru_ = i;
}

void context_cache::erase_slot(std::size_t slot) noexcept {
  // Backward-shift deletion: later entries of the probe run move into the hole when their home
  // slot allows it, so no tombstones accumulate over thousands of evictions.
  std::size_t hole = slot;
  for (std::size_t j = (slot + 1) & mask_; table_[j] != none; j = (j + 1) & mask_) {
    std::size_t home = entries_[table_[j]].hash & mask_;
    if (((j - home) & mask_) >= ((j - hole) & mask_)) {
      table_[hole] = table_[j];
      hole = j;
    }
  }
  table_[hole] = none;
}

std::uint64_t context_cache::find(const identity& who, std::uint64_t generation) noexcept {
  if (capacity_ == 0) {
    ++stats_.misses;
    return 0;
  }
  bool found = false;
  std::size_t s = slot_of(who, generation, hash_of(who, generation), found);
  if (!found) {
    ++stats_.misses;
    return 0;
  }
  ++stats_.hits;
  std::uint32_t i = table_[s];
  if (i != mru_) {
    unlink(i);
    push_newest(i);
  }
  return entries_[i].context;
}

std::uint64_t context_cache::victim() const noexcept {
  return capacity_ != 0 && size_ == capacity_ ? entries_[lru_].context : 0;
}

std::uint64_t context_cache::insert(const identity& who, std::uint64_t generation,
                                    std::uint64_t context) noexcept {
  if (capacity_ == 0) return 0;
  std::uint64_t hash = hash_of(who, generation);
  bool found = false;
  std::size_t s = slot_of(who, generation, hash, found);
  if (found) {  // not what a proxy does (it inserts after a miss), but keep one entry per key
    std::uint32_t i = table_[s];
    entries_[i].context = context;
    unlink(i);
    push_newest(i);
    return 0;
  }
  std::uint64_t evicted = 0;
  std::uint32_t i = 0;
  if (size_ < capacity_) {
    i = static_cast<std::uint32_t>(size_++);
  } else {
    i = lru_;
    entry& old = entries_[i];
    std::size_t at = old.hash & mask_;
    while (table_[at] != i) at = (at + 1) & mask_;
    erase_slot(at);
    unlink(i);
    evicted = old.context;
    ++stats_.evictions;
    s = slot_of(who, generation, hash, found);  // the deletion may have moved the free slot
  }
  entry& e = entries_[i];
  e.who = who;
  e.generation = generation;
  e.context = context;
  e.hash = hash;
  table_[s] = i;
  push_newest(i);
  return evicted;
}

std::vector<std::uint64_t> context_cache::contexts_by_recency() const {
  std::vector<std::uint64_t> out;
  out.reserve(size_);
  for (std::uint32_t i = lru_; i != none; i = entries_[i].newer) out.push_back(entries_[i].context);
  return out;
}

void context_cache::reset() noexcept {
  for (std::uint32_t& t : table_) t = none;
  size_ = 0;
  lru_ = mru_ = none;
}

}  // namespace cloak
