// The host's fd store (hostlet_host_api.keep_fd / take_fd, since 1.1): fds
// an instance leaves when it stops for the next instance of the same name,
// and the sockets the service manager passed at start-up (systemd socket
// activation, LISTEN_FDS / LISTEN_FDNAMES).
//
// Keys are "<instance>.<name>". An instance may keep fds only while a
// successor is expected: the reloader opens that window for the instance it
// replaces (expect) and closes it when the reload of that name is over
// (settle), closing and counting whatever nobody took. Outside the window
// (agent shutdown, an instance removed from the config) keep answers
// -ESHUTDOWN and the plugin closes its fds as it always did.
//
// take(instance, name) looks for "<instance>.<name>", then for an activated
// fd named "<instance>" alone (a unit that names its socket after the
// instance). Activated fds nobody takes while the agent starts are closed
// with a warning that names them (release_unclaimed_activation).
//
// Loop thread only. The store owns every fd in it and closes them all when
// destroyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace hostlet {

class FdStore {
 public:
  static constexpr size_t kMaxState = 1 << 20;  // bytes of state per fd
  static constexpr size_t kMaxPerInstance = 4096;

  FdStore() = default;
  ~FdStore();
  FdStore(const FdStore&) = delete;
  FdStore& operator=(const FdStore&) = delete;

  // Reads LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES (sd_listen_fds(3)) and unsets
  // them, so that no child inherits them. Fds without a usable name are
  // closed. Returns log lines (warnings) for the caller to print.
  std::vector<std::string> adopt_activation();

  // keep_fd: 0; -EINVAL bad name/fd; -ESHUTDOWN no successor expected;
  // -EEXIST name kept already; -E2BIG state too large; -EMFILE too many.
  int keep(const std::string& instance, const std::string& name, int fd, const void* state, size_t len);
  // take_fd: the fd (>= 0, now the caller's) with its state copied into
  // buf (when len_out is not null, *len_out gets the state's size);
  // -ENOENT nothing under that name; -ENOBUFS state larger than cap (the
  // fd stays in the store, *len_out says how much room it needs).
  int take(const std::string& instance, const std::string& name, void* buf, size_t cap, size_t* len_out);
  // An activated fd under exactly `key` (the agent's own "control"), or -1.
  int take_activated(const std::string& key);

  void expect(const std::string& instance) { expecting_.insert(instance); }
  // Ends the window for `instance` and closes what it left untaken; returns how many.
  size_t settle(const std::string& instance);
  // Closes every activated fd nobody took; returns their names.
  std::vector<std::string> release_unclaimed_activation();

  size_t size() const { return fds_.size(); }
  uint64_t kept_total() const { return kept_; }
  uint64_t taken_total() const { return taken_; }
  uint64_t closed_total() const { return closed_; }  // left by an instance and never taken
  uint64_t activated_total() const { return activated_; }

 private:
  struct Entry {
    int fd = -1;
    std::string state;
    bool activated = false;
    std::string owner;  // the instance that kept it (empty: activated)
  };
  std::map<std::string, Entry> fds_;
  std::map<std::string, size_t> kept_by_;
  std::set<std::string> expecting_;
  uint64_t kept_ = 0, taken_ = 0, closed_ = 0, activated_ = 0;
};

// A valid fd-store name: 1 to 64 of [A-Za-z0-9_.-].
bool fd_name_valid(const std::string& name);

}  // namespace hostlet
