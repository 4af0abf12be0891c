// The ntlm package: GSSAPI NTLMSSP initiator credentials for many clients in one process, the
// client's three legs, and the acceptor that maps DOMAIN\user back to an identity.
#include <fmt/format.h>

#include <cloak/ntlm.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "gss_package.hpp"
#include "ntlm_common.hpp"

namespace cloak {

namespace detail {

// 1.3.6.1.4.1.311.2.2.10, DER without tag and length.
gss_OID_desc ntlmssp_oid{10, const_cast<char*>("\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a")};

// NTLMSSP through GSSAPI; gss-ntlmssp has no iov MIC.
gss_mechanism ntlm_mechanism() noexcept { return {&ntlmssp_oid, mic_form::plain}; }

std::string ntlm_message(const gss_status& status) { return gss_message(status, &ntlmssp_oid); }

// MIT's mechglue reads GSS_MECH_CONFIG (else /etc/gss) when it first needs its mechanism list; a
// process that did not point it at the domain's file would silently use the system's.
void check_environment(const ntlm_info& info) {
  const char* conf = std::getenv("GSS_MECH_CONFIG");
  if (!conf || info.mech_config != conf) {
    throw std::runtime_error(
        fmt::format("GSS_MECH_CONFIG is {} but the NTLM domain's mechanism file is {}: call "
                    "ntlm_domain::export_environment() (or set it) before using the ntlm package",
                    conf ? conf : "unset", info.mech_config));
  }
}

}  // namespace detail

std::vector<ntlm_account> ntlm_client_accounts(const ntlm_info& info) {
  std::ifstream in(info.client_keys);
  if (!in) throw std::runtime_error(fmt::format("cannot read {}", info.client_keys));
  std::vector<ntlm_account> out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    ntlm_account a;
    if (fields >> a.uid >> a.user >> a.nt_hash) out.push_back(std::move(a));
  }
  return out;
}

// ---- initiator credentials

struct ntlm_credentials::impl {
  struct entry {
    std::string user;
    detail::gss_cred cred;
  };
  ntlm_info info;
  // Written only by the constructor: lookups from many threads need no lock.
  std::unordered_map<std::uint32_t, entry> by_uid;
};

ntlm_credentials::ntlm_credentials(const ntlm_info& info)
    : ntlm_credentials(info, ntlm_client_accounts(info)) {}

ntlm_credentials::ntlm_credentials(const ntlm_info& info, std::vector<ntlm_account> accounts)
    : impl_(std::make_unique<impl>()) {
  using namespace detail;
  check_environment(info);
  impl_->info = info;
  for (ntlm_account& a : accounts) {
    gss_name name = import_name(a.user, GSS_C_NT_USER_NAME, &ntlmssp_oid);
    gss_key_value_element_desc store[] = {{"ntlmssp_domain", info.domain.c_str()},
                                          {"ntlmssp_nthash", a.nt_hash.c_str()}};
    gss_status status;
    gss_cred cred = acquire_cred_from(name, &ntlmssp_oid, GSS_C_INITIATE, store, status);
    if (status.failed()) {
      throw std::runtime_error(
          fmt::format("ntlm credentials for uid {} ({}): {}", a.uid, a.user, ntlm_message(status)));
    }
    impl_->by_uid[a.uid] = {std::move(a.user), std::move(cred)};
  }
}

ntlm_credentials::~ntlm_credentials() = default;

const ntlm_info& ntlm_credentials::info() const noexcept { return impl_->info; }

bool ntlm_credentials::find(std::uint32_t uid, gss_cred_id_struct*& cred, std::string_view& user,
                            std::string& why) const noexcept {
  auto it = impl_->by_uid.find(uid);
  if (it == impl_->by_uid.end()) {
    try {
      why = fmt::format(
          "no NTLM user for uid {} here (this process holds credentials for {} users of domain "
          "{})",
          uid, impl_->by_uid.size(), impl_->info.domain);
    } catch (...) {
    }
    return false;
  }
  cred = it->second.cred.get();
  user = it->second.user;
  return true;
}

