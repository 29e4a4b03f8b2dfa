// The libvirt plugin end to end: the real hostlet with `plugin: libvirt`, a
// private libvirtd (or libvirt's in-process test driver), driven with the
// real hostlet-ctl and over the real control socket.
#include <catch2/catch.hpp>

#include "libvirtd.hpp"
#include "support.hpp"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

namespace t = hostlet::test;
using json = nlohmann::json;
using namespace std::chrono;

namespace {

void quiet(void*, virErrorPtr) {}
const bool silenced = (virSetErrorFunc(nullptr, quiet), true);
// meson test points LD_LIBRARY_PATH at the build tree; the agent must find
// the bridge through the plugin's own rpath, as when installed.
const bool own_rpath = (unsetenv("LD_LIBRARY_PATH"), true);

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// The sanitizers intercept the xdr functions and resolve them when the process
// starts; an agent that gets libtirpc only later, through the plugin's dlopen
// of libvirt, jumps to address 0 in virNetMessageEncodeHeader on its first
// remote call. Preload libtirpc into the agent under a sanitizer. And
// libvirt's one-time OpenSSL initialisation is not ours to free (lsan.supp);
// TSan gets the suppressions of tsan.supp.
void add_option(const char* var, const std::string& opt) {
  const char* o = getenv(var);
  setenv(var, (o && *o ? std::string(o) + ":" + opt : opt).c_str(), 1);
}
const bool tirpc_preloaded = [] {
  setenv("LD_PRELOAD", "libtirpc.so.3", 1);
  const char* src = getenv("HOSTLET_SOURCE_ROOT");
  const std::string dir = std::string(src ? src : ".") + "/tests/libvirt/";
#if defined(__SANITIZE_ADDRESS__)
  add_option("ASAN_OPTIONS", "verify_asan_link_order=0");
  add_option("LSAN_OPTIONS", "suppressions=" + dir + "lsan.supp");
#else
  add_option("TSAN_OPTIONS", "suppressions=" + dir + "tsan.supp");
#endif
  return true;
}();
#endif

std::string agent_config(const std::string& plugins) {
  return "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug, shutdown_timeout: 10s}\n"
         "plugins:\n" +
         plugins;
}

std::string virt_instance(const std::string& name, const std::string& uri, const std::string& extra = "") {
  return "  - {name: " + name + ", plugin: libvirt, config: {uri: \"" + uri + "\"" +
         (extra.empty() ? "" : ", " + extra) + "}}\n";
}

// `hostlet-ctl --json call ACTION args...` -> the answer.
json call(t::Agent& a, const std::string& action, std::vector<std::string> args = {},
          milliseconds timeout = seconds(30)) {
  std::vector<std::string> argv{"--json", "call", action};
  argv.insert(argv.end(), args.begin(), args.end());
  t::Run r = a.ctl(argv, timeout);
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded()) {
    INFO("hostlet-ctl exit " << r.exit_code << " out: " << r.out << " err: " << r.err);
    FAIL("unreadable answer for " << action);
  }
  return j;
}

std::string attr(const json& reply, const std::string& key) {
  if (!reply.contains("attrs") || !reply["attrs"].contains(key)) return "<absent>";
  return reply["attrs"][key].get<std::string>();
}

// `hostlet-ctl --json events [--type GLOB]`, read while it runs.
class EventStream {
 public:
  explicit EventStream(t::Agent& a, const std::string& glob = "") {
    std::vector<std::string> argv{t::env_path("HOSTLET_CTL"), "-s", a.control_socket(), "--json", "events"};
    if (!glob.empty()) argv.insert(argv.end(), {"--type", glob});
    proc_ = std::make_unique<t::Process>(argv);
    REQUIRE(t::wait_until([&] { return proc_->out().find("\"ok\":true") != std::string::npos; }));
  }
  ~EventStream() { proc_->stop(SIGINT, seconds(5)); }

  std::vector<json> events() const {
    std::vector<json> v;
    std::istringstream in(proc_->out());
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("event")) v.push_back(j["event"]);
    }
    return v;
  }
  // The first event (from `from` on) of `type` whose attrs contain `attrs`.
  std::optional<json> wait(const std::string& type, const std::map<std::string, std::string>& attrs = {},
                           milliseconds timeout = seconds(15), size_t from = 0) const {
    std::optional<json> found;
    t::wait_until(
        [&] {
          auto v = events();
          for (size_t i = from; i < v.size(); i++) {
            if (v[i]["type"] != type) continue;
            bool all = true;
            for (auto& [k, val] : attrs) all = all && v[i]["attrs"].value(k, std::string()) == val;
            if (all) {
              found = v[i];
              return true;
            }
          }
          return false;
        },
        timeout);
    return found;
  }
  size_t size() const { return events().size(); }

 private:
  std::unique_ptr<t::Process> proc_;
};

