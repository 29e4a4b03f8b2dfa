#include "control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "agent.hpp"
#include "control_protocol.hpp"
#include "reload.hpp"
#include "log.hpp"
#include "scrape.hpp"
#include "version.h"

namespace hostlet {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxStreamBacklog = 4 << 20;
constexpr uint64_t kMetricsTimeoutMs = 5000;  // `metrics` without timeout_ms: how long refreshes may take  // bytes queued to an `events` client before we drop
// Requests one connection may have handled per loop iteration; the rest wait
// for the next one (uv_idle), so a pipelining client cannot hold the loop.
constexpr size_t kLinesPerTurn = 64;
// How often idle and stuck connections are looked for: a timeout is met
// within this much of its value.
constexpr uint64_t kSweepMs = 1000;

// `obj` (an object) as one line of text with "data": data_json added as is:
// the action's data, which the host has checked is one JSON value on one line
// (ActionRegistry::reply_ok), is spliced in rather than parsed into the DOM
// and printed again (~2 ms of loop time for a 110 KB list of 1000 domains).
std::string dump_with_data(const json& obj, const std::string& data_json) {
  std::string text = obj.dump(-1, ' ', false, json::error_handler_t::replace);
  if (data_json.empty()) return text;
  text.pop_back();  // the closing '}'
  text += text.size() > 1 ? ",\"data\":" : "\"data\":";
  text += data_json;
  text += '}';
  return text;
}

json attrs_json(const Attrs& a) {
  json o = json::object();
  for (const auto& [k, v] : a) o[k] = v;
  return o;
}

json lane_json(const Lane& lane, const Histogram& wait_1m, const Histogram& run_1m) {
  const LaneStats& s = lane.stats();
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  auto pct = [&us](const Histogram& h) {
    return json{{"p50", us(h.quantile(0.5))}, {"p99", us(h.quantile(0.99))}, {"max", us(h.max())}};
  };
  return json{{"max_inflight", lane.limits().max_inflight},
              {"max_queue", lane.limits().max_queue},
              {"submitted", s.submitted},
              {"rejected", s.rejected},
              {"running", s.running},
              {"queued", s.queued},
              {"done", s.done},
              {"cancelled", s.cancelled},
              {"timed_out", s.timed_out},
              {"shutdown", s.shutdown},
              {"queue_wait_us", pct(s.queue_wait)},
              {"run_time_us", pct(s.run_time)},
              {"queue_wait_us_1m", pct(wait_1m)},
              {"run_time_us_1m", pct(run_1m)}};
}

const char* type_name(hostlet_config_type t) {
  switch (t) {
    case HOSTLET_CONFIG_STRING: return "string";
    case HOSTLET_CONFIG_INT: return "int";
    case HOSTLET_CONFIG_BOOL: return "bool";
    case HOSTLET_CONFIG_DOUBLE: return "double";
    case HOSTLET_CONFIG_DURATION: return "duration";
    case HOSTLET_CONFIG_SIZE: return "size";
    case HOSTLET_CONFIG_STRING_LIST: return "string list";
    case HOSTLET_CONFIG_INT_LIST: return "int list";
    case HOSTLET_CONFIG_MAP_LIST: return "mapping list";
    case HOSTLET_CONFIG_MAP: return "map";
  }
  return "?";
}
}  // namespace

json event_json(const Event& ev) {
  return json{{"id", ev.id},
              {"time", static_cast<double>(ev.timestamp_ns) / 1e9},
              {"source", ev.source},
              {"type", ev.type},
              {"attrs", attrs_json(ev.attrs)}};
}

struct ControlServer::Conn : std::enable_shared_from_this<ControlServer::Conn> {
  uv_pipe_t pipe{};
  ControlServer* server = nullptr;
  std::string buf;
  size_t backlog = 0;  // bytes written but not yet flushed
  bool closing = false;
  bool reading = true;    // false while paused: a spent line budget or a full write buffer
  bool scheduled = false; // on the server's ready list (drained on the next iteration)
  unsigned outstanding = 0;  // answers still to come (call, reload, notify with ack done)
  uint64_t last_input_ms = 0, last_output_ms = 0;
  uint32_t uid = 0, gid = 0;  // the peer's, from SO_PEERCRED at accept
  int32_t pid = 0;
  EventBus::Sub* stream = nullptr;
  uint64_t dropped = 0;
  std::list<std::shared_ptr<Conn>>::iterator it;

  void send(const json& j) { send_text(j.dump(-1, ' ', false, json::error_handler_t::replace)); }

