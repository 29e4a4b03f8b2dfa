// End to end on the real kernel: the agent with the uevent and sysfs
// plugins, driven through hostlet-ctl. Needs root (veth pairs, writes to
// /sys/.../uevent, netlink multicast); skipped with a warning otherwise.
#include <dirent.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>

#include "events.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

const char* kNullUevent = "/sys/devices/virtual/mem/null/uevent";

bool is_root() {
  if (geteuid() == 0) return true;
  WARN("not root: kernel test skipped");
  return false;
}

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

uint64_t stat_of(Agent& a, const std::string& instance, const std::string& key) {
  json r = ctl_json(a, {"call", instance + ".stats"});
  REQUIRE(r["ok"] == true);
  return std::stoull(r["attrs"][key].get<std::string>());
}

std::string random_uuid() {
  std::random_device rd;
  std::mt19937_64 rng(rd());
  const char* hex = "0123456789abcdef";
  std::string u;
  for (int i = 0; i < 32; i++) {
    if (i == 8 || i == 12 || i == 16 || i == 20) u += '-';
    u += hex[rng() % 16];
  }
  return u;
}

bool trigger(int fd, const std::string& text) {
  return ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

std::string sysfs_value(const std::string& path) {
  std::string v = read_file(path);
  if (!v.empty() && v.back() == '\n') v.pop_back();
  return v;
}

// Test interfaces are named hlt<pid>x<n> / hlu<pid>x<n> (hex, <= 15 chars):
// unique per test process, and recognizable as leftovers of a dead one.
// The pid in a test interface name "hl[tu]<hex pid>x<hex n>", or 0.
pid_t test_veth_pid(const std::string& name) {
  auto hex = [](const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string::npos; };
  if (name.size() < 6 || name.compare(0, 2, "hl") != 0 || (name[2] != 't' && name[2] != 'u')) return 0;
  size_t x = name.find('x', 3);
  if (x == std::string::npos || !hex(name.substr(3, x - 3)) || !hex(name.substr(x + 1))) return 0;
  return static_cast<pid_t>(std::stoul(name.substr(3, x - 3), nullptr, 16));
}

void delete_stale_veths() {
  DIR* d = ::opendir("/sys/class/net");
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    pid_t pid = test_veth_pid(e->d_name);
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(e->d_name);
  }
  ::closedir(d);
  for (const auto& n : stale) run({"/usr/sbin/ip", "link", "del", n});
}

// A veth pair created by the test and always deleted, also when a REQUIRE fails.
class Veth {
 public:
  Veth() {
    static int n = 0;
    char id[32];
    std::snprintf(id, sizeof id, "%xx%x", static_cast<unsigned>(getpid()), n++);
    prefix_ = "hlt" + std::string(id);
    a_ = prefix_;
    b_ = "hlu" + std::string(id);
  }
  ~Veth() {
    if (created_) run({"/usr/sbin/ip", "link", "del", a_});
  }
  Veth(const Veth&) = delete;
  Veth& operator=(const Veth&) = delete;
  void create() {
    Run r = run({"/usr/sbin/ip", "link", "add", a_, "type", "veth", "peer", "name", b_});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    created_ = true;
  }
  const std::string& name() const { return a_; }
  const std::string& peer() const { return b_; }

 private:
  std::string prefix_, a_, b_;
  bool created_ = false;
};

}  // namespace

TEST_CASE("uevent e2e: the plugin publishes the kernel's change event for /dev/null", "[uevent][e2e][kernel]") {
  if (!is_root()) return;
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\"}\n"
               "plugins:\n"
               "  - {name: uevent, plugin: uevent}\n"
               "  - {name: netonly, plugin: uevent, config: {subsystems: [net]}}\n");
  REQUIRE(a.start());
  EventStream changes(a, "change");
  uint64_t filtered = stat_of(a, "netonly", "filtered");

  std::string uuid = random_uuid();
  int fd = ::open(kNullUevent, O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(trigger(fd, "change " + uuid));
  ::close(fd);

  auto ev = changes.wait_for([&](const json& e) { return e["attrs"].value("SYNTH_UUID", "") == uuid; });
  REQUIRE(ev);
  CHECK((*ev)["source"] == "uevent");
  CHECK((*ev)["type"] == "change");
  CHECK((*ev)["attrs"]["ACTION"] == "change");
  CHECK((*ev)["attrs"]["DEVPATH"] == "/devices/virtual/mem/null");
  CHECK((*ev)["attrs"]["SUBSYSTEM"] == "mem");
  CHECK((*ev)["attrs"]["DEVNAME"] == "null");
  CHECK((*ev)["attrs"].contains("SEQNUM"));
  // The filtered instance saw it too, and dropped it.
  CHECK(wait_until([&] { return stat_of(a, "netonly", "filtered") > filtered; }));
  for (auto& e : changes.events()) CHECK(e["source"] == "uevent");
  stop_clean(a);
}

