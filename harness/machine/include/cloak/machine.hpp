// The machine fingerprint a result file carries (docs/results.md), so results can say where they
// came from.
#pragma once

#include <map>
#include <string>

namespace cloak {

// What the machine is. Fields read from /proc and /sys; anything unreadable is "unknown" (or 0).
struct machine_fingerprint {
  std::string cpu_model = "unknown";
  int cores = 0;             // physical cores online
  int threads_per_core = 0;  // hardware threads per core
  bool smt = false;
  std::string kernel = "unknown";                      // uname release
  std::map<std::string, std::string> vulnerabilities;  // /sys/devices/system/cpu/vulnerabilities
  std::string governor = "unknown";     // cpufreq governor of cpu0, "unknown" without cpufreq
  std::string virtualization = "none";  // hypervisor: "none", "kvm", "xen", ...
  std::string container = "none";       // container runtime: "none", "docker", ...
  double memory_gib = 0;
};

// Reads the fingerprint of this machine (never throws: what cannot be read stays "unknown").
machine_fingerprint read_machine_fingerprint();

// The fingerprint as a JSON object: keys sorted, no spaces (the form Python's
// json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes).
std::string to_json(const machine_fingerprint& m);
// The stable part only (cpu_model, cores, threads_per_core, smt, kernel, vulnerabilities,
// virtualization), in the same canonical form: what the hash covers.
std::string stable_json(const machine_fingerprint& m);
// 16 lowercase hex digits: 64-bit FNV-1a of stable_json(m).
std::string machine_hash(const machine_fingerprint& m);
// Directory name under results/: the host name (characters outside [A-Za-z0-9._-] become '-')
// and the first 8 hex digits of the hash, e.g. "vm-3f2a9c41".
std::string machine_id(const std::string& host_name, const std::string& hash);
std::string host_name();

}  // namespace cloak