  // `line`: one JSON text without a line break.
  void send_text(std::string line) {
    if (closing) return;
    line += '\n';
    struct Req {
      uv_write_t req;
      std::string data;
      std::shared_ptr<Conn> keep;
    };
    auto* r = new Req{{}, std::move(line), shared_from_this()};
    uv_buf_t b = uv_buf_init(r->data.data(), static_cast<unsigned>(r->data.size()));
    backlog += r->data.size();
    r->req.data = r;
    int rc = uv_write(&r->req, reinterpret_cast<uv_stream_t*>(&pipe), &b, 1, [](uv_write_t* req, int) {
      auto* r = static_cast<Req*>(req->data);
      Conn& c = *r->keep;
      c.backlog -= r->data.size();
      c.last_output_ms = uv_now(c.pipe.loop);
      c.server->wrote(r->keep);
      delete r;
    });
    if (rc != 0) {
      backlog -= r->data.size();
      delete r;
    }
  }
};

ControlServer::ControlServer(Agent& agent) : agent_(agent) {}

ControlServer::~ControlServer() = default;

bool ControlServer::can_listen(const std::string& path, std::string& err) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    err = "path '" + path + "' is empty or longer than " + std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes";
    return false;
  }
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      err = path + " exists and is not a socket; refusing to replace it";
      return false;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path.c_str(), path.size() + 1);
    bool live = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (fd >= 0) ::close(fd);
    if (live) {
      err = path + ": another agent is answering on it";
      return false;
    }
    unlink(path.c_str());  // stale: left by an agent that did not exit cleanly
  }
  return true;
}

namespace {

// A group name or a decimal gid; false with `err` when there is no such group.
bool group_id(const std::string& group, gid_t& out, std::string& err) {
  if (!group.empty() && std::all_of(group.begin(), group.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    unsigned long v = std::stoul(group);
    if (v > 4294967294UL) {
      err = "agent.control_group: gid " + group + " is out of range";
      return false;
    }
    out = static_cast<gid_t>(v);
    return true;
  }
  std::vector<char> buf(16384);
  struct group gr {};
  struct group* res = nullptr;
  if (getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || !res) {
    err = "agent.control_group: no group '" + group + "'";
    return false;
  }
  out = res->gr_gid;
  return true;
}

bool listed(const std::vector<uint32_t>& ids, uint32_t id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); }

}  // namespace

const char* ControlServer::access_name(Access a) {
  switch (a) {
    case Access::admin: return "admin";
    case Access::read: return "read";
    case Access::none: break;
  }
  return "none";
}

ControlServer::Access ControlServer::access_of(uint32_t uid, uint32_t gid) const {
  const AgentSection& a = agent_.config().agent;
  if (a.control_admin_uids.empty() && a.control_admin_gids.empty() && a.control_read_uids.empty() &&
      a.control_read_gids.empty())
    return Access::admin;  // no lists: the socket file's mode decides who connects
  if (uid == 0 || uid == geteuid() || listed(a.control_admin_uids, uid) || listed(a.control_admin_gids, gid))
    return Access::admin;
  if (listed(a.control_read_uids, uid) || listed(a.control_read_gids, gid)) return Access::read;
  return Access::none;
}

bool ControlServer::listen(const std::string& path, unsigned mode, const std::string& group, std::string& err) {
  if (!can_listen(path, err)) return false;
  gid_t gid = static_cast<gid_t>(-1);
  if (!group.empty() && !group_id(group, gid, err)) return false;
  uv_loop_t* loop = agent_.core().loop;
  uv_pipe_init(loop, &server_, 0);
  server_.data = this;
  listening_ = true;
  int r = uv_pipe_bind(&server_, path.c_str());
  if (r == 0 && !group.empty()) r = chown(path.c_str(), static_cast<uid_t>(-1), gid) == 0 ? 0 : -errno;
  if (r == 0) r = chmod(path.c_str(), mode) == 0 ? 0 : -errno;
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 128, &ControlServer::on_connection);
  if (r != 0) {
    err = path + ": " + uv_strerror(r);
    close();
    return false;
  }
  path_ = path;
  start_timers();
  return true;
}

bool ControlServer::listen_fd(int fd, std::string& err) {
  uv_pipe_init(agent_.core().loop, &server_, 0);
  server_.data = this;
  listening_ = true;
  int r = uv_pipe_open(&server_, fd);
  if (r != 0) ::close(fd);  // not taken by the handle
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 128, &ControlServer::on_connection);
  if (r != 0) {
    err = "the activated socket 'control' (fd " + std::to_string(fd) + "): " + uv_strerror(r);
    close();
    return false;
  }
  start_timers();
  return true;
}

