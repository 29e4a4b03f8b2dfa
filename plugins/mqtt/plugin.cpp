/*
 * mqtt: the host in a fleet, through an MQTT broker (mosquitto and others):
 * events out, actions in, a retained status with a last will.
 *
 * Example configuration:
 *
 *   plugins:
 *     - name: mqtt
 *       plugin: mqtt
 *       config:
 *         broker: "10.0.0.5:1883"          # or [V6]:PORT, or /run/mosquitto/mqtt.sock
 *         prefix: hostlet/web-3             # default hostlet/<hostname>
 *         publish:                          # which events go out, and at which QoS
 *           - {source: virt, type: "domain.*", qos: 1}
 *           - {type: "*.failed", qos: 0}
 *         allow: ["virt.domain.*", "sys.read"]   # actions callable from the broker; default none
 *         groups: [web, rack-7]             # also answer hostlet/group/<name>/call/<action>
 *         outbox: 10000                     # messages held for the broker (and outbox_bytes)
 *
 * Topics (<prefix> defaults to hostlet/<hostname>):
 *   <prefix>/status                 retained {"state":"online",...}; the last will sets
 *                                   {"state":"offline",...}
 *   <prefix>/events/<source>/<type> each event a `publish:` entry selects, as
 *                                   {"id","time","source","type","attrs"}
 *   <prefix>/call/<action>          requests {"attrs":{...},"id":..,"reply_to":..};
 *   hostlet/group/<group>/call/<action>  the answer {"id","from","ok","attrs","data"|"error"}
 *                                   goes to the MQTT 5 response topic with the
 *                                   request's correlation data, or (3.1.1) to reply_to
 *
 * Threads: none of its own. libmosquitto runs on the agent's loop: its
 * socket under a host watch (loop_read when readable, loop_write when
 * writable and it wants to write), loop_misc (keepalive) on a timer, and a
 * non-blocking connect to a numeric address; a broker given by name is
 * resolved by offloaded getaddrinfo. Each connection is a fresh libmosquitto
 * client: what the previous one had in flight is the outbox's to send again
 * (outbox.hpp), so no message is owned twice. Across a reload the outbox
 * goes to the next version in a memfd kept in the host's fd store.
 *
 * wire.hpp holds the formats and matching, outbox.hpp the bounded store,
 * backoff.hpp the reconnect delays, rate.hpp the request rate limit.
 */
#include <hostlet/plugin.hpp>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backoff.hpp"
#include "outbox.hpp"
#include "rate.hpp"
#include "version.h"
#include "wire.hpp"

namespace hostlet::mqtt {
namespace {

const hostlet_config_key kConfig[] = {
    {"broker", HOSTLET_CONFIG_STRING, nullptr,
     "the broker: HOST:PORT, [V6]:PORT or an absolute Unix socket path; a name is resolved off the loop", 0, 0,
     HOSTLET_CONFIG_REQUIRED},
    {"prefix", HOSTLET_CONFIG_STRING, nullptr, "topic prefix of this host (when absent: hostlet/<hostname>)", 0, 0, 0},
    {"client_id", HOSTLET_CONFIG_STRING, nullptr, "MQTT client id, unique per broker (when absent: the host name)", 1,
     65535, 0},
    {"publish", HOSTLET_CONFIG_MAP_LIST, "[]",
     "events to publish: a list of {source, type, qos, retain} (globs as rules match; qos 0 or 1, default 1; "
     "the first entry that matches decides)",
     0, 0, 0},
    {"allow", HOSTLET_CONFIG_STRING_LIST, "[]",
     "actions the broker may call (globs over the full name, e.g. virt.domain.*); default none", 0, 0, 0},
    {"groups", HOSTLET_CONFIG_STRING_LIST, "[]", "groups whose calls (hostlet/group/<name>/call/+) this host answers",
     0, 0, 0},
    {"outbox", HOSTLET_CONFIG_INT, "10000",
     "messages held for the broker (while it is away, and until each is acknowledged); then the oldest waiting "
     "are dropped",
     1, 10000000, 0},
    {"outbox_bytes", HOSTLET_CONFIG_SIZE, "64MiB", "bytes (topics and payloads) the outbox holds at most", 1024,
     1LL << 34, 0},
    {"inflight", HOSTLET_CONFIG_INT, "100", "messages handed to the broker and not yet acknowledged, at most", 1, 65535,
     0},
    {"keepalive", HOSTLET_CONFIG_DURATION, "30s",
     "MQTT keepalive; the broker sends the last will after 1.5 times it without a word", 5000, 65535000, 0},
    {"connect_timeout", HOSTLET_CONFIG_DURATION, "10s", "time for a connection to be accepted (CONNACK)", 100, 600000,
     0},
    {"reconnect_min", HOSTLET_CONFIG_DURATION, "500ms", "first delay before reconnecting (doubles, with jitter)", 1,
     3600000, 0},
    {"reconnect_max", HOSTLET_CONFIG_DURATION, "30s", "longest delay before reconnecting", 1, 3600000, 0},
    {"protocol", HOSTLET_CONFIG_STRING, "5", "MQTT version: 5 or 3.1.1", 0, 0, 0},
    {"clean_start", HOSTLET_CONFIG_BOOL, "true", "ask the broker for a fresh session on each connection", 0, 0, 0},
    {"username", HOSTLET_CONFIG_STRING, nullptr, "user name for the broker", 0, 0, 0},
    {"password_file", HOSTLET_CONFIG_STRING, nullptr,
     "file whose first line is the password (read at start; needs username)", 0, 0, 0},
    {"max_request", HOSTLET_CONFIG_SIZE, "64KiB", "largest request payload; a larger one is refused", 16, 256LL << 20,
     0},
    {"rate", HOSTLET_CONFIG_DOUBLE, "20", "requests a second per origin (answer topic)", 0, 0, 0},
    {"burst", HOSTLET_CONFIG_INT, "40", "requests an origin may send at once", 1, 1000000, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};

const hostlet_action_info kActions[] = {
    {"publish", "topic [payload] [qos=0|1] [retain=true|false]",
     "publish a message through the outbox (qos 1 by default); answers once it is queued"},
    {"status", "", "connection state, outbox and counters"},
    {nullptr, nullptr, nullptr},
};

const hostlet_event_info kEvents[] = {
    {"mqtt.dropped", "dropped total outbox",
     "the outbox was full: `dropped` messages were dropped since the last "
     "report (at most one report per 200 ms), `total` since start"},
    {"connected", "broker", "a connection to the broker was accepted"},
    {"disconnected", "broker reason", "the connection to the broker was lost or refused"},
    {nullptr, nullptr, nullptr},
};

constexpr uint64_t kMiscEveryMs = 500;
constexpr uint64_t kDroppedReportMs = 200;

struct MosqDeleter {
  void operator()(mosquitto* m) const { mosquitto_destroy(m); }
};
using MosqPtr = std::unique_ptr<mosquitto, MosqDeleter>;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  return buf;
}

std::string mosq_error(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return strerror(errno);
  return mosquitto_strerror(rc);
}

struct Counters {
  uint64_t connects = 0, disconnects = 0, rejected = 0;
  uint64_t req_ok = 0, req_error = 0, req_refused = 0, req_malformed = 0, req_too_large = 0, req_rate_limited = 0,
           req_no_reply = 0, answers_lost = 0;
};

class Mqtt final : public Plugin {
 public:
  explicit Mqtt(Host& h);
  ~Mqtt() override;
  int start() override;
  void stop(std::function<void()> stopped) override;
  void collect(Metrics& m) override;

