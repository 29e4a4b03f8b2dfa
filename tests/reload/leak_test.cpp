// 1000 reloads in a loop leave no file descriptors, no mapped plugin images
// and no memory behind: measured after a warm-up and at the end.
#include <cstdio>
#include <cstdlib>

#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace reload_test;

namespace {

// Private copies of plugins are memory files: "/memfd:hostlet-plugin:NAME (deleted)" in the maps.
const char kCopies[] = "memfd:hostlet-plugin:";

#if defined(__SANITIZE_ADDRESS__)
constexpr long kRssBoundKib = 256 * 1024;  // shadow memory and the allocator's quarantine
#elif defined(__SANITIZE_THREAD__)
constexpr long kRssBoundKib = 256 * 1024;
#else
constexpr long kRssBoundKib = 24 * 1024;
#endif

struct Sample {
  size_t fds, map_lines, images;
  long rss_kib;
};

Sample sample(pid_t pid) {
  return {open_fds(pid), mapping_lines(pid, kCopies), mapped_files(pid, kCopies), rss_kib(pid)};
}

}  // namespace

TEST_CASE("reload: 1000 reloads leave no fds, no mapped images and no memory behind", "[reload][leak]") {
#if defined(__SANITIZE_ADDRESS__)
  // Keep ASan's quarantine of freed memory small in the agent so that RSS says something.
  const char* o = getenv("ASAN_OPTIONS");
  setenv("ASAN_OPTIONS", ((o && *o ? std::string(o) + ":" : std::string()) + "quarantine_size_mb=16").c_str(), 1);
#endif
  WorkerAgent wa;
  Agent& a = wa.agent;
  REQUIRE(start(a));
  const std::string v[2] = {hostlet::test::read_file(fixture("worker_v1")),
                            hostlet::test::read_file(fixture("worker_v2"))};
  const pid_t pid = a.process().pid();
  LineClient c(a.control_socket());

  int failures = 0;
  std::string first_failure;
  auto reloads = [&](int from, int to) {
    for (int i = from; i < to; i++) {
      install_bytes(v[i % 2], wa.so);  // odd: v2, even: v1
      json r = request(c, json{{"id", i}, {"cmd", "reload"}, {"name", "w"}});
      if (!r.value("ok", false) || r["id"] != i) {
        if (failures++ == 0) first_failure = r.dump();
      }
    }
  };

  constexpr int kWarmup = 50, kTotal = 1000;
  reloads(1, kWarmup + 1);
  const Sample warm = sample(pid);
  reloads(kWarmup + 1, kTotal + 1);
  const Sample end = sample(pid);
  std::printf("1000 reloads: fds %zu -> %zu, plugin mappings %zu -> %zu (images %zu -> %zu), VmRSS %ld -> %ld KiB\n",
              warm.fds, end.fds, warm.map_lines, end.map_lines, warm.images, end.images, warm.rss_kib, end.rss_kib);

  INFO("first failure: " << first_failure);
  CHECK(failures == 0);
  CHECK(end.fds <= warm.fds);
  CHECK(warm.images == 1);  // the one loaded copy (and the pattern does match it)
  CHECK(end.images == 1);
  CHECK(end.map_lines <= warm.map_lines);
  CHECK(end.rss_kib - warm.rss_kib < kRssBoundKib);
  CHECK(ctl_json(a, {"stats"})["data"]["plugins_still_mapped_after_unload"] == 0);
  CHECK(version(a, "w") == "1");  // the last one installed, i = 1000
  CHECK(loads(a, "w") == kTotal + 1);
  CHECK(reload_status(a).value("done", 0) == kTotal);
  CHECK(stops_cleanly(a));
}
