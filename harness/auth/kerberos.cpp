// The kerberos package: GSSAPI krb5-mechanism contexts for many clients in one process, and their
// acceptor.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <krb5/krb5.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cloak/backend.hpp>
#include <cloak/kerberos.hpp>
#include <cloak/os.hpp>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace cloak {

std::string_view to_string(ticket_state t) noexcept {
  switch (t) {
    case ticket_state::warm:
      return "warm";
    case ticket_state::cold:
      return "cold";
  }
  return "unknown";
}

ticket_state parse_ticket_state(std::string_view text) {
  if (text == "warm") return ticket_state::warm;
  if (text == "cold") return ticket_state::cold;
  throw std::invalid_argument(fmt::format("unknown ticket state \"{}\": use warm or cold", text));
}

namespace {

using clock_type = std::chrono::steady_clock;

gss_OID_set_desc krb5_mechs() noexcept { return {1, const_cast<gss_OID>(gss_mech_krb5)}; }

void append_status(std::string& out, OM_uint32 code, int type) {
  OM_uint32 context = 0;
  do {
    OM_uint32 minor = 0;
    gss_buffer_desc text{0, nullptr};
    gss_OID mech = type == GSS_C_MECH_CODE ? const_cast<gss_OID>(gss_mech_krb5) : GSS_C_NO_OID;
    if (GSS_ERROR(gss_display_status(&minor, code, type, mech, &context, &text))) break;
    if (!out.empty()) out += ": ";
    out.append(static_cast<const char*>(text.value), text.length);
    gss_release_buffer(&minor, &text);
  } while (context != 0);
}

// "GSS major message: mechanism message", as gss_display_status words them.
std::string gss_message(OM_uint32 major, OM_uint32 minor) {
  std::string out;
  append_status(out, major, GSS_C_GSS_CODE);
  if (minor != 0) append_status(out, minor, GSS_C_MECH_CODE);
  return out;
}

std::string krb5_message(krb5_context ctx, krb5_error_code code) {
  const char* text = krb5_get_error_message(ctx, code);
  std::string out = text ? text : fmt::format("krb5 error {}", code);
  krb5_free_error_message(ctx, text);
  return out;
}

// GSSAPI and krb5 read their configuration from KRB5_CONFIG in every call; a process that did not
// point it at the realm would silently use /etc/krb5.conf.
// KRB5_CONFIG may list several files (MIT reads a colon-separated list): a run with two realms
// (one on loopback, one among the hosts' namespaces) names both.
bool names_file(const char* list, const std::string& file) {
  std::string_view rest(list);
  while (true) {
    auto colon = rest.find(':');
    if (rest.substr(0, colon) == file) return true;
    if (colon == std::string_view::npos) return false;
    rest.remove_prefix(colon + 1);
  }
}

void check_environment(const realm_info& realm) {
  const char* conf = std::getenv("KRB5_CONFIG");
  if (!conf || !names_file(conf, realm.krb5_conf)) {
    throw std::runtime_error(
        fmt::format("KRB5_CONFIG is {} but the realm's is {}: call realm::export_environment() (or "
                    "set it) before "
                    "using the kerberos package",
                    conf ? conf : "unset", realm.krb5_conf));
  }
}

gss_name_t import_principal(const std::string& principal) {
  OM_uint32 minor = 0;
  gss_buffer_desc text{principal.size(), const_cast<char*>(principal.data())};
  gss_name_t name = GSS_C_NO_NAME;
  OM_uint32 major = gss_import_name(&minor, &text, GSS_KRB5_NT_PRINCIPAL_NAME, &name);
  if (GSS_ERROR(major)) {
    throw std::runtime_error(
        fmt::format("cannot import the name {}: {}", principal, gss_message(major, minor)));
  }
  return name;
}

std::span<const std::byte> bytes_of(const gss_buffer_desc& b) noexcept {
  return {static_cast<const std::byte*>(b.value), b.length};
}

struct buffer_guard {
  gss_buffer_desc& b;
  ~buffer_guard() {
    OM_uint32 minor = 0;
    if (b.value) gss_release_buffer(&minor, &b);
  }
};

// Every request to the KDC goes through here: MIT 1.20 has no bound on a KDC that accepted the TCP
// connection and never answers (a SIGSTOPped krb5kdc holds each pass ~10 s, request_timeout is new
// in 1.22), so the package's own krb5 contexts send with this hook and give up at `timeout`.
struct kdc_target {
  sockaddr_in address{};
  std::string where;
  std::chrono::milliseconds timeout{5000};
  std::string last_error;  // why the last exchange failed, for the package's message
};

bool wait_for(int fd, short events, clock_type::time_point deadline) noexcept {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    int n = os::retry_eintr([&] { return ::poll(&p, 1, static_cast<int>(left.count())); });
    if (n > 0) return true;
    if (n < 0) return false;
  }
}

