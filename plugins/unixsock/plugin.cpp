/*
 * unixsock: a notification source on a Unix stream socket.
 *
 * Example configuration:
 *
 *   plugins:
 *     - name: notify                 # the source of every event it publishes
 *       plugin: unixsock
 *       config:
 *         socket: /run/hostlet/notify.sock
 *         mode: "0660"               # octal, as a string
 *         group: libvirt             # a name or a gid; default: the agent's group
 *         allow_uids: [0, 1000]      # checked with SO_PEERCRED; empty (with
 *         allow_gids: []             #   allow_gids empty): anyone who can open the socket
 *         max_line: 64KiB
 *         max_attrs: 256             # per notification, a repeated key counted each time
 *         max_key: 256               # bytes of one attribute name
 *         max_value: 64KiB           # bytes of one attribute value
 *         max_connections: 256
 *         max_pending: 128           # ack-done replies one connection may wait for
 *         max_write_buffer: 1MiB     # unsent replies one connection may have
 *         idle_timeout: 300s         # 0 = never
 *         queue_wait: 5s             # how long a line may wait for room in the event queue
 *         drain_timeout: 2s          # at stop, for pending replies
 *
 * Protocol: newline-delimited JSON, one notification per line:
 *
 *   {"type": "vm.start", "attrs": {"name": "vm1"}, "id": 7, "ack": "done"}
 *
 * `type` is required ([A-Za-z0-9_.:-], 1 to 256 characters); `attrs` values
 * are strings: at most max_attrs of them, names up to max_key bytes, values up
 * to max_value bytes (of decoded UTF-8); a repeated name keeps its first place
 * and its last value. `id` is echoed: a string of at most 256 bytes or an
 * integer that fits in int64 or uint64, written without fraction or exponent
 * (-0 is echoed as 0); anything else is an error, answered with id null (a
 * number that overflows a double, such as 1e999, makes the line invalid
 * JSON, as for nlohmann::json). `ack` is "accepted" (the default: reply once
 * the event is queued), "done" (reply once every action the event started has
 * answered, with the results) or "none" (no reply on success). Errors are
 * always answered, whatever `ack` says:
 *
 *   {"id":7,"ok":true,"event":42}
 *   {"id":7,"ok":true,"event":42,"results":[{"action":"virt.domain.start",
 *     "rule":"/etc/hostlet/hostlet.yaml:12","ok":true,"attrs":{},"data":...}]}
 *   {"id":7,"ok":false,"error":"attribute 'name' must be a string, not a number"}
 *
 * When the agent's event queue is full, a connection stops reading and offers
 * its line again on every loop iteration (the kernel's socket buffer then
 * pushes back on the client) for up to queue_wait; after that the line is
 * answered {"ok":false,"error":"event queue full"} and the client may send it
 * again.
 *
 * Fairness: the instance handles at most kLinesPerTurn lines and, past
 * kBytesPerTurn bytes of lines, no further line per loop iteration, over all
 * its connections. A connection that would go over stops reading and resumes
 * on the next iteration, first in line. libuv hands a readable stream up to 32
 * reads of 64 KiB per iteration; parsing all of that at once (tens of
 * thousands of lines) held the loop for milliseconds and filled the event
 * queue faster than it is dispatched. Each line costs time linear in its
 * length (attributes bounded by max_attrs, deduped in O(n log n)), so one
 * iteration's work here is bounded by kBytesPerTurn plus one max_line.
 *
 * Reload (the host's fd store, ABI 1.1): stop() leaves the listening socket
 * and every connection that can be handed over with the host (a dup of the
 * fd; state "unixsock-listen 1" / "unixsock-conn 1" with the partial line)
 * once the replies it is owed are written, and start() takes them back, so a
 * reload closes no connection. Without a successor (shutdown, removal) keep
 * fails and stop() closes and unlinks as before.
 *
 * The host times plugin callbacks it makes itself, not this plugin's own
 * libuv callbacks (reads, accepts, writes): a slow iteration here shows in the
 * agent's loop lag without this instance's name. The bounds above keep it
 * short instead.
 *
 * Each client is served on the agent's loop with libuv directly; protocol.cpp
 * parses lines, connection.cpp frames, buffers and bounds them, and this file
 * binds the socket, admits clients and turns lines into events.
 */
#include <hostlet/plugin.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "connection.hpp"
#include "protocol.hpp"