struct ConnClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
using Conn = std::unique_ptr<virConnect, ConnClose>;

// define, start, destroy and undefine a domain through another connection.
void churn(const std::string& uri, const std::string& name) {
  Conn c(virConnectOpen(uri.c_str()));
  REQUIRE(c);
  virDomainPtr d = virDomainDefineXML(c.get(), virt_test::domain_xml(name).c_str());
  REQUIRE(d);
  CHECK(virDomainCreate(d) == 0);
  CHECK(virDomainDestroy(d) == 0);
  CHECK(virDomainUndefine(d) == 0);
  virDomainFree(d);
}

void check_churn_events(const EventStream& s, const std::string& name) {
  for (auto [event, detail] : std::vector<std::pair<std::string, std::string>>{
           {"defined", "added"}, {"started", "booted"}, {"stopped", "destroyed"}, {"undefined", "removed"}}) {
    INFO("domain.lifecycle " << name << " " << event << "/" << detail);
    auto e = s.wait("domain.lifecycle", {{"name", name}, {"event", event}, {"detail", detail}});
    REQUIRE(e);
    CHECK((*e)["source"] == "virt");
    CHECK((*e)["attrs"]["uuid"].get<std::string>().size() == 36);
  }
}

// Calls sent back to back over the control socket, up to `depth` in flight.
class Load {
 public:
  Load(const std::string& socket, const std::string& action, int depth = 8) {
    th_ = std::thread([this, socket, action, depth] {
      t::LineClient c;
      if (!c.connect(socket)) return;
      int id = 0, in_flight = 0;
      while (!stop_) {
        while (in_flight < depth && !stop_) {
          c.send_line(json{{"id", ++id}, {"cmd", "call"}, {"action", action}}.dump());
          in_flight++;
        }
        auto line = c.recv_line(seconds(2));
        if (!line) continue;
        in_flight--;
        json r = json::parse(*line, nullptr, false);
        if (r.value("ok", false)) {
          ok_++;
        } else {
          failed_++;
          std::lock_guard lk(mu_);
          if (errors_.size() < 200) errors_.insert(r.value("error", std::string("?")));
          std::this_thread::sleep_for(milliseconds(1));
        }
      }
      while (in_flight > 0 && c.recv_line(seconds(10))) in_flight--;
    });
  }
  ~Load() { finish(); }
  void finish() {
    stop_ = true;
    if (th_.joinable()) th_.join();
  }
  int ok() const { return ok_; }
  int failed() const { return failed_; }
  std::set<std::string> errors() {
    std::lock_guard lk(mu_);
    return errors_;
  }

 private:
  std::thread th_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, failed_{0};
  std::mutex mu_;
  std::set<std::string> errors_;
};

// Round trips of `status` over the control socket: how long the loop takes to answer.
class Pinger {
 public:
  explicit Pinger(const std::string& socket) {
    th_ = std::thread([this, socket] {
      t::LineClient c;
      if (!c.connect(socket)) return;
      while (!stop_) {
        auto t0 = steady_clock::now();
        c.send_line(R"({"id":1,"cmd":"status"})");
        if (!c.recv_line(seconds(5))) {
          max_us_ = 5000000;
          return;
        }
        auto us = duration_cast<microseconds>(steady_clock::now() - t0).count();
        if (us > max_us_) max_us_ = us;
        n_++;
        std::this_thread::sleep_for(milliseconds(10));
      }
    });
  }
  ~Pinger() { finish(); }
  void finish() {
    stop_ = true;
    if (th_.joinable()) th_.join();
  }
  double max_ms() const { return static_cast<double>(max_us_) / 1000.0; }
  int samples() const { return n_; }

 private:
  std::thread th_;
  std::atomic<bool> stop_{false};
  std::atomic<long> max_us_{0};
  std::atomic<int> n_{0};
};

bool clean_exit(std::optional<int> st) { return st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0; }

}  // namespace

