// sysfs: read, write, list and watch attributes under /sys, every file
// operation on a worker thread (a sysfs read or write can block in a driver).
//
// Example configuration:
//
//   plugins:
//     - name: sys
//       plugin: sysfs
//       config:
//         root: /sys                              # every path lies under it (tests use a temp tree)
//         writable: ["class/net/*/mtu"]           # nothing is writable unless listed
//         readable: ["class/net/**", "block/**"]  # absent or empty: everything under root
//         max_value: 4KiB
//         watches: ["class/net/*/operstate", "/sys/class/net/eth0/carrier"]
//         watch_interval: 1s
//         rescan_source: uevent                   # re-expand watch globs on its add/remove/move
//
//   hostlet-ctl call sys.read path=/sys/class/net/eth0/mtu
//   hostlet-ctl call sys.write path=class/net/eth0/mtu value=9000
//   hostlet-ctl --json call sys.list glob='/sys/class/net/*/mtu'
//   hostlet-ctl call sys.write_seq path.0=bus/pci/devices/0000:06:02.0/driver_override value.0=vfio-pci
//       path.1=bus/pci/devices/0000:06:02.0/driver/unbind value.1=0000:06:02.0 missing_ok.1=true
//       path.2=bus/pci/drivers_probe value.2=0000:06:02.0
//
// `write_seq` runs its steps in order in one offloaded job and stops at the
// first failure, whose error names the step and what was written before it:
// the ordering a PCI rebind needs, which a rule's `do:` list cannot give
// (one `with:` per rule). `missing_ok` (write and each step) answers a path
// that does not exist as skipped rather than failed: `driver/unbind` of a
// device that has no driver. The allow-list is checked first either way.
//
// Paths (see paths.hpp): relative to `root`, or absolute under it. ".." is
// refused; the path is resolved with realpath and must stay under root, so
// /sys/class/net/eth0 (a symlink into /sys/devices) works and a symlink
// leading out of root is refused. The file is then opened beneath a directory
// fd of root (openat2 RESOLVE_BENEATH, no symlinks), so renaming things under
// root between the two steps cannot lead the open outside. Allow-lists are globs per path component
// ('*' does not cross '/', "**" spans components) and a file is allowed when
// its requested or its resolved path matches. A write that matches no
// `writable` glob is refused before any file is opened. Errors from the
// kernel come back as the action's error, e.g.
// "write /sys/class/net/hl0/mtu: Invalid argument (EINVAL)".
//
// Watches, and why both mechanisms run for every watched attribute:
// userspace cannot tell whether a driver calls sysfs_notify() for an
// attribute (every sysfs file accepts poll(); most simply never wake it), so
// each watched attribute gets
//   - notify: the attribute stays open and its fd is watched for POLLPRI
//     (HOSTLET_WATCH_PRIORITY; POLLERR comes with it). On a wake-up the watch
//     is paused and the value is re-read on a worker (lseek(0) + read, which
//     re-arms the notification). If the value changed the watch resumes at
//     once; if not (a spurious or stuck wake-up) it resumes after the next
//     interval read, so a file that stays "ready" costs one read per interval.
//     Files that cannot be polled (regular files outside sysfs, as in a temp
//     test tree: epoll refuses them) are read by path on the interval only.
//   - interval: every `watch_interval`, one worker job re-expands every glob
//     and re-reads every watched attribute. This catches attributes without
//     sysfs_notify (most of them: operstate, mtu, ...) within one interval.
// Re-reads can finish out of order; a ticket per read keeps an older read
// from being reported as a change back (watches.hpp).
// `changed {path, value, previous, via}` is published when a value differs
// from the last one read (via = "notify" or "interval"). An attribute that
// appears (new device matching a glob) takes its first value silently; one
// that disappears is dropped silently.
#include <hostlet/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cinttypes>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "attr_io.hpp"
#include "paths.hpp"
#include "watches.hpp"

