// The negotiate package: SPNEGO initiator credentials per identity with their negotiable mechanisms
// set to krb5 or NTLM, the client's legs, and one acceptor over both mechanisms.
#include <fmt/format.h>
#include <gssapi/gssapi_krb5.h>

#include <cloak/negotiate.hpp>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "gss_package.hpp"
#include "kerberos_common.hpp"
#include "kerberos_server.hpp"
#include "ntlm_common.hpp"

namespace cloak {

std::string_view to_string(negotiate_mech m) noexcept {
  return m == negotiate_mech::ntlm ? "ntlm" : "krb5";
}

negotiate_mech parse_negotiate_mech(std::string_view text) {
  if (text == "krb5") return negotiate_mech::krb5;
  if (text == "ntlm") return negotiate_mech::ntlm;
  throw std::invalid_argument(fmt::format("unknown mech \"{}\": use krb5 or ntlm", text));
}

namespace detail {
namespace {

// 1.3.6.1.5.5.2, DER without tag and length.
gss_OID_desc spnego_oid{6, const_cast<char*>("\x2b\x06\x01\x05\x05\x02")};

std::string spnego_message(const gss_status& status) { return gss_message(status, &spnego_oid); }

gss_OID inner_oid(negotiate_mech m) noexcept {
  return m == negotiate_mech::ntlm ? &ntlmssp_oid : const_cast<gss_OID>(gss_mech_krb5);
}

// MICs and seals run as the negotiated mechanism's do (SPNEGO passes the iov forms through).
mic_form form_for(negotiate_mech m) noexcept {
  return m == negotiate_mech::ntlm ? mic_form::plain : mic_form::iov;
}

mic_form form_of_negotiated(gss_OID negotiated) noexcept {
  bool krb5 = negotiated != GSS_C_NO_OID && gss_oid_equal(negotiated, gss_mech_krb5);
  return krb5 ? mic_form::iov : mic_form::plain;
}

// A SPNEGO credential for `name` from `store`, whose negotiable mechanisms are `mech` alone.
gss_cred spnego_cred(const gss_name& name, negotiate_mech mech, gss_cred_usage_t usage,
                     std::span<const gss_key_value_element_desc> store, const std::string& who) {
  gss_status status;
  gss_cred cred = acquire_cred_from(name, &spnego_oid, usage, store, status);
  if (status.failed()) {
    throw std::runtime_error(
        fmt::format("SPNEGO credentials for {}: {}", who, spnego_message(status)));
  }
  if (usage == GSS_C_INITIATE) {
    gss_OID_desc inner = *inner_oid(mech);
    gss_OID_set_desc mechs{1, &inner};
    status.major = gss_set_neg_mechs(&status.minor, cred.get(), &mechs);
    if (status.failed()) {
      throw std::runtime_error(fmt::format("gss_set_neg_mechs ({}) for {}: {}", to_string(mech),
                                           who, spnego_message(status)));
    }
  }
  return cred;
}

}  // namespace
}  // namespace detail

// ---- initiator credentials

struct negotiate_credentials::impl {
  struct entry {
    std::string name;
    detail::gss_cred cred;
  };
  // Written only by the constructor: lookups from many threads need no lock.
  std::unordered_map<std::uint32_t, entry> by_uid[2];
  std::string service[2];
  bool offered[2] = {false, false};
};

namespace {
std::size_t slot(negotiate_mech m) noexcept { return m == negotiate_mech::ntlm ? 1 : 0; }
}  // namespace

negotiate_credentials::negotiate_credentials(kerberos_credentials* kerberos, const ntlm_info* ntlm,
                                             const client_range& clients, const identity& process)
    : impl_(std::make_unique<impl>()) {
  using namespace detail;
  if (!kerberos && !ntlm)
    throw std::runtime_error("negotiate credentials need a realm's or a domain's credentials");
  if (kerberos) {
    auto& out = impl_->by_uid[slot(negotiate_mech::krb5)];
    impl_->service[slot(negotiate_mech::krb5)] = kerberos->service();
    impl_->offered[slot(negotiate_mech::krb5)] = true;
    std::vector<std::uint32_t> uids{process.uid};
    for (std::uint32_t i = 0; i < clients.count; ++i) uids.push_back(clients.client(i).uid);
    for (std::uint32_t uid : uids) {
      kerberos_initiator who;
      std::string why;
      if (!kerberos->find(uid, who, why)) throw std::runtime_error(why);
      std::string principal(who.principal), ccache(who.ccache);
      gss_name name = import_principal(principal);
      gss_key_value_element_desc store[] = {{"ccache", ccache.c_str()}};
      gss_cred cred = spnego_cred(name, negotiate_mech::krb5, GSS_C_INITIATE, store,
                                  fmt::format("uid {} ({})", uid, principal));
      out[uid] = {std::move(principal), std::move(cred)};
    }
  }
  if (ntlm) {
    check_environment(*ntlm);
    auto& out = impl_->by_uid[slot(negotiate_mech::ntlm)];
    impl_->service[slot(negotiate_mech::ntlm)] = ntlm->service;
    impl_->offered[slot(negotiate_mech::ntlm)] = true;
    for (ntlm_account& a : ntlm_client_accounts(*ntlm)) {
      gss_name name = import_name(a.user, GSS_C_NT_USER_NAME, &ntlmssp_oid);
      gss_key_value_element_desc store[] = {{"ntlmssp_domain", ntlm->domain.c_str()},
                                            {"ntlmssp_nthash", a.nt_hash.c_str()}};
      gss_cred cred = spnego_cred(name, negotiate_mech::ntlm, GSS_C_INITIATE, store,
                                  fmt::format("uid {} ({})", a.uid, a.user));
      out[a.uid] = {std::move(a.user), std::move(cred)};
    }
  }
}

negotiate_credentials::~negotiate_credentials() = default;

bool negotiate_credentials::offers(negotiate_mech mech) const noexcept {
  return impl_->offered[slot(mech)];
}

const std::string& negotiate_credentials::service(negotiate_mech mech) const noexcept {
  return impl_->service[slot(mech)];
}

bool negotiate_credentials::find(negotiate_mech mech, std::uint32_t uid, gss_cred_id_struct*& cred,
                                 std::string_view& name, std::string& why) const noexcept {
  const auto& map = impl_->by_uid[slot(mech)];
  auto it = map.find(uid);
  if (it == map.end()) {
    try {
      why =
          fmt::format("no SPNEGO ({}) credentials for uid {} here (this process holds them for {})",
                      to_string(mech), uid, map.size());
    } catch (...) {
    }
    return false;
  }
  cred = it->second.cred.get();
  name = it->second.name;
  return true;
}

// ---- the client and server packages

namespace detail {
namespace {

class negotiate_client_state final : public gss_client_state {};

class negotiate_client final : public gss_client_package<negotiate_client_state> {
 public:
  negotiate_client(const negotiate_credentials& credentials, negotiate_client_options options)
      : gss_client_package(gss_mechanism{&spnego_oid, form_for(options.mech)}),
        credentials_(credentials),
        options_(options) {
    if (!credentials_.offers(options_.mech)) {
      throw std::runtime_error(fmt::format("these negotiate credentials offer no {} (mech:{})",
                                           to_string(options_.mech), to_string(options_.mech)));
    }
    const std::string& service = credentials_.service(options_.mech);
    target_ = options_.mech == negotiate_mech::ntlm
                  ? import_name(service, GSS_C_NT_HOSTBASED_SERVICE, &spnego_oid)
                  : import_principal(service);
    flags_ = (options_.mutual ? GSS_C_MUTUAL_FLAG : 0) | protection_flags(options_.per_call);
  }

