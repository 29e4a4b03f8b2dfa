// hostlet-fleet: the fleet seen through its MQTT broker (the mqtt plugin's
// topics, default prefix hostlet/<host>).
//
//   hostlet-fleet -b HOST:PORT [-u USER] [-P PASSWORD_FILE] [--json] [--timeout SECONDS] COMMAND
//     hosts                                   every host's retained status
//     call (--host H | --group G | --all) ACTION [KEY=VALUE...]
//                                             one answer per host, its latency, and who did not answer
//     events [--host H] [--type GLOB] [--count N]   stream events (until ^C, or N of them)
//
// A command-line tool, so libmosquitto runs on its own network thread here
// (the no-thread rule is the agent's). Answers come back on
// hostlet/replies/<client id>, told apart by correlation data (one request
// per host) or by their "from" (a group call).
#include <fnmatch.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string user, password_file;
  bool as_json = false;
  double timeout_s = 5;
  std::vector<std::string> args;  // the command and its arguments
};

[[noreturn]] void usage(const char* why) {
  if (why) fprintf(stderr, "hostlet-fleet: %s\n", why);
  fprintf(stderr,
          "usage: hostlet-fleet -b HOST:PORT [-u USER] [-P PASSWORD_FILE] [--json] [--timeout SECONDS] COMMAND\n"
          "  hosts                                      the hosts' retained status\n"
          "  call (--host H | --group G | --all) ACTION [KEY=VALUE...]\n"
          "  events [--host H] [--type GLOB] [--count N]\n");
  exit(2);
}

struct Message {
  std::string topic, payload, correlation;
  Clock::time_point at;
};

// One broker connection with a network thread; messages are queued for the caller.
class Session {
 public:
  explicit Session(const Options& o) {
    mosquitto_lib_init();
    id_ = "hostlet-fleet-" + std::to_string(getpid());
    m_ = mosquitto_new(id_.c_str(), true, this);
    if (!m_) fail("mosquitto_new failed");
    mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (!o.user.empty()) {
      std::string password;
      if (!o.password_file.empty()) {
        std::ifstream f(o.password_file);
        if (!f) fail("cannot read " + o.password_file);
        std::getline(f, password);
      }
      mosquitto_username_pw_set(m_, o.user.c_str(), o.password_file.empty() ? nullptr : password.c_str());
    }
    mosquitto_connect_v5_callback_set(m_, [](mosquitto*, void* self, int rc, int, const mosquitto_property*) {
      static_cast<Session*>(self)->set([&](Session& s) { s.connack_ = rc == 0 ? 1 : -rc - 1; });
    });
    mosquitto_subscribe_v5_callback_set(m_,
                                        [](mosquitto*, void* self, int, int, const int*, const mosquitto_property*) {
                                          static_cast<Session*>(self)->set([](Session& s) { s.subacks_++; });
                                        });
    mosquitto_message_v5_callback_set(m_, [](mosquitto*, void* self, const mosquitto_message* msg,
                                             const mosquitto_property* props) {
      Message m{msg->topic, std::string(static_cast<const char*>(msg->payload), static_cast<size_t>(msg->payloadlen)),
                "", Clock::now()};
      void* corr = nullptr;
      uint16_t len = 0;
      if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &len, false)) {
        m.correlation.assign(static_cast<const char*>(corr), len);
        free(corr);
      }
      static_cast<Session*>(self)->set([&](Session& s) { s.queue_.push_back(std::move(m)); });
    });
    int rc = mosquitto_connect(m_, o.host.c_str(), o.port, 30);
    if (rc != MOSQ_ERR_SUCCESS)
      fail("cannot connect to " + o.host + ":" + std::to_string(o.port) + ": " +
           (rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc)));
    mosquitto_loop_start(m_);
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, std::chrono::seconds(10), [&] { return connack_ != 0; })) fail("no CONNACK from the broker");
    if (connack_ < 0) fail(std::string("the broker refused: ") + mosquitto_reason_string(-connack_ - 1));
  }
  ~Session() {
    mosquitto_disconnect(m_);
    mosquitto_loop_stop(m_, false);
    mosquitto_destroy(m_);
    mosquitto_lib_cleanup();
  }
  const std::string& id() const { return id_; }
  void subscribe(const std::string& topic) {
    int before;
    {
      std::lock_guard<std::mutex> l(mu_);
      before = subacks_;
    }
    mosquitto_subscribe_v5(m_, nullptr, topic.c_str(), 1, 0, nullptr);
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, std::chrono::seconds(10), [&] { return subacks_ > before; })) fail("no SUBACK for " + topic);
  }
  void publish(const std::string& topic, const std::string& payload, const std::string& response_topic,
               const std::string& correlation) {
    mosquitto_property* props = nullptr;
    mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, response_topic.c_str());
    mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, correlation.data(),
                                  static_cast<uint16_t>(correlation.size()));
    int rc = mosquitto_publish_v5(m_, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1,
                                  false, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) fail("cannot publish on " + topic + ": " + mosquitto_strerror(rc));
  }
  // The next message, waiting until `until`; nullopt at the deadline.
  std::optional<Message> next(Clock::time_point until) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_until(l, until, [&] { return !queue_.empty(); })) return std::nullopt;
    Message m = std::move(queue_.front());
    queue_.erase(queue_.begin());
    return m;
  }
  [[noreturn]] static void fail(const std::string& why) {
    fprintf(stderr, "hostlet-fleet: %s\n", why.c_str());
    exit(1);
  }

 private:
  template <class F>
  void set(F f) {
    {
      std::lock_guard<std::mutex> l(mu_);
      f(*this);
    }
    cv_.notify_all();
  }
  std::string id_;
  mosquitto* m_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  int connack_ = 0, subacks_ = 0;
  std::vector<Message> queue_;
};