namespace hostlet::sysfs {
namespace {

const hostlet_config_key kConfig[] = {
    {.key = "root", .type = HOSTLET_CONFIG_STRING, .default_value = "/sys",
     .description = "absolute directory every path must resolve under", .min = 0, .max = 0, .flags = 0},
    {.key = "writable", .type = HOSTLET_CONFIG_STRING_LIST, .default_value = nullptr,
     .description = "globs (relative to root or absolute under it) of writable attributes; nothing is writable "
                    "unless listed",
     .min = 0, .max = 0, .flags = 0},
    {.key = "readable", .type = HOSTLET_CONFIG_STRING_LIST, .default_value = nullptr,
     .description = "globs of readable attributes; absent or empty: everything under root", .min = 0, .max = 0,
     .flags = 0},
    {.key = "max_value", .type = HOSTLET_CONFIG_SIZE, .default_value = "4KiB",
     .description = "largest value read or written", .min = 1, .max = 1LL << 20, .flags = 0},
    {.key = "max_list", .type = HOSTLET_CONFIG_INT, .default_value = "10000",
     .description = "most paths one list glob (or one watch glob) may match", .min = 1, .max = 1000000, .flags = 0},
    {.key = "watches", .type = HOSTLET_CONFIG_STRING_LIST, .default_value = nullptr,
     .description = "attributes (paths or globs) to watch; a change publishes `changed`", .min = 0, .max = 0,
     .flags = 0},
    {.key = "watch_interval", .type = HOSTLET_CONFIG_DURATION, .default_value = "1s",
     .description = "re-read of every watched attribute and re-expansion of watch globs", .min = 100,
     .max = 86400000, .flags = 0},
    {.key = "max_watches", .type = HOSTLET_CONFIG_INT, .default_value = "1024",
     .description = "most attributes watched at once (each notify watch keeps a fd open)", .min = 1, .max = 65536,
     .flags = 0},
    {.key = "rescan_source", .type = HOSTLET_CONFIG_STRING, .default_value = nullptr,
     .description = "instance (e.g. a uevent plugin) whose add/remove/move events trigger a re-expansion of watch "
                    "globs at once",
     .min = 0, .max = 0, .flags = 0},
    {.key = nullptr, .type = HOSTLET_CONFIG_STRING, .default_value = nullptr, .description = nullptr, .min = 0,
     .max = 0, .flags = 0},
};

const hostlet_action_info kActions[] = {
    {"read", "path", "reads an attribute; answers attrs {path, value}"},
    {"write", "path, value, missing_ok",
     "writes an attribute matched by `writable`; answers attrs {path, value}; with missing_ok=true a path "
     "that does not exist (a device without a driver: driver/unbind) answers ok with attrs {path, skipped: absent}"},
    {"write_seq", "path.N, value.N, missing_ok.N (N = 0, 1, ...)",
     "writes the steps in order on one worker, stopping at the first failure (a PCI driver_override, unbind, "
     "drivers_probe sequence); answers attrs {count, written, skipped}, the error names the step and what was "
     "already written"},
    {"list", "glob", "reads every readable attribute the glob matches; attrs {count}, data [{path, value|error}]"},
    {"watched", "", "the watched attributes: attrs {count}, data [{path, value, notify}]"},
    {nullptr, nullptr, nullptr},
};

const hostlet_event_info kEvents[] = {
    {"changed", "path, value, previous, via (notify|interval)", "a watched attribute has a new value"},
    {nullptr, nullptr, nullptr},
};

bool gone(const Status& s) { return s.err == -ENOENT || s.err == -ENODEV || s.err == -ENXIO; }

// One interval job: expand every glob, read every match.
struct ScanItem {
  std::string path;
  uint64_t ticket = 0;  // 0: new path
  Status status;
  std::string value;
  std::shared_ptr<AttrFile> file;  // new paths: the opened attribute, for a notify watch
};
struct ScanResult {
  std::vector<ScanItem> items;
  std::vector<std::string> errors;  // per pattern
  bool complete = true;             // every pattern expanded: absent paths may be dropped
  bool truncated = false;           // max_watches reached
};
struct Known {
  uint64_t ticket;
  std::shared_ptr<AttrFile> file;  // null: read by path
};

ScanResult run_scan(const PathPolicy& policy, const std::vector<std::string>& patterns,
                    const std::map<std::string, Known>& known, size_t max_value, size_t max_list,
                    size_t max_watches) {
  ScanResult out;
  std::set<std::string> seen;
  for (const auto& pattern : patterns) {
    Expansion e = expand(policy, pattern, max_list);
    if (!e.status.ok()) {
      out.errors.push_back("watch " + pattern + ": " + e.status.message);
      out.complete = false;
      continue;
    }
    for (const auto& [rel, why] : e.refused) out.errors.push_back("watch " + pattern + ": " + why.message);
    for (const auto& m : e.matches) {
      std::string path = policy.absolute(m.rel);
      if (!seen.insert(path).second) continue;
      ScanItem item;
      item.path = path;
      auto it = known.find(path);
      if (it != known.end()) {
        item.ticket = it->second.ticket;
        if (it->second.file) {
          item.status = it->second.file->reread(path, max_value, &item.value);
        } else {
          Value v = read_attr(policy, path, max_value);
          item.status = v.status;
          item.value = std::move(v.value);
        }
      } else {
        if (seen.size() > max_watches) {
          out.truncated = true;
          continue;
        }
        item.file = AttrFile::open(policy, m, &item.status);
        if (item.file) item.status = item.file->reread(path, max_value, &item.value);
      }
      out.items.push_back(std::move(item));
    }
  }
  return out;
}

class SysfsPlugin final : public hostlet::Plugin {
 public:
  explicit SysfsPlugin(Host& host) : Plugin(host) {
    auto policy = std::make_shared<PathPolicy>();
    Status s = PathPolicy::make(host.str("root"), host.list("writable"), host.list("readable"), policy.get());
    if (!s.ok()) throw Error(s.err, s.message);
    policy_ = policy;
    max_value_ = static_cast<size_t>(host.integer("max_value"));
    max_list_ = static_cast<size_t>(host.integer("max_list"));
    max_watches_ = static_cast<size_t>(host.integer("max_watches"));
    interval_ms_ = static_cast<uint64_t>(host.integer("watch_interval"));
    rescan_source_ = host.opt_str("rescan_source").value_or("");
    for (const auto& w : host.list("watches")) {
      std::string rel;
      if (Status r = policy_->relative(w, &rel); !r.ok()) throw Error(r.err, "watches: " + r.message);
      watch_patterns_.push_back(policy_->absolute(rel));
    }
    host.action("read", [this](Call& call) { read(call); });
    host.action("write", [this](Call& call) { write(call); });
    host.action("write_seq", [this](Call& call) { write_seq(call); });
    host.action("list", [this](Call& call) { list(call); });
    host.action("watched", [this](Call& call) { watched(call); });
  }

