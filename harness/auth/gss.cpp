// Status messages, owned handles, names and credentials for the GSSAPI packages.
#include "gss.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace cloak::detail {

namespace {

void append_status(std::string& out, OM_uint32 code, int type, gss_OID mech) {
  OM_uint32 context = 0;
  do {
    OM_uint32 minor = 0;
    gss_buffer_desc text{0, nullptr};
    gss_OID decoder = type == GSS_C_MECH_CODE ? mech : GSS_C_NO_OID;
    if (GSS_ERROR(gss_display_status(&minor, code, type, decoder, &context, &text))) break;
    if (!out.empty()) out += ": ";
    out.append(static_cast<const char*>(text.value), text.length);
    gss_release_buffer(&minor, &text);
  } while (context != 0);
}

}  // namespace

std::string gss_message(const gss_status& status, gss_OID mech) {
  std::string out;
  append_status(out, status.major, GSS_C_GSS_CODE, mech);
  if (status.minor != 0) append_status(out, status.minor, GSS_C_MECH_CODE, mech);
  return out;
}

void throw_gss(const std::string& what, const gss_status& status, gss_OID mech) {
  throw std::runtime_error(fmt::format("{}: {}", what, gss_message(status, mech)));
}

std::span<const std::byte> bytes_of(const gss_buffer_desc& b) noexcept {
  return {static_cast<const std::byte*>(b.value), b.length};
}

gss_buffer_desc buffer_of(std::span<const std::byte> bytes) noexcept {
  return {bytes.size(), const_cast<std::byte*>(bytes.data())};
}

gss_buffer_desc buffer_of(std::string_view text) noexcept {
  return {text.size(), const_cast<char*>(text.data())};
}

void release_handle(gss_name_t& name) noexcept {
  OM_uint32 minor = 0;
  gss_release_name(&minor, &name);
}

void release_handle(gss_cred_id_t& cred) noexcept {
  OM_uint32 minor = 0;
  gss_release_cred(&minor, &cred);
}

void release_handle(gss_ctx_id_t& context) noexcept {
  OM_uint32 minor = 0;
  gss_delete_sec_context(&minor, &context, GSS_C_NO_BUFFER);
}

gss_buffer::~gss_buffer() {
  OM_uint32 minor = 0;
  if (desc_.value) gss_release_buffer(&minor, &desc_);
}

gss_name import_name(std::string_view text, gss_OID type, gss_OID mech) {
  gss_buffer_desc buffer = buffer_of(text);
  gss_name name;
  gss_status s;
  s.major = gss_import_name(&s.minor, &buffer, type, name.out());
  if (s.failed()) throw_gss(fmt::format("cannot import the name {}", text), s, mech);
  return name;
}

gss_cred acquire_cred_from(const gss_name& name, gss_OID mech, gss_cred_usage_t usage,
                           std::span<const gss_key_value_element_desc> store,
                           gss_status& status) noexcept {
  gss_key_value_set_desc set{static_cast<OM_uint32>(store.size()),
                             const_cast<gss_key_value_element_desc*>(store.data())};
  gss_OID_set_desc mechs{1, mech};
  gss_cred cred;
  status.major = gss_acquire_cred_from(&status.minor, name.get(), GSS_C_INDEFINITE, &mechs, usage,
                                       &set, cred.out(), nullptr, nullptr);
  if (status.failed()) cred.reset();
  return cred;
}

bool display_name(gss_name_t name, gss_OID mech, std::string& out, std::string& why) {
  gss_buffer text;
  gss_status s;
  s.major = gss_display_name(&s.minor, name, text.out(), nullptr);
  if (s.failed()) {
    why = "cannot display the authenticated name: " + gss_message(s, mech);
    return false;
  }
  out.assign(text.text());
  // gss-ntlmssp 1.2.0 counts the terminating NUL in the displayed name's length.
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return true;
}

}  // namespace cloak::detail