namespace hostlet::unixsock {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
// Lines handled per loop iteration, over all connections (see "Fairness"
// above): about 100 us of parsing and publishing, and as many events as the
// bus dispatches per iteration by default (agent.event_batch), so that a
// flood neither holds the loop nor piles up in the event queue.
constexpr uint64_t kLinesPerTurn = 256;
// Bytes of lines after which no further line is handled in the iteration: 256
// lines of max_line (64 KiB) would be 16 MiB of parsing, 30 to 45 ms on the
// loop (protocol.cpp parses 64 KiB lines at 370-520 MB/s at -O2); 1 MiB is 2
// to 3 ms, and 256 usual lines (~100 bytes) are far below it.
constexpr uint64_t kBytesPerTurn = 1 << 20;
// A client that got a closing error line (line too long, refused, idle) but
// does not read it is closed anyway after this long (or idle_timeout if shorter).
constexpr uint64_t kLingerMs = 5000;
constexpr int64_t kMaxSunPath = sizeof(sockaddr_un::sun_path) - 1;

const hostlet_config_key kConfig[] = {
    {"socket", HOSTLET_CONFIG_STRING, nullptr,
     "path of the Unix stream socket to listen on (at most 107 bytes); a stale socket file there is "
     "replaced, a live one is an error",
     1, kMaxSunPath, HOSTLET_CONFIG_REQUIRED},
    {"mode", HOSTLET_CONFIG_STRING, "0660", "permissions of the socket file, in octal", 0, 0, 0},
    {"group", HOSTLET_CONFIG_STRING, nullptr, "group of the socket file, a name or a gid (default: the agent's)",
     0, 0, 0},
    {"allow_uids", HOSTLET_CONFIG_INT_LIST, nullptr,
     "peer uids allowed to connect (SO_PEERCRED); when allow_uids and allow_gids are both empty, "
     "anyone who can open the socket may",
     0, 4294967294, 0},
    {"allow_gids", HOSTLET_CONFIG_INT_LIST, nullptr,
     "peer effective gids allowed to connect (supplementary groups are not seen)", 0, 4294967294, 0},
    {"max_line", HOSTLET_CONFIG_SIZE, "64KiB",
     "longest line, without its newline; a longer one is answered with an error and the connection closed",
     64, 64LL << 20, 0},
    {"max_attrs", HOSTLET_CONFIG_INT, "256",
     "attributes one notification may carry (a repeated name counted each time); more are answered "
     "\"too many attributes\"",
     1, 65536, 0},
    {"max_key", HOSTLET_CONFIG_SIZE, "256", "longest attribute name, in bytes; a longer one is answered with an error",
     1, 64LL << 20, 0},
    {"max_value", HOSTLET_CONFIG_SIZE, "64KiB",
     "longest attribute value, in bytes; a longer one is answered with an error", 1, 64LL << 20, 0},
    {"max_connections", HOSTLET_CONFIG_INT, "256",
     "connections served at once; one more gets an error line and is closed", 1, 65536, 0},
    {"max_pending", HOSTLET_CONFIG_INT, "128",
     "ack-done replies one connection may wait for; at the limit it is not read until half are answered", 1,
     1000000, 0},
    {"max_write_buffer", HOSTLET_CONFIG_SIZE, "1MiB",
     "unsent reply bytes per connection above which it is not read until the client takes its replies", 4096,
     1LL << 30, 0},
    {"idle_timeout", HOSTLET_CONFIG_DURATION, "300s",
     "close a connection that sends nothing and waits for nothing this long, or whose replies stay unread "
     "this long; 0 = never",
     0, 7LL * 24 * 3600 * 1000, 0},
    {"queue_wait", HOSTLET_CONFIG_DURATION, "5s",
     "when the agent's event queue is full, how long a line waits for room (the connection is not read "
     "meanwhile) before it is answered \"event queue full\"; 0 = answer at once",
     0, 600LL * 1000, 0},
    {"drain_timeout", HOSTLET_CONFIG_DURATION, "2s",
     "at stop: how long connections may wait for their pending replies before they are closed", 0,
     600LL * 1000, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};

const hostlet_action_info kActions[] = {
    {"stats", "",
     "this instance's counters: connections, open, refused_peer, refused_limit, accepted, rejected, "
     "queue_waits, queue_full, replies, too_long, idle_closed, stuck_closed"},
    {nullptr, nullptr, nullptr},
};

const hostlet_event_info kEvents[] = {
    {"*", "as sent by the client",
     "one event per accepted line, with the client's type and attrs; the source is the instance name"},
    {nullptr, nullptr, nullptr},
};

unsigned parse_mode(const std::string& text) {
  if (text.empty() || text.size() > 5) throw Error(-EINVAL, "mode '" + text + "': expected octal such as \"0660\"");
  unsigned v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '7') throw Error(-EINVAL, "mode '" + text + "': expected octal such as \"0660\"");
    v = v * 8 + static_cast<unsigned>(ch - '0');
  }
  if (v > 07777) throw Error(-EINVAL, "mode '" + text + "' is out of range");
  return v;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// Group names are resolved once, in init: it may consult NSS (a blocking call),
// which is acceptable while the agent loads its config and nowhere else.
gid_t resolve_group(const std::string& group) {
  if (all_digits(group)) return static_cast<gid_t>(std::stoul(group));
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* res = nullptr;
  int r = getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &res);
  if (r != 0 || !res) throw Error(-EINVAL, "group '" + group + "' not found");
  return res->gr_gid;
}

std::vector<uint32_t> id_list(Host& host, const char* key) {
  std::vector<uint32_t> out;
  for (const auto& s : host.list(key)) {
    if (!all_digits(s)) throw Error(-EINVAL, std::string(key) + ": '" + s + "' is not a numeric id");
    out.push_back(static_cast<uint32_t>(std::stoul(s)));
  }
  return out;
}

const char* publish_error(int r) {
  switch (r) {
    case -EAGAIN: return "event queue full";
    case -ESHUTDOWN: return "the agent is stopping";
    case -EINVAL: return "event refused by the agent: invalid argument";
    default: return hostlet_strerror(r);
  }
}

// Logs at most one line per second for a recurring condition, with how many were left out.
struct RateLimit {
  uint64_t last_ms = 0;
  uint64_t suppressed = 0;
  bool allow(uint64_t now_ms) {
    if (last_ms != 0 && now_ms - last_ms < 1000) {
      suppressed++;
      return false;
    }
    last_ms = now_ms;
    return true;
  }
  uint64_t take_suppressed() { return std::exchange(suppressed, 0); }
};

struct Counters {
  uint64_t connections = 0;    // admitted
  uint64_t refused_peer = 0;   // not in allow_uids / allow_gids
  uint64_t refused_limit = 0;  // over max_connections
  uint64_t accepted = 0;       // notifications published
  uint64_t rejected = 0;       // lines answered with an error
  uint64_t queue_waits = 0;    // lines that found the event queue full and waited
  uint64_t queue_full = 0;     // lines refused because it stayed full past queue_wait
  uint64_t replies = 0;        // reply lines queued
  uint64_t too_long = 0;
  uint64_t idle_closed = 0;
  uint64_t stuck_closed = 0;
};

