// The service manager's notification protocol (sd_notify), against a
// datagram socket the test owns and names in NOTIFY_SOCKET, as systemd does
// for Type=notify: READY after start, RELOADING/READY around a SIGHUP reload
// and a `hostlet-ctl reload`, STOPPING at SIGTERM, WATCHDOG at half of
// WATCHDOG_USEC, and no WATCHDOG while a plugin blocks the loop.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using hostlet::test::Agent;
using hostlet::test::TempDir;
using hostlet::test::wait_until;

namespace {

// Receives every datagram sent to `path` on a thread of its own.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof a.sun_path);
    memcpy(a.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    reader_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::lock_guard<std::mutex> lk(mu_);
        got_.push_back({Clock::now(), std::string(buf, static_cast<size_t>(n))});
      }
    });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    close(fd_);
  }
  struct Message {
    Clock::time_point at;
    std::string text;
  };
  std::vector<Message> messages() {
    std::lock_guard<std::mutex> lk(mu_);
    return got_;
  }
  // Messages containing `needle`.
  size_t count(const std::string& needle) {
    size_t n = 0;
    for (auto& m : messages()) n += m.text.find(needle) != std::string::npos;
    return n;
  }
  // Index of the first message at or after `from` containing `needle`, or -1.
  long find(const std::string& needle, size_t from = 0) {
    auto all = messages();
    for (size_t i = from; i < all.size(); i++)
      if (all[i].text.find(needle) != std::string::npos) return static_cast<long>(i);
    return -1;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Message> got_;
  std::thread reader_;
};

std::string config() {
  return "agent: {control_socket: \"@DIR@/control.sock\"}\n"
         "plugins:\n"
         "  - {name: w, plugin: " + hostlet::test::env_path("HOSTLET_TEST_PLUGINS") + "/worker_v1.so}\n";
}

}  // namespace

TEST_CASE("notify: READY after start, RELOADING/READY around reloads, STOPPING at SIGTERM") {
  TempDir dir;
  NotifySocket ns(dir / "notify.sock");
  Agent a(dir, config(), {}, {{"NOTIFY_SOCKET", ns.path()}});
  REQUIRE(a.start());
  REQUIRE(wait_until([&] { return ns.count("READY=1") == 1; }));
  auto first = ns.messages()[0].text;
  CHECK(first.find("STATUS=1 instance running, 0 failed") != std::string::npos);

  a.process().signal(SIGHUP);
  REQUIRE(wait_until([&] { return ns.count("READY=1") == 2; }));
  long rel = ns.find("RELOADING=1");
  REQUIRE(rel > 0);
  CHECK(ns.messages()[static_cast<size_t>(rel)].text.find("MONOTONIC_USEC=") != std::string::npos);
  CHECK(ns.find("READY=1", static_cast<size_t>(rel)) > rel);

  auto r = a.ctl({"reload", "w"});
  CHECK(r.exit_code == 0);
  REQUIRE(wait_until([&] { return ns.count("READY=1") == 3; }));
  CHECK(ns.count("RELOADING=1") == 2);

  auto st = a.stop(SIGTERM);
  REQUIRE(st);
  CHECK(WEXITSTATUS(*st) == 0);
  CHECK(ns.count("STOPPING=1") == 1);
  CHECK(ns.count("WATCHDOG=1") == 0);  // none asked for
}

TEST_CASE("notify: WATCHDOG at half of WATCHDOG_USEC, none while a plugin blocks the loop") {
  TempDir dir;
  NotifySocket ns(dir / "notify.sock");
  Agent a(dir, config(), {}, {{"NOTIFY_SOCKET", ns.path()}, {"WATCHDOG_USEC", "200000"}});  // every 100 ms
  REQUIRE(a.start());
  REQUIRE(wait_until([&] { return ns.count("WATCHDOG=1") >= 5; }, 10s));
  auto t0 = Clock::now();
  auto r = a.ctl({"call", "w.spin", "ms=1500"});  // the loop is blocked for 1.5 s
  auto t1 = Clock::now();
  REQUIRE(r.exit_code == 0);
  REQUIRE(t1 - t0 >= 1500ms);
  size_t during = 0;
  for (auto& m : ns.messages())
    if (m.text == "WATCHDOG=1" && m.at > t0 + 200ms && m.at < t1) during++;
  CHECK(during == 0);
  size_t before = ns.count("WATCHDOG=1");
  CHECK(wait_until([&] { return ns.count("WATCHDOG=1") >= before + 3; }, 10s));  // back once the loop runs
  CHECK(a.log().find("no watchdog keep-alive this time") != std::string::npos);
  auto st = a.stop(SIGTERM);
  REQUIRE(st);
  CHECK(WEXITSTATUS(*st) == 0);
}
