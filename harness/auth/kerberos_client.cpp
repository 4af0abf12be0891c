// The kerberos package's client side: selects the credentials by the presenting thread's identity
// and runs the krb5 legs; tickets:cold fetches each context's service ticket itself.
#include <fmt/format.h>
#include <gssapi/gssapi_krb5.h>

#include <cloak/enum_names.hpp>
#include <cloak/kerberos.hpp>
#include <ctime>
#include <stdexcept>

#include "gss_package.hpp"
#include "kdc_hook.hpp"
#include "kerberos_common.hpp"

namespace cloak {

namespace {

constexpr auto ticket_names = make_enum_names<ticket_state>(
    "ticket state", {{ticket_state::warm, "warm"}, {ticket_state::cold, "cold"}}, "unknown");

}  // namespace

std::string_view to_string(ticket_state t) noexcept { return ticket_names.to_string(t); }

namespace detail {
namespace {

class kerberos_client_state final : public gss_client_state {};

// Credentials for one cold context: a fresh MEMORY ccache holding only a copy of the TGT, so the
// service ticket must come from the KDC. krb5_cc_remove_cred works on MEMORY ccaches in 1.20, but
// it only empties the list node; every store appends another, so a long cold run would make each
// lookup in the shared ccache slower and slower. A fresh ccache keeps every context alike.
struct cold_credentials {
  krb5_context ctx = nullptr;
  krb5_ccache cc = nullptr;
  gss_cred cred;
  ~cold_credentials() {
    cred.reset();
    if (cc) krb5_cc_destroy(ctx, cc);
  }
};

class kerberos_client final : public gss_client_package<kerberos_client_state> {
 public:
  kerberos_client(kerberos_credential_source& source, kerberos_client_options options)
      : gss_client_package(krb5_mechanism()),
        source_(source),
        options_(std::move(options)),
        realm_(source.realm()),
        service_name_(options_.service.empty() ? source.service() : options_.service),
        kdc_(realm_, options_.kdc_timeout) {
    check_environment(realm_);
    flags_ = (options_.mutual ? GSS_C_MUTUAL_FLAG : 0) |
             (options_.delegate ? GSS_C_DELEG_FLAG : 0) | protection_flags(options_.per_call);
    target_ = import_principal(service_name_);
    service_ = parse_principal(kdc_.ctx, service_name_);
    std::string tgs = fmt::format("krbtgt/{0}@{0}", realm_.name);
    tgs_ = parse_principal(kdc_.ctx, tgs);
    if (options_.clock_offset_seconds != 0) {
      // Every time this context produces is shifted from now on: what a client with a wrong clock
      // sends.
      krb5_set_real_time(
          kdc_.ctx, static_cast<krb5_timestamp>(std::time(nullptr) + options_.clock_offset_seconds),
          0);
    }
  }
  ~kerberos_client() override {
    krb5_free_principal(kdc_.ctx, service_);
    krb5_free_principal(kdc_.ctx, tgs_);
  }

  package_id id() const noexcept override { return package_id::kerberos; }
  protection per_call() const noexcept override { return options_.per_call; }

  establish_outcome establish(const presentation& p, establish_legs& legs) noexcept override {
    return establish_as(p, [&](std::uint32_t uid, establish_outcome& out) {
      kerberos_initiator who;
      if (!source_.find(uid, who, out.detail)) {
        out.error = call_error::no_credentials;
        return;
      }
      cold_credentials cold;
      gss_cred_id_t cred = who.cred;
      if (options_.tickets == ticket_state::cold) {
        out.error = make_cold(who, cold, out.detail);
        if (out.error != call_error::ok) return;
        cred = cold.cred.get();
      }
      // Delegate level is a forwarded TGT: GSS_C_DELEG_FLAG on this context.
      OM_uint32 flags = flags_ | (p.level == impersonation_level::delegate ? GSS_C_DELEG_FLAG : 0);
      auto state = std::make_unique<kerberos_client_state>();
      out.error = run_legs(who, cred, flags, *state, legs, out.detail);
      if (out.error == call_error::ok) out.state = std::move(state);
    });
  }

