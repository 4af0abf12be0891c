// How a helper server started by downstream_process lives and ends (cloak-downstream, the echo
// peer).
#pragma once

#include <cloak/os.hpp>
#include <functional>
#include <string_view>

namespace cloak {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every thread started after
// it) and turns them into a descriptor, and watches the harness process through a pidfd:
// PR_SET_PDEATHSIG, used only on kernels without pidfds, fires when the *thread* that started the
// server exits, which a harness may do long before it is done with the server.
class server_lifetime {
 public:
  explicit server_lifetime(
      long parent_pid);  // parent_pid <= 0: not watched. Throws std::system_error.

  // True when a harness was named and is no longer this process's parent.
  bool orphaned() const noexcept;
  // Writes "ready\n" to the inherited descriptor and closes it (nothing when fd < 0).
  static void signal_ready(int fd) noexcept;
  // Writes `line` of the readiness protocol ("dir PATH\n", "error MESSAGE\n") to the inherited
  // descriptor (nothing when fd < 0). A harness that is gone cannot read it: said on stderr and
  // returned as false; the server then cleans up as it would anyway.
  static bool tell(int fd, std::string_view line) noexcept;

  enum class stop { signal, orphaned };
  // Accepts connections on `listener`, handing each to `on_connection`, until a stop signal arrives
  // or the harness exits.
  stop accept_until_stopped(int listener, const std::function<void(os::unique_fd)>& on_connection);

 private:
  long parent_pid_;
  os::unique_fd parent_;
  os::unique_fd signals_;
};

}  // namespace cloak
