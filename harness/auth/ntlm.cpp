// The ntlm package: a private NTLM domain per run, GSSAPI NTLMSSP contexts for many clients in one
// process, and their acceptor.
#include <fcntl.h>
#include <fmt/format.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cloak/backend.hpp>
#include <cloak/ntlm.hpp>
#include <cloak/os.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace cloak {

namespace {

// 1.3.6.1.4.1.311.2.2.10, DER without tag and length.
gss_OID_desc ntlmssp_oid{10, const_cast<char*>("\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a")};

gss_OID_set_desc ntlm_mechs() noexcept { return {1, &ntlmssp_oid}; }

void append_status(std::string& out, OM_uint32 code, int type) {
  OM_uint32 context = 0;
  do {
    OM_uint32 minor = 0;
    gss_buffer_desc text{0, nullptr};
    gss_OID mech = type == GSS_C_MECH_CODE ? &ntlmssp_oid : GSS_C_NO_OID;
    if (GSS_ERROR(gss_display_status(&minor, code, type, mech, &context, &text))) break;
    if (!out.empty()) out += ": ";
    out.append(static_cast<const char*>(text.value), text.length);
    gss_release_buffer(&minor, &text);
  } while (context != 0);
}

std::string gss_message(OM_uint32 major, OM_uint32 minor) {
  std::string out;
  append_status(out, major, GSS_C_GSS_CODE);
  if (minor != 0) append_status(out, minor, GSS_C_MECH_CODE);
  return out;
}

struct buffer_guard {
  gss_buffer_desc& b;
  ~buffer_guard() {
    OM_uint32 minor = 0;
    if (b.value) gss_release_buffer(&minor, &b);
  }
};

struct name_guard {
  gss_name_t& n;
  ~name_guard() {
    OM_uint32 minor = 0;
    if (n != GSS_C_NO_NAME) gss_release_name(&minor, &n);
  }
};

std::span<const std::byte> bytes_of(const gss_buffer_desc& b) noexcept {
  return {static_cast<const std::byte*>(b.value), b.length};
}

gss_name_t import_name(const std::string& text, gss_OID type) {
  OM_uint32 minor = 0;
  gss_buffer_desc buffer{text.size(), const_cast<char*>(text.data())};
  gss_name_t name = GSS_C_NO_NAME;
  OM_uint32 major = gss_import_name(&minor, &buffer, type, &name);
  if (GSS_ERROR(major)) {
    throw std::runtime_error(
        fmt::format("cannot import the name {}: {}", text, gss_message(major, minor)));
  }
  return name;
}

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

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  os::unique_fd fd(
      os::check([&] { return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode); },
                "cannot create {}", path));
  os::check([&] { return ::fchmod(fd.get(), mode); }, "cannot chmod {}",
            path);  // not subject to the umask
  for (std::size_t done = 0; done < text.size();) {
    ssize_t n = os::check([&] { return ::write(fd.get(), text.data() + done, text.size() - done); },
                          "cannot write {}", path);
    done += static_cast<std::size_t>(n);
  }
}

// MD4 through OpenSSL's legacy provider, in a library context of its own (the default context and
// its providers stay as the process set them).
class md4 {
 public:
  md4() {
    ctx_ = OSSL_LIB_CTX_new();
    if (ctx_) legacy_ = OSSL_PROVIDER_load(ctx_, "legacy");
    if (legacy_) md_ = EVP_MD_fetch(ctx_, "MD4", nullptr);
    if (!md_) {
      release();
      throw std::runtime_error(
          "cannot fetch MD4 from OpenSSL's legacy provider (Debian libssl3: "
          "ossl-modules/legacy.so)");
    }
  }
  ~md4() { release(); }
  md4(const md4&) = delete;
  md4& operator=(const md4&) = delete;

