// End-to-end: a real mosquitto (started here on a free loopback port with a
// generated config, stopped by pid), the real agent with the mqtt plugin,
// and MQTT clients of the test's own (libmosquitto on its own thread: the
// rule that the plugin runs on the agent's loop is the plugin's, not the
// test's). Events come in through the control socket's notify.
#include <catch2/catch.hpp>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <set>

#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

std::string user_name() {
  passwd* pw = getpwuid(getuid());
  REQUIRE(pw);
  return pw->pw_name;
}

bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return ok;
}

// mosquitto on 127.0.0.1:port. Without persistence a restart forgets
// retained messages and sessions (what the plugin must put back is its own
// job); with it, the broker saves its state every second, so that a
// subscriber's persistent session outlives a SIGKILL once it has been saved.
class Broker {
 public:
  explicit Broker(bool persist = false, bool anonymous = true) : port_(free_port()) {
    // Also a Unix socket listener (mosquitto 2.0: port 0 and a path).
    std::string conf = "listener " + std::to_string(port_) + " 127.0.0.1\n" + "listener 0 " + socket_path() + "\n" +
                       std::string(anonymous ? "allow_anonymous true\n" : "allow_anonymous false\n") +
                       // As root mosquitto would switch to user mosquitto, which cannot write our temp dir.
                       "user " + user_name() +
                       "\n"
                       "log_dest stderr\n"
                       "log_type error\nlog_type warning\nlog_type notice\n"
                       // Room for what a persistent subscriber is owed while it is away (default 1000).
                       "max_queued_messages 100000\n";
    if (persist)
      conf += "persistence true\npersistence_location " + dir_.path() + "/\nautosave_interval 1\n";
    else
      conf += "persistence false\n";
    conf_ = dir_.write("mosquitto.conf", conf);
    start();
  }
  // Waits until the broker has saved its state (a persistent broker).
  void wait_saved() {
    const std::string db = dir_ / "mosquitto.db";
    REQUIRE(wait_until([&] { return access(db.c_str(), F_OK) == 0; }, 10s));
    std::this_thread::sleep_for(2500ms);  // at least one more save, after what the caller set up
  }
  void start() {
    proc_ = std::make_unique<Process>(std::vector<std::string>{env_path("MOSQUITTO"), "-c", conf_});
    REQUIRE(wait_until([&] { return port_open(port_); }, 20s));
  }
  void kill() {
    auto st = proc_->stop(SIGKILL);
    REQUIRE(st);
    proc_.reset();
  }
  Process& process() { return *proc_; }
  int port() const { return port_; }
  std::string socket_path() const { return dir_ / "mqtt.sock"; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  TempDir dir_;
  int port_;
  std::string conf_;
  std::unique_ptr<Process> proc_;
};

struct Received {
  std::string topic, payload, correlation;
  bool retain = false;
  json body() const { return json::parse(payload, nullptr, false); }
};

// A test-side MQTT client (its own network thread).
class Client {
 public:
  // clean = false: a persistent session (MQTT 3.1.1 clean session off),
  // which the broker keeps, queueing QoS 1 messages, while the client is away;
  // the client's network thread reconnects by itself after a broker restart.
  explicit Client(int port, int protocol = MQTT_PROTOCOL_V5, bool clean = true) {
    static int n = 0;
    id_ = "test-" + std::to_string(getpid()) + "-" + std::to_string(++n);
    m_ = mosquitto_new(id_.c_str(), clean, this);
    REQUIRE(m_);
    mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, protocol);
    mosquitto_reconnect_delay_set(m_, 1, 1, false);
    mosquitto_connect_v5_callback_set(m_, [](mosquitto*, void* self, int rc, int, const mosquitto_property*) {
      auto* c = static_cast<Client*>(self);
      std::lock_guard<std::mutex> l(c->mu_);
      c->connack_ = rc == 0 ? 1 : -1;
      if (rc == 0) c->connects_++;
    });
    mosquitto_subscribe_v5_callback_set(m_,
                                        [](mosquitto*, void* self, int, int, const int*, const mosquitto_property*) {
                                          auto* c = static_cast<Client*>(self);
                                          std::lock_guard<std::mutex> l(c->mu_);
                                          c->subacks_++;
                                        });
    mosquitto_message_v5_callback_set(
        m_, [](mosquitto*, void* self, const mosquitto_message* msg, const mosquitto_property* props) {
          auto* c = static_cast<Client*>(self);
          Received r;
          r.topic = msg->topic;
          r.payload.assign(static_cast<const char*>(msg->payload), static_cast<size_t>(msg->payloadlen));
          r.retain = msg->retain;
          void* corr = nullptr;
          uint16_t len = 0;
          if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &len, false)) {
            r.correlation.assign(static_cast<const char*>(corr), len);
            free(corr);
          }
          std::lock_guard<std::mutex> l(c->mu_);
          c->got_.push_back(std::move(r));
        });
    REQUIRE(mosquitto_connect(m_, "127.0.0.1", port, 60) == MOSQ_ERR_SUCCESS);
    REQUIRE(mosquitto_loop_start(m_) == MOSQ_ERR_SUCCESS);
    REQUIRE(wait_until([&] {
      std::lock_guard<std::mutex> l(mu_);
      return connack_ != 0;
    }));
    std::lock_guard<std::mutex> l(mu_);
    REQUIRE(connack_ == 1);
  }
  ~Client() {
    mosquitto_disconnect(m_);
    mosquitto_loop_stop(m_, true);
    mosquitto_destroy(m_);
  }
  void subscribe(const std::string& topic, int qos = 1) {
    int before;
    {
      std::lock_guard<std::mutex> l(mu_);
      before = subacks_;
    }
    REQUIRE(mosquitto_subscribe_v5(m_, nullptr, topic.c_str(), qos, 0, nullptr) == MOSQ_ERR_SUCCESS);
    REQUIRE(wait_until([&] {
      std::lock_guard<std::mutex> l(mu_);
      return subacks_ > before;
    }));
  }
  void publish(const std::string& topic, const std::string& payload, const std::string& response_topic = "",
               const std::string& correlation = "") {
    mosquitto_property* props = nullptr;
    if (!response_topic.empty())
      mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, response_topic.c_str());
    if (!correlation.empty())
      mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, correlation.data(),
                                    static_cast<uint16_t>(correlation.size()));
    int rc = mosquitto_publish_v5(m_, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1,
                                  false, props);
    mosquitto_property_free_all(&props);
    REQUIRE(rc == MOSQ_ERR_SUCCESS);
  }
  std::vector<Received> messages() {
    std::lock_guard<std::mutex> l(mu_);
    return got_;
  }
  std::vector<Received> on(const std::string& topic) {
    std::vector<Received> out;
    for (auto& r : messages())
      if (r.topic == topic) out.push_back(r);
    return out;
  }
  // The first message on `topic` for which pred holds, waiting up to timeout.
  std::optional<Received> wait_for(const std::string& topic, const std::function<bool(const Received&)>& pred,
                                   std::chrono::milliseconds timeout = 15s) {
    std::optional<Received> found;
    wait_until(
        [&] {
          for (auto& r : on(topic))
            if (pred(r)) {
              found = r;
              return true;
            }
          return false;
        },
        timeout);
    return found;
  }
  size_t size() {
    std::lock_guard<std::mutex> l(mu_);
    return got_.size();
  }
  int connects() {
    std::lock_guard<std::mutex> l(mu_);
    return connects_;
  }
  void clear() {
    std::lock_guard<std::mutex> l(mu_);
    got_.clear();
  }

 private:
  std::string id_;
  mosquitto* m_ = nullptr;
  std::mutex mu_;
  int connack_ = 0, subacks_ = 0, connects_ = 0;
  std::vector<Received> got_;
};

