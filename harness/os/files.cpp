// Files, directories and socket options of setup: each call once, errors carrying errno and the
// path.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cloak/os.hpp>
#include <cstdlib>

namespace cloak::os {

std::string make_temp_dir(std::string_view name) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = fmt::format("{}/{}.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
  if (!::mkdtemp(pattern.data())) throw_errno(errno, fmt::format("cannot create {}", pattern));
  return pattern;
}

void ensure_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    throw_errno(errno, fmt::format("cannot create {}", path));
}

struct stat stat_path(const std::string& path, bool follow_links) {
  struct stat st {};
  check([&] { return follow_links ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st); },
        "cannot stat {}", path);
  return st;
}

bool is_private_dir(const struct stat& st) noexcept {
  return S_ISDIR(st.st_mode) && (st.st_mode & 077) == 0 && st.st_uid == ::geteuid();
}

void write_file(const std::string& path, std::string_view text, mode_t mode) {
  std::string tmp = path + ".tmp";
  unique_fd fd = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
  check([&] { return ::fchmod(fd.get(), mode); }, "cannot chmod {}", tmp);
  if (!write_all(fd.get(), text)) throw_errno(errno, fmt::format("cannot write {}", tmp));
  fd.reset();
  check([&] { return ::rename(tmp.c_str(), path.c_str()); }, "cannot rename {}", tmp);
}

unique_fd open_file(const std::string& path, int flags, mode_t mode) {
  return unique_fd(
      check([&] { return ::open(path.c_str(), flags | O_CLOEXEC, mode); }, "cannot open {}", path));
}

void change_mode(const std::string& path, mode_t mode) {
  check([&] { return ::chmod(path.c_str(), mode); }, "cannot chmod {}", path);
}

namespace {

void set_timeout(int fd, int option, std::chrono::milliseconds timeout) noexcept {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv);
}

}  // namespace

void set_send_timeout(int fd, std::chrono::milliseconds timeout) noexcept {
  set_timeout(fd, SO_SNDTIMEO, timeout);
}

void set_receive_timeout(int fd, std::chrono::milliseconds timeout) noexcept {
  set_timeout(fd, SO_RCVTIMEO, timeout);
}

void receive_credentials(int fd) noexcept {
  int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
}

}  // namespace cloak::os
