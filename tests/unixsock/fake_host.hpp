// A stand-in for the agent, enough to run the real unixsock.so: it dlopens the
// plugin, hands it a host API backed by a private libuv loop on its own thread,
// records what it publishes and completes tracked events when the test says.
// Tests talk to the plugin over its real socket with blocking Client objects.
#pragma once

#include <hostlet/plugin.h>
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace unixsock_test {

using Attrs = std::vector<std::pair<std::string, std::string>>;

// What an action started for a tracked event answered (see hostlet_outcome).
struct Outcome {
  std::string action, rule;
  bool ok = true;
  std::string error;
  Attrs attrs;
  std::string data_json;  // empty: none
};

struct Published {
  uint64_t id = 0;
  std::string type;
  Attrs attrs;
  bool tracked = false;
};

class FakeHost {
 public:
  FakeHost(std::map<std::string, std::string> config, std::map<std::string, std::vector<std::string>> lists = {});
  ~FakeHost();
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;

  // dlopen + init + start (on the loop thread). Returns 0 or the first failure.
  int start();
  // stop, wait for stopped(), destroy, then close the loop and check that
  // uv_loop_close succeeds (no handle left behind). Returns that check.
  bool shutdown(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Only stop (not destroy): for tests that look at the stopping phase.
  void begin_stop();
  bool stopped() const { return stopped_; }

  // Runs fn on the loop thread and waits for it.
  void on_loop(const std::function<void()>& fn);

  std::vector<Published> events();
  size_t published() { return events().size(); }
  bool wait_published(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Tracked events are completed on the next loop turn with outcomes(event)
  // unless `hold` is set; then complete_held() completes them.
  void set_hold(bool hold) { hold_ = hold; }
  void set_outcomes(std::function<std::vector<Outcome>(const Published&)> fn);
  size_t held();
  void complete_held();
  // publish returns -EAGAIN while this many tracked events are held (0: no limit).
  void set_queue_limit(size_t n) { queue_limit_ = n; }

  // Calls the plugin's action `verb` and returns the attributes it answered.
  Attrs call(const std::string& verb);
  std::string stat(const std::string& key);  // one attribute of call("stats")

  std::vector<std::string> logs();
  bool logged(const std::string& needle);

  // The host API callbacks (public for the C trampolines in fake_host.cpp).
  struct Held {
    Published ev;
    hostlet_event_done_fn done;
    void* arg;
  };
  struct ActionReg {
    hostlet_action_fn fn;
    void* arg;
  };
  std::map<std::string, std::string> config_;
  std::map<std::string, std::vector<std::string>> lists_;
  const hostlet_plugin* plugin_ = nullptr;
  uv_loop_t loop_{};
  std::map<std::string, ActionReg> actions_;
  std::mutex mu_;
  std::vector<Published> events_;
  std::deque<Held> held_, ready_;
  std::vector<std::string> logs_;
  std::function<std::vector<Outcome>(const Published&)> outcomes_;
  std::atomic<bool> hold_{false};
  std::atomic<size_t> queue_limit_{0};
  std::atomic<bool> stopped_{false};
  uint64_t next_id_ = 1;
  uv_timer_t complete_timer_{};
  void schedule_completion();
  void complete(Held& h);

 private:
  static void async_cb(uv_async_t* a);
  void run_commands();

  void* so_ = nullptr;
  void* state_ = nullptr;
  bool started_ = false, destroyed_ = false, stop_called_ = false, shutdown_ok_ = false;
  uv_async_t async_{};
  std::thread thread_;
  std::deque<std::function<void()>> commands_;
  bool quit_ = false;
  std::condition_variable cv_;
};

// A blocking NDJSON client over a Unix stream socket.
class Client {
 public:
  Client() = default;
  explicit Client(const std::string& path);  // REQUIREs the connection
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  bool connect(const std::string& path);
  int fd() const { return fd_; }
  bool send(const std::string& data);
  bool send_line(const std::string& line) { return send(line + "\n"); }
  std::optional<std::string> recv_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Nothing arrives within `quiet`.
  bool silent(std::chrono::milliseconds quiet = std::chrono::milliseconds(200));
  bool wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void shutdown_write();
  void close();

 private:
  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

// A directory readable by everyone (other uids must reach the socket), removed at the end.
class Dir {
 public:
  Dir();
  ~Dir();
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace unixsock_test