bool ntlm_credentials::has_credentials(std::uint32_t uid) const noexcept {
  return impl_->by_uid.contains(uid);
}

// ---- the client and server packages

namespace detail {
namespace {

class ntlm_client_state final : public gss_client_state {};

class ntlm_client final : public gss_client_package<ntlm_client_state> {
 public:
  ntlm_client(const ntlm_credentials& credentials, ntlm_client_options options)
      : gss_client_package(ntlm_mechanism()), credentials_(credentials), options_(options) {
    check_environment(credentials_.info());
    target_ = import_name(credentials_.info().service, GSS_C_NT_HOSTBASED_SERVICE, &ntlmssp_oid);
    flags_ = protection_flags(options_.per_call);
  }

  package_id id() const noexcept override { return package_id::ntlm; }
  protection per_call() const noexcept override { return options_.per_call; }

  establish_outcome establish(const presentation& p, establish_legs& legs) noexcept override {
    return establish_as(p, [&](std::uint32_t uid, establish_outcome& out) {
      gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
      std::string_view user;
      if (!credentials_.find(uid, cred, user, out.detail)) {
        out.error = call_error::no_credentials;
        return;
      }
      auto state = std::make_unique<ntlm_client_state>();
      out.error = run_legs(user, cred, *state, legs, out.detail);
      if (out.error == call_error::ok) out.state = std::move(state);
    });
  }

 private:
  call_error run_legs(std::string_view user, gss_cred_id_t cred, ntlm_client_state& st,
                      establish_legs& legs, std::string& detail) {
    leg_rules rules;
    rules.max_legs = 4;
    rules.reply_must_continue = true;
    rules.missing_reply = "the server answered the NEGOTIATE without a CHALLENGE";
    gss_status failed;
    call_error e =
        initiate({cred, target_.get(), &ntlmssp_oid, flags_}, rules, st.ctx, legs, failed, detail);
    if (failed.failed()) {
      detail = fmt::format("gss_init_sec_context ({} for {}): {}", user,
                           credentials_.info().service, ntlm_message(failed));
    }
    return e;
  }

  const ntlm_credentials& credentials_;
  ntlm_client_options options_;
  gss_name target_;
  OM_uint32 flags_ = 0;
};

// gss_server_state::name is the authenticated DOMAIN\user.
class ntlm_server_state final : public gss_server_state {};

class ntlm_server final : public gss_server_package<ntlm_server_state> {
 public:
  explicit ntlm_server(const ntlm_info& info) : gss_server_package(ntlm_mechanism()) {
    check_environment(info);
    names_ = idmap::load(info.idmap, "user");
    gss_name service = import_name(info.service, GSS_C_NT_HOSTBASED_SERVICE, &ntlmssp_oid);
    gss_key_value_element_desc store[] = {{"ntlmssp_keyfile", info.keyfile.c_str()}};
    gss_status status;
    // One acceptor handle for every connection; each accept has its own context, and gss-ntlmssp
    // re-reads the user file on every AUTHENTICATE.
    cred_ = acquire_cred_from(service, &ntlmssp_oid, GSS_C_ACCEPT, store, status);
    if (status.failed()) {
      throw std::runtime_error(
          fmt::format("cannot acquire NTLM acceptor credentials for {} from {}: {}", info.service,
                      info.keyfile, ntlm_message(status)));
    }
  }

  package_id id() const noexcept override { return package_id::ntlm; }
};

}  // namespace
}  // namespace detail

std::unique_ptr<client_package> make_ntlm_client(const ntlm_credentials& credentials,
                                                 ntlm_client_options options) {
  return std::make_unique<detail::ntlm_client>(credentials, options);
}

std::unique_ptr<server_package> make_ntlm_server(const ntlm_info& info) {
  return std::make_unique<detail::ntlm_server>(info);
}

std::string ntlm_authenticated_user(const server_context_state* state) {
  auto* st = dynamic_cast<const detail::ntlm_server_state*>(state);
  return st ? st->name : std::string();
}

}  // namespace cloak
