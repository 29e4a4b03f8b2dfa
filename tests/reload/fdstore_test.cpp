// The fd store (keep_fd / take_fd, ABI 1.1) end to end: fds and their state
// carried across reloads, left fds that nobody takes closed and counted, the
// unixsock listener handed over, and systemd socket activation through
// Debian's systemd-socket-activate.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

using namespace reload_test;
using namespace std::chrono_literals;
using hostlet::test::env_path;
using hostlet::test::Process;
using hostlet::test::wait_until;

namespace {

json check(Agent& a) {
  json r = ctl_json(a, {"call", "f.check"});
  REQUIRE(r.value("ok", false));
  return r["attrs"];
}

// The value of one sample line of `hostlet-ctl metrics` ("name value").
double metric(Agent& a, const std::string& name) {
  Run r = a.ctl({"metrics"});
  REQUIRE(r.exit_code == 0);
  size_t at = r.out.find("\n" + name + " ");
  REQUIRE(at != std::string::npos);
  return std::stod(r.out.substr(at + name.size() + 2));
}

ino_t inode(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

}  // namespace

TEST_CASE("fd store: a reload carries fds and state to the new version; what no successor takes is closed and counted") {
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
               "plugins:\n  - {name: f, plugin: " + fixture("fdkeep_v1") + "}\n");
  REQUIRE(start(a));
  CHECK(check(a)["has_fd"] == "false");  // first start: nothing to take

  REQUIRE(reload(a, "f").ok());
  json c = check(a);
  CHECK(c["has_fd"] == "true");
  CHECK(c["gen"] == "1");   // the state came along
  CHECK(c["byte"] == "x");  // the same pipe: the byte written before the first keep
  const size_t fds_after_first = open_fds(a.process().pid());
  for (int i = 0; i < 5; i++) REQUIRE(reload(a, "f").ok());
  c = check(a);
  CHECK(c["gen"] == "6");
  CHECK(c["byte"] == "x");
  CHECK(open_fds(a.process().pid()) == fds_after_first);  // no leak
  CHECK(metric(a, "hostlet_fdstore_kept_total") == 12);    // r and w, six times
  CHECK(metric(a, "hostlet_fdstore_closed_total") == 0);
  CHECK(metric(a, "hostlet_fdstore_fds") == 0);

  // A newer version that never takes them: closed at the end of that reload, counted, logged.
  write_config(a, dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
                       "plugins:\n  - {name: f, plugin: " + fixture("fdkeep_v2") + "}\n");
  REQUIRE(reload(a, "f").ok());
  CHECK(check(a)["has_fd"] == "false");
  CHECK(metric(a, "hostlet_fdstore_closed_total") == 2);
  CHECK(metric(a, "hostlet_fdstore_fds") == 0);
  CHECK(open_fds(a.process().pid()) == fds_after_first - 2);
  CHECK_THAT(a.log(), Catch::Contains("fd store: closed 2 fd(s) the previous version left and no successor took"));
  CHECK(stops_cleanly(a));
}

TEST_CASE("fd store: unixsock's listening socket is handed to the new version, not bound again") {
  TempDir dir;
  Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
               "plugins:\n  - {name: notify, plugin: unixsock, config: {socket: \"@DIR@/notify.sock\"}}\n");
  REQUIRE(start(a));
  const std::string sock = dir / "notify.sock";
  const ino_t before = inode(sock);
  const size_t fds_before = open_fds(a.process().pid());
  for (int i = 0; i < 10; i++) {
    REQUIRE(reload(a, "notify").ok());
    CHECK(inode(sock) == before);  // the same socket file: never unlinked and bound anew
    LineClient c(sock);
    REQUIRE(c.send_line(R"({"type":"t.x","id":)" + std::to_string(i) + "}"));
    auto reply = c.recv_line();
    REQUIRE(reply);
    CHECK(json::parse(*reply)["ok"] == true);
  }
  // (once the agent has seen the last client go)
  CHECK(wait_until([&] { return open_fds(a.process().pid()) == fds_before; }));
  CHECK(metric(a, "hostlet_fdstore_kept_total") == 10);
  // At a stop for good the file goes, as before.
  CHECK(stops_cleanly(a));
  struct stat st {};
  CHECK(::stat(sock.c_str(), &st) != 0);
}

TEST_CASE("fd store: sockets from systemd-socket-activate serve the control socket and unixsock, across a reload") {
  TempDir dir;
  const std::string ctl_sock = dir / "control.sock", notify_sock = dir / "notify.sock";
  const std::string cfg = dir.write("hostlet.yaml",
                                    "agent: {control_socket: \"" + ctl_sock + "\", log_level: debug}\n"
                                    "plugins:\n  - {name: notify, plugin: unixsock, config: {socket: \"" +
                                        notify_sock + "\"}}\n");
  // The agent starts at the first connection, with both sockets already bound.
  Process p({"/usr/bin/systemd-socket-activate", "-l", ctl_sock, "--fdname=control", "-l", notify_sock,
             "--fdname=notify", "--", env_path("HOSTLET_BIN"), "-c", cfg},
            {{"HOSTLET_PLUGIN_DIR", env_path("HOSTLET_BUILD_ROOT") + "/plugins/unixsock"}});
  REQUIRE(wait_until([&] { return access(ctl_sock.c_str(), F_OK) == 0 && access(notify_sock.c_str(), F_OK) == 0; }));
  const ino_t ctl_inode = inode(ctl_sock), notify_inode = inode(notify_sock);

  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {env_path("HOSTLET_CTL"), "-s", ctl_sock, "--json"});
    return hostlet::test::run(args, 30s);
  };
  Run status = ctl({"status"});
  INFO(status.err << p.err());
  REQUIRE(status.exit_code == 0);
  REQUIRE(wait_until([&] { return p.err().find("ready:") != std::string::npos; }));
  CHECK_THAT(p.err(), Catch::Contains("socket activation: 2 socket(s) from the service manager"));
  CHECK_THAT(p.err(), !Catch::Contains("no instance took"));

  auto notify_ok = [&](int id) {
    LineClient c(notify_sock);
    REQUIRE(c.send_line(R"({"type":"t.x","id":)" + std::to_string(id) + "}"));
    auto reply = c.recv_line();
    REQUIRE(reply);
    CHECK(json::parse(*reply)["ok"] == true);
  };
  notify_ok(1);
  Run r = ctl({"reload", "notify"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  notify_ok(2);
  CHECK(inode(ctl_sock) == ctl_inode);
  CHECK(inode(notify_sock) == notify_inode);

  auto st = p.stop(SIGTERM);
  REQUIRE(st);
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 0);
  // The files are the service manager's: the agent leaves them.
  CHECK(access(ctl_sock.c_str(), F_OK) == 0);
  CHECK(access(notify_sock.c_str(), F_OK) == 0);
}

