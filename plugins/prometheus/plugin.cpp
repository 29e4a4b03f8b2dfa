/*
 * prometheus: the agent's metrics and health over HTTP, served on the loop.
 *
 * Example configuration:
 *
 *   plugins:
 *     - name: metrics
 *       plugin: prometheus
 *       config:
 *         listen: ["127.0.0.1:9750", "[::1]:9750", /run/hostlet/metrics.sock]
 *         max_connections: 64        # one more is answered 503 and closed
 *         max_header_bytes: 8KiB     # request line and headers; more: 431
 *         read_timeout: 10s          # for a whole request's header; then 408
 *         keepalive_timeout: 60s     # idle between requests; then closed
 *         write_timeout: 30s         # for one response to be taken; then closed
 *         scrape_timeout: 5s         # how long a scrape waits for refreshing instances
 *         health_max_lag: 1s         # /health is 503 when the loop lags more
 *         max_pipeline: 16           # requests per connection per loop iteration
 *         max_write_buffer: 16MiB    # unsent bytes above which a connection is not read
 *
 * Endpoints: GET or HEAD of
 *   /metrics  the agent's exposition (api->metrics_scrape): Prometheus text
 *             0.0.4, or OpenMetrics 1.0.0 when Accept prefers
 *             application/openmetrics-text; gzip when Accept-Encoding allows it.
 *   /health   api->agent_health: 200 when healthy, else 503, with its JSON.
 * Anything else: 404 (other paths), 405 with "Allow: GET, HEAD" (other
 * methods), 400 (malformed), 431 (header over max_header_bytes), 505 (not
 * HTTP/1.0 or 1.1), 408 (read_timeout), 503 (over max_connections). Every
 * error but 404 closes its connection after the answer; nothing else is
 * affected. HTTP/1.1 keeps the connection unless "Connection: close";
 * HTTP/1.0 closes it unless "Connection: keep-alive". Pipelined requests are
 * answered in order: a connection parses its next request only once the
 * current one is answered.
 *
 * http.cpp parses (and says why it is its own parser), address.cpp reads the
 * `listen` items, and this file accepts, buffers, times out and answers.
 */
#include <hostlet/plugin.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "address.hpp"
#include "http.hpp"