std::string plugin() { return env_path("HOSTLET_BUILD_ROOT") + "/plugins/mqtt/mqtt.so"; }

// The agent with one mqtt instance "mqtt" on `broker`, prefix hostlet/h1; `extra` is more of its config.
struct Fixture {
  TempDir dir;
  std::unique_ptr<Agent> agent;
  static constexpr const char* kPublish =
      "[{source: gen, type: \"test.*\", qos: 1}, {source: mqtt, type: \"mqtt.*\", qos: 1}]";
  explicit Fixture(const Broker& broker, const std::string& extra = "", const std::string& publish = kPublish,
                   const std::string& address = "", const std::string& host = "h1",
                   const std::string& groups = "[web]") {
    std::string config =
        "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
        "plugins:\n"
        "  - name: mqtt\n"
        "    plugin: " +
        plugin() +
        "\n"
        "    config:\n"
        "      broker: \"" +
        (address.empty() ? broker.address() : address) +
        "\"\n"
        "      prefix: hostlet/" +
        host +
        "\n"
        "      client_id: " +
        host +
        "\n"
        "      keepalive: 5s\n"
        "      reconnect_min: 50ms\n"
        "      reconnect_max: 500ms\n"
        "      connect_timeout: 2s\n"
        "      publish: " +
        publish +
        "\n"
        "      allow: [\"mqtt.stat*\"]\n"
        "      groups: " +
        groups + "\n" + extra;
    agent = std::make_unique<Agent>(dir, config);
    REQUIRE(agent->start());
  }
  ~Fixture() {
    if (agent && agent->process().running()) {
      auto st = agent->stop();
      CHECK(st);
    }
  }
  json status() {
    Run r = agent->ctl({"--json", "call", "mqtt.status"});
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out)["attrs"];
  }
  bool connected() {
    Run r = agent->ctl({"--json", "call", "mqtt.status"});
    return r.exit_code == 0 && json::parse(r.out)["attrs"]["connected"] == "true";
  }
  // Publishes `n` events test.tick from source gen with attrs seq=first..first+n-1; returns their event ids.
  std::vector<uint64_t> notify(int first, int n) {
    LineClient c(agent->control_socket());
    std::vector<uint64_t> ids;
    for (int i = first; i < first + n; ++i) {
      json req = {{"id", i},
                  {"cmd", "notify"},
                  {"source", "gen"},
                  {"type", "test.tick"},
                  {"attrs", {{"seq", std::to_string(i)}}}};
      REQUIRE(c.send_line(req.dump()));
      auto line = c.recv_line();
      REQUIRE(line);
      json reply = json::parse(*line);
      REQUIRE(reply["ok"] == true);
      ids.push_back(reply["event"].get<uint64_t>());
    }
    return ids;
  }
};

