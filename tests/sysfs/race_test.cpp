// The confinement race of issue 14: a directory under root exchanged with a
// symlink to a directory outside, in a loop, while reads and writes go on.
// realpath-then-open by name followed the link in about 5% of the calls; the
// open beneath root's fd must never reach the outside file, with openat2 and
// with the O_PATH component walk alike. Bounded by a call count and a time cap.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "attr_io.hpp"
#include "tree.hpp"

using namespace hostlet::sysfs;
using hostlet::sysfs::test::Tree;

namespace {

struct Exchanger {
  std::atomic<bool> stop{false};
  std::atomic<long> swaps{0};
  std::thread thread;
  Exchanger(const std::string& a, const std::string& b) {
    thread = std::thread([this, a, b] {
      while (!stop.load()) {
        if (::syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) swaps++;
      }
    });
  }
  ~Exchanger() {
    stop = true;
    thread.join();
  }
};

struct Counts {
  int inside = 0, outside = 0, refused = 0;
};

void run_race(bool walk) {
  Tree t, outside;
  outside.file("d/value", "outside\n");
  t.file("d/value", "inside\n");
  t.link(outside / "d", "swap");  // exchanged with "d" all the time
  PathPolicy::force_component_walk(walk);
  PathPolicy p;
  REQUIRE(PathPolicy::make(t.path(), {"d/value"}, {}, &p).ok());

  Counts reads, writes;
  {
    Exchanger ex(t / "d", t / "swap");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (int i = 0; i < 3000 && std::chrono::steady_clock::now() < deadline; i++) {
      Value v = read_attr(p, "d/value", 4096);
      if (!v.status.ok()) reads.refused++;
      else if (v.value == "inside") reads.inside++;
      else reads.outside++;
      Value w = write_attr(p, "d/value", "inside", 4096);
      if (w.status.ok()) writes.inside++;
      else writes.refused++;
    }
    INFO("exchanges: " << ex.swaps.load());
    CHECK(ex.swaps.load() > 0);
  }
  PathPolicy::force_component_walk(false);
  INFO("reads inside/outside/refused " << reads.inside << "/" << reads.outside << "/" << reads.refused);
  CHECK(reads.outside == 0);
  CHECK(reads.inside > 0);
  CHECK(outside.read("d/value") == "outside\n");  // no write reached it
  CHECK(writes.inside > 0);
}

}  // namespace

TEST_CASE("sysfs race: a directory exchanged with a link out of root is never followed (openat2)", "[sysfs][race]") {
  run_race(false);
}

TEST_CASE("sysfs race: the same holds for the O_PATH component walk", "[sysfs][race]") { run_race(true); }

TEST_CASE("sysfs open_beneath: a symlink that appears after resolution is refused, with both methods",
          "[sysfs][race]") {
  for (bool walk : {false, true}) {
    Tree t, outside;
    outside.file("d/value", "outside\n");
    t.file("d/value", "inside\n");
    PathPolicy::force_component_walk(walk);
    PathPolicy p;
    REQUIRE(PathPolicy::make(t.path(), {}, {}, &p).ok());
    std::string real, real_rel;
    REQUIRE(p.resolve("d/value", &real, &real_rel).ok());
    // The swap happens between resolve and open.
    REQUIRE(::rename((t / "d").c_str(), (t / "old").c_str()) == 0);
    t.link(outside / "d", "d");
    Fd fd;
    Status s = p.open_beneath(real_rel, O_RDONLY, "d/value", &fd.fd);
    PathPolicy::force_component_walk(false);
    INFO("walk " << walk << ": " << s.message);
    CHECK(s.err == -EACCES);
    CHECK(s.message.find("changed while it was opened") != std::string::npos);
    CHECK(fd.fd < 0);
  }
}