void ControlServer::start_timers() {
  uv_loop_t* loop = agent_.core().loop;
  uv_idle_init(loop, &ready_);
  ready_.data = this;
  ready_open_ = true;
  uv_timer_init(loop, &sweep_);
  sweep_.data = this;
  sweep_open_ = true;
  uv_timer_start(&sweep_, &ControlServer::on_sweep, kSweepMs, kSweepMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&sweep_));  // the sweep alone keeps no loop alive
}

void ControlServer::close() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    auto c = *it++;
    close_conn(c);
  }
  ready_list_.clear();
  if (ready_open_) {
    ready_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&ready_), nullptr);
  }
  if (sweep_open_) {
    sweep_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&sweep_), nullptr);
  }
  if (listening_) {
    listening_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
    if (!path_.empty()) unlink(path_.c_str());
  }
}

void ControlServer::close_conn(const std::shared_ptr<Conn>& c) {
  if (c->closing) return;
  c->closing = true;
  if (c->stream) {
    agent_.core().bus->unsubscribe(c->stream);
    c->stream = nullptr;
  }
  // The handle's data keeps the Conn alive until libuv is done with it.
  c->pipe.data = new std::shared_ptr<Conn>(c);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), [](uv_handle_t* h) {
    auto* keep = static_cast<std::shared_ptr<Conn>*>(h->data);
    (*keep)->server->conns_.erase((*keep)->it);
    delete keep;
  });
}

void ControlServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<ControlServer*>(server->data);
  if (status < 0) {
    log(Level::Warn, "hostlet", "control socket accept: %s", uv_strerror(status));
    return;
  }
  auto c = std::make_shared<Conn>();
  c->server = self;
  uv_pipe_init(server->loop, &c->pipe, 0);
  c->pipe.data = c.get();
  self->conns_.push_back(c);
  self->accepted_++;
  c->it = std::prev(self->conns_.end());
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0) {
    self->close_conn(c);
    return;
  }
  uv_os_fd_t fd = -1;
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&c->pipe), &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    log(Level::Warn, "hostlet", "control socket: cannot read the peer's credentials: %s", strerror(errno));
    self->close_conn(c);
    return;
  }
  c->uid = cred.uid;
  c->gid = cred.gid;
  c->pid = cred.pid;
  if (self->access_of(c->uid, c->gid) == Access::none) {
    self->refused_++;
    log(Level::Warn, "hostlet", "control socket: refused a connection from uid %u gid %u (pid %d): not in agent.control_*_uids/gids",
        c->uid, c->gid, c->pid);
    c->send(json{{"ok", false},
                 {"error", "uid " + std::to_string(c->uid) + " (gid " + std::to_string(c->gid) +
                               ") may not use this control socket (agent.control_admin_uids/gids, "
                               "control_read_uids/gids)"}});
    self->close_conn(c);
    return;
  }
  if (self->conns_.size() > self->agent_.config().agent.control_max_connections) {
    c->send(json{{"ok", false}, {"error", "too many control connections (agent.control_max_connections = " +
                                              std::to_string(self->agent_.config().agent.control_max_connections) +
                                              ")"}});
    self->close_conn(c);
    return;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->pipe), &ControlServer::alloc_cb, &ControlServer::read_cb);
  c->last_input_ms = c->last_output_ms = uv_now(server->loop);
}

void ControlServer::alloc_cb(uv_handle_t*, size_t, uv_buf_t* b) {
  static thread_local char buf[65536];
  *b = uv_buf_init(buf, sizeof buf);
}

void ControlServer::read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
  auto c = static_cast<Conn*>(s->data)->shared_from_this();
  ControlServer* srv = c->server;
  if (n < 0) {
    srv->close_conn(c);
    return;
  }
  c->last_input_ms = uv_now(s->loop);
  c->buf.append(b->base, static_cast<size_t>(n));
  srv->drain(c);
}

