// The running set of instances, in config order, with what `status` shows of
// each (InstanceInfo) and the libraries pinned because their work outlived a
// deadline. The agent (start-up, shutdown), the reloader (add, swap, remove)
// and the control socket (status, stats) all go through it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config.hpp"
#include "instance.hpp"

namespace hostlet {

// Reload bookkeeping shown by `hostlet-ctl status`.
struct InstanceInfo {
  uint64_t loads = 0;
  std::string last_result = "loaded";  // "ok", "failed: why", ...
  uint64_t last_time_ms = 0;           // CLOCK_REALTIME ms of the last load/reload
};

// Frees an instance once its lane's handles are closed (destroy() ran, or
// init never succeeded); `after` runs once it is freed.
void dispose_instance(std::unique_ptr<Instance> inst, std::function<void()> after = {});

class InstanceSet {
 public:
  explicit InstanceSet(Core& core) : core_(core) {}
  InstanceSet(const InstanceSet&) = delete;
  InstanceSet& operator=(const InstanceSet&) = delete;

  const std::vector<std::unique_ptr<Instance>>& all() const { return list_; }
  size_t size() const { return list_.size(); }
  Instance* find(std::string_view name) const;

  // Validates `sec.config` against the library's schema and inits an
  // instance (not yet in the set); null with errors added on failure.
  // `staged`: its actions and subscriptions are kept aside until a reload
  // swaps it in.
  std::unique_ptr<Instance> make(const InstanceSection& sec, const std::shared_ptr<Library>& lib,
                                 const std::string& file, bool staged, ConfigErrors& errs);
  void add(std::unique_ptr<Instance> inst) { list_.push_back(std::move(inst)); }
  // At `place` (a position take() reported), or at the end.
  void insert(size_t place, std::unique_ptr<Instance> inst);
  // Takes `inst` out of the set (null when it is not in it); *place (may be
  // null) gets its position.
  std::unique_ptr<Instance> take(const Instance* inst, size_t* place = nullptr);
  // Puts `next` in `old`'s place (keeping the order) and returns `old`; with
  // `next` null, `old`'s place goes.
  std::unique_ptr<Instance> replace(const Instance* old, std::unique_ptr<Instance> next);
  // Takes every instance out.
  std::vector<std::unique_ptr<Instance>> take_all() { return std::exchange(list_, {}); }

  // Stops (deadline: ms), destroys and frees an instance no longer in the
  // set; one whose work outlived the deadline is kept (with its library)
  // rather than freed under a running work item.
  void retire(std::unique_ptr<Instance> inst, uint64_t ms, std::function<void(bool finished)> then = {});
  // Keeps a library mapped for the life of the process (its code may still
  // run on a pool thread past a deadline).
  void pin(std::shared_ptr<Library> lib) { pinned_.push_back(std::move(lib)); }

  const InstanceInfo* info(const std::string& name) const;
  void set_info(const std::string& name, bool loaded, const std::string& result);
  void drop_info(const std::string& name);

 private:
  Core& core_;
  std::vector<std::unique_ptr<Instance>> list_;
  std::vector<std::pair<std::string, InstanceInfo>> infos_;
  std::vector<std::shared_ptr<Library>> pinned_;
};

}  // namespace hostlet