TEST_CASE("virt e2e: every action through the agent and a private libvirtd, with its events", "[e2e][daemon]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  t::Agent agent(dir, agent_config(virt_instance("virt", d.uri())));
  REQUIRE(agent.start());
  EventStream events(agent);
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));

  json r = call(agent, "virt.domain.list");
  REQUIRE(r["ok"] == true);
  REQUIRE(r["data"].is_array());
  CHECK(r["data"][0]["name"] == "test");
  CHECK(r["data"][0]["state"] == "running");

  const std::string name = "e2e-actions";
  r = call(agent, "virt.domain.define", {"xml=" + virt_test::domain_xml(name)});
  REQUIRE(r["ok"] == true);
  const std::string uuid = attr(r, "uuid");
  CHECK(attr(r, "name") == name);
  CHECK(attr(call(agent, "virt.domain.info", {"name=" + name}), "state") == "shutoff");
  r = call(agent, "virt.domain.start", {"uuid=" + uuid});
  REQUIRE(r["ok"] == true);
  CHECK(attr(r, "id") != "<absent>");
  REQUIRE(call(agent, "virt.domain.suspend", {"name=" + name})["ok"] == true);
  CHECK(attr(call(agent, "virt.domain.info", {"name=" + name}), "state") == "paused");
  REQUIRE(call(agent, "virt.domain.resume", {"name=" + name})["ok"] == true);
  REQUIRE(call(agent, "virt.domain.reboot", {"name=" + name})["ok"] == true);
  r = call(agent, "virt.domain.stats", {"name=" + name, "stats=state"});
  REQUIRE(r["ok"] == true);
  CHECK(r["data"][0]["stats"]["state.state"] == 1);
  r = call(agent, "virt.domain.stats", {"nowait=true"});
  REQUIRE(r["ok"] == true);
  CHECK(attr(r, "count") == "2");
  r = call(agent, "virt.domain.list", {"state=running"});
  CHECK(r["data"].size() == 2);
  REQUIRE(call(agent, "virt.domain.shutdown", {"name=" + name})["ok"] == true);
  REQUIRE(call(agent, "virt.domain.start", {"name=" + name})["ok"] == true);
  REQUIRE(call(agent, "virt.domain.destroy", {"name=" + name})["ok"] == true);
  REQUIRE(call(agent, "virt.domain.undefine", {"name=" + name})["ok"] == true);
  r = call(agent, "virt.node.info");
  REQUIRE(r["ok"] == true);
  CHECK(attr(r, "hypervisor") == "TEST");
  CHECK(attr(r, "uri") == d.uri());
  r = call(agent, "virt.connection.info");
  CHECK(attr(r, "keepalive") == "true");
  CHECK(attr(r, "domain_events") == "true");

  for (auto [event, detail] : std::vector<std::pair<std::string, std::string>>{{"defined", "added"},
                                                                              {"started", "booted"},
                                                                              {"suspended", "paused"},
                                                                              {"resumed", "unpaused"},
                                                                              {"stopped", "shutdown"},
                                                                              {"stopped", "destroyed"},
                                                                              {"undefined", "removed"}}) {
    INFO(event << "/" << detail);
    CHECK(events.wait("domain.lifecycle", {{"name", name}, {"uuid", uuid}, {"event", event}, {"detail", detail}}));
  }
  CHECK(clean_exit(agent.stop()));
  CHECK(agent.log().find("loop did not close") == std::string::npos);
}

TEST_CASE("virt e2e: events produced by a second connection arrive as hostlet events", "[e2e][daemon]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  t::Agent agent(dir, agent_config(virt_instance("virt", d.uri())));
  REQUIRE(agent.start());
  EventStream events(agent, "domain.*");
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));
  churn(d.uri(), "e2e-second-connection");
  check_churn_events(events, "e2e-second-connection");
  CHECK(clean_exit(agent.stop()));
}

TEST_CASE("virt e2e: in process, test:///default works with no daemon", "[e2e]") {
  t::TempDir dir;
  t::Agent agent(dir, agent_config(virt_instance("virt", "test:///default")));
  REQUIRE(agent.start());
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));
  json r = call(agent, "virt.domain.list");
  REQUIRE(r["ok"] == true);
  CHECK(r["data"].size() == 1);
  EventStream events(agent, "domain.*");
  r = call(agent, "virt.domain.destroy", {"name=test"});
  REQUIRE(r["ok"] == true);
  CHECK(events.wait("domain.lifecycle", {{"name", "test"}, {"event", "stopped"}, {"detail", "destroyed"}}));
  CHECK(attr(call(agent, "virt.connection.info"), "keepalive") == "false");
  CHECK(clean_exit(agent.stop()));
}

