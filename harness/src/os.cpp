// The POSIX seam: errno to std::system_error, descriptor ownership, CPU pinning.
#include <cloak/os.hpp>

#include <sched.h>
#include <unistd.h>

namespace cloak::os {

void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), what);
}

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);  // never retried: the descriptor is gone whatever close returns
  fd_ = fd;
}

void pin_this_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu < 0) {
    for (int i = 0; i < online_cpus(); ++i) CPU_SET(i, &set);
  } else {
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    throw_errno(errno, fmt::format("cannot pin thread to cpu {}", cpu));
  }
}

int online_cpus() noexcept {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace cloak::os