 private:
  // Connection life.
  void connect();
  void connect_to(const std::string& address, int port);
  void lost(const std::string& why);
  void retry_later();
  void after_io();
  void update_watch();
  void on_socket(unsigned events);
  void close_watch();
  struct OneShot;
  void start_timer(OneShot& t, uint64_t ms);
  void stop_timer(OneShot& t);
  void on_retry();
  void on_deadline();
  // libmosquitto callbacks (they run inside loop_read / loop_write / loop_misc).
  void on_connect(int rc);
  void on_disconnect(int rc);
  void on_publish(int mid, int reason);
  void on_message(const mosquitto_message* msg, const mosquitto_property* props);
  // Outbox.
  void hand_over();
  void take_over();
  void enqueue(Message m);
  void flush();
  void report_dropped();
  // Requests and answers.
  void refuse(uint64_t Counters::*counter, const std::string& reply_topic, const std::string& correlation,
              const std::string& id_json, const std::string& message);
  void answer(const std::string& reply_topic, const std::string& correlation, const std::string& payload);
  std::string status_json(bool online) const;
  bool allowed(const std::string& action) const;

  Broker broker_;
  std::string prefix_, client_id_, hostname_, username_, password_;
  bool has_username_ = false;
  std::vector<PublishRule> publish_;
  std::vector<std::string> allow_, groups_;
  int keepalive_s_ = 30;
  uint64_t connect_timeout_ms_ = 10000;
  int protocol_ = MQTT_PROTOCOL_V5;
  bool clean_start_ = true;
  size_t max_request_ = 65536;
  std::string password_file_;

  Outbox outbox_;
  Backoff backoff_;
  RateLimit rate_;
  Counters counters_;
  uint64_t dropped_unreported_ = 0;
  double started_unix_ = 0;