krb5_error_code KRB5_CALLCONV bounded_send(krb5_context ctx, void* data, const krb5_data* /*realm*/,
                                           const krb5_data* message, krb5_data** /*new_message*/,
                                           krb5_data** new_reply) {
  auto& target = *static_cast<kdc_target*>(data);
  auto deadline = clock_type::now() + target.timeout;
  auto fail = [&](std::string why) {
    target.last_error = fmt::format("KDC {}: {}", target.where, why);
    krb5_set_error_message(ctx, KRB5_KDC_UNREACH, "%s", target.last_error.c_str());
    return KRB5_KDC_UNREACH;
  };
  auto timed_out = [&] {
    return fail(fmt::format("no answer within {} ms", target.timeout.count()));
  };
  os::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&target.address),
                sizeof target.address) != 0) {
    if (errno != EINPROGRESS) return fail(std::strerror(errno));
    if (!wait_for(fd.get(), POLLOUT, deadline)) return timed_out();
    int error = 0;
    socklen_t len = sizeof error;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) return fail(std::strerror(error));
  }
  // RFC 4120 §7.2.2: a 4-byte big-endian length, then the message.
  std::vector<char> out(4 + message->length);
  std::uint32_t n = htonl(message->length);
  std::memcpy(out.data(), &n, 4);
  std::memcpy(out.data() + 4, message->data, message->length);
  for (std::size_t sent = 0; sent < out.size();) {
    ssize_t w = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (w > 0) {
      sent += static_cast<std::size_t>(w);
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      return fail(std::strerror(errno));
    } else if (!wait_for(fd.get(), POLLOUT, deadline)) {
      return timed_out();
    }
  }
  std::vector<char> in;
  std::size_t want = 4;
  bool have_length = false;
  while (in.size() < want) {
    char buf[4096];
    ssize_t r = ::recv(fd.get(), buf, std::min(sizeof buf, want - in.size()), 0);
    if (r > 0) {
      in.insert(in.end(), buf, buf + r);
      if (!have_length && in.size() == 4) {
        std::uint32_t len = 0;
        std::memcpy(&len, in.data(), 4);
        len = ntohl(len);
        if (len > (1u << 20)) return fail("reply longer than 1 MiB");
        want = 4 + len;
        have_length = true;
      }
    } else if (r == 0) {
      return fail("closed the connection before it answered");
    } else if (errno != EAGAIN && errno != EINTR) {
      return fail(std::strerror(errno));
    } else if (!wait_for(fd.get(), POLLIN, deadline)) {
      return timed_out();
    }
  }
  krb5_data reply{KV5M_DATA, static_cast<unsigned int>(in.size() - 4), in.data() + 4};
  return krb5_copy_data(ctx, &reply, new_reply);
}

// A krb5 context whose KDC traffic is bounded by `target` (owned by one thread at a time).
struct bounded_context {
  krb5_context ctx = nullptr;
  kdc_target target;

  bounded_context(const realm_info& realm, std::chrono::milliseconds timeout) {
    target.where = fmt::format("{}:{}", realm.kdc_host, realm.kdc_port);
    target.timeout = timeout;
    target.address.sin_family = AF_INET;
    target.address.sin_port = htons(realm.kdc_port);
    if (::inet_pton(AF_INET, realm.kdc_host.c_str(), &target.address.sin_addr) != 1) {
      throw std::invalid_argument(
          fmt::format("KDC host {} is not an IPv4 address", realm.kdc_host));
    }
    if (krb5_error_code rc = krb5_init_context(&ctx)) {
      throw std::runtime_error(fmt::format("cannot create a krb5 context: error {}", rc));
    }
    krb5_set_kdc_send_hook(ctx, bounded_send, &target);
  }
  ~bounded_context() {
    if (ctx) krb5_free_context(ctx);
  }
  bounded_context(const bounded_context&) = delete;
  bounded_context& operator=(const bounded_context&) = delete;
};

krb5_principal parse_principal(krb5_context ctx, const std::string& text) {
  krb5_principal p = nullptr;
  if (krb5_error_code rc = krb5_parse_name(ctx, text.c_str(), &p)) {
    throw std::runtime_error(fmt::format("cannot parse {}: {}", text, krb5_message(ctx, rc)));
  }
  return p;
}

