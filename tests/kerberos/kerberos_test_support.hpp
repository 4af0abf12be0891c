// What the kerberos tests share: skipping where krb5 is not installed, the fake clients, and
// bounded waits on processes that are not our children.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cloak/identity.hpp>
#include <cloak/process.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace cloak::test {

// The realm needs krb5kdc, kdb5_util and kadmin.local (Debian krb5-kdc, krb5-admin-server).
inline bool krb5_programs_installed() {
  for (const char* p : {"/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local"}) {
    if (::access(p, X_OK) != 0) return false;
  }
  return true;
}

#define CLOAK_SKIP_UNLESS_KRB5()                                                                \
  do {                                                                                          \
    if (!::cloak::test::krb5_programs_installed())                                              \
      GTEST_SKIP()                                                                              \
          << "krb5kdc, kdb5_util or kadmin.local missing (Debian krb5-kdc, krb5-admin-server)"; \
    if (::geteuid() != 0) GTEST_SKIP() << "the kerberos tests run as root";                     \
  } while (0)

inline client_range test_clients() { return client_range{61000, 61000, 4}; }

// The command line of `pid`, NULs as spaces; empty when there is no such process.
inline std::string cmdline_of(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : s)
    if (c == '\0') c = ' ';
  return s;
}

// True once `pid` has exited (or is a zombie), waiting at most `timeout` on its pidfd.
inline bool exits_within(long pid, std::chrono::milliseconds timeout) {
  return os::wait_gone(static_cast<pid_t>(pid), os::deadline(timeout));
}

// The live (not zombie) krb5kdc processes whose environment points KRB5_KDC_PROFILE into `dir`:
// found through /proc, so it also sees a KDC whose pid nobody recorded.
inline std::vector<long> krb5kdc_processes_for(const std::string& dir) {
  std::vector<long> found;
  std::string needle = "KRB5_KDC_PROFILE=" + dir + "/";
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    long pid = std::stol(name);
    if (cmdline_of(pid).find("krb5kdc") == std::string::npos) continue;
    std::ifstream env(entry.path() / "environ");
    std::string text((std::istreambuf_iterator<char>(env)), std::istreambuf_iterator<char>());
    if (text.find(needle) == std::string::npos) continue;
    std::ifstream status(entry.path() / "status");
    bool zombie = false;
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("State:", 0) == 0) zombie = line.find('Z') != std::string::npos;
    }
    if (!zombie) found.push_back(pid);
  }
  return found;
}

}  // namespace cloak::test
