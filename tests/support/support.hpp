// Test support for tests that drive real binaries and real sockets: temporary
// directories, child processes stopped by pid, NDJSON line clients, polling.
// Paths of the built binaries come from the environment that meson test sets
// (tests/meson.build): HOSTLET_BIN, HOSTLET_CTL, HOSTLET_BUILD_ROOT,
// HOSTLET_SOURCE_ROOT.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace hostlet::test {

// Reads an environment variable that meson test sets; fails the test when absent.
std::string env_path(const char* name);

// A fresh directory under $TMPDIR (or /tmp), removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  // Writes `content` to path()/name, creating parent directories.
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

std::string read_file(const std::string& path);

// A child process; stdout and stderr go to files (readable while it runs).
// Stopped by pid: the destructor sends SIGKILL to a child still running.
class Process {
 public:
  // argv[0] is the program path. `env` entries are added to (or override) the environment.
  // `uid`/`gid` >= 0 switch identity in the child before exec.
  Process(std::vector<std::string> argv, const std::map<std::string, std::string>& env = {},
          int uid = -1, int gid = -1);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Sends sig and waits up to timeout for the exit; returns the wait status
  // (use WIFEXITED etc.), or nullopt on timeout (the child is then SIGKILLed).
  std::optional<int> stop(int sig = 15, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Waits for a natural exit; nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void signal(int sig);
  std::string out() const;  // everything written to stdout so far
  std::string err() const;  // everything written to stderr so far

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string out_path_, err_path_;
  std::string dir_;
};

// Result of running a program to completion.
struct Run {
  int exit_code = -1;  // -1: killed by a signal or timed out
  std::string out, err;
};
Run run(std::vector<std::string> argv, std::chrono::milliseconds timeout = std::chrono::seconds(60),
        const std::map<std::string, std::string>& env = {});

// Polls `pred` every few ms until it is true or the timeout passes.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A blocking NDJSON client over a Unix stream socket.
class LineClient {
 public:
  LineClient() = default;
  explicit LineClient(const std::string& socket_path);  // throws std::runtime_error when it cannot connect
  ~LineClient();
  LineClient(LineClient&& o) noexcept;
  LineClient& operator=(LineClient&& o) noexcept;
  bool connect(const std::string& socket_path);  // false on failure
  int fd() const { return fd_; }
  bool send(const std::string& data);            // raw bytes, no newline added
  bool send_line(const std::string& line) { return send(line + "\n"); }
  // Next line without its '\n', or nullopt on timeout / EOF.
  std::optional<std::string> recv_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // True when the peer closed (EOF or reset) within the timeout.
  bool wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void close();

 private:
  int fd_ = -1;
  std::string buf_;
};

// A client served throughout a test (the latency probe of the hostile-input
// tests): every `every` it sends request(i) on its own connection and waits up
// to 5 s for one line that answered(i, line) accepts. Counts failures and the
// slowest round trip instead of asserting off the main thread; it stops at the
// first failure to send (the connection is gone).
class Probe {
 public:
  Probe(const std::string& socket_path, std::function<std::string(int)> request,
        std::function<bool(int, const std::string&)> answered,
        std::chrono::milliseconds every = std::chrono::milliseconds(50));
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;
  void stop();
  int failures() const { return failures_; }
  int answered() const { return answered_; }
  double max_ms() const { return max_us_ / 1000.0; }

 private:
  LineClient c_;
  std::thread t_;
  std::atomic<bool> stop_{false};
  std::atomic<int> failures_{0}, answered_{0};
  std::atomic<long> max_us_{0};
};

// The agent binary with a config written into a TempDir. The config may use
// "@DIR@" which is replaced by the temp dir path. start() waits until the
// control socket (agent.control_socket, default @DIR@/control.sock when the
// config text has no agent.control_socket... so always set it) accepts.
class Agent {
 public:
  // `env` is added to the agent's environment.
  Agent(TempDir& dir, const std::string& config_yaml, std::vector<std::string> extra_args = {},
        std::map<std::string, std::string> env = {});
  ~Agent();
  // Starts and waits for the control socket; false (with the log in err()) on failure.
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  std::optional<int> stop(int sig = 15);
  Process& process() { return *proc_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& control_socket() const { return control_; }
  // Runs hostlet-ctl -s <control socket> args...
  Run ctl(std::vector<std::string> args, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  std::string log() const;  // the agent's stderr so far

 private:
  TempDir& dir_;
  std::string config_path_, control_;
  std::vector<std::string> extra_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<Process> proc_;
};

}  // namespace hostlet::test