// "hostlet/<host>/..." -> "<host>".
std::string host_of(const std::string& topic_or_prefix) {
  const size_t a = topic_or_prefix.find('/');
  if (a == std::string::npos) return topic_or_prefix;
  const size_t b = topic_or_prefix.find('/', a + 1);
  return topic_or_prefix.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
}

// Every retained status: host -> its JSON. Waits until the flow stops for a moment.
std::map<std::string, json> statuses(Session& s) {
  s.subscribe("hostlet/+/status");
  std::map<std::string, json> out;
  // Retained messages follow the SUBACK at once; 300 ms of silence ends them.
  while (auto m = s.next(Clock::now() + std::chrono::milliseconds(300))) {
    json j = json::parse(m->payload, nullptr, false);
    if (j.is_object()) out[host_of(m->topic)] = j;
  }
  return out;
}

std::string join(const json& a) {
  std::string out;
  if (!a.is_array()) return out;
  for (const auto& v : a) out += (out.empty() ? "" : ",") + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

int cmd_hosts(Session& s, const Options& o) {
  auto all = statuses(s);
  if (o.as_json) {
    json j = json::object();
    for (auto& [h, st] : all) j[h] = st;
    printf("%s\n", j.dump().c_str());
    return 0;
  }
  printf("%-24s %-8s %-10s %-20s %s\n", "HOST", "STATE", "VERSION", "GROUPS", "INSTANCES");
  for (auto& [h, st] : all)
    printf("%-24s %-8s %-10s %-20s %s\n", h.c_str(), st.value("state", "?").c_str(), st.value("version", "-").c_str(),
           join(st.value("groups", json::array())).c_str(), join(st.value("instances", json::array())).c_str());
  return 0;
}

int cmd_call(Session& s, const Options& o) {
  std::string host, group, action;
  bool all = false;
  json attrs = json::object();
  for (size_t i = 1; i < o.args.size(); ++i) {
    const std::string& a = o.args[i];
    if (a == "--host" && i + 1 < o.args.size())
      host = o.args[++i];
    else if (a == "--group" && i + 1 < o.args.size())
      group = o.args[++i];
    else if (a == "--all")
      all = true;
    else if (action.empty())
      action = a;
    else {
      const size_t eq = a.find('=');
      if (eq == std::string::npos || eq == 0) usage(("expected KEY=VALUE, got '" + a + "'").c_str());
      attrs[a.substr(0, eq)] = a.substr(eq + 1);
    }
  }
  if (action.empty()) usage("call: no action");
  if ((!host.empty()) + (!group.empty()) + all != 1) usage("call: give one of --host, --group, --all");

  // Who should answer: the named host, or the online hosts (of the group).
  std::set<std::string> expected;
  if (!host.empty()) {
    expected.insert(host);
  } else {
    for (auto& [h, st] : statuses(s)) {
      if (st.value("state", "") != "online") continue;
      if (all)
        expected.insert(h);
      else
        for (const auto& g : st.value("groups", json::array()))
          if (g == group) expected.insert(h);
    }
  }
  const std::string inbox = "hostlet/replies/" + s.id();
  s.subscribe(inbox);
  std::map<std::string, std::string> correlation_host;  // correlation -> host, one request each
  const Clock::time_point sent = Clock::now();
  json body = {{"attrs", attrs}};
  if (!group.empty()) {
    s.publish("hostlet/group/" + group + "/call/" + action, body.dump(), inbox, "group");
  } else {
    int n = 0;
    for (const auto& h : expected) {
      const std::string corr = std::to_string(++n);
      correlation_host[corr] = h;
      s.publish("hostlet/" + h + "/call/" + action, body.dump(), inbox, corr);
    }
  }
  struct Answer {
    json body;
    double ms;
  };
  std::map<std::string, Answer> answers;
  const Clock::time_point deadline = sent + std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  // Until every expected host answered (with none expected: until the deadline, taking whoever answers).
  auto all_answered = [&] {
    for (const auto& h : expected)
      if (!answers.count(h)) return false;
    return !expected.empty();
  };
  while (!all_answered()) {
    auto m = s.next(deadline);
    if (!m) break;
    json j = json::parse(m->payload, nullptr, false);
    if (!j.is_object()) continue;
    std::string h;
    if (auto it = correlation_host.find(m->correlation); it != correlation_host.end())
      h = it->second;
    else if (j.contains("from") && j["from"].is_string())
      h = host_of(j["from"].get<std::string>());
    if (h.empty() || answers.count(h)) continue;
    answers[h] = {j, std::chrono::duration<double, std::milli>(m->at - sent).count()};
  }
  std::vector<std::string> missing;
  for (const auto& h : expected)
    if (!answers.count(h)) missing.push_back(h);
  bool all_ok = missing.empty();
  for (auto& [h, a] : answers) all_ok = all_ok && a.body.value("ok", false);
  if (o.as_json) {
    json out = {{"answers", json::object()}, {"missing", missing}};
    for (auto& [h, a] : answers) out["answers"][h] = {{"answer", a.body}, {"ms", a.ms}};
    printf("%s\n", out.dump().c_str());
    return all_ok ? 0 : 1;
  }
  printf("%-24s %-5s %10s  %s\n", "HOST", "OK", "LATENCY_MS", "RESULT");
  for (auto& [h, a] : answers) {
    std::string result;
    if (a.body.value("ok", false)) {
      const json attrs = a.body.value("attrs", json::object());  // items() of a temporary would dangle
      for (auto& [k, v] : attrs.items())
        result += (result.empty() ? "" : " ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      if (a.body.contains("data")) result += (result.empty() ? "" : " ") + std::string("data=") + a.body["data"].dump();
    } else {
      result = a.body.value("error", "");
    }
    printf("%-24s %-5s %10.1f  %s\n", h.c_str(), a.body.value("ok", false) ? "yes" : "no", a.ms, result.c_str());
  }
  for (const auto& h : missing) printf("%-24s %-5s %10s  no answer within %.1f s\n", h.c_str(), "-", "-", o.timeout_s);
  return all_ok ? 0 : 1;
}

int cmd_events(Session& s, const Options& o) {
  std::string host = "+", type_glob = "*";
  long count = -1;
  for (size_t i = 1; i < o.args.size(); ++i) {
    const std::string& a = o.args[i];
    if (a == "--host" && i + 1 < o.args.size())
      host = o.args[++i];
    else if (a == "--type" && i + 1 < o.args.size())
      type_glob = o.args[++i];
    else if (a == "--count" && i + 1 < o.args.size())
      count = std::stol(o.args[++i]);
    else
      usage(("events: unknown argument '" + a + "'").c_str());
  }
  s.subscribe("hostlet/" + host + "/events/#");
  fprintf(stderr, "hostlet-fleet: streaming hostlet/%s/events/# (type %s)\n", host.c_str(), type_glob.c_str());
  for (long n = 0; count < 0 || n < count;) {
    auto m = s.next(Clock::now() + std::chrono::hours(24));
    if (!m) continue;
    json j = json::parse(m->payload, nullptr, false);
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) continue;
    const std::string type = j["type"];
    if (fnmatch(type_glob.c_str(), type.c_str(), 0) != 0) continue;
    ++n;
    if (o.as_json) {
      printf("{\"host\":%s,\"event\":%s}\n", json(host_of(m->topic)).dump().c_str(), m->payload.c_str());
    } else {
      std::string attrs;
      const json ev_attrs = j.value("attrs", json::object());
      for (auto& [k, v] : ev_attrs.items()) attrs += " " + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
      printf("%s %s %s%s\n", host_of(m->topic).c_str(), j.value("source", "?").c_str(), type.c_str(), attrs.c_str());
    }
    fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (!o.args.empty())
      o.args.push_back(a);
    else if (a == "-b" || a == "--broker") {
      std::string b = value();
      const size_t colon = b.rfind(':');
      if (colon == std::string::npos) usage("-b: expected HOST:PORT");
      o.host = b.substr(0, colon);
      if (!o.host.empty() && o.host.front() == '[' && o.host.back() == ']')
        o.host = o.host.substr(1, o.host.size() - 2);
      o.port = atoi(b.c_str() + colon + 1);
      if (o.port <= 0 || o.port > 65535) usage("-b: bad port");
    } else if (a == "-u")
      o.user = value();
    else if (a == "-P")
      o.password_file = value();
    else if (a == "--json")
      o.as_json = true;
    else if (a == "--timeout")
      o.timeout_s = atof(value().c_str());
    else if (a == "-h" || a == "--help")
      usage(nullptr);
    else if (a[0] == '-')
      usage(("unknown option " + a).c_str());
    else
      o.args.push_back(a);
  }
  if (o.args.empty()) usage("no command");
  if (o.timeout_s <= 0) usage("--timeout must be more than 0");
  const std::string& cmd = o.args[0];
  static const std::map<std::string, int (*)(Session&, const Options&)> kCommands = {
      {"hosts", cmd_hosts}, {"call", cmd_call}, {"events", cmd_events}};
  auto it = kCommands.find(cmd);
  if (it == kCommands.end()) usage(("unknown command '" + cmd + "'").c_str());
  Session s(o);
  return it->second(s, o);
}
