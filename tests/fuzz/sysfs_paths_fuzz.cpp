// Fuzz target: sysfs path resolution (plugins/sysfs/paths.cpp) against a
// temporary tree, built once per process under $TMPDIR and removed at exit:
//
//   root/devices/virtual/net/eth0/{mtu,address,queues/rx-0/rps_cpus}
//   root/devices/virtual/net/eth0/subsystem -> ../../../../class/net   (inside)
//   root/devices/mtu_link -> virtual/net/eth0/mtu                      (inside)
//   root/class/net/eth0 -> ../../devices/virtual/net/eth0              (inside)
//   root/class/net/abs  -> <root>/devices/virtual/net/eth0             (inside, absolute)
//   root/class/net/out  -> ../../../outside                            (out of root)
//   root/class/net/abs_out -> <outside>, root/devices/secret -> ../../outside/secret,
//   root/class/net/etc -> /etc                                         (out of root)
//   root/loop -> loop, root/dangling -> nowhere
//   outside/secret, outside/dir/file                                   (must stay unreachable)
//   rootlink -> root                                                   (a root named through a link)
//
// The input's first line is a request path, the next lines are `writable`
// globs. For a policy rooted at root and one rooted at rootlink it checks:
//   - relative() refuses exactly the paths with a ".." component, NUL, empty
//     or longer than PATH_MAX, and absolute ones not under root; what it
//     returns is normalized (no empty, "." or ".." component);
//   - resolve() returns only real paths under realpath(root), with no
//     symlink left in them, and real_rel is the part below root;
//   - open_beneath(), through openat2 and through the O_PATH component walk
//     alike, opens only files under realpath(root) (checked on the open fd
//     through /proc/self/fd), the file resolve() named, and the two ways
//     agree; given the lexical path (symlinks not yet resolved) it follows
//     no symlink, so it still opens nothing outside;
//   - nothing opened is ever one of the outside files (by device and inode);
//   - glob_match: "**" matches every path, a glob without special
//     characters matches itself, small cases agree with a backtracking
//     reference, and writable() agrees with it (a regression input holds
//     the case that backtracking took minutes over).
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "paths.hpp"