TEST_CASE("fd store: unixsock hands its connections to the new version: none closed, every line answered once, in order") {
  // 1000 clients and the senders: more fds than the default soft limit of 1024.
  rlimit rl{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
  if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
    rl.rlim_cur = 4096;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);  // the agent inherits it
  }
  TempDir dir;
  const std::string config_text =
      "agent: {control_socket: \"@DIR@/control.sock\", log_level: info}\n"
      "plugins:\n"
      "  - {name: w, plugin: " + fixture("worker_v1") + "}\n"
      "  - {name: notify, plugin: unixsock, config: {socket: \"@SOCK@\", max_connections: 2000}}\n"
      "rules:\n"
      "  - {on: {source: notify, type: t.slow}, do: w.work, with: {ms: \"300\"}}\n";
  auto config = [&](const std::string& sock) {
    std::string c = config_text;
    c.replace(c.find("@SOCK@"), 6, sock);
    return c;
  };
  Agent a(dir, config("@DIR@/notify.sock"));
  REQUIRE(start(a));
  const std::string sock = dir / "notify.sock";
  const size_t fds_before = open_fds(a.process().pid());

  std::vector<LineClient> idle;
  for (int i = 0; i < 1000; i++) idle.emplace_back(sock);
  REQUIRE(wait_until([&] { return open_fds(a.process().pid()) == fds_before + 1000; }));

  // 8 senders of ack: done lines, each answered before the next: ids in order.
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, answered{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < 8; t++)
    senders.emplace_back([&, t] {
      LineClient c(sock);
      for (int i = 0; !stop; i++) {
        const std::string id = std::to_string(t * 1000000 + i);
        if (!c.send_line(R"({"type":"t.x","ack":"done","id":)" + id + "}")) return void(failures++);
        auto reply = c.recv_line(20s);
        if (!reply || json::parse(*reply, nullptr, false).value("id", -1) != std::stoi(id)) return void(failures++);
        answered++;
      }
    });

  // A partial line before a reload, the rest after; an ack: done whose action outlives the swap.
  LineClient split(sock), slow(sock);
  REQUIRE(split.send(R"({"type":"t.split",)"));
  REQUIRE(slow.send_line(R"({"type":"t.slow","id":7,"ack":"done"})"));
  REQUIRE(wait_until([&] { return answered > 100; }));
  REQUIRE(reload(a, "notify").ok());
  REQUIRE(split.send_line(R"("id":99})"));
  auto s = split.recv_line();
  REQUIRE(s);
  CHECK(json::parse(*s)["id"] == 99);
  CHECK(json::parse(*s)["ok"] == true);
  auto d = slow.recv_line(20s);
  REQUIRE(d);
  CHECK(json::parse(*d)["id"] == 7);
  CHECK(json::parse(*d)["results"][0]["ok"] == true);
  // 1000 idle, 8 senders, split and slow: all at the first reload.
  CHECK_THAT(a.log(), Catch::Contains("adopted 1010 connection(s) from the previous version"));

  for (int i = 0; i < 99; i++) {
    int before = answered;
    REQUIRE(reload(a, "notify").ok());
    CHECK(wait_until([&] { return answered > before + 8; }));  // the senders go on across each swap
  }
  // Once with a new version that fails to start (its socket path is taken
  // by a plain file): the old version, started again, adopts them all.
  const std::string taken = dir.write("taken", "not a socket\n");
  write_config(a, dir, config(taken));
  Reload failed = reload(a, "notify");
  CHECK_FALSE(failed.ok());
  CHECK_THAT(failed.error(), Catch::Contains("the old version was started again"));
  write_config(a, dir, config("@DIR@/notify.sock"));
  int before = answered;
  CHECK(wait_until([&] { return answered > before + 8; }));
  stop = true;
  for (auto& t : senders) t.join();
  CHECK(failures == 0);

  // Every idle client is still connected and served.
  for (size_t i = 0; i < idle.size(); i++) {
    REQUIRE(idle[i].send_line(R"({"type":"t.idle","id":)" + std::to_string(i) + "}"));
    auto r = idle[i].recv_line();
    REQUIRE(r);
    CHECK(json::parse(*r)["id"] == static_cast<int>(i));
  }
  CHECK(metric(a, "hostlet_fdstore_closed_total") == 0);
  idle.clear();
  split.close();
  slow.close();
  CHECK(wait_until([&] { return open_fds(a.process().pid()) == fds_before; }));
  CHECK(stops_cleanly(a));
}