std::atomic<unsigned> credentials_instances{0};

}  // namespace

// One identity's initiator credentials: a MEMORY ccache (TGT and service ticket) and a GSS handle.
struct kerberos_credentials::impl {
  struct entry {
    std::string principal;
    std::string ccache;  // "MEMORY:cloak-<pid>-<instance>-<uid>", unique in the process
    gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  };

  realm_info realm;
  std::string service_name;  // the service tickets are warmed for (a client's default target)
  std::chrono::milliseconds kdc_timeout;
  gss_name_t service = GSS_C_NO_NAME;
  // Written only by the constructor: lookups from many threads need no lock. MIT locks each
  // krb5_gss_cred_id_rec for the duration of an init_sec_context call (kg_cred_resolve), so
  // threads sharing P's handle serialize on it rather than race.
  std::unordered_map<std::uint32_t, entry> by_uid;

  const entry* find(std::uint32_t uid) const noexcept {
    auto it = by_uid.find(uid);
    return it == by_uid.end() ? nullptr : &it->second;
  }

  // Used by the constructor only (and to destroy the ccaches): not shared with other threads.
  std::unique_ptr<bounded_context> kdc;

  ~impl() {
    OM_uint32 minor = 0;
    for (auto& [uid, e] : by_uid) {
      if (e.cred != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &e.cred);
      krb5_ccache cc = nullptr;
      if (kdc && krb5_cc_resolve(kdc->ctx, e.ccache.c_str(), &cc) == 0)
        krb5_cc_destroy(kdc->ctx, cc);
    }
    if (service != GSS_C_NO_NAME) gss_release_name(&minor, &service);
  }
};

namespace {

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

}  // namespace

kerberos_credentials::kerberos_credentials(const realm_info& realm, const client_range& clients,
                                           const identity& process,
                                           std::chrono::milliseconds kdc_timeout,
                                           std::string service)
    : kerberos_credentials(realm, middle_principals(realm, clients, process), realm.client_keytab,
                           std::move(service), kdc_timeout) {}

