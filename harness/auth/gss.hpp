// The GSSAPI layer every GSSAPI package shares (kerberos, ntlm): status messages, owned handles and
// buffers, names and credentials. A package names its mechanism; nothing here knows one.
#pragma once

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace cloak::detail {

// What one GSS call returned.
struct gss_status {
  OM_uint32 major = GSS_S_COMPLETE;
  OM_uint32 minor = 0;
  bool failed() const noexcept { return GSS_ERROR(major); }
};

// "GSS major message: mechanism message", as gss_display_status words them; `mech` decodes the
// minor code.
std::string gss_message(const gss_status& status, gss_OID mech);

// Throws std::runtime_error "<what>: <gss message>".
[[noreturn]] void throw_gss(const std::string& what, const gss_status& status, gss_OID mech);

std::span<const std::byte> bytes_of(const gss_buffer_desc& b) noexcept;
// A descriptor over bytes GSS only reads (it takes them non-const).
gss_buffer_desc buffer_of(std::span<const std::byte> bytes) noexcept;
gss_buffer_desc buffer_of(std::string_view text) noexcept;

void release_handle(gss_name_t& name) noexcept;
void release_handle(gss_cred_id_t& cred) noexcept;
void release_handle(gss_ctx_id_t& context) noexcept;

// Sole owner of a GSS name, credential or context handle; released once, on reset or destruction.
template <class Handle>
class gss_owned {
 public:
  gss_owned() noexcept = default;
  explicit gss_owned(Handle h) noexcept : h_(h) {}
  gss_owned(gss_owned&& other) noexcept : h_(std::exchange(other.h_, Handle{})) {}
  gss_owned& operator=(gss_owned&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, Handle{});
    }
    return *this;
  }
  gss_owned(const gss_owned&) = delete;
  gss_owned& operator=(const gss_owned&) = delete;
  ~gss_owned() { reset(); }

  Handle get() const noexcept { return h_; }
  // For a GSS call that writes the handle or, for a context, updates it leg by leg.
  Handle* out() noexcept { return &h_; }
  explicit operator bool() const noexcept { return h_ != Handle{}; }
  void reset() noexcept {
    if (h_ != Handle{}) release_handle(h_);
    h_ = Handle{};
  }

 private:
  Handle h_{};
};

using gss_name = gss_owned<gss_name_t>;
using gss_cred = gss_owned<gss_cred_id_t>;
using gss_context = gss_owned<gss_ctx_id_t>;

// A buffer GSS filled (a token, a MIC, a displayed name): released on destruction.
class gss_buffer {
 public:
  gss_buffer() noexcept = default;
  gss_buffer(const gss_buffer&) = delete;
  gss_buffer& operator=(const gss_buffer&) = delete;
  ~gss_buffer();

  gss_buffer_desc* out() noexcept { return &desc_; }
  std::span<const std::byte> bytes() const noexcept { return bytes_of(desc_); }
  std::string_view text() const noexcept {
    return {static_cast<const char*>(desc_.value), desc_.length};
  }
  std::size_t size() const noexcept { return desc_.length; }

 private:
  gss_buffer_desc desc_{0, nullptr};
};

// gss_import_name; throws std::runtime_error "cannot import the name <text>: <gss message>".
gss_name import_name(std::string_view text, gss_OID type, gss_OID mech);

// Credentials for `mech` alone from a credential store (gss_acquire_cred_from), for initiating or
// accepting. Empty with `status` set on failure: each package words its own message.
gss_cred acquire_cred_from(const gss_name& name, gss_OID mech, gss_cred_usage_t usage,
                           std::span<const gss_key_value_element_desc> store,
                           gss_status& status) noexcept;

// The name as gss_display_name spells it, without the terminating NUL gss-ntlmssp 1.2.0 counts in
// its length. False with the GSS message in `why`.
bool display_name(gss_name_t name, gss_OID mech, std::string& out, std::string& why);

}  // namespace cloak::detail