 private:
  call_error make_cold(const kerberos_initiator& who, cold_credentials& cold, std::string& detail) {
    krb5_context ctx = kdc_.ctx;
    cold.ctx = ctx;
    std::string principal(who.principal), ccache(who.ccache);
    krb5_principal client = nullptr;
    krb5_ccache shared = nullptr;
    krb5_creds tgt{};
    bool have_tgt = false;
    krb5_creds* ticket = nullptr;
    std::string step = "cannot parse the principal";
    krb5_error_code rc = krb5_parse_name(ctx, principal.c_str(), &client);
    if (rc == 0) {
      step = "cannot open " + ccache;
      rc = krb5_cc_resolve(ctx, ccache.c_str(), &shared);
    }
    if (rc == 0) {
      step = "no TGT in " + ccache;
      krb5_creds match{};
      match.client = client;
      match.server = tgs_;
      rc = krb5_cc_retrieve_cred(ctx, shared, 0, &match, &tgt);
      have_tgt = rc == 0;
    }
    if (rc == 0) {
      step = "cannot create a MEMORY ccache";
      rc = krb5_cc_new_unique(ctx, "MEMORY", nullptr, &cold.cc);
    }
    if (rc == 0) rc = krb5_cc_initialize(ctx, cold.cc, client);
    if (rc == 0) rc = krb5_cc_store_cred(ctx, cold.cc, &tgt);
    if (rc == 0) {
      // The TGS-REQ, sent through the bounded hook.
      step = fmt::format("cannot get a service ticket for {} from the KDC", service_name_);
      krb5_creds want{};
      want.client = client;
      want.server = service_;
      rc = krb5_get_credentials(ctx, 0, cold.cc, &want, &ticket);
    }
    std::string why = rc ? krb5_message(ctx, rc) : std::string();
    if (ticket) krb5_free_creds(ctx, ticket);
    if (have_tgt) krb5_free_cred_contents(ctx, &tgt);
    if (shared) krb5_cc_close(ctx, shared);
    if (client) krb5_free_principal(ctx, client);
    if (rc != 0) {
      detail = fmt::format("{} (tickets:cold, {}): {}", step, principal, why);
      return rc == KRB5KRB_AP_ERR_SKEW ? call_error::clock_skew : call_error::authentication_failed;
    }
    gss_status s;
    s.major = gss_krb5_import_cred(&s.minor, cold.cc, nullptr, nullptr, cold.cred.out());
    if (s.failed()) {
      detail = fmt::format("gss_krb5_import_cred for {}: {}", principal, krb5_gss_message(s));
      return call_error::authentication_failed;
    }
    return call_error::ok;
  }

  call_error run_legs(const kerberos_initiator& who, gss_cred_id_t cred, OM_uint32 flags,
                      kerberos_client_state& st, establish_legs& legs, std::string& detail) {
    leg_rules rules;
    rules.max_legs = 8;
    rules.missing_reply =
        options_.mutual
            ? "the server answered done without the AP-REP that mutual authentication needs"
            : "the server answered done while GSS still expects a token";
    gss_status failed;
    call_error e = initiate({cred, target_.get(), krb5_mechanism().oid, flags}, rules, st.ctx, legs,
                            failed, detail);
    if (failed.failed()) {
      detail = fmt::format("gss_init_sec_context ({} for {}{}): {}", who.principal, service_name_,
                           (flags & GSS_C_DELEG_FLAG) ? ", forwarding the TGT" : "",
                           krb5_gss_message(failed));
      return is_clock_skew(failed) ? call_error::clock_skew : call_error::authentication_failed;
    }
    return e;
  }

  kerberos_credential_source& source_;
  kerberos_client_options options_;
  realm_info realm_;
  std::string service_name_;
  kdc_context kdc_;  // this package's own: a client package serves one thread
  gss_name target_;
  krb5_principal service_ = nullptr;
  krb5_principal tgs_ = nullptr;
  OM_uint32 flags_ = 0;
};

}  // namespace
}  // namespace detail

std::unique_ptr<client_package> make_kerberos_client(kerberos_credential_source& credentials,
                                                     kerberos_client_options options) {
  return std::make_unique<detail::kerberos_client>(credentials, options);
}

}  // namespace cloak
