// The kerberos package's KDC send hook: one TCP exchange (RFC 4120 §7.2.2) through the OS seam's
// bounded connect, send and receive, all within the target's one timeout.
#include "kdc_hook.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <cerrno>
#include <cloak/os.hpp>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace cloak::detail {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::uint32_t max_reply = 1u << 20;

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
  auto failed_io = [&](int error) {
    if (error == ETIMEDOUT)
      return fail(fmt::format("no answer within {} ms", target.timeout.count()));
    if (error == 0) return fail("closed the connection before it answered");
    return fail(std::strerror(error));
  };
  // Each step gets what is left of the one timeout (zero would mean unbounded to the OS seam).
  auto within = [&](auto step) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_type::now());
    if (left.count() <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    return step(left);
  };

  os::unique_fd fd = os::connect_tcp(target.endpoint, target.timeout);
  if (!fd) return failed_io(errno);
  // A 4-byte big-endian length, then the message.
  std::vector<char> out(4 + message->length);
  std::uint32_t n = htonl(message->length);
  std::memcpy(out.data(), &n, 4);
  std::memcpy(out.data() + 4, message->data, message->length);
  if (!within(
          [&](auto left) { return os::send_all_within(fd.get(), out.data(), out.size(), left); }))
    return failed_io(errno);
  std::uint32_t length = 0;
  if (!within([&](auto left) { return os::recv_all_within(fd.get(), &length, 4, left); }))
    return failed_io(errno);
  length = ntohl(length);
  if (length > max_reply) return fail("reply longer than 1 MiB");
  std::vector<char> in(length);
  if (!within([&](auto left) { return os::recv_all_within(fd.get(), in.data(), in.size(), left); }))
    return failed_io(errno);
  krb5_data reply{KV5M_DATA, length, in.data()};
  return krb5_copy_data(ctx, &reply, new_reply);
}

}  // namespace

kdc_context::kdc_context(const realm_info& realm, std::chrono::milliseconds timeout) {
  target.where = fmt::format("{}:{}", realm.kdc_host, realm.kdc_port);
  target.timeout = timeout;
  target.endpoint = {realm.kdc_host, realm.kdc_port};
  in_addr probe{};
  if (::inet_pton(AF_INET, realm.kdc_host.c_str(), &probe) != 1) {
    throw std::invalid_argument(fmt::format("KDC host {} is not an IPv4 address", realm.kdc_host));
  }
  if (krb5_error_code rc = krb5_init_context(&ctx)) {
    throw std::runtime_error(fmt::format("cannot create a krb5 context: error {}", rc));
  }
  krb5_set_kdc_send_hook(ctx, bounded_send, &target);
}

kdc_context::~kdc_context() {
  if (ctx) krb5_free_context(ctx);
}

}  // namespace cloak::detail
