// The context cache at scale (issue 19): LRU order, hit/miss/eviction counts, what the proxy
// releases on D, the per-connection context limit, and ten thousand identities through one
// connection with every call's identity verified.
#include <fmt/format.h>

#include <cloak/context_cache.hpp>
#include <cloak/population.hpp>
#include <cloak/proxy.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <list>
#include <map>
#include <utility>
#include <vector>

#include "support.hpp"

namespace cloak::test {
namespace {

const std::byte payload[16]{};

identity person(std::uint32_t i) { return identity::of(100000 + i, 100000 + i, {100000 + i}); }

// --- the cache alone ----------------------------------------------------------------------------

TEST(context_cache, evicts_the_least_recently_used_and_a_hit_makes_an_entry_the_most_recent) {
  context_cache c(3);
  EXPECT_EQ(c.find(person(0), 0), 0u);
  EXPECT_EQ(c.insert(person(0), 0, 10), 0u);
  c.insert(person(1), 0, 11);
  c.insert(person(2), 0, 12);
  EXPECT_EQ(c.victim(), 10u) << "full: the oldest would go next";
  EXPECT_EQ(c.find(person(0), 0), 10u);  // 0 is now the most recent: 1 is the oldest
  EXPECT_EQ(c.victim(), 11u);
  EXPECT_EQ(c.insert(person(3), 0, 13), 11u);
  EXPECT_EQ(c.find(person(1), 0), 0u) << "evicted";
  EXPECT_EQ(c.contexts_by_recency(), (std::vector<std::uint64_t>{12, 10, 13}));
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.stats().hits, 1u);
  EXPECT_EQ(c.stats().misses, 2u);
  EXPECT_EQ(c.stats().evictions, 1u);
}

TEST(context_cache, keys_by_generation_and_by_every_field_of_the_identity) {
  context_cache c(8);
  c.insert(person(0), 1, 10);
  EXPECT_EQ(c.find(person(0), 2), 0u) << "another token of the same client";
  identity more_groups = identity::of(100000, 100000, {100000, 5});
  EXPECT_EQ(c.find(more_groups, 1), 0u) << "same uid and gid, other groups";
  EXPECT_EQ(c.find(person(0), 1), 10u);
}

TEST(context_cache, clear_hands_back_every_context_oldest_first_and_capacity_zero_holds_none) {
  context_cache c(4);
  for (std::uint32_t i = 0; i < 4; ++i) c.insert(person(i), 0, 20 + i);
  c.find(person(1), 0);
  std::vector<std::uint64_t> dropped;
  c.clear([&](std::uint64_t id) noexcept { dropped.push_back(id); });
  EXPECT_EQ(dropped, (std::vector<std::uint64_t>{20, 22, 23, 21}));
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(c.find(person(1), 0), 0u);

  context_cache none(0);
  EXPECT_EQ(none.insert(person(0), 0, 1), 0u);
  EXPECT_EQ(none.find(person(0), 0), 0u);
  EXPECT_EQ(none.victim(), 0u);
}

// Against a plain list-and-map LRU over a Zipf stream: the hash table's deletions (thousands of
// evictions) never lose or invent an entry.
TEST(context_cache, agrees_with_a_reference_lru_over_a_zipf_stream_of_ten_thousand_identities) {
  for (std::size_t capacity : {std::size_t{1}, std::size_t{16}, std::size_t{2000}}) {
    context_cache c(capacity);
    std::list<std::uint32_t> order;  // front: most recent
    std::map<std::uint32_t, std::pair<std::uint64_t, std::list<std::uint32_t>::iterator>> ref;
    population_sampler who(10000, popularity::zipf(1.0), capacity);
    std::uint64_t next_context = 1, hits = 0;
    for (int step = 0; step < 100000; ++step) {
      std::uint32_t i = who.next();
      std::uint64_t got = c.find(person(i), 0);
      auto it = ref.find(i);
      if (it != ref.end()) {
        ASSERT_EQ(got, it->second.first) << "step " << step;
        order.splice(order.begin(), order, it->second.second);
        ++hits;
        continue;
      }
      ASSERT_EQ(got, 0u) << "step " << step;
      std::uint64_t want_evicted = 0;
      if (ref.size() == capacity) {
        want_evicted = ref[order.back()].first;
        ref.erase(order.back());
        order.pop_back();
      }
      ASSERT_EQ(c.victim(), want_evicted);
      ASSERT_EQ(c.insert(person(i), 0, next_context), want_evicted);
      order.push_front(i);
      ref[i] = {next_context++, order.begin()};
    }
    EXPECT_EQ(c.size(), ref.size());
    EXPECT_EQ(c.stats().hits, hits);
    EXPECT_EQ(c.stats().hits + c.stats().misses, 100000u);
  }
}

// --- the proxy at the limit ---------------------------------------------------------------------

// Records what the proxy asks D to release: with an establish, or on its own.
class recording_connection final : public connection {
 public:
  explicit recording_connection(std::unique_ptr<connection> inner) : inner_(std::move(inner)) {}
  std::vector<std::uint64_t> released_with_establish;
  std::vector<std::uint64_t> released_alone;

