// The robustness tests' shared fixtures and tools (see support.hpp).
#include "support.hpp"

#include <cloak/process.hpp>
#include <cstring>
#include <filesystem>

namespace cloak::robustness {

void kernel_test::SetUp() {
  if (const auto& why = test::kernel_unavailable()) GTEST_SKIP() << *why;
  leak_checked_test::SetUp();
}

::testing::AssertionResult serves_correctly(identity_backend& kernel,
                                            const downstream_process& server) {
  static const std::byte payload[48]{};
  {
    auto t = connect_to(server);
    proxy p(kernel, *t);
    call_result r = p.call(payload);
    if (!r.ok())
      return ::testing::AssertionFailure() << "no-cloaking call failed: " << to_string(r.error);
    if (!r.view.seen.same_principal(kernel.process_identity())) {
      return ::testing::AssertionFailure() << "no-cloaking call: D saw " << to_string(r.view.seen);
    }
  }
  auto t = connect_to(server);
  proxy p(kernel, *t);
  p.set_blanket(blanket_of(cloaking::dynamic));
  impersonation as_c1(kernel, client_token(0));
  call_result r = p.call(payload);
  if (!r.ok())
    return ::testing::AssertionFailure() << "dynamic call as C1 failed: " << to_string(r.error);
  if (!r.view.seen.same_principal(client(0))) {
    return ::testing::AssertionFailure() << "dynamic call as C1: D saw " << to_string(r.view.seen);
  }
  access_outcome out;
  r = p.access_check(clients().first_uid, out);
  if (!r.ok() || !out.granted) {
    return ::testing::AssertionFailure()
           << "access check as C1 on C1's probe file: " << to_string(r.error)
           << " granted=" << out.granted << " errno=" << out.error_number;
  }
  return ::testing::AssertionSuccess();
}

command_result run_command(const std::vector<std::string>& argv) {
  os::tool_options tool;
  tool.argv = argv;
  // Bounded: a program that never exits is a hang, reported as one.
  os::tool_result r = os::run_tool(tool, os::deadline(30s));
  if (r.timed_out) ADD_FAILURE() << argv[0] << " did not finish within 30 s";
  command_result result;
  result.output = r.out + r.err;
  result.exit_code = r.status.signal != 0 ? 128 + r.status.signal : r.status.code;
  return result;
}

temp_dir::temp_dir() { path_ = os::make_temp_dir("cloak-robustness"); }

temp_dir::~temp_dir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace cloak::robustness
