#include "watches.hpp"

namespace hostlet::sysfs {

std::vector<std::string> WatchTable::paths() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

const std::string* WatchTable::value(const std::string& path) const {
  auto it = entries_.find(path);
  return it != entries_.end() && it->second.value ? &*it->second.value : nullptr;
}

void WatchTable::add(const std::string& path, const std::optional<std::string>& value) {
  Entry& e = entries_[path];
  e.value = value;
  e.applied = next_ticket_;  // reads submitted before the baseline are stale
}

void WatchTable::remove(const std::string& path) { entries_.erase(path); }

uint64_t WatchTable::ticket(const std::string& path) {
  auto it = entries_.find(path);
  return it == entries_.end() ? 0 : ++next_ticket_;
}

std::optional<WatchTable::Change> WatchTable::apply(const std::string& path, uint64_t ticket, const Status& status,
                                                    const std::string& value) {
  auto it = entries_.find(path);
  if (it == entries_.end() || ticket == 0) return std::nullopt;
  Entry& e = it->second;
  if (ticket <= e.applied) return std::nullopt;
  e.applied = ticket;
  if (!status.ok()) return std::nullopt;
  std::optional<Change> change;
  if (e.value && *e.value != value) change = Change{path, value, *e.value};
  e.value = value;
  return change;
}

}  // namespace hostlet::sysfs