  call_error connect() noexcept override { return inner_->connect(); }
  bool connected() const noexcept override { return inner_->connected(); }
  void disconnect() noexcept override { inner_->disconnect(); }
  std::uint64_t epoch() const noexcept override { return inner_->epoch(); }
  call_error establish(const presentation& who, std::uint64_t release,
                       downstream_view& out) noexcept override {
    call_error e = inner_->establish(who, release, out);
    report_ = inner_->last_establish();
    if (e == call_error::ok && release != 0) released_with_establish.push_back(release);
    return e;
  }
  call_error call(std::uint64_t context, impersonation_level level, std::span<const std::byte> data,
                  downstream_view& out) noexcept override {
    return inner_->call(context, level, data, out);
  }
  call_error release(std::uint64_t context) noexcept override {
    released_alone.push_back(context);
    return inner_->release(context);
  }
  call_error access_check(std::uint64_t context, std::uint32_t target_uid,
                          access_outcome& out) noexcept override {
    return inner_->access_check(context, target_uid, out);
  }

 private:
  std::unique_ptr<connection> inner_;
};

using proxy_cache = backend_test;

dynamic_options lru(std::size_t n) {
  return {identity_probe::kernel, context_cache_policy::lru(n)};
}

// Calls as client `i` (of person()) and checks that D saw exactly that client; its context in
// `out`.
::testing::AssertionResult call_as(identity_backend& be, proxy& p, std::uint32_t i,
                                   std::uint64_t* out = nullptr) {
  impersonation as(be, make_token(person(i)));
  call_result r = p.call(payload);
  if (!r.ok()) {
    return ::testing::AssertionFailure()
           << "client " << i << ": " << to_string(r.error) << " (server status "
           << protocol::to_string(r.view.server_status) << ")";
  }
  if (r.view.anonymous || !r.view.seen.same_principal(person(i))) {
    return ::testing::AssertionFailure() << "client " << i << ": D saw " << to_string(r.view.seen);
  }
  if (out) *out = r.view.context;
  return ::testing::AssertionSuccess();
}

TEST_P(proxy_cache, evicts_the_least_recent_identity_and_releases_its_context_on_d) {
  recording_connection conn(connect(kind()));
  proxy p(be(), conn, {}, lru(3));
  p.set_blanket(blanket_of(cloaking::dynamic));
  std::uint64_t c[4]{};
  for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(call_as(be(), p, i, &c[i]));
  std::uint64_t again = 0;
  ASSERT_TRUE(call_as(be(), p, 0, &again));  // a hit: 1 is now the least recent
  EXPECT_EQ(again, c[0]);
  ASSERT_TRUE(call_as(be(), p, 3, &c[3]));  // a miss on a full cache: 1 goes
  EXPECT_EQ(conn.released_with_establish, (std::vector<std::uint64_t>{c[1]}));
  // D forgot it: a call under the evicted context is refused.
  downstream_view v;
  EXPECT_EQ(conn.call(c[1], impersonation_level::impersonate, payload, v), call_error::refused);
  EXPECT_EQ(v.server_status, protocol::status::unknown_context);
  std::uint64_t back = 0;
  ASSERT_TRUE(call_as(be(), p, 1, &back));  // a miss again: 2 goes
  EXPECT_NE(back, c[1]);
  EXPECT_EQ(conn.released_with_establish, (std::vector<std::uint64_t>{c[1], c[2]}));
  ASSERT_TRUE(call_as(be(), p, 0, &again));
  EXPECT_EQ(again, c[0]) << "the most used client stayed";
  const proxy_counters& n = p.counters();
  EXPECT_EQ(n.cache_hits, 2u);
  EXPECT_EQ(n.cache_misses, 5u);
  EXPECT_EQ(n.cache_evictions, 2u);
  EXPECT_EQ(n.contexts_established, 5u);
}

TEST_P(proxy_cache, a_new_blanket_releases_every_cached_context_but_the_one_it_replaces) {
  recording_connection conn(connect(kind()));
  proxy p(be(), conn, {}, lru(8));
  p.set_blanket(blanket_of(cloaking::dynamic));
  for (std::uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(call_as(be(), p, i));
  p.set_blanket(blanket_of(cloaking::dynamic));
  EXPECT_EQ(conn.released_alone.size(), 4u) << "the fifth goes with the next establish";
  ASSERT_TRUE(call_as(be(), p, 0));
  EXPECT_EQ(conn.released_with_establish.size(), 1u);
  EXPECT_EQ(p.counters().cache_hits, 0u);
}

TEST_P(proxy_cache,
       lru_at_the_context_limit_drives_ten_thousand_identities_through_one_connection) {
  // MS-RPCE's 2,000 contexts per connection: D's default, and the largest lru:N.
  ASSERT_EQ(max_cached_contexts, protocol::default_max_contexts);
  ASSERT_EQ(max_cached_contexts, 2000u);
  recording_connection conn(connect(kind()));
  proxy p(be(), conn, {}, lru(max_cached_contexts));
  p.set_blanket(blanket_of(cloaking::dynamic));
  constexpr std::uint32_t k = 10000;
  for (std::uint32_t i = 0; i < k; ++i) ASSERT_TRUE(call_as(be(), p, i));
  // Had the proxy kept one context more than D allows, an establish would have been refused.
  EXPECT_EQ(p.counters().contexts_established, k);
  EXPECT_EQ(p.counters().cache_evictions, k - max_cached_contexts);
  EXPECT_EQ(conn.released_with_establish.size(), k - max_cached_contexts);
  EXPECT_EQ(conn.epoch(), 1u) << "one connection throughout";
  // The last 2,000 are cached: they come back without an establish.
  for (std::uint32_t i = k - max_cached_contexts; i < k; ++i) ASSERT_TRUE(call_as(be(), p, i));
  EXPECT_EQ(p.counters().cache_hits, max_cached_contexts);
  // A Zipf mix over the ten thousand: most calls hit, every one is verified.
  population_sampler who(k, popularity::zipf(1.0), 19);
  proxy_counters before = p.counters();
  std::uint32_t previous = k - 1;
  std::uint64_t changes = 0;
  for (int call = 0; call < 10000; ++call) {
    std::uint32_t i = who.next();
    changes += i != previous;  // the same client twice running keeps its context: no lookup
    previous = i;
    ASSERT_TRUE(call_as(be(), p, i));
  }
  const proxy_counters& n = p.counters();
  std::uint64_t hits = n.cache_hits - before.cache_hits;
  std::uint64_t misses = n.cache_misses - before.cache_misses;
  EXPECT_EQ(hits + misses, changes);
  EXPECT_GT(hits, misses) << "2,000 of 10,000 Zipf(1) clients take most of the calls";
  EXPECT_EQ(n.contexts_established - before.contexts_established, misses);
}

TEST_P(proxy_cache, d_refuses_context_2001_on_a_connection_whose_contexts_no_one_evicts) {
  // A full lru:2000 proxy holds D's whole allowance; a second proxy on the same connection (not
  // evicting the first one's contexts) asks for context 2,001 and is refused, without harm.
  auto conn = connect(kind());
  proxy full(be(), *conn, {}, lru(max_cached_contexts));
  full.set_blanket(blanket_of(cloaking::dynamic));
  for (std::uint32_t i = 0; i < max_cached_contexts; ++i) ASSERT_TRUE(call_as(be(), full, i));
  proxy other(be(), *conn, {}, lru(4));
  other.set_blanket(blanket_of(cloaking::dynamic));
  {
    impersonation as(be(), make_token(person(max_cached_contexts)));
    call_result r = other.call(payload);
    EXPECT_EQ(r.error, call_error::refused);
    EXPECT_EQ(r.view.server_status, protocol::status::too_many_contexts);
  }
  EXPECT_TRUE(call_as(be(), full, 0)) << "the connection and its contexts live on";
  EXPECT_EQ(full.counters().cache_hits, 1u);
}

using population_downstream = leak_checked_test;

TEST_F(population_downstream, serves_ten_thousand_clients_and_leaves_no_probe_file_behind) {
  if (const auto& why = kernel_unavailable()) GTEST_SKIP() << *why;
  downstream_config config = client_downstream_config();
  config.clients = client_range{100000, 100000, 10000};
  config.ready_timeout = std::chrono::seconds(60);  // 10,000 ids checked, 10,000 files made
  // On tmpfs where there is one: a loaded disk here takes milliseconds per file created.
  std::string shm_dir;
  if (std::filesystem::is_directory("/dev/shm")) {
    char pattern[] = "/dev/shm/cloak-population-XXXXXX";
    if (::mkdtemp(pattern)) shm_dir = config.run_dir = pattern;
  }
  struct remove_dir {
    std::string path;
    ~remove_dir() {
      std::error_code ignored;
      if (!path.empty()) std::filesystem::remove_all(path, ignored);
    }
  } cleanup{shm_dir};
  auto started = std::chrono::steady_clock::now();
  downstream_process server(config);
  auto took = std::chrono::steady_clock::now() - started;
  std::string access = server.run_dir() + "/access";
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& f : std::filesystem::directory_iterator(access)) ++files;
  EXPECT_EQ(files, 10001u) << "one probe file per client, and P's";
  auto conn = connect_to(server);
  proxy p(backend(backend_kind::kernel), *conn, {}, lru(16));
  p.set_blanket(blanket_of(cloaking::dynamic));
  access_outcome own;
  {
    impersonation as(backend(backend_kind::kernel), make_token(person(9999)));
    ASSERT_TRUE(p.access_check(person(9999).uid, own).ok());
  }
  EXPECT_TRUE(own.granted) << "the last client reads its own probe file";
  server.stop();
  EXPECT_FALSE(std::filesystem::exists(access)) << "nothing per identity left on disk";
  std::printf("a downstream for 10,000 clients was ready in %.1f s\n",
              std::chrono::duration<double>(took).count());
}

INSTANTIATE_TEST_SUITE_P(backends, proxy_cache,
                         ::testing::Values(backend_kind::kernel, backend_kind::model),
                         backend_name);

TEST(context_cache_policy, lru_is_allowed_up_to_the_context_limit_and_refused_above_it) {
  EXPECT_EQ(parse_context_cache_policy("lru:2000").lru_capacity, 2000u);
  EXPECT_EQ(parse_context_cache_policy("lru:65").lru_capacity, 65u);
  try {
    parse_context_cache_policy("lru:2001");
    ADD_FAILURE() << "lru:2001 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("1..2000"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cloak::test