// Handles the complete lines in c->buf, up to kLinesPerTurn and only while the
// connection's unsent replies stay under agent.control_max_write_buffer. A
// spent budget pauses reading and puts the connection on the ready list for
// the next iteration; a full write buffer pauses it until the client has read
// half of it (wrote()). Memory per connection is so bounded by max_line, one
// read (64 KiB), the write bound and one reply.
void ControlServer::drain(const ConnPtr& c) {
  const AgentSection& a = agent_.config().agent;
  size_t start = 0, lines = 0;
  bool budget_spent = false, write_full = false;
  for (;;) {
    size_t nl = c->buf.find('\n', start);
    if (nl == std::string::npos || nl - start > a.control_max_line) break;
    if (c->backlog > a.control_max_write_buffer) {
      write_full = true;
      break;
    }
    if (lines == kLinesPerTurn) {
      budget_spent = true;
      break;
    }
    handle_line(c, std::string_view(c->buf).substr(start, nl - start));
    lines++;
    start = nl + 1;
    if (c->closing) return;
  }
  c->buf.erase(0, start);
  size_t first_nl = c->buf.find('\n');
  if ((first_nl == std::string::npos ? c->buf.size() : first_nl) > a.control_max_line) {
    errors_++;
    c->send(json{{"ok", false}, {"error", "request line longer than agent.control_max_line (" +
                                              std::to_string(a.control_max_line) + " bytes); closing"}});
    close_conn(c);
    return;
  }
  if (write_full) backpressure_pauses_++;
  if (budget_spent || write_full) {
    if (c->reading) uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->pipe));
    c->reading = false;
    if (budget_spent) schedule(c);
    return;
  }
  if (!c->reading && uv_read_start(reinterpret_cast<uv_stream_t*>(&c->pipe), &ControlServer::alloc_cb,
                                   &ControlServer::read_cb) == 0)
    c->reading = true;
}

// A write finished: a connection paused for its write buffer resumes once
// half of it has been read.
void ControlServer::wrote(const ConnPtr& c) {
  if (c->closing || c->reading || c->scheduled) return;
  if (c->backlog <= agent_.config().agent.control_max_write_buffer / 2) schedule(c);
}

void ControlServer::schedule(const ConnPtr& c) {
  if (c->scheduled || !ready_open_) return;
  c->scheduled = true;
  ready_list_.push_back(c);
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&ready_))) uv_idle_start(&ready_, &ControlServer::on_ready);
}

void ControlServer::on_ready(uv_idle_t* h) {
  auto* self = static_cast<ControlServer*>(h->data);
  std::vector<std::weak_ptr<Conn>> now;
  now.swap(self->ready_list_);
  for (auto& w : now) {
    auto c = w.lock();
    if (!c) continue;
    c->scheduled = false;
    if (!c->closing) self->drain(c);
  }
  if (self->ready_list_.empty()) uv_idle_stop(h);
}

// Every connection idle (no request, no answer owed, no stream) for
// agent.control_idle_timeout is closed, and so is one whose replies have not
// moved for as long (a client that sends and never reads).
void ControlServer::on_sweep(uv_timer_t* t) {
  auto* self = static_cast<ControlServer*>(t->data);
  uint64_t idle = self->agent_.config().agent.control_idle_timeout_ms;
  if (idle == 0) return;
  uint64_t now = uv_now(t->loop);
  for (auto it = self->conns_.begin(); it != self->conns_.end();) {
    auto c = *it++;
    if (c->closing) continue;
    std::string secs = std::to_string(idle / 1000) + "." + std::to_string(idle % 1000 / 100) + "s";
    if (c->backlog > 0 && now - c->last_output_ms >= idle) {
      self->stuck_closed_++;
      log(Level::Warn, "hostlet", "control socket: closing a client that has not read its replies for %s (%zu bytes unsent)",
          secs.c_str(), c->backlog);
      self->close_conn(c);
    } else if (c->backlog == 0 && c->outstanding == 0 && !c->stream && now - c->last_input_ms >= idle) {
      self->idle_closed_++;
      c->send(json{{"ok", false}, {"error", "idle for " + secs + " (agent.control_idle_timeout); closing"}});
      self->close_conn(c);
    }
  }
}

void ControlServer::handle_line(const ConnPtr& c, std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return;
  requests_++;
  control::Request req;
  std::string err;
  if (!control::parse_request(line, req, err)) return fail(c, req.id, err);
  dispatch(c, req);
}

// The commands the control socket answers, as ninja's kTools[]: the name a
// request's "cmd" gives (control_protocol.hpp), the member that answers it,
// and one line of help (the "unknown command" error lists the names).
const ControlServer::Command ControlServer::kCommands[] = {
    {control::cmd::hello, &ControlServer::cmd_hello, Access::read, "who answers: server, version, protocol, the peer's access level"},
    {control::cmd::status, &ControlServer::cmd_status, Access::read, "version, pid, uptime, instances and their state"},
    {control::cmd::plugins, &ControlServer::cmd_plugins, Access::read, "instances and the actions each registered"},
    {control::cmd::describe, &ControlServer::cmd_describe, Access::read, "one plugin's config schema, actions and events (name)"},
    {control::cmd::stats, &ControlServer::cmd_stats, Access::read, "loop lag, bus, lanes, instances, rules, control connections"},
    {control::cmd::call, &ControlServer::cmd_call, Access::admin, "run an action (action, attrs) and answer what it answered"},
    {control::cmd::notify, &ControlServer::cmd_notify, Access::admin, "publish an event (type, source, attrs, ack)"},
    {control::cmd::events, &ControlServer::cmd_events, Access::read, "stream events whose type matches (type: a glob)"},
    {control::cmd::reload, &ControlServer::cmd_reload, Access::admin, "reload one instance (name), or the whole config file"},
    {control::cmd::metrics, &ControlServer::cmd_metrics, Access::read, "the metrics exposition (format: text|openmetrics, timeout_ms)"},
};