kerberos_credentials::kerberos_credentials(const realm_info& realm,
                                           std::vector<kerberos_principal> principals,
                                           std::string keytab_path, std::string service_name,
                                           std::chrono::milliseconds kdc_timeout)
    : impl_(std::make_unique<impl>()) {
  check_environment(realm);
  impl& d = *impl_;
  d.realm = realm;
  d.service_name = service_name.empty() ? realm.service : std::move(service_name);
  d.kdc_timeout = kdc_timeout;
  d.service = import_principal(d.service_name);

  d.kdc = std::make_unique<bounded_context>(realm, kdc_timeout);
  krb5_context ctx = d.kdc->ctx;
  krb5_keytab keytab = nullptr;
  std::string kt_name = "FILE:" + keytab_path;
  if (krb5_error_code rc = krb5_kt_resolve(ctx, kt_name.c_str(), &keytab)) {
    throw std::runtime_error(fmt::format("cannot open {}: {}", keytab_path, krb5_message(ctx, rc)));
  }
  krb5_principal service = parse_principal(ctx, d.service_name);
  krb5_get_init_creds_opt* opts = nullptr;
  krb5_get_init_creds_opt_alloc(ctx, &opts);
  krb5_get_init_creds_opt_set_forwardable(opts, 1);  // delegate level forwards the TGT
  struct cleanup {
    krb5_context ctx;
    krb5_keytab kt;
    krb5_principal service;
    krb5_get_init_creds_opt* opts;
    ~cleanup() {
      krb5_get_init_creds_opt_free(ctx, opts);
      krb5_free_principal(ctx, service);
      krb5_kt_close(ctx, kt);
    }
  } guard{ctx, keytab, service, opts};

  unsigned instance = credentials_instances.fetch_add(1);
  for (const kerberos_principal& p : principals) {
    std::uint32_t uid = p.uid;
    impl::entry e;
    e.principal = p.principal;
    e.ccache = fmt::format("MEMORY:cloak-{}-{}-{}", ::getpid(), instance, uid);
    auto failed = [&](const std::string& what, const std::string& why) {
      return std::runtime_error(
          fmt::format("kerberos credentials for uid {} ({}): {}: {}", uid, e.principal, what, why));
    };
    // The TGT from the keytab and the service ticket, fetched here (as P, bounded) rather than by
    // the first init_sec_context: after a thread switched its euid the 0600 keytab is unreadable.
    krb5_principal client = parse_principal(ctx, e.principal);
    krb5_creds tgt{};
    krb5_error_code rc = krb5_get_init_creds_keytab(ctx, &tgt, client, keytab, 0, nullptr, opts);
    krb5_ccache cc = nullptr;
    if (rc == 0) rc = krb5_cc_resolve(ctx, e.ccache.c_str(), &cc);
    if (rc == 0) rc = krb5_cc_initialize(ctx, cc, client);
    if (rc == 0) rc = krb5_cc_store_cred(ctx, cc, &tgt);
    krb5_free_cred_contents(ctx, &tgt);
    krb5_creds want{};
    want.client = client;
    want.server = service;
    krb5_creds* ticket = nullptr;
    std::string step = "cannot get a TGT from the keytab";
    if (rc == 0) {
      step = "cannot get a service ticket for " + d.service_name;
      rc = krb5_get_credentials(ctx, 0, cc, &want, &ticket);
    }
    if (ticket) krb5_free_creds(ctx, ticket);
    if (cc) krb5_cc_close(ctx, cc);
    krb5_free_principal(ctx, client);
    d.by_uid.emplace(uid, e);  // from here the destructor destroys the ccache
    if (rc != 0) throw failed(step, krb5_message(ctx, rc));

    OM_uint32 minor = 0;
    gss_name_t name = import_principal(e.principal);
    gss_key_value_element_desc elements[] = {{"client_keytab", keytab_path.c_str()},
                                             {"ccache", e.ccache.c_str()}};
    gss_key_value_set_desc store{2, elements};
    gss_OID_set_desc mechs = krb5_mechs();
    gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
    OM_uint32 major = gss_acquire_cred_from(&minor, name, GSS_C_INDEFINITE, &mechs, GSS_C_INITIATE,
                                            &store, &cred, nullptr, nullptr);
    gss_release_name(&minor, &name);
    if (GSS_ERROR(major)) throw failed("gss_acquire_cred_from", gss_message(major, minor));
    d.by_uid[uid].cred = cred;

    // Warm: one context with the cached tickets proves the handle works before any thread uses it.
    gss_ctx_id_t context = GSS_C_NO_CONTEXT;
    gss_buffer_desc token{0, nullptr};
    major = gss_init_sec_context(
        &minor, cred, &context, d.service, const_cast<gss_OID>(gss_mech_krb5), 0, 0,
        GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, nullptr, &token, nullptr, nullptr);
    OM_uint32 ignored = 0;
    gss_release_buffer(&ignored, &token);
    if (context != GSS_C_NO_CONTEXT) gss_delete_sec_context(&ignored, &context, GSS_C_NO_BUFFER);
    if (GSS_ERROR(major)) throw failed("gss_init_sec_context", gss_message(major, minor));
  }
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
  out.cred = e->cred;
  out.principal = e->principal;
  out.ccache = e->ccache;
  return true;
}

bool kerberos_credentials::has_credentials(std::uint32_t uid) const noexcept {
  return impl_->find(uid) != nullptr;
}

namespace {

class kerberos_client_state final : public client_context_state {
 public:
  ~kerberos_client_state() override {
    OM_uint32 minor = 0;
    if (ctx != GSS_C_NO_CONTEXT) gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
  }
  gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
  std::size_t mic_length = 0;  // fixed per context: learned on the first sign
};

// Credentials for one cold context: a fresh MEMORY ccache holding only a copy of the TGT, so the
// service ticket must come from the KDC. krb5_cc_remove_cred works on MEMORY ccaches in 1.20, but
// it only empties the list node; every store appends another, so a long cold run would make each
// lookup in the shared ccache slower and slower. A fresh ccache keeps every context alike.
struct cold_credentials {
  krb5_context ctx = nullptr;
  krb5_ccache cc = nullptr;
  gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  ~cold_credentials() {
    OM_uint32 minor = 0;
    if (cred != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &cred);
    if (cc) krb5_cc_destroy(ctx, cc);
  }
};

class kerberos_client final : public client_package {
 public:
  kerberos_client(kerberos_credential_source& source, kerberos_client_options options)
      : source_(source),
        options_(std::move(options)),
        realm_(source.realm()),
        service_name_(options_.service.empty() ? source.service() : options_.service),
        kdc_(realm_, options_.kdc_timeout) {
    check_environment(realm_);
    flags_ = (options_.mutual ? GSS_C_MUTUAL_FLAG : 0) |
             (options_.delegate ? GSS_C_DELEG_FLAG : 0) |
             (options_.per_call == protection::integrity ? GSS_C_INTEG_FLAG : 0);
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
    OM_uint32 minor = 0;
    if (target_ != GSS_C_NO_NAME) gss_release_name(&minor, &target_);
    krb5_free_principal(kdc_.ctx, service_);
    krb5_free_principal(kdc_.ctx, tgs_);
  }