  std::string nt_hash_hex(std::string_view password) const {
    std::string utf16;
    utf16.reserve(password.size() * 2);
    for (char c : password) {
      if (c < 0x20 || c > 0x7e)
        throw std::invalid_argument(
            "an NT hash is computed here for printable ASCII passwords only");
      utf16.push_back(c);
      utf16.push_back('\0');
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(utf16.data(), utf16.size(), digest, &length, md_, nullptr) != 1 || length != 16)
      throw std::runtime_error("MD4 failed");
    std::string hex;
    for (unsigned i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
    return hex;
  }

 private:
  void release() noexcept {
    if (md_) EVP_MD_free(md_);
    if (legacy_) OSSL_PROVIDER_unload(legacy_);
    if (ctx_) OSSL_LIB_CTX_free(ctx_);
    md_ = nullptr;
    legacy_ = nullptr;
    ctx_ = nullptr;
  }
  OSSL_LIB_CTX* ctx_ = nullptr;
  OSSL_PROVIDER* legacy_ = nullptr;
  EVP_MD* md_ = nullptr;
};

std::string random_password(std::mt19937_64& rng) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::uniform_int_distribution<std::size_t> pick(0, sizeof alphabet - 2);
  std::string out(20, ' ');
  for (char& c : out) c = alphabet[pick(rng)];
  return out;
}

// smbpasswd: NAME:UID:LMHASH:NTHASH:FLAGS:LCT (no LM hash: X's, as Samba writes a disabled one).
std::string smbpasswd_line(const std::string& user, std::uint32_t uid, const std::string& hash) {
  return fmt::format("{}:{}:{}:{}:[U          ]:LCT-00000000\n", user, uid, std::string(32, 'X'),
                     hash);
}

std::optional<std::string> get_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

void put_env(const char* name, const std::optional<std::string>& value) noexcept {
  if (value) {
    ::setenv(name, value->c_str(), 1);
  } else {
    ::unsetenv(name);
  }
}

ntlm_info paths_in(const std::string& dir) {
  ntlm_info info;
  info.dir = dir;
  info.mech_config = dir + "/gss-mech.conf";
  info.keyfile = dir + "/ntlm-users";
  info.idmap = dir + "/idmap";
  info.client_keys = dir + "/client-keys";
  return info;
}

std::unordered_map<std::string, identity> load_idmap(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("cannot read the idmap {}", path));
  std::unordered_map<std::string, identity> map;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string user;
    std::uint32_t uid = 0, gid = 0;
    if (!(fields >> user >> uid >> gid)) {
      throw std::runtime_error(
          fmt::format("{}:{}: expected \"user uid gid group...\"", path, number));
    }
    identity who = identity::of(uid, gid);
    for (std::uint32_t g = 0; fields >> g && who.group_count < max_groups;)
      who.groups[who.group_count++] = g;
    map.emplace(user, who);
  }
  return map;
}

}  // namespace

std::string nt_hash_hex(std::string_view password) { return md4().nt_hash_hex(password); }

std::string ntlm_mechanism_path() {
  if (const char* env = std::getenv("CLOAK_NTLM_MECHANISM"); env && *env) return env;
#ifdef CLOAK_NTLM_MECHANISM_PATH
  const char* path = CLOAK_NTLM_MECHANISM_PATH;
#else
  const char* path = "/usr/lib/x86_64-linux-gnu/gssntlmssp/gssntlmssp.so";
#endif
  return ::access(path, R_OK) == 0 ? std::string(path) : std::string();
}

std::string ntlm_user_for(std::uint32_t uid, const identity& process, std::string_view domain) {
  if (uid == process.uid) return fmt::format("{}\\cloak-middle", domain);
  return fmt::format("{}\\client-{}", domain, uid);
}

