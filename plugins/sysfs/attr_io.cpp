#include "attr_io.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hostlet/json_text.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace hostlet::sysfs {
namespace {

// Text: no NUL byte, and UTF-8 throughout (the one validator, json_text.hpp).
bool valid_utf8_text(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = utf8_sequence_length(s.data() + i, s.data() + s.size());
    if (n == 0) return false;
    i += n;
  }
  return true;
}

Status os_error(const char* op, const std::string& path, int err) {
  return Status::failure(err, std::string(op) + " " + path + ": " + errno_text(err));
}

// Reads the whole attribute from offset 0.
Status read_all(int fd, const std::string& path, size_t max_value, std::string* out) {
  if (::lseek(fd, 0, SEEK_SET) < 0) return os_error("read", path, errno);
  std::string buf(max_value + 1, '\0');
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error("read", path, errno);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > max_value)
    return Status::failure(EFBIG, "read " + path + ": value larger than max_value (" + std::to_string(max_value) + " bytes)");
  buf.resize(got);
  if (!buf.empty() && buf.back() == '\n') buf.pop_back();
  if (!valid_utf8_text(buf)) return Status::failure(EILSEQ, "read " + path + ": value is not text (binary attribute)");
  *out = std::move(buf);
  return {};
}

Status prefixed(const char* op, Status s) {
  s.message = std::string(op) + ": " + s.message;
  return s;
}