std::set<uint64_t> event_ids(Client& c) {
  std::set<uint64_t> ids;
  for (auto& r : c.on("hostlet/h1/events/gen/test.tick")) ids.insert(r.body()["id"].get<uint64_t>());
  return ids;
}

}  // namespace

TEST_CASE("mqtt: the retained status is online with version and instances, and the will turns it offline") {
  Broker broker;
  Fixture f(broker);
  Client watcher(broker.port());
  watcher.subscribe("hostlet/h1/status");
  auto online = watcher.wait_for("hostlet/h1/status", [](const Received& r) { return r.body()["state"] == "online"; });
  REQUIRE(online);
  json s = online->body();
  CHECK(s["client_id"] == "h1");
  CHECK(s["version"].is_string());
  CHECK(s["instances"] == json::array({"mqtt"}));
  CHECK(s["started"].get<double>() > 1.6e9);
  {
    Client late(broker.port());  // a subscriber that comes later gets it retained
    late.subscribe("hostlet/h1/status");
    auto kept = late.wait_for("hostlet/h1/status", [](const Received& r) { return r.retain; });
    REQUIRE(kept);
    CHECK(kept->body()["state"] == "online");
  }
  // SIGKILL: no goodbye, the broker's last will says it.
  f.agent->process().signal(SIGKILL);
  auto offline = watcher.wait_for(
      "hostlet/h1/status", [](const Received& r) { return r.body()["state"] == "offline"; }, 20s);
  REQUIRE(offline);
  CHECK(offline->body()["client_id"] == "h1");
  Client after(broker.port());
  after.subscribe("hostlet/h1/status");
  auto kept = after.wait_for("hostlet/h1/status", [](const Received& r) { return r.retain; });
  REQUIRE(kept);
  CHECK(kept->body()["state"] == "offline");
}