TEST_CASE("uevent e2e: a rule sets the MTU of a veth created by the test", "[uevent][e2e][kernel]") {
  if (!is_root()) return;
  delete_stale_veths();
  Veth veth;
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
               "plugins:\n"
               "  - {name: sys, plugin: sysfs, config: {writable: [\"class/net/*/mtu\"]}}\n"
               "  - {name: uevent, plugin: uevent, config: {subsystems: [net]}}\n"
               "rules:\n"
               "  - on: {source: uevent, type: add, attrs: {SUBSYSTEM: net, INTERFACE: \"" + veth.name() + "\"}}\n"
               "    do: sys.write\n"
               "    with: {path: \"/sys/class/net/${INTERFACE}/mtu\", value: \"9000\"}\n"
               "  - on: {source: uevent, type: add, attrs: {SUBSYSTEM: net, INTERFACE: \"" + veth.peer() + "\"}}\n"
               "    do: sys.write\n"
               "    with: {path: \"/sys/class/net/${INTERFACE}/mtu\", value: \"abc\"}\n");
  REQUIRE(a.start());
  EventStream results(a, "action.*");
  veth.create();

  std::string mtu = "/sys/class/net/" + veth.name() + "/mtu";
  CHECK(wait_until([&] { return sysfs_value(mtu) == "9000"; }));
  CHECK(sysfs_value(mtu) == "9000");
  auto done = results.wait_for([](const json& e) { return e["type"] == "action.done"; });
  REQUIRE(done);
  CHECK((*done)["attrs"]["result.path"] == mtu);

  // The peer's rule writes garbage: the kernel's EINVAL is the action's error.
  auto failed = results.wait_for([](const json& e) { return e["type"] == "action.failed"; });
  REQUIRE(failed);
  CHECK((*failed)["attrs"]["error"] == "write /sys/class/net/" + veth.peer() + "/mtu: Invalid argument (EINVAL)");
  CHECK(sysfs_value("/sys/class/net/" + veth.peer() + "/mtu") == "1500");
  stop_clean(a);
}

TEST_CASE("uevent e2e: a bad MTU surfaces the kernel's EINVAL as the action's error", "[uevent][e2e][kernel]") {
  if (!is_root()) return;
  delete_stale_veths();
  Veth veth;
  veth.create();
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\"}\n"
               "plugins:\n"
               "  - {name: sys, plugin: sysfs, config: {writable: [\"class/net/*/mtu\"]}}\n");
  REQUIRE(a.start());
  std::string path = "/sys/class/net/" + veth.name() + "/mtu";
  for (const char* bad : {"70000", "abc", "-1"}) {
    json r = ctl_json(a, {"call", "sys.write", "path=" + path, std::string("value=") + bad});
    CHECK(r["ok"] == false);
    CHECK(r["error"] == "write " + path + ": Invalid argument (EINVAL)");
  }
  Run human = a.ctl({"call", "sys.write", "path=" + path, "value=70000"});
  CHECK(human.exit_code == 1);
  CHECK(human.err.find("Invalid argument (EINVAL)") != std::string::npos);

  json ok = ctl_json(a, {"call", "sys.write", "path=" + path, "value=1280"});
  CHECK(ok["ok"] == true);
  CHECK(sysfs_value(path) == "1280");
  CHECK(ctl_json(a, {"call", "sys.read", "path=" + path})["attrs"]["value"] == "1280");
  json refused = ctl_json(a, {"call", "sys.write", "path=/sys/class/net/" + veth.name() + "/ifalias", "value=x"});
  CHECK(refused["error"] == "write /sys/class/net/" + veth.name() + "/ifalias: not writable (matches no `writable` glob)");
  stop_clean(a);
}

