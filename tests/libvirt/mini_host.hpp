// A minimal stand-in for the agent, enough to load the real libvirt.so the
// way the agent does (a fresh private copy, dlopen, init, start, stop,
// destroy, dlclose) on a uv loop the test drives from its own thread, so that
// a test can unload and load the plugin many times in one process and check
// that its image really goes away while libvirt and the bridge stay (the
// agent's own reload is tested end to end in tests/reload/).
#pragma once

#include <hostlet/plugin.h>
#include <uv.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace virt_test {

using Attrs = std::vector<std::pair<std::string, std::string>>;

struct Published {
  std::string type;
  Attrs attrs;
  std::string attr(const std::string& key) const {
    for (auto& [k, v] : attrs)
      if (k == key) return v;
    return "<absent>";
  }
};

struct Answer {
  bool done = false, ok = false;
  std::string error, data_json;
  Attrs attrs;
  std::string attr(const std::string& key) const {
    for (auto& [k, v] : attrs)
      if (k == key) return v;
    return "<absent>";
  }
};

class MiniHost {
 public:
  explicit MiniHost(uv_loop_t* loop);
  ~MiniHost();  // unloads what is still loaded; the loop stays the caller's
  MiniHost(const MiniHost&) = delete;
  MiniHost& operator=(const MiniHost&) = delete;

  // Copies `so` to `copy_path`, dlopens the copy, runs init with `config`
  // (keys the plugin declares; values as YAML scalars, e.g. "1s").
  int load(const std::string& so, const std::string& copy_path, const std::string& name,
           std::map<std::string, std::string> config);
  int start();
  // stop, run the loop until stopped() (false on timeout), then destroy.
  bool stop(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // dlclose; true when the image is gone (dlopen RTLD_NOLOAD fails).
  bool unload();

  // Calls "<verb>" and runs the loop until it is answered.
  Answer call(const std::string& verb, const Attrs& attrs = {},
              std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Runs the loop until pred() or the timeout.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(15));
  const std::vector<Published>& events() const { return events_; }
  bool saw(const std::string& type, const Attrs& attrs);
  size_t pending_work() const { return works_; }

  // The host API, for the C trampolines.
  struct Impl;

 private:
  friend struct Impl;
  uv_loop_t* loop_;
  std::string name_, copy_;
  std::map<std::string, std::string> config_;
  std::map<std::string, std::vector<std::string>> lists_;
  void* dl_ = nullptr;
  const hostlet_plugin* desc_ = nullptr;
  void* state_ = nullptr;
  bool stopped_ = false, stopping_ = false;
  size_t works_ = 0;
  std::map<std::string, std::pair<hostlet_action_fn, void*>> actions_;
  std::vector<Published> events_;
  std::vector<std::string> logs_;
  std::unique_ptr<hostlet_host> handle_;
  // post(): thread-safe queue drained by an async handle.
  std::mutex post_mu_;
  std::deque<std::pair<hostlet_post_fn, void*>> posted_;
  uv_async_t* post_async_ = nullptr;
};

}  // namespace virt_test