TEST_CASE("virt e2e: kill -9 the daemon under load: clear errors, connection.lost, low lag, then restored",
          "[e2e][daemon]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  t::Agent agent(dir, agent_config(virt_instance(
                          "virt", d.uri(), "keepalive_interval: 1s, keepalive_count: 2, reconnect_min: 200ms, "
                                           "reconnect_max: 1s")));
  REQUIRE(agent.start());
  EventStream events(agent);
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));

  Pinger ping(agent.control_socket());
  Load load(agent.control_socket(), "virt.domain.list");
  REQUIRE(t::wait_until([&] { return load.ok() > 50; }));
  d.kill9();
  auto lost = events.wait("connection.lost");
  REQUIRE(lost);
  CHECK((*lost)["attrs"]["uri"] == d.uri());
  std::string reason = (*lost)["attrs"]["reason"];
  CHECK((reason == "eof" || reason == "error"));
  REQUIRE(t::wait_until([&] { return load.failed() > 20; }));
  std::this_thread::sleep_for(milliseconds(500));

  // Every failure says what happened: not connected (and when it retries), or libvirt's own error.
  for (const std::string& e : load.errors()) {
    INFO("error: " << e);
    const bool not_connected = e.rfind("not connected to " + d.uri() + " (", 0) == 0;
    const bool from_libvirt = e.find("(libvirt error ") != std::string::npos;
    CHECK((not_connected || from_libvirt));
  }
  bool saw_retry_hint = false;
  for (const std::string& e : load.errors()) saw_retry_hint |= e.find("(reconnecting in ") != std::string::npos;
  CHECK(saw_retry_hint);
  // The loop kept answering while calls failed and the plugin reconnected in vain.
  CHECK(ping.samples() > 10);
  CHECK(ping.max_ms() < 250.0);

  const size_t mark = events.size();
  REQUIRE(d.start());
  auto restored = events.wait("connection.restored", {{"uri", d.uri()}}, seconds(15), mark);
  REQUIRE(restored);
  const int ok_before = load.ok();
  REQUIRE(t::wait_until([&] { return load.ok() > ok_before + 50; }));
  load.finish();
  ping.finish();
  std::printf("kill -9 under load: %d calls ok, %d failed; status round trip max %.1f ms over %d samples\n",
              load.ok(), load.failed(), ping.max_ms(), ping.samples());
  CHECK(ping.max_ms() < 250.0);

  churn(d.uri(), "e2e-after-restart");
  check_churn_events(events, "e2e-after-restart");
  CHECK(clean_exit(agent.stop()));
}

TEST_CASE("virt e2e: SIGSTOPped daemon: keepalive fails the call in its window, other instances serve",
          "[e2e][daemon]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  t::Agent agent(dir, agent_config(virt_instance("virt", d.uri(),
                                                 "keepalive_interval: 1s, keepalive_count: 2, reconnect_min: 300ms") +
                                   virt_instance("local", "test:///default")));
  REQUIRE(agent.start());
  EventStream events(agent, "connection.*");
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));
  REQUIRE(t::wait_until([&] { return attr(call(agent, "local.connection.info"), "state") == "connected"; }));

  d.pause();
  json stuck;
  double stuck_s = 0;
  std::thread caller([&] {
    auto t0 = steady_clock::now();
    stuck = call(agent, "virt.domain.list", {}, seconds(30));
    stuck_s = duration<double>(steady_clock::now() - t0).count();
  });
  // Meanwhile the other instance (and the agent) answer at once.
  for (int i = 0; i < 5; i++) {
    auto t0 = steady_clock::now();
    json r = call(agent, "local.domain.list");
    CHECK(r["ok"] == true);
    CHECK(steady_clock::now() - t0 < seconds(2));
    std::this_thread::sleep_for(milliseconds(200));
  }
  caller.join();
  INFO("the call to the stopped daemon answered after " << stuck_s << " s: " << stuck.dump());
  CHECK(stuck["ok"] == false);
  CHECK(stuck_s < 8.0);  // keepalive: 1 s x (2 + 1), plus slack
  auto lost = events.wait("connection.lost", {{"reason", "keepalive"}});
  CHECK(lost);
  json r = call(agent, "virt.domain.list");
  CHECK(r["ok"] == false);
  CHECK(r["error"].get<std::string>().rfind("not connected to " + d.uri(), 0) == 0);

  d.resume();
  CHECK(events.wait("connection.restored", {{"uri", d.uri()}}));
  CHECK(t::wait_until([&] { return call(agent, "virt.domain.list")["ok"] == true; }));
  auto st = agent.stop();
  INFO("exit status " << (st ? *st : -1) << "; the agent's log:\n" << agent.log());
  CHECK(clean_exit(st));
}

