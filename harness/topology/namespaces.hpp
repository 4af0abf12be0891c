// Making and removing the topology's namespaces with iproute2 (shared by cloak-topology, which owns
// them, and cloak::topology, which removes what a killed supervisor could not).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace cloak::detail {

// The namespaces of a topology called `prefix`: the switch first, then every host.
std::vector<std::string> topology_namespaces(const std::string& prefix);

// The path of iproute2's `ip`; throws std::runtime_error when it is not installed.
std::string ip_program();

// Creates the switch namespace with its bridge and one namespace per host with a veth pair to the
// bridge, loopback up, its address and no other route. Throws std::runtime_error with ip's message
// (what was made so far stays: the caller removes it).
void create_topology(const std::string& prefix);

// Ends the processes running inside the namespaces (SIGTERM, a bounded wait, SIGKILL; never
// `spare`), then deletes the namespaces (their veths go with them). Returns what could not be
// removed, empty when everything is gone.
std::string remove_topology(const std::string& prefix, pid_t spare,
                            std::chrono::milliseconds timeout) noexcept;

}  // namespace cloak::detail