  int start() override {
    if (watch_patterns_.empty()) return 0;
    interval_timer_ = host().timer(0, interval_ms_, [this] { scan(); });
    if (!rescan_source_.empty()) {
      for (const char* type : {"add", "remove", "move"})
        subs_.push_back(host().subscribe(type, [this](const Event& e) {
          if (e.source() == rescan_source_) request_rescan();
        }));
    }
    return 0;
  }

  void stop(std::function<void()> stopped) override {
    stopping_ = true;
    interval_timer_.stop();
    rescan_timer_.stop();
    subs_.clear();
    for (auto& [path, n] : notify_) n.watch.close();
    notify_.clear();  // in-flight reads hold their own reference to the file
    stopped();
  }

 private:
  // ---- actions ----

  // Runs work on a worker and answers the call with reply(call, result) on the loop.
  template <class W, class R>
  void submit(Call& call, std::string what, W work, R reply) {
    auto c = std::make_shared<Call>(std::move(call));
    int r = host().offload(std::move(work), [c, what, reply](int status, auto result) {
      if (status != 0) return c->error(what + ": " + hostlet_strerror(status));
      reply(*c, std::move(result));
    });
    if (r != 0) c->error(what + ": " + hostlet_strerror(r));
  }

  void read(Call& call) {
    std::string path = call.require("path");
    auto policy = policy_;
    size_t max = max_value_;
    submit(call, "read " + path, [policy, path, max] { return read_attr(*policy, path, max); },
           [](Call& c, Value v) {
             if (!v.status.ok()) return c.error(v.status.message);
             c.ok({{"path", v.path}, {"value", v.value}});
           });
  }

