// Bookkeeping of watched attributes, on the loop thread: last values, and
// ordering of re-reads that may complete out of order.
//
// Two kinds of reads refresh a watched attribute: the interval scan and the
// re-read after POLLPRI. Both run on worker threads and may finish in any
// order, so each read takes a ticket when it is submitted and a result is
// applied only if no later-submitted read was applied before it. Without
// this, an interval read started before a change but finished after the
// POLLPRI re-read would report the old value as a change back.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "paths.hpp"

namespace hostlet::sysfs {

class WatchTable {
 public:
  struct Change {
    std::string path, value, previous;
  };

  bool contains(const std::string& path) const { return entries_.count(path) != 0; }
  size_t size() const { return entries_.size(); }
  std::vector<std::string> paths() const;
  // The last value read, or nullptr when no read has succeeded yet.
  const std::string* value(const std::string& path) const;

  // Starts tracking path; `value` (if any) is the baseline: no change is reported for it.
  void add(const std::string& path, const std::optional<std::string>& value);
  void remove(const std::string& path);

  // A ticket for a read of path about to be submitted (0: path unknown).
  uint64_t ticket(const std::string& path);
  // Applies the result of the read holding `ticket`. Returns the change when
  // the value differs from the last one; nothing for a failed, stale or
  // unknown read (a failed read keeps the last value).
  std::optional<Change> apply(const std::string& path, uint64_t ticket, const Status& status,
                              const std::string& value);

 private:
  struct Entry {
    std::optional<std::string> value;
    uint64_t applied = 0;
  };
  std::map<std::string, Entry> entries_;
  uint64_t next_ticket_ = 0;  // one sequence for all paths: a removed and re-added path cannot reuse tickets
};

}  // namespace hostlet::sysfs
