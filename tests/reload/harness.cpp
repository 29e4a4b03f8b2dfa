#include "harness.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <catch2/catch.hpp>

namespace fs = std::filesystem;
namespace t = hostlet::test;

namespace reload_test {

std::string fixture(const std::string& name) { return t::env_path("HOSTLET_TEST_PLUGINS") + "/" + name + ".so"; }

void install_bytes(const std::string& bytes, const std::string& dest) {
  const std::string tmp = dest + ".new";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << bytes;
    f.close();
    REQUIRE(f);
  }
  std::error_code ec;
  fs::rename(tmp, dest, ec);
  REQUIRE_FALSE(ec);
}

void install(const std::string& src, const std::string& dest) {
  std::string bytes = t::read_file(src);
  REQUIRE_FALSE(bytes.empty());
  install_bytes(bytes, dest);
}

WorkerAgent::WorkerAgent(const std::string& agent_keys, const std::string& w_keys, const std::string& more)
    : so((install(fixture("worker_v1"), dir / "w.so"), dir / "w.so")),
      agent(dir, "agent: {control_socket: \"@DIR@/control.sock\"" + agent_keys + "}\n"
                 "plugins:\n"
                 "  - {name: w, plugin: \"@DIR@/w.so\"" + w_keys + "}\n" + more) {}

void write_config(Agent& a, const TempDir& dir, std::string yaml) {
  for (size_t pos = 0; (pos = yaml.find("@DIR@", pos)) != std::string::npos; pos += dir.path().size())
    yaml.replace(pos, 5, dir.path());
  REQUIRE(a.config_path() == dir / "hostlet.yaml");
  install_bytes(yaml, a.config_path());
}

bool start(Agent& a) {
  return a.start() && t::wait_until([&] { return a.log().find("] ready:") != std::string::npos; });
}

bool stops_cleanly(Agent& a) {
  auto st = a.stop(SIGTERM);
  return st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0;
}

json ctl_json(Agent& a, std::vector<std::string> args, std::chrono::milliseconds timeout) {
  args.insert(args.begin(), "--json");
  Run r = a.ctl(args, timeout);
  json j = json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    INFO("hostlet-ctl " << args[1] << " exit " << r.exit_code << " stdout: " << r.out << " stderr: " << r.err);
    FAIL("unreadable reply");
  }
  return j;
}

json Reload::item(const std::string& name) const {
  if (!reply.contains("data") || !reply["data"].contains("instances")) return nullptr;
  for (const auto& i : reply["data"]["instances"])
    if (i.value("name", std::string()) == name) return i;
  return nullptr;
}

Reload reload(Agent& a, const std::string& name, std::chrono::milliseconds timeout) {
  std::vector<std::string> args{"--json", "reload"};
  if (!name.empty()) args.push_back(name);
  return parse_reload(a.ctl(args, timeout));
}

Reload parse_reload(const Run& r) {
  Reload out;
  out.exit_code = r.exit_code;
  out.err = r.err;
  out.reply = json::parse(r.out, nullptr, false);
  const bool readable = out.reply.is_object();
  INFO("hostlet-ctl reload exit " << r.exit_code << " stdout: " << r.out << " stderr: " << r.err);
  CHECK(readable);
  if (!readable) out.reply = json::object();
  return out;
}

json next_reply(LineClient& c, std::chrono::milliseconds timeout) {
  auto line = c.recv_line(timeout);
  REQUIRE(line);
  json j = json::parse(*line, nullptr, false);
  INFO("reply " << *line);
  REQUIRE(j.is_object());
  return j;
}

std::string answered_version(const json& reply) {
  if (!reply.value("ok", false)) return "error: " + reply.value("error", std::string("?"));
  return reply.value("attrs", json::object()).value("version", std::string("<absent>"));
}

json request(LineClient& c, const json& req, std::chrono::milliseconds timeout) {
  INFO("request " << req.dump());
  REQUIRE(c.send_line(req.dump()));
  return next_reply(c, timeout);
}

json instance_status(Agent& a, const std::string& name) {
  json st = ctl_json(a, {"status"});
  for (const auto& i : st["data"]["instances"])
    if (i.value("name", std::string()) == name) return i;
  return nullptr;
}

json reload_status(Agent& a) { return ctl_json(a, {"status"})["data"].value("reload", json()); }

uint64_t loads(Agent& a, const std::string& name) {
  json i = instance_status(a, name);
  INFO("status of " << name << ": " << i.dump());
  REQUIRE(i.is_object());
  REQUIRE(i.contains("loads"));
  return i["loads"].get<uint64_t>();
}

std::string last_result(Agent& a, const std::string& name) {
  json i = instance_status(a, name);
  INFO("status of " << name << ": " << i.dump());
  REQUIRE(i.is_object());
  return i.value("last_result", std::string("<absent>"));
}

uint64_t lane_running(Agent& a, const std::string& name) {
  json lane = ctl_json(a, {"stats"})["data"]["lanes"].value(name, json());
  return lane.is_object() ? lane.value("running", uint64_t{0}) : 0;
}

std::string version(Agent& a, const std::string& instance) {
  return answered_version(ctl_json(a, {"call", instance + ".version"}));
}

size_t open_fds(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    n++;
  return n;
}

namespace {
std::vector<std::string> maps_matching(pid_t pid, const std::string& needle) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/maps");
  std::vector<std::string> paths;
  for (std::string line; std::getline(f, line);) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (path.find(needle) != std::string::npos) paths.push_back(path);
  }
  return paths;
}
}  // namespace

size_t mapping_lines(pid_t pid, const std::string& needle) { return maps_matching(pid, needle).size(); }

size_t mapped_files(pid_t pid, const std::string& needle) {
  auto v = maps_matching(pid, needle);
  return std::set<std::string>(v.begin(), v.end()).size();
}

long rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace reload_test
