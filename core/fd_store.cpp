#include "fd_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace hostlet {

namespace {
constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START
}

bool fd_name_valid(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

FdStore::~FdStore() {
  for (auto& [key, e] : fds_) ::close(e.fd);
}

std::vector<std::string> FdStore::adopt_activation() {
  std::vector<std::string> notes;
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  const char* names = std::getenv("LISTEN_FDNAMES");
  std::string names_text = names ? names : "";
  bool ours = pid && fds && std::strtoul(pid, nullptr, 10) == static_cast<unsigned long>(getpid());
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (!ours) return notes;
  char* end = nullptr;
  long n = std::strtol(fds, &end, 10);
  if (*end || n <= 0 || n > 1024) {
    notes.push_back("LISTEN_FDS='" + std::string(fds) + "' is not a count of fds: ignored");
    return notes;
  }
  std::vector<std::string> split;
  for (size_t at = 0; at <= names_text.size();) {
    size_t colon = names_text.find(':', at);
    if (colon == std::string::npos) colon = names_text.size();
    split.push_back(names_text.substr(at, colon - at));
    at = colon + 1;
  }
  for (long i = 0; i < n; i++) {
    int fd = kListenFdsStart + static_cast<int>(i);
    std::string name = i < static_cast<long>(split.size()) ? split[static_cast<size_t>(i)] : "";
    if (!fd_name_valid(name) || fds_.count(name)) {
      notes.push_back("activated fd " + std::to_string(fd) + " has no usable name ('" + name +
                      "'; FileDescriptorName= must be 'control', an instance's name or '<instance>.<socket>'"
                      " and unique): closed");
      ::close(fd);
      continue;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fds_[name] = Entry{fd, {}, true, {}};
    activated_++;
  }
  return notes;
}

int FdStore::keep(const std::string& instance, const std::string& name, int fd, const void* state, size_t len) {
  if (!fd_name_valid(name) || fd < 0 || (len && !state)) return -EINVAL;
  if (!expecting_.count(instance)) return -ESHUTDOWN;
  if (len > kMaxState) return -E2BIG;
  const std::string key = instance + "." + name;
  if (fds_.count(key)) return -EEXIST;
  size_t& mine = kept_by_[instance];  // fds this instance left and nobody took yet
  if (mine >= kMaxPerInstance) return -EMFILE;
  mine++;
  fds_[key] = Entry{fd, std::string(static_cast<const char*>(state), len), false, instance};
  kept_++;
  return 0;
}

int FdStore::take(const std::string& instance, const std::string& name, void* buf, size_t cap, size_t* len_out) {
  if (!fd_name_valid(name)) return -EINVAL;
  auto it = fds_.find(instance + "." + name);
  if (it == fds_.end()) {
    it = fds_.find(instance);
    if (it != fds_.end() && !it->second.activated) it = fds_.end();
  }
  if (it == fds_.end()) return -ENOENT;
  const std::string& st = it->second.state;
  if (len_out) *len_out = st.size();
  if (st.size() > cap && (buf || len_out)) return -ENOBUFS;
  if (buf && !st.empty()) std::memcpy(buf, st.data(), st.size());
  int fd = it->second.fd;
  if (!it->second.activated) kept_by_[it->second.owner]--;
  fds_.erase(it);
  taken_++;
  return fd;
}

int FdStore::take_activated(const std::string& key) {
  auto it = fds_.find(key);
  if (it == fds_.end() || !it->second.activated) return -1;
  int fd = it->second.fd;
  fds_.erase(it);
  taken_++;
  return fd;
}

size_t FdStore::settle(const std::string& instance) {
  expecting_.erase(instance);
  kept_by_.erase(instance);
  size_t n = 0;
  const std::string prefix = instance + ".";
  for (auto it = fds_.begin(); it != fds_.end();) {
    if (!it->second.activated && it->first.compare(0, prefix.size(), prefix) == 0) {
      ::close(it->second.fd);
      it = fds_.erase(it);
      n++;
    } else {
      ++it;
    }
  }
  closed_ += n;
  return n;
}

std::vector<std::string> FdStore::release_unclaimed_activation() {
  std::vector<std::string> names;
  for (auto it = fds_.begin(); it != fds_.end();) {
    if (it->second.activated) {
      names.push_back(it->first);
      ::close(it->second.fd);
      it = fds_.erase(it);
    } else {
      ++it;
    }
  }
  return names;
}

}  // namespace hostlet
