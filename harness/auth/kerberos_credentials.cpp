// The kerberos package's credential store: per identity, a MEMORY ccache with the TGT and a warmed
// service ticket, and the GSS initiator handle over it, all acquired while the thread is P.
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cloak/kerberos.hpp>
#include <stdexcept>
#include <unordered_map>

#include "kdc_hook.hpp"
#include "kerberos_common.hpp"

namespace cloak {

// One identity's initiator credentials: a MEMORY ccache (TGT and service ticket) and a GSS handle.
struct kerberos_credentials::impl {
  struct entry {
    std::string principal;
    std::string ccache;  // "MEMORY:cloak-<pid>-<instance>-<uid>", unique in the process
    detail::gss_cred cred;
  };

  realm_info realm;
  std::string service_name;  // the service tickets are warmed for (a client's default target)
  std::chrono::milliseconds kdc_timeout{};
  detail::gss_name service;
  // Written only by the constructor: lookups from many threads need no lock. MIT locks each
  // krb5_gss_cred_id_rec for the duration of an init_sec_context call (kg_cred_resolve), so
  // threads sharing P's handle serialize on it rather than race.
  std::unordered_map<std::uint32_t, entry> by_uid;
  // Used by the constructor only (and to destroy the ccaches): not shared with other threads.
  std::unique_ptr<detail::kdc_context> kdc;

  const entry* find(std::uint32_t uid) const noexcept {
    auto it = by_uid.find(uid);
    return it == by_uid.end() ? nullptr : &it->second;
  }

  ~impl() {
    for (auto& [uid, e] : by_uid) {
      e.cred.reset();  // before its ccache goes
      krb5_ccache cc = nullptr;
      if (kdc && krb5_cc_resolve(kdc->ctx, e.ccache.c_str(), &cc) == 0)
        krb5_cc_destroy(kdc->ctx, cc);
    }
  }
};

namespace detail {
namespace {

std::atomic<unsigned> credentials_instances{0};
std::atomic<unsigned> keytab_copies{0};

std::vector<kerberos_principal> middle_principals(const realm_info& realm,
                                                  const client_range& clients,
                                                  const identity& process) {
  std::vector<kerberos_principal> out{
      {process.uid, principal_for(process.uid, process, realm.name)}};
  for (std::uint32_t i = 0; i < clients.count; ++i) {
    std::uint32_t uid = clients.client(i).uid;
    out.push_back({uid, principal_for(uid, process, realm.name)});
  }
  return out;
}

// What every principal's ticket requests share: the keytab, the service principal the warmed
// ticket is for, and forwardable TGTs (the delegate level forwards the TGT).
class ticket_request {
 public:
  ticket_request(krb5_context ctx, const std::string& keytab_path, const std::string& service_name)
      : ctx_(ctx) {
    // A FILE keytab is read from the start for every principal looked up in it, so K clients cost
    // O(K^2) parsing (44 ms a client at 10,000 on 2 vCPUs); a MEMORY copy, made once, is scanned
    // in memory instead. The copy lives as long as a handle refers to it (gss creds dup theirs).
    std::string kt_name = "FILE:" + keytab_path;
    krb5_keytab file = nullptr;
    if (krb5_error_code rc = krb5_kt_resolve(ctx_, kt_name.c_str(), &file)) {
      throw std::runtime_error(
          fmt::format("cannot open {}: {}", keytab_path, krb5_message(ctx_, rc)));
    }
    name_ = fmt::format("MEMORY:cloak-keytab-{}-{}", ::getpid(), keytab_copies.fetch_add(1));
    krb5_error_code rc = krb5_kt_resolve(ctx_, name_.c_str(), &keytab_);
    krb5_kt_cursor cursor;
    if (rc == 0) rc = krb5_kt_start_seq_get(ctx_, file, &cursor);
    if (rc == 0) {
      krb5_keytab_entry entry;
      while (rc == 0 && krb5_kt_next_entry(ctx_, file, &entry, &cursor) == 0) {
        rc = krb5_kt_add_entry(ctx_, keytab_, &entry);
        krb5_free_keytab_entry_contents(ctx_, &entry);
      }
      krb5_kt_end_seq_get(ctx_, file, &cursor);
    }
    krb5_kt_close(ctx_, file);
    if (rc != 0) {
      if (keytab_) krb5_kt_close(ctx_, keytab_);
      throw std::runtime_error(
          fmt::format("cannot read {}: {}", keytab_path, krb5_message(ctx_, rc)));
    }
    try {
      service_ = parse_principal(ctx_, service_name);
    } catch (...) {
      krb5_kt_close(ctx_, keytab_);
      throw;
    }
    krb5_get_init_creds_opt_alloc(ctx_, &opts_);
    krb5_get_init_creds_opt_set_forwardable(opts_, 1);
  }
  ~ticket_request() {
    krb5_get_init_creds_opt_free(ctx_, opts_);
    krb5_free_principal(ctx_, service_);
    krb5_kt_close(ctx_, keytab_);
  }
  ticket_request(const ticket_request&) = delete;
  ticket_request& operator=(const ticket_request&) = delete;
  // The in-memory copy of the keytab, for gss_acquire_cred_from's client_keytab.
  const std::string& keytab_name() const noexcept { return name_; }