  MosqPtr mosq_;
  // The socket's watch and the one-shot timers go through the C API: unlike
  // hostlet::Watch and hostlet::Timer they may be closed (or started anew)
  // from their own callback, which a connection's end needs.
  hostlet_watch* watch_ = nullptr;
  int watched_fd_ = -1;
  struct OneShot {
    Mqtt* self;
    void (Mqtt::*fn)();
    hostlet_timer* timer = nullptr;
  };
  OneShot retry_timer_{this, &Mqtt::on_retry};
  OneShot deadline_timer_{this, &Mqtt::on_deadline};
  OneShot dropped_timer_{this, &Mqtt::report_dropped};
  bool connected_ = false;     // CONNACK accepted, until the connection is lost
  bool lost_pending_ = false;  // a callback saw the connection go; torn down after the library call returns
  std::string lost_reason_;
  bool stopping_ = false;
  bool in_flush_ = false;               // flush() runs: a QoS 0 on_publish inside it must not start another
  uint64_t failed_attempts_ = 0;        // since the last CONNACK: picks the next address of a name
  std::map<int, uint64_t> mid_to_seq_;  // this connection's in-flight outbox messages
  struct Sending {
    uint64_t seq;
    int mid;
  };
  std::optional<Sending> sending_;  // the message inside mosquitto_publish_v5 now
  Subscription events_;
  Timer misc_timer_;
};

Mqtt::Mqtt(Host& h)
    : Plugin(h),
      hostname_(host_name()),
      outbox_(static_cast<size_t>(h.integer("outbox")), static_cast<size_t>(h.integer("outbox_bytes")),
              static_cast<size_t>(h.integer("inflight"))),
      backoff_(static_cast<uint64_t>(h.integer("reconnect_min")), static_cast<uint64_t>(h.integer("reconnect_max")),
               std::random_device{}()),
      rate_(h.number("rate"), static_cast<double>(h.integer("burst"))) {
  std::string err;
  auto b = parse_broker(h.str("broker"), &err);
  if (!b) throw Error(-EINVAL, err);
  broker_ = *b;
  prefix_ = h.opt_str("prefix").value_or("hostlet/" + hostname_);
  if (prefix_.empty() || prefix_.front() == '/' || prefix_.back() == '/' ||
      prefix_.find_first_of("+#") != std::string::npos || !topic_problem(prefix_).empty())
    throw Error(-EINVAL, "prefix '" + prefix_ + "': a topic without '+', '#' or a leading or trailing '/'");
  client_id_ = h.opt_str("client_id").value_or(hostname_);
  const std::string proto = h.str("protocol");
  if (proto == "5")
    protocol_ = MQTT_PROTOCOL_V5;
  else if (proto == "3.1.1")
    protocol_ = MQTT_PROTOCOL_V311;
  else
    throw Error(-EINVAL, "protocol: expected 5 or 3.1.1, got '" + proto + "'");
  clean_start_ = h.boolean("clean_start");
  keepalive_s_ = static_cast<int>(h.integer("keepalive") / 1000);
  connect_timeout_ms_ = static_cast<uint64_t>(h.integer("connect_timeout"));
  max_request_ = static_cast<size_t>(h.integer("max_request"));
  if (h.integer("reconnect_max") < h.integer("reconnect_min"))
    throw Error(-EINVAL, "reconnect_max is shorter than reconnect_min");
  if (h.number("rate") <= 0) throw Error(-EINVAL, "rate must be more than 0");

  const auto items = h.list("publish");
  for (size_t i = 0; i < items.size(); ++i) {
    auto r = parse_publish_rule(items[i], &err);
    if (!r) throw Error(-EINVAL, "publish[" + std::to_string(i) + "]: " + err);
    publish_.push_back(*r);
  }
  allow_ = h.list("allow");
  for (const auto& g : allow_)
    if (std::string p = glob_problem(g); !p.empty()) throw Error(-EINVAL, "allow: '" + g + "': " + p);
  groups_ = h.list("groups");
  for (const auto& g : groups_)
    if (!valid_level(g)) throw Error(-EINVAL, "groups: '" + g + "' must be one topic level (no '/', '+', '#')");

  if (auto u = h.opt_str("username")) {
    username_ = *u;
    has_username_ = true;
  }
  if (auto pf = h.opt_str("password_file")) {
    if (!has_username_) throw Error(-EINVAL, "password_file needs username");
    password_file_ = *pf;
  }

  mosquitto_lib_init();

  h.action("publish", [this](Call& call) {
    Message m;
    m.topic = call.require("topic");
    if (std::string p = topic_problem(m.topic); !p.empty()) throw Error(-EINVAL, "topic: " + p);
    m.payload = call.attr_or("payload", "");
    const std::string qos = call.attr_or("qos", "1");
    if (qos != "0" && qos != "1") throw Error(-EINVAL, "qos: must be 0 or 1");
    m.qos = qos == "1" ? 1 : 0;
    const std::string retain = call.attr_or("retain", "false");
    if (retain != "true" && retain != "false") throw Error(-EINVAL, "retain: must be true or false");
    m.retain = retain == "true";
    const uint64_t before = outbox_.dropped();
    enqueue(std::move(m));
    call.ok({{"outbox", std::to_string(outbox_.size())}, {"dropped", std::to_string(outbox_.dropped() - before)}});
  });
  h.action("status", [this](Call& call) {
    auto n = [](uint64_t v) { return std::to_string(v); };
    call.ok({{"connected", connected_ ? "true" : "false"},
             {"prefix", prefix_},
             {"outbox", n(outbox_.size())},
             {"outbox_bytes", n(outbox_.bytes())},
             {"in_flight", n(outbox_.in_flight())},
             {"sent", n(outbox_.released())},
             {"dropped", n(outbox_.dropped())},
             {"rejected", n(counters_.rejected)},
             {"connects", n(counters_.connects)},
             {"disconnects", n(counters_.disconnects)},
             {"requests_ok", n(counters_.req_ok)},
             {"requests_failed", n(counters_.req_error)},
             {"requests_refused", n(counters_.req_refused)},
             {"requests_malformed", n(counters_.req_malformed)},
             {"requests_too_large", n(counters_.req_too_large)},
             {"requests_rate_limited", n(counters_.req_rate_limited)},
             {"requests_without_reply_topic", n(counters_.req_no_reply)}});
  });
}

Mqtt::~Mqtt() {
  close_watch();
  mosq_.reset();
  mosquitto_lib_cleanup();
}

int Mqtt::start() {
  if (!password_file_.empty()) {
    std::ifstream f(password_file_);
    if (!f) throw Error(-errno, "password_file '" + password_file_ + "': " + strerror(errno));
    std::getline(f, password_);
  }
  started_unix_ = static_cast<double>(time(nullptr));
  take_over();  // before any new event, so that the order holds
  events_ = host().subscribe("*", [this](const Event& ev) {
    for (const PublishRule& r : publish_) {
      if (!r.matches(ev.source(), ev.type())) continue;
      std::vector<Attr> attrs;
      attrs.reserve(ev.size());
      for (size_t i = 0; i < ev.size(); ++i) attrs.push_back({ev[i].key, ev[i].value});
      Message m;
      m.topic = prefix_ + "/events/" + std::string(ev.source()) + "/" + std::string(ev.type());
      m.payload = event_json(ev.id(), ev.timestamp_ns(), ev.source(), ev.type(), attrs);
      m.qos = r.qos;
      m.retain = r.retain;
      enqueue(std::move(m));
      return;
    }
  });
  misc_timer_ = host().timer(kMiscEveryMs, kMiscEveryMs, [this] {
    if (!mosq_) return;
    int rc = mosquitto_loop_misc(mosq_.get());
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN && !lost_pending_) {
      lost_pending_ = true;
      lost_reason_ = mosq_error(rc);
    }
    after_io();
  });
  host().set_health(HOSTLET_HEALTH_DEGRADED, "connecting to the broker");
  connect();
  return 0;
}

void Mqtt::stop(std::function<void()> stopped) {
  stopping_ = true;
  events_.reset();
  misc_timer_.stop();
  stop_timer(retry_timer_);
  stop_timer(deadline_timer_);
  stop_timer(dropped_timer_);
  // Closing without DISCONNECT: the broker publishes the last will, so the
  // status says offline whatever way the agent goes.
  close_watch();
  mosq_.reset();
  connected_ = false;
  hand_over();
  stopped();
}

// The outbox goes to the next version of the instance (a reload, or the old
// version started again when the new one fails): in a memfd that the host's
// fd store keeps across the swap. Copying it is a memory copy on the loop
// (outbox_bytes at most) once per reload.
constexpr std::string_view kHandOverState = "mqtt-outbox 1";

void Mqtt::hand_over() {
  if (outbox_.size() == 0) return;
  const size_t n = outbox_.size();
  const std::string bytes = serialize(outbox_.contents());
  int fd = memfd_create("hostlet-mqtt-outbox", MFD_CLOEXEC);
  size_t off = 0;
  while (fd >= 0 && off < bytes.size()) {
    ssize_t w = write(fd, bytes.data() + off, bytes.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      host().error("cannot write the outbox for the next version: %s", strerror(errno));
      close(fd);
      fd = -1;
    } else {
      off += static_cast<size_t>(w);
    }
  }
  int r =
      fd < 0 ? -errno : host().api()->keep_fd(host().c(), "outbox", fd, kHandOverState.data(), kHandOverState.size());
  if (r == 0) {
    host().info("handing %zu messages to the next version", n);
    return;
  }
  if (fd >= 0) close(fd);
  if (r == -ESHUTDOWN)
    host().warn("stopping with %zu messages not taken by the broker: they are lost", n);
  else
    host().error("cannot hand %zu messages to the next version (%s): they are lost", n, hostlet_strerror(r));
}

void Mqtt::take_over() {
  char state[64];
  size_t len = 0;
  int fd = host().api()->take_fd(host().c(), "outbox", state, sizeof state, &len);
  if (fd == -ENOENT) return;
  if (fd < 0) {
    host().error("cannot take the previous version's outbox: %s", hostlet_strerror(fd));
    return;
  }
  std::string bytes;
  struct stat st {};
  if (std::string_view(state, len) == kHandOverState && fstat(fd, &st) == 0) {
    bytes.resize(static_cast<size_t>(st.st_size));
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t rd = pread(fd, bytes.data() + off, bytes.size() - off, static_cast<off_t>(off));
      if (rd < 0 && errno == EINTR) continue;
      if (rd <= 0) break;
      off += static_cast<size_t>(rd);
    }
    bytes.resize(off);
  }
  close(fd);
  std::vector<Message> messages;
  if (!deserialize(bytes, messages)) {
    host().error("the previous version's outbox is not one this version reads (state '%.*s'): dropped",
                 static_cast<int>(len), state);
    return;
  }
  for (Message& m : messages) enqueue(std::move(m));
  host().info("took %zu messages from the previous version", messages.size());
}