void ControlServer::dispatch(const ConnPtr& c, const control::Request& req) {
  for (const Command& command : kCommands) {
    if (command.name != req.cmd) continue;
    Access has = access_of(c->uid, c->gid);  // the lists as they are now: a reload applies at once
    if (command.needs == Access::admin && has != Access::admin)
      return fail(c, req.id,
                  "'" + req.cmd + "' needs the admin level; uid " + std::to_string(c->uid) + " (gid " +
                      std::to_string(c->gid) + ") has " + access_name(has) +
                      " (agent.control_admin_uids, control_admin_gids)");
    if (has == Access::none)
      return fail(c, req.id, "uid " + std::to_string(c->uid) + " may no longer use this control socket");
    return (this->*command.run)(c, req);
  }
  std::string names;
  for (const Command& command : kCommands) names += (names.empty() ? "" : ", ") + std::string(command.name);
  fail(c, req.id, "unknown command '" + req.cmd + "' (" + names + ")");
}

void ControlServer::fail(const ConnPtr& c, const json& id, const std::string& msg) {
  errors_++;
  c->send(json{{"id", id}, {"ok", false}, {"error", msg}});
}

void ControlServer::cmd_hello(const ConnPtr& c, const control::Request& req) {
  c->send(json{{"id", req.id},
               {"ok", true},
               {"server", "hostlet"},
               {"version", HOSTLET_VERSION},
               {"protocol", control::kProtocolVersion},
               {"access", access_name(access_of(c->uid, c->gid))}});
}

void ControlServer::cmd_status(const ConnPtr& c, const control::Request& req) {
  c->send(json{{"id", req.id}, {"ok", true}, {"data", status_json()}});
}

void ControlServer::cmd_plugins(const ConnPtr& c, const control::Request& req) {
  c->send(json{{"id", req.id}, {"ok", true}, {"data", plugins_json()}});
}

void ControlServer::cmd_describe(const ConnPtr& c, const control::Request& req) {
  json d;
  std::string name, err;
  if (!req.string_arg("name", name, err) || !describe_json(name, d, err)) return fail(c, req.id, err);
  c->send(json{{"id", req.id}, {"ok", true}, {"data", d}});
}

void ControlServer::cmd_stats(const ConnPtr& c, const control::Request& req) {
  c->send(json{{"id", req.id}, {"ok", true}, {"data", stats_json()}});
}

void ControlServer::cmd_call(const ConnPtr& c, const control::Request& req) {
  Core& core = agent_.core();
  std::string action, err;
  Attrs attrs;
  CallOptions opts;  // "wait_ms": how long the call may wait for a full lane (0: answer EAGAIN at once)
  if (!req.string_arg("action", action, err) || !req.attrs_arg(attrs, err) ||
      !req.uint_arg("wait_ms", 24ull * 3600 * 1000, opts.wait_ms, err))
    return fail(c, req.id, err);
  if (action.empty()) return fail(c, req.id, "missing string 'action'");
  std::weak_ptr<Conn> wc = c;
  const json& id = req.id;
  c->outstanding++;
  int r = core.actions->call(action, std::move(attrs), [wc, id](ActionResult&& res) {
    auto conn = wc.lock();
    if (!conn) return;
    conn->outstanding--;
    if (!res.ok) {
      conn->server->calls_failed_++;  // the action's failure, not a bad request
      json reply{{"id", id}, {"ok", false}, {"error", res.error}};
      if (res.code == -EAGAIN) reply["errno"] = "EAGAIN";  // busy, not broken: the client may retry
      conn->send(reply);
      return;
    }
    conn->send_text(dump_with_data(json{{"id", id}, {"ok", true}, {"attrs", attrs_json(res.attrs)}}, res.data_json));
  }, opts);
  if (r == -ENOENT) {
    c->outstanding--;  // no answer will come
    std::string msg = "no such action '" + action + "'";
    std::string close = did_you_mean(action, core.actions->names());
    if (!close.empty()) msg += " (did you mean '" + close + "'?)";
    fail(c, req.id, msg);
  }
}

