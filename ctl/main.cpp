// hostlet-ctl: the command-line client of the agent's control socket.
//
// Exit status: 0 ok, 1 the agent answered with an error, 2 the agent could
// not be reached (or the connection broke), 64 bad command line.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "version.h"

using json = nlohmann::json;

namespace {

constexpr const char* kDefaultSocket = "/run/hostlet/control.sock";

void usage(FILE* f) {
  fprintf(f,
          "usage: hostlet-ctl [-s SOCKET] [--json] [--timeout SECONDS] COMMAND [ARGS]\n"
          "\n"
          "commands:\n"
          "  status                       agent version, uptime, instances and their state\n"
          "  plugins [--describe NAME]    loaded instances; or one plugin's config schema,\n"
          "                               actions and events (NAME: instance or plugin)\n"
          "  stats                        lanes, loop lag, bus, rules, connections\n"
          "  reload [NAME]                reload one instance, or re-read the whole config\n"
          "  call ACTION [KEY=VALUE...]   run an action, e.g. call virt.domain.list state=running\n"
          "  notify [--source S] [--ack none|accepted|done] TYPE [KEY=VALUE...]\n"
          "                               inject an event as if source S (default \"ctl\") sent it;\n"
          "                               default ack: done (prints what the rules' actions answered)\n"
          "  events [--type GLOB]         stream events until interrupted\n"
          "\n"
          "  -s, --socket SOCKET   control socket (default $HOSTLET_SOCKET or %s)\n"
          "  --json                print the agent's replies as received\n"
          "  --timeout SECONDS     give up waiting for a reply (default 60; 0 = wait forever)\n"
          "\n"
          "exit status: 0 ok, 1 error reply, 2 agent unreachable, 64 usage\n",
          kDefaultSocket);
}

[[noreturn]] void usage_error(const std::string& msg) {
  fprintf(stderr, "hostlet-ctl: %s\n", msg.c_str());
  usage(stderr);
  exit(64);
}

class Conn {
 public:
  bool open(const std::string& path, std::string& err) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path) {
      err = "socket path too long";
      return false;
    }
    memcpy(a.sun_path, path.c_str(), path.size() + 1);
    if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      err = strerror(errno);
      return false;
    }
    return true;
  }
  bool send(const json& j) {
    std::string s = j.dump() + "\n";
    for (size_t off = 0; off < s.size();) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // Next line; false on EOF, error or timeout (timeout_ms < 0: forever).
  bool line(std::string& out, int timeout_ms) {
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        out = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return true;
      }
      pollfd p{fd_, POLLIN, 0};
      int r = poll(&p, 1, timeout_ms);
      if (r < 0 && errno == EINTR) return false;
      if (r <= 0) return false;
      char tmp[65536];
      ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return false;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
  std::string buf_;
};

std::string scalar(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

void print_attrs(const json& attrs, const char* indent) {
  if (!attrs.is_object()) return;
  for (auto it = attrs.begin(); it != attrs.end(); ++it)
    printf("%s%s=%s\n", indent, it.key().c_str(), scalar(it.value()).c_str());
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); i++) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); i++) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 2, ' ');
    }
    printf("%s\n", line.c_str());
  }
}