  package_id id() const noexcept override { return package_id::kerberos; }
  bool needs_kernel_credentials() const noexcept override { return false; }
  protection per_call() const noexcept override { return options_.per_call; }

  establish_outcome establish(const presentation& p, establish_legs& legs) noexcept override {
    establish_outcome out;
    try {
      temporary_identity as(p.backend, p.who);
      out.switched_identity = as.switched();
      if (as.error() != switch_error::ok) {
        out.error = call_error::identity_switch_failed;
        out.detail =
            fmt::format("cannot switch the thread to {}: {}",
                        p.who ? to_string(p.who->who) : std::string("P"), std::strerror(errno));
        return out;
      }
      // The thread's identity, not the token we were handed, selects the principal.
      std::uint32_t uid = p.backend.read_thread_identity().uid;
      kerberos_initiator who;
      if (!source_.find(uid, who, out.detail)) {
        out.error = call_error::no_credentials;
        return out;
      }
      cold_credentials cold;
      gss_cred_id_t cred = who.cred;
      if (options_.tickets == ticket_state::cold) {
        out.error = make_cold(who, cold, out.detail);
        if (out.error != call_error::ok) return out;
        cred = cold.cred;
      }
      // Delegate level is a forwarded TGT: GSS_C_DELEG_FLAG on this context.
      OM_uint32 flags = flags_ | (p.level == impersonation_level::delegate ? GSS_C_DELEG_FLAG : 0);
      auto state = std::make_unique<kerberos_client_state>();
      out.error = run_legs(who, cred, flags, *state, legs, out.detail);
      if (out.error == call_error::ok) out.state = std::move(state);
    } catch (const std::exception& ex) {
      out.error = call_error::authentication_failed;
      out.detail = ex.what();
    }
    return out;
  }

  bool sign(client_context_state* state, std::span<const std::byte> message,
            token_buffer& mic) noexcept override {
    auto* st = dynamic_cast<kerberos_client_state*>(state);
    if (!st || st->ctx == GSS_C_NO_CONTEXT) return false;
    // The iov form writes the MIC into our reused buffer: GSS allocates nothing either.
    gss_iov_buffer_desc iov[2];
    iov[0].type = GSS_IOV_BUFFER_TYPE_DATA;
    iov[0].buffer = {message.size(), const_cast<std::byte*>(message.data())};
    iov[1].type = GSS_IOV_BUFFER_TYPE_MIC_TOKEN;
    iov[1].buffer = {0, nullptr};
    OM_uint32 minor = 0;
    if (st->mic_length == 0) {
      if (GSS_ERROR(gss_get_mic_iov_length(&minor, st->ctx, GSS_C_QOP_DEFAULT, iov, 2)))
        return false;
      st->mic_length = iov[1].buffer.length;
    }
    if (mic.capacity() < st->mic_length) {
      try {
        mic.reserve(st->mic_length);
      } catch (...) {
        return false;
      }
    }
    mic.resize(st->mic_length);
    iov[1].buffer = {mic.size(), mic.data()};
    return !GSS_ERROR(gss_get_mic_iov(&minor, st->ctx, GSS_C_QOP_DEFAULT, iov, 2));
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
    OM_uint32 minor = 0;
    OM_uint32 major = gss_krb5_import_cred(&minor, cold.cc, nullptr, nullptr, &cold.cred);
    if (GSS_ERROR(major)) {
      detail = fmt::format("gss_krb5_import_cred for {}: {}", principal, gss_message(major, minor));
      return call_error::authentication_failed;
    }
    return call_error::ok;
  }