void ControlServer::cmd_notify(const ConnPtr& c, const control::Request& req) {
  Event ev;
  std::string ack, err;
  if (!req.string_arg("type", ev.type, err) || !req.string_arg("source", ev.source, err) ||
      !req.string_arg("ack", ack, err) || !req.attrs_arg(ev.attrs, err))
    return fail(c, req.id, err);
  if (!hostlet_event_type_valid_n(ev.type.data(), ev.type.size()))
    return fail(c, req.id, "missing or invalid 'type' (letters, digits and . _ - :, up to 256)");
  if (ev.source.empty()) ev.source = "ctl";
  if (ack.empty()) ack = "accepted";
  if (ack != "none" && ack != "accepted" && ack != "done")
    return fail(c, req.id, "'ack' must be none, accepted or done");
  std::weak_ptr<Conn> wc = c;
  const json& id = req.id;
  if (ack == "done") {
    c->outstanding++;
    ev.tracker = std::make_shared<Tracker>([wc, id](uint64_t eid, std::vector<Tracker::Outcome>& outs) {
      auto conn = wc.lock();
      if (!conn) return;
      conn->outstanding--;
      bool all_ok = true;
      std::string results;
      for (auto& o : outs) {
        json r{{"action", o.action}, {"rule", o.rule}, {"ok", o.result.ok}};
        if (o.result.ok) r["attrs"] = attrs_json(o.result.attrs);
        else r["error"] = o.result.error, all_ok = false;
        results += results.empty() ? "" : ",";
        results += dump_with_data(r, o.result.ok ? o.result.data_json : std::string());
      }
      std::string line = json{{"id", id}, {"ok", all_ok}, {"event", eid}}.dump();
      line.pop_back();
      conn->send_text(line + ",\"results\":[" + results + "]}");
    });
  }
  uint64_t eid = 0;
  if (agent_.core().bus->publish(std::move(ev), &eid) != 0) {
    if (ack == "done") c->outstanding--;  // the tracker went with the refused event
    return fail(c, req.id, "event queue full (agent.event_queue); try again");
  }
  if (ack == "accepted") c->send(json{{"id", req.id}, {"ok", true}, {"event", eid}});
}

void ControlServer::cmd_events(const ConnPtr& c, const control::Request& req) {
  std::string glob, err;
  if (!req.string_arg("type", glob, err)) return fail(c, req.id, err);
  if (glob.empty()) glob = "*";
  if (!valid_glob(glob)) return fail(c, req.id, "bad glob '" + glob + "'");
  if (c->stream) return fail(c, req.id, "this connection already streams events");
  std::weak_ptr<Conn> wc = c;
  c->stream = agent_.core().bus->subscribe(glob, [wc](const Event& ev) {
    auto conn = wc.lock();
    if (!conn || conn->closing) return;
    if (conn->backlog > kMaxStreamBacklog) {  // a slow reader loses events, never the agent's memory
      conn->dropped++;
      return;
    }
    if (conn->dropped) {
      conn->send(json{{"dropped", conn->dropped}});
      conn->dropped = 0;
    }
    conn->send(json{{"event", event_json(ev)}});
  }, this);
  if (!c->stream) return fail(c, req.id, "bad glob '" + glob + "'");
  c->send(json{{"id", req.id}, {"ok", true}, {"streaming", glob}});
}

void ControlServer::cmd_reload(const ConnPtr& c, const control::Request& req) {
  Reloader* rl = agent_.reloader();
  if (!rl) return fail(c, req.id, "the agent is shutting down");
  auto given = req.body.find("name");
  std::string name, err;
  if (given != req.body.end() && !given->is_null()) {
    if (!given->is_string() || given->get_ref<const std::string&>().empty())
      return fail(c, req.id, "'name' must be an instance name");
    if (!req.string_arg("name", name, err)) return fail(c, req.id, err);
  }
  std::weak_ptr<Conn> wc = c;
  const json& id = req.id;
  c->outstanding++;
  rl->request(name, "hostlet-ctl", [wc, id](const ReloadOutcome& out) {
    auto conn = wc.lock();
    if (!conn) return;
    conn->outstanding--;
    json items = json::array();
    for (const auto& i : out.items) {
      json o{{"name", i.name}, {"action", i.action}, {"ok", i.ok}, {"version", i.version}, {"ms", i.ms},
             {"held_calls", i.held_calls}, {"held_events", i.held_events}};
      if (!i.previous.empty()) o["previous"] = i.previous;
      if (!i.attempted.empty()) o["attempted"] = i.attempted;
      if (!i.error.empty()) o["error"] = i.error;
      items.push_back(std::move(o));
    }
    json data{{"instances", items}};
    if (out.rules) data["rules"] = *out.rules;
    if (out.ok) {
      conn->send(json{{"id", id}, {"ok", true}, {"result", out.summary}, {"data", data}});
    } else {
      conn->server->errors_++;
      conn->send(json{{"id", id}, {"ok", false}, {"error", out.summary}, {"data", data}});
    }
  });
}