class UnixSock final : public Plugin, public ConnectionOwner {
 public:
  explicit UnixSock(Host& host);
  ~UnixSock() override = default;

  int start() override;
  void stop(std::function<void()> stopped) override;
  void collect(hostlet::Metrics& m) override;

 private:
  // An `ack: done` notification waiting for its event's outcome. Owned by
  // acks_ so that any the host never completes (it skips the callbacks of a
  // destroyed instance) are freed with the instance.
  struct PendingAck {
    UnixSock* self;
    Connection* conn;
    std::string id_json;
    std::list<PendingAck>::iterator it;
  };

  // ConnectionOwner
  bool on_line(Connection& c, std::string_view line) override;
  void on_line_too_long(Connection& c) override;
  void want_flush(Connection& c) override;
  void on_closed(Connection& c) override;
  uv_buf_t read_buffer() override { return uv_buf_init(rbuf_.get(), kReadChunk); }

  static void on_connection(uv_stream_t* server, int status);
  static void on_idle(uv_idle_t* idle);
  static void on_sweep(uv_timer_t* timer);
  static void on_turn_end(uv_check_t* check);
  static void on_handle_closed(uv_handle_t* h);
  static void on_event_done(void* arg, uint64_t event_id, const hostlet_outcome* outcomes, size_t n);
  static void on_event_queued(void*, uint64_t, const hostlet_outcome*, size_t) {}

  int listen_socket();
  int serve_on(int fd);    // uv_pipe_open + uv_listen on a bound socket
  int take_listener();     // from the fd store, or -1: bind our own
  bool keep_listener();    // into the fd store for the next version
  void hand_over(Connection& c) override;  // a drained connection into the fd store
  void adopt_connections();  // the previous version's, from the fd store
  size_t handed_over_ = 0;
  int clear_stale_socket();
  void accept_one();
  bool peer_allowed(const ucred& peer) const;
  void refuse(Connection& c, const std::string& message);
  void reply_error(Connection& c, std::string_view id_json, std::string_view message);
  int publish(Connection& c);
  void retry_later(Connection& c);
  void sweep();
  void free_if_done(Connection& c);
  void maybe_stopped();
  void close_handle(uv_handle_t* h);
  uint64_t now() const { return uv_now(loop_); }
  uint64_t linger_ms() const {
    return limits_.idle_timeout_ms ? std::min(limits_.idle_timeout_ms, kLingerMs) : kLingerMs;
  }

  // Config.
  std::string path_;
  unsigned mode_ = 0660;
  bool has_group_ = false;
  gid_t gid_ = 0;
  std::vector<uint32_t> allow_uids_, allow_gids_;
  Limits limits_;
  AttrLimits attr_limits_;
  size_t max_connections_ = 256;
  uint64_t drain_timeout_ms_ = 2000;
  uint64_t queue_wait_ms_ = 5000;

  // Loop state.
  uv_loop_t* loop_ = nullptr;
  uv_pipe_t server_{};
  uv_idle_t idle_{};
  uv_timer_t sweep_{};
  uv_check_t turn_{};  // active while a turn's budget is being used: ends the turn
  bool server_open_ = false, idle_open_ = false, sweep_open_ = false, turn_open_ = false;
  int open_handles_ = 0;
  bool bound_ = false;  // path_ is our socket file (remove it at stop)
  bool activated_ = false;  // the listener came from the service manager, which owns its file
  dev_t sock_dev_ = 0;
  ino_t sock_ino_ = 0;

  std::list<Connection> conns_;
  std::list<PendingAck> acks_;
  size_t open_conns_ = 0;  // admitted and not yet closed
  uint64_t serial_ = 0;
  std::vector<Connection*> to_flush_, flushing_, to_retry_, retrying_;
  std::unique_ptr<char[]> rbuf_;

  uint64_t lines_this_turn_ = 0;  // lines handled in this loop iteration
  uint64_t bytes_this_turn_ = 0;  // and their bytes

  // Per-line scratch, reused.
  Notification note_;
  std::string error_;
  std::vector<hostlet_attr> cattrs_;

  Counters n_;
  RateLimit refused_log_, limit_log_, queue_log_, accept_log_;
  bool stopping_ = false;
  bool stopped_called_ = false;
  uint64_t stop_deadline_ms_ = 0;
  std::function<void()> stopped_;
};

