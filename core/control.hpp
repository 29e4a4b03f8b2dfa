// The control socket: newline-delimited JSON requests from hostlet-ctl (or
// any client) on a Unix stream socket, mode 0600 by default.
//
// Request:  {"id": STRING|INTEGER, "cmd": "hello"|"status"|"plugins"|"describe"|"stats"|
//            "call"|"notify"|"events"|"reload", ...arguments}
//           (what makes a line a valid request: control_protocol.hpp)
// Reply:    {"id": ..., "ok": true, ...} or {"id": ..., "ok": false, "error": "..."}
// `call` answers {"id", "ok": true, "attrs": {...}, "data": ...} exactly as the
// action did; `events` answers {"id", "ok": true} and then streams
// {"event": {...}} lines until the client goes away.
#pragma once

#include <uv.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control_protocol.hpp"

namespace hostlet {

class Agent;

class ControlServer {
 public:
  explicit ControlServer(Agent& agent);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Checks the path: too long, not a socket, or another agent answering on it
  // are errors; a stale socket file is removed.
  bool can_listen(const std::string& path, std::string& err);
  // Binds and listens (after can_listen's checks); `group` (a name or a
  // gid, may be empty) becomes the socket file's group.
  bool listen(const std::string& path, unsigned mode, const std::string& group, std::string& err);
  // Listens on a socket already bound (socket activation: the service
  // manager owns the socket file, so close() leaves it in place).
  bool listen_fd(int fd, std::string& err);

  // What a peer may do (agent.control_*_uids/gids; see config.hpp).
  enum class Access { none, read, admin };
  static const char* access_name(Access a);
  // Closes the listener and every connection (asynchronously).
  void close();

  size_t connections() const { return conns_.size(); }
  uint64_t requests() const { return requests_; }
  uint64_t errors() const { return errors_; }
  uint64_t refused() const { return refused_; }
  uint64_t accepted() const { return accepted_; }

  struct Conn;

 private:
  void start_timers();  // the ready idle and the sweep timer, once listening
  using ConnPtr = std::shared_ptr<Conn>;
  static void on_connection(uv_stream_t* server, int status);
  static void alloc_cb(uv_handle_t* h, size_t size, uv_buf_t* b);
  static void read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* b);
  static void on_ready(uv_idle_t* h);
  static void on_sweep(uv_timer_t* t);
  void drain(const ConnPtr& c);
  void wrote(const ConnPtr& c);
  void schedule(const ConnPtr& c);
  void handle_line(const ConnPtr& c, std::string_view line);
  // One command of the protocol: the "cmd" that names it, the member that
  // answers it, and one line of help.
  struct Command {
    std::string_view name;
    void (ControlServer::*run)(const ConnPtr& c, const control::Request& req);
    Access needs;  // read: looks only; admin: changes or acts (call, notify, reload)
    std::string_view help;
  };
  Access access_of(uint32_t uid, uint32_t gid) const;
  static const Command kCommands[];

  void dispatch(const ConnPtr& c, const control::Request& req);
  void fail(const ConnPtr& c, const nlohmann::json& id, const std::string& msg);
  void cmd_hello(const ConnPtr& c, const control::Request& req);
  void cmd_status(const ConnPtr& c, const control::Request& req);
  void cmd_plugins(const ConnPtr& c, const control::Request& req);
  void cmd_describe(const ConnPtr& c, const control::Request& req);
  void cmd_stats(const ConnPtr& c, const control::Request& req);
  void cmd_call(const ConnPtr& c, const control::Request& req);
  void cmd_notify(const ConnPtr& c, const control::Request& req);
  void cmd_events(const ConnPtr& c, const control::Request& req);
  void cmd_reload(const ConnPtr& c, const control::Request& req);
  void cmd_metrics(const ConnPtr& c, const control::Request& req);
  void close_conn(const ConnPtr& c);

  nlohmann::json status_json();
  nlohmann::json plugins_json();
  nlohmann::json stats_json();
  bool describe_json(const std::string& name, nlohmann::json& out, std::string& err);

  Agent& agent_;
  uv_pipe_t server_{};
  bool listening_ = false;
  std::string path_;
  std::list<std::shared_ptr<Conn>> conns_;
  uv_idle_t ready_{};   // drains ready_list_ on the next iteration
  uv_timer_t sweep_{};  // closes idle and stuck connections
  bool ready_open_ = false, sweep_open_ = false;
  std::vector<std::weak_ptr<Conn>> ready_list_;
  uint64_t requests_ = 0, errors_ = 0, backpressure_pauses_ = 0, idle_closed_ = 0, stuck_closed_ = 0, refused_ = 0,
           calls_failed_ = 0, accepted_ = 0;
};

// JSON form of an event, as `events` streams it and tests read it.
nlohmann::json event_json(const struct Event& ev);

}  // namespace hostlet