std::string fmt(double v, int prec = 1) {
  char b[64];
  snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

void print_status(const json& d) {
  printf("hostlet %s  pid %s  up %ss  config %s  pool %s threads  %s rules\n", scalar(d["version"]).c_str(),
         scalar(d["pid"]).c_str(), fmt(d.value("uptime_s", 0.0), 0).c_str(), scalar(d["config"]).c_str(),
         scalar(d["threadpool"]).c_str(), scalar(d["rules"]).c_str());
  if (d.contains("reload") && (d["reload"].value("running", false) || d["reload"].value("queued", 0) > 0))
    printf("reload in progress, %s queued\n", scalar(d["reload"]["queued"]).c_str());
  std::vector<std::vector<std::string>> rows{
      {"INSTANCE", "PLUGIN", "VERSION", "STATE", "LOADS", "LAST LOAD (UTC)", "LAST RESULT"}};
  for (const auto& i : d["instances"]) {
    std::string when = "-";
    if (i.contains("last_time") && i["last_time"].is_number()) {
      time_t t = static_cast<time_t>(i["last_time"].get<double>());
      struct tm tm {};
      char b[32];
      if (gmtime_r(&t, &tm) && strftime(b, sizeof b, "%Y-%m-%d %H:%M:%S", &tm)) when = b;
    }
    std::string state = scalar(i["state"]);
    if (i.value("reloading", false)) state += " (reloading)";
    rows.push_back({scalar(i["name"]), scalar(i["plugin"]), scalar(i["version"]), state,
                    i.contains("loads") ? scalar(i["loads"]) : "-", when,
                    i.contains("last_result") ? scalar(i["last_result"]) : "-"});
  }
  print_table(rows);
}

void print_plugins(const json& d) {
  std::vector<std::vector<std::string>> rows{{"INSTANCE", "PLUGIN", "VERSION", "STATE", "ACTIONS"}};
  for (const auto& p : d) {
    std::string acts;
    for (const auto& a : p["actions"]) acts += (acts.empty() ? "" : " ") + scalar(a);
    rows.push_back({scalar(p["instance"]), scalar(p["plugin"]), scalar(p["version"]), scalar(p["state"]), acts});
  }
  print_table(rows);
}

void print_describe(const json& d) {
  printf("%s %s (ABI %s)\n  %s\n", scalar(d["plugin"]).c_str(), scalar(d["version"]).c_str(),
         scalar(d["abi"]).c_str(), scalar(d["description"]).c_str());
  printf("\nconfig:\n");
  std::vector<std::vector<std::string>> rows{{"  KEY", "TYPE", "DEFAULT", "DESCRIPTION"}};
  for (const auto& k : d["config"]) {
    std::string def = k["required"].get<bool>() ? "(required)" : k["default"].is_null() ? "-" : scalar(k["default"]);
    std::string desc = scalar(k["description"]);
    if (k.contains("range")) desc += " [" + scalar(k["range"][0]) + ".." + scalar(k["range"][1]) + "]";
    rows.push_back({"  " + scalar(k["key"]), scalar(k["type"]), def, desc});
  }
  print_table(rows);
  printf("\nactions:\n");
  rows = {{"  NAME", "ARGS", "DESCRIPTION"}};
  for (const auto& a : d["actions"]) rows.push_back({"  " + scalar(a["name"]), scalar(a["args"]), scalar(a["description"])});
  print_table(rows);
  printf("\nevents:\n");
  rows = {{"  TYPE", "ATTRS", "DESCRIPTION"}};
  for (const auto& e : d["events"]) rows.push_back({"  " + scalar(e["type"]), scalar(e["attrs"]), scalar(e["description"])});
  print_table(rows);
}

void print_stats(const json& d) {
  const json& l = d["loop"];
  printf("loop lag: p50 %s ms  p99 %s ms  max %s ms  (%s samples)  slow callbacks %s",
         fmt(l["lag_p50_ms"].get<double>(), 2).c_str(), fmt(l["lag_p99_ms"].get<double>(), 2).c_str(),
         fmt(l["lag_max_ms"].get<double>(), 2).c_str(), scalar(l["samples"]).c_str(), scalar(l["slow_callbacks"]).c_str());
  if (!l["worst_instance"].get<std::string>().empty())
    printf("  worst %s ms (%s)", fmt(l["worst_callback_ms"].get<double>(), 2).c_str(), scalar(l["worst_instance"]).c_str());
  printf("\n");
  const json& b = d["bus"];
  printf("bus: published %s  dispatched %s  dropped %s  depth %s/%s (max %s)  subscriptions %s\n",
         scalar(b["published"]).c_str(), scalar(b["dispatched"]).c_str(), scalar(b["dropped"]).c_str(),
         scalar(b["depth"]).c_str(), scalar(b["capacity"]).c_str(), scalar(b["max_depth"]).c_str(),
         scalar(b["subscriptions"]).c_str());
  printf("actions pending: %s  control: %s connection(s), %s request(s), %s error(s)\n",
         scalar(d["actions"]["pending"]).c_str(), scalar(d["control"]["connections"]).c_str(),
         scalar(d["control"]["requests"]).c_str(), scalar(d["control"]["errors"]).c_str());
  printf("\nlanes:\n");
  std::vector<std::vector<std::string>> rows{{"  INSTANCE", "INFLIGHT", "RUNNING", "QUEUED", "SUBMITTED", "DONE",
                                              "REJECTED", "CANCELLED", "TIMED OUT", "SHUTDOWN", "WAIT p50/p99 us",
                                              "RUN p50/p99 us"}};
  for (auto it = d["lanes"].begin(); it != d["lanes"].end(); ++it) {
    const json& s = it.value();
    rows.push_back({"  " + it.key(), scalar(s["max_inflight"]), scalar(s["running"]), scalar(s["queued"]),
                    scalar(s["submitted"]), scalar(s["done"]), scalar(s["rejected"]), scalar(s["cancelled"]),
                    scalar(s["timed_out"]), scalar(s["shutdown"]),
                    fmt(s["queue_wait_us"]["p50"].get<double>(), 0) + "/" + fmt(s["queue_wait_us"]["p99"].get<double>(), 0),
                    fmt(s["run_time_us"]["p50"].get<double>(), 0) + "/" + fmt(s["run_time_us"]["p99"].get<double>(), 0)});
  }
  print_table(rows);
  if (!d["rules"].empty()) {
    printf("\nrules:\n");
    rows = {{"  RULE", "MATCHED", "FIRED", "DEBOUNCED", "RATE LIMITED", "TEMPLATE ERRORS", "OK", "FAILED"}};
    for (const auto& r : d["rules"])
      rows.push_back({"  " + scalar(r["rule"]), scalar(r["matched"]), scalar(r["fired"]), scalar(r["debounced"]),
                      scalar(r["rate_limited"]), scalar(r["template_errors"]), scalar(r["actions_ok"]),
                      scalar(r["actions_failed"])});
    print_table(rows);
  }
}

void print_event(const json& e) {
  double t = e.value("time", 0.0);
  time_t secs = static_cast<time_t>(t);
  struct tm tm;
  localtime_r(&secs, &tm);
  char ts[32];
  strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::string attrs;
  if (e.contains("attrs"))
    for (auto it = e["attrs"].begin(); it != e["attrs"].end(); ++it) attrs += " " + it.key() + "=" + scalar(it.value());
  printf("%s.%03d %s %s%s\n", ts, static_cast<int>((t - static_cast<double>(secs)) * 1000), scalar(e["source"]).c_str(),
         scalar(e["type"]).c_str(), attrs.c_str());
  fflush(stdout);
}

// KEY=VALUE arguments into an attrs object.
json parse_kv(const std::vector<std::string>& args, size_t from) {
  json attrs = json::object();
  for (size_t i = from; i < args.size(); i++) {
    auto eq = args[i].find('=');
    if (eq == std::string::npos || eq == 0) usage_error("expected KEY=VALUE, got '" + args[i] + "'");
    attrs[args[i].substr(0, eq)] = args[i].substr(eq + 1);
  }
  return attrs;
}

volatile sig_atomic_t g_interrupted = 0;

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path;
  if (const char* env = getenv("HOSTLET_SOCKET"); env && *env) socket_path = env;
  else socket_path = kDefaultSocket;
  bool raw = false;
  int timeout_s = 60;
  std::vector<std::string> args;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (!args.empty()) {  // options after the command belong to it
      args.push_back(a);
      continue;
    }
    if (a == "-s" || a == "--socket") {
      if (++i >= argc) usage_error("-s needs a path");
      socket_path = argv[i];
    } else if (a == "--json") {
      raw = true;
    } else if (a == "--timeout") {
      if (++i >= argc) usage_error("--timeout needs a number of seconds");
      timeout_s = atoi(argv[i]);
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "--version") {
      printf("hostlet-ctl %s\n", HOSTLET_VERSION);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      usage_error("unknown option '" + a + "'");
    } else {
      args.push_back(a);
    }
  }
  if (args.empty()) usage_error("no command");
  const std::string& cmd = args[0];

  json req{{"id", 1}};
  bool stream = false;
  if (cmd == "status" || cmd == "stats") {
    if (args.size() > 1) usage_error(cmd + " takes no arguments");
    req["cmd"] = cmd;
  } else if (cmd == "plugins") {
    req["cmd"] = "plugins";
    if (args.size() == 3 && args[1] == "--describe") {
      req["cmd"] = "describe";
      req["name"] = args[2];
    } else if (args.size() != 1) {
      usage_error("usage: plugins [--describe NAME]");
    }
  } else if (cmd == "reload") {
    req["cmd"] = "reload";
    if (args.size() > 2) usage_error("usage: reload [NAME]");
    if (args.size() == 2) req["name"] = args[1];
  } else if (cmd == "call") {
    if (args.size() < 2) usage_error("usage: call ACTION [KEY=VALUE...]");
    req["cmd"] = "call";
    req["action"] = args[1];
    req["attrs"] = parse_kv(args, 2);
  } else if (cmd == "notify") {
    req["cmd"] = "notify";
    req["ack"] = "done";
    size_t i = 1;
    for (; i < args.size() && args[i].rfind("--", 0) == 0; i++) {
      if (i + 1 >= args.size()) usage_error(args[i] + " needs a value");
      if (args[i] == "--source") req["source"] = args[++i];
      else if (args[i] == "--ack") req["ack"] = args[++i];
      else usage_error("unknown notify option '" + args[i] + "'");
    }
    if (i >= args.size()) usage_error("usage: notify [--source S] [--ack A] TYPE [KEY=VALUE...]");
    req["type"] = args[i];
    req["attrs"] = parse_kv(args, i + 1);
  } else if (cmd == "events") {
    req["cmd"] = "events";
    stream = true;
    if (args.size() == 3 && args[1] == "--type") req["type"] = args[2];
    else if (args.size() != 1) usage_error("usage: events [--type GLOB]");
  } else {
    usage_error("unknown command '" + cmd + "'");
  }

  Conn conn;
  std::string err;
  if (!conn.open(socket_path, err)) {
    fprintf(stderr, "hostlet-ctl: cannot reach the agent at %s: %s\n", socket_path.c_str(), err.c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (!conn.send(req)) {
    fprintf(stderr, "hostlet-ctl: the agent closed the connection\n");
    return 2;
  }
  std::string line;
  int wait_ms = timeout_s > 0 ? timeout_s * 1000 : -1;
  if (!conn.line(line, wait_ms)) {
    fprintf(stderr, "hostlet-ctl: no answer from the agent%s\n", timeout_s > 0 ? " (timed out)" : "");
    return 2;
  }
  json reply = json::parse(line, nullptr, false);
  if (reply.is_discarded() || !reply.is_object()) {
    fprintf(stderr, "hostlet-ctl: unreadable answer: %s\n", line.c_str());
    return 2;
  }
  bool ok = reply.value("ok", false);
  if (raw) {
    printf("%s\n", line.c_str());
  } else if (!ok) {
    std::string what = reply.contains("results") ? "an action the event started failed" : "unknown error";
    fprintf(stderr, "error: %s\n", reply.value("error", what).c_str());
    if (reply.contains("results"))
      for (const auto& r : reply["results"])
        fprintf(stderr, "  %s (%s): %s\n", scalar(r["action"]).c_str(), scalar(r["rule"]).c_str(),
                r.value("ok", false) ? "ok" : scalar(r["error"]).c_str());
  } else if (req["cmd"] == "status") {
    print_status(reply["data"]);
  } else if (req["cmd"] == "plugins") {
    print_plugins(reply["data"]);
  } else if (req["cmd"] == "describe") {
    print_describe(reply["data"]);
  } else if (req["cmd"] == "stats") {
    print_stats(reply["data"]);
  } else if (req["cmd"] == "call") {
    printf("ok\n");
    print_attrs(reply["attrs"], "  ");
    if (reply.contains("data")) printf("%s\n", reply["data"].dump(2).c_str());
  } else if (req["cmd"] == "notify") {
    if (reply.contains("results")) {
      printf("event %s: %zu action(s)\n", scalar(reply["event"]).c_str(), reply["results"].size());
      for (const auto& r : reply["results"]) {
        printf("  %s (%s): ok\n", scalar(r["action"]).c_str(), scalar(r["rule"]).c_str());
        print_attrs(r["attrs"], "    ");
      }
    } else {
      printf("accepted: event %s\n", scalar(reply["event"]).c_str());
    }
  } else if (req["cmd"] == "reload") {
    printf("%s\n", reply.value("result", std::string("ok")).c_str());
  }
  if (!stream || !ok) return ok ? 0 : 1;

  // Stream until interrupted or the agent goes away.
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_interrupted = 1; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  fflush(stdout);
  while (!g_interrupted) {
    if (!conn.line(line, -1)) break;
    if (raw) {
      printf("%s\n", line.c_str());
      fflush(stdout);
      continue;
    }
    json m = json::parse(line, nullptr, false);
    if (m.is_discarded()) continue;
    if (m.contains("event")) print_event(m["event"]);
    else if (m.contains("dropped")) printf("(%s events dropped: this client read too slowly)\n", scalar(m["dropped"]).c_str());
  }
  return g_interrupted ? 0 : 2;
}