namespace hostlet::prometheus {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
// How long a connection closing after an error answer keeps reading (and
// dropping) its client's input so that a close with unread input does not
// reset the connection before the client reads the answer.
constexpr uint64_t kLingerMs = 2000;

const hostlet_config_key kConfig[] = {
    {"listen", HOSTLET_CONFIG_STRING_LIST, "[\"127.0.0.1:9750\"]",
     "where to serve HTTP: HOST:PORT (numeric IPv4), [V6]:PORT or an absolute Unix socket path; port 0 takes a "
     "free port (logged)",
     0, 0, 0},
    {"max_connections", HOSTLET_CONFIG_INT, "64",
     "connections served at once, over all listeners; one more is answered 503 and closed", 1, 65536, 0},
    {"max_header_bytes", HOSTLET_CONFIG_SIZE, "8KiB",
     "longest request line plus headers; a longer request is answered 431 and its connection closed", 256,
     1LL << 20, 0},
    {"read_timeout", HOSTLET_CONFIG_DURATION, "10s",
     "time for a request's line and headers to arrive, from its first byte (or from the connection's accept); "
     "then 408 and close",
     10, 3600LL * 1000, 0},
    {"keepalive_timeout", HOSTLET_CONFIG_DURATION, "60s",
     "how long a kept-alive connection may stay idle between requests before it is closed", 10, 3600LL * 1000, 0},
    {"write_timeout", HOSTLET_CONFIG_DURATION, "30s",
     "time for a client to take one response; a connection whose response is still unsent then is closed", 10,
     3600LL * 1000, 0},
    {"scrape_timeout", HOSTLET_CONFIG_DURATION, "5s",
     "how long a scrape waits for instances that are refreshing their metrics before it serves what they have", 0,
     600LL * 1000, 0},
    {"health_max_lag", HOSTLET_CONFIG_DURATION, "1s",
     "/health answers 503 when the loop lagged more than this over the last 10 s", 1, 600LL * 1000, 0},
    {"max_pipeline", HOSTLET_CONFIG_INT, "16",
     "pipelined requests one connection gets answered per loop iteration; the rest wait for the next", 1, 1024,
     0},
    {"max_write_buffer", HOSTLET_CONFIG_SIZE, "16MiB",
     "unsent response bytes per connection above which its further requests are not read until the client "
     "takes them",
     4096, 1LL << 30, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};

const hostlet_action_info kActions[] = {
    {"stats", "", "this instance's counters: connections, open, refused, requests, timeouts, scrapes"},
    {nullptr, nullptr, nullptr},
};

std::string describe(const ListenAddress& a) {
  switch (a.kind) {
    case ListenAddress::ipv4: return a.host + ":" + std::to_string(a.port);
    case ListenAddress::ipv6: return "[" + a.host + "]:" + std::to_string(a.port);
    case ListenAddress::unix_path: return a.path;
  }
  return "?";
}

// Fails init with `message`, which `hostlet --check` and the reload reply then
// show verbatim (set_error, ABI 1.1) instead of "Invalid argument".
[[noreturn]] void refuse(Host& host, int code, const std::string& message) {
  const hostlet_host_api* api = host.api();
  if (api->struct_size >= offsetof(hostlet_host_api, set_error) + sizeof api->set_error && api->set_error)
    api->set_error(host.c(), "%s", message.c_str());
  throw Error(code, message);
}

class Server;

struct Listener {
  Server* server = nullptr;
  ListenAddress address;
  uv_any_handle h{};
  bool open = false;
  dev_t dev = 0;  // of the socket file (unix_path), to unlink only our own
  ino_t ino = 0;
  uv_handle_t* handle() { return &h.handle; }
  uv_stream_t* stream() { return &h.stream; }
};

// What a connection is waiting for; each has its own deadline (see sweep()).
enum class Wait { request, idle, scrape, linger };

struct Connection {
  Server* server = nullptr;
  std::list<Connection>::iterator self;
  uint64_t serial = 0;
  uv_any_handle h{};
  uv_write_t wreq{};
  uv_shutdown_t sreq{};
  bool handle_open = false;   // uv_*_init done and not yet closed
  bool closing = false;       // uv_close called
  bool admitted = false;      // counted against max_connections
  bool reading = false;
  bool writing = false;       // a uv_write is in flight (of wbuf)
  bool close_after_write = false;
  bool discarding = false;    // lingering after an error answer: input is dropped
  bool scrape_pending = false;  // metrics_scrape's cb is owed: the object must live
  bool resume_wanted = false;   // queued for the next iteration (max_pipeline)
  Wait wait = Wait::request;
  uint64_t since_ms = 0;        // when `wait` began
  uint64_t write_since_ms = 0;  // when the uv_write in flight started
  size_t scan_from = 0;         // header_end's progress over `in`
  std::string in, out, wbuf;
  // The request whose scrape is in flight.
  bool head = false, keep_alive = true, gzip = false;
  hostlet_metrics_format format = HOSTLET_METRICS_TEXT;

  uv_handle_t* handle() { return &h.handle; }
  uv_stream_t* stream() { return &h.stream; }
  bool can_free() const { return !handle_open && !scrape_pending; }
};

struct Counters {
  uint64_t connections = 0;      // admitted
  uint64_t refused = 0;          // over max_connections
  uint64_t read_timeouts = 0;    // answered 408
  uint64_t write_timeouts = 0;
  uint64_t idle_closed = 0;
  uint64_t scrapes = 0;
  uint64_t scrape_errors = 0;    // metrics_scrape refused, or gzip failed
  std::map<int, uint64_t> requests;  // by status code
};

class Server final : public Plugin {
 public:
  explicit Server(Host& host);
  ~Server() override = default;

  int start() override;
  void stop(std::function<void()> stopped) override;
  void collect(hostlet_metrics* m);

 private:
  int listen_on(Listener& l);
  int listen_unix(Listener& l);
  int clear_stale_socket(const std::string& path);
  void accept_one(Listener& l);
  void on_data(Connection& c, const char* data, size_t n);
  void process(Connection& c);
  // Answers one parsed request; false when the connection must stop parsing for now.
  bool handle(Connection& c, const Request& req);
  void scrape(Connection& c, const Request& req);
  void health(Connection& c, const Request& req);
  void respond(Connection& c, int code, const char* content_type, std::string_view body, bool keep_alive,
               bool head, const std::string& extra_headers = "");
  void error(Connection& c, int code, const std::string& reason, const std::string& extra_headers = "");
  void flush(Connection& c);
  void after_write(Connection& c);
  void update_reading(Connection& c);
  void close(Connection& c);
  void free_if_done(Connection& c);
  void sweep();
  void maybe_stopped();
  void close_handle(uv_handle_t* h);
  uint64_t now() const { return uv_now(loop_); }
  size_t unsent(const Connection& c) const { return c.out.size() + (c.writing ? c.wbuf.size() : 0); }

  static void on_connection(uv_stream_t* server, int status);
  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_conn_closed(uv_handle_t* h);
  static void on_handle_closed(uv_handle_t* h);
  static void on_sweep(uv_timer_t* t);
  static void on_idle(uv_idle_t* idle);
  static void on_scraped(void* arg, const char* text, size_t len);
  // gzip of an exposition, offloaded (GzipJob owns a copy of the text).
  struct GzipJob {
    Connection* c;
    std::string text, zipped;
    bool ok;
  };
  static void gzip_work(void* arg);
  static void gzip_done(void* arg, int status);
  void answer_scrape(Connection& c, std::string_view body, bool zipped);

  // Config.
  std::vector<ListenAddress> addresses_;
  ParseLimits limits_;
  size_t max_connections_ = 64;
  uint64_t read_timeout_ms_ = 10000, keepalive_timeout_ms_ = 60000, write_timeout_ms_ = 30000;
  uint64_t scrape_timeout_ms_ = 5000, health_max_lag_ms_ = 1000;
  size_t max_pipeline_ = 16, max_write_buffer_ = 16 << 20;

  // Loop state.
  uv_loop_t* loop_ = nullptr;
  std::list<Listener> listeners_;
  std::list<Connection> conns_;
  std::vector<Connection*> to_resume_;
  uv_timer_t sweep_{};
  uv_idle_t idle_{};
  bool sweep_open_ = false, idle_open_ = false;
  size_t open_handles_ = 0;  // every handle whose close callback is still owed
  size_t open_conns_ = 0;
  uint64_t serial_ = 0;
  uint64_t last_refusal_log_ms_ = 0;
  std::unique_ptr<char[]> rbuf_;
  bool stopping_ = false, stopped_called_ = false;
  std::function<void()> stopped_;
  Counters n_;
};

Server::Server(Host& host) : Plugin(host) {
  // A 1.0 host has neither (the table is shorter): nothing to serve.
  const hostlet_host_api* api = host.api();
  if (api->struct_size < offsetof(hostlet_host_api, agent_health) + sizeof api->agent_health ||
      !api->metrics_scrape || !api->agent_health || !api->metric_family || !api->metric_sample)
    refuse(host, -ENOTSUP, "the agent offers no metrics_scrape/agent_health (it predates ABI 1.1)");
  for (const std::string& item : host.list("listen")) {
    ListenAddress a;
    std::string err;
    if (!parse_listen_address(item, a, err)) refuse(host, -EINVAL, "listen: " + err);
    addresses_.push_back(a);
  }
  if (addresses_.empty()) refuse(host, -EINVAL, "listen: no address given");
  max_connections_ = static_cast<size_t>(host.integer("max_connections"));
  limits_.max_header_bytes = static_cast<size_t>(host.integer("max_header_bytes"));
  read_timeout_ms_ = static_cast<uint64_t>(host.integer("read_timeout"));
  keepalive_timeout_ms_ = static_cast<uint64_t>(host.integer("keepalive_timeout"));
  write_timeout_ms_ = static_cast<uint64_t>(host.integer("write_timeout"));
  scrape_timeout_ms_ = static_cast<uint64_t>(host.integer("scrape_timeout"));
  health_max_lag_ms_ = static_cast<uint64_t>(host.integer("health_max_lag"));
  max_pipeline_ = static_cast<size_t>(host.integer("max_pipeline"));
  max_write_buffer_ = static_cast<size_t>(host.integer("max_write_buffer"));

  host.action("stats", [this](Call& call) {
    auto s = [](uint64_t v) { return std::to_string(v); };
    std::vector<std::pair<std::string, std::string>> attrs = {
        {"connections", s(n_.connections)},     {"open", s(open_conns_)},
        {"refused", s(n_.refused)},             {"read_timeouts", s(n_.read_timeouts)},
        {"write_timeouts", s(n_.write_timeouts)}, {"idle_closed", s(n_.idle_closed)},
        {"scrapes", s(n_.scrapes)},             {"scrape_errors", s(n_.scrape_errors)}};
    for (const auto& [code, count] : n_.requests) attrs.emplace_back("requests_" + std::to_string(code), s(count));
    call.ok(attrs);
  });
}

int Server::start() {
  loop_ = static_cast<uv_loop_t*>(host().uv_loop());
  if (!loop_) {
    host().error("the host offers no libuv loop");
    return -ENOTSUP;
  }
  rbuf_.reset(new char[kReadChunk]);
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  sweep_open_ = true;
  open_handles_++;
  uv_idle_init(loop_, &idle_);
  idle_.data = this;
  idle_open_ = true;
  open_handles_++;
  for (const ListenAddress& a : addresses_) {
    Listener& l = listeners_.emplace_back();
    l.server = this;
    l.address = a;
    int r = listen_on(l);
    if (r != 0) return r;  // stop() closes what is open
  }
  uint64_t shortest = std::min({read_timeout_ms_, keepalive_timeout_ms_, write_timeout_ms_, kLingerMs});
  uint64_t period = std::clamp<uint64_t>(shortest / 4, 10, 1000);
  uv_timer_start(&sweep_, &Server::on_sweep, period, period);
  return 0;
}

int Server::listen_on(Listener& l) {
  ListenAddress& a = l.address;
  if (a.kind == ListenAddress::unix_path) return listen_unix(l);
  uv_tcp_init(loop_, &l.h.tcp);
  l.h.handle.data = &l;
  l.open = true;
  open_handles_++;
  sockaddr_storage ss{};
  int r = a.kind == ListenAddress::ipv4 ? uv_ip4_addr(a.host.c_str(), a.port, reinterpret_cast<sockaddr_in*>(&ss))
                                        : uv_ip6_addr(a.host.c_str(), a.port, reinterpret_cast<sockaddr_in6*>(&ss));
  if (r == 0) r = uv_tcp_bind(&l.h.tcp, reinterpret_cast<sockaddr*>(&ss), a.kind == ListenAddress::ipv6 ? UV_TCP_IPV6ONLY : 0);
  if (r == 0) r = uv_listen(l.stream(), SOMAXCONN, &Server::on_connection);
  if (r != 0) {
    host().error("listen %s: %s", describe(a).c_str(), uv_strerror(r));
    return r;
  }
  if (a.port == 0) {  // say which port the kernel chose
    int len = sizeof ss;
    if (uv_tcp_getsockname(&l.h.tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
      a.port = ntohs(a.kind == ListenAddress::ipv4 ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                                   : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  host().info("listening on http://%s", describe(a).c_str());
  return 0;
}

// A socket file nobody answers is left over from an agent that died and is
// replaced; one that answers belongs to a live process: an error.
int Server::clear_stale_socket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return errno == ENOENT ? 0 : -errno;
  if (!S_ISSOCK(st.st_mode)) {
    host().error("%s exists and is not a socket; not replacing it", path.c_str());
    return -EEXIST;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int e = r == 0 ? 0 : errno;
  ::close(fd);
  if (e != ECONNREFUSED) {
    host().error("%s: another process is listening on this socket", path.c_str());
    return -EADDRINUSE;
  }
  host().info("%s: replacing a stale socket file", path.c_str());
  return unlink(path.c_str()) == 0 || errno == ENOENT ? 0 : -errno;
}

int Server::listen_unix(Listener& l) {
  const std::string& path = l.address.path;
  int r = clear_stale_socket(path);
  if (r != 0) {
    host().error("listen %s: %s", path.c_str(), strerror(-r));
    return r;
  }
  uv_pipe_init(loop_, &l.h.pipe, 0);
  l.h.handle.data = &l;
  l.open = true;
  open_handles_++;
  r = uv_pipe_bind(&l.h.pipe, path.c_str());
  struct stat st {};
  if (r == 0 && stat(path.c_str(), &st) == 0) {
    l.dev = st.st_dev;
    l.ino = st.st_ino;
  }
  if (r == 0 && chmod(path.c_str(), 0660) != 0) r = -errno;
  if (r == 0) r = uv_listen(l.stream(), SOMAXCONN, &Server::on_connection);
  if (r != 0) {
    host().error("listen %s: %s", path.c_str(), uv_strerror(r));
    return r;
  }
  host().info("listening on unix:%s", path.c_str());
  return 0;
}

void Server::on_connection(uv_stream_t* server, int status) {
  auto* l = static_cast<Listener*>(server->data);
  Server* self = l->server;
  if (status < 0) {
    self->host().warn("accept on %s: %s", describe(l->address).c_str(), uv_strerror(status));
    return;
  }
  self->host().guard("accept", [&] { self->accept_one(*l); });
}

void Server::accept_one(Listener& l) {
  Connection& c = conns_.emplace_back();
  c.self = std::prev(conns_.end());
  c.server = this;
  c.serial = ++serial_;
  int r = l.address.kind == ListenAddress::unix_path ? uv_pipe_init(loop_, &c.h.pipe, 0) : uv_tcp_init(loop_, &c.h.tcp);
  if (r != 0) {
    conns_.erase(c.self);
    return;
  }
  c.h.handle.data = &c;
  c.wreq.data = &c;
  c.sreq.data = &c;
  c.handle_open = true;
  open_handles_++;
  if (uv_accept(l.stream(), c.stream()) != 0) return close(c);
  if (l.address.kind != ListenAddress::unix_path) uv_tcp_nodelay(&c.h.tcp, 1);
  c.since_ms = now();
  if (uv_read_start(c.stream(), &Server::on_alloc, &Server::on_read) != 0) return close(c);
  c.reading = true;
  if (open_conns_ >= max_connections_) {
    n_.refused++;
    if (last_refusal_log_ms_ == 0 || now() - last_refusal_log_ms_ >= 1000) {
      last_refusal_log_ms_ = now();
      host().warn("max_connections (%zu) reached: answering 503 and closing (%llu refused so far)", max_connections_,
                  static_cast<unsigned long long>(n_.refused));
    }
    return error(c, 503, "too many connections");
  }
  c.admitted = true;
  open_conns_++;
  n_.connections++;
}

void Server::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Server* self = static_cast<Connection*>(h->data)->server;
  *buf = uv_buf_init(self->rbuf_.get(), kReadChunk);
}

void Server::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(s->data);
  Server* self = c->server;
  if (n == 0) return;
  if (n < 0) {  // EOF or an error: nothing more will come, and nobody reads an answer that is not out yet
    if (n != UV_EOF || c->discarding || (!c->writing && c->out.empty() && !c->scrape_pending)) return self->close(*c);
    // A half-closed client still gets its answers (HTTP/1.0 tools do this).
    uv_read_stop(s);
    c->reading = false;
    c->close_after_write = true;
    return;
  }
  self->host().guard("read", [&] { self->on_data(*c, buf->base, static_cast<size_t>(n)); });
}

void Server::on_data(Connection& c, const char* data, size_t n) {
  if (c.discarding) return;
  if (c.wait == Wait::idle) {  // the first byte of a new request: its read_timeout starts
    c.wait = Wait::request;
    c.since_ms = now();
  }
  c.in.append(data, n);
  process(c);
}

// Answers the complete requests at the start of `in`, in order, while the
// connection may: one at a time (a scrape in flight holds the next), at most
// max_pipeline per iteration, and not while its unsent output is over
// max_write_buffer.
void Server::process(Connection& c) {
  size_t handled = 0;
  while (!c.scrape_pending && !c.close_after_write && !c.closing && unsent(c) <= max_write_buffer_) {
    if (handled == max_pipeline_) {
      if (!c.resume_wanted) {
        c.resume_wanted = true;
        to_resume_.push_back(&c);
        uv_idle_start(&idle_, &Server::on_idle);
      }
      break;
    }
    ParseResult p = parse_request(c.in, limits_, &c.scan_from);
    if (p.state == ParseResult::incomplete) break;
    if (p.state == ParseResult::error) {
      host().debug("connection %llu: %d %s", static_cast<unsigned long long>(c.serial), p.status, p.reason.c_str());
      error(c, p.status, p.reason);
      break;
    }
    c.in.erase(0, p.consumed);
    c.scan_from = 0;
    handled++;
    if (!handle(c, p.request)) break;
  }
  if (!c.scrape_pending && !c.close_after_write && c.wait == Wait::request && c.in.empty()) {
    c.wait = Wait::idle;
    c.since_ms = now();
  }
  update_reading(c);
}

// Reads while the connection can take a request: not while a scrape or
// output holds it (the kernel's buffer then pushes back on the client).
void Server::update_reading(Connection& c) {
  if (c.closing || !c.handle_open) return;
  bool want = c.discarding || (!c.close_after_write && !c.scrape_pending && !c.resume_wanted &&
                               unsent(c) <= max_write_buffer_ && c.in.size() <= limits_.max_header_bytes);
  if (want && !c.reading && uv_read_start(c.stream(), &Server::on_alloc, &Server::on_read) == 0) c.reading = true;
  if (!want && c.reading) {
    uv_read_stop(c.stream());
    c.reading = false;
  }
}

bool Server::handle(Connection& c, const Request& req) {
  bool known = req.path == "/metrics" || req.path == "/health";
  if (req.method == Method::other) {
    error(c, 405, "method " + req.method_text + " not allowed", "Allow: GET, HEAD\r\n");
    return false;
  }
  if (!known) {
    n_.requests[404]++;
    respond(c, 404, "text/plain; charset=utf-8", "not found; try /metrics or /health\n", req.keep_alive,
            req.method == Method::head);
    return !c.close_after_write;
  }
  if (req.path == "/health") {
    health(c, req);
    return !c.close_after_write;
  }
  scrape(c, req);
  return false;
}

void Server::health(Connection& c, const Request& req) {
  struct Answer {
    int healthy = 0;
    std::string json;
  } answer;
  const hostlet_host_api* api = host().api();
  int r = api->agent_health(
      host().c(), health_max_lag_ms_,
      [](void* arg, int healthy, const char* json) {
        auto* a = static_cast<Answer*>(arg);
        a->healthy = healthy;
        a->json = json ? json : "{}";
      },
      &answer);
  int code = r == 0 && answer.healthy ? 200 : 503;
  if (r != 0) answer.json = std::string("{\"status\":\"unknown\",\"error\":\"") + hostlet_strerror(r) + "\"}";
  n_.requests[code]++;
  respond(c, code, "application/json", answer.json + "\n", req.keep_alive, req.method == Method::head);
}

void Server::scrape(Connection& c, const Request& req) {
  c.head = req.method == Method::head;
  c.keep_alive = req.keep_alive;
  c.gzip = accepts_gzip(req.accept_encoding);
  c.format = wants_openmetrics(req.accept) ? HOSTLET_METRICS_OPENMETRICS : HOSTLET_METRICS_TEXT;
  hostlet_scrape_opts opts{sizeof(hostlet_scrape_opts), c.format, scrape_timeout_ms_};
  c.scrape_pending = true;
  c.wait = Wait::scrape;
  c.since_ms = now();
  n_.scrapes++;
  const hostlet_host_api* api = host().api();
  int r = api->metrics_scrape(host().c(), &opts, &Server::on_scraped, &c);
  if (r != 0) {
    c.scrape_pending = false;
    n_.scrape_errors++;
    n_.requests[503]++;
    respond(c, 503, "text/plain; charset=utf-8", std::string("scrape failed: ") + hostlet_strerror(r) + "\n",
            c.keep_alive, c.head);
  }
}

void Server::on_scraped(void* arg, const char* text, size_t len) {
  auto* c = static_cast<Connection*>(arg);
  Server* self = c->server;
  c->scrape_pending = false;
  if (!text || !c->handle_open || c->closing) {  // the instance is going, or the client went
    if (c->handle_open) self->close(*c);
    return self->free_if_done(*c);
  }
  if (c->gzip) {
    // Deflating megabytes (1000 domains) takes milliseconds: on the pool,
    // not the loop. The connection lives until the job's done has run.
    auto* job = new GzipJob{c, std::string(text, len), {}, false};
    c->scrape_pending = true;
    int r = self->host().api()->offload(self->host().c(), nullptr, &Server::gzip_work, &Server::gzip_done, job, nullptr);
    if (r == 0) return;
    c->scrape_pending = false;
    delete job;
    self->n_.scrape_errors++;  // the lane is full: served uncompressed instead
  }
  self->answer_scrape(*c, std::string_view(text, len), false);
}

void Server::gzip_work(void* arg) {
  auto* job = static_cast<GzipJob*>(arg);
  job->ok = gzip(job->text, job->zipped);
}

void Server::gzip_done(void* arg, int status) {
  std::unique_ptr<GzipJob> job(static_cast<GzipJob*>(arg));
  Connection* c = job->c;
  Server* self = c->server;
  c->scrape_pending = false;
  if (status != 0 || !c->handle_open || c->closing) {  // the instance is stopping, or the client went
    if (c->handle_open) self->close(*c);
    return self->free_if_done(*c);
  }
  if (!job->ok) self->n_.scrape_errors++;  // served uncompressed instead
  self->answer_scrape(*c, job->ok ? std::string_view(job->zipped) : std::string_view(job->text), job->ok);
}

void Server::answer_scrape(Connection& c, std::string_view body, bool zipped) {
  host().guard("scrape answer", [&] {
    const char* type = c.format == HOSTLET_METRICS_OPENMETRICS
                           ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                           : "text/plain; version=0.0.4; charset=utf-8";
    std::string extra = "Vary: Accept, Accept-Encoding\r\n";
    if (zipped) extra += "Content-Encoding: gzip\r\n";
    n_.requests[200]++;
    respond(c, 200, type, body, c.keep_alive, c.head, extra);
    process(c);  // the next pipelined request, if any
  });
}

void Server::respond(Connection& c, int code, const char* content_type, std::string_view body, bool keep_alive,
                     bool head, const std::string& extra_headers) {
  if (stopping_) keep_alive = false;
  std::string& o = c.out;
  o += "HTTP/1.1 " + std::to_string(code) + " " + status_text(code) + "\r\n";
  o += "Content-Type: ";
  o += content_type;
  o += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  o += extra_headers;
  o += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!head) o.append(body);
  if (!keep_alive) c.close_after_write = true;
  c.wait = keep_alive ? Wait::request : Wait::linger;
  c.since_ms = now();
  flush(c);
}

// An error answer: counted, then the connection closes once it is written.
void Server::error(Connection& c, int code, const std::string& reason, const std::string& extra_headers) {
  n_.requests[code]++;
  c.in.clear();
  respond(c, code, "text/plain; charset=utf-8", std::to_string(code) + " " + status_text(code) + ": " + reason + "\n",
          false, false, extra_headers);
}

void Server::flush(Connection& c) {
  if (c.writing || c.out.empty() || c.closing) return;
  c.wbuf.swap(c.out);
  c.out.clear();
  uv_buf_t b = uv_buf_init(c.wbuf.data(), static_cast<unsigned>(c.wbuf.size()));
  int r = uv_write(&c.wreq, c.stream(), &b, 1, &Server::on_write);
  if (r != 0) return close(c);
  c.writing = true;
  c.write_since_ms = now();
}

void Server::on_write(uv_write_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  Server* self = c->server;
  c->writing = false;
  c->wbuf.clear();
  if (status < 0 || c->closing) return self->close(*c);
  self->host().guard("write", [&] { self->after_write(*c); });
}

void Server::after_write(Connection& c) {
  if (!c.out.empty()) return flush(c);
  if (c.close_after_write && !c.discarding) {
    // Half-close, then read (and drop) until the client closes or kLingerMs passes.
    c.discarding = true;
    c.wait = Wait::linger;
    c.since_ms = now();
    if (uv_shutdown(&c.sreq, c.stream(), &Server::on_shutdown) != 0) return close(c);
    update_reading(c);
    if (!c.reading) close(c);  // a half-closed client sends nothing more
    return;
  }
  process(c);  // requests held back by max_write_buffer
}

void Server::on_shutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  if (status < 0 && !c->closing) c->server->close(*c);
}

void Server::close(Connection& c) {
  if (c.closing || !c.handle_open) return;
  c.closing = true;
  c.reading = false;
  uv_close(c.handle(), &Server::on_conn_closed);
}

void Server::on_conn_closed(uv_handle_t* h) {
  auto* c = static_cast<Connection*>(h->data);
  Server* self = c->server;
  c->handle_open = false;
  self->open_handles_--;
  if (c->admitted) {
    c->admitted = false;
    self->open_conns_--;
  }
  self->free_if_done(*c);
  self->maybe_stopped();
}

void Server::free_if_done(Connection& c) {
  if (!c.can_free()) return;
  if (c.resume_wanted) to_resume_.erase(std::remove(to_resume_.begin(), to_resume_.end(), &c), to_resume_.end());
  conns_.erase(c.self);
}

// The connections that reached max_pipeline go on, one batch each.
void Server::on_idle(uv_idle_t* idle) {
  auto* self = static_cast<Server*>(idle->data);
  uv_idle_stop(idle);
  std::vector<Connection*> batch;
  batch.swap(self->to_resume_);
  self->host().guard("resume", [&] {
    for (Connection* c : batch) {
      c->resume_wanted = false;
      self->process(*c);
    }
  });
}

void Server::on_sweep(uv_timer_t* t) {
  auto* self = static_cast<Server*>(t->data);
  self->host().guard("sweep", [&] { self->sweep(); });
}

void Server::sweep() {
  uint64_t t = now();
  for (auto it = conns_.begin(); it != conns_.end();) {
    Connection& c = *it++;  // close() never frees at once (the close callback does)
    if (c.closing || !c.handle_open) continue;
    if (c.writing && t - c.write_since_ms >= write_timeout_ms_) {
      n_.write_timeouts++;
      host().debug("connection %llu: response unsent after %llu ms; closing", static_cast<unsigned long long>(c.serial),
                   static_cast<unsigned long long>(write_timeout_ms_));
      close(c);
      continue;
    }
    uint64_t age = t - c.since_ms;
    switch (c.wait) {
      case Wait::request:
        if (age >= read_timeout_ms_ && !c.writing && c.out.empty() && !c.close_after_write) {
          n_.read_timeouts++;
          error(c, 408, "no complete request within " + std::to_string(read_timeout_ms_) + " ms");
        }
        break;
      case Wait::idle:
        if (age >= keepalive_timeout_ms_) {
          n_.idle_closed++;
          close(c);
        }
        break;
      case Wait::linger:
        if (age >= kLingerMs) close(c);
        break;
      case Wait::scrape: break;  // the host answers within scrape_timeout, or with NULL at destroy
    }
  }
}

void Server::stop(std::function<void()> stopped) {
  stopping_ = true;
  stopped_ = std::move(stopped);
  for (Listener& l : listeners_) {
    if (!l.open) continue;
    l.open = false;
    close_handle(l.handle());
    if (l.address.kind != ListenAddress::unix_path) continue;
    struct stat st {};  // remove the file only while it is still ours
    if (stat(l.address.path.c_str(), &st) == 0 && st.st_dev == l.dev && st.st_ino == l.ino)
      unlink(l.address.path.c_str());
  }
  for (Connection& c : conns_) close(c);
  if (sweep_open_) {
    sweep_open_ = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&sweep_));
  }
  if (idle_open_) {
    idle_open_ = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&idle_));
  }
  host().info("stopping: %llu connections, %llu refused, %llu scrapes",
              static_cast<unsigned long long>(n_.connections), static_cast<unsigned long long>(n_.refused),
              static_cast<unsigned long long>(n_.scrapes));
  maybe_stopped();
}