// --- connection ------------------------------------------------------------

void Mqtt::connect() {
  if (stopping_) return;
  if (broker_.unix_socket()) return connect_to(broker_.host, 0);
  in6_addr a6;
  in_addr a4;
  if (inet_pton(AF_INET, broker_.host.c_str(), &a4) == 1 || inet_pton(AF_INET6, broker_.host.c_str(), &a6) == 1)
    return connect_to(broker_.host, broker_.port);
  // A name: getaddrinfo may wait on DNS, so it runs off the loop, again
  // for each attempt (the name may move). Failed attempts go through its
  // addresses in turn (localhost may be ::1 first, with a broker on 127.0.0.1).
  std::string name = broker_.host;
  int r = host().offload(
      [name]() -> std::vector<std::string> {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* res = nullptr;
        int rc = getaddrinfo(name.c_str(), nullptr, &hints, &res);
        if (rc != 0) throw Error(-EHOSTUNREACH, "cannot resolve '" + name + "': " + gai_strerror(rc));
        std::vector<std::string> out;
        for (addrinfo* a = res; a; a = a->ai_next) {
          char buf[INET6_ADDRSTRLEN] = {};
          if (getnameinfo(a->ai_addr, a->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) == 0)
            out.push_back(buf);
        }
        freeaddrinfo(res);
        if (out.empty()) throw Error(-EHOSTUNREACH, "cannot resolve '" + name + "': no address");
        return out;
      },
      [this](int status, std::vector<std::string> addresses, const Error& e) {
        if (stopping_) return;
        if (status != 0) {
          host().warn("%s", e.what());
          return retry_later();
        }
        connect_to(addresses[failed_attempts_ % addresses.size()], broker_.port);
      });
  if (r != 0) {
    host().warn("cannot resolve the broker now: %s", hostlet_strerror(r));
    retry_later();
  }
}

