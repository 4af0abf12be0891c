// cloak-verify --hosts: the cross-host scenarios (hosts.cpp).
#pragma once

#include <string>

namespace cloak::verify {

struct hosts_options {
  bool as_json = false;
  std::string clients = "61000:61000:16";
  std::string filter;
  int skipped_exit =
      0;  // the exit status when this machine cannot make the topology (said on stderr)
};

// Builds the topology, a realm in its kdc namespace and D1/D2, runs every cross-host scenario from
// the middle namespace, prints the table or the JSON; returns the exit status.
int run_hosts(const hosts_options& options);

}  // namespace cloak::verify