// Opens a regular file beneath root without blocking on a FIFO.
Status open_regular(const char* op, const PathPolicy& policy, const std::string& real_rel, const std::string& path,
                    int flags, int* fd) {
  int f = -1;
  if (!(flags & O_PATH)) flags |= O_NONBLOCK;  // openat2 takes O_PATH with no other file flag
  if (Status s = policy.open_beneath(real_rel, flags, path, &f); !s.ok()) {
    s.message = std::string(op) + " " + s.message;
    return s;
  }
  struct stat st;
  if (::fstat(f, &st) != 0) {
    int e = errno;
    ::close(f);
    return os_error(op, path, e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(f);
    return S_ISDIR(st.st_mode) ? os_error(op, path, EISDIR)
                               : Status::failure(EINVAL, std::string(op) + " " + path + ": not a regular file");
  }
  *fd = f;
  return {};
}

// Lexical path, then resolution; `rel`, `real`, `real_rel` filled on success.
Status locate(const char* op, const PathPolicy& policy, std::string_view request, std::string* rel,
              std::string* real, std::string* real_rel) {
  if (Status s = policy.relative(request, rel); !s.ok()) return prefixed(op, s);
  if (Status s = policy.resolve(*rel, real, real_rel); !s.ok()) {
    s.message = std::string(op) + " " + s.message;
    return s;
  }
  return {};
}

std::string glob_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

Value read_attr(const PathPolicy& policy, std::string_view request, size_t max_value) {
  Value v;
  std::string rel, real, real_rel;
  if ((v.status = locate("read", policy, request, &rel, &real, &real_rel)); !v.status.ok()) return v;
  v.path = policy.absolute(rel);
  if (!policy.readable(rel) && !policy.readable(real_rel)) {
    v.status = Status::failure(EACCES, "read " + v.path + ": not readable (matches no `readable` glob)");
    return v;
  }
  Fd fd;
  if ((v.status = open_regular("read", policy, real_rel, v.path, O_RDONLY, &fd.fd)); !v.status.ok()) return v;
  v.status = read_all(fd.fd, v.path, max_value, &v.value);
  return v;
}

Value write_attr(const PathPolicy& policy, std::string_view request, std::string_view value, size_t max_value) {
  Value v;
  std::string rel;
  if (Status s = policy.relative(request, &rel); !s.ok()) {
    v.status = prefixed("write", s);
    return v;
  }
  v.path = policy.absolute(rel);
  if (value.size() > max_value) {
    v.status = Status::failure(EFBIG, "write " + v.path + ": value of " + std::to_string(value.size()) +
                                          " bytes exceeds max_value (" + std::to_string(max_value) + " bytes)");
    return v;
  }
  if (value.find('\0') != std::string_view::npos) {
    v.status = Status::failure(EINVAL, "write " + v.path + ": value contains NUL");
    return v;
  }
  bool allowed = policy.writable(rel);
  std::string real, real_rel;
  Status resolved = policy.resolve(rel, &real, &real_rel);
  if (!allowed && !(resolved.ok() && policy.writable(real_rel))) {
    v.status = Status::failure(EACCES, "write " + v.path + ": not writable (matches no `writable` glob)");
    return v;
  }
  if (!resolved.ok()) {
    v.status = resolved;
    v.status.message = "write " + v.status.message;
    return v;
  }
  // Checked through an O_PATH open first, so a FIFO or directory is named as
  // such (a write-only open of a FIFO would fail with ENXIO) and nothing is
  // truncated that is not a regular file.
  Fd probe;
  if ((v.status = open_regular("write", policy, real_rel, v.path, O_PATH, &probe.fd)); !v.status.ok()) return v;
  Fd fd;
  if ((v.status = open_regular("write", policy, real_rel, v.path, O_WRONLY | O_TRUNC, &fd.fd)); !v.status.ok())
    return v;
  ssize_t n;
  do {
    n = ::write(fd.fd, value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    v.status = os_error("write", v.path, errno);
    return v;
  }
  if (static_cast<size_t>(n) != value.size()) {
    v.status = Status::failure(EIO, "write " + v.path + ": short write (" + std::to_string(n) + " of " +
                                        std::to_string(value.size()) + " bytes)");
    return v;
  }
  int f = std::exchange(fd.fd, -1);
  if (::close(f) != 0 && errno != EINTR) {
    v.status = os_error("write", v.path, errno);
    return v;
  }
  v.value = std::string(value);
  return v;
}

Expansion expand(const PathPolicy& policy, std::string_view pattern, size_t max_matches) {
  Expansion e;
  std::string rel_pattern;
  if (Status s = policy.relative(pattern, &rel_pattern); !s.ok()) {
    e.status = s;
    return e;
  }
  std::string root = policy.root();
  std::string full = glob_escape(root) + (root == "/" ? "" : "/") + rel_pattern;
  glob_t g{};
  int r = ::glob(full.c_str(), 0, nullptr, &g);
  struct Free {
    glob_t* g;
    ~Free() { globfree(g); }
  } free_glob{&g};
  if (r == GLOB_NOMATCH) return e;
  if (r != 0) {
    e.status = Status::failure(r == GLOB_NOSPACE ? ENOMEM : EIO, "glob " + policy.absolute(rel_pattern) + " failed");
    return e;
  }
  if (g.gl_pathc > max_matches) {
    e.status = Status::failure(E2BIG, "glob " + policy.absolute(rel_pattern) + " matches " +
                                          std::to_string(g.gl_pathc) + " paths, more than " + std::to_string(max_matches));
    return e;
  }
  for (size_t i = 0; i < g.gl_pathc; i++) {
    std::string rel;
    if (!policy.relative(g.gl_pathv[i], &rel).ok()) continue;  // cannot happen: glob starts at root
    Match m{rel, {}, {}};
    std::string& real_rel = m.real_rel;
    if (Status s = policy.resolve(rel, &m.real, &real_rel); !s.ok()) {
      e.refused.emplace_back(rel, s);
      continue;
    }
    if (!policy.readable(rel) && !policy.readable(real_rel)) continue;
    struct stat st;
    if (::stat(m.real.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    e.matches.push_back(std::move(m));
  }
  return e;
}

Listing list_attrs(const PathPolicy& policy, std::string_view pattern, size_t max_value, size_t max_matches) {
  Listing l;
  Expansion e = expand(policy, pattern, max_matches);
  if (!e.status.ok()) {
    l.status = prefixed("list", e.status);
    return l;
  }
  for (auto& [rel, s] : e.refused) l.entries.push_back({policy.absolute(rel), s, {}});
  for (const auto& m : e.matches) {
    ListEntry entry{policy.absolute(m.rel), {}, {}};
    Fd fd;
    entry.status = open_regular("read", policy, m.real_rel, entry.path, O_RDONLY, &fd.fd);
    if (entry.status.ok()) entry.status = read_all(fd.fd, entry.path, max_value, &entry.value);
    l.entries.push_back(std::move(entry));
  }
  std::sort(l.entries.begin(), l.entries.end(), [](const ListEntry& a, const ListEntry& b) { return a.path < b.path; });
  return l;
}

std::string listing_json(const Listing& listing) {
  auto arr = nlohmann::json::array();
  for (const auto& e : listing.entries) {
    if (e.status.ok()) arr.push_back({{"path", e.path}, {"value", e.value}});
    else arr.push_back({{"path", e.path}, {"error", e.status.message}});
  }
  return arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::shared_ptr<AttrFile> AttrFile::open(const PathPolicy& policy, const Match& match, Status* status) {
  int fd = -1;
  *status = open_regular("open", policy, match.real_rel, match.real, O_RDONLY, &fd);
  if (!status->ok()) return nullptr;
  return std::shared_ptr<AttrFile>(new AttrFile(fd));
}

AttrFile::~AttrFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status AttrFile::reread(const std::string& path, size_t max_value, std::string* value) {
  std::lock_guard<std::mutex> lock(mu_);
  return read_all(fd_, path, max_value, value);
}

}  // namespace hostlet::sysfs