void Mqtt::connect_to(const std::string& address, int port) {
  MosqPtr m(mosquitto_new(client_id_.c_str(), clean_start_, this));
  if (!m) {
    host().error("mosquitto_new: %s", strerror(errno));
    return retry_later();
  }
  mosquitto_int_option(m.get(), MOSQ_OPT_PROTOCOL_VERSION, protocol_);
  // An answer follows the request's PUBACK at once: with Nagle it would wait
  // for the broker's delayed ACK (40 ms, measured by bench/mqtt_bench: an
  // 88 ms round trip without this).
  mosquitto_int_option(m.get(), MOSQ_OPT_TCP_NODELAY, 1);
  const std::string will = status_json(false);
  int rc = mosquitto_will_set_v5(m.get(), (prefix_ + "/status").c_str(), static_cast<int>(will.size()), will.data(), 1,
                                 true, nullptr);
  if (rc == MOSQ_ERR_SUCCESS && has_username_)
    rc = mosquitto_username_pw_set(m.get(), username_.c_str(), password_file_.empty() ? nullptr : password_.c_str());
  if (rc != MOSQ_ERR_SUCCESS) {
    host().error("cannot set up the client: %s", mosq_error(rc).c_str());
    return retry_later();
  }
  mosquitto_connect_v5_callback_set(m.get(), [](mosquitto*, void* self, int rc, int, const mosquitto_property*) {
    static_cast<Mqtt*>(self)->on_connect(rc);
  });
  mosquitto_disconnect_v5_callback_set(m.get(), [](mosquitto*, void* self, int rc, const mosquitto_property*) {
    static_cast<Mqtt*>(self)->on_disconnect(rc);
  });
  mosquitto_publish_v5_callback_set(m.get(),
                                    [](mosquitto*, void* self, int mid, int reason, const mosquitto_property*) {
                                      static_cast<Mqtt*>(self)->on_publish(mid, reason);
                                    });
  mosquitto_message_v5_callback_set(
      m.get(), [](mosquitto*, void* self, const mosquitto_message* msg, const mosquitto_property* props) {
        static_cast<Mqtt*>(self)->on_message(msg, props);
      });

  rc = mosquitto_connect_bind_async(m.get(), address.c_str(), port, keepalive_s_, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) {
    host().warn("cannot connect to %s: %s",
                broker_.unix_socket() ? address.c_str() : (address + ":" + std::to_string(port)).c_str(),
                mosq_error(rc).c_str());
    return retry_later();
  }
  const int fd = mosquitto_socket(m.get());
  if (fd < 0) {
    host().warn("connect gave no socket");
    return retry_later();
  }
  rc = host().api()->watch_fd(
      host().c(), fd, HOSTLET_WATCH_READABLE | HOSTLET_WATCH_WRITABLE,
      [](void* self, int, unsigned events) {
        auto* me = static_cast<Mqtt*>(self);
        me->host().guard("mqtt socket", [&] { me->on_socket(events); });
      },
      this, &watch_);
  if (rc != 0) {
    host().error("cannot watch the broker socket: %s", hostlet_strerror(rc));
    return retry_later();
  }
  mosq_ = std::move(m);
  lost_pending_ = false;
  watched_fd_ = fd;
  start_timer(deadline_timer_, connect_timeout_ms_);
}

void Mqtt::on_socket(unsigned events) {
  if (!mosq_) return;
  int rc = MOSQ_ERR_SUCCESS;
  if (events & (HOSTLET_WATCH_READABLE | HOSTLET_WATCH_ERROR)) rc = mosquitto_loop_read(mosq_.get(), 1);
  if (rc == MOSQ_ERR_SUCCESS && (events & HOSTLET_WATCH_WRITABLE) && !lost_pending_)
    rc = mosquitto_loop_write(mosq_.get(), 1);
  if (rc != MOSQ_ERR_SUCCESS && !lost_pending_) {
    lost_pending_ = true;
    lost_reason_ = rc == MOSQ_ERR_CONN_LOST ? "connection lost" : mosq_error(rc);
  }
  after_io();
}

