// The libvirt plugin's metrics end to end: the real agent scrapes a private
// libvirtd over its control socket (`{"cmd":"metrics"}`, what `hostlet-ctl
// metrics` sends), side by side with the real prometheus-libvirt-exporter
// where the test compares them. Both expositions go through one small parser
// of the text format.
#include <catch2/catch.hpp>

#include "libvirtd.hpp"
#include "support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

namespace t = hostlet::test;
using json = nlohmann::json;
using namespace std::chrono;

namespace {

// meson test points LD_LIBRARY_PATH at the build tree; the agent must find
// the bridge through the plugin's own rpath, as when installed.
const bool own_rpath = (unsetenv("LD_LIBRARY_PATH"), true);

// One exposition in the text format: families with type and help, and every
// series as "name{k="v",...}" (labels sorted) -> value.
struct Exposition {
  std::map<std::string, std::string> type, help;
  std::map<std::string, double> series;
  std::map<std::string, std::string> family_of;  // series key -> metric name

  bool has(const std::string& key) const { return series.count(key) != 0; }
  double at(const std::string& key) const {
    auto it = series.find(key);
    return it == series.end() ? -1 : it->second;
  }
};

// Parses `name{a="x",b="y"} value` lines (label values with \\, \" and \n escapes).
Exposition parse_exposition(const std::string& text) {
  Exposition e;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream w(line);
      std::string hash, kind, name;
      w >> hash >> kind >> name;
      std::string rest;
      std::getline(w, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      if (kind == "TYPE") e.type[name] = rest;
      else if (kind == "HELP") e.help[name] = rest;
      continue;
    }
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') i++;
    const std::string name = line.substr(0, i);
    std::map<std::string, std::string> labels;
    if (i < line.size() && line[i] == '{') {
      i++;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        std::string key = line.substr(i, eq - i);
        i = eq + 2;  // past ="
        std::string value;
        for (; i < line.size() && line[i] != '"'; i++) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            i++;
            value += line[i] == 'n' ? '\n' : line[i];
          } else {
            value += line[i];
          }
        }
        i++;  // past the closing quote
        if (i < line.size() && line[i] == ',') i++;
        labels[key] = value;
      }
      i++;  // past }
    }
    std::string key = name + "{";
    for (auto& [k, v] : labels) key += k + "=\"" + v + "\",";
    key += "}";
    e.series[key] = std::strtod(line.c_str() + i, nullptr);
    e.family_of[key] = name;
  }
  return e;
}

std::string series(const std::string& name, const std::string& domain = "", size_t i = 0) {
  if (domain.empty()) return name + "{}";
  return name + "{domain=\"" + domain + "\",uuid=\"" + virt_test::domain_uuid(i) + "\",}";
}

// The agent's exposition, through the control socket; the reply's text or "" on failure.
std::string scrape_agent(t::Agent& a, uint64_t timeout_ms = 5000) {
  t::LineClient c;
  if (!c.connect(a.control_socket())) return {};
  c.send_line(json{{"id", 1}, {"cmd", "metrics"}, {"format", "text"}, {"timeout_ms", timeout_ms}}.dump());
  auto line = c.recv_line(seconds(60));
  if (!line) return {};
  json r = json::parse(*line, nullptr, false);
  if (r.is_discarded() || !r.value("ok", false)) return {};
  return r["data"].value("text", std::string());
}

// GET http://127.0.0.1:port/metrics, the body ("" on failure).
std::string http_get(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return {};
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return {};
  }
  std::string resp;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  size_t body = resp.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : resp.substr(body + 4);
}

int free_loopback_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin_port);
}

// An agent with one libvirt instance "virt" on `uri`.
std::string metrics_config(const std::string& uri, const std::string& extra) {
  return "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug, shutdown_timeout: 10s}\n"
         "plugins:\n"
         "  - {name: virt, plugin: libvirt, config: {uri: \"" + uri + "\", " + extra + "}}\n";
}

std::string node_uri(const virt_test::Libvirtd& d, const std::string& node) {
  return "test+unix://" + node + "?socket=" + d.socket();
}

