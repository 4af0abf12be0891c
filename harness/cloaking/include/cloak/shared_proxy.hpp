// One proxy shared by every thread of a middle tier (COM's MTA), over a pool of connections: the
// policy that decides which connection serves which identity, and the locks (docs/design.md,
// "Threads: a proxy per thread or one shared proxy").
#pragma once

#include <cloak/proxy.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace cloak {

// What a shared proxy did beside each proxy's own counters.
struct shared_proxy_counters {
  std::uint64_t calls = 0;
  std::uint64_t waits = 0;  // calls whose connection was busy with another thread's call
};

// Thread-safe. A security context belongs to the connection it was made on (MS-RPCE binds contexts
// so), and a connection carries one call at a time; so the pool is a set of lanes, each a
// connection with its own proxy (its blanket, its context cache of the policy's size) and its own
// mutex, held for the whole call. Which lane a call takes:
// - dynamic cloaking: the calling thread's identity hashed to a lane (identity affinity), so an
//   identity's context lives on one connection only and each lane's cache holds its share of the
//   population; two threads acting for identities of one lane wait for each other (`waits`).
// - none and static: every call presents the same identity, so any lane will do: the first free one
//   from the thread's own starting lane, or (all busy) a wait on that one.
// There is no lock shared by all lanes: the cache is partitioned by lane, each part under its
// lane's mutex.
class shared_proxy {
 public:
  // Takes the connections (one lane each; at least one). They may be connected already (connect
  // them before several threads use the proxy when the channel's connect is not thread-safe, as
  // the in-process model's is not).
  shared_proxy(identity_backend& backend, std::vector<std::unique_ptr<connection>> connections,
               security_defaults defaults = {}, dynamic_options dynamic = {});
  ~shared_proxy();
  shared_proxy(const shared_proxy&) = delete;
  shared_proxy& operator=(const shared_proxy&) = delete;

  // Sets the blanket on every lane, under the calling thread's token (static cloaking captures it
  // once for all threads). Call it before the threads call, or while none does.
  void set_blanket(const blanket& b);

  // The hot path: no exception; allocates only to copy `detail` after a failure. `detail`, when
  // given, receives the lane's account of a failed establish.
  call_result call(std::span<const std::byte> payload, std::string* detail = nullptr) noexcept;

  std::size_t lanes() const noexcept { return lanes_.size(); }
  // The lane a call from this thread, acting for `who`, would take first (dynamic: the only one).
  std::size_t lane_of(const identity& who) const noexcept;
  // Every lane's proxy counters summed, and the pool's own; locks each lane in turn.
  proxy_counters counters() const;
  shared_proxy_counters pool_counters() const;
  // One lane's own (the calls it carried); throws std::out_of_range past the last lane.
  shared_proxy_counters lane_counters(std::size_t lane) const;
  void reset_counters();

 private:
  struct lane {
    std::unique_ptr<connection> conn;
    std::unique_ptr<proxy> px;
    mutable std::mutex mutex;
    std::uint64_t calls = 0;  // under mutex
    std::uint64_t waits = 0;  // under mutex
  };
  static call_result call_on(lane& l, std::span<const std::byte> payload, std::string* detail,
                             bool waited) noexcept;

  identity_backend& backend_;
  bool dynamic_ = false;
  std::vector<std::unique_ptr<lane>> lanes_;
};

}  // namespace cloak