UnixSock::UnixSock(Host& host) : Plugin(host) {
  path_ = host.str("socket");
  if (path_.empty()) throw Error(-EINVAL, "socket: empty path");
  if (path_.size() > static_cast<size_t>(kMaxSunPath))
    throw Error(-ENAMETOOLONG, "socket: path longer than " + std::to_string(kMaxSunPath) + " bytes");
  mode_ = parse_mode(host.str("mode"));
  if (auto g = host.opt_str("group"); g && !g->empty()) {
    gid_ = resolve_group(*g);
    has_group_ = true;
  }
  allow_uids_ = id_list(host, "allow_uids");
  allow_gids_ = id_list(host, "allow_gids");
  limits_.max_line = static_cast<size_t>(host.integer("max_line"));
  attr_limits_.max_attrs = static_cast<size_t>(host.integer("max_attrs"));
  attr_limits_.max_key = static_cast<size_t>(host.integer("max_key"));
  attr_limits_.max_value = static_cast<size_t>(host.integer("max_value"));
  limits_.max_pending = static_cast<size_t>(host.integer("max_pending"));
  limits_.max_write_buffer = static_cast<size_t>(host.integer("max_write_buffer"));
  limits_.idle_timeout_ms = static_cast<uint64_t>(host.integer("idle_timeout"));
  max_connections_ = static_cast<size_t>(host.integer("max_connections"));
  drain_timeout_ms_ = static_cast<uint64_t>(host.integer("drain_timeout"));
  queue_wait_ms_ = static_cast<uint64_t>(host.integer("queue_wait"));
  if (limits_.max_line < 1 || limits_.max_pending < 1 || max_connections_ < 1)
    throw Error(-EINVAL, "max_line, max_pending and max_connections must be at least 1");

  host.action("stats", [this](Call& call) {
    auto s = [](uint64_t v) { return std::to_string(v); };
    call.ok({{"socket", path_},
             {"connections", s(n_.connections)},
             {"open", s(open_conns_)},
             {"refused_peer", s(n_.refused_peer)},
             {"refused_limit", s(n_.refused_limit)},
             {"accepted", s(n_.accepted)},
             {"rejected", s(n_.rejected)},
             {"queue_waits", s(n_.queue_waits)},
             {"queue_full", s(n_.queue_full)},
             {"replies", s(n_.replies)},
             {"too_long", s(n_.too_long)},
             {"idle_closed", s(n_.idle_closed)},
             {"stuck_closed", s(n_.stuck_closed)}});
  });
}

// The counters of the `stats` action as metrics, labelled with the instance
// (two unixsock instances add to the same families).
void UnixSock::collect(hostlet::Metrics& m) {
  const char* inst = host().name();
  auto one = [&](const char* name, hostlet_metric_type type, const char* help, double v) {
    m.family(name, type, help);
    m.sample(v, {{"instance", inst}});
  };
  auto two = [&](const char* name, const char* help, const char* label, const char* a, double va, const char* b,
                 double vb) {
    m.counter(name, help);
    m.sample(va, {{"instance", inst}, {label, a}});
    m.sample(vb, {{"instance", inst}, {label, b}});
  };
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  one("hostlet_unixsock_open_connections", HOSTLET_METRIC_GAUGE, "Client connections open now.", d(open_conns_));
  one("hostlet_unixsock_connections_total", HOSTLET_METRIC_COUNTER, "Client connections admitted.", d(n_.connections));
  two("hostlet_unixsock_refused_total", "Connections refused: peer not allowed, or over max_connections.", "reason",
      "peer", d(n_.refused_peer), "limit", d(n_.refused_limit));
  two("hostlet_unixsock_notifications_total", "Notification lines accepted onto the bus or rejected with an error.",
      "result", "accepted", d(n_.accepted), "rejected", d(n_.rejected));
  one("hostlet_unixsock_replies_total", HOSTLET_METRIC_COUNTER, "Reply lines written.", d(n_.replies));
  one("hostlet_unixsock_queue_waits_total", HOSTLET_METRIC_COUNTER, "Times a connection paused for a full event queue.",
      d(n_.queue_waits));
  m.counter("hostlet_unixsock_closed_total", "Connections the plugin closed: line too long, idle, stuck writing.");
  m.sample(d(n_.too_long), {{"instance", inst}, {"reason", "too_long"}});
  m.sample(d(n_.idle_closed), {{"instance", inst}, {"reason", "idle"}});
  m.sample(d(n_.stuck_closed), {{"instance", inst}, {"reason", "stuck"}});
}

int UnixSock::start() {
  loop_ = static_cast<uv_loop_t*>(host().uv_loop());
  if (!loop_) {
    host().error("the host offers no libuv loop");
    return -ENOTSUP;
  }
  rbuf_.reset(new char[kReadChunk]);

  uv_idle_init(loop_, &idle_);
  idle_.data = this;
  idle_open_ = true;
  open_handles_++;
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  sweep_open_ = true;
  open_handles_++;
  uv_check_init(loop_, &turn_);
  turn_.data = this;
  turn_open_ = true;
  open_handles_++;

  int r = listen_socket();
  if (r != 0) return r;
  adopt_connections();

  uint64_t period = limits_.idle_timeout_ms ? std::clamp<uint64_t>(limits_.idle_timeout_ms / 4, 10, 1000) : 1000;
  uv_timer_start(&sweep_, &UnixSock::on_sweep, period, period);
  host().info("listening on %s (mode %04o%s)", path_.c_str(), mode_,
              allow_uids_.empty() && allow_gids_.empty() ? "" : ", allow lists");
  return 0;
}