// A private libvirtd with `n` domains (the first `running` running, with
// devices) and an agent whose instance "virt" has the extra config `extra`.
struct Rig {
  t::TempDir dir;
  virt_test::Libvirtd daemon{dir};
  std::string uri;
  std::unique_ptr<t::Agent> agent;

  Rig(size_t n, size_t running, const std::string& extra) {
    REQUIRE(daemon.start());
    uri = node_uri(daemon, dir.write("node.xml", virt_test::node_xml(n, running, true)));
    agent = std::make_unique<t::Agent>(dir, metrics_config(uri, extra));
    REQUIRE(agent->start());
  }
  ~Rig() { agent->stop(); }
  Exposition scrape(uint64_t timeout_ms = 5000) { return parse_exposition(scrape_agent(*agent, timeout_ms)); }
  // Scrapes until libvirt_domains_number is `n`.
  Exposition wait_domains(double n, milliseconds timeout = seconds(10)) {
    Exposition e;
    REQUIRE(t::wait_until([&] { return (e = scrape()).at(series("libvirt_domains_number")) == n; }, timeout));
    return e;
  }
};

std::string instance_health(t::Agent& a) {
  t::Run r = a.ctl({"--json", "status"});
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return "?";
  std::string found = "?";
  // The instance's entry, wherever status lists it.
  std::function<void(const json&)> walk = [&](const json& v) {
    if (v.is_object()) {
      if (v.value("name", std::string()) == "virt" && v.contains("health")) found = v["health"].get<std::string>();
      for (auto& [k, x] : v.items()) walk(x);
    } else if (v.is_array()) {
      for (auto& x : v) walk(x);
    }
  };
  walk(j);
  return found;
}

}  // namespace

TEST_CASE("virt metrics: memory, vCPUs and state of a few domains through the control socket", "[e2e][metrics]") {
  Rig rig(5, 3, "metrics_interval: 0, metrics_max_age: 0");
  Exposition e = rig.wait_domains(3);
  CHECK(e.at(series("libvirt_up")) == 1);
  for (size_t i = 1; i <= 3; i++) {
    const std::string name = virt_test::domain_name(i);
    INFO(name);
    CHECK(e.at(series("libvirt_domain_state_code", name, i)) == 1);
    CHECK(e.at(series("libvirt_domain_info_maximum_memory_bytes", name, i)) == 65536.0 * 1024);
    CHECK(e.at(series("libvirt_domain_info_memory_usage_bytes", name, i)) == 65536.0 * 1024);
    CHECK(e.at(series("libvirt_domain_info_virtual_cpus", name, i)) == static_cast<double>(1 + i % 4));
    CHECK(e.at(series("hostlet_libvirt_domain_stale", name, i)) == 0);
  }
  CHECK_FALSE(e.has(series("libvirt_domain_state_code", virt_test::domain_name(4), 4)));  // shut off: as the exporter
  CHECK(e.at(series("libvirt_node_cpus")) == 2);
  CHECK(e.at(series("libvirt_node_memory_bytes")) == 8388608.0 * 1024);
  CHECK(e.type["libvirt_domain_info_cpu_time_seconds_total"] == "counter");
  CHECK(e.at(series("hostlet_libvirt_stats_age_seconds")) >= 0);
}