  static bool flag(const Call& call, const std::string& key) {
    std::string v = call.attr_or(key.c_str(), "false");
    if (v != "true" && v != "false") throw hostlet::Error(-EINVAL, key + " must be true or false, not '" + v + "'");
    return v == "true";
  }

  // The most steps one write_seq takes.
  static constexpr size_t kMaxSteps = 64;

  struct Step {
    std::string path, value;
    bool missing_ok = false;
  };
  struct SeqResult {
    std::vector<Value> done;  // in order; the last one failed when failed is true
    std::vector<bool> skipped;
    bool failed = false;
  };

  void write_seq(Call& call) {
    std::vector<Step> steps;
    for (size_t i = 0;; i++) {
      const std::string n = std::to_string(i);
      const char* path = call.attr(("path." + n).c_str());
      if (!path) break;
      if (i == kMaxSteps) throw hostlet::Error(-E2BIG, "write_seq: more than " + std::to_string(kMaxSteps) + " steps");
      const char* value = call.attr(("value." + n).c_str());
      if (!value) throw hostlet::Error(-EINVAL, "write_seq: step " + n + " has path." + n + " but no value." + n);
      steps.push_back({path, value, flag(call, "missing_ok." + n)});
    }
    if (steps.empty()) throw hostlet::Error(-EINVAL, "write_seq: no steps (path.0, value.0, ...)");
    auto policy = policy_;
    size_t max = max_value_;
    submit(call, "write_seq", [policy, steps, max] {
             SeqResult r;
             for (const auto& st : steps) {
               r.done.push_back(write_attr(*policy, st.path, st.value, max));
               const Status& s = r.done.back().status;
               r.skipped.push_back(st.missing_ok && s.err == -ENOENT);
               if (!s.ok() && !r.skipped.back()) {
                 r.failed = true;
                 break;
               }
             }
             return r;
           },
           [this](Call& c, SeqResult r) {
             std::string written, skipped;
             for (size_t i = 0; i + (r.failed ? 1 : 0) < r.done.size(); i++) {
               std::string& list = r.skipped[i] ? skipped : written;
               list += (list.empty() ? "" : " ") + r.done[i].path;
               host().debug("write_seq step %zu: %s %s", i, r.done[i].path.c_str(), r.skipped[i] ? "absent, skipped" : "written");
             }
             if (r.failed)
               return c.error("step " + std::to_string(r.done.size() - 1) + ": " + r.done.back().status.message +
                              (written.empty() ? " (nothing written before it)" : " (written before it: " + written + ")"));
             c.ok({{"count", std::to_string(r.done.size())}, {"written", written}, {"skipped", skipped}});
           });
  }

  void write(Call& call) {
    std::string path = call.require("path");
    std::string value = call.require("value");
    const bool missing_ok = flag(call, "missing_ok");
    auto policy = policy_;
    size_t max = max_value_;
    submit(call, "write " + path, [policy, path, value, max] { return write_attr(*policy, path, value, max); },
           [this, missing_ok](Call& c, Value v) {
             // The allow-list is checked before the file is looked for, so
             // missing_ok never answers ok for a path that is not writable.
             if (missing_ok && v.status.err == -ENOENT) {
               host().debug("write %s: absent, skipped (missing_ok)", v.path.c_str());
               return c.ok({{"path", v.path}, {"skipped", "absent"}});
             }
             if (!v.status.ok()) return c.error(v.status.message);
             host().debug("wrote %s = %s", v.path.c_str(), v.value.c_str());
             c.ok({{"path", v.path}, {"value", v.value}});
           });
  }

