// Delegated credentials: what a downstream presents to its next hop on its caller's behalf (the TGT
// its caller forwarded at delegate level), beside its own.
#include <fmt/format.h>
#include <gssapi/gssapi_krb5.h>

#include <algorithm>
#include <cloak/kerberos.hpp>
#include <vector>

#include "kdc_hook.hpp"
#include "kerberos_common.hpp"
#include "kerberos_server.hpp"

namespace cloak {

struct kerberos_delegated_credentials::impl {
  // One context's delegated TGT, copied out of the accepted context so it outlives it.
  struct registration {
    std::uint64_t context = 0;
    std::uint32_t uid = 0;
    std::string principal;
    std::string ccache;  // MEMORY:...
    krb5_ccache cc = nullptr;
    gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
    std::uint64_t last_use = 0;
  };
  static constexpr std::size_t max_registrations = 16;

  kerberos_credentials& own;
  std::string next_service;
  detail::kdc_context kdc;
  krb5_principal next = nullptr;
  std::vector<registration> registrations;
  std::uint64_t clock = 0;
  // The context being served: whom it authenticated, and its registration (nullptr: it delegated
  // nothing).
  bool serving = false;
  std::uint64_t serving_context = 0;
  std::uint32_t serving_uid = 0;
  std::string serving_principal;
  registration* current = nullptr;

  impl(kerberos_credentials& o, std::string service, std::chrono::milliseconds timeout)
      : own(o), next_service(std::move(service)), kdc(o.realm(), timeout) {
    next = detail::parse_principal(kdc.ctx, next_service);
    registrations.reserve(max_registrations);  // `current` points into it: never reallocated
  }
  ~impl() {
    for (auto& r : registrations) drop(r);
    krb5_free_principal(kdc.ctx, next);
  }
  void drop(registration& r) noexcept {
    if (r.cred != GSS_C_NO_CREDENTIAL) detail::release_handle(r.cred);
    if (r.cc) krb5_cc_destroy(kdc.ctx, r.cc);
    r.cc = nullptr;
  }