TEST_CASE("uevent e2e: a flood of 10k change uevents arrives complete, or the loss is reported",
          "[uevent][e2e][kernel]") {
  if (!is_root()) return;
  // The default 4 MiB buffer with a running agent normally keeps up. A tiny
  // buffer while the agent is stopped (SIGSTOP: a stalled loop) makes the loss
  // path run for sure: ENOBUFS, uevent.overflow, uevent.lost.
  bool stall = GENERATE(false, true);
  std::string rcvbuf = stall ? "4096" : "4MiB";
  INFO("rcvbuf " << rcvbuf << (stall ? ", agent stopped during the flood" : ""));
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\"}\n"
               "plugins:\n"
               "  - {name: uevent, plugin: uevent, config: {subsystems: [mem], rcvbuf: " + rcvbuf + "}}\n");
  REQUIRE(a.start());
  EventStream losses(a, "uevent.*");
  // A first marker, so that last_seqnum is known before the flood.
  std::string uuid0 = random_uuid();
  int fd = ::open(kNullUevent, O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  {
    EventStream marker(a, "change");
    REQUIRE(trigger(fd, "change " + uuid0));
    REQUIRE(marker.wait_for([&](const json& e) { return e["attrs"].value("SYNTH_UUID", "") == uuid0; }));
  }
  auto counters = [&] {
    json r = ctl_json(a, {"call", "uevent.stats"});
    std::map<std::string, uint64_t> m;
    for (auto& [k, v] : r["attrs"].items())
      if (!v.get<std::string>().empty() && k.find('.') == std::string::npos) m[k] = std::stoull(v.get<std::string>());
    return m;
  };
  auto before = counters();

  const int n = 10000;
  if (stall) a.process().signal(SIGSTOP);
  for (int i = 0; i < n; i++) REQUIRE(trigger(fd, "change"));
  if (stall) a.process().signal(SIGCONT);
  // A marker after the flood: once it is in, every gap before it is known.
  std::string uuid = random_uuid();
  EventStream marker(a, "change");
  REQUIRE(trigger(fd, "change " + uuid));
  ::close(fd);
  // With a tiny buffer the marker itself may be lost: send more until one arrives.
  bool in = marker.wait_for([&](const json& e) { return e["attrs"].value("SYNTH_UUID", "") == uuid; }, 20s).has_value();
  for (int i = 0; !in && i < 50; i++) {
    int f = ::open(kNullUevent, O_WRONLY | O_CLOEXEC);
    REQUIRE(trigger(f, "change " + uuid));
    ::close(f);
    in = marker.wait_for([&](const json& e) { return e["attrs"].value("SYNTH_UUID", "") == uuid; }, 1s).has_value();
  }
  REQUIRE(in);

  auto after = counters();
  auto d = [&](const char* k) { return after[k] - before[k]; };
  uint64_t published = d("published"), dropped = d("dropped"), lost = d("lost"), filtered = d("filtered");
  uint64_t overflows = d("overflows"), span = d("last_seqnum");
  INFO("published " << published << " filtered " << filtered << " dropped " << dropped << " lost " << lost
                    << " overflows " << overflows << " seqnum span " << span);
  CHECK(d("malformed") == 0);
  CHECK(after["reordered"] == 0);
  // Every SEQNUM between the markers is accounted for: delivered, filtered, refused by a
  // full bus (counted), or reported lost.
  CHECK(span == published + filtered + dropped + lost);
  CHECK(published + dropped + lost >= static_cast<uint64_t>(n) + 1);
  if (stall) CHECK(overflows > 0);
  if (overflows > 0) {
    CHECK(lost > 0);
    auto ov = losses.wait_for([](const json& e) { return e["type"] == "uevent.overflow"; });
    REQUIRE(ov);
    auto gap = losses.wait_for([](const json& e) { return e["type"] == "uevent.lost"; });
    REQUIRE(gap);
    uint64_t from = std::stoull((*gap)["attrs"]["from"].get<std::string>());
    uint64_t to = std::stoull((*gap)["attrs"]["to"].get<std::string>());
    CHECK((*gap)["attrs"]["count"] == std::to_string(to - from + 1));
  } else {
    CHECK(lost == 0);
    CHECK(published + dropped >= static_cast<uint64_t>(n) + 1);
  }
  if (stall) {
    // The plugin keeps reading after an overflow (the socket reports POLLERR,
    // which stops a libuv poll handle unless the plugin re-arms it): a second
    // stalled flood is reported as a second overflow, and a marker arrives.
    a.process().signal(SIGSTOP);
    int f = ::open(kNullUevent, O_WRONLY | O_CLOEXEC);
    REQUIRE(f >= 0);
    for (int i = 0; i < 1000; i++) REQUIRE(trigger(f, "change"));
    a.process().signal(SIGCONT);
    std::string uuid2 = random_uuid();
    bool in2 = false;
    for (int i = 0; !in2 && i < 20; i++) {
      REQUIRE(trigger(f, "change " + uuid2));
      in2 = marker.wait_for([&](const json& e) { return e["attrs"].value("SYNTH_UUID", "") == uuid2; }, 1s).has_value();
    }
    ::close(f);
    REQUIRE(in2);
    CHECK(counters()["overflows"] - before["overflows"] == 2);
  }
  WARN("flood of " << n << " with rcvbuf " << rcvbuf << ": published " << published << ", dropped " << dropped
                   << ", lost " << lost << ", overflows " << overflows);
  stop_clean(a);
}