// The exposition a Prometheus scrape would get (scrape.hpp), as data.text.
void ControlServer::cmd_metrics(const ConnPtr& c, const control::Request& req) {
  std::string format = "text", err;
  if (!req.string_arg("format", format, err)) return fail(c, req.id, err);
  if (format != "text" && format != "openmetrics")
    return fail(c, req.id, "'format' is text or openmetrics, not '" + format + "'");
  uint64_t timeout_ms = kMetricsTimeoutMs;
  if (!req.uint_arg("timeout_ms", 600000, timeout_ms, err)) return fail(c, req.id, err);
  std::weak_ptr<Conn> wc = c;
  const json& id = req.id;
  c->outstanding++;
  agent_.scraper().scrape(format == "text" ? HOSTLET_METRICS_TEXT : HOSTLET_METRICS_OPENMETRICS, timeout_ms,
                          [wc, id, format](std::string text) {
                            auto conn = wc.lock();
                            if (!conn) return;
                            conn->outstanding--;
                            conn->send(json{{"id", id}, {"ok", true}, {"data", {{"format", format}, {"text", text}}}});
                          });
}

json ControlServer::status_json() {
  json inst = json::array();
  for (const auto& i : agent_.instances()) {
    const hostlet_plugin* d = i->library()->desc();
    json o{{"name", i->name()},
           {"plugin", d ? d->name : ""},
           {"version", d && d->version ? d->version : ""},
           {"path", i->library()->path()},
           {"state", i->state_name()},
           {"health", Instance::health_name(i->health())},
           {"health_reason", i->health_reason()}};
    if (const InstanceInfo* info = agent_.info(i->name())) {
      o["loads"] = info->loads;
      o["last_result"] = info->last_result;
      o["last_time"] = static_cast<double>(info->last_time_ms) / 1000.0;
    }
    o["reloading"] = agent_.reloader() && agent_.reloader()->reloading(i->name());
    inst.push_back(std::move(o));
  }
  Reloader* rl = agent_.reloader();
  json reload{{"running", rl && rl->busy()}, {"queued", rl ? rl->queued() : 0}, {"done", rl ? rl->done() : 0}};
  return json{{"version", HOSTLET_VERSION},
              {"pid", getpid()},
              {"config", agent_.config().file},
              {"config_fragments", agent_.config().fragments},
              {"uptime_s", static_cast<double>(realtime_ms() - agent_.start_time_ms()) / 1000.0},
              {"threadpool", agent_.config().agent.threadpool},
              {"instances", inst},
              {"rules", agent_.rules().size()},
              {"reload", reload},
              {"actions", agent_.core().actions->names()}};
}

json ControlServer::plugins_json() {
  json arr = json::array();
  for (const auto& i : agent_.instances()) {
    const hostlet_plugin* d = i->library()->desc();
    json actions = json::array();
    std::string prefix = i->name() + ".";
    for (const auto& a : agent_.core().actions->names())
      if (a.rfind(prefix, 0) == 0) actions.push_back(a);
    arr.push_back(json{{"instance", i->name()},
                       {"plugin", d->name},
                       {"version", d->version ? d->version : ""},
                       {"description", d->description ? d->description : ""},
                       {"state", i->state_name()},
                       {"actions", actions}});
  }
  return arr;
}

bool ControlServer::describe_json(const std::string& name, json& out, std::string& err) {
  const hostlet_plugin* d = nullptr;
  std::vector<std::string> names;
  for (const auto& i : agent_.instances()) {
    const hostlet_plugin* pd = i->library()->desc();
    names.push_back(i->name());
    names.push_back(pd->name);
    if (i->name() == name || name == pd->name) {
      d = pd;
      break;
    }
  }
  if (!d) {
    err = "no instance or plugin named '" + name + "'";
    std::string close = did_you_mean(name, names);
    if (!close.empty()) err += " (did you mean '" + close + "'?)";
    return false;
  }
  json cfg = json::array();
  for (const hostlet_config_key* k = d->config; k && k->key; k++) {
    json e{{"key", k->key},
           {"type", type_name(k->type)},
           {"required", (k->flags & HOSTLET_CONFIG_REQUIRED) != 0},
           {"description", k->description ? k->description : ""}};
    e["default"] = k->default_value ? json(k->default_value) : json(nullptr);
    if (k->min < k->max) e["range"] = json::array({k->min, k->max});
    cfg.push_back(std::move(e));
  }
  json actions = json::array();
  for (const hostlet_action_info* a = d->actions; a && a->name; a++)
    actions.push_back(json{{"name", a->name}, {"args", a->args ? a->args : ""},
                           {"description", a->description ? a->description : ""}});
  json events = json::array();
  for (const hostlet_event_info* e = d->events; e && e->type; e++)
    events.push_back(json{{"type", e->type}, {"attrs", e->attrs ? e->attrs : ""},
                          {"description", e->description ? e->description : ""}});
  out = json{{"plugin", d->name},
             {"version", d->version ? d->version : ""},
             {"description", d->description ? d->description : ""},
             {"abi", std::to_string(d->abi_major) + "." + std::to_string(d->abi_minor)},
             {"config", cfg},
             {"actions", actions},
             {"events", events}};
  return true;
}