  call_error run_legs(const kerberos_initiator& who, gss_cred_id_t cred, OM_uint32 flags,
                      kerberos_client_state& st, establish_legs& legs, std::string& detail) {
    gss_buffer_desc input{0, nullptr};
    bool have_input = false;
    for (int leg = 0;; ++leg) {
      OM_uint32 minor = 0;
      gss_buffer_desc output{0, nullptr};
      buffer_guard release{output};
      OM_uint32 major = gss_init_sec_context(
          &minor, cred, &st.ctx, target_, const_cast<gss_OID>(gss_mech_krb5), flags, 0,
          GSS_C_NO_CHANNEL_BINDINGS, have_input ? &input : GSS_C_NO_BUFFER, nullptr, &output,
          nullptr, nullptr);
      if (GSS_ERROR(major)) {
        detail = fmt::format("gss_init_sec_context ({} for {}{}): {}", who.principal, service_name_,
                             (flags & GSS_C_DELEG_FLAG) ? ", forwarding the TGT" : "",
                             gss_message(major, minor));
        return static_cast<krb5_error_code>(minor) == KRB5KRB_AP_ERR_SKEW
                   ? call_error::clock_skew
                   : call_error::authentication_failed;
      }
      bool complete = major == GSS_S_COMPLETE;
      if (output.length == 0) {
        if (complete) return call_error::ok;
        detail = "gss_init_sec_context wants another token but produced none to send";
        return call_error::authentication_failed;
      }
      if (leg >= 8) {
        detail = "more than 8 establish legs";
        return call_error::authentication_failed;
      }
      leg_reply reply;
      if (call_error err = legs.leg(bytes_of(output), reply); err != call_error::ok) {
        detail = fmt::format("establish leg {} failed", leg + 1);
        return err;
      }
      if (complete) {
        if (reply.more) {
          detail = "the server asked for another leg after the client's context was complete";
          return call_error::authentication_failed;
        }
        return call_error::ok;
      }
      if (reply.token.empty()) {
        detail =
            options_.mutual
                ? "the server answered done without the AP-REP that mutual authentication needs"
                : "the server answered done while GSS still expects a token";
        return call_error::authentication_failed;
      }
      input = {reply.token.size(), const_cast<std::byte*>(reply.token.data())};
      have_input = true;
    }
  }

  kerberos_credential_source& source_;
  kerberos_client_options options_;
  realm_info realm_;
  std::string service_name_;
  bounded_context kdc_;  // this package's own: a client package serves one thread
  gss_name_t target_ = GSS_C_NO_NAME;
  krb5_principal service_ = nullptr;
  krb5_principal tgs_ = nullptr;
  OM_uint32 flags_ = 0;
};

class kerberos_server_state final : public server_context_state {
 public:
  ~kerberos_server_state() override {
    OM_uint32 minor = 0;
    if (ctx != GSS_C_NO_CONTEXT) gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
    if (delegated != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &delegated);
  }
  gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
  gss_cred_id_t delegated = GSS_C_NO_CREDENTIAL;  // a forwarded TGT (delegate level)
  std::string principal;
};

std::unordered_map<std::string, identity> load_idmap(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("cannot read the idmap {}", path));
  std::unordered_map<std::string, identity> map;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string principal;
    std::uint32_t uid = 0, gid = 0;
    if (!(fields >> principal >> uid >> gid)) {
      throw std::runtime_error(
          fmt::format("{}:{}: expected \"principal uid gid group...\"", path, number));
    }
    identity who = identity::of(uid, gid);
    for (std::uint32_t g = 0; fields >> g && who.group_count < max_groups;)
      who.groups[who.group_count++] = g;
    map.emplace(principal, who);
  }
  return map;
}

// MIT's rcache names are TYPE:RESIDUAL; "none" alone does not parse (KRB5_RC_PARSE).
std::string rcache_name(const std::string& option) {
  if (option == "none" || option == "none:") return "none:";
  if (option.rfind("file2:", 0) == 0 && option.size() > 6) return option;
  throw std::invalid_argument(fmt::format("rcache \"{}\": use none or file2:<path>", option));
}

class kerberos_server final : public server_package {
 public:
  kerberos_server(const realm_info& realm, kerberos_server_options options) {
    check_environment(realm);
    std::string keytab = options.keytab.empty() ? realm.service_keytab : options.keytab;
    std::string principal = options.service.empty() ? realm.service : options.service;
    std::string rcache = rcache_name(options.rcache);
    idmap_ = load_idmap(realm.idmap);
    gss_name_t service = import_principal(principal);
    gss_key_value_element_desc elements[] = {{"keytab", keytab.c_str()},
                                             {"rcache", rcache.c_str()}};
    gss_key_value_set_desc store{2, elements};
    gss_OID_set_desc mechs = krb5_mechs();
    OM_uint32 minor = 0;
    // One acceptor handle for every connection: MIT holds its lock for each accept_sec_context, so
    // concurrent accepts serialize on it; each accept has its own context.
    OM_uint32 major = gss_acquire_cred_from(&minor, service, GSS_C_INDEFINITE, &mechs, GSS_C_ACCEPT,
                                            &store, &cred_, nullptr, nullptr);
    OM_uint32 ignored = 0;
    gss_release_name(&ignored, &service);
    if (GSS_ERROR(major)) {
      throw std::runtime_error(
          fmt::format("cannot acquire acceptor credentials for {} from {} (rcache {}): {}",
                      principal, keytab, rcache, gss_message(major, minor)));
    }
  }
  ~kerberos_server() override {
    OM_uint32 minor = 0;
    if (cred_ != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &cred_);
  }