  // Copies the delegated TGT into a ccache of our own and fetches the next hop's service ticket
  // with it through the bounded hook: gss_init_sec_context would otherwise ask the KDC itself,
  // unbounded.
  call_error add(std::uint64_t context, std::uint32_t uid, const detail::kerberos_server_state& st,
                 std::string& why) {
    registration r;
    r.context = context;
    r.uid = uid;
    r.principal = st.name;
    krb5_context ctx = kdc.ctx;
    std::string step = "cannot create a MEMORY ccache";
    krb5_error_code rc = krb5_cc_new_unique(ctx, "MEMORY", nullptr, &r.cc);
    detail::gss_status s;
    krb5_principal owner = nullptr;
    if (rc == 0) {
      step = "cannot parse the authenticated principal " + st.name;
      rc = krb5_parse_name(ctx, st.name.c_str(), &owner);
    }
    // gss_krb5_copy_ccache stores into the ccache, it does not initialize it.
    if (rc == 0) rc = krb5_cc_initialize(ctx, r.cc, owner);
    if (owner) krb5_free_principal(ctx, owner);
    if (rc == 0) {
      s.major = gss_krb5_copy_ccache(&s.minor, st.delegated.get(), r.cc);
      if (s.failed()) {
        why = fmt::format("cannot copy the TGT {} delegated: {}", st.name,
                          detail::krb5_gss_message(s));
        drop(r);
        return call_error::authentication_failed;
      }
    }
    krb5_principal client = nullptr;
    krb5_creds* ticket = nullptr;
    if (rc == 0) rc = krb5_cc_get_principal(ctx, r.cc, &client);
    if (rc == 0) {
      step = fmt::format("cannot get a service ticket for {} with the TGT {} delegated",
                         next_service, st.name);
      krb5_creds want{};
      want.client = client;
      want.server = next;
      rc = krb5_get_credentials(ctx, 0, r.cc, &want, &ticket);
    }
    if (ticket) krb5_free_creds(ctx, ticket);
    if (client) krb5_free_principal(ctx, client);
    if (rc != 0) {
      why = fmt::format("{}: {}", step, detail::krb5_message(ctx, rc));
      drop(r);
      return rc == KRB5KRB_AP_ERR_SKEW ? call_error::clock_skew : call_error::authentication_failed;
    }
    char* name = nullptr;
    if (krb5_cc_get_full_name(ctx, r.cc, &name) == 0) {
      r.ccache = name;
      krb5_free_string(ctx, name);
    }
    s.major = gss_krb5_import_cred(&s.minor, r.cc, nullptr, nullptr, &r.cred);
    if (s.failed()) {
      why = fmt::format("gss_krb5_import_cred for the TGT {} delegated: {}", st.name,
                        detail::krb5_gss_message(s));
      drop(r);
      return call_error::authentication_failed;
    }
    if (registrations.size() >= max_registrations) {
      auto oldest = std::min_element(
          registrations.begin(), registrations.end(),
          [](const registration& a, const registration& b) { return a.last_use < b.last_use; });
      drop(*oldest);
      registrations.erase(oldest);
    }
    r.last_use = ++clock;
    registrations.push_back(std::move(r));
    current = &registrations.back();
    return call_error::ok;
  }
};

kerberos_delegated_credentials::kerberos_delegated_credentials(
    kerberos_credentials& own, std::string next_service, std::chrono::milliseconds kdc_timeout)
    : impl_(std::make_unique<impl>(own, std::move(next_service), kdc_timeout)) {}

kerberos_delegated_credentials::~kerberos_delegated_credentials() = default;

const realm_info& kerberos_delegated_credentials::realm() const noexcept {
  return impl_->own.realm();
}
const std::string& kerberos_delegated_credentials::service() const noexcept {
  return impl_->next_service;
}

call_error kerberos_delegated_credentials::serve(std::uint64_t context, const identity& who,
                                                 const server_context_state* state,
                                                 std::string& why) noexcept {
  impl& d = *impl_;
  // The same context again (every call of a steady caller): nothing changes, nothing is allocated.
  if (d.serving && d.serving_context == context && d.serving_uid == who.uid) {
    if (d.current) d.current->last_use = ++d.clock;
    return call_error::ok;
  }
  d.serving = true;
  d.serving_context = context;
  d.serving_uid = who.uid;
  d.current = nullptr;
  try {
    auto* st = dynamic_cast<const detail::kerberos_server_state*>(state);
    d.serving_principal = st ? st->name : fmt::format("uid {}", who.uid);
    if (!st || !st->delegated) return call_error::ok;  // nothing to present for it
    for (auto& r : d.registrations) {
      if (r.context == context && r.uid == who.uid) {
        r.last_use = ++d.clock;
        d.current = &r;
        return call_error::ok;
      }
    }
    call_error e = d.add(context, who.uid, *st, why);
    if (e != call_error::ok) d.serving = false;  // the next call tries again
    return e;
  } catch (const std::exception& e) {
    d.serving = false;
    why = e.what();
    return call_error::authentication_failed;
  }
}

bool kerberos_delegated_credentials::find(std::uint32_t uid, kerberos_initiator& out,
                                          std::string& why) noexcept {
  impl& d = *impl_;
  if (d.serving && uid == d.serving_uid) {
    if (d.current) {
      out.cred = d.current->cred;
      out.principal = d.current->principal;
      out.ccache = d.current->ccache;
      return true;
    }
    try {
      why = fmt::format(
          "this server holds no credentials for {} (uid {}): its context forwarded no TGT (the "
          "caller's blanket "
          "asked for impersonate, not delegate)",
          d.serving_principal, uid);
    } catch (...) {
    }
    return false;
  }
  if (d.own.has_credentials(uid)) return d.own.find(uid, out, why);
  try {
    why = d.serving
              ? fmt::format("this server holds no credentials for uid {}: it serves uid {} ({})",
                            uid, d.serving_uid, d.serving_principal)
              : fmt::format("this server holds no credentials for uid {}", uid);
  } catch (...) {
  }
  return false;
}

}  // namespace cloak