TEST_CASE("mqtt: events a publish entry selects arrive as JSON on events/<source>/<type>; others do not") {
  Broker broker;
  Fixture f(broker);
  Client sub(broker.port());
  sub.subscribe("hostlet/h1/events/#");
  REQUIRE(wait_until([&] { return f.connected(); }));
  auto ids = f.notify(1, 3);
  Run other = f.agent->ctl({"notify", "--source", "gen", "other.kind", "x=1"});  // no entry matches
  REQUIRE(other.exit_code == 0);
  REQUIRE(wait_until([&] { return event_ids(sub).size() == 3; }));
  auto got = sub.on("hostlet/h1/events/gen/test.tick");
  REQUIRE(got.size() == 3);
  json first = got[0].body();
  CHECK(first["id"] == ids[0]);
  CHECK(first["source"] == "gen");
  CHECK(first["type"] == "test.tick");
  CHECK(first["attrs"] == json{{"seq", "1"}});
  CHECK(first["time"].get<double>() > 1.6e9);
  std::this_thread::sleep_for(300ms);
  for (auto& r : sub.messages()) CHECK(r.topic.find("other.kind") == std::string::npos);
  // Rules can publish too: the publish action goes through the outbox.
  Run pub = f.agent->ctl({"call", "mqtt.publish", "topic=hostlet/h1/events/custom", "payload=hello", "qos=1"});
  REQUIRE(pub.exit_code == 0);
  auto custom = sub.wait_for("hostlet/h1/events/custom", [](const Received&) { return true; });
  REQUIRE(custom);
  CHECK(custom->payload == "hello");
  // QoS 0 leaves the outbox once written, retained ones are kept by the broker.
  Run pub0 =
      f.agent->ctl({"call", "mqtt.publish", "topic=hostlet/h1/events/kept", "payload=zero", "qos=0", "retain=true"});
  REQUIRE(pub0.exit_code == 0);
  auto zero = sub.wait_for("hostlet/h1/events/kept", [](const Received&) { return true; });
  REQUIRE(zero);
  CHECK(zero->payload == "zero");
  {
    Client late(broker.port());
    late.subscribe("hostlet/h1/events/kept");
    auto kept = late.wait_for("hostlet/h1/events/kept", [](const Received& r) { return r.retain; });
    REQUIRE(kept);
  }
  REQUIRE(wait_until([&] { return f.status()["outbox"] == "0"; }));
  CHECK(f.status()["sent"] == "5");  // 3 events, 2 published messages (the status is not the outbox's)
  // The counters are metrics too.
  Run metrics = f.agent->ctl({"metrics"});
  REQUIRE(metrics.exit_code == 0);
  CHECK(metrics.out.find("hostlet_mqtt_connected{instance=\"mqtt\"} 1") != std::string::npos);
  CHECK(metrics.out.find("hostlet_mqtt_messages_sent_total{instance=\"mqtt\"} 5") != std::string::npos);
  CHECK(metrics.out.find("hostlet_mqtt_requests_total{instance=\"mqtt\",result=\"refused\"} 0") != std::string::npos);
  Run bad = f.agent->ctl({"call", "mqtt.publish", "topic=a/#"});
  CHECK(bad.exit_code != 0);
  CHECK((bad.out + bad.err).find("'+' or '#'") != std::string::npos);
}

TEST_CASE("mqtt: a call through the broker answers on the MQTT 5 response topic with the correlation data") {
  Broker broker;
  Fixture f(broker);
  REQUIRE(wait_until([&] { return f.connected(); }));
  Client caller(broker.port());
  caller.subscribe("test/inbox/#");
  caller.publish("hostlet/h1/call/mqtt.status", R"({"id": 7})", "test/inbox/1", "corr-abc");
  auto ans = caller.wait_for("test/inbox/1", [](const Received&) { return true; });
  REQUIRE(ans);
  CHECK(ans->correlation == "corr-abc");
  json a = ans->body();
  CHECK(a["ok"] == true);
  CHECK(a["id"] == 7);
  CHECK(a["attrs"]["connected"] == "true");
  CHECK(a["attrs"]["prefix"] == "hostlet/h1");

  SECTION("an action outside the allow-list is refused, and counted") {
    caller.publish("hostlet/h1/call/mqtt.publish", R"({"attrs": {"topic": "x/y"}})", "test/inbox/2", "c2");
    auto no = caller.wait_for("test/inbox/2", [](const Received&) { return true; });
    REQUIRE(no);
    CHECK(no->correlation == "c2");
    CHECK(no->body()["ok"] == false);
    CHECK(no->body()["error"].get<std::string>().find("not allowed") != std::string::npos);
    CHECK(f.status()["requests_refused"] == "1");
  }
  SECTION("malformed JSON gets an error answer, and the agent keeps serving") {
    caller.publish("hostlet/h1/call/mqtt.status", "{nope", "test/inbox/3", "c3");
    auto bad = caller.wait_for("test/inbox/3", [](const Received&) { return true; });
    REQUIRE(bad);
    CHECK(bad->body()["ok"] == false);
    CHECK(bad->body()["error"] == "malformed request: not valid JSON");
    caller.publish("hostlet/h1/call/mqtt.status", std::string(70000, 'x'), "test/inbox/4", "c4");
    auto big = caller.wait_for("test/inbox/4", [](const Received&) { return true; });
    REQUIRE(big);
    CHECK(big->body()["error"].get<std::string>().find("request too large") == 0);
    caller.publish("hostlet/h1/call/mqtt.status", std::string(10 << 20, ' '), "test/inbox/4b", "c4b");  // 10 MiB
    auto huge = caller.wait_for(
        "test/inbox/4b", [](const Received&) { return true; }, 30s);
    REQUIRE(huge);
    CHECK(huge->correlation == "c4b");
    CHECK(huge->body()["error"] == "request too large: 10485760 bytes, max_request is 65536");
    caller.publish("hostlet/h1/call/mqtt.status", "{}");  // nowhere to answer: not run, counted
    REQUIRE(wait_until([&] { return f.status()["requests_without_reply_topic"] == "1"; }));
    caller.publish("hostlet/h1/call/mqtt.status", "", "test/inbox/5", "c5");
    auto again = caller.wait_for("test/inbox/5", [](const Received&) { return true; });
    REQUIRE(again);
    CHECK(again->body()["ok"] == true);
    json st = f.status();
    CHECK(st["requests_malformed"] == "1");
    CHECK(st["requests_too_large"] == "2");
  }
  SECTION("a group topic reaches the host") {
    caller.publish("hostlet/group/web/call/mqtt.status", "{}", "test/inbox/6", "c6");
    auto g = caller.wait_for("test/inbox/6", [](const Received&) { return true; });
    REQUIRE(g);
    CHECK(g->body()["ok"] == true);
    caller.publish("hostlet/group/db/call/mqtt.status", "{}", "test/inbox/7", "c7");  // not its group
    std::this_thread::sleep_for(500ms);
    CHECK(caller.on("test/inbox/7").empty());
  }
}

