// The ntlm package's private domain: a directory per run with the mechanism file GSS_MECH_CONFIG
// names, the acceptor's user file of NT hashes, the user <-> identity map and the clients' keys.
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cloak/ntlm.hpp>
#include <cloak/os.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace cloak {

namespace {

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

ntlm_info paths_in(const std::string& dir) {
  ntlm_info info;
  info.dir = dir;
  info.mech_config = dir + "/gss-mech.conf";
  info.keyfile = dir + "/ntlm-users";
  info.idmap = dir + "/idmap";
  info.client_keys = dir + "/client-keys";
  return info;
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
  environment_.restore();
  std::error_code ignored;
  std::filesystem::remove_all(info_.dir, ignored);
}

void ntlm_domain::export_environment() {
  environment_.set("GSS_MECH_CONFIG", info_.mech_config);
  environment_.unset("NTLM_USER_FILE");
  environment_.unset("NTLMUSER");
}

}  // namespace cloak