  package_id id() const noexcept override { return package_id::negotiate; }
  protection per_call() const noexcept override { return options_.per_call; }

  establish_outcome establish(const presentation& p, establish_legs& legs) noexcept override {
    return establish_as(p, [&](std::uint32_t uid, establish_outcome& out) {
      gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
      std::string_view name;
      if (!credentials_.find(options_.mech, uid, cred, name, out.detail)) {
        out.error = call_error::no_credentials;
        return;
      }
      // Delegate level over krb5 is a forwarded TGT, as in the kerberos package.
      OM_uint32 flags = flags_;
      if (options_.mech == negotiate_mech::krb5 && p.level == impersonation_level::delegate)
        flags |= GSS_C_DELEG_FLAG;
      auto state = std::make_unique<negotiate_client_state>();
      leg_rules rules;
      rules.max_legs = 8;
      rules.missing_reply = "the server answered done while SPNEGO still expects a token";
      gss_status failed;
      out.error = initiate({cred, target_.get(), &spnego_oid, flags}, rules, state->ctx, legs,
                           failed, out.detail);
      if (failed.failed()) {
        out.detail = fmt::format("gss_init_sec_context (SPNEGO over {}, {} for {}): {}",
                                 to_string(options_.mech), name,
                                 credentials_.service(options_.mech), spnego_message(failed));
        if (options_.mech == negotiate_mech::krb5 && is_clock_skew(failed))
          out.error = call_error::clock_skew;
      }
      if (out.error == call_error::ok) out.state = std::move(state);
    });
  }

