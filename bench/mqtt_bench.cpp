// bench: the mqtt plugin against libmosquitto itself, through one mosquitto
// on loopback (started here, stopped by pid).
//   mqtt_bench MOSQUITTO HOSTLET BUILD_DIR [N]
// 1. events/s: N events from a rule-selected stream (unixsock notifications,
//    ack none) through the agent's mqtt instance to a subscriber, at QoS 0
//    and 1, against a plain libmosquitto publisher sending N messages of the
//    same size to the same kind of subscriber (the library's own speed);
//    timed from the first send to the N-th message received.
// 2. round trip: a call of the instance's status action through the broker
//    (MQTT 5 response topic), p50/p99 over sequential calls, against the same
//    call over the control socket, and against the broker's own
//    publish-to-subscriber latency (a client publishing to itself).
#include <arpa/inet.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;

namespace {

std::vector<pid_t> g_children;  // stopped by pid however the bench ends

[[noreturn]] void die(const std::string& why) {
  fprintf(stderr, "mqtt_bench: %s\n", why.c_str());
  for (pid_t p : g_children) kill(p, SIGKILL);
  exit(1);
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = fopen(log.c_str(), "w");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execv(a[0], a.data());
    _exit(127);
  }
  g_children.push_back(pid);
  return pid;
}

void stop(pid_t pid) {
  kill(pid, SIGTERM);
  int st;
  waitpid(pid, &st, 0);
}

int free_port() {
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

int unix_connect(const std::string& path, int tries = 200) {
  for (int i = 0; i < tries; ++i) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return fd;
    close(fd);
    usleep(50000);
  }
  die("cannot connect to " + path);
}

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n <= 0) die("write failed");
    off += static_cast<size_t>(n);
  }
}

std::string read_line(int fd, std::string& buf) {
  for (;;) {
    size_t nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return line;
    }
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) die("read failed");
    buf.append(tmp, static_cast<size_t>(n));
  }
}

// A client on its own network thread that counts messages and keeps the time of the last.
class Client {
 public:
  explicit Client(int port) {
    static int n = 0;
    const std::string id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(++n);
    m_ = mosquitto_new(id.c_str(), true, this);
    mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(m_, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_message_v5_callback_set(m_, [](mosquitto*, void* self, const mosquitto_message*,
                                             const mosquitto_property*) {
      auto* c = static_cast<Client*>(self);
      std::lock_guard<std::mutex> l(c->mu_);
      c->count_++;
      c->last_ = Clock::now();
      c->cv_.notify_all();
    });
    mosquitto_subscribe_v5_callback_set(m_, [](mosquitto*, void* self, int, int, const int*, const mosquitto_property*) {
      auto* c = static_cast<Client*>(self);
      std::lock_guard<std::mutex> l(c->mu_);
      c->subacks_++;
      c->cv_.notify_all();
    });
    if (mosquitto_connect(m_, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS) die("client connect failed");
    mosquitto_loop_start(m_);
  }
  ~Client() {
    mosquitto_disconnect(m_);
    mosquitto_loop_stop(m_, false);
    mosquitto_destroy(m_);
  }
  void subscribe(const std::string& t, int qos) {
    mosquitto_subscribe_v5(m_, nullptr, t.c_str(), qos, 0, nullptr);
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return subacks_ > 0; });
  }
  mosquitto* m() { return m_; }
  // Waits for `n` messages in all; the time of the n-th.
  Clock::time_point wait(uint64_t n) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, std::chrono::seconds(120), [&] { return count_ >= n; }))
      die("only " + std::to_string(count_) + " of " + std::to_string(n) + " messages arrived");
    return last_;
  }
  uint64_t count() {
    std::lock_guard<std::mutex> l(mu_);
    return count_;
  }

 private:
  mosquitto* m_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t count_ = 0;
  int subacks_ = 0;
  Clock::time_point last_;
};

const std::string kPayload =
    R"({"id":123456,"time":1796410547.364264484,"source":"gen","type":"bench.tick","attrs":{"seq":"123456"}})";

double plain_rate(int port, uint64_t n, int qos) {
  Client sub(port);
  sub.subscribe("bench/plain", 1);
  Client pub(port);
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    while (mosquitto_publish_v5(pub.m(), nullptr, "bench/plain", static_cast<int>(kPayload.size()), kPayload.data(),
                                qos, false, nullptr) == MOSQ_ERR_NOMEM)
      usleep(100);
  }
  const auto t1 = sub.wait(n);
  return static_cast<double>(n) / std::chrono::duration<double>(t1 - t0).count();
}

// The agent's loop lateness while it runs `load`: bench_plugin's probe (a 1 ms
// timer's ticks, how late each ran) over the control socket, in parallel.
std::string with_probe(const std::string& control_sock, int ms, const std::function<void()>& load) {
  std::string answer;
  std::thread t([&] {
    int fd = unix_connect(control_sock);
    std::string buf;
    send_all(fd, "{\"id\":1,\"cmd\":\"call\",\"action\":\"probe.probe\",\"attrs\":{\"ms\":\"" + std::to_string(ms) +
                     "\"}}\n");
    answer = read_line(fd, buf);
    close(fd);
  });
  load();
  t.join();
  return answer;
}

double agent_rate(int port, const std::string& notify_sock, uint64_t n, int qos, uint64_t already) {
  Client sub(port);
  sub.subscribe("hostlet/bench/events/gen/bench.q" + std::to_string(qos), 1);
  int fd = unix_connect(notify_sock);
  std::string batch;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    batch += "{\"type\":\"bench.q" + std::to_string(qos) + "\",\"attrs\":{\"seq\":\"" + std::to_string(i) +
             "\"},\"ack\":\"none\"}\n";
    if (batch.size() > 60000) {
      send_all(fd, batch);
      batch.clear();
    }
  }
  send_all(fd, batch);
  const auto t1 = sub.wait(n);
  close(fd);
  (void)already;
  return static_cast<double>(n) / std::chrono::duration<double>(t1 - t0).count();
}