void Server::maybe_stopped() {
  if (!stopping_ || stopped_called_ || open_handles_ != 0) return;
  stopped_called_ = true;
  auto cb = std::move(stopped_);
  cb();
}

void Server::close_handle(uv_handle_t* h) {
  if (!uv_is_closing(h)) uv_close(h, &Server::on_handle_closed);
}

// Listener, timer and idle handles: their data is the Listener or the Server.
void Server::on_handle_closed(uv_handle_t* h) {
  Server* self = nullptr;
  if (h->type == UV_TIMER || h->type == UV_IDLE) self = static_cast<Server*>(h->data);
  else self = static_cast<Listener*>(h->data)->server;
  self->open_handles_--;
  self->maybe_stopped();
}

// The instance's own metrics (ABI 1.1 collect).
void Server::collect(hostlet_metrics* m) {
  const hostlet_host_api* api = host().api();
  hostlet_attr inst{"instance", host().name()};
  auto family = [&](const char* name, hostlet_metric_type type, const char* help) {
    return api->metric_family(m, name, type, help, nullptr) == 0;
  };
  if (family("hostlet_http_requests_total", HOSTLET_METRIC_COUNTER, "HTTP requests answered, by status code")) {
    for (const auto& [code, count] : n_.requests) {
      std::string c = std::to_string(code);
      hostlet_attr labels[] = {inst, {"code", c.c_str()}};
      api->metric_sample(m, labels, 2, static_cast<double>(count));
    }
  }
  struct Plain {
    const char* name;
    hostlet_metric_type type;
    const char* help;
    double value;
  };
  const Plain plain[] = {
      {"hostlet_http_connections_total", HOSTLET_METRIC_COUNTER, "HTTP connections admitted",
       static_cast<double>(n_.connections)},
      {"hostlet_http_connections_refused_total", HOSTLET_METRIC_COUNTER,
       "HTTP connections answered 503 and closed at max_connections", static_cast<double>(n_.refused)},
      {"hostlet_http_connections_open", HOSTLET_METRIC_GAUGE, "HTTP connections open now",
       static_cast<double>(open_conns_)},
      {"hostlet_http_read_timeouts_total", HOSTLET_METRIC_COUNTER, "requests answered 408 at read_timeout",
       static_cast<double>(n_.read_timeouts)},
      {"hostlet_http_scrapes_total", HOSTLET_METRIC_COUNTER, "scrapes of /metrics started",
       static_cast<double>(n_.scrapes)},
  };
  for (const Plain& p : plain)
    if (family(p.name, p.type, p.help)) api->metric_sample(m, &inst, 1, p.value);
}

// HOSTLET_CPP_PLUGIN has no collect entry (yet): the descriptor by hand, with the same lifecycle functions.
void collect_entry(void* state, hostlet_metrics* out) {
  auto* inst = static_cast<detail::Instance<Server>*>(state);
  inst->host.guard("collect", [&] { inst->plugin->collect(out); });
}

const hostlet_plugin kDescriptor = {
    HOSTLET_PLUGIN_HEADER,
    .name = "prometheus",
    .version = "0.1.0",
    .description = "HTTP endpoint: the agent's metrics (Prometheus text and OpenMetrics) and health",
    .config = kConfig,
    .actions = kActions,
    .events = nullptr,
    .init = &detail::init<Server>,
    .start = &detail::start<Server>,
    .stop = &detail::stop<Server>,
    .destroy = &detail::destroy<Server>,
    .collect = &collect_entry,
    .refresh = nullptr,
};

}  // namespace
}  // namespace hostlet::prometheus

extern "C" HOSTLET_PLUGIN_ENTRY { return &hostlet::prometheus::kDescriptor; }