 private:
  const negotiate_credentials& credentials_;
  negotiate_client_options options_;
  gss_name target_;
  OM_uint32 flags_ = 0;
};

// gss_server_state::name is the authenticated principal or DOMAIN\user; `form` says which
// mechanism SPNEGO negotiated.
class negotiate_server_state final : public gss_server_state {};

class negotiate_server final : public gss_server_package<negotiate_server_state> {
 public:
  negotiate_server(const realm_info* realm, const ntlm_info* ntlm, kerberos_server_options k)
      : gss_server_package(gss_mechanism{&spnego_oid, mic_form::plain}, krb5_refusal) {
    if (!realm && !ntlm)
      throw std::runtime_error("the negotiate package needs a realm or an NTLM domain");
    form_of_ = form_of_negotiated;
    std::string keytab, rcache;
    std::vector<gss_key_value_element_desc> store;
    if (realm) {
      check_environment(*realm);
      keytab = k.keytab.empty() ? realm->service_keytab : k.keytab;
      rcache = rcache_name(k.rcache);
      names_.add(load_realm_idmap(*realm));
      store.push_back({"keytab", keytab.c_str()});
      store.push_back({"rcache", rcache.c_str()});
    }
    if (ntlm) {
      check_environment(*ntlm);
      names_.add(idmap::load(ntlm->idmap, "user"));
      store.push_back({"ntlmssp_keyfile", ntlm->keyfile.c_str()});
    }
    // gss-ntlmssp accepts only under a name: the domain's host-based service (cloak@downstream),
    // which krb5 takes as cloak/downstream in any realm of its keytab. krb5 alone: no name, any key
    // of the service keytab.
    gss_name name;
    if (ntlm) name = import_name(ntlm->service, GSS_C_NT_HOSTBASED_SERVICE, &spnego_oid);
    gss_status status;
    cred_ = acquire_cred_from(name, &spnego_oid, GSS_C_ACCEPT, store, status);
    if (status.failed()) {
      throw std::runtime_error(fmt::format("cannot acquire SPNEGO acceptor credentials ({}{}): {}",
                                           realm ? "krb5 " + keytab : std::string(),
                                           ntlm ? " NTLM " + ntlm->keyfile : std::string(),
                                           spnego_message(status)));
    }  // Only the mechanisms this acceptor has keys for are negotiable: without it MIT's SPNEGO
    // acceptor tries every mechanism the mechglue knows (gss-ntlmssp with no user file for a
    // krb5-only downstream), and a client offering NTLM alone brought the downstream down
    // (tests/negotiate: a downstream without an NTLM domain refuses SPNEGO over NTLM).
    std::vector<gss_OID_desc> have;
    if (realm) have.push_back(*inner_oid(negotiate_mech::krb5));
    if (ntlm) have.push_back(*inner_oid(negotiate_mech::ntlm));
    gss_OID_set_desc mechs{have.size(), have.data()};
    status.major = gss_set_neg_mechs(&status.minor, cred_.get(), &mechs);
    if (status.failed()) {
      throw std::runtime_error(
          fmt::format("gss_set_neg_mechs on the SPNEGO acceptor: {}", spnego_message(status)));
    }
  }

  package_id id() const noexcept override { return package_id::negotiate; }
};

}  // namespace
}  // namespace detail

std::unique_ptr<client_package> make_negotiate_client(const negotiate_credentials& credentials,
                                                      negotiate_client_options options) {
  return std::make_unique<detail::negotiate_client>(credentials, options);
}

std::unique_ptr<server_package> make_negotiate_server(const realm_info* realm,
                                                      const ntlm_info* ntlm,
                                                      kerberos_server_options kerberos) {
  return std::make_unique<detail::negotiate_server>(realm, ntlm, std::move(kerberos));
}

std::string negotiate_authenticated_name(const server_context_state* state) {
  auto* st = dynamic_cast<const detail::negotiate_server_state*>(state);
  return st ? st->name : std::string();
}

bool negotiated_mech(const server_context_state* state, negotiate_mech& out) noexcept {
  auto* st = dynamic_cast<const detail::negotiate_server_state*>(state);
  if (!st) return false;
  out = st->form == detail::mic_form::iov ? negotiate_mech::krb5 : negotiate_mech::ntlm;
  return true;
}

}  // namespace cloak
