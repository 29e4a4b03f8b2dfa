#include "paths.hpp"

#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <memory>

namespace hostlet::sysfs {
namespace {

std::vector<std::string_view> components(std::string_view p) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view c = p.substr(i, j - i);
    if (!c.empty() && c != ".") out.push_back(c);
    i = j + 1;
  }
  return out;
}

// Whether pattern components pat match path components path, "**" standing
// for any number of components. Bottom-up over the pattern, one row per
// component: can[j] is whether pat[i..] matches path[j..]. At most
// |pat| x |path| fnmatch calls: a backtracking match took time |path|^k for k
// "**" (4 of them and a 300-component request path: minutes).
bool match_components(const std::vector<std::string_view>& pat, const std::vector<std::string_view>& path) {
  const size_t n = path.size();
  std::vector<std::string> texts(path.begin(), path.end());  // NUL-terminated, for fnmatch
  std::vector<char> can(n + 1, 0), row(n + 1, 0);
  can[n] = 1;  // the empty pattern matches the empty rest
  for (size_t i = pat.size(); i-- > 0;) {
    if (pat[i] == "**") {
      row[n] = can[n];
      for (size_t j = n; j-- > 0;) row[j] = can[j] || row[j + 1];
    } else {
      const std::string p(pat[i]);
      row[n] = 0;
      for (size_t j = n; j-- > 0;) row[j] = can[j + 1] && fnmatch(p.c_str(), texts[j].c_str(), 0) == 0;
    }
    can.swap(row);
  }
  return can[0];
}

bool any_match(const std::vector<std::string>& globs, std::string_view rel) {
  for (const auto& g : globs)
    if (glob_match(g, rel)) return true;
  return false;
}

// The path below `base`, or npos-like failure: "" for base itself.
bool below(std::string_view base, std::string_view p, std::string* rest) {
  if (base == "/") {
    if (p.empty() || p.front() != '/') return false;
    *rest = std::string(p.substr(1));
    return true;
  }
  if (p.substr(0, base.size()) != base) return false;
  if (p.size() == base.size()) {
    rest->clear();
    return true;
  }
  if (p[base.size()] != '/') return false;
  *rest = std::string(p.substr(base.size() + 1));
  return true;
}

std::string join(const std::vector<std::string_view>& comps) {
  std::string out;
  for (auto c : comps) {
    if (!out.empty()) out += '/';
    out += c;
  }
  return out;
}

std::atomic<bool> g_force_walk{false};

// openat2 without a glibc wrapper (glibc 2.36 has none). -1 with errno.
int openat2_beneath(int dir, const char* rel, int flags) {
  open_how how{};
  how.flags = static_cast<__u64>(flags);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long r;
  do {
    r = ::syscall(SYS_openat2, dir, rel, &how, sizeof how);
  } while (r < 0 && (errno == EINTR || errno == EAGAIN));
  return static_cast<int>(r);
}

// The fallback: every directory component with O_PATH|O_NOFOLLOW|O_DIRECTORY,
// the last with the caller's flags and O_NOFOLLOW. rel has no ".." (resolve()
// output), so nothing here can climb out of dir. -1 with errno.
int walk_beneath(int dir, std::string_view rel, int flags) {
  auto comps = components(rel);
  if (comps.empty()) {
    errno = EISDIR;
    return -1;
  }
  Fd cur;
  int at = dir;
  for (size_t i = 0; i + 1 < comps.size(); i++) {
    std::string c(comps[i]);
    int next = ::openat(at, c.c_str(), O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    if (next < 0) return -1;
    if (cur.fd >= 0) ::close(cur.fd);
    cur.fd = next;
    at = next;
  }
  std::string last(comps.back());
  return ::openat(at, last.c_str(), flags);
}

}  // namespace

void PathPolicy::force_component_walk(bool on) { g_force_walk.store(on); }

