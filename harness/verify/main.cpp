// cloak-verify: runs every scenario of docs/design.md §1 against a real downstream and shows what
// it saw, with the local package (kernel credentials), kerberos (a realm it starts itself), ntlm
// (a private NTLM domain it makes itself), negotiate (SPNEGO over either, once per mechanism), or
// across hosts (network namespaces it makes itself).
// The command line; the scenarios are a table (table_*.cpp) that one runner runs (runner.cpp) in
// the world the options choose (world_*.cpp).
#include <CLI/CLI.hpp>
#include <cloak/negotiate.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "report.hpp"
#include "runner.hpp"
#include "world.hpp"

namespace {

using namespace cloak;

struct options {
  bool as_json = false;
  std::string backend;
  std::string clients = "61000:61000:16";
  std::string filter;
  std::string auth = "local";
  std::string mech = "both";  // negotiate: krb5, ntlm or both (every scenario once per mechanism)
  bool hosts = false;
};

int run(const options& opt) {
  std::unique_ptr<verify::world> w;
  if (opt.hosts) {
    client_range clients = parse_client_range(opt.clients);
    check_client_range(clients);
    if (auto why = verify::hosts_unavailable_reason()) {
      verify::print_hosts_skipped(*why, opt.as_json);
      return 0;
    }
    w = verify::make_hosts_world(clients);
  } else {
    w = verify::make_package_world({opt.backend, opt.clients, opt.auth});
  }
  std::vector<verify::scenario_record> records;
  if (opt.auth == "negotiate") {
    for (negotiate_mech m : {negotiate_mech::krb5, negotiate_mech::ntlm}) {
      if (opt.mech != "both" && opt.mech != to_string(m)) continue;
      w->use_mech(m);
      for (auto& r : verify::run_scenarios(*w, opt.filter)) records.push_back(std::move(r));
    }
  } else {
    records = verify::run_scenarios(*w, opt.filter);
  }
  nlohmann::json doc = verify::document(*w, records);
  if (opt.auth == "negotiate") doc["mech"] = opt.mech;
  if (opt.as_json) {
    std::cout << doc.dump(2) << "\n";
  } else {
    verify::print_table(*w, doc);
  }
  return doc["ok"].get<bool>() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{
      "cloak-verify: run every cloaking scenario of docs/design.md §1 and show the identity the "
      "downstream saw (docs/verify.md)"};
  app.add_flag("--json", opt.as_json, "print JSON (described in docs/verify.md)");
  app.add_option("--backend", opt.backend, "kernel or model (default: kernel when privileged)")
      ->check(CLI::IsMember({"kernel", "model"}));
  app.add_option("--clients", opt.clients, "fake client range UID:GID:COUNT or FIRST:COUNT");
  app.add_option("--filter", opt.filter, "run only scenarios whose name contains this");
  app.add_option("--auth", opt.auth,
                 "authentication package: local (kernel credentials, the default), kerberos (a "
                 "realm this run starts), ntlm (an NTLM domain this run makes) or negotiate "
                 "(SPNEGO over both)")
      ->check(CLI::IsMember({"local", "kerberos", "ntlm", "negotiate"}));
  app.add_option("--mech", opt.mech,
                 "with --auth negotiate: the mechanism SPNEGO negotiates, krb5, ntlm or both "
                 "(the default: every scenario once per mechanism, named mech:M/<scenario>)")
      ->check(CLI::IsMember({"krb5", "ntlm", "both"}));
  app.add_flag("--hosts", opt.hosts,
               "the cross-host scenarios instead (one-hop, two-hop; kerberos over tcp between "
               "network namespaces this run creates; needs CAP_NET_ADMIN, else skipped with the "
               "reason printed)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "cloak-verify: error: " << e.what() << "\n\n" << app.help();
    return 2;
  }
  if (app.count("--mech") > 0 && opt.auth != "negotiate") {
    std::cerr << "cloak-verify: error: --mech needs --auth negotiate\n\n" << app.help();
    return 2;
  }
  try {
    return run(opt);
  } catch (const std::invalid_argument& e) {  // a bad command line that parsing could not see
    std::cerr << "cloak-verify: error: " << e.what() << "\n\n" << app.help();
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cloak-verify: error: " << e.what() << "\n";
    return 1;
  }
}