  void list(Call& call) {
    std::string glob = call.require("glob");
    auto policy = policy_;
    size_t max = max_value_, max_list = max_list_;
    submit(call, "list " + glob, [policy, glob, max, max_list] { return list_attrs(*policy, glob, max, max_list); },
           [](Call& c, Listing l) {
             if (!l.status.ok()) return c.error(l.status.message);
             c.ok({{"count", std::to_string(l.entries.size())}}, listing_json(l));
           });
  }

  void watched(Call& call) {
    auto arr = nlohmann::json::array();
    for (const auto& path : table_.paths()) {
      const std::string* v = table_.value(path);
      arr.push_back({{"path", path}, {"value", v ? nlohmann::json(*v) : nlohmann::json()},
                     {"notify", notify_.count(path) != 0}});
    }
    call.ok({{"count", std::to_string(arr.size())}}, arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }

  // ---- watches ----

  struct Notify {
    std::shared_ptr<AttrFile> file;
    hostlet::Watch watch;
    bool paused = false;   // waiting for a read to re-arm
    bool reading = false;  // a notify re-read is in flight
  };

  void request_rescan() {
    if (scanning_) {
      rescan_again_ = true;
      return;
    }
    if (rescan_pending_) return;
    rescan_pending_ = true;  // coalesce a burst of uevents into one scan
    rescan_timer_ = host().timer(50, 0, [this] {
      rescan_pending_ = false;
      scan();
    });
  }

  void scan() {
    if (stopping_) return;
    if (scanning_) {
      rescan_again_ = true;  // the interval is shorter than a scan: run again right after
      return;
    }
    std::map<std::string, Known> known;
    for (const auto& path : table_.paths()) {
      auto n = notify_.find(path);
      known[path] = Known{table_.ticket(path), n != notify_.end() ? n->second.file : nullptr};
    }
    auto policy = policy_;
    auto patterns = watch_patterns_;
    size_t max_value = max_value_, max_list = max_list_, max_watches = max_watches_;
    int r = host().offload(
        [policy, patterns, known = std::move(known), max_value, max_list, max_watches] {
          return run_scan(*policy, patterns, known, max_value, max_list, max_watches);
        },
        [this](int status, ScanResult result) { scan_done(status, std::move(result)); });
    if (r == 0) scanning_ = true;
    else log_once("watch scan not started: " + std::string(hostlet_strerror(r)));
  }

  void scan_done(int status, ScanResult result) {
    scanning_ = false;
    if (stopping_) return;
    if (status != 0) {
      log_once("watch scan: " + std::string(hostlet_strerror(status)));
      return;
    }
    for (const auto& e : result.errors) log_once(e);
    if (result.truncated) log_once("watches: more than max_watches (" + std::to_string(max_watches_) + ") attributes");

    std::set<std::string> present;
    for (auto& item : result.items) {
      if (!item.status.ok() && gone(item.status)) continue;  // vanished between glob and read
      present.insert(item.path);
      if (item.ticket == 0) {
        add_watch(item);
        continue;
      }
      if (auto change = table_.apply(item.path, item.ticket, item.status, item.value)) publish(*change, "interval");
      auto n = notify_.find(item.path);
      if (n != notify_.end() && n->second.paused && !n->second.reading) resume(item.path, n->second);
    }
    if (result.complete) {
      for (const auto& path : table_.paths())
        if (!present.count(path)) drop_watch(path);
    }
    if (rescan_again_) {
      rescan_again_ = false;
      request_rescan();
    }
  }

  void add_watch(ScanItem& item) {
    table_.add(item.path, item.status.ok() ? std::optional<std::string>(item.value) : std::nullopt);
    if (!item.file) return;
    Notify n;
    n.file = std::move(item.file);
    std::string path = item.path;
    try {
      n.watch = host().watch(n.file->fd(), HOSTLET_WATCH_PRIORITY,
                             [this, path](int, unsigned) { on_notify(path); });
    } catch (const Error& e) {
      // Not pollable (a regular file outside sysfs): interval reads by path only.
      host().debug("watching %s by interval only (%s)", path.c_str(), e.what());
      retire(std::move(n.file));
      return;
    }
    host().debug("watching %s by POLLPRI and interval", path.c_str());
    notify_.emplace(path, std::move(n));
  }

  void drop_watch(const std::string& path) {
    table_.remove(path);
    auto n = notify_.find(path);
    if (n == notify_.end()) return;
    n->second.watch.close();
    retire(std::move(n->second.file));
    notify_.erase(n);
  }

  void resume(const std::string& path, Notify& n) {
    if (n.watch.update(HOSTLET_WATCH_PRIORITY) == 0) n.paused = false;
    else host().warn("cannot resume the watch on %s", path.c_str());
  }

  void on_notify(const std::string& path) {
    auto it = notify_.find(path);
    if (it == notify_.end() || it->second.reading) return;
    Notify& n = it->second;
    n.watch.update(0);  // level-triggered: quiet until a read re-arms the attribute
    n.paused = true;
    uint64_t ticket = table_.ticket(path);
    auto file = n.file;
    size_t max = max_value_;
    int r = host().offload(
        [file, path, max] {
          Value v;
          v.status = file->reread(path, max, &v.value);
          return v;
        },
        [this, path, ticket, file](int status, Value v) { notify_done(path, ticket, file, status, std::move(v)); });
    if (r == 0) n.reading = true;  // else: stays paused, the next interval read resumes it
  }

  void notify_done(const std::string& path, uint64_t ticket, const std::shared_ptr<AttrFile>& file, int status,
                   Value v) {
    if (stopping_) return;
    auto it = notify_.find(path);
    if (it == notify_.end() || it->second.file != file) return;  // dropped or replaced meanwhile
    Notify& n = it->second;
    n.reading = false;
    if (status != 0) return;  // stays paused until the next interval read
    if (!v.status.ok() && gone(v.status)) {
      drop_watch(path);  // the device went away; the next scan picks it up again if it returns
      return;
    }
    auto change = table_.apply(path, ticket, v.status, v.value);
    if (change) {
      publish(*change, "notify");
      resume(path, n);
    }
    // No change: a spurious or stuck wake-up. Resume after the next interval read.
  }

  void publish(const WatchTable::Change& c, const char* via) {
    int r = host().publish("changed", {{"path", c.path}, {"value", c.value}, {"previous", c.previous}, {"via", via}});
    if (r != 0) {
      dropped_++;
      if ((dropped_ & (dropped_ - 1)) == 0)  // 1, 2, 4, 8...: bounded log volume
        host().warn("could not publish changed for %s: %s (%" PRIu64 " dropped so far)", c.path.c_str(),
                    hostlet_strerror(r), dropped_);
    }
  }

  // Closes a file on a worker: close() is a file operation too.
  void retire(std::shared_ptr<AttrFile> file) {
    if (!file) return;
    host().offload([f = std::move(file)]() mutable { f.reset(); }, [](int) {});
  }

  // Logs a recurring problem once (bounded memory), instead of every interval.
  void log_once(const std::string& message) {
    if (logged_.count(message)) return;
    if (logged_.size() >= 256) logged_.clear();
    logged_.insert(message);
    host().warn("%s", message.c_str());
  }

  std::shared_ptr<const PathPolicy> policy_;
  size_t max_value_ = 4096, max_list_ = 10000, max_watches_ = 1024;
  uint64_t interval_ms_ = 1000;
  std::string rescan_source_;
  std::vector<std::string> watch_patterns_;  // absolute

  WatchTable table_;
  std::map<std::string, Notify> notify_;
  hostlet::Timer interval_timer_, rescan_timer_;
  std::vector<hostlet::Subscription> subs_;
  bool scanning_ = false, rescan_again_ = false, rescan_pending_ = false, stopping_ = false;
  uint64_t dropped_ = 0;
  std::set<std::string> logged_;
};

}  // namespace
}  // namespace hostlet::sysfs

HOSTLET_CPP_PLUGIN(hostlet::sysfs::SysfsPlugin, "sysfs", "0.1.0",
                   "reads, writes, lists and watches /sys attributes, every file operation offloaded",
                   hostlet::sysfs::kConfig, hostlet::sysfs::kActions, hostlet::sysfs::kEvents)