TEST_CASE("mqtt: with MQTT 3.1.1 the answer goes to the request's reply_to") {
  Broker broker;
  Fixture f(broker, "      protocol: \"3.1.1\"\n");
  REQUIRE(wait_until([&] { return f.connected(); }));
  Client caller(broker.port(), MQTT_PROTOCOL_V311);
  caller.subscribe("test/inbox311");
  caller.publish("hostlet/h1/call/mqtt.status", R"({"id": "q1", "reply_to": "test/inbox311"})");
  auto ans = caller.wait_for("test/inbox311", [](const Received&) { return true; });
  REQUIRE(ans);
  CHECK(ans->body()["ok"] == true);
  CHECK(ans->body()["id"] == "q1");
  caller.publish("hostlet/h1/call/mqtt.publish", R"({"reply_to": "test/inbox311", "id": "q2"})");
  auto refused = caller.wait_for("test/inbox311", [](const Received& r) { return r.body()["id"] == "q2"; });
  REQUIRE(refused);
  CHECK(refused->body()["ok"] == false);
}

TEST_CASE("mqtt: 20 000 QoS 1 events across five broker SIGKILLs and restarts all arrive, by id") {
  Broker broker(true);
  // The subscriber's persistent session survives the broker's restarts (it
  // was saved before the first one), so it misses nothing whichever of it
  // and the agent reconnects first.
  Client sub(broker.port(), MQTT_PROTOCOL_V311, false);
  sub.subscribe("hostlet/h1/events/gen/test.tick");
  broker.wait_saved();
  Fixture f(broker);
  REQUIRE(wait_until([&] { return f.connected(); }));
  std::set<uint64_t> want;
  auto all_arrived = [&] {
    if (sub.size() < want.size()) return false;  // cheap first: it only hears test.tick
    auto got = event_ids(sub);
    for (uint64_t id : want)
      if (!got.count(id)) return false;
    return true;
  };
  for (uint64_t id : f.notify(1, 200)) want.insert(id);
  REQUIRE(wait_until(all_arrived, 30s));
  const int rounds = 5;
  for (int round = 1; round <= rounds; ++round) {
    CAPTURE(round);
    broker.kill();
    // Accepted while the broker is away: they wait in the outbox.
    for (uint64_t id : f.notify(10000 * round, 3960)) want.insert(id);
    REQUIRE(wait_until([&] { return !f.connected(); }, 20s));
    CHECK(std::stoi(f.status()["outbox"].get<std::string>()) >= 3960);
    broker.start();
    REQUIRE(wait_until([&] { return f.connected(); }, 20s));
    REQUIRE(wait_until(all_arrived, 60s));
  }
  REQUIRE(wait_until([&] { return f.status()["outbox"] == "0"; }, 20s));  // every PUBACK came
  CHECK(want.size() == 20000);
  json st = f.status();
  CHECK(st["dropped"] == "0");
  CHECK(st["connects"] == std::to_string(rounds + 1));
  CHECK(st["disconnects"] == std::to_string(rounds));
  // The agent subscribed again on each CONNACK: a call answers.
  Client caller(broker.port());
  caller.subscribe("test/inbox");
  caller.publish("hostlet/h1/call/mqtt.status", "{}", "test/inbox", "after");
  auto ans = caller.wait_for("test/inbox", [](const Received&) { return true; });
  REQUIRE(ans);
  CHECK(ans->correlation == "after");
  CHECK(ans->body()["ok"] == true);
}

