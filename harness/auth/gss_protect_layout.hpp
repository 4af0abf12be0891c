// What a context's state keeps for per-call protection: how the mechanism signs and seals, and
// the layout of its sealed messages (gss_protect.hpp runs them).
#pragma once

#include <cstddef>
#include <cstdint>

namespace cloak::detail {

// How a package asks for MICs and seals: krb5 has the iov forms, which write into the caller's
// buffer and allocate nothing; gss-ntlmssp has only gss_get_mic and gss_wrap, which allocate each
// token.
enum class mic_form : std::uint8_t { iov, plain };

// One context's sealed-message layout in the iov form: header and trailer around the data, no
// padding (krb5's CFX tokens with AES). Learned on the first seal or open under the context.
struct seal_layout {
  std::size_t header = 0;
  std::size_t trailer = 0;
  bool known = false;
  bool padded = false;  // the mechanism pads: the plain form runs under this context instead
};

}  // namespace cloak::detail