void Mqtt::on_deadline() {
  if (!connected_ && mosq_) lost("no CONNACK within connect_timeout");
}

void Mqtt::on_retry() { connect(); }

void Mqtt::close_watch() {
  if (watch_) host().api()->watch_close(std::exchange(watch_, nullptr));
}

void Mqtt::start_timer(OneShot& t, uint64_t ms) {
  stop_timer(t);
  int rc = host().api()->timer_start(
      host().c(), ms, 0,
      [](void* p) {
        auto* one = static_cast<OneShot*>(p);
        one->self->stop_timer(*one);  // frees it; fn may start it again
        one->self->host().guard("mqtt timer", [&] { (one->self->*one->fn)(); });
      },
      &t, &t.timer);
  if (rc != 0) {
    t.timer = nullptr;
    host().error("cannot start a timer: %s", hostlet_strerror(rc));
  }
}

void Mqtt::stop_timer(OneShot& t) {
  if (t.timer) host().api()->timer_stop(std::exchange(t.timer, nullptr));
}

// Runs after every library call: tears the connection down when a callback
// saw it go (never inside the callback: the library still uses its client
// there), else follows the library's wish to write.
void Mqtt::after_io() {
  if (!mosq_) return;
  if (lost_pending_ || mosquitto_socket(mosq_.get()) != watched_fd_) {
    lost(lost_reason_.empty() ? "connection closed" : lost_reason_);
    return;
  }
  update_watch();
}

void Mqtt::update_watch() {
  if (!mosq_ || !watch_) return;
  host().api()->watch_update(
      watch_, HOSTLET_WATCH_READABLE | (mosquitto_want_write(mosq_.get()) ? HOSTLET_WATCH_WRITABLE : 0u));
}

void Mqtt::lost(const std::string& why) {
  const bool was_connected = connected_;
  close_watch();  // before the library closes the fd
  mosq_.reset();
  watched_fd_ = -1;
  connected_ = false;
  lost_pending_ = false;
  lost_reason_.clear();
  stop_timer(deadline_timer_);
  mid_to_seq_.clear();
  outbox_.requeue_in_flight();
  if (was_connected) {
    ++counters_.disconnects;
    host().warn("broker connection lost: %s; %zu messages held", why.c_str(), outbox_.size());
    host().publish(
        "disconnected",
        {{"broker", broker_.unix_socket() ? broker_.host : broker_.host + ":" + std::to_string(broker_.port)},
         {"reason", why}});
  } else {
    host().info("cannot connect to the broker: %s", why.c_str());
  }
  host().set_health(HOSTLET_HEALTH_DEGRADED, "broker: " + why);
  retry_later();
}

void Mqtt::retry_later() {
  if (stopping_) return;
  ++failed_attempts_;
  const uint64_t delay = backoff_.next();
  host().debug("reconnecting in %llu ms", static_cast<unsigned long long>(delay));
  start_timer(retry_timer_, delay);
}

// --- libmosquitto callbacks --------------------------------------------------

void Mqtt::on_connect(int rc) {
  if (rc != 0) {
    const std::string why = protocol_ == MQTT_PROTOCOL_V5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc);
    lost_pending_ = true;
    lost_reason_ = "refused: " + why;
    host().error("the broker refused the connection: %s (reason code %d); retrying with backoff", why.c_str(), rc);
    return;
  }
  connected_ = true;
  stop_timer(deadline_timer_);
  backoff_.reset();
  failed_attempts_ = 0;
  ++counters_.connects;
  // Every CONNACK: the subscriptions again (a clean start, or a broker that
  // lost its state, has none), then the status, then what waits.
  std::vector<std::string> topics{prefix_ + "/call/+"};
  for (const auto& g : groups_) topics.push_back("hostlet/group/" + g + "/call/+");
  for (const auto& t : topics) {
    int r = mosquitto_subscribe_v5(mosq_.get(), nullptr, t.c_str(), 1, 0, nullptr);
    if (r != MOSQ_ERR_SUCCESS) host().error("cannot subscribe to %s: %s", t.c_str(), mosq_error(r).c_str());
  }
  const std::string online = status_json(true);
  int r = mosquitto_publish_v5(mosq_.get(), nullptr, (prefix_ + "/status").c_str(), static_cast<int>(online.size()),
                               online.data(), 1, true, nullptr);
  if (r != MOSQ_ERR_SUCCESS) host().error("cannot publish the status: %s", mosq_error(r).c_str());
  host().info("connected to the broker as '%s'; %zu messages to send", client_id_.c_str(), outbox_.size());
  host().set_health(HOSTLET_HEALTH_OK, "");
  host().publish("connected", {{"broker", broker_.unix_socket() ? broker_.host
                                                                : broker_.host + ":" + std::to_string(broker_.port)}});
  flush();
}

void Mqtt::on_disconnect(int rc) {
  if (!lost_pending_) {
    lost_pending_ = true;
    lost_reason_ = rc == 0 ? "disconnected" : mosq_error(rc);
  }
}