TEST_CASE("mqtt: a broker stopped (SIGSTOP) for longer than the keepalive: the agent reconnects, nothing lost") {
  Broker broker;
  Client sub(broker.port());  // keepalive 60 s: its connection outlives the stop
  sub.subscribe("hostlet/h1/events/gen/test.tick");
  Fixture f(broker);
  REQUIRE(wait_until([&] { return f.connected(); }));
  std::set<uint64_t> want;
  for (uint64_t id : f.notify(1, 100)) want.insert(id);
  broker.process().signal(SIGSTOP);
  for (uint64_t id : f.notify(1000, 400)) want.insert(id);
  // keepalive 5 s: the agent gives the connection up after at most two of them.
  REQUIRE(wait_until([&] { return !f.connected(); }, 30s));
  broker.process().signal(SIGCONT);
  REQUIRE(wait_until([&] { return f.connected(); }, 30s));
  for (uint64_t id : f.notify(5000, 100)) want.insert(id);
  REQUIRE(wait_until(
      [&] {
        auto got = event_ids(sub);
        for (uint64_t id : want)
          if (!got.count(id)) return false;
        return true;
      },
      40s));
  CHECK(f.status()["dropped"] == "0");
  CHECK(sub.connects() == 1);  // the subscriber's view was never interrupted
}

TEST_CASE("mqtt: a small outbox drops the oldest while the broker is away, counts them exactly and says so") {
  Broker broker(true);
  Client sub(broker.port(), MQTT_PROTOCOL_V311, false);
  sub.subscribe("hostlet/h1/events/gen/test.tick");
  broker.wait_saved();
  // Only the generated events go out, so that the drop reports (events
  // themselves) take no room in the outbox and the count is exactly 30.
  Fixture f(broker, "      outbox: 50\n      inflight: 10\n", "[{source: gen, type: \"test.*\", qos: 1}]");
  REQUIRE(wait_until([&] { return f.connected(); }));
  broker.kill();
  REQUIRE(wait_until([&] { return !f.connected(); }, 20s));
  f.notify(1, 80);  // 30 too many
  json st = f.status();
  CHECK(st["dropped"] == "30");
  CHECK(st["outbox"] == "50");
  broker.start();
  REQUIRE(wait_until([&] { return f.connected(); }, 20s));
  REQUIRE(wait_until([&] { return sub.on("hostlet/h1/events/gen/test.tick").size() >= 50; }, 30s));
  REQUIRE(wait_until([&] { return f.status()["outbox"] == "0"; }, 20s));
  std::this_thread::sleep_for(500ms);
  std::set<int> seqs;
  for (auto& r : sub.on("hostlet/h1/events/gen/test.tick"))
    seqs.insert(std::stoi(r.body()["attrs"]["seq"].get<std::string>()));
  std::set<int> newest;
  for (int i = 31; i <= 80; ++i) newest.insert(i);
  CHECK(seqs == newest);  // the oldest 30 went
  CHECK(f.status()["dropped"] == "30");
  // The drop is reported (one report per 200 ms at most: the last names the total).
  REQUIRE(wait_until([&] { return f.agent->log().find("(30 in all)") != std::string::npos; }));
}

TEST_CASE("mqtt: requests beyond an origin's burst are answered 'rate limited' and counted") {
  Broker broker;
  Fixture f(broker, "      rate: 0.01\n      burst: 2\n");
  REQUIRE(wait_until([&] { return f.connected(); }));
  Client caller(broker.port());
  caller.subscribe("test/inbox/#");
  for (int i = 1; i <= 3; ++i)
    caller.publish("hostlet/h1/call/mqtt.status", "{\"id\": " + std::to_string(i) + "}", "test/inbox/a");
  REQUIRE(wait_until([&] { return caller.on("test/inbox/a").size() == 3; }));
  int ok = 0, limited = 0;
  for (auto& r : caller.on("test/inbox/a")) {
    json b = r.body();
    if (b["ok"] == true)
      ok++;
    else if (b["error"].get<std::string>().find("rate limited") == 0)
      limited++;
  }
  CHECK(ok == 2);
  CHECK(limited == 1);
  // Another origin has its own bucket.
  caller.publish("hostlet/h1/call/mqtt.status", "{}", "test/inbox/b");
  auto other = caller.wait_for("test/inbox/b", [](const Received&) { return true; });
  REQUIRE(other);
  CHECK(other->body()["ok"] == true);
  CHECK(f.status()["requests_rate_limited"] == "1");
}

TEST_CASE("mqtt: a broker given by name is resolved off the loop and reached") {
  Broker broker;
  Fixture f(broker, "", Fixture::kPublish, "localhost:" + std::to_string(broker.port()));
  REQUIRE(wait_until([&] { return f.connected(); }, 20s));
  Client watcher(broker.port());
  watcher.subscribe("hostlet/h1/status");
  REQUIRE(watcher.wait_for("hostlet/h1/status", [](const Received& r) { return r.body()["state"] == "online"; }));
}