TEST_CASE("virt e2e: bad input answers with clear errors and the agent keeps serving", "[e2e][bad]") {
  t::TempDir dir;
  t::Agent agent(dir, agent_config(virt_instance("virt", "test:///default")));
  REQUIRE(agent.start());
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));
  auto error_of = [&](const std::string& action, std::vector<std::string> args) {
    json r = call(agent, action, args);
    CHECK(r["ok"] == false);
    return r.value("error", std::string());
  };
  std::string e = error_of("virt.domain.info", {"name=no-such-domain"});
  CHECK(e.find("domain 'no-such-domain'") != std::string::npos);
  CHECK(e.find("(libvirt error 42)") != std::string::npos);
  e = error_of("virt.domain.start", {"uuid=00000000-0000-0000-0000-00000000beef"});
  CHECK(e.find("(libvirt error 42)") != std::string::npos);
  e = error_of("virt.domain.define", {"xml=<domain"});
  CHECK(e.find("libvirt error") != std::string::npos);
  e = error_of("virt.domain.define", {"xml=this is not xml"});
  CHECK(e.find("libvirt error") != std::string::npos);
  CHECK(error_of("virt.domain.start", {}) == "missing attribute 'name' or 'uuid'");
  CHECK(error_of("virt.domain.define", {}) == "missing attribute 'xml'");
  CHECK(error_of("virt.domain.undefine", {"uuid=xyz"}) == "invalid uuid 'xyz'");
  CHECK(error_of("virt.domain.list", {"state=sleeping"}).find("unknown state filter 'sleeping'") == 0);
  CHECK(error_of("virt.domain.stats", {"stats=everything"}).find("unknown stats group") == 0);
  CHECK(error_of("virt.domain.destroy", {"name=test", "graceful=perhaps"}).find("must be true or false") !=
        std::string::npos);
  CHECK(error_of("virt.domain.frobnicate", {}).find("no such action") == 0);
  // Still fine after all that.
  CHECK(call(agent, "virt.domain.list")["ok"] == true);
  CHECK(agent.process().running());
  CHECK(clean_exit(agent.stop()));
}

TEST_CASE("virt e2e: unreachable URI at start: the agent starts, reports, retries, then connects",
          "[e2e][daemon]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);  // not started yet
  t::Agent agent(dir, agent_config(virt_instance("virt", d.uri(), "reconnect_min: 100ms, reconnect_max: 400ms") +
                                   virt_instance("local", "test:///default")));
  REQUIRE(agent.start());
  EventStream events(agent, "connection.*");
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "waiting"; }));
  json r = call(agent, "virt.domain.list");
  CHECK(r["ok"] == false);
  const std::string e = r.value("error", std::string());
  INFO(e);
  CHECK(e.rfind("not connected to " + d.uri() + " (", 0) == 0);
  CHECK(e.find("libvirt error") != std::string::npos);  // why the last attempt failed
  CHECK(attr(call(agent, "virt.connection.info"), "last_error") != "<absent>");
  // The other instance runs.
  CHECK(t::wait_until([&] { return attr(call(agent, "local.connection.info"), "state") == "connected"; }));
  CHECK(call(agent, "local.domain.list")["ok"] == true);
  CHECK(t::wait_until([&] { return agent.log().find("cannot connect to " + d.uri()) != std::string::npos; }));

  REQUIRE(d.start());
  CHECK(events.wait("connection.restored", {{"uri", d.uri()}}));
  CHECK(t::wait_until([&] { return call(agent, "virt.domain.list")["ok"] == true; }));
  auto st = agent.stop();
  INFO(agent.log());
  CHECK(clean_exit(st));
}

