#include "client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hostlet::ctl {

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

bool Client::open(const std::string& path, std::string& err) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    err = "socket path too long";
    return false;
  }
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    err = strerror(errno);
    return false;
  }
  return true;
}

bool Client::send(const nlohmann::json& request) {
  std::string s = request.dump() + "\n";
  for (size_t off = 0; off < s.size();) {
    ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool Client::line(std::string& out, int timeout_ms) {
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      out = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return true;
    }
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;  // timeout, or EINTR (^C while streaming)
    char tmp[65536];
    ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
    if (n == 0) eof_ = true;
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

void Client::finish_sending() { ::shutdown(fd_, SHUT_WR); }

}  // namespace hostlet::ctl