TEST_CASE("mqtt: a broker that refuses the connection is retried with backoff, not in a tight loop") {
  Broker broker(false, false);  // no anonymous clients: CONNACK "not authorized"
  Fixture f(broker);
  auto refusals = [&] {
    const std::string log = f.agent->log();
    size_t n = 0;
    for (size_t at = log.find("the broker refused the connection"); at != std::string::npos;
         at = log.find("the broker refused the connection", at + 1))
      n++;
    return n;
  };
  REQUIRE(wait_until([&] { return refusals() >= 2; }, 20s));
  CHECK(f.agent->log().find("refused: ") != std::string::npos);
  std::this_thread::sleep_for(3s);
  // reconnect_max 500ms: some 6 to 12 attempts in 3 s; a loop without backoff makes thousands.
  CHECK(refusals() < 60);
  CHECK_FALSE(f.connected());
  CHECK(f.agent->process().running());
}

TEST_CASE("mqtt: a reload hands the outbox to the new version: nothing accepted is lost") {
  Broker broker(true);
  Client sub(broker.port(), MQTT_PROTOCOL_V311, false);
  sub.subscribe("hostlet/h1/events/gen/test.tick");
  broker.wait_saved();
  Fixture f(broker);
  REQUIRE(wait_until([&] { return f.connected(); }));
  broker.kill();
  REQUIRE(wait_until([&] { return !f.connected(); }, 20s));
  std::set<uint64_t> want;
  for (uint64_t id : f.notify(1, 150)) want.insert(id);
  Run reload = f.agent->ctl({"reload", "mqtt"});
  REQUIRE(reload.exit_code == 0);
  CHECK(f.agent->log().find("handing 150 messages to the next version") != std::string::npos);
  REQUIRE(wait_until(
      [&] { return f.agent->log().find("took 150 messages from the previous version") != std::string::npos; }));
  CHECK(f.status()["outbox"] == "150");
  for (uint64_t id : f.notify(500, 50)) want.insert(id);  // the new version's own, after them
  broker.start();
  REQUIRE(wait_until([&] { return f.connected(); }, 20s));
  REQUIRE(wait_until(
      [&] {
        auto got = event_ids(sub);
        for (uint64_t id : want)
          if (!got.count(id)) return false;
        return true;
      },
      30s));
  REQUIRE(wait_until([&] { return f.status()["outbox"] == "0"; }, 20s));
  // In order: the handed-over events first.
  std::vector<int> seqs;
  for (auto& r : sub.on("hostlet/h1/events/gen/test.tick"))
    seqs.push_back(std::stoi(r.body()["attrs"]["seq"].get<std::string>()));
  REQUIRE(seqs.size() >= 200);
  CHECK(std::is_sorted(seqs.begin(), seqs.end()));
}