TEST_CASE("virt e2e: a node of 1000 domains in process: list, filters, stats", "[e2e][scale]") {
  t::TempDir dir;
  const std::string node = dir.write("node.xml", virt_test::node_xml(1000, 250));
  t::Agent agent(dir, agent_config(virt_instance("virt", "test://" + node)));
  REQUIRE(agent.start());
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));
  json r = call(agent, "virt.domain.list");
  REQUIRE(r["ok"] == true);
  CHECK(r["data"].size() == 1000);
  CHECK(attr(r, "count") == "1000");
  CHECK(call(agent, "virt.domain.list", {"state=running"})["data"].size() == 250);
  CHECK(call(agent, "virt.domain.list", {"state=shutoff"})["data"].size() == 750);
  r = call(agent, "virt.domain.stats", {"stats=state,cpu-total"});
  REQUIRE(r["ok"] == true);
  CHECK(r["data"].size() == 1000);
  r = call(agent, "virt.domain.start", {"name=" + virt_test::domain_name(999)});
  CHECK(r["ok"] == true);
  CHECK(call(agent, "virt.domain.list", {"state=running"})["data"].size() == 251);
  CHECK(clean_exit(agent.stop()));
}

TEST_CASE("virt e2e: stats_interval publishes domain.stats per domain", "[e2e][stats]") {
  t::TempDir dir;
  t::Agent agent(dir, agent_config(virt_instance("virt", "test:///default",
                                                 "stats_interval: 100ms, stats_groups: [state]")));
  REQUIRE(agent.start());
  EventStream events(agent, "domain.stats");
  auto first = events.wait("domain.stats", {{"name", "test"}, {"state.state", "1"}});
  REQUIRE(first);
  CHECK((*first)["attrs"].contains("state.reason"));
  CHECK((*first)["attrs"]["uuid"].get<std::string>().size() == 36);
  CHECK(t::wait_until([&] { return events.size() >= 5; }));
  CHECK(clean_exit(agent.stop()));
}

TEST_CASE("virt e2e: the agent stops cleanly even while the daemon hangs", "[e2e][daemon]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  t::Agent agent(dir, agent_config(virt_instance("virt", d.uri(), "keepalive_interval: 1s, keepalive_count: 2")));
  REQUIRE(agent.start());
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));
  d.pause();
  auto t0 = steady_clock::now();
  auto st = agent.stop();
  auto took = duration<double>(steady_clock::now() - t0).count();
  d.resume();
  INFO("stopped in " << took << " s; log:\n" << agent.log());
  CHECK(clean_exit(st));
  CHECK(took < 9.0);
  CHECK(agent.log().find("loop did not close") == std::string::npos);
  CHECK(agent.log().find("did not report stopped") == std::string::npos);
}

TEST_CASE("virt e2e: reload keeps the connection's events flowing (the bridge survives dlclose)",
          "[e2e][daemon][reload]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  t::Agent agent(dir, agent_config(virt_instance("virt", d.uri())));
  REQUIRE(agent.start());
  EventStream events(agent, "domain.*");
  REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));
  churn(d.uri(), "e2e-before-reload");
  check_churn_events(events, "e2e-before-reload");
  // Twice: the second reload unloads a copy that was itself loaded by a reload.
  for (int round = 1; round <= 2; round++) {
    t::Run r = agent.ctl({"--json", "reload", "virt"});
    json j = json::parse(r.out, nullptr, false);
    INFO("reload " << round << ": exit " << r.exit_code << " out: " << r.out << " err: " << r.err << "\nlog:\n"
                   << agent.log());
    REQUIRE(r.exit_code == 0);
    REQUIRE(j.is_object());
    REQUIRE(j.value("ok", false));
    CHECK(j["data"]["instances"][0]["action"] == "reloaded");
    REQUIRE(t::wait_until([&] { return attr(call(agent, "virt.connection.info"), "state") == "connected"; }));
    const std::string name = "e2e-after-reload-" + std::to_string(round);
    churn(d.uri(), name);
    check_churn_events(events, name);
  }
  t::Run st = agent.ctl({"--json", "status"});
  json s = json::parse(st.out, nullptr, false);
  REQUIRE(s.is_object());
  CHECK(s["data"]["instances"][0]["loads"] == 3);
  CHECK(s["data"]["instances"][0]["last_result"] == "ok");
  t::Run stats = agent.ctl({"--json", "stats"});
  CHECK(json::parse(stats.out, nullptr, false)["data"]["plugins_still_mapped_after_unload"] == 0);
  CHECK(call(agent, "virt.domain.list")["ok"] == true);
  CHECK(clean_exit(agent.stop()));
}
