// hostlet-hook: libvirt's hook program (installed as /etc/libvirt/hooks/qemu,
// lxc, network, daemon: a symlink each). Each invocation becomes one event,
// libvirt.hook.<object>.<operation>, sent with `ack: done` to the agent's
// notification socket; the answer decides the exit status. It never calls
// libvirt (a hook that does deadlocks libvirtd).
//
// Exit status: 1 with the failing action's message on stderr when a rule's
// action failed on an operation libvirt lets veto (prepare, start, migrate,
// restore); 0 otherwise. When the agent cannot be asked (socket missing,
// refused, no answer within `timeout`, bad input on stdin) the hook logs to
// stderr and lets the operation pass, unless hook.conf says
// `on_unreachable = closed`: then a vetoable operation fails. A broken
// hook.conf fails vetoable operations (the operator's intent is unknown).
// 2: not run the way libvirt runs hooks.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "hook.hpp"

namespace {

using namespace hostlet::hook;
using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline` (0 once passed).
int left_ms(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms > 0 ? static_cast<int>(ms) : 0;
}

// Reads fd 0 to EOF, at most `max` bytes. False with `err` when there is more,
// on a read error, or when libvirtd has not closed it by the deadline.
bool read_stdin(size_t max, Clock::time_point deadline, std::string& out, std::string& err) {
  if (fcntl(0, F_GETFD) < 0 || isatty(0)) return true;  // nothing given (run by hand)
  char buf[65536];
  for (;;) {
    pollfd p{0, POLLIN, 0};
    int r = poll(&p, 1, left_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      err = r == 0 ? "stdin not closed before the timeout" : std::string("poll stdin: ") + strerror(errno);
      return false;
    }
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = std::string("read stdin: ") + strerror(errno);
      return false;
    }
    if (n == 0) return true;
    if (out.size() + static_cast<size_t>(n) > max) {
      err = "stdin holds more than max_stdin (" + std::to_string(max) + " bytes)";
      return false;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

// Sends `line` to the agent at `path` and reads one answer line, all by the
// deadline. False with `err`.
bool exchange(const std::string& path, const std::string& line, size_t max_reply, Clock::time_point deadline,
              std::string& reply, std::string& err) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    err = "socket path too long: " + path;
    return false;
  }
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    err = std::string("socket: ") + strerror(errno);
    return false;
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    // A Unix socket connects at once or not at all: EAGAIN is a full backlog.
    err = "connect " + path + ": " + strerror(errno) + (errno == EAGAIN ? " (the agent's backlog is full)" : "");
    return false;
  }
  for (size_t off = 0; off < line.size();) {
    ssize_t n = send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      err = "send to " + path + ": " + strerror(errno);
      return false;
    }
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, left_ms(deadline)) == 0) {
      err = "timeout";
      return false;
    }
  }
  char buf[65536];
  for (;;) {
    if (size_t nl = reply.find('\n'); nl != std::string::npos) {
      reply.resize(nl);
      return true;
    }
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, left_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      err = "timeout";
      return false;
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      err = "the agent closed the connection without an answer" +
            (n < 0 ? std::string(" (") + strerror(errno) + ")" : std::string());
      return false;
    }
    if (reply.size() + static_cast<size_t>(n) > max_reply) {
      err = "the agent's answer is longer than " + std::to_string(max_reply) + " bytes";
      return false;
    }
    reply.append(buf, static_cast<size_t>(n));
  }
}

// The file's text (at most 1 MiB of it), "" when it does not exist.
bool read_text_file(const char* path, std::string& out, std::string& err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return true;  // no file: the defaults
    err = std::string(path) + ": " + strerror(errno);
    return false;
  }
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0 && out.size() < (1u << 20)) out.append(buf, static_cast<size_t>(n));
  if (n < 0) err = std::string(path) + ": " + strerror(errno);
  close(fd);
  return n >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  const auto start = Clock::now();
  std::vector<std::string> args(argv, argv + argc);
  Invocation inv;
  std::string err;
  if (!parse_invocation(args, inv, err)) {
    std::fprintf(stderr, "hostlet-hook: %s\n", err.c_str());
    return 2;
  }
  const std::string what = event_type(inv) + " " + inv.name;
  const bool veto = vetoable(inv.operation);
  auto say = [&](const std::string& msg) { std::fprintf(stderr, "hostlet-hook: %s: %s\n", what.c_str(), msg.c_str()); };

  Config config;
  const char* config_path = std::getenv(kConfigEnv);
  if (!config_path || !*config_path) config_path = kDefaultConfig;
  std::string config_text;
  if (!read_text_file(config_path, config_text, err) || !parse_config(config_text, config, err)) {
    if (err.rfind(config_path, 0) != 0) err = std::string(config_path) + ": " + err;
    say(err + (veto ? ": refusing the operation" : ""));
    return veto ? 1 : 0;
  }
  if (const char* s = std::getenv(kSocketEnv); s && *s) config.socket = s;
  const auto deadline = start + std::chrono::milliseconds(config.timeout_ms);

  // Could not consult the agent: on_unreachable decides.
  auto unreachable = [&](const std::string& msg) {
    const bool refuse = veto && config.fail_closed;
    say(msg + (refuse ? ": refusing the operation (on_unreachable = closed)" : ": letting it pass"));
    return refuse ? 1 : 0;
  };

  std::string xml;
  Description desc;
  if (!read_stdin(config.max_stdin, deadline, xml, err) || !read_description(xml, desc, err))
    return unreachable(err);
  uint64_t default_page = 0;
  if (desc.hugepages && desc.hugepage_kib == 0) {
    std::string meminfo, ignored;
    if (read_text_file("/proc/meminfo", meminfo, ignored)) default_page = meminfo_hugepage_kib(meminfo);
  }
  const std::string line = notification_line(inv, event_attrs(inv, desc, default_page));

  std::string reply;
  if (!exchange(config.socket, line, config.max_reply, deadline, reply, err)) {
    if (err == "timeout")
      err = "no answer within " + std::to_string(config.timeout_ms) + " ms (timeout in " + config_path +
            "); the actions may still be running";
    return unreachable(err);
  }
  Verdict v = judge(reply);
  switch (v.outcome) {
    case Outcome::passed:
      return 0;
    case Outcome::action_failed:
      say(v.message);
      return veto ? 1 : 0;
    case Outcome::agent_error:
      break;
  }
  return unreachable(v.message);
}