ntlm_info ntlm_info::load(const std::string& dir) {
  ntlm_info info = paths_in(dir);
  std::string conf = dir + "/ntlm.conf";
  std::ifstream in(conf);
  if (!in) throw std::runtime_error(fmt::format("cannot read {} (made by ntlm_domain)", conf));
  for (std::string line; std::getline(in, line);) {
    auto space = line.find(' ');
    if (space == std::string::npos) continue;
    std::string key = line.substr(0, space), value = line.substr(space + 1);
    if (key == "domain") info.domain = value;
    if (key == "service") info.service = value;
    if (key == "mechanism") info.mechanism = value;
  }
  if (info.domain.empty() || info.service.empty() || info.mechanism.empty())
    throw std::runtime_error(fmt::format("{} lacks domain, service or mechanism", conf));
  return info;
}

ntlm_domain::ntlm_domain(ntlm_config config) {
  std::string mechanism = config.mechanism.empty() ? ntlm_mechanism_path() : config.mechanism;
  if (mechanism.empty()) {
    throw std::runtime_error(
        "the NTLMSSP mechanism (gssntlmssp.so) is not installed: Debian package gss-ntlmssp");
  }
  std::string parent = config.parent;
  if (parent.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    parent = tmp && *tmp ? tmp : "/tmp";
  }
  std::string pattern = parent + "/cloak-ntlm.XXXXXX";
  if (!::mkdtemp(pattern.data())) os::throw_errno(errno, fmt::format("cannot create {}", pattern));
  info_ = paths_in(pattern);
  info_.domain = config.domain;
  info_.service = config.service;
  info_.mechanism = mechanism;
  try {
    // 0755 like the realm's directory: a thread switched to a client may still stat the
    // mechanism file when the mechglue checks it for changes; the key files are 0600.
    os::check([&] { return ::chmod(info_.dir.c_str(), 0755); }, "cannot chmod {}", info_.dir);
    write_file(info_.mech_config,
               fmt::format("# cloakbench's private mechanism list (GSS_MECH_CONFIG)\n"
                           "gssntlmssp_v1 1.3.6.1.4.1.311.2.2.10 {}\n",
                           mechanism),
               0644);
    std::random_device seed;
    std::mt19937_64 rng((static_cast<std::uint64_t>(seed()) << 32) ^ seed());
    md4 hasher;
    std::string users, idmap = "# DOMAIN\\user uid gid group... (docs/design.md §2)\n", keys;
    auto add = [&](const identity& who) {
      std::string user = ntlm_user_for(who.uid, config.process, config.domain);
      std::string hash = hasher.nt_hash_hex(random_password(rng));
      users += smbpasswd_line(user, who.uid, hash);
      keys += fmt::format("{} {} {}\n", who.uid, user, hash);
      idmap += fmt::format("{} {} {}", user, who.uid, who.gid);
      for (std::uint32_t i = 0; i < who.group_count; ++i)
        idmap += fmt::format(" {}", who.groups[i]);
      idmap += "\n";
    };
    add(config.process);
    for (std::uint32_t i = 0; i < config.clients.count; ++i) add(config.clients.client(i));
    for (const ntlm_account& a : config.unmapped) users += smbpasswd_line(a.user, a.uid, a.nt_hash);
    write_file(info_.keyfile, users, 0600);
    write_file(info_.client_keys, keys, 0600);
    write_file(info_.idmap, idmap, 0644);
    write_file(info_.dir + "/ntlm.conf",
               fmt::format("domain {}\nservice {}\nmechanism {}\n", info_.domain, info_.service,
                           info_.mechanism),
               0644);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove_all(info_.dir, ignored);
    throw;
  }
}

ntlm_domain::~ntlm_domain() {
  if (exported_) {
    put_env("GSS_MECH_CONFIG", previous_mech_config_);
    put_env("NTLM_USER_FILE", previous_user_file_);
    put_env("NTLMUSER", previous_ntlmuser_);
  }
  std::error_code ignored;
  std::filesystem::remove_all(info_.dir, ignored);
}

