// hostlet-ctl: the command-line client of the agent's control socket.
//
// Exit status: 0 ok, 1 the agent answered with an error, 2 the agent could
// not be reached (or the connection broke), 64 bad command line.
#include <signal.h>

#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "client.hpp"
#include "control_protocol.hpp"
#include "hello.hpp"
#include "print.hpp"
#include "version.h"

using json = nlohmann::json;
using namespace hostlet::ctl;
namespace cmd = hostlet::control::cmd;

namespace {

constexpr const char* kDefaultSocket = "/run/hostlet/control.sock";
constexpr int kExitError = 1, kExitUnreachable = 2, kExitUsage = 64;

using Args = std::vector<std::string>;  // what follows the command's name

// One command of the command line, as ninja's kTools[]: what the user types,
// how its arguments become a request (false: a usage error, said in `err`),
// how an ok reply is shown, and its line of the help.
struct Command {
  std::string_view name;
  bool (*build)(const Args& args, json& req, std::string& err);
  void (*print)(const json& reply);
  bool streams;  // after the reply, prints streamed lines until interrupted
  std::string_view usage;
  std::string_view help;  // lines after the first start with '\n'
};

[[noreturn]] void usage_error(const std::string& msg);

// KEY=VALUE arguments from args[from] on into an attrs object.
bool parse_kv(const Args& args, size_t from, json& attrs, std::string& err) {
  attrs = json::object();
  for (size_t i = from; i < args.size(); i++) {
    auto eq = args[i].find('=');
    if (eq == std::string::npos || eq == 0) {
      err = "expected KEY=VALUE, got '" + args[i] + "'";
      return false;
    }
    attrs[args[i].substr(0, eq)] = args[i].substr(eq + 1);
  }
  return true;
}

bool no_args(const Args& args, std::string& err) {
  if (args.empty()) return true;
  err = "takes no arguments, got '" + args[0] + "'";
  return false;
}

bool build_status(const Args& args, json& req, std::string& err) {
  req["cmd"] = cmd::status;
  return no_args(args, err);
}

bool build_stats(const Args& args, json& req, std::string& err) {
  req["cmd"] = cmd::stats;
  return no_args(args, err);
}

bool build_plugins(const Args& args, json& req, std::string& err) {
  req["cmd"] = cmd::plugins;
  if (args.empty()) return true;
  if (args.size() == 2 && args[0] == "--describe") {
    req["cmd"] = cmd::describe;
    req["name"] = args[1];
    return true;
  }
  err = "expected nothing or --describe NAME";
  return false;
}

bool build_reload(const Args& args, json& req, std::string& err) {
  req["cmd"] = cmd::reload;
  if (args.size() > 1) {
    err = "takes at most one instance name";
    return false;
  }
  if (args.size() == 1) req["name"] = args[0];
  return true;
}

bool build_call(const Args& args, json& req, std::string& err) {
  req["cmd"] = cmd::call;
  size_t i = 0;
  for (; i < args.size() && args[i].rfind("--", 0) == 0; i++) {
    if (args[i] != "--no-wait") {
      err = "unknown option '" + args[i] + "' (call takes --no-wait)";
      return false;
    }
    req["wait_ms"] = 0;  // a full lane answers EAGAIN at once instead of holding the call
  }
  if (i >= args.size()) {
    err = "needs an ACTION";
    return false;
  }
  req["action"] = args[i];
  return parse_kv(args, i + 1, req["attrs"], err);
}

bool build_notify(const Args& args, json& req, std::string& err) {
  req["cmd"] = cmd::notify;
  req["ack"] = "done";
  size_t i = 0;
  for (; i < args.size() && args[i].rfind("--", 0) == 0; i++) {
    if (args[i] != "--source" && args[i] != "--ack") {
      err = "unknown option '" + args[i] + "'";
      return false;
    }
    if (i + 1 >= args.size()) {
      err = args[i] + " needs a value";
      return false;
    }
    req[args[i].substr(2)] = args[i + 1];
    i++;
  }
  if (i >= args.size()) {
    err = "needs a TYPE";
    return false;
  }
  req["type"] = args[i];
  return parse_kv(args, i + 1, req["attrs"], err);
}

bool build_events(const Args& args, json& req, std::string& err) {
  req["cmd"] = cmd::events;
  if (args.empty()) return true;
  if (args.size() == 2 && args[0] == "--type") {
    req["type"] = args[1];
    return true;
  }
  err = "expected nothing or --type GLOB";
  return false;
}

bool build_metrics(const Args& args, json& req, std::string& err) {
  req["cmd"] = cmd::metrics;
  for (const auto& a : args) {
    if (a != "--openmetrics") {
      err = "unknown argument '" + a + "' (metrics takes --openmetrics)";
      return false;
    }
    req["format"] = "openmetrics";
  }
  return true;
}

void show_metrics(const json& reply) {
  const json& text = field(field(reply, "data"), "text");
  if (text.is_string()) fputs(text.get_ref<const std::string&>().c_str(), stdout);
}

void show_data(void (*print)(const json&), const json& reply) { print(field(reply, "data")); }

void show_call(const json& reply) {
  printf("ok\n");
  print_attrs(field(reply, "attrs"), "  ");
  if (reply.contains("data")) printf("%s\n", field(reply, "data").dump(2).c_str());
}

void show_notify(const json& reply) {
  if (!reply.contains("results")) {
    printf("accepted: event %s\n", scalar(field(reply, "event")).c_str());
    return;
  }
  printf("event %s: %zu action(s)\n", scalar(field(reply, "event")).c_str(), field(reply, "results").size());
  for (const auto& r : field(reply, "results")) {
    printf("  %s (%s): ok\n", scalar(field(r, "action")).c_str(), scalar(field(r, "rule")).c_str());
    print_attrs(field(r, "attrs"), "    ");
  }
}

void show_reload(const json& reply) {
  printf("%s\n", (field(reply, "result").is_string() ? text(field(reply, "result")) : std::string("ok")).c_str());
}

void show_nothing(const json&) {}

const Command kCommands[] = {
    {"status", build_status, [](const json& r) { show_data(print_status, r); }, false, "status",
     "agent version, uptime, instances and their state"},
    {"plugins", build_plugins,
     [](const json& r) { show_data(field(r, "data").is_array() ? print_plugins : print_describe, r); }, false,
     "plugins [--describe NAME]",
     "loaded instances; or one plugin's config schema,\nactions and events (NAME: instance or plugin)"},
    {"stats", build_stats, [](const json& r) { show_data(print_stats, r); }, false, "stats",
     "lanes, loop lag, bus, rules, connections"},
    {"reload", build_reload, show_reload, false, "reload [NAME]", "reload one instance, or re-read the whole config"},
    {"call", build_call, show_call, false, "call [--no-wait] ACTION [KEY=VALUE...]",
     "run an action, e.g. call virt.domain.list state=running;\n"
     "--no-wait: fail at once (EAGAIN) if its lane is full"},
    {"notify", build_notify, show_notify, false, "notify [--source S] [--ack none|accepted|done] TYPE [KEY=VALUE...]",
     "inject an event as if source S (default \"ctl\") sent it;\n"
     "default ack: done (prints what the rules' actions answered)"},
    {"events", build_events, show_nothing, true, "events [--type GLOB]", "stream events until interrupted"},
    {"metrics", build_metrics, show_metrics, false, "metrics [--openmetrics]",
     "the metrics a Prometheus scrape gets (text format 0.0.4,\nor OpenMetrics 1.0.0)"},
};

void usage(FILE* f) {
  fprintf(f,
          "usage: hostlet-ctl [-s SOCKET] [--json] [--no-headers] [--timeout SECONDS] COMMAND [ARGS]\n\ncommands:\n");
  constexpr int kColumn = 29;
  for (const Command& c : kCommands) {
    std::string text(c.help);
    for (size_t nl = 0; (nl = text.find('\n', nl)) != std::string::npos; nl += kColumn + 3)
      text.insert(nl + 1, kColumn + 2, ' ');
    if (c.usage.size() > kColumn)
      fprintf(f, "  %.*s\n  %*s%s\n", static_cast<int>(c.usage.size()), c.usage.data(), kColumn, "", text.c_str());
    else fprintf(f, "  %-*.*s%s\n", kColumn, static_cast<int>(c.usage.size()), c.usage.data(), text.c_str());
  }
  fprintf(f,
          "\n"
          "  -s, --socket SOCKET   control socket (default $HOSTLET_SOCKET or %s)\n"
          "  --json                print the agent's replies as received\n"
          "  --no-headers          print tables without their header line\n"
          "  --timeout SECONDS     give up waiting for a reply (default 60; 0 = wait forever)\n"
          "\n"
          "exit status: 0 ok, 1 error reply, 2 agent unreachable, 64 usage\n",
          kDefaultSocket);
}

void usage_error(const std::string& msg) {
  fprintf(stderr, "hostlet-ctl: %s\n(hostlet-ctl --help lists the commands and options)\n", msg.c_str());
  exit(kExitUsage);
}

// A whole decimal number from 0 to max: "5x", "", "-1", " 5" and "abc" are not.
bool parse_number(std::string_view text, unsigned long max, unsigned long& out) {
  unsigned long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v > max) return false;
  out = v;
  return true;
}

