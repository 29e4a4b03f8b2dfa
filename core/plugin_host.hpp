// The plugin host: loading .so files (ABI negotiation), and one Instance per
// `plugins:` entry, which implements the hostlet_host_api table for its plugin
// and owns everything the plugin obtained through it: its offload lane,
// timers, fd watches, subscriptions and actions.
#pragma once

#include <hostlet/plugin.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bus.hpp"
#include "config.hpp"
#include "offload.hpp"

namespace hostlet {

class LagMonitor;

// A loaded plugin image. dlclose() runs when the last reference goes; every
// Instance and every work item still able to run its code holds one.
class Library {
 public:
  ~Library();
  const hostlet_plugin* desc() const { return desc_; }
  const std::string& path() const { return path_; }         // what the config named, resolved
  const std::string& load_path() const { return load_path_; }  // the private copy dlopen()ed
  uint64_t serial() const { return serial_; }

  // Identity of the file a library was loaded from, to notice a replaced
  // or rebuilt file (reload on change, `watch: true`).
  struct FileId {
    uint64_t dev = 0, ino = 0, size = 0, mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  const FileId& file_id() const { return file_id_; }
  // Stats `path`; false when it cannot (missing file).
  static bool stat_file(const std::string& path, FileId& out);

  // Copies `path` to a private file, dlopen()s it, checks the entry symbol and
  // ABI. On failure returns null and sets err ("... : why").
  static std::shared_ptr<Library> load(const std::string& path, std::string& err);
  // Where `plugin` (a name or a path containing '/') resolves: the configured
  // plugin_dir, else $HOSTLET_PLUGIN_DIR, else next to the binary in a build
  // tree (<exe>/../plugins/<name>/<name>.so), else the install dir.
  // `config_dir` anchors relative paths. Empty with err set when not found.
  static std::string resolve(const std::string& plugin, const std::string& plugin_dir,
                             const std::string& config_dir, std::string& err);
  // Images dlclose()d but still mapped (RTLD_NOLOAD found them): reported, counted.
  static uint64_t unmapped_failures();

 private:
  Library() = default;
  void* handle_ = nullptr;
  const hostlet_plugin* desc_ = nullptr;
  std::string path_, load_path_;
  uint64_t serial_ = 0;
  FileId file_id_;
};

// What instances need from the agent.
struct Core {
  uv_loop_t* loop = nullptr;
  EventBus* bus = nullptr;
  ActionRegistry* actions = nullptr;
  LagMonitor* lag = nullptr;
  const AgentSection* agent = nullptr;

  // Thread-safe hand-off to the loop (hostlet_host_api.post).
  struct Posted {
    class Instance* inst;
    uint64_t generation;
    hostlet_post_fn fn;
    void* arg;
  };
  std::mutex post_mu;
  std::vector<Posted> posted;
  uv_async_t post_async{};
  std::vector<Instance*> live;  // instances whose posts may still run
};

// Per-instance state of one plugin instance. The ABI's hostlet_host.
struct HostHandle;

class Instance final : private LaneObserver {
 public:
  enum class State { Loaded, Inited, Started, Stopping, Stopped, Destroyed, Failed };

  Instance(Core& core, InstanceSection cfg, std::shared_ptr<Library> lib, ConfigValues values,
           std::string config_file);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  const std::string& name() const { return cfg_.name; }
  const InstanceSection& section() const { return cfg_; }
  const std::shared_ptr<Library>& library() const { return lib_; }
  State state() const { return state_; }
  const char* state_name() const;
  Lane& lane() { return *lane_; }
  const ConfigValues& values() const { return values_; }
  const std::string& config_file() const { return config_file_; }
  bool accepting_calls() const { return state_ == State::Started; }
  uint64_t generation() const { return generation_; }

  // Lifecycle. init/start return 0 or the plugin's negative errno (logged).
  int init();
  int start();
  // Asynchronous: plugin stop -> stopped() (or deadline) -> close the handles
  // the host handed out -> drain the lane (queued work reported -ESHUTDOWN,
  // running work waited for up to `deadline_ms`). done(all_work_finished).
  void stop(uint64_t deadline_ms, std::function<void(bool all_finished)> done);
  // Calls the plugin's destroy and frees the instance's records. When work of
  // the plugin may still run (a drain deadline passed), the library stays
  // mapped: see keeps_library_alive().
  void destroy();
  bool work_outstanding() const { return lane_ && lane_->outstanding() > 0; }

  // Calls into the plugin, measured for the lag monitor. (The lane times the
  // offload done and late callbacks itself and reports through callbacks_ran.)
  int invoke_action(hostlet_action_fn fn, void* arg, hostlet_call* call, const hostlet_attr* attrs, size_t n);
  template <class F> void run_callback(const char* what, F&& fn);

  void log(hostlet_log_level level, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

  // Counters for `hostlet-ctl stats`.
  struct Counters {
    uint64_t published = 0, publish_dropped = 0, callbacks = 0, slow_callbacks = 0;
    uint64_t max_callback_ns = 0;
  };
  const Counters& counters() const { return counters_; }

  hostlet_host* c_handle();
  static Instance* from(hostlet_host* h);
  static const hostlet_host_api* api();

  // Records of handles handed to the plugin (see plugin_host.cpp).
  struct TimerRec;
  struct WatchRec;
  struct SubRec;

 private:
  friend struct HostApiImpl;
  // LaneObserver: `count` callbacks of this instance ran `ns` in a row.
  void callbacks_ran(const char* what, uint64_t count, uint64_t ns) override;
  void on_stopped();
  void after_plugin_stopped();
  void close_handles();

  Core& core_;
  InstanceSection cfg_;
  std::shared_ptr<Library> lib_;
  ConfigValues values_;
  std::string config_file_;
  std::unique_ptr<HostHandle> handle_;
  std::unique_ptr<Lane> lane_;
  void* state_ptr_ = nullptr;
  State state_ = State::Loaded;
  uint64_t generation_;
  Counters counters_;

  std::list<TimerRec*> timers_;
  std::list<WatchRec*> watches_;
  std::list<SubRec*> subs_;

  // stop bookkeeping
  uv_timer_t* stop_timer_ = nullptr;
  bool stop_reported_ = false;
  bool start_called_ = false;  // stop() reaches the plugin only after start was tried
  uint64_t stop_deadline_ms_ = 0;
  std::function<void(bool)> stop_done_;
};

// Runs posted callbacks (Core::posted) on the loop; installed by the agent.
void run_posted(Core& core);

}  // namespace hostlet