TEST_CASE("virt metrics: every family and label set prometheus-libvirt-exporter serves, with equal gauges",
          "[e2e][metrics][compat]") {
  Rig rig(100, 60, "metrics_max_age: 0");
  const int port = free_loopback_port();
  t::Process exporter({"/usr/bin/prometheus-libvirt-exporter", "--web.listen-address=127.0.0.1:" + std::to_string(port),
                       "--libvirt.uri=" + rig.uri});

  Exposition theirs;
  REQUIRE(t::wait_until([&] { return (theirs = parse_exposition(http_get(port))).at(series("libvirt_up")) == 1; },
                        seconds(30)));
  Exposition ours = rig.wait_domains(60);
  CHECK(theirs.at(series("libvirt_domains_number")) == 60);

  size_t compared = 0;
  for (auto& [key, value] : theirs.series) {
    const std::string& name = theirs.family_of[key];
    if (name.rfind("libvirt_", 0) != 0) continue;  // the exporter's go_* and process_* families
    INFO(key);
    REQUIRE(ours.has(key));
    CHECK(ours.type[name] == theirs.type[name]);
    CHECK(ours.help[name] == theirs.help[name]);
    if (name == "libvirt_domain_state_code" || name == "libvirt_domain_info_maximum_memory_bytes" ||
        name == "libvirt_domain_info_memory_usage_bytes" || name == "libvirt_domain_info_virtual_cpus" ||
        name == "libvirt_domains_number" || name == "libvirt_up") {
      CHECK(ours.at(key) == value);
      compared++;
    }
  }
  CHECK(compared == 2 + 4 * 60);
  // Block and interface series exist, labelled as the exporter labels them.
  CHECK(theirs.has("libvirt_domain_block_stats_read_bytes_total{domain=\"vm-0001\",source_file=\"/var/lib/hostlet-test/"
                   "vm-0001.img\",target_device=\"vda\",uuid=\"" + virt_test::domain_uuid(1) + "\",}"));
  exporter.stop();
}

TEST_CASE("virt metrics: a SIGSTOPped daemon: the scrape answers with the last data, then fresh data after SIGCONT",
          "[e2e][metrics][daemon]") {
  // keepalive 30s: the connection outlives the pause, so libvirt_up must stay 1.
  Rig rig(4, 2, "metrics_interval: 0, metrics_max_age: 0, keepalive_interval: 30s");
  Exposition e = rig.wait_domains(2);
  const double ok_before = e.at("hostlet_libvirt_stats_collections_total{result=\"ok\",}");

  rig.daemon.pause();
  // The scrape waits for the stuck collection at most its timeout (1 s here), then serves the cache.
  const std::string text = scrape_agent(*rig.agent, 1000);
  REQUIRE_FALSE(text.empty());
  e = parse_exposition(text);
  CHECK(e.at(series("libvirt_up")) == 1);
  CHECK(e.at(series("libvirt_domain_state_code", virt_test::domain_name(1), 1)) == 1);
  CHECK(e.at(series("hostlet_libvirt_stats_collecting")) == 1);
  // Another scrape meanwhile shares the collection in flight and answers too.
  CHECK_FALSE(scrape_agent(*rig.agent, 1000).empty());

  rig.daemon.resume();
  REQUIRE(t::wait_until([&] {
    e = rig.scrape();
    return e.at(series("hostlet_libvirt_stats_collecting")) == 0 &&
           e.at("hostlet_libvirt_stats_collections_total{result=\"ok\",}") > ok_before;
  }, seconds(20)));
  CHECK(e.at(series("libvirt_up")) == 1);
  CHECK(e.at(series("hostlet_libvirt_domain_stale", virt_test::domain_name(1), 1)) == 0);
}

TEST_CASE("virt metrics: libvirtd killed and restarted: libvirt_up 0 and degraded, then metrics and ok again",
          "[e2e][metrics][daemon]") {
  Rig rig(3, 3, "metrics_interval: 0, metrics_max_age: 0, reconnect_min: 200ms, reconnect_max: 1s");
  Exposition e = rig.wait_domains(3);
  CHECK(instance_health(*rig.agent) == "ok");

  rig.daemon.kill9();
  REQUIRE(t::wait_until([&] { return (e = rig.scrape()).at(series("libvirt_up")) == 0; }, seconds(30)));
  CHECK(instance_health(*rig.agent) == "degraded");
  CHECK_FALSE(e.has(series("libvirt_domain_state_code", virt_test::domain_name(1), 1)));

  REQUIRE(rig.daemon.start());
  e = rig.wait_domains(3, seconds(30));
  CHECK(e.at(series("libvirt_up")) == 1);
  CHECK(e.at(series("libvirt_domain_state_code", virt_test::domain_name(2), 2)) == 1);
  CHECK(instance_health(*rig.agent) == "ok");
}
