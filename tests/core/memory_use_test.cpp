// Memory per context (issue 19): the bytes in use on either side grow when contexts are established
// and shrink or hold when they are released. No byte figure is asserted beyond "> 0 per context".
#include <unistd.h>

#include <cloak/memory_use.hpp>
#include <cloak/proxy.hpp>
#include <system_error>

#include "support.hpp"

namespace cloak::test {
namespace {

const std::byte payload[16]{};

identity person(std::uint32_t i) { return identity::of(100000 + i, 100000 + i, {100000 + i}); }

void call_as_each(identity_backend& be, proxy& p, std::uint32_t n) {
  for (std::uint32_t i = 0; i < n; ++i) {
    impersonation as(be, make_token(person(i)));
    call_result r = p.call(payload);
    ASSERT_TRUE(r.ok()) << to_string(r.error);
    ASSERT_TRUE(r.view.seen.same_principal(person(i)));
  }
}

using memory_use = leak_checked_test;

TEST_F(memory_use, heap_in_use_grows_with_allocations_and_shrinks_when_they_are_freed) {
  std::size_t before = heap_bytes_in_use();
  auto* block = new char[1 << 20];
  block[0] = 1;
  std::size_t during = heap_bytes_in_use();
  delete[] block;
  std::size_t after = heap_bytes_in_use();
  EXPECT_GE(during, before + (1 << 20));
  EXPECT_LT(after, during);
}

TEST_F(memory_use, an_in_process_downstream_holds_bytes_per_context_and_gives_them_back) {
  // Both sides in this process: the model downstream's sessions and the proxy (whose cache is
  // allocated when it is made, so what grows is the contexts themselves).
  constexpr std::uint32_t n = 1000;
  identity_backend& be = backend(backend_kind::model);
  model_downstream downstream;
  auto conn = make_inproc_connection(downstream, be);
  proxy p(be, *conn, {}, dynamic_options{identity_probe::kernel, context_cache_policy::lru(n)});
  p.set_blanket(blanket_of(cloaking::dynamic));
  call_as_each(be, p, 1);
  std::size_t before = heap_bytes_in_use();
  call_as_each(be, p, n);
  std::size_t established = heap_bytes_in_use();
  EXPECT_GT(established, before + (n - 1)) << "more than a byte per context";
  // A new blanket releases the cached contexts (all but the one it replaces).
  p.set_blanket(blanket_of(cloaking::dynamic));
  std::size_t released = heap_bytes_in_use();
  EXPECT_LT(released, established);
}

TEST_F(memory_use, a_downstream_process_s_resident_memory_grows_with_its_contexts) {
  if (const auto& why = kernel_unavailable()) GTEST_SKIP() << *why;
  identity_backend& be = backend(backend_kind::kernel);
  downstream_process server(client_downstream_config());
  auto conn = connect_to(server);
  proxy p(be, *conn, {}, dynamic_options{identity_probe::kernel, context_cache_policy::lru(2000)});
  p.set_blanket(blanket_of(cloaking::dynamic));
  call_as_each(be, p, 1);
  std::size_t before = resident_anonymous_bytes(server.pid());
  EXPECT_GT(before, 0u);
  call_as_each(be, p, 2000);
  std::size_t after = resident_anonymous_bytes(server.pid());
  EXPECT_GT(after, before) << "2,000 contexts take at least a page";
  p.set_blanket(blanket_of(cloaking::dynamic));  // released: glibc may keep the pages
  EXPECT_LE(resident_anonymous_bytes(server.pid()), after + (1 << 20)) << "holds, or shrinks";
}

TEST_F(memory_use, reading_a_process_that_does_not_exist_is_a_system_error) {
  EXPECT_GT(resident_anonymous_bytes(::getpid()), 0u);
  EXPECT_THROW(resident_anonymous_bytes(0x7FFFFFF0), std::system_error);
}

}  // namespace
}  // namespace cloak::test
