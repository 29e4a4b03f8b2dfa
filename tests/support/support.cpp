#include "support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <catch2/catch.hpp>

namespace fs = std::filesystem;
using namespace std::chrono;

namespace hostlet::test {

std::string env_path(const char* name) {
  const char* v = getenv(name);
  if (!v || !*v) FAIL("environment variable " << name << " is not set (run the tests with meson test)");
  return v;
}

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/hostlet-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) throw std::runtime_error(std::string("mkdtemp: ") + strerror(errno));
  path_ = buf.data();
  chmod(path_.c_str(), 0755);  // tests running clients as another uid must reach sockets here
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  std::string p = path_ + "/" + name;
  fs::create_directories(fs::path(p).parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << content;
  f.close();
  if (!f) throw std::runtime_error("cannot write " + p);
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Process::Process(std::vector<std::string> argv, const std::map<std::string, std::string>& env, int uid,
                 int gid) {
  char tmpl[] = "/tmp/hostlet-proc-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  out_path_ = dir_ + "/stdout";
  err_path_ = dir_ + "/stderr";
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // A test that dies (abort, a crash, a timeout's SIGKILL) runs no
    // destructor: the kernel then kills its children instead of leaving
    // agents running. (Tied to the forking thread: tests fork from theirs.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);  // the test died before prctl
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    if (gid >= 0 && setgid(static_cast<gid_t>(gid)) != 0) _exit(126);
    if (uid >= 0 && setuid(static_cast<uid_t>(uid)) != 0) _exit(126);
    ::signal(SIGPIPE, SIG_DFL);
    execvp(args[0], args.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(seconds(10));
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

bool Process::running() {
  if (status_ || pid_ <= 0) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return r == 0;
}

void Process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

std::optional<int> Process::wait(milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  while (running()) {
    if (steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return status_;
}

std::optional<int> Process::stop(int sig, milliseconds timeout) {
  if (!running()) return status_;
  ::kill(pid_, sig);
  auto st = wait(timeout);
  if (!st) {
    ::kill(pid_, SIGKILL);
    wait(seconds(10));
    return std::nullopt;
  }
  return st;
}

std::string Process::out() const { return read_file(out_path_); }
std::string Process::err() const { return read_file(err_path_); }

Run run(std::vector<std::string> argv, milliseconds timeout, const std::map<std::string, std::string>& env) {
  Process p(std::move(argv), env);
  Run r;
  auto st = p.wait(timeout);
  if (!st) p.stop(SIGKILL, seconds(5));
  else if (WIFEXITED(*st)) r.exit_code = WEXITSTATUS(*st);
  r.out = p.out();
  r.err = p.err();
  return r;
}

bool wait_until(const std::function<bool()>& pred, milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

LineClient::LineClient(const std::string& socket_path) {
  if (!connect(socket_path)) throw std::runtime_error("cannot connect to " + socket_path + ": " + strerror(errno));
}

LineClient::~LineClient() { close(); }

LineClient::LineClient(LineClient&& o) noexcept : fd_(std::exchange(o.fd_, -1)), buf_(std::move(o.buf_)) {}

LineClient& LineClient::operator=(LineClient&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    buf_ = std::move(o.buf_);
  }
  return *this;
}

bool LineClient::connect(const std::string& socket_path) {
  close();
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    close();
    errno = ENAMETOOLONG;
    return false;
  }
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    close();
    errno = e;
    return false;
  }
  return true;
}

bool LineClient::send(const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

std::optional<std::string> LineClient::recv_line(milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    if (fd_ < 0) return std::nullopt;
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

bool LineClient::wait_closed(milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  for (;;) {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    if (left <= 0 || fd_ < 0) return fd_ < 0;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char tmp[4096];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return true;
    if (n > 0) buf_.append(tmp, static_cast<size_t>(n));
  }
}

void LineClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buf_.clear();
}

namespace {
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}
}  // namespace

Agent::Agent(TempDir& dir, const std::string& config_yaml, std::vector<std::string> extra_args,
             std::map<std::string, std::string> env)
    : dir_(dir), extra_(std::move(extra_args)), env_(std::move(env)) {
  std::string text = replace_all(config_yaml, "@DIR@", dir.path());
  config_path_ = dir.write("hostlet.yaml", text);
  control_ = dir.path() + "/control.sock";
  // Prefer what the config says, when it names the control socket on one line.
  auto pos = text.find("control_socket:");
  if (pos != std::string::npos) {
    auto start = text.find_first_not_of(" \t\"'", pos + 15);
    auto end = text.find_first_of("\"',}\n", start);
    if (start != std::string::npos) control_ = text.substr(start, end - start);
  }
}

Agent::~Agent() {
  if (proc_) proc_->stop(SIGTERM, seconds(20));
}

bool Agent::start(milliseconds timeout) {
  std::vector<std::string> argv{env_path("HOSTLET_BIN"), "-c", config_path_};
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  proc_ = std::make_unique<Process>(argv, env_);
  return wait_until(
      [&] {
        if (!proc_->running()) return true;
        LineClient c;
        return c.connect(control_);
      },
      timeout) && proc_->running();
}

std::optional<int> Agent::stop(int sig) {
  if (!proc_) return std::nullopt;
  return proc_->stop(sig, seconds(20));
}

Run Agent::ctl(std::vector<std::string> args, milliseconds timeout) {
  std::vector<std::string> argv{env_path("HOSTLET_CTL"), "-s", control_};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, timeout);
}

std::string Agent::log() const { return proc_ ? proc_->err() : std::string(); }

Probe::Probe(const std::string& socket_path, std::function<std::string(int)> request,
             std::function<bool(int, const std::string&)> answered, std::chrono::milliseconds every)
    : c_(socket_path) {
  t_ = std::thread([this, request = std::move(request), answered = std::move(answered), every] {
    for (int i = 1; !stop_; i++) {
      auto t0 = std::chrono::steady_clock::now();
      if (!c_.send_line(request(i))) {
        failures_++;
        return;
      }
      auto line = c_.recv_line(std::chrono::seconds(5));
      long us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
      if (us > max_us_) max_us_ = us;
      if (line && answered(i, *line)) answered_++;
      else failures_++;
      std::this_thread::sleep_for(every);
    }
  });
}

Probe::~Probe() { stop(); }

void Probe::stop() {
  stop_ = true;
  if (t_.joinable()) t_.join();
}

}  // namespace hostlet::test
