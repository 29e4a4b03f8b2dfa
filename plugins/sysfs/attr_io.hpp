// File operations of the sysfs plugin. Every function here blocks (sysfs
// reads and writes can wait in a driver) and runs on a worker thread only.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "paths.hpp"

namespace hostlet::sysfs {

struct Value {
  Status status;
  std::string path;   // absolute lexical path (root + "/" + rel), as reported to callers
  std::string value;  // read: the content without one trailing newline; write: what was written
};

// Reads an attribute: at most max_value bytes, text (UTF-8, no NUL), one
// trailing newline removed. Refused when not `readable`.
Value read_attr(const PathPolicy& policy, std::string_view request, size_t max_value);

// Writes `value` with one write(2) (sysfs takes a value in one piece). Refused
// before any file is opened when the path matches no `writable` glob; the
// kernel's answer (EINVAL, EBUSY, EACCES...) comes back as the error text.
Value write_attr(const PathPolicy& policy, std::string_view request, std::string_view value, size_t max_value);

struct Match {
  std::string rel;   // lexical, relative to root
  std::string real;  // resolved absolute path
  std::string real_rel;  // the same relative to realpath(root), for PathPolicy::open_beneath
};
struct Expansion {
  Status status;
  std::vector<Match> matches;  // sorted by rel; readable regular files under root only
  std::vector<std::pair<std::string, Status>> refused;  // rel -> why (e.g. symlink out of root)
};
// Expands a glob (relative to root or absolute under it) with glob(3).
// More than max_matches candidates fail with E2BIG.
Expansion expand(const PathPolicy& policy, std::string_view pattern, size_t max_matches);

struct ListEntry {
  std::string path;
  Status status;
  std::string value;
};
struct Listing {
  Status status;
  std::vector<ListEntry> entries;
};
// expand() + read each match; unreadable entries carry their error.
Listing list_attrs(const PathPolicy& policy, std::string_view pattern, size_t max_value, size_t max_matches);
// The listing as a JSON array: [{"path": ..., "value": ...} | {"path": ..., "error": ...}].
std::string listing_json(const Listing& listing);

// An attribute kept open for a watch: POLLPRI on its fd signals
// sysfs_notify(), and re-reading from offset 0 re-arms it. reread() may run
// on any thread; it serializes on an internal mutex. The fd closes with the
// last reference.
class AttrFile {
 public:
  // Opens match.real_rel beneath the policy's root (PathPolicy::open_beneath).
  static std::shared_ptr<AttrFile> open(const PathPolicy& policy, const Match& match, Status* status);
  ~AttrFile();
  AttrFile(const AttrFile&) = delete;
  AttrFile& operator=(const AttrFile&) = delete;
  int fd() const { return fd_; }
  // lseek(0) + read, as read_attr. `path` is used in error messages.
  Status reread(const std::string& path, size_t max_value, std::string* value);

 private:
  explicit AttrFile(int fd) : fd_(fd) {}
  int fd_;
  std::mutex mu_;
};

}  // namespace hostlet::sysfs