  package_id id() const noexcept override { return package_id::kerberos; }

  accept_outcome accept(const peer_info& /*peer*/, std::span<const std::byte> token,
                        std::unique_ptr<server_context_state> state, token_buffer& reply) override {
    accept_outcome out;
    reply.clear();
    std::unique_ptr<kerberos_server_state> st;
    if (state) {
      auto* mine = dynamic_cast<kerberos_server_state*>(state.get());
      if (!mine) {
        out.detail = "the establish state belongs to another package";
        return out;
      }
      state.release();
      st.reset(mine);
    } else {
      st = std::make_unique<kerberos_server_state>();
    }
    OM_uint32 minor = 0;
    gss_buffer_desc input{token.size(), const_cast<std::byte*>(token.data())};
    gss_buffer_desc output{0, nullptr};
    buffer_guard release{output};
    gss_name_t source = GSS_C_NO_NAME;
    gss_cred_id_t delegated = GSS_C_NO_CREDENTIAL;
    OM_uint32 flags = 0;
    OM_uint32 major =
        gss_accept_sec_context(&minor, &st->ctx, cred_, &input, GSS_C_NO_CHANNEL_BINDINGS, &source,
                               nullptr, &output, &flags, nullptr, &delegated);
    if (output.length) reply.assign(bytes_of(output).begin(), bytes_of(output).end());
    struct name_guard {
      gss_name_t& n;
      ~name_guard() {
        OM_uint32 m = 0;
        if (n != GSS_C_NO_NAME) gss_release_name(&m, &n);
      }
    } source_guard{source};
    if (delegated != GSS_C_NO_CREDENTIAL) {
      if (st->delegated != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &st->delegated);
      st->delegated = delegated;
    }
    if (GSS_ERROR(major)) {
      out.result = accept_outcome::kind::refused;
      // The authenticator's time is off by more than this server's clockskew: say so by name.
      out.refusal = static_cast<krb5_error_code>(minor) == KRB5KRB_AP_ERR_SKEW
                        ? protocol::status::clock_skew
                        : protocol::status::auth_failed;
      out.detail = gss_message(major, minor);
      return out;
    }
    if (major & GSS_S_CONTINUE_NEEDED) {
      out.result = accept_outcome::kind::more;
      out.state = std::move(st);
      return out;
    }
    gss_buffer_desc name{0, nullptr};
    buffer_guard release_name{name};
    major = gss_display_name(&minor, source, &name, nullptr);
    if (GSS_ERROR(major)) {
      out.result = accept_outcome::kind::refused;
      out.detail = "cannot display the authenticated name: " + gss_message(major, minor);
      return out;
    }
    st->principal.assign(static_cast<const char*>(name.value), name.length);
    auto it = idmap_.find(st->principal);
    if (it == idmap_.end()) {
      out.result = accept_outcome::kind::refused;
      out.refusal = protocol::status::unknown_principal;
      out.detail = fmt::format("{} authenticated but maps to no identity", st->principal);
      return out;
    }
    out.result = accept_outcome::kind::done;
    out.who = it->second;
    out.state = std::move(st);
    return out;
  }

  bool verify(server_context_state* state, std::span<const std::byte> message,
              std::span<const std::byte> mic) noexcept override {
    auto* st = dynamic_cast<kerberos_server_state*>(state);
    if (!st || st->ctx == GSS_C_NO_CONTEXT) return false;
    gss_iov_buffer_desc iov[2];
    iov[0].type = GSS_IOV_BUFFER_TYPE_DATA;
    iov[0].buffer = {message.size(), const_cast<std::byte*>(message.data())};
    iov[1].type = GSS_IOV_BUFFER_TYPE_MIC_TOKEN;
    iov[1].buffer = {mic.size(), const_cast<std::byte*>(mic.data())};
    OM_uint32 minor = 0;
    return gss_verify_mic_iov(&minor, st->ctx, nullptr, iov, 2) == GSS_S_COMPLETE;
  }

 private:
  gss_cred_id_t cred_ = GSS_C_NO_CREDENTIAL;
  std::unordered_map<std::string, identity> idmap_;  // read-only after construction
};

}  // namespace

std::unique_ptr<client_package> make_kerberos_client(kerberos_credential_source& credentials,
                                                     kerberos_client_options options) {
  return std::make_unique<kerberos_client>(credentials, options);
}