void Mqtt::on_publish(int mid, int reason) {
  uint64_t seq = 0;
  if (sending_ && sending_->mid == mid) {  // written during its own publish call (QoS 0)
    seq = sending_->seq;
    sending_.reset();
  } else {
    auto it = mid_to_seq_.find(mid);
    if (it == mid_to_seq_.end()) return;  // the status or an answer
    seq = it->second;
    mid_to_seq_.erase(it);
  }
  if (reason >= 0x80) {
    // The broker took the message and refused it (not authorized, quota...):
    // sending it again would be refused again.
    ++counters_.rejected;
    if (const Message* m = outbox_.get(seq))
      host().warn("the broker refused a message on %s: %s", m->topic.c_str(), mosquitto_reason_string(reason));
  }
  outbox_.release(seq);
  if (!lost_pending_ && !in_flush_) flush();
}

void Mqtt::on_message(const mosquitto_message* msg, const mosquitto_property* props) {
  std::string reply_topic, correlation;
  char* resp = nullptr;
  if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &resp, false)) {
    reply_topic = resp;
    free(resp);
  }
  void* corr = nullptr;
  uint16_t corr_len = 0;
  if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corr_len, false)) {
    correlation.assign(static_cast<const char*>(corr), corr_len);
    free(corr);
  }
  const std::string action(action_of_topic(msg->topic));
  if (static_cast<size_t>(msg->payloadlen) > max_request_) {
    return refuse(&Counters::req_too_large, reply_topic, correlation, "",
                  "request too large: " + std::to_string(msg->payloadlen) + " bytes, max_request is " +
                      std::to_string(max_request_));
  }
  std::string error, payload_reply_to;
  auto req =
      parse_request(std::string_view(static_cast<const char*>(msg->payload), static_cast<size_t>(msg->payloadlen)),
                    &error, &payload_reply_to);
  if (reply_topic.empty()) reply_topic = payload_reply_to;
  if (!req) return refuse(&Counters::req_malformed, reply_topic, correlation, "", error);
  if (reply_topic.empty())
    return refuse(&Counters::req_no_reply, "", "", req->id_json,
                  "request on " + std::string(msg->topic) + " names no response topic (nor reply_to): not run");
  if (!topic_problem(reply_topic).empty())
    return refuse(&Counters::req_malformed, "", "", req->id_json, "request's reply topic is not a topic");
  if (!allowed(action))
    return refuse(&Counters::req_refused, reply_topic, correlation, req->id_json,
                  "action '" + action + "' is not allowed from the broker (config: allow)");
  if (!rate_.take(reply_topic, host().now_ns()))
    return refuse(&Counters::req_rate_limited, reply_topic, correlation, req->id_json,
                  "rate limited: more than the allowed requests a second from " + reply_topic);

  Attrs attrs;
  for (auto& a : req->attrs) attrs.emplace_back(std::move(a.key), std::move(a.value));
  std::string id_json = req->id_json;
  int r = host().call(action.c_str(), attrs, [this, reply_topic, correlation, id_json](const Result& res) {
    if (res.ok) {
      ++counters_.req_ok;
      std::vector<Attr> out;
      for (const auto& [k, v] : res.attrs) out.push_back({k, v});
      answer(reply_topic, correlation, answer_ok(id_json, prefix_, out, res.data_json));
    } else {
      ++counters_.req_error;
      answer(reply_topic, correlation, answer_error(id_json, prefix_, res.error));
    }
  });
  if (r != 0)
    refuse(&Counters::req_error, reply_topic, correlation, id_json,
           r == -ENOENT ? "no such action '" + action + "'" : std::string(hostlet_strerror(r)));
}

// --- outbox ----------------------------------------------------------------

void Mqtt::enqueue(Message m) {
  const size_t dropped = outbox_.push(std::move(m));
  if (dropped > 0) {
    dropped_unreported_ += dropped;
    if (!dropped_timer_.timer) start_timer(dropped_timer_, kDroppedReportMs);
  }
  if (connected_ && !lost_pending_) {
    flush();
    after_io();
  }
}

void Mqtt::flush() {
  if (!mosq_ || !connected_ || in_flush_) return;
  in_flush_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{in_flush_};
  while (auto seq = outbox_.next_to_send()) {
    const Message* m = outbox_.get(*seq);
    // libmosquitto writes the mid before it sends, and a QoS 0 message
    // written at once reports on_publish before publish returns: the
    // mapping must be in place by then.
    sending_ = Sending{*seq, -1};
    int rc = mosquitto_publish_v5(mosq_.get(), &sending_->mid, m->topic.c_str(), static_cast<int>(m->payload.size()),
                                  m->payload.data(), m->qos, m->retain, nullptr);
    const bool released_already = !sending_;
    const int mid = sending_ ? sending_->mid : -1;
    sending_.reset();
    if (rc == MOSQ_ERR_SUCCESS) {
      if (!released_already) mid_to_seq_[mid] = *seq;
      continue;
    }
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO) {
      // Held: it goes again on the next connection.
      if (!lost_pending_) {
        lost_pending_ = true;
        lost_reason_ = mosq_error(rc);
      }
      return;
    }
    // This message can never go (larger than the broker takes, bad topic): say so once and let it go.
    ++counters_.rejected;
    host().warn("cannot publish on %s: %s; dropped", m->topic.c_str(), mosq_error(rc).c_str());
    outbox_.release(*seq);
  }
}

