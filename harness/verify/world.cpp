// What every world shares (world.hpp): identities by role, and a refusal for what it lacks.
#include "world.hpp"

#include <cloak/negotiate.hpp>
#include <cloak/protocol.hpp>
#include <stdexcept>

namespace cloak::verify {

std::unique_ptr<connection> world::connect(std::unique_ptr<client_package>,
                                           const std::optional<tcp_options>&) {
  throw std::logic_error("this world has no connection but its own");
}

identity world::resolve(const who& w) const {
  switch (w.is) {
    case who::role::process:
      return backend_.process_identity();
    case who::role::client:
      return clients_.client(w.index);
    case who::role::stranger: {
      std::uint32_t uid = clients_.first_uid + clients_.count;
      return identity::of(uid, uid);
    }
    case who::role::middle:
    case who::role::d1:
      break;
  }
  throw std::logic_error("this world has no other hosts");
}

nlohmann::json world::show(const identity& who) const {
  if (who.uid == protocol::anonymous_id) return nlohmann::json{{"anonymous", true}};
  return nlohmann::json{{"uid", who.uid}, {"gid", who.gid}};
}

kerberos_credentials& world::kerberos() {
  throw std::logic_error("this world has no kerberos credentials");
}
ntlm_credentials& world::ntlm() { throw std::logic_error("this world has no ntlm credentials"); }
const ntlm_info& world::ntlm_domain() { throw std::logic_error("this world has no ntlm domain"); }
negotiate_credentials& world::negotiate() {
  throw std::logic_error("this world has no negotiate credentials");
}
negotiate_mech world::mech() const { throw std::logic_error("this world negotiates nothing"); }
void world::use_mech(negotiate_mech) { throw std::logic_error("this world negotiates nothing"); }
void world::inject(fault) { throw std::logic_error("this world cannot inject that fault"); }
std::string world::start_misconfigured_d1() {
  throw std::logic_error("this world has no D1 to misconfigure");
}

}  // namespace cloak::verify
