// End to end: the real agent with the sysfs plugin, driven through hostlet-ctl.
// A temporary tree stands in for /sys (read, write, list, refusals, a watch
// by interval); a cgroup2 `cgroup.events` file, which the kernel wakes with
// kernfs_notify, exercises the POLLPRI path on the real /sys.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>

#include "events.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

json ctl_json(Agent& a, std::vector<std::string> args) {
  args.insert(args.begin(), "--json");
  Run r = a.ctl(args);
  INFO("hostlet-ctl " << args[1] << " exit " << r.exit_code << " stderr: " << r.err << " stdout: " << r.out);
  json j = json::parse(r.out, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

// Stops the agent with SIGTERM and checks it exited 0 with a clean log
// (no sanitizer report, no unclean loop close).
void stop_clean(Agent& a) {
  auto code = a.stop();
  REQUIRE(code);
  std::string log = a.log();
  INFO(log);
  CHECK(WIFEXITED(*code));
  CHECK(WEXITSTATUS(*code) == 0);
  CHECK(log.find("Sanitizer") == std::string::npos);
  CHECK(log.find("runtime error") == std::string::npos);
  CHECK(log.find("loop did not close cleanly") == std::string::npos);
}

// Replaces a file at once (write + rename), so an interval read never sees it half written.
void replace_file(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << content;
  }
  REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0);
}

// Writes in place (cgroup files, where rename is meaningless).
void write_file(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << content;
}

// A miniature /sys under DIR/tree.
void make_tree(TempDir& dir, TempDir& outside) {
  dir.write("tree/devices/virtual/net/hl0/mtu", "1500\n");
  dir.write("tree/devices/virtual/net/hl0/operstate", "up\n");
  dir.write("tree/devices/virtual/net/hl1/mtu", "9000\n");
  outside.write("secret", "s3cret\n");
  ::mkdir((dir / "tree/class").c_str(), 0755);
  ::mkdir((dir / "tree/class/net").c_str(), 0755);
  REQUIRE(::symlink("../../devices/virtual/net/hl0", (dir / "tree/class/net/hl0").c_str()) == 0);
  REQUIRE(::symlink("../../devices/virtual/net/hl1", (dir / "tree/class/net/hl1").c_str()) == 0);
  REQUIRE(::symlink(outside.path().c_str(), (dir / "tree/class/net/evil").c_str()) == 0);
}

}  // namespace

TEST_CASE("sysfs e2e: read, write, list and refusals on a temporary tree", "[sysfs][e2e]") {
  TempDir dir, outside;
  make_tree(dir, outside);
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
               "plugins:\n"
               "  - name: sys\n"
               "    plugin: sysfs\n"
               "    config: {root: \"@DIR@/tree\", writable: [\"class/net/*/mtu\"], max_value: 16}\n");
  REQUIRE(a.start());
  std::string root = dir / "tree";

  json r = ctl_json(a, {"call", "sys.read", "path=" + root + "/class/net/hl0/mtu"});
  CHECK(r["ok"] == true);
  CHECK(r["attrs"] == json{{"path", root + "/class/net/hl0/mtu"}, {"value", "1500"}});
  CHECK(ctl_json(a, {"call", "sys.read", "path=class/net/hl0/operstate"})["attrs"]["value"] == "up");

  r = ctl_json(a, {"call", "sys.write", "path=class/net/hl0/mtu", "value=1280"});
  CHECK(r["ok"] == true);
  CHECK(read_file(root + "/devices/virtual/net/hl0/mtu") == "1280");

  r = ctl_json(a, {"call", "sys.list", "glob=" + root + "/class/net/*/mtu"});
  REQUIRE(r["ok"] == true);
  CHECK(r["attrs"]["count"] == "2");
  CHECK(r["data"] == json::array({{{"path", root + "/class/net/hl0/mtu"}, {"value", "1280"}},
                                  {{"path", root + "/class/net/hl1/mtu"}, {"value", "9000"}}}));

  r = ctl_json(a, {"call", "sys.write", "path=class/net/hl0/operstate", "value=down"});
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "write " + root + "/class/net/hl0/operstate: not writable (matches no `writable` glob)");
  CHECK(read_file(root + "/devices/virtual/net/hl0/operstate") == "up\n");

  r = ctl_json(a, {"call", "sys.read", "path=class/net/../../../../etc/passwd"});
  CHECK(r["error"] == "read: '..' is not allowed in path class/net/../../../../etc/passwd");
  r = ctl_json(a, {"call", "sys.read", "path=/etc/passwd"});
  CHECK(r["error"] == "read: path /etc/passwd is not under root " + root);
  r = ctl_json(a, {"call", "sys.read", "path=class/net/evil/secret"});
  CHECK(r["error"] == "read " + root + "/class/net/evil/secret resolves to " + outside.path() +
                          "/secret, outside root " + root);

  r = ctl_json(a, {"call", "sys.write", "path=class/net/hl1/mtu", "value=12345678901234567"});
  CHECK(r["error"] == "write " + root + "/class/net/hl1/mtu: value of 17 bytes exceeds max_value (16 bytes)");
  CHECK(read_file(root + "/devices/virtual/net/hl1/mtu") == "9000\n");

  r = ctl_json(a, {"call", "sys.read", "path=class/net/hl0/nope"});
  CHECK(r["error"] == "read " + root + "/class/net/hl0/nope: No such file or directory (ENOENT)");
  r = ctl_json(a, {"call", "sys.read"});
  CHECK(r["error"] == "missing attribute 'path'");

  Run human = a.ctl({"call", "sys.read", "path=class/net/hl0/nope"});
  CHECK(human.exit_code == 1);
  CHECK(human.err.find("No such file or directory (ENOENT)") != std::string::npos);

  json st = ctl_json(a, {"stats"});
  INFO(st.dump());
  CHECK(a.log().find("[sys]") != std::string::npos);
  stop_clean(a);
}