// A socket file that nobody answers is left over from an agent that died: it
// is replaced. One that answers belongs to a live agent: that is an error.
int UnixSock::clear_stale_socket() {
  struct stat st {};
  if (lstat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return 0;
    int e = -errno;
    host().error("%s: %s", path_.c_str(), strerror(-e));
    return e;
  }
  if (!S_ISSOCK(st.st_mode)) {
    host().error("%s exists and is not a socket; not replacing it", path_.c_str());
    return -EEXIST;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int e = r == 0 ? 0 : errno;
  ::close(fd);
  if (r == 0 || e == EAGAIN || e == EINPROGRESS) {
    host().error("%s: another process is listening on this socket", path_.c_str());
    return -EADDRINUSE;
  }
  if (e != ECONNREFUSED && e != ENOENT) {
    host().error("%s: cannot tell whether the socket is in use: %s", path_.c_str(), strerror(e));
    return -e;
  }
  if (e == ECONNREFUSED) {
    host().info("%s: replacing a stale socket file", path_.c_str());
    if (unlink(path_.c_str()) != 0 && errno != ENOENT) {
      e = errno;
      host().error("%s: cannot remove the stale socket: %s", path_.c_str(), strerror(e));
      return -e;
    }
  }
  return 0;
}

// The fd store (ABI 1.1): a reload hands the listening socket from the old
// version to the new one, so that clients connecting meanwhile wait in the
// backlog instead of being refused, and systemd socket activation gives one.
// The state, version 1: "unixsock-listen 1\n<path>\n<dev> <ino> <bound>\n".
namespace {
constexpr const char* kListenFd = "listen";
constexpr const char* kListenStateTag = "unixsock-listen 1\n";

bool has_fd_store(const hostlet::Host& h) {
  return h.api()->struct_size >= offsetof(hostlet_host_api, take_fd) + sizeof(h.api()->take_fd) &&
         h.api()->keep_fd && h.api()->take_fd;
}
}  // namespace

int UnixSock::take_listener() {
  if (!has_fd_store(host())) return -1;
  char state[512];
  size_t len = 0;
  int fd = host().api()->take_fd(host().c(), kListenFd, state, sizeof state, &len);
  if (fd == -ENOENT) return -1;
  if (fd < 0) {
    host().warn("fd store: cannot take '%s': %s; binding %s", kListenFd, strerror(-fd), path_.c_str());
    return -1;
  }
  if (len == 0) {  // activated: the service manager bound it where its unit says
    sockaddr_un sa{};
    socklen_t sl = sizeof sa;
    std::string where = getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &sl) == 0 && sa.sun_family == AF_UNIX
                            ? std::string(sa.sun_path)
                            : std::string("?");
    if (where != path_)
      host().warn("the activated socket is %s, not the configured %s: serving on it", where.c_str(), path_.c_str());
    activated_ = true;
    return fd;
  }
  std::string st(state, len), tag = kListenStateTag;
  std::string path;
  unsigned long long dev = 0, ino = 0;
  int bound = 0;
  size_t nl = st.size() > tag.size() ? st.find('\n', tag.size()) : std::string::npos;
  bool parsed = st.compare(0, tag.size(), tag) == 0 && nl != std::string::npos &&
                sscanf(st.c_str() + nl + 1, "%llu %llu %d", &dev, &ino, &bound) == 3;
  if (parsed) path = st.substr(tag.size(), nl - tag.size());
  if (!parsed || path != path_) {
    // Another layout (a newer version's), or the socket moved in the config:
    // bind afresh, and leave the old listener in the store, where a rollback
    // to the previous version finds it (or the end of the reload closes it).
    host().info("fd store: the previous listener (%s) is not reused: %s", parsed ? path.c_str() : "?",
                parsed ? "the configured socket changed" : "unknown state layout");
    if (host().api()->keep_fd(host().c(), kListenFd, fd, state, len) != 0) ::close(fd);
    return -1;
  }
  bound_ = bound != 0;
  activated_ = !bound_;
  sock_dev_ = static_cast<dev_t>(dev);
  sock_ino_ = static_cast<ino_t>(ino);
  host().debug("fd store: serving on the previous version's listener (fd %d)", fd);
  return fd;
}

// A connection's state, version 1: "unixsock-conn 1\n<lines>\n" then the
// partial line its client has sent so far.
constexpr const char* kConnStateTag = "unixsock-conn 1\n";

void UnixSock::hand_over(Connection& c) {
  int own = c.fd();
  int fd = own >= 0 ? fcntl(own, F_DUPFD_CLOEXEC, 3) : -1;
  std::string state = std::string(kConnStateTag) + std::to_string(c.lines) + "\n" + c.partial();
  const std::string name = "c." + std::to_string(handed_over_);
  int r = fd >= 0 ? host().api()->keep_fd(host().c(), name.c_str(), fd, state.data(), state.size()) : -errno;
  if (r == 0) handed_over_++;
  else {
    if (fd >= 0) ::close(fd);
    host().warn("connection %llu: not handed over (%s): closed", static_cast<unsigned long long>(c.serial()),
                strerror(-r));
  }
  c.close();
}

// Serves the connections the previous version handed over: c.0, c.1, ...
void UnixSock::adopt_connections() {
  if (!has_fd_store(host())) return;
  size_t adopted = 0, dropped = 0;
  for (size_t i = 0;; i++) {
    const std::string name = "c." + std::to_string(i);
    size_t len = 0;
    int probe = host().api()->take_fd(host().c(), name.c_str(), nullptr, 0, &len);
    if (probe == -ENOENT) break;
    std::string state(len, '\0');
    int fd = probe == -ENOBUFS ? host().api()->take_fd(host().c(), name.c_str(), state.data(), state.size(), &len)
                               : probe;
    if (fd < 0) break;
    const std::string tag = kConnStateTag;
    size_t nl = state.size() > tag.size() ? state.find('\n', tag.size()) : std::string::npos;
    if (state.compare(0, tag.size(), tag) != 0 || nl == std::string::npos ||
        state.size() - nl - 1 > limits_.max_line) {
      ::close(fd);  // another layout (a newer version's), or past this version's max_line
      dropped++;
      continue;
    }
    Connection& c = conns_.emplace_back(*this, limits_, ++serial_);
    c.self = std::prev(conns_.end());
    if (c.init(loop_) != 0) {
      conns_.pop_back();
      ::close(fd);
      dropped++;
      continue;
    }
    open_handles_++;
    c.lines = std::strtoull(state.c_str() + tag.size(), nullptr, 10);
    if (c.adopt(fd, state.substr(nl + 1), now()) != 0) {
      c.close();
      dropped++;
      continue;
    }
    if (!peer_allowed(c.peer()) || open_conns_ >= max_connections_) {
      refuse(c, peer_allowed(c.peer()) ? "too many connections (max_connections " + std::to_string(max_connections_) + ")"
                                       : "permission denied: uid " + std::to_string(static_cast<int>(c.peer().uid)) +
                                             " is not allowed to send notifications here");
      dropped++;
      continue;
    }
    c.admitted = true;
    open_conns_++;
    adopted++;
  }
  if (adopted || dropped)
    host().info("adopted %zu connection(s) from the previous version%s", adopted,
                dropped ? (" (" + std::to_string(dropped) + " not: closed)").c_str() : "");
}