std::unique_ptr<server_package> make_kerberos_server(const realm_info& realm,
                                                     kerberos_server_options options) {
  return std::make_unique<kerberos_server>(realm, std::move(options));
}

bool holds_delegated_credentials(const server_context_state* state) noexcept {
  auto* st = dynamic_cast<const kerberos_server_state*>(state);
  return st && st->delegated != GSS_C_NO_CREDENTIAL;
}

std::string authenticated_principal(const server_context_state* state) {
  auto* st = dynamic_cast<const kerberos_server_state*>(state);
  return st ? st->principal : std::string();
}

std::optional<identity> idmap_identity(const realm_info& realm, std::string_view principal) {
  auto map = load_idmap(realm.idmap);
  auto it = map.find(std::string(principal));
  if (it == map.end()) return std::nullopt;
  return it->second;
}

// ---- delegated credentials: what a downstream presents to its next hop on its caller's behalf
// ----

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
  bounded_context kdc;
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
    next = parse_principal(kdc.ctx, next_service);
    registrations.reserve(max_registrations);  // `current` points into it: never reallocated
  }
  ~impl() {
    for (auto& r : registrations) drop(r);
    krb5_free_principal(kdc.ctx, next);
  }
  void drop(registration& r) noexcept {
    OM_uint32 minor = 0;
    if (r.cred != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &r.cred);
    if (r.cc) krb5_cc_destroy(kdc.ctx, r.cc);
    r.cc = nullptr;
  }

  // Copies the delegated TGT into a ccache of our own and fetches the next hop's service ticket
  // with it through the bounded hook: gss_init_sec_context would otherwise ask the KDC itself,
  // unbounded.
  call_error add(std::uint64_t context, std::uint32_t uid, const kerberos_server_state& st,
                 std::string& why) {
    registration r;
    r.context = context;
    r.uid = uid;
    r.principal = st.principal;
    krb5_context ctx = kdc.ctx;
    std::string step = "cannot create a MEMORY ccache";
    krb5_error_code rc = krb5_cc_new_unique(ctx, "MEMORY", nullptr, &r.cc);
    OM_uint32 minor = 0;
    krb5_principal owner = nullptr;
    if (rc == 0) {
      step = "cannot parse the authenticated principal " + st.principal;
      rc = krb5_parse_name(ctx, st.principal.c_str(), &owner);
    }
    // gss_krb5_copy_ccache stores into the ccache, it does not initialize it.
    if (rc == 0) rc = krb5_cc_initialize(ctx, r.cc, owner);
    if (owner) krb5_free_principal(ctx, owner);
    if (rc == 0) {
      OM_uint32 major = gss_krb5_copy_ccache(&minor, st.delegated, r.cc);
      if (GSS_ERROR(major)) {
        why = fmt::format("cannot copy the TGT {} delegated: {}", st.principal,
                          gss_message(major, minor));
        drop(r);
        return call_error::authentication_failed;
      }
    }
    krb5_principal client = nullptr;
    krb5_creds* ticket = nullptr;
    if (rc == 0) rc = krb5_cc_get_principal(ctx, r.cc, &client);
    if (rc == 0) {
      step = fmt::format("cannot get a service ticket for {} with the TGT {} delegated",
                         next_service, st.principal);
      krb5_creds want{};
      want.client = client;
      want.server = next;
      rc = krb5_get_credentials(ctx, 0, r.cc, &want, &ticket);
    }
    if (ticket) krb5_free_creds(ctx, ticket);
    if (client) krb5_free_principal(ctx, client);
    if (rc != 0) {
      why = fmt::format("{}: {}", step, krb5_message(ctx, rc));
      drop(r);
      return rc == KRB5KRB_AP_ERR_SKEW ? call_error::clock_skew : call_error::authentication_failed;
    }
    char* name = nullptr;
    if (krb5_cc_get_full_name(ctx, r.cc, &name) == 0) {
      r.ccache = name;
      krb5_free_string(ctx, name);
    }
    OM_uint32 major = gss_krb5_import_cred(&minor, r.cc, nullptr, nullptr, &r.cred);
    if (GSS_ERROR(major)) {
      why = fmt::format("gss_krb5_import_cred for the TGT {} delegated: {}", st.principal,
                        gss_message(major, minor));
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
    auto* st = dynamic_cast<const kerberos_server_state*>(state);
    d.serving_principal = st ? st->principal : fmt::format("uid {}", who.uid);
    if (!st || st->delegated == GSS_C_NO_CREDENTIAL)
      return call_error::ok;  // nothing to present for it
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
