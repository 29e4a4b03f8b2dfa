// Path rules of the sysfs plugin: what a request may name, and where it leads.
//
// Every path is first made relative to `root` lexically: a relative path is
// taken as is, an absolute one must start with root. Empty and "." components
// are dropped; a ".." component is refused outright (it is the usual way to
// climb out of a template like /sys/class/net/${INTERFACE}/mtu, and nothing
// under /sys needs it). The lexical path is then resolved with realpath(3) on
// a worker thread, and the result must lie under realpath(root): symlinks are
// followed (/sys/class/net/X is one, into /sys/devices) as long as they stay
// under root; a symlink leading out is refused.
//
// realpath() only names the file; the file is then opened by that name
// relative to a directory fd of realpath(root) with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS). The resolved name has no
// symlink in it, so a symlink met now means the tree changed between the two
// steps (a directory exchanged for a link out of root, say): the open fails
// with EACCES instead of following it. Without openat2 (Linux < 5.6, or a
// seccomp filter answering ENOSYS) each component is opened in turn with
// O_PATH|O_NOFOLLOW, which gives the same guarantee.
//
// Allow-lists (`writable`, `readable`) are globs relative to root, matched per
// path component with fnmatch(3) ('*' never crosses a '/'), plus "**" for any
// number of components. A file is allowed when either of its names matches:
// the lexical one (class/net/hl0/mtu) or the resolved one
// (devices/virtual/net/hl0/mtu).
#pragma once

#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

namespace hostlet::sysfs {

// Either ok, or an error with a negative errno and a message for the caller.
struct Status {
  int err = 0;
  std::string message;
  bool ok() const { return err == 0; }
  static Status failure(int err, std::string message) { return {err < 0 ? err : -err, std::move(message)}; }
};

// A file descriptor closed with its scope.
struct Fd {
  int fd = -1;
  Fd() = default;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// "Invalid argument (EINVAL)" for errno 22.
std::string errno_text(int err);

// Glob on '/'-separated relative paths: fnmatch per component, "**" = zero or more components.
bool glob_match(std::string_view pattern, std::string_view path);
bool has_glob_chars(std::string_view s);

class PathPolicy {
 public:
  // root must be absolute. Globs may be relative to root or absolute under it.
  // Fails (with a message naming the offending entry) on a bad root or glob.
  static Status make(const std::string& root, const std::vector<std::string>& writable,
                     const std::vector<std::string>& readable, PathPolicy* out);

  const std::string& root() const { return root_; }

  // The request made relative to root ("class/net/hl0/mtu"), or an error
  // for an empty path, an absolute path outside root, or a ".." component.
  Status relative(std::string_view request, std::string* rel) const;
  // The absolute form of a relative path: root + "/" + rel (root itself for "").
  std::string absolute(std::string_view rel) const;

  // Worker thread only (realpath). Resolves rel; *real receives the absolute
  // real path and *real_rel its part below realpath(root). Errors: the
  // resolution's errno (ENOENT...), or EACCES when the real path is outside root.
  Status resolve(const std::string& rel, std::string* real, std::string* real_rel) const;

  // Worker thread only. Opens real_rel (a resolved path from resolve(), with
  // no symlink or ".." in it) beneath realpath(root) as described above;
  // `flags` are open(2) flags, O_CLOEXEC and O_NOFOLLOW are added. `shown` is
  // the path named in error messages. Errors: the open's errno, or EACCES when
  // a component became a symlink or the file is no longer under root.
  Status open_beneath(const std::string& real_rel, int flags, const std::string& shown, int* fd) const;

  // Tests only: use the O_PATH component walk even where openat2 exists.
  static void force_component_walk(bool on);

  bool writable(std::string_view rel) const;
  bool readable(std::string_view rel) const;  // true for everything when `readable` is empty

 private:
  std::string root_;  // normalized, no trailing '/', "/" for the file system root
  std::vector<std::string> writable_, readable_;
};

}  // namespace hostlet::sysfs