TEST_CASE("fleet: three agents on one broker: hosts, a call to all, a group call, a refusal, events") {
  Broker broker;
  Fixture h1(broker, "", Fixture::kPublish, "", "h1", "[web]");
  Fixture h2(broker, "", Fixture::kPublish, "", "h2", "[web]");
  Fixture h3(broker, "", Fixture::kPublish, "", "h3", "[db]");
  for (Fixture* f : {&h1, &h2, &h3}) REQUIRE(wait_until([&] { return f->connected(); }));
  const std::string fleet = env_path("HOSTLET_FLEET");
  auto run_fleet = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {fleet, "-b", broker.address(), "--timeout", "5"});
    return run(args);
  };
  Run hosts = run_fleet({"--json", "hosts"});
  REQUIRE(hosts.exit_code == 0);
  json hs = json::parse(hosts.out);
  for (const char* h : {"h1", "h2", "h3"}) CHECK(hs[h]["state"] == "online");
  CHECK(hs["h3"]["groups"] == json::array({"db"}));
  Run table = run_fleet({"hosts"});
  CHECK(table.out.find("h2") != std::string::npos);

  Run all = run_fleet({"--json", "call", "--all", "mqtt.status"});
  CAPTURE(all.out, all.err);
  REQUIRE(all.exit_code == 0);
  json a = json::parse(all.out);
  CHECK(a["answers"].size() == 3);
  CHECK(a["missing"].empty());
  for (const char* h : {"h1", "h2", "h3"}) {
    CHECK(a["answers"][h]["answer"]["ok"] == true);
    CHECK(a["answers"][h]["answer"]["attrs"]["prefix"] == std::string("hostlet/") + h);
    CHECK(a["answers"][h]["ms"].get<double>() >= 0);
  }

  Run web = run_fleet({"--json", "call", "--group", "web", "mqtt.status"});
  REQUIRE(web.exit_code == 0);
  json w = json::parse(web.out);
  CHECK(w["answers"].size() == 2);
  CHECK(w["answers"].contains("h1"));
  CHECK(w["answers"].contains("h2"));
  CHECK_FALSE(w["answers"].contains("h3"));

  Run refused = run_fleet({"call", "--host", "h3", "mqtt.publish", "topic=x/y"});
  CHECK(refused.exit_code == 1);
  CHECK(refused.out.find("not allowed") != std::string::npos);

  // A host that is gone: listed as not answering.
  h2.agent->process().signal(SIGKILL);
  REQUIRE(wait_until([&] { return json::parse(run_fleet({"--json", "hosts"}).out)["h2"]["state"] == "offline"; }, 20s));
  Run missing = run_fleet({"--timeout", "1", "call", "--host", "h2", "mqtt.status"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.out.find("no answer within") != std::string::npos);

  // Events from every host, filtered by type.
  Process stream({fleet, "-b", broker.address(), "events", "--type", "test.*", "--count", "2"});
  // Its subscription must be up, or the events below pass it by.
  REQUIRE(wait_until([&] { return stream.err().find("streaming hostlet/+/events/#") != std::string::npos; }));
  REQUIRE(h1.agent->ctl({"notify", "--source", "gen", "other.kind"}).exit_code == 0);
  h1.notify(1, 1);
  h3.notify(2, 1);
  auto st = stream.wait(20s);
  REQUIRE(st);
  CHECK(WIFEXITED(*st));
  CHECK(stream.out().find("h1 gen test.tick seq=1") != std::string::npos);
  CHECK(stream.out().find("h3 gen test.tick seq=2") != std::string::npos);
  CHECK(stream.out().find("other.kind") == std::string::npos);
}

TEST_CASE("mqtt: hostlet --check reports a bad publish entry, allow glob or broker, naming it") {
  TempDir dir;
  auto check = [&](const std::string& config) {
    const std::string path = dir.write("hostlet.yaml", "agent: {control_socket: \"" + dir.path() +
                                                           "/c.sock\"}\nplugins:\n  - name: mqtt\n    plugin: " +
                                                           plugin() + "\n    config: " + config + "\n");
    return run({env_path("HOSTLET_BIN"), "--check", "-c", path});
  };
  Run ok = check("{broker: \"127.0.0.1:1883\", publish: [{type: \"vm.*\", qos: 0}], allow: [\"virt.*\"]}");
  CAPTURE(ok.out, ok.err);
  CHECK(ok.exit_code == 0);
  Run qos = check("{broker: \"127.0.0.1:1883\", publish: [{type: x}, {type: y, qos: 2}]}");
  CHECK(qos.exit_code == 1);
  CHECK((qos.out + qos.err).find("publish[1]: qos: must be 0 or 1, got '2'") != std::string::npos);
  Run key = check("{broker: \"127.0.0.1:1883\", publish: [{sorce: x}]}");
  CHECK(key.exit_code == 1);
  CHECK((key.out + key.err).find("unknown key 'sorce'") != std::string::npos);
  Run glob = check("{broker: \"127.0.0.1:1883\", allow: [\"virt.[x\"]}");
  CHECK(glob.exit_code == 1);
  CHECK((glob.out + glob.err).find("allow: 'virt.[x'") != std::string::npos);
  Run broker = check("{broker: \"nowhere\"}");
  CHECK(broker.exit_code == 1);
  CHECK((broker.out + broker.err).find("broker 'nowhere': expected HOST:PORT") != std::string::npos);
  Run shape = check("{broker: \"127.0.0.1:1883\", publish: [\"vm.*\"]}");
  CHECK(shape.exit_code == 1);
  CHECK((shape.out + shape.err).find("config.publish[0]: expected a mapping") != std::string::npos);
}

TEST_CASE("mqtt: a broker on a Unix socket") {
  Broker broker;
  Fixture f(broker, "", Fixture::kPublish, broker.socket_path());
  REQUIRE(wait_until([&] { return f.connected(); }, 20s));
  Client sub(broker.port());
  sub.subscribe("hostlet/h1/events/gen/test.tick");
  auto ids = f.notify(1, 5);
  REQUIRE(wait_until([&] { return event_ids(sub).size() == 5; }));
  CHECK(*event_ids(sub).begin() == ids.front());
}