Status PathPolicy::open_beneath(const std::string& real_rel, int flags, const std::string& shown, int* fd) const {
  std::unique_ptr<char, decltype(&free)> root_real(realpath(root_.c_str(), nullptr), &free);
  if (!root_real) return Status::failure(errno, "root " + root_ + ": " + errno_text(errno));
  Fd root;
  root.fd = ::open(root_real.get(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root.fd < 0) return Status::failure(errno, "root " + root_ + ": " + errno_text(errno));
  flags |= O_CLOEXEC | O_NOFOLLOW;
  int f = -1;
  if (!g_force_walk.load()) {
    f = openat2_beneath(root.fd, real_rel.c_str(), flags);
    if (f < 0 && (errno == ENOSYS || errno == EPERM)) f = -2;  // no openat2 here: walk instead
  } else {
    f = -2;
  }
  if (f == -2) f = walk_beneath(root.fd, real_rel, flags);
  if (f >= 0) {
    *fd = f;
    return {};
  }
  int e = errno;
  // ELOOP: a symlink where resolve() saw none (O_NOFOLLOW or RESOLVE_NO_SYMLINKS);
  // EXDEV: openat2 saw the path leave root; ENOTDIR: a directory became a link.
  if (e == ELOOP || e == EXDEV || e == ENOTDIR)
    return Status::failure(EACCES, shown + " changed while it was opened: a symlink or a path out of root " + root_ +
                                       " appeared (" + errno_text(e) + ")");
  return Status::failure(e, shown + ": " + errno_text(e));
}

std::string errno_text(int err) {
  if (err < 0) err = -err;
  const char* name = strerrorname_np(err);
  std::string s = std::strerror(err);
  if (name) s += std::string(" (") + name + ")";
  return s;
}

bool has_glob_chars(std::string_view s) { return s.find_first_of("*?[") != std::string_view::npos; }

bool glob_match(std::string_view pattern, std::string_view path) {
  return match_components(components(pattern), components(path));
}

Status PathPolicy::make(const std::string& root, const std::vector<std::string>& writable,
                        const std::vector<std::string>& readable, PathPolicy* out) {
  PathPolicy p;
  if (root.empty() || root.front() != '/') return Status::failure(EINVAL, "root must be an absolute path: \"" + root + "\"");
  auto comps = components(root);
  for (auto c : comps)
    if (c == "..") return Status::failure(EINVAL, "root must not contain '..': \"" + root + "\"");
  p.root_ = "/" + join(comps);

  auto add = [&](const std::vector<std::string>& in, std::vector<std::string>* to, const char* key) -> Status {
    for (const auto& g : in) {
      std::string rel;
      Status s = p.relative(g, &rel);
      if (!s.ok()) return Status::failure(EINVAL, std::string(key) + ": " + s.message);
      to->push_back(rel);
    }
    return {};
  };
  if (Status s = add(writable, &p.writable_, "writable"); !s.ok()) return s;
  if (Status s = add(readable, &p.readable_, "readable"); !s.ok()) return s;
  *out = std::move(p);
  return {};
}

Status PathPolicy::relative(std::string_view request, std::string* rel) const {
  if (request.empty()) return Status::failure(EINVAL, "empty path");
  if (request.size() > PATH_MAX) return Status::failure(ENAMETOOLONG, "path longer than PATH_MAX");
  if (request.find('\0') != std::string_view::npos) return Status::failure(EINVAL, "path contains NUL");
  std::string_view r = request;
  std::string tail;
  if (r.front() == '/') {
    // Lexical normalization first, so "/sys//class" and "/sys/./class" count as under /sys.
    std::string norm = "/" + join(components(r));
    if (!below(root_, norm, &tail))
      return Status::failure(EACCES, "path " + std::string(request) + " is not under root " + root_);
    r = tail;
  }
  auto comps = components(r);
  for (auto c : comps)
    if (c == "..") return Status::failure(EACCES, "'..' is not allowed in path " + std::string(request));
  *rel = join(comps);
  return {};
}

std::string PathPolicy::absolute(std::string_view rel) const {
  if (rel.empty()) return root_;
  return root_ == "/" ? "/" + std::string(rel) : root_ + "/" + std::string(rel);
}

Status PathPolicy::resolve(const std::string& rel, std::string* real, std::string* real_rel) const {
  std::string abs = absolute(rel);
  std::unique_ptr<char, decltype(&free)> root_real(realpath(root_.c_str(), nullptr), &free);
  if (!root_real) return Status::failure(errno, "root " + root_ + ": " + errno_text(errno));
  std::unique_ptr<char, decltype(&free)> r(realpath(abs.c_str(), nullptr), &free);
  if (!r) return Status::failure(errno, abs + ": " + errno_text(errno));
  if (!below(root_real.get(), r.get(), real_rel))
    return Status::failure(EACCES, abs + " resolves to " + r.get() + ", outside root " + root_);
  *real = r.get();
  return {};
}

bool PathPolicy::writable(std::string_view rel) const { return any_match(writable_, rel); }

bool PathPolicy::readable(std::string_view rel) const { return readable_.empty() || any_match(readable_, rel); }

}  // namespace hostlet::sysfs
