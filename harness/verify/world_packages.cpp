// The package worlds (world.hpp): local (kernel credentials, or the model in-process), kerberos (a
// realm this run starts), ntlm (a domain this run makes) and negotiate (both, SPNEGO over either),
// each against one downstream here.
#include <fmt/format.h>
#include <unistd.h>

#include <cloak/downstream.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/negotiate.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/realm.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <stdexcept>

#include "packages.hpp"
#include "world.hpp"

namespace cloak::verify {

namespace {

using json = nlohmann::json;

// Chooses the backend: the one asked for, else kernel when this process may switch identities,
// else the model (said on stderr). Records how the kernel backend got its privileges.
backend_kind choose_backend(const std::string& asked, std::string& privilege_mode) {
  privilege_mode = "root";
  backend_kind kind = backend_kind::kernel;
  if (!asked.empty()) {
    kind = parse_backend_kind(asked);
  } else if (auto why = kernel_backend_unavailable_reason()) {
    std::cerr << "cloak-verify: " << *why << "; falling back to the model backend\n";
    kind = backend_kind::model;
    privilege_mode = "model-fallback";
  }
  if (kind == backend_kind::kernel && ::getuid() != 0) privilege_mode = "capabilities";
  // The dispatcher says when it re-ran us in a user namespace; an explicitly chosen model backend
  // needs no privilege at all, whoever runs it.
  if (!asked.empty() && kind == backend_kind::model) privilege_mode = "model (requested)";
  if (const char* mode = std::getenv("CLOAK_PRIVILEGE_MODE"); mode && *mode) privilege_mode = mode;
  return kind;
}

class package_world final : public world {
 public:
  package_world(std::unique_ptr<identity_backend> backend, backend_kind kind,
                std::string privilege_mode, client_range range, std::string auth)
      : world(*backend, range),
        backend_(std::move(backend)),
        kind_(kind),
        privilege_mode_(std::move(privilege_mode)),
        auth_(std::move(auth)) {
    if (auth_ == "kerberos") {
      start_realm();
    } else if (auth_ == "ntlm") {
      make_domain();
    } else if (auth_ == "negotiate") {
      start_negotiate();
    } else if (kind_ == backend_kind::kernel) {
      downstream_config config;
      config.clients = clients();
      server_ = std::make_unique<downstream_process>(config);
      source_ = "kernel: SCM_CREDENTIALS on each establishing message, read by cloak-downstream";
    } else {
      source_ = "model: the in-process downstream reads the model thread token";
    }
  }

  world_kind kind() const noexcept override {
    if (negotiate_)
      return mech_ == negotiate_mech::krb5 ? world_kind::negotiate_krb5
                                           : world_kind::negotiate_ntlm;
    return auth_ == "kerberos" ? world_kind::kerberos
           : auth_ == "ntlm"   ? world_kind::ntlm
                               : world_kind::local;
  }

  std::unique_ptr<connection> connect() override {
    if (negotiate_) {
      negotiate_client_options o;
      o.mech = mech_;
      return connect(make_negotiate_client(*negotiate_, o), std::nullopt);
    }
    if (credentials_) return connect(make_kerberos_client(*credentials_), std::nullopt);
    if (ntlm_) return connect(make_ntlm_client(*ntlm_), std::nullopt);
    if (server_) return make_uds_connection({server_->socket_path()});
    return make_inproc_connection(model_, backend());
  }
  std::unique_ptr<connection> connect(std::unique_ptr<client_package> package,
                                      const std::optional<tcp_options>& tcp) override {
    if (!server_ || tcp) return world::connect(std::move(package), tcp);
    return make_connection(make_uds_channel({server_->socket_path()}), std::move(package));
  }

  kerberos_credentials& kerberos() override {
    return credentials_ ? *credentials_ : world::kerberos();
  }
  ntlm_credentials& ntlm() override { return ntlm_ ? *ntlm_ : world::ntlm(); }
  const ntlm_info& ntlm_domain() override {
    return domain_ ? domain_->info() : world::ntlm_domain();
  }
  negotiate_credentials& negotiate() override {
    return negotiate_ ? *negotiate_ : world::negotiate();
  }
  negotiate_mech mech() const override { return negotiate_ ? mech_ : world::mech(); }
  void use_mech(negotiate_mech m) override {
    if (!negotiate_) world::use_mech(m);
    mech_ = m;
  }
  std::string scenario_prefix() const override {
    return negotiate_ ? fmt::format("mech:{}/", to_string(mech_)) : "";
  }
  void inject(fault what) override {
    if (!kdc_ || (what != fault::stop_kdc && what != fault::continue_kdc)) world::inject(what);
    if (what == fault::stop_kdc && !kdc_->kill_kdc(SIGSTOP))
      throw std::runtime_error("cannot stop the KDC");
    if (what == fault::continue_kdc) kdc_->kill_kdc(SIGCONT);
  }