// Leaves the listener to the next version; false when no successor comes.
bool UnixSock::keep_listener() {
  if (!has_fd_store(host()) || !server_open_) return false;
  uv_os_fd_t own = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&server_), &own) != 0) return false;
  int fd = fcntl(own, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return false;
  char state[512];
  int n = snprintf(state, sizeof state, "%s%s\n%llu %llu %d\n", kListenStateTag, path_.c_str(),
                   static_cast<unsigned long long>(sock_dev_), static_cast<unsigned long long>(sock_ino_),
                   bound_ ? 1 : 0);
  int r = n > 0 && static_cast<size_t>(n) < sizeof state
              ? host().api()->keep_fd(host().c(), kListenFd, fd, state, static_cast<size_t>(n))
              : -E2BIG;
  if (r != 0) {
    ::close(fd);
    if (r != -ESHUTDOWN) host().warn("fd store: cannot keep the listener: %s", strerror(-r));
    return false;
  }
  return true;
}

// socket + bind + chmod/chown + listen by hand, then uv_pipe_open: libuv's own
// uv_pipe_bind would unlink the path at close even if it no longer is ours,
// and the file's mode must be set before the first client can connect.
int UnixSock::listen_socket() {
  if (int taken = take_listener(); taken >= 0) return serve_on(taken);
  int r = clear_stale_socket();
  if (r != 0) return r;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = -errno;
    host().error("socket: %s", strerror(-r));
    return r;
  }
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
  auto fail = [&](const char* what) {
    int e = -errno;
    host().error("%s: %s: %s", path_.c_str(), what, strerror(-e));
    ::close(fd);
    if (bound_) unlink(path_.c_str());
    bound_ = false;
    return e;
  };
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return fail("bind");
  bound_ = true;
  struct stat st {};
  if (stat(path_.c_str(), &st) != 0) return fail("stat");
  sock_dev_ = st.st_dev;
  sock_ino_ = st.st_ino;
  if (has_group_ && chown(path_.c_str(), static_cast<uid_t>(-1), gid_) != 0) return fail("chown");
  if (chmod(path_.c_str(), mode_) != 0) return fail("chmod");
  if (listen(fd, SOMAXCONN) != 0) return fail("listen");
  return serve_on(fd);
}

int UnixSock::serve_on(int fd) {
  int r;
  uv_pipe_init(loop_, &server_, 0);
  server_.data = this;
  server_open_ = true;
  open_handles_++;
  r = uv_pipe_open(&server_, fd);
  if (r != 0) ::close(fd);  // not adopted by the handle
  else r = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), SOMAXCONN, &UnixSock::on_connection);
  if (r != 0) {
    host().error("%s: %s", path_.c_str(), uv_strerror(r));
    return r;  // stop() closes server_ (and with it fd) and removes the file
  }
  return 0;
}

void UnixSock::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<UnixSock*>(server->data);
  if (status < 0) {
    if (self->accept_log_.allow(self->now())) self->host().warn("accept: %s", uv_strerror(status));
    return;
  }
  self->host().guard("accept", [&] { self->accept_one(); });
}

void UnixSock::accept_one() {
  Connection& c = conns_.emplace_back(*this, limits_, ++serial_);
  c.self = std::prev(conns_.end());
  if (c.init(loop_) != 0) {
    conns_.pop_back();
    return;
  }
  open_handles_++;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&server_), c.stream()) != 0) return c.close();
  bool known = c.read_peer();
  const ucred& p = c.peer();
  if (!(known ? peer_allowed(p) : allow_uids_.empty() && allow_gids_.empty())) {
    n_.refused_peer++;
    if (refused_log_.allow(now())) {
      uint64_t more = refused_log_.take_suppressed();
      host().warn("refused a connection from uid %d gid %d pid %d: not in allow_uids/allow_gids (%llu more "
                  "refused in the last second)",
                  static_cast<int>(p.uid), static_cast<int>(p.gid), static_cast<int>(p.pid),
                  static_cast<unsigned long long>(more));
    }
    return refuse(c, "permission denied: uid " + std::to_string(static_cast<int>(p.uid)) +
                         " is not allowed to send notifications here");
  }
  if (open_conns_ >= max_connections_) {
    n_.refused_limit++;
    if (limit_log_.allow(now())) {
      uint64_t more = limit_log_.take_suppressed();
      host().warn("refused a connection from uid %d pid %d: max_connections (%zu) reached (%llu more refused "
                  "in the last second)",
                  static_cast<int>(p.uid), static_cast<int>(p.pid), max_connections_,
                  static_cast<unsigned long long>(more));
    }
    return refuse(c, "too many connections (max_connections " + std::to_string(max_connections_) + ")");
  }
  c.admitted = true;
  open_conns_++;
  n_.connections++;
  if (c.start(now()) != 0) return c.close();
  host().debug("connection %llu from uid %d pid %d", static_cast<unsigned long long>(c.serial()),
               static_cast<int>(p.uid), static_cast<int>(p.pid));
}