json ControlServer::stats_json() {
  Core& core = agent_.core();
  auto ms = [](uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  const Histogram& lag = core.lag->lateness();
  BusStats bs = core.bus->stats();
  ActionWaitStats ws = core.actions->wait_stats();
  // "_1m": over the last 50 to 60 s (since start in the first minute;
  // window_s says how far back), beside the same since start.
  const RecentHistograms& recent = agent_.recent();
  const uint64_t now = uv_hrtime();
  RecentHistograms::Recent lag_1m = recent.recent("loop", lag, now);
  json lanes = json::object();
  json instances = json::object();
  for (const auto& i : agent_.instances()) {
    const LaneStats& ls = i->lane().stats();
    lanes[i->name()] = lane_json(i->lane(), recent.recent(Agent::recent_key("wait", *i), ls.queue_wait, now).h,
                                 recent.recent(Agent::recent_key("run", *i), ls.run_time, now).h);
    const auto& k = i->counters();
    instances[i->name()] = json{{"published", k.published},
                                {"publish_dropped", k.publish_dropped},
                                {"callbacks", k.callbacks},
                                {"max_callback_ms", ms(k.max_callback_ns)},
                                {"calls_waiting", core.actions->waiting_for(i.get())}};
  }
  json rules = json::array();
  for (const auto& r : agent_.rules().stats())
    rules.push_back(json{{"rule", r.id},
                         {"where", r.where},
                         {"matched", r.matched},
                         {"fired", r.fired},
                         {"debounced", r.debounced},
                         {"rate_limited", r.rate_limited},
                         {"template_errors", r.template_errors},
                         {"actions_ok", r.actions_ok},
                         {"actions_failed", r.actions_failed}});
  return json{{"loop", {{"lag_p50_ms", ms(lag.quantile(0.5))},
                        {"lag_p99_ms", ms(lag.quantile(0.99))},
                        {"lag_max_ms", ms(lag.max())},
                        {"lag_p50_1m_ms", ms(lag_1m.h.quantile(0.5))},
                        {"lag_p99_1m_ms", ms(lag_1m.h.quantile(0.99))},
                        {"lag_max_1m_ms", ms(lag_1m.h.max())},
                        {"window_s", static_cast<double>(lag_1m.span_ns) / 1e9},
                        {"samples", lag.count()},
                        {"slow_callbacks", core.lag->slow_callbacks()},
                        {"worst_callback_ms", ms(core.lag->worst_callback_ns())},
                        {"worst_instance", core.lag->worst_instance()}}},
              {"bus", {{"published", bs.published},
                       {"dispatched", bs.dispatched},
                       {"dropped", bs.dropped},
                       {"depth", bs.depth},
                       {"max_depth", bs.max_depth},
                       {"backlog", bs.backlog},
                       {"capacity", agent_.config().agent.event_queue},
                       {"subscriptions", bs.subscriptions}}},
              {"actions", {{"pending", core.actions->pending()},
                           {"waiting", ws.waiting},
                           {"max_waiting", ws.max_waiting},
                           {"waited", ws.waited},
                           {"wait_expired", ws.expired},
                           {"wait_refused", ws.refused}}},
              {"control", {{"connections", conns_.size()},
                           {"refused", refused_},
                           {"calls_failed", calls_failed_},
                           {"requests", requests_},
                           {"errors", errors_},
                           {"backpressure_pauses", backpressure_pauses_},
                           {"idle_closed", idle_closed_},
                           {"stuck_closed", stuck_closed_}}},
              {"lanes", lanes},
              {"instances", instances},
              {"rules", rules},
              {"plugins_still_mapped_after_unload", Library::unmapped_failures()}};
}

}  // namespace hostlet