  json describe() const override {
    json out;
    out["backend"] = std::string(to_string(kind_));
    out["privilege_mode"] = privilege_mode_;
    out["identity_source"] = source_;
    out["auth"] = auth_;
    if (negotiate_) {
      out["realm"] = realm_json_;
      out["ntlm"] = ntlm_json_;
      out["mechanism"] = "SPNEGO 1.3.6.1.5.5.2 (MIT krb5) over krb5 or NTLMSSP";
    } else if (!realm_json_.is_null()) {
      out[auth_ == "ntlm" ? "ntlm" : "realm"] = realm_json_;
    }
    out["process_identity"] = show(backend().process_identity());
    out["clients"] = {{"first_uid", clients().first_uid},
                      {"first_gid", clients().first_gid},
                      {"count", clients().count}};
    return out;
  }
  std::string headline() const override {
    return fmt::format("backend {} ({}), auth {}; identity source: {}\n\n", to_string(kind_),
                       privilege_mode_, auth_, source_);
  }

 private:
  // negotiate: the realm and the domain, SPNEGO credentials over both, and one downstream whose
  // SPNEGO acceptor covers both mechanisms.
  void start_negotiate() {
    start_realm(false);
    make_domain(false);
    negotiate_ = std::make_unique<negotiate_credentials>(credentials_.get(), &domain_->info(),
                                                         clients(), backend().process_identity());
    downstream_config config;
    config.clients = clients();
    config.realm_dir = kdc_->info().dir;
    config.rcache = "file2";
    config.ntlm_dir = domain_->info().dir;
    server_ = std::make_unique<downstream_process>(config);
    source_ =
        "negotiate: SPNEGO's negotiated mechanism names the caller (krb5: the AP-REQ's ticket; "
        "NTLM: the AUTHENTICATE's user), mapped by the realm's or the domain's idmap";
  }

  void start_realm(bool serve = true) {
    if (kind_ != backend_kind::kernel) {
      throw std::invalid_argument(
          fmt::format("--auth {} needs the kernel backend (the thread's kernel identity selects "
                      "the principal)",
                      auth_));
    }
    realm_config rc;
    rc.clients = clients();
    rc.process = backend().process_identity();
    kdc_ = std::make_unique<realm>(rc);
    kdc_->export_environment();
    credentials_ = std::make_unique<kerberos_credentials>(kdc_->info(), clients(),
                                                          backend().process_identity());
    realm_json_ = {{"name", kdc_->info().name},
                   {"setup_seconds", kdc_->info().setup_seconds},
                   {"rcache", "file2"}};
    if (!serve) return;
    downstream_config config;
    config.clients = clients();
    config.realm_dir = kdc_->info().dir;
    config.rcache = "file2";
    server_ = std::make_unique<downstream_process>(config);
    source_ =
        "kerberos: the principal of the AP-REQ's ticket, mapped to an identity by the realm's "
        "idmap";
  }

  void make_domain(bool serve = true) {
    if (kind_ != backend_kind::kernel) {
      throw std::invalid_argument(fmt::format(
          "--auth {} needs the kernel backend (the thread's kernel identity selects the user)",
          auth_));
    }
    ntlm_config nc;
    nc.clients = clients();
    nc.process = backend().process_identity();
    // A user the acceptor knows whom the idmap maps to nobody (the unknown-user scenario).
    nc.unmapped.push_back(the_ntlm_stranger(resolve(stranger).uid));
    domain_ = std::make_unique<cloak::ntlm_domain>(nc);
    domain_->export_environment();  // before any GSSAPI call; cloak-downstream inherits it
    ntlm_ = std::make_unique<ntlm_credentials>(domain_->info());
    json domain = {{"domain", domain_->info().domain},
                   {"service", domain_->info().service},
                   {"mechanism", domain_->info().mechanism}};
    if (!serve) {
      ntlm_json_ = std::move(domain);
      return;
    }
    downstream_config config;
    config.clients = clients();
    config.ntlm_dir = domain_->info().dir;
    server_ = std::make_unique<downstream_process>(config);
    source_ =
        "ntlm: the user of the NTLM AUTHENTICATE (gss-ntlmssp), checked against the domain's NT "
        "hashes and mapped to an identity by its idmap";
    realm_json_ = std::move(domain);
  }

  // Destroyed in reverse: the downstream before the credentials, the realm or domain, the backend.
  std::unique_ptr<identity_backend> backend_;
  backend_kind kind_;
  std::string privilege_mode_;
  std::string auth_;
  std::unique_ptr<realm> kdc_;
  std::unique_ptr<kerberos_credentials> credentials_;
  std::unique_ptr<cloak::ntlm_domain> domain_;
  std::unique_ptr<ntlm_credentials> ntlm_;
  std::unique_ptr<negotiate_credentials> negotiate_;  // over credentials_'s ccaches
  negotiate_mech mech_ = negotiate_mech::krb5;
  std::unique_ptr<downstream_process> server_;
  model_downstream model_;
  std::string source_;
  json realm_json_ = nullptr;
  json ntlm_json_ = nullptr;  // negotiate: the domain beside the realm
};

}  // namespace

std::unique_ptr<world> make_package_world(const package_world_options& options) {
  std::string privilege_mode;
  backend_kind kind = choose_backend(options.backend, privilege_mode);
  client_range clients = parse_client_range(options.clients);
  check_client_range(clients);
  return std::make_unique<package_world>(make_backend(kind), kind, std::move(privilege_mode),
                                         clients, options.auth);
}

}  // namespace cloak::verify