namespace {

using hostlet::fuzz::check;
namespace fs = std::filesystem;
namespace sysfs = hostlet::sysfs;

struct Tree {
  std::string base, root, rootlink, real_root;
  std::vector<std::pair<dev_t, ino_t>> outside;  // files and directories that must not be opened
};

Tree* g_tree = nullptr;

void write_file(const fs::path& p, const char* text) {
  std::ofstream(p) << text;
}

void remove_tree() {
  if (g_tree) fs::remove_all(g_tree->base);
}

Tree* make_tree() {
  const char* tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/hostlet-sysfs-fuzz-XXXXXX";
  check(mkdtemp(templ.data()) != nullptr);
  auto* t = new Tree;
  t->base = fs::canonical(templ).string();
  t->root = t->base + "/root";
  t->rootlink = t->base + "/rootlink";
  const fs::path root = t->root, outside = t->base + "/outside";
  fs::create_directories(root / "devices/virtual/net/eth0/queues/rx-0");
  fs::create_directories(root / "class/net");
  fs::create_directories(outside / "dir");
  write_file(root / "devices/virtual/net/eth0/mtu", "1500\n");
  write_file(root / "devices/virtual/net/eth0/address", "02:00:00:00:00:01\n");
  write_file(root / "devices/virtual/net/eth0/queues/rx-0/rps_cpus", "0\n");
  write_file(outside / "secret", "secret\n");
  write_file(outside / "dir/file", "outside\n");
  fs::create_directory_symlink("../../../../class/net", root / "devices/virtual/net/eth0/subsystem");
  fs::create_symlink("virtual/net/eth0/mtu", root / "devices/mtu_link");
  fs::create_directory_symlink("../../devices/virtual/net/eth0", root / "class/net/eth0");
  fs::create_directory_symlink(root / "devices/virtual/net/eth0", root / "class/net/abs");
  fs::create_directory_symlink("../../../outside", root / "class/net/out");
  fs::create_directory_symlink(outside, root / "class/net/abs_out");
  fs::create_directory_symlink("/etc", root / "class/net/etc");
  fs::create_symlink("../../outside/secret", root / "devices/secret");
  fs::create_symlink("loop", root / "loop");
  fs::create_symlink("nowhere", root / "dangling");
  fs::create_directory_symlink(root, t->rootlink);
  t->real_root = fs::canonical(root).string();
  for (const fs::path& p : {outside, outside / "secret", outside / "dir", outside / "dir/file", fs::path(t->base),
                            fs::path("/etc")}) {
    struct stat st {};
    check(stat(p.c_str(), &st) == 0);
    t->outside.emplace_back(st.st_dev, st.st_ino);
  }
  return t;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t i = 0;
  for (;;) {
    size_t j = s.find(sep, i);
    out.push_back(s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    if (j == std::string_view::npos) return out;
    i = j + 1;
  }
}

bool below_real_root(std::string_view p) {
  const std::string& r = g_tree->real_root;
  return p == r || (p.substr(0, r.size()) == r && p.size() > r.size() && p[r.size()] == '/');
}

// The normalized relative form: no empty, "." or ".." component, no stray '/'.
bool normalized(std::string_view rel) {
  if (rel.empty()) return true;
  for (std::string_view c : split(rel, '/'))
    if (c.empty() || c == "." || c == "..") return false;
  return true;
}

bool has_dotdot(std::string_view path) {
  for (std::string_view c : split(path, '/'))
    if (c == "..") return true;
  return false;
}

// An fd open_beneath returned: under root, none of the outside files, and
// (when `expected` is given) that very file. Closes it.
void check_opened(int fd, const struct stat* expected) {
  char link[PATH_MAX + 1];
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = readlink(proc.c_str(), link, PATH_MAX);
  check(n > 0);
  check(below_real_root(std::string_view(link, static_cast<size_t>(n))));
  struct stat st {};
  check(fstat(fd, &st) == 0);
  for (const auto& [dev, ino] : g_tree->outside) check(!(st.st_dev == dev && st.st_ino == ino));
  if (expected) check(st.st_dev == expected->st_dev && st.st_ino == expected->st_ino);
  close(fd);
}

// open_beneath both ways: whatever opens is checked, and the two ways agree
// on whether it opens and on what.
void check_open_both_ways(const sysfs::PathPolicy& policy, const std::string& rel, const struct stat* expected) {
  bool opened[2];
  struct stat st[2] {};
  for (bool walk : {false, true}) {
    sysfs::PathPolicy::force_component_walk(walk);
    int fd = -1;
    const sysfs::Status s = policy.open_beneath(rel, O_RDONLY | O_NONBLOCK, rel, &fd);
    opened[walk] = s.ok();
    if (s.ok()) {
      check(fstat(fd, &st[walk]) == 0);
      check_opened(fd, expected);
    } else {
      check(fd == -1 && !s.message.empty());
    }
  }
  sysfs::PathPolicy::force_component_walk(false);
  check(opened[0] == opened[1]);
  if (opened[0]) check(st[0].st_dev == st[1].st_dev && st[0].st_ino == st[1].st_ino);
}

// glob_match as paths.hpp defines it, by backtracking: exponential in the
// number of "**", so only asked about small cases.
bool reference_match(const std::vector<std::string_view>& pat, size_t i, const std::vector<std::string_view>& path,
                     size_t j) {
  if (i == pat.size()) return j == path.size();
  if (pat[i] == "**") {
    for (size_t k = j; k <= path.size(); k++)
      if (reference_match(pat, i + 1, path, k)) return true;
    return false;
  }
  return j < path.size() && fnmatch(std::string(pat[i]).c_str(), std::string(path[j]).c_str(), 0) == 0 &&
         reference_match(pat, i + 1, path, j + 1);
}

// Components as paths.cpp splits them: empty and "." dropped.
std::vector<std::string_view> components(std::string_view p) {
  std::vector<std::string_view> out;
  for (std::string_view c : split(p, '/'))
    if (!c.empty() && c != ".") out.push_back(c);
  return out;
}

void check_globs(const sysfs::PathPolicy& policy, const std::vector<std::string>& globs, const std::string& rel) {
  check(sysfs::glob_match("**", rel));
  if (rel.find_first_of("*?[\\") == std::string::npos) check(sysfs::glob_match(rel, rel));
  bool any = false;
  for (const std::string& g : globs) {
    std::string g_rel;
    check(policy.relative(g, &g_rel).ok());
    const bool match = sysfs::glob_match(g_rel, rel);
    any = any || match;
    const auto pat = components(g_rel), path = components(rel);
    if (path.size() <= 12 && std::count(pat.begin(), pat.end(), "**") <= 3) check(match == reference_match(pat, 0, path, 0));
  }
  check(policy.writable(rel) == any);
}

void check_policy(const std::string& root, std::string_view request, std::vector<std::string> globs) {
  sysfs::PathPolicy policy;
  if (!sysfs::PathPolicy::make(root, globs, {}, &policy).ok()) {
    globs.clear();
    check(sysfs::PathPolicy::make(root, globs, {}, &policy).ok());
  }
  std::string rel;
  const sysfs::Status s = policy.relative(request, &rel);
  const bool refusable = request.empty() || request.size() > PATH_MAX ||
                         request.find('\0') != std::string_view::npos || has_dotdot(request);
  if (!s.ok()) {
    check(!s.message.empty());
    check(refusable || request.front() == '/');
    return;
  }
  check(!refusable && normalized(rel));
  check(policy.absolute(rel) == (rel.empty() ? policy.root() : policy.root() + "/" + rel));
  check_globs(policy, globs, rel);
  if (rel.empty()) return;  // root itself: nothing to open

  // The lexical path, symlinks and all: nothing outside may open.
  check_open_both_ways(policy, rel, nullptr);

  std::string real, real_rel;
  const sysfs::Status r = policy.resolve(rel, &real, &real_rel);
  if (!r.ok()) {
    check(!r.message.empty());
    return;
  }
  check(below_real_root(real));
  check(real == g_tree->real_root + (real_rel.empty() ? "" : "/" + real_rel));
  check(normalized(real_rel));
  std::error_code ec;
  check(fs::canonical(real, ec).string() == real);
  struct stat st {};
  check(stat(real.c_str(), &st) == 0);
  if (!real_rel.empty()) check_open_both_ways(policy, real_rel, &st);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_tree = make_tree();
  atexit(remove_tree);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> lines = split(std::string_view(reinterpret_cast<const char*>(data), size), '\n');
  std::vector<std::string> globs;
  for (size_t i = 1; i < lines.size() && i <= 8; i++) globs.emplace_back(lines[i]);
  // The request may name the tree by its real place: "@" at its start stands for root.
  std::string request(lines[0]);
  if (!request.empty() && request.front() == '@') request = g_tree->root + request.substr(1);
  check_policy(g_tree->root, request, globs);
  check_policy(g_tree->rootlink, request, globs);
  return 0;
}