TEST_CASE("uevent e2e: a uevent sent from user space is dropped as spoofed", "[uevent][e2e][kernel]") {
  if (!is_root()) return;
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\"}\n"
               "plugins:\n"
               "  - {name: uevent, plugin: uevent}\n");
  REQUIRE(a.start());
  EventStream changes(a, "change");
  uint64_t spoofed0 = stat_of(a, "uevent", "spoofed");

  std::string fake_uuid = random_uuid();
  int tx = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  REQUIRE(tx >= 0);
  sockaddr_nl dst{};
  dst.nl_family = AF_NETLINK;
  dst.nl_groups = 1;
  std::string fake = "change@/devices/virtual/mem/null\0ACTION=change\0DEVPATH=/devices/virtual/mem/null\0"
                     "SUBSYSTEM=mem\0SYNTH_UUID="s + fake_uuid + "\0SEQNUM=1\0"s;
  REQUIRE(::sendto(tx, fake.data(), fake.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) ==
          static_cast<ssize_t>(fake.size()));
  ::close(tx);
  REQUIRE(wait_until([&] { return stat_of(a, "uevent", "spoofed") > spoofed0; }));

  // A real one afterwards arrives; the fake never did.
  std::string uuid = random_uuid();
  int fd = ::open(kNullUevent, O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(trigger(fd, "change " + uuid));
  ::close(fd);
  REQUIRE(changes.wait_for([&](const json& e) { return e["attrs"].value("SYNTH_UUID", "") == uuid; }));
  for (auto& e : changes.events()) CHECK(e["attrs"].value("SYNTH_UUID", "") != fake_uuid);
  CHECK(stat_of(a, "uevent", "lost") == 0);  // the fake SEQNUM=1 did not disturb gap tracking
  CHECK(a.log().find("dropped a uevent from nl_pid") != std::string::npos);
  stop_clean(a);
}

TEST_CASE("uevent e2e: sysfs re-expands its watch globs on uevents", "[uevent][sysfs][e2e][kernel]") {
  if (!is_root()) return;
  delete_stale_veths();
  Veth veth;
  TempDir dir;
  // An hour between interval scans: the new interface is found through the uevent.
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
               "plugins:\n"
               "  - {name: uevent, plugin: uevent, config: {subsystems: [net]}}\n"
               "  - name: sys\n"
               "    plugin: sysfs\n"
               "    config: {watches: [\"class/net/" + veth.name() + "/mtu\"], watch_interval: 1h, "
               "rescan_source: uevent}\n");
  REQUIRE(a.start());
  REQUIRE(wait_until([&] { return ctl_json(a, {"call", "sys.watched"}).contains("attrs"); }));
  CHECK(ctl_json(a, {"call", "sys.watched"})["attrs"]["count"] == "0");
  veth.create();
  REQUIRE(wait_until([&] { return ctl_json(a, {"call", "sys.watched"})["attrs"]["count"] == "1"; }, 5s));
  json w = ctl_json(a, {"call", "sys.watched"});
  CHECK(w["data"][0]["path"] == "/sys/class/net/" + veth.name() + "/mtu");
  CHECK(w["data"][0]["value"] == "1500");
  stop_clean(a);
}