void Mqtt::report_dropped() {
  if (dropped_unreported_ == 0) return;
  const uint64_t n = dropped_unreported_;
  dropped_unreported_ = 0;
  host().warn("outbox full: dropped %llu messages (%llu in all)", static_cast<unsigned long long>(n),
              static_cast<unsigned long long>(outbox_.dropped()));
  host().publish("mqtt.dropped", {{"dropped", std::to_string(n)},
                                  {"total", std::to_string(outbox_.dropped())},
                                  {"outbox", std::to_string(outbox_.size())}});
}

// --- requests ---------------------------------------------------------------

bool Mqtt::allowed(const std::string& action) const {
  for (const auto& g : allow_)
    if (glob_match(g, action)) return true;
  return false;
}

void Mqtt::refuse(uint64_t Counters::*counter, const std::string& reply_topic, const std::string& correlation,
                  const std::string& id_json, const std::string& message) {
  ++(counters_.*counter);
  host().info("request refused: %s", message.c_str());
  if (!reply_topic.empty()) answer(reply_topic, correlation, answer_error(id_json, prefix_, message));
}

void Mqtt::answer(const std::string& reply_topic, const std::string& correlation, const std::string& payload) {
  if (!mosq_ || !connected_ || lost_pending_) {
    ++counters_.answers_lost;  // the requester times out; its request may be sent again
    return;
  }
  mosquitto_property* props = nullptr;
  if (!correlation.empty() && protocol_ == MQTT_PROTOCOL_V5)
    mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, correlation.data(),
                                  static_cast<uint16_t>(correlation.size()));
  int rc = mosquitto_publish_v5(mosq_.get(), nullptr, reply_topic.c_str(), static_cast<int>(payload.size()),
                                payload.data(), 1, false, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) {
    ++counters_.answers_lost;
    host().warn("cannot answer on %s: %s", reply_topic.c_str(), mosq_error(rc).c_str());
  }
  update_watch();
}

std::string Mqtt::status_json(bool online) const {
  nlohmann::json j = {
      {"state", online ? "online" : "offline"}, {"host", hostname_}, {"client_id", client_id_}, {"prefix", prefix_}};
  if (online) {
    j["version"] = HOSTLET_VERSION;
    j["started"] = started_unix_;
    j["groups"] = groups_;
    nlohmann::json names = nlohmann::json::array();
    host().api()->agent_health(
        host().c(), 1000,
        [](void* arg, int, const char* text) {
          auto* out = static_cast<nlohmann::json*>(arg);
          nlohmann::json h = nlohmann::json::parse(text, nullptr, false);
          if (h.is_object() && h.contains("instances") && h["instances"].is_object())
            for (auto& [name, v] : h["instances"].items()) out->push_back(name);
        },
        &names);
    j["instances"] = names;
  }
  return j.dump();
}

// --- metrics ----------------------------------------------------------------

void Mqtt::collect(Metrics& m) {
  const char* inst = host().name();
  auto one = [&](double v) { m.sample(v, {{"instance", inst}}); };
  m.gauge("hostlet_mqtt_connected", "1 while the broker connection is up.");
  one(connected_ ? 1 : 0);
  m.gauge("hostlet_mqtt_outbox_messages", "Messages held for the broker.");
  one(static_cast<double>(outbox_.size()));
  m.gauge("hostlet_mqtt_outbox_bytes", "Bytes (topics and payloads) held for the broker.");
  one(static_cast<double>(outbox_.bytes()));
  m.counter("hostlet_mqtt_messages_sent_total", "Messages the broker took (QoS 1: acknowledged).");
  one(static_cast<double>(outbox_.released()));
  m.counter("hostlet_mqtt_messages_dropped_total", "Messages dropped because the outbox was full.");
  one(static_cast<double>(outbox_.dropped()));
  m.counter("hostlet_mqtt_messages_rejected_total", "Messages the broker or the library refused.");
  one(static_cast<double>(counters_.rejected));
  m.counter("hostlet_mqtt_connects_total", "Connections the broker accepted.");
  one(static_cast<double>(counters_.connects));
  m.counter("hostlet_mqtt_disconnects_total", "Accepted connections that were lost.");
  one(static_cast<double>(counters_.disconnects));
  m.counter("hostlet_mqtt_requests_total", "Requests received from the broker, by outcome.");
  const std::pair<const char*, uint64_t> results[] = {{"ok", counters_.req_ok},
                                                      {"failed", counters_.req_error},
                                                      {"refused", counters_.req_refused},
                                                      {"malformed", counters_.req_malformed},
                                                      {"too_large", counters_.req_too_large},
                                                      {"rate_limited", counters_.req_rate_limited},
                                                      {"no_reply_topic", counters_.req_no_reply}};
  for (const auto& [name, v] : results) m.sample(static_cast<double>(v), {{"instance", inst}, {"result", name}});
  m.counter("hostlet_mqtt_answers_lost_total", "Answers that could not be sent (no connection).");
  one(static_cast<double>(counters_.answers_lost));
}

}  // namespace
}  // namespace hostlet::mqtt

HOSTLET_CPP_PLUGIN(hostlet::mqtt::Mqtt, "mqtt", HOSTLET_VERSION, "events out and actions in through an MQTT broker",
                   hostlet::mqtt::kConfig, hostlet::mqtt::kActions, hostlet::mqtt::kEvents)
