// One running command: its process, its pipes and its timer, all handles on
// the agent's loop (no thread per child), owned here and closed in one place.
//
// Life of a Child:
//   spawn      uv_spawn with UV_PROCESS_DETACHED, so the child leads a new
//              session and process group (pgid == pid); stdout and stderr are
//              pipes read on the loop, stdin is a pipe fed from an attribute
//              or /dev/null.
//   reading    each stream keeps at most `max_output` bytes; the rest is read
//              and discarded, so a child writing without end never blocks
//              and the agent's memory stays bounded (`truncated`).
//   timeout    SIGTERM to the group, SIGKILL to the group `kill_grace` later.
//   exit       SIGKILL to whatever is left in the group (a command is one
//              unit of work: background processes it started do not outlive
//              it), then the pipes are read to EOF, for at most `kill_grace`
//              more (a process that left the group may still hold them).
//   finish     the outcome goes to `done` once, then every handle is closed;
//              `reaped` runs after the last close callback, when the Child
//              may be freed.
// kill_now() (the instance's stop) sends SIGKILL to the group and finishes
// without waiting for the pipes.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace hostlet::exec {

// What a Child is asked to run, every template already expanded.
struct Spawn {
  std::string file;               // absolute path of argv[0]
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // "NAME=value", the whole environment
  std::string cwd;                // empty: the agent's
  std::optional<uv_uid_t> uid;
  std::optional<uv_gid_t> gid;
  std::optional<std::string> input;  // written to stdin, then EOF; none: /dev/null
  uint64_t timeout_ms = 0;           // 0: none
  uint64_t grace_ms = 5000;
  size_t max_output = 65536;         // per stream
};

struct Outcome {
  int64_t exit = -1;       // exit status, -1 when killed by a signal
  int signal = 0;          // the signal that ended it, 0 when it exited
  bool timed_out = false;  // its timeout passed (it was then signalled)
  bool stopped = false;    // killed by kill_now()
  std::string out, err;    // captured, each at most max_output bytes
  uint64_t out_bytes = 0, err_bytes = 0;  // everything the streams carried
  bool truncated = false;  // a stream carried more than max_output
};

class Child {
 public:
  // `scratch` is the read buffer every Child of an instance shares: reads
  // run on the loop thread one at a time and the data is copied out at once.
  Child(Spawn spec, std::vector<char>& scratch, std::function<void(Outcome&&)> done,
        std::function<void(Child*)> reaped);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Starts the process; 0, or a negative libuv error with `done` not called
  // (the handles then close and `reaped` follows).
  int spawn(uv_loop_t* loop);
  void kill_now();
  // For an instance destroyed while this child still runs (only when its
  // stop deadline passed: a process stuck in the kernel outlives SIGKILL
  // until it leaves it). SIGKILL to the group, then every handle closed
  // without callbacks, so that nothing calls into the plugin's code again;
  // the caller must then leak the Child, whose memory the loop still uses.
  void abandon();
  pid_t pid() const { return pid_; }

 private:
  struct Stream {
    Child* child = nullptr;
    uv_pipe_t pipe{};
    bool open = false;  // initialised and not yet closing
    std::string data;
    uint64_t total = 0;
  };

  static void on_exit(uv_process_t* p, int64_t status, int sig);
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* w, int status);
  static void on_timer(uv_timer_t* t);
  static void on_close(uv_handle_t* h);

  void init_handle(uv_handle_t* h);
  void close_handle(uv_handle_t* h);
  void close_stream(Stream& s);
  void signal_group(int sig);
  void maybe_finish();
  void close_all();

  Spawn spec_;
  std::vector<char>& scratch_;
  std::function<void(Outcome&&)> done_;
  std::function<void(Child*)> reaped_;

  uv_process_t proc_{};
  uv_timer_t timer_{};
  Stream out_, err_;
  uv_pipe_t in_{};
  bool in_open_ = false;
  uv_write_t write_req_{};

  pid_t pid_ = 0;
  int handles_ = 0;  // initialised and not yet closed
  bool spawned_ = false, exited_ = false, finished_ = false, closing_ = false;
  enum class Phase { none, term_sent, kill_sent, draining } phase_ = Phase::none;
  Outcome outcome_;
};

}  // namespace hostlet::exec