bool UnixSock::peer_allowed(const ucred& peer) const {
  if (allow_uids_.empty() && allow_gids_.empty()) return true;
  auto has = [](const std::vector<uint32_t>& v, uint32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  return has(allow_uids_, peer.uid) || has(allow_gids_, peer.gid);
}

void UnixSock::refuse(Connection& c, const std::string& message) {
  reply_error(c, "null", message);
  c.close_after_flush(now());
}

void UnixSock::reply_error(Connection& c, std::string_view id_json, std::string_view message) {
  append_error_reply(c.out(), id_json, message);
  n_.replies++;
  c.queued();
}

bool UnixSock::on_line(Connection& c, std::string_view line) {
  if (lines_this_turn_ >= kLinesPerTurn || bytes_this_turn_ >= kBytesPerTurn) {  // the budget is spent: next iteration
    retry_later(c);
    return false;
  }
  if (lines_this_turn_++ == 0 && turn_open_) uv_check_start(&turn_, &UnixSock::on_turn_end);
  bytes_this_turn_ += line.size();
  if (!parse_notification(line, note_, error_, attr_limits_)) {
    n_.rejected++;
    c.refused_since_ms = 0;
    host().debug("connection %llu: %s", static_cast<unsigned long long>(c.serial()), error_.c_str());
    reply_error(c, note_.id_json, error_);
    return true;
  }
  int r = publish(c);
  if (r == -EAGAIN && queue_wait_ms_ > 0) {
    // The event queue is full: keep the line and stop reading this client
    // (its socket buffer fills and pushes back) until there is room again.
    uint64_t t = now();
    if (c.refused_since_ms == 0) {
      c.refused_since_ms = t;
      n_.queue_waits++;
    }
    if (t - c.refused_since_ms < queue_wait_ms_) {
      retry_later(c);
      return false;
    }
  }
  c.refused_since_ms = 0;
  if (r == 0) return true;
  n_.rejected++;
  if (r == -EAGAIN) {
    n_.queue_full++;
    if (queue_log_.allow(now()))
      host().warn("event queue full for %llu ms: refusing notifications", static_cast<unsigned long long>(queue_wait_ms_));
  }
  reply_error(c, note_.id_json, publish_error(r));
  return true;
}

// Publishes note_ for connection c as its ack asks; queues the accepted reply.
int UnixSock::publish(Connection& c) {
  cattrs_.resize(note_.n_attrs);
  for (size_t i = 0; i < note_.n_attrs; i++)
    cattrs_[i] = {note_.attrs[i].first.c_str(), note_.attrs[i].second.c_str()};
  const hostlet_host_api* api = host().api();
  hostlet_host* h = host().c();
  uint64_t id = 0;
  int r = 0;
  switch (note_.ack) {
    case Ack::none:
      r = api->publish(h, note_.type.c_str(), cattrs_.data(), cattrs_.size());
      break;
    case Ack::accepted:
      // Tracked only to learn the event id for the reply.
      r = api->publish_tracked(h, note_.type.c_str(), cattrs_.data(), cattrs_.size(), &UnixSock::on_event_queued,
                               nullptr, &id);
      if (r == 0) {
        append_accepted_reply(c.out(), note_.id_json, id);
        n_.replies++;
        c.queued();
      }
      break;
    case Ack::done: {
      PendingAck* p = &acks_.emplace_back(PendingAck{this, &c, note_.id_json, {}});
      p->it = std::prev(acks_.end());
      c.pending_add();  // before publishing, in case the host answers at once
      r = api->publish_tracked(h, note_.type.c_str(), cattrs_.data(), cattrs_.size(), &UnixSock::on_event_done, p,
                               &id);
      if (r != 0) {
        acks_.erase(p->it);
        c.pending_done();
      }
      break;
    }
  }
  if (r == 0) n_.accepted++;
  return r;
}

// The connection's current line waits for the next loop iteration (on_idle).
void UnixSock::retry_later(Connection& c) {
  if (!c.retry_wanted) {
    c.retry_wanted = true;
    to_retry_.push_back(&c);
  }
  if (idle_open_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(&idle_))) uv_idle_start(&idle_, &UnixSock::on_idle);
}

void UnixSock::on_turn_end(uv_check_t* check) {
  auto* self = static_cast<UnixSock*>(check->data);
  self->lines_this_turn_ = 0;
  self->bytes_this_turn_ = 0;
  uv_check_stop(check);
}

void UnixSock::on_event_done(void* arg, uint64_t event_id, const hostlet_outcome* outcomes, size_t n) {
  auto* p = static_cast<PendingAck*>(arg);
  UnixSock* self = p->self;
  Connection& c = *p->conn;
  self->host().guard("ack done reply", [&] {
    if (!c.writable()) return;  // the client is gone: nobody to tell
    append_done_reply(c.out(), p->id_json, event_id, outcomes, n);
    self->n_.replies++;
    c.queued();
  });
  self->acks_.erase(p->it);
  c.pending_done();
  self->free_if_done(c);
  if (self->stopping_) self->maybe_stopped();
}

void UnixSock::on_line_too_long(Connection& c) {
  n_.rejected++;
  n_.too_long++;
  host().debug("connection %llu: line longer than max_line (%zu bytes); closing",
               static_cast<unsigned long long>(c.serial()), limits_.max_line);
  reply_error(c, "null", "line exceeds max_line (" + std::to_string(limits_.max_line) + " bytes); closing");
}

void UnixSock::want_flush(Connection& c) {
  to_flush_.push_back(&c);
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&idle_)) && idle_open_)
    uv_idle_start(&idle_, &UnixSock::on_idle);
}