void ntlm_domain::export_environment() {
  if (!exported_) {
    previous_mech_config_ = get_env("GSS_MECH_CONFIG");
    previous_user_file_ = get_env("NTLM_USER_FILE");
    previous_ntlmuser_ = get_env("NTLMUSER");
    exported_ = true;
  }
  ::setenv("GSS_MECH_CONFIG", info_.mech_config.c_str(), 1);
  ::unsetenv("NTLM_USER_FILE");
  ::unsetenv("NTLMUSER");
}

// ---- initiator credentials
// ----------------------------------------------------------------------

struct ntlm_credentials::impl {
  struct entry {
    std::string user;
    gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
  };
  ntlm_info info;
  // Written only by the constructor: lookups from many threads need no lock.
  std::unordered_map<std::uint32_t, entry> by_uid;

  ~impl() {
    OM_uint32 minor = 0;
    for (auto& [uid, e] : by_uid)
      if (e.cred != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &e.cred);
  }
};

namespace {

std::vector<ntlm_account> read_client_keys(const ntlm_info& info) {
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

}  // namespace

ntlm_credentials::ntlm_credentials(const ntlm_info& info)
    : ntlm_credentials(info, read_client_keys(info)) {}

ntlm_credentials::ntlm_credentials(const ntlm_info& info, std::vector<ntlm_account> accounts)
    : impl_(std::make_unique<impl>()) {
  check_environment(info);
  impl_->info = info;
  for (ntlm_account& a : accounts) {
    gss_name_t name = import_name(a.user, GSS_C_NT_USER_NAME);
    name_guard release{name};
    gss_key_value_element_desc elements[] = {{"ntlmssp_domain", info.domain.c_str()},
                                             {"ntlmssp_nthash", a.nt_hash.c_str()}};
    gss_key_value_set_desc store{2, elements};
    gss_OID_set_desc mechs = ntlm_mechs();
    gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
    OM_uint32 minor = 0;
    OM_uint32 major = gss_acquire_cred_from(&minor, name, GSS_C_INDEFINITE, &mechs, GSS_C_INITIATE,
                                            &store, &cred, nullptr, nullptr);
    if (GSS_ERROR(major)) {
      throw std::runtime_error(fmt::format("ntlm credentials for uid {} ({}): {}", a.uid, a.user,
                                           gss_message(major, minor)));
    }
    auto& e = impl_->by_uid[a.uid];
    if (e.cred != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &e.cred);
    e = {std::move(a.user), cred};
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
  cred = it->second.cred;
  user = it->second.user;
  return true;
}

bool ntlm_credentials::has_credentials(std::uint32_t uid) const noexcept {
  return impl_->by_uid.contains(uid);
}

// ---- the client package
// -------------------------------------------------------------------------

namespace {

class ntlm_client_state final : public client_context_state {
 public:
  ~ntlm_client_state() override {
    OM_uint32 minor = 0;
    if (ctx != GSS_C_NO_CONTEXT) gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
  }
  gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
};

class ntlm_client final : public client_package {
 public:
  ntlm_client(const ntlm_credentials& credentials, ntlm_client_options options)
      : credentials_(credentials), options_(options) {
    check_environment(credentials_.info());
    target_ = import_name(credentials_.info().service, GSS_C_NT_HOSTBASED_SERVICE);
    flags_ = options_.per_call == protection::integrity ? GSS_C_INTEG_FLAG : 0;
  }
  ~ntlm_client() override {
    OM_uint32 minor = 0;
    if (target_ != GSS_C_NO_NAME) gss_release_name(&minor, &target_);
  }

  package_id id() const noexcept override { return package_id::ntlm; }
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
      // The thread's identity, not the token we were handed, selects the user.
      std::uint32_t uid = p.backend.read_thread_identity().uid;
      gss_cred_id_t cred = GSS_C_NO_CREDENTIAL;
      std::string_view user;
      if (!credentials_.find(uid, cred, user, out.detail)) {
        out.error = call_error::no_credentials;
        return out;
      }
      auto state = std::make_unique<ntlm_client_state>();
      out.error = run_legs(user, cred, *state, legs, out.detail);
      if (out.error == call_error::ok) out.state = std::move(state);
    } catch (const std::exception& ex) {
      out.error = call_error::authentication_failed;
      out.detail = ex.what();
    }
    return out;
  }

  // gss-ntlmssp has no iov MIC: GSS allocates each MIC (16 bytes), copied into the reused buffer.
  bool sign(client_context_state* state, std::span<const std::byte> message,
            token_buffer& mic) noexcept override {
    auto* st = dynamic_cast<ntlm_client_state*>(state);
    if (!st || st->ctx == GSS_C_NO_CONTEXT) return false;
    gss_buffer_desc in{message.size(), const_cast<std::byte*>(message.data())};
    gss_buffer_desc out{0, nullptr};
    buffer_guard release{out};
    OM_uint32 minor = 0;
    if (GSS_ERROR(gss_get_mic(&minor, st->ctx, GSS_C_QOP_DEFAULT, &in, &out))) return false;
    try {
      mic.assign(bytes_of(out).begin(), bytes_of(out).end());
    } catch (...) {
      return false;
    }
    return true;
  }

 private:
  call_error run_legs(std::string_view user, gss_cred_id_t cred, ntlm_client_state& st,
                      establish_legs& legs, std::string& detail) {
    gss_buffer_desc input{0, nullptr};
    bool have_input = false;
    for (int leg = 0;; ++leg) {
      OM_uint32 minor = 0;
      gss_buffer_desc output{0, nullptr};
      buffer_guard release{output};
      OM_uint32 major = gss_init_sec_context(
          &minor, cred, &st.ctx, target_, &ntlmssp_oid, flags_, 0, GSS_C_NO_CHANNEL_BINDINGS,
          have_input ? &input : GSS_C_NO_BUFFER, nullptr, &output, nullptr, nullptr);
      if (GSS_ERROR(major)) {
        detail = fmt::format("gss_init_sec_context ({} for {}): {}", user,
                             credentials_.info().service, gss_message(major, minor));
        return call_error::authentication_failed;
      }
      bool complete = major == GSS_S_COMPLETE;
      if (output.length == 0) {
        if (complete) return call_error::ok;
        detail = "gss_init_sec_context wants another token but produced none to send";
        return call_error::authentication_failed;
      }
      if (leg >= 4) {
        detail = "more than 4 establish legs";
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
      if (!reply.more || reply.token.empty()) {
        detail = "the server answered the NEGOTIATE without a CHALLENGE";
        return call_error::authentication_failed;
      }
      input = {reply.token.size(), const_cast<std::byte*>(reply.token.data())};
      have_input = true;
    }
  }

  const ntlm_credentials& credentials_;
  ntlm_client_options options_;
  gss_name_t target_ = GSS_C_NO_NAME;
  OM_uint32 flags_ = 0;
};

// ---- the server package
// -------------------------------------------------------------------------

class ntlm_server_state final : public server_context_state {
 public:
  ~ntlm_server_state() override {
    OM_uint32 minor = 0;
    if (ctx != GSS_C_NO_CONTEXT) gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
  }
  gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
  std::string user;
};

class ntlm_server final : public server_package {
 public:
  explicit ntlm_server(const ntlm_info& info) {
    check_environment(info);
    idmap_ = load_idmap(info.idmap);
    gss_name_t service = import_name(info.service, GSS_C_NT_HOSTBASED_SERVICE);
    name_guard release{service};
    gss_key_value_element_desc elements[] = {{"ntlmssp_keyfile", info.keyfile.c_str()}};
    gss_key_value_set_desc store{1, elements};
    gss_OID_set_desc mechs = ntlm_mechs();
    OM_uint32 minor = 0;
    // One acceptor handle for every connection; each accept has its own context, and gss-ntlmssp
    // re-reads the user file on every AUTHENTICATE.
    OM_uint32 major = gss_acquire_cred_from(&minor, service, GSS_C_INDEFINITE, &mechs, GSS_C_ACCEPT,
                                            &store, &cred_, nullptr, nullptr);
    if (GSS_ERROR(major)) {
      throw std::runtime_error(
          fmt::format("cannot acquire NTLM acceptor credentials for {} from {}: {}", info.service,
                      info.keyfile, gss_message(major, minor)));
    }
  }
  ~ntlm_server() override {
    OM_uint32 minor = 0;
    if (cred_ != GSS_C_NO_CREDENTIAL) gss_release_cred(&minor, &cred_);
  }

  package_id id() const noexcept override { return package_id::ntlm; }

  accept_outcome accept(const peer_info& /*peer*/, std::span<const std::byte> token,
                        std::unique_ptr<server_context_state> state, token_buffer& reply) override {
    accept_outcome out;
    reply.clear();
    std::unique_ptr<ntlm_server_state> st;
    if (state) {
      auto* mine = dynamic_cast<ntlm_server_state*>(state.get());
      if (!mine) {
        out.detail = "the establish state belongs to another package";
        return out;
      }
      state.release();
      st.reset(mine);
    } else {
      st = std::make_unique<ntlm_server_state>();
    }
    OM_uint32 minor = 0;
    gss_buffer_desc input{token.size(), const_cast<std::byte*>(token.data())};
    gss_buffer_desc output{0, nullptr};
    buffer_guard release{output};
    gss_name_t source = GSS_C_NO_NAME;
    name_guard source_guard{source};
    OM_uint32 major =
        gss_accept_sec_context(&minor, &st->ctx, cred_, &input, GSS_C_NO_CHANNEL_BINDINGS, &source,
                               nullptr, &output, nullptr, nullptr, nullptr);
    if (output.length) reply.assign(bytes_of(output).begin(), bytes_of(output).end());
    if (GSS_ERROR(major)) {
      out.refusal = protocol::status::auth_failed;
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
      out.detail = "cannot display the authenticated name: " + gss_message(major, minor);
      return out;
    }
    st->user.assign(static_cast<const char*>(name.value), name.length);
    // gss-ntlmssp 1.2.0 counts the terminating NUL in the displayed name's length.
    while (!st->user.empty() && st->user.back() == '\0') st->user.pop_back();
    auto it = idmap_.find(st->user);
    if (it == idmap_.end()) {
      out.refusal = protocol::status::unknown_principal;
      out.detail = fmt::format("{} authenticated but maps to no identity", st->user);
      return out;
    }
    out.result = accept_outcome::kind::done;
    out.who = it->second;
    out.state = std::move(st);
    return out;
  }

  bool verify(server_context_state* state, std::span<const std::byte> message,
              std::span<const std::byte> mic) noexcept override {
    auto* st = dynamic_cast<ntlm_server_state*>(state);
    if (!st || st->ctx == GSS_C_NO_CONTEXT) return false;
    gss_buffer_desc msg{message.size(), const_cast<std::byte*>(message.data())};
    gss_buffer_desc token{mic.size(), const_cast<std::byte*>(mic.data())};
    OM_uint32 minor = 0;
    return gss_verify_mic(&minor, st->ctx, &msg, &token, nullptr) == GSS_S_COMPLETE;
  }

 private:
  gss_cred_id_t cred_ = GSS_C_NO_CREDENTIAL;
  std::unordered_map<std::string, identity> idmap_;  // read-only after construction
};

}  // namespace

std::unique_ptr<client_package> make_ntlm_client(const ntlm_credentials& credentials,
                                                 ntlm_client_options options) {
  return std::make_unique<ntlm_client>(credentials, options);
}

std::unique_ptr<server_package> make_ntlm_server(const ntlm_info& info) {
  return std::make_unique<ntlm_server>(info);
}

std::string ntlm_authenticated_user(const server_context_state* state) {
  auto* st = dynamic_cast<const ntlm_server_state*>(state);
  return st ? st->user : std::string();
}

}  // namespace cloak