struct Pct {
  double p50, p99;
};
Pct pct(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

// Sequential request/response through the broker: the client publishes on `topic` with a response topic and waits.
Pct broker_rtt(int port, const std::string& topic, const std::string& payload, int n, bool self) {
  Client c(port);
  const std::string inbox = "bench/inbox";
  c.subscribe(self ? topic : inbox, 1);
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    mosquitto_property* props = nullptr;
    if (!self) mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, inbox.c_str());
    const uint64_t before = c.count();
    const auto t0 = Clock::now();
    mosquitto_publish_v5(c.m(), nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1, false,
                         props);
    mosquitto_property_free_all(&props);
    const auto t1 = c.wait(before + 1);
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  return pct(us);
}

Pct control_rtt(const std::string& control_sock, int n) {
  int fd = unix_connect(control_sock);
  std::string buf;
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    send_all(fd, "{\"id\":" + std::to_string(i) + ",\"cmd\":\"call\",\"action\":\"mqtt.status\"}\n");
    std::string line = read_line(fd, buf);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (line.find("\"ok\":true") == std::string::npos) die("control call failed: " + line);
  }
  close(fd);
  return pct(us);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) die("usage: mqtt_bench MOSQUITTO HOSTLET BUILD_DIR [N]");
  auto absolute = [](const char* p) {
    char* r = realpath(p, nullptr);
    if (!r) die(std::string("no such file: ") + p);
    std::string s(r);
    free(r);
    return s;
  };
  const std::string mosquitto = absolute(argv[1]), hostlet = absolute(argv[2]), build = absolute(argv[3]);
  const uint64_t n = argc > 4 ? std::stoull(argv[4]) : 100000;
  signal(SIGPIPE, SIG_IGN);
  char tmpl[] = "/tmp/hostlet-mqtt-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const int port = free_port();
  {
    std::ofstream(dir + "/mosquitto.conf") << "listener " << port << " 127.0.0.1\nallow_anonymous true\n"
                                           << "user " << (getuid() == 0 ? "root" : getenv("USER")) << "\n"
                                           << "max_queued_messages 1000000\nmax_inflight_messages 100\n"
                                           << "set_tcp_nodelay true\n";  // else its PUBACK-then-PUBLISH waits for a delayed ACK
  }
  pid_t broker = spawn({mosquitto, "-c", dir + "/mosquitto.conf"}, dir + "/mosquitto.log");
  usleep(300000);
  mosquitto_lib_init();

  {
    std::ofstream(dir + "/hostlet.yaml")
        << "agent: {control_socket: " << dir << "/control.sock, log_level: warn, event_queue: 65536}\n"
        << "plugins:\n"
        << "  - {name: gen, plugin: " << build << "/plugins/unixsock/unixsock.so, config: {socket: " << dir
        << "/notify.sock}}\n"
        << "  - {name: probe, plugin: " << build << "/bench/bench_plugin.so}\n"
        << "  - name: mqtt\n    plugin: " << build << "/plugins/mqtt/mqtt.so\n"
        << "    config: {broker: \"127.0.0.1:" << port << "\", prefix: hostlet/bench, allow: [mqtt.status], "
        << "outbox: 1000000, outbox_bytes: 1GiB, rate: 1000000, burst: 1000000, "
        << "publish: [{source: gen, type: bench.q0, qos: 0}, {source: gen, type: bench.q1, qos: 1}]}\n";
  }
  pid_t agent = spawn({hostlet, "-c", dir + "/hostlet.yaml"}, dir + "/agent.log");
  close(unix_connect(dir + "/control.sock"));
  usleep(500000);  // the instance connects to the broker

  printf("mqtt_bench: %llu events, payload %zu bytes, mosquitto on loopback\n", static_cast<unsigned long long>(n),
         kPayload.size());
  for (int qos : {0, 1}) {
    const double plain = plain_rate(port, n, qos);
    double via = 0;
    // The probe's window: about as long as the run at the rates seen so far.
    const std::string lag = with_probe(dir + "/control.sock", 1000,
                                       [&] { via = agent_rate(port, dir + "/notify.sock", n, qos, 0); });
    printf("QoS %d   plain libmosquitto %9.0f msg/s   hostlet mqtt %9.0f events/s   ratio %.2f\n", qos, plain, via,
           via / plain);
    printf("        loop lateness during the first second of it (probe): %s\n", lag.c_str());
  }
  const int calls = 2000;
  const Pct self = broker_rtt(port, "bench/self", "{}", calls, true);
  const Pct via = broker_rtt(port, "hostlet/bench/call/mqtt.status", "{}", calls, false);
  const Pct ctl = control_rtt(dir + "/control.sock", calls);
  printf("round trip over %d calls (us)       p50      p99\n", calls);
  printf("  broker publish to subscriber  %8.0f %8.0f\n", self.p50, self.p99);
  printf("  call through the broker       %8.0f %8.0f   (%.2fx / %.2fx the broker's own)\n", via.p50, via.p99,
         via.p50 / self.p50, via.p99 / self.p99);
  printf("  call over the control socket  %8.0f %8.0f\n", ctl.p50, ctl.p99);

  stop(agent);
  stop(broker);
  mosquitto_lib_cleanup();
  std::string rm = "rm -rf '" + dir + "'";
  if (system(rm.c_str()) != 0) fprintf(stderr, "mqtt_bench: could not remove %s\n", dir.c_str());
  return 0;
}