// Writes are batched: replies queued during one loop turn go out together on
// the next (an idle handle, so the loop does not block in between).
// Also where lines held back in the previous iteration are offered again
// (retry_later), before this iteration reads anything new.
void UnixSock::on_idle(uv_idle_t* idle) {
  auto* self = static_cast<UnixSock*>(idle->data);
  uv_idle_stop(idle);
  self->flushing_.swap(self->to_flush_);
  self->host().guard("flush", [&] {
    for (Connection* c : self->flushing_)
      if (c->flush_wanted) c->flush();
  });
  self->flushing_.clear();
  self->retrying_.swap(self->to_retry_);
  self->host().guard("retry", [&] {
    for (Connection* c : self->retrying_) {
      if (!c->retry_wanted) continue;
      c->retry_wanted = false;
      c->retry();
    }
  });
  self->retrying_.clear();
}

void UnixSock::on_sweep(uv_timer_t* timer) {
  auto* self = static_cast<UnixSock*>(timer->data);
  self->host().guard("sweep", [&] { self->sweep(); });
}

void UnixSock::sweep() {
  uint64_t t = now();
  for (Connection& c : conns_) {
    switch (c.expired(t, linger_ms())) {
      case Connection::Timeout::none: break;
      case Connection::Timeout::idle: {
        n_.idle_closed++;
        std::string msg = "idle for " + std::to_string(limits_.idle_timeout_ms) + " ms";
        if (c.partial_bytes()) msg += " with an incomplete line of " + std::to_string(c.partial_bytes()) + " bytes";
        host().debug("connection %llu: %s; closing", static_cast<unsigned long long>(c.serial()), msg.c_str());
        reply_error(c, "null", msg + "; closing");
        c.close_after_flush(t);
        break;
      }
      case Connection::Timeout::stuck_output:
        n_.stuck_closed++;
        host().warn("closing connection %llu (uid %d): its replies went unread for %llu ms (%zu bytes queued)",
                    static_cast<unsigned long long>(c.serial()), static_cast<int>(c.peer().uid),
                    static_cast<unsigned long long>(limits_.idle_timeout_ms), c.queued_bytes());
        c.close();
        break;
      case Connection::Timeout::linger: c.close(); break;
    }
  }
  if (stopping_ && t >= stop_deadline_ms_) {
    for (Connection& c : conns_) c.close();
  }
}

void UnixSock::on_closed(Connection& c) {
  open_handles_--;
  if (c.admitted) {
    c.admitted = false;
    open_conns_--;
  }
  free_if_done(c);
  if (stopping_) maybe_stopped();
}

void UnixSock::free_if_done(Connection& c) {
  if (!c.can_free()) return;
  if (c.flush_wanted) to_flush_.erase(std::remove(to_flush_.begin(), to_flush_.end(), &c), to_flush_.end());
  if (c.retry_wanted) to_retry_.erase(std::remove(to_retry_.begin(), to_retry_.end(), &c), to_retry_.end());
  conns_.erase(c.self);
}

void UnixSock::stop(std::function<void()> stopped) {
  stopping_ = true;
  stopped_ = std::move(stopped);
  // A reload: the listener stays open for the next version, and so does its
  // file; each connection that can be goes to the next version too, once its
  // pending replies are written.
  const bool handing_over = keep_listener();
  if (handing_over) bound_ = false;
  if (server_open_) {
    close_handle(reinterpret_cast<uv_handle_t*>(&server_));
    server_open_ = false;
  }
  if (bound_) {
    // Remove the file only if it is still ours (not replaced by someone else meanwhile).
    struct stat st {};
    if (stat(path_.c_str(), &st) == 0 && st.st_dev == sock_dev_ && st.st_ino == sock_ino_) unlink(path_.c_str());
    bound_ = false;
  }
  if (loop_) stop_deadline_ms_ = now() + drain_timeout_ms_;
  for (Connection& c : conns_) {
    if (handing_over && c.admitted && c.can_hand_over() && (drain_timeout_ms_ > 0 || c.drained())) c.drain_and_hand_over();
    else if (drain_timeout_ms_ == 0) c.close();
    else c.drain_and_close();
  }
  host().info("stopping: %llu connections, %llu notifications accepted, %llu rejected, %llu replies",
              static_cast<unsigned long long>(n_.connections), static_cast<unsigned long long>(n_.accepted),
              static_cast<unsigned long long>(n_.rejected), static_cast<unsigned long long>(n_.replies));
  maybe_stopped();
}

// Stopped once every connection handle is closed: then the idle handle and the
// sweep timer (which enforced the drain deadline) close, and the last close
// callback reports to the host.
void UnixSock::maybe_stopped() {
  if (!stopping_ || stopped_called_) return;
  for (const Connection& c : conns_)
    if (c.handle_open()) return;
  if (idle_open_) {
    idle_open_ = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&idle_));
  }
  if (sweep_open_) {
    sweep_open_ = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&sweep_));
  }
  if (turn_open_) {
    turn_open_ = false;
    close_handle(reinterpret_cast<uv_handle_t*>(&turn_));
  }
  if (open_handles_ == 0) {
    stopped_called_ = true;
    auto cb = std::move(stopped_);
    cb();
  }
}

void UnixSock::close_handle(uv_handle_t* h) {
  if (!uv_is_closing(h)) uv_close(h, &UnixSock::on_handle_closed);
}

void UnixSock::on_handle_closed(uv_handle_t* h) {
  auto* self = static_cast<UnixSock*>(h->data);
  self->open_handles_--;
  self->maybe_stopped();
}

}  // namespace
}  // namespace hostlet::unixsock

HOSTLET_CPP_PLUGIN(hostlet::unixsock::UnixSock, "unixsock", "0.1.0",
                   "notification source: newline-delimited JSON on a Unix stream socket", hostlet::unixsock::kConfig,
                   hostlet::unixsock::kActions, hostlet::unixsock::kEvents)
