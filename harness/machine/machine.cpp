// The machine fingerprint: CPU, topology, kernel, mitigations, governor and virtualization, read
// once.
#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cloak/machine.hpp>
#include <nlohmann/json.hpp>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

namespace cloak {

namespace {

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// The first line of a small /proc or /sys file, trimmed; empty if unreadable.
std::string read_line(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return {};
  return trim(line);
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::string fallback;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = trim(line.substr(0, colon));
    std::string value = trim(line.substr(colon + 1));
    if (key == "model name" && !value.empty()) return value;  // x86
    if ((key == "Model" || key == "cpu model" || key == "uarch") && fallback.empty())
      fallback = value;
  }
  return fallback.empty() ? "unknown" : fallback;
}

void topology(machine_fingerprint& m) {
  namespace fs = std::filesystem;
  std::set<std::pair<std::string, std::string>> cores;
  int threads = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/sys/devices/system/cpu", ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() < 4 || name.compare(0, 3, "cpu") != 0 ||
        name.find_first_not_of("0123456789", 3) != std::string::npos) {
      continue;
    }
    if (read_line(entry.path() / "online") == "0") continue;
    std::string core = read_line(entry.path() / "topology/core_id");
    if (core.empty()) continue;
    cores.emplace(read_line(entry.path() / "topology/physical_package_id"), core);
    ++threads;
  }
  if (cores.empty()) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m.cores = n > 0 ? static_cast<int>(n) : 0;
    m.threads_per_core = m.cores > 0 ? 1 : 0;
  } else {
    m.cores = static_cast<int>(cores.size());
    m.threads_per_core = threads / m.cores;
  }
  std::string active = read_line("/sys/devices/system/cpu/smt/active");
  m.smt = active.empty() ? m.threads_per_core > 1 : active == "1";
}

// Output of a short helper command, trimmed; empty when it fails or is missing.
std::string command_output(const char* command) {
  std::FILE* p = ::popen(command, "r");
  if (!p) return {};
  char buf[256];
  std::string out;
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  int status = ::pclose(p);
  return status == 0 ? trim(out) : std::string{};
}

std::string hypervisor() {
#if defined(__x86_64__) || defined(__i386__)
  // CPUID leaf 1 ECX bit 31 says "running under a hypervisor"; leaf 0x40000000 names it.
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    if ((c & (1u << 31)) == 0) return "none";
    __cpuid(0x40000000, a, b, c, d);
    char vendor[13]{};
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &c, 4);
    std::memcpy(vendor + 8, &d, 4);
    static const std::pair<const char*, const char*> known[] = {
        {"KVMKVMKVM", "kvm"},          {"Microsoft Hv", "microsoft"}, {"VMwareVMware", "vmware"},
        {"XenVMMXenVMM", "xen"},       {"TCGTCGTCGTCG", "qemu"},      {"bhyve bhyve ", "bhyve"},
        {" lrpepyh  vr", "parallels"}, {"ACRNACRNACRN", "acrn"},      {"VBoxVBoxVBox", "oracle"}};
    for (const auto& [signature, name] : known) {
      if (std::strncmp(vendor, signature, std::strlen(signature)) == 0) return name;
    }
    return "hypervisor";
  }
#endif
  std::string virt = command_output("systemd-detect-virt --vm 2>/dev/null");
  return virt.empty() ? "unknown" : virt;
}

std::string container() {
  std::string c = command_output("systemd-detect-virt --container 2>/dev/null");
  if (!c.empty()) return c;
  std::error_code ec;
  if (std::filesystem::exists("/.dockerenv", ec)) return "docker";
  if (std::filesystem::exists("/run/.containerenv", ec)) return "podman";
  return "none";
}

double memory_gib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kib = 0;
  while (in >> key >> kib) {
    if (key == "MemTotal:")
      return static_cast<double>(static_cast<long>(kib / (1024.0 * 1024.0) * 10 + 0.5)) / 10;
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

// The stable part as a JSON object; nlohmann::json keeps object keys sorted, and dump() with no
// indent writes no spaces: the canonical form Python's json.dumps(sort_keys=True,
// separators=(",", ":"), ensure_ascii=False) writes, which the hash is defined over.
nlohmann::json stable_object(const machine_fingerprint& m) {
  return nlohmann::json{{"cores", m.cores},
                        {"cpu_model", m.cpu_model},
                        {"kernel", m.kernel},
                        {"smt", m.smt},
                        {"threads_per_core", m.threads_per_core},
                        {"virtualization", m.virtualization},
                        {"vulnerabilities", m.vulnerabilities}};
}

std::string canonical(const nlohmann::json& j) {
  // Invalid UTF-8 from a /proc or /sys file is replaced rather than aborting the run.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

machine_fingerprint read_machine_fingerprint() {
  machine_fingerprint m;
  m.cpu_model = cpu_model();
  topology(m);
  utsname u{};
  if (::uname(&u) == 0) m.kernel = u.release;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator("/sys/devices/system/cpu/vulnerabilities", ec)) {
    m.vulnerabilities[entry.path().filename().string()] = read_line(entry.path());
  }
  std::string governor = read_line("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor");
  m.governor = governor.empty() ? "unknown" : governor;
  m.virtualization = hypervisor();
  m.container = container();
  m.memory_gib = memory_gib();
  return m;
}

std::string stable_json(const machine_fingerprint& m) { return canonical(stable_object(m)); }

std::string to_json(const machine_fingerprint& m) {
  nlohmann::json j = stable_object(m);
  j["governor"] = m.governor;
  j["container"] = m.container;
  j["memory_gib"] = m.memory_gib;
  return canonical(j);
}

std::string machine_hash(const machine_fingerprint& m) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : stable_json(m)) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return fmt::format("{:016x}", h);
}

std::string host_name() {
  char buf[256]{};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "unknown";
  return buf;
}

std::string machine_id(const std::string& host, const std::string& hash) {
  std::string id;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    id += ok ? c : '-';
  }
  if (id.empty() || id[0] == '.') id = "host" + id;
  return id + "-" + hash.substr(0, 8);
}

}  // namespace cloak
