// Bytes in use, from the allocator (this process) or from the kernel (another process).
#include <fmt/format.h>
#include <malloc.h>

#include <cerrno>
#include <cloak/memory_use.hpp>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

namespace cloak {

std::size_t heap_bytes_in_use() noexcept {
  struct mallinfo2 m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
}

std::size_t resident_anonymous_bytes(pid_t pid) {
  std::string path = fmt::format("/proc/{}/status", pid);
  std::ifstream in(path);
  if (!in) throw std::system_error(errno, std::generic_category(), "cannot open " + path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("RssAnon:")) return std::stoull(line.substr(8)) * 1024;  // "N kB"
  }
  throw std::runtime_error(fmt::format("{} has no RssAnon line", path));
}

}  // namespace cloak