TEST_CASE("sysfs e2e: a watch by interval publishes changed with the previous value", "[sysfs][e2e]") {
  TempDir dir, outside;
  make_tree(dir, outside);
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
               "plugins:\n"
               "  - name: sys\n"
               "    plugin: sysfs\n"
               "    config: {root: \"@DIR@/tree\", watches: [\"class/net/*/mtu\"], watch_interval: 100ms}\n");
  REQUIRE(a.start());
  std::string root = dir / "tree";
  EventStream changed(a, "changed");
  REQUIRE(wait_until([&] { return ctl_json(a, {"call", "sys.watched"})["attrs"]["count"] == "2"; }));
  json w = ctl_json(a, {"call", "sys.watched"});
  CHECK(w["data"][0] == json{{"path", root + "/class/net/hl0/mtu"}, {"value", "1500"}, {"notify", false}});

  replace_file(root + "/devices/virtual/net/hl0/mtu", "1400\n");
  auto ev = changed.wait_for([&](const json& e) { return e["attrs"]["path"] == root + "/class/net/hl0/mtu"; });
  REQUIRE(ev);
  CHECK((*ev)["source"] == "sys");
  CHECK((*ev)["attrs"] == json{{"path", root + "/class/net/hl0/mtu"}, {"value", "1400"}, {"previous", "1500"},
                                {"via", "interval"}});

  // A device appearing under the glob is picked up (silently), one going away is dropped.
  dir.write("tree/devices/virtual/net/hl2/mtu", "1500\n");
  REQUIRE(::symlink("../../devices/virtual/net/hl2", (root + "/class/net/hl2").c_str()) == 0);
  REQUIRE(wait_until([&] { return ctl_json(a, {"call", "sys.watched"})["attrs"]["count"] == "3"; }));
  ::unlink((root + "/class/net/hl1").c_str());
  REQUIRE(wait_until([&] { return ctl_json(a, {"call", "sys.watched"})["attrs"]["count"] == "2"; }));
  replace_file(root + "/devices/virtual/net/hl2/mtu", "1300\n");
  ev = changed.wait_for([&](const json& e) { return e["attrs"]["path"] == root + "/class/net/hl2/mtu"; });
  REQUIRE(ev);
  CHECK((*ev)["attrs"]["previous"] == "1500");
  CHECK((*ev)["attrs"]["value"] == "1300");
  CHECK(changed.events().size() == 2);  // no spurious events for appearing/disappearing attributes
  stop_clean(a);
}

namespace {

// A cgroup v2 directory of our own, removed (after its processes) on destruction.
class Cgroup {
 public:
  Cgroup() {
    std::ifstream mounts("/proc/mounts");
    std::string dev, mnt, type, rest;
    while (mounts >> dev >> mnt >> type && std::getline(mounts, rest))
      if (type == "cgroup2" && mnt.rfind("/sys/", 0) == 0) base_ = mnt;
    if (base_.empty()) return;
    std::random_device rd;
    path_ = base_ + "/hostlet-test-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 100000);
    if (::mkdir(path_.c_str(), 0755) != 0) path_.clear();
  }
  ~Cgroup() {
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, nullptr, 0);
    }
    if (!path_.empty()) wait_until([&] { return ::rmdir(path_.c_str()) == 0; }, 5s);
  }
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  // Starts a process and moves it into the cgroup: cgroup.events goes to "populated 1".
  void populate() {
    child_ = fork();
    if (child_ == 0) {
      pause();
      _exit(0);
    }
    write_file(path_ + "/cgroup.procs", std::to_string(child_));
  }
  void empty() {
    ::kill(child_, SIGKILL);
    ::waitpid(child_, nullptr, 0);
    child_ = -1;
  }

 private:
  std::string base_, path_;
  pid_t child_ = -1;
};

}  // namespace

TEST_CASE("sysfs e2e: POLLPRI on an attribute the kernel notifies delivers the change at once",
          "[sysfs][e2e][kernel]") {
  if (geteuid() != 0) {
    WARN("not root: skipped");
    return;
  }
  Cgroup cg;
  if (!cg.ok()) {
    WARN("no cgroup2 mount under /sys: skipped");
    return;
  }
  TempDir dir;
  // An hour between interval reads: a change seen within seconds came through POLLPRI.
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
               "plugins:\n"
               "  - name: sys\n"
               "    plugin: sysfs\n"
               "    config: {watches: [\"" + cg.path() + "/cgroup.events\"], watch_interval: 1h}\n");
  REQUIRE(a.start());
  EventStream changed(a, "changed");
  REQUIRE(wait_until([&] { return ctl_json(a, {"call", "sys.watched"})["attrs"]["count"] == "1"; }));
  json w = ctl_json(a, {"call", "sys.watched"});
  CHECK(w["data"][0]["notify"] == true);
  CHECK(w["data"][0]["value"] == "populated 0\nfrozen 0");

  cg.populate();
  auto ev = changed.wait_for([](const json& e) { return e["attrs"]["value"] == "populated 1\nfrozen 0"; }, 5s);
  REQUIRE(ev);
  CHECK((*ev)["attrs"]["via"] == "notify");
  CHECK((*ev)["attrs"]["previous"] == "populated 0\nfrozen 0");
  CHECK((*ev)["attrs"]["path"] == cg.path() + "/cgroup.events");

  cg.empty();  // and back: the watch was re-armed by the read
  ev = changed.wait_for([](const json& e) { return e["attrs"]["value"] == "populated 0\nfrozen 0"; }, 5s);
  REQUIRE(ev);
  CHECK((*ev)["attrs"]["via"] == "notify");
  stop_clean(a);
}