const Command* find_command(std::string_view name) {
  for (const Command& c : kCommands)
    if (c.name == name) return &c;
  return nullptr;
}

// Prints an error reply on stderr: the message, and for `ack: done` what each action answered.
void show_error(const json& reply) {
  std::string what = reply.contains("results") ? "not every rule the event matched succeeded" : "unknown error";
  fprintf(stderr, "error: %s\n", (field(reply, "error").is_string() ? text(field(reply, "error")) : what).c_str());
  if (!reply.contains("results")) return;
  for (const auto& r : field(reply, "results"))
    fprintf(stderr, "  %s (%s): %s\n", scalar(field(r, "action")).c_str(), scalar(field(r, "rule")).c_str(),
            flag(field(r, "ok")) ? "ok" : scalar(field(r, "error")).c_str());
}

volatile sig_atomic_t g_interrupted = 0;

// Prints streamed lines until interrupted or the agent goes away.
int stream(Client& conn, bool raw) {
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_interrupted = 1; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  if (!raw) fprintf(stderr, "hostlet-ctl: streaming events until interrupted (Ctrl-C)\n");
  fflush(stdout);
  std::string line;
  while (!g_interrupted) {
    if (!conn.line(line, -1)) break;
    if (raw) {
      printf("%s\n", line.c_str());
      fflush(stdout);
      continue;
    }
    if (!hostlet::control::check_line(line, hostlet::control::kMaxReplyDepth).empty()) continue;
    json m = json::parse(line, nullptr, false);
    if (m.is_discarded()) continue;
    if (m.contains("event")) print_event(field(m, "event"));
    else if (m.contains("dropped"))
      printf("(%s events dropped: this client read too slowly)\n", scalar(field(m, "dropped")).c_str());
  }
  return g_interrupted ? 0 : kExitUnreachable;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path;
  if (const char* env = getenv("HOSTLET_SOCKET"); env && *env) socket_path = env;
  else socket_path = kDefaultSocket;
  bool raw = false;
  unsigned long timeout_s = 60;
  std::vector<std::string> words;  // the command and its arguments
  // Global options go anywhere, before or after the command, as `--opt VALUE`
  // or `--opt=VALUE` (the command's own options too); `--` ends options.
  std::vector<std::string> args;
  bool options_over = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    size_t eq = a.find('=');
    if (!options_over && a.rfind("--", 0) == 0 && a.size() > 2 && eq != std::string::npos) {
      args.push_back(a.substr(0, eq));
      args.push_back(a.substr(eq + 1));
    } else {
      args.push_back(a);
    }
    if (a == "--") options_over = true;
  }
  options_over = false;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& a = args[i];
    if (options_over) {
      words.push_back(a);
    } else if (a == "--") {
      options_over = true;
    } else if (a == "-s" || a == "--socket") {
      if (++i >= args.size()) usage_error(a + " needs a path");
      socket_path = args[i];
    } else if (a == "--json") {
      raw = true;
    } else if (a == "--no-headers") {
      hostlet::ctl::set_headers(false);
    } else if (a == "--timeout") {
      if (++i >= args.size()) usage_error("--timeout needs a number of seconds");
      if (!parse_number(args[i], INT_MAX / 1000, timeout_s))
        usage_error("--timeout: '" + args[i] + "' is not a whole number of seconds");
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "--version") {
      printf("hostlet-ctl %s\n", HOSTLET_VERSION);
      return 0;
    } else if (words.empty() && !a.empty() && a[0] == '-') {
      usage_error("unknown option '" + a + "'");
    } else {
      words.push_back(a);  // the command, then its arguments and options
    }
  }
  if (words.empty()) usage_error("no command");
  const Command* command = find_command(words[0]);
  if (!command) usage_error("unknown command '" + words[0] + "'");
  json req{{"id", 1}};
  std::string err;
  if (!command->build(Args(words.begin() + 1, words.end()), req, err))
    usage_error(std::string(command->name) + ": " + err + " (usage: " + std::string(command->usage) + ")");

  Client conn;
  if (!conn.open(socket_path, err)) {
    fprintf(stderr, "hostlet-ctl: cannot reach the agent at %s: %s\n", socket_path.c_str(), err.c_str());
    return kExitUnreachable;
  }
  signal(SIGPIPE, SIG_IGN);
  std::string line;
  int wait_ms = timeout_s > 0 ? static_cast<int>(timeout_s * 1000) : -1;
  // Who is there? Asked before the command is sent, so that another kind of
  // socket never receives a request it would take for something else.
  // (A refused peer gets its answer and the close at once: the send may fail
  // while that answer still waits to be read.)
  conn.send(hostlet::ctl::hello_request(HOSTLET_VERSION));
  if (!conn.line(line, wait_ms)) {
    if (conn.closed())
      fprintf(stderr, "hostlet-ctl: %s closed the connection without answering\n", socket_path.c_str());
    else fprintf(stderr, "hostlet-ctl: no answer from the agent%s\n", timeout_s > 0 ? " (timed out)" : "");
    return kExitUnreachable;
  }
  hostlet::ctl::Hello hello = hostlet::ctl::read_hello(line);
  if (hello.kind == hostlet::ctl::Hello::refused) {
    fprintf(stderr, "error: %s\n", hello.message.c_str());
    return kExitError;
  }
  if (hello.kind == hostlet::ctl::Hello::not_control) {
    std::string said = hello.message.size() > 200 ? hello.message.substr(0, 200) + "..." : hello.message;
    fprintf(stderr, "hostlet-ctl: %s is not a hostlet control socket (it answered: %s)\n", socket_path.c_str(),
            said.c_str());
    return kExitUnreachable;
  }
  if (std::string note = hostlet::ctl::protocol_note(hello, hostlet::control::kProtocolVersion); !note.empty())
    fprintf(stderr, "hostlet-ctl: note: %s\n", note.c_str());
  if (!conn.send(req)) {
    fprintf(stderr, "hostlet-ctl: the agent closed the connection\n");
    return kExitUnreachable;
  }
  // `ack: none` has no answer but an error: the agent answers what it owes a
  // half-closed connection and closes it, so EOF without a line means published.
  const bool no_answer = req.value("ack", "") == "none";
  if (no_answer) conn.finish_sending();
  if (!conn.line(line, wait_ms)) {
    if (no_answer && conn.closed()) return 0;
    fprintf(stderr, "hostlet-ctl: no answer from the agent%s\n", timeout_s > 0 ? " (timed out)" : "");
    return kExitUnreachable;
  }
  if (std::string why = hostlet::control::check_line(line, hostlet::control::kMaxReplyDepth); !why.empty()) {
    fprintf(stderr, "hostlet-ctl: unreadable answer: it %s\n", why.c_str());
    return kExitUnreachable;
  }
  json reply = json::parse(line, nullptr, false);
  if (reply.is_discarded() || !reply.is_object()) {
    fprintf(stderr, "hostlet-ctl: unreadable answer: %s\n", line.c_str());
    return kExitUnreachable;
  }
  bool ok = flag(field(reply, "ok"));
  if (raw) printf("%s\n", line.c_str());
  else if (!ok) show_error(reply);
  else command->print(reply);
  if (!ok) return kExitError;
  return command->streams ? stream(conn, raw) : 0;
}