  // The TGT from the keytab into the MEMORY ccache `ccache`, then the service ticket, fetched here
  // (as P, through the bounded hook) rather than by the first init_sec_context: after a thread
  // switched its euid the 0600 keytab is unreadable. 0, or the krb5 error and the step it ended.
  krb5_error_code fetch(const std::string& principal, const std::string& ccache,
                        const std::string& service_name, std::string& step) const {
    krb5_principal client = parse_principal(ctx_, principal);
    krb5_creds tgt{};
    krb5_error_code rc = krb5_get_init_creds_keytab(ctx_, &tgt, client, keytab_, 0, nullptr, opts_);
    krb5_ccache cc = nullptr;
    if (rc == 0) rc = krb5_cc_resolve(ctx_, ccache.c_str(), &cc);
    if (rc == 0) rc = krb5_cc_initialize(ctx_, cc, client);
    if (rc == 0) rc = krb5_cc_store_cred(ctx_, cc, &tgt);
    krb5_free_cred_contents(ctx_, &tgt);
    krb5_creds want{};
    want.client = client;
    want.server = service_;
    krb5_creds* ticket = nullptr;
    step = "cannot get a TGT from the keytab";
    if (rc == 0) {
      step = "cannot get a service ticket for " + service_name;
      rc = krb5_get_credentials(ctx_, 0, cc, &want, &ticket);
    }
    if (ticket) krb5_free_creds(ctx_, ticket);
    if (cc) krb5_cc_close(ctx_, cc);
    krb5_free_principal(ctx_, client);
    return rc;
  }

 private:
  krb5_context ctx_;
  std::string name_;
  krb5_keytab keytab_ = nullptr;
  krb5_principal service_ = nullptr;
  krb5_get_init_creds_opt* opts_ = nullptr;
};

// GSS initiator credentials over the principal's ccache (the keytab named for renewals).
gss_cred acquire_initiator(const std::string& principal, const std::string& keytab_path,
                           const std::string& ccache, gss_status& status) {
  gss_name name = import_principal(principal);
  gss_key_value_element_desc store[] = {{"client_keytab", keytab_path.c_str()},
                                        {"ccache", ccache.c_str()}};
  return acquire_cred_from(name, krb5_mechanism().oid, GSS_C_INITIATE, store, status);
}

// One context with the cached tickets proves the handle works before any thread uses it.
gss_status warm(gss_cred_id_t cred, gss_name_t service) {
  gss_context context;
  gss_buffer token;
  gss_status s;
  s.major = gss_init_sec_context(&s.minor, cred, context.out(), service, krb5_mechanism().oid, 0, 0,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, nullptr, token.out(),
                                 nullptr, nullptr);
  return s;
}

// Adds `p` to `d`: its tickets, its GSS handle, then the warm-up. Throws naming the step.
void add_principal(kerberos_credentials::impl& d, const kerberos_principal& p, unsigned instance,
                   const ticket_request& tickets) {
  std::string ccache = fmt::format("MEMORY:cloak-{}-{}-{}", ::getpid(), instance, p.uid);
  auto failed = [&](const std::string& what, const std::string& why) {
    return std::runtime_error(
        fmt::format("kerberos credentials for uid {} ({}): {}: {}", p.uid, p.principal, what, why));
  };
  std::string step;
  krb5_error_code rc = tickets.fetch(p.principal, ccache, d.service_name, step);
  d.by_uid.emplace(p.uid, kerberos_credentials::impl::entry{p.principal, ccache, {}});
  // From here the destructor destroys the ccache.
  if (rc != 0) throw failed(step, krb5_message(d.kdc->ctx, rc));

  gss_status status;
  gss_cred cred = acquire_initiator(p.principal, tickets.keytab_name(), ccache, status);
  if (status.failed()) throw failed("gss_acquire_cred_from", krb5_gss_message(status));
  gss_cred_id_t handle = cred.get();
  d.by_uid[p.uid].cred = std::move(cred);

  status = warm(handle, d.service.get());
  if (status.failed()) throw failed("gss_init_sec_context", krb5_gss_message(status));
}

}  // namespace
}  // namespace detail

kerberos_credentials::kerberos_credentials(const realm_info& realm, const client_range& clients,
                                           const identity& process,
                                           std::chrono::milliseconds kdc_timeout,
                                           std::string service)
    : kerberos_credentials(realm, detail::middle_principals(realm, clients, process),
                           realm.client_keytab, std::move(service), kdc_timeout) {}

kerberos_credentials::kerberos_credentials(const realm_info& realm,
                                           std::vector<kerberos_principal> principals,
                                           std::string keytab_path, std::string service_name,
                                           std::chrono::milliseconds kdc_timeout)
    : impl_(std::make_unique<impl>()) {
  detail::check_environment(realm);
  impl& d = *impl_;
  d.realm = realm;
  d.service_name = service_name.empty() ? realm.service : std::move(service_name);
  d.kdc_timeout = kdc_timeout;
  d.service = detail::import_principal(d.service_name);
  d.kdc = std::make_unique<detail::kdc_context>(realm, kdc_timeout);
  detail::ticket_request tickets(d.kdc->ctx, keytab_path, d.service_name);
  unsigned instance = detail::credentials_instances.fetch_add(1);
  for (const kerberos_principal& p : principals) detail::add_principal(d, p, instance, tickets);
}

kerberos_credentials::~kerberos_credentials() = default;

const realm_info& kerberos_credentials::realm() const noexcept { return impl_->realm; }
const std::string& kerberos_credentials::service() const noexcept { return impl_->service_name; }

bool kerberos_credentials::find(std::uint32_t uid, kerberos_initiator& out,
                                std::string& why) noexcept {
  const impl::entry* e = impl_->find(uid);
  if (!e) {
    try {
      why = fmt::format(
          "no Kerberos credentials for uid {} here (this process holds them for {} principals of "
          "{})",
          uid, impl_->by_uid.size(), impl_->realm.name);
    } catch (...) {
    }
    return false;
  }
  out.cred = e->cred.get();
  out.principal = e->principal;
  out.ccache = e->ccache;
  return true;
}

bool kerberos_credentials::has_credentials(std::uint32_t uid) const noexcept {
  return impl_->find(uid) != nullptr;
}

}  // namespace cloak
