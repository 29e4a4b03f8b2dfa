// plugins/unixsock (the real unixsock.so) driven by a fake host (fake_host.hpp)
// over its real socket: acks, every bad input, limits, backpressure, timeouts,
// stale/live sockets and a clean stop.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "fake_host.hpp"

using namespace unixsock_test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

using Config = std::map<std::string, std::string>;
using Lists = std::map<std::string, std::vector<std::string>>;

Config with_socket(const Dir& dir, Config c) {
  c.emplace("socket", dir / "notify.sock");
  return c;
}

// One running instance on a fresh socket; stopped (and the loop checked) at the end.
struct Instance {
  Dir dir;
  std::string sock;
  FakeHost host;
  explicit Instance(Config config = {}, Lists lists = {})
      : sock(dir / "notify.sock"), host(with_socket(dir, std::move(config)), std::move(lists)) {
    REQUIRE(host.start() == 0);
  }
  ~Instance() { CHECK(host.shutdown()); }
};

json reply(Client& c, std::chrono::milliseconds timeout = 10s) {
  auto line = c.recv_line(timeout);
  REQUIRE(line);
  INFO(*line);
  REQUIRE(json::accept(*line));
  return json::parse(*line);
}

void expect_ok(Client& c, const json& id) {
  json r = reply(c);
  CHECK(r["ok"] == true);
  CHECK(r["id"] == id);
}

void expect_error(Client& c, const std::string& contains, const json& id = nullptr) {
  json r = reply(c);
  INFO(r.dump());
  CHECK(r["ok"] == false);
  CHECK(r["id"] == id);
  CHECK_THAT(r["error"].get<std::string>(), Catch::Contains(contains));
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

std::string note(const std::string& type, int id, const std::string& ack = "accepted") {
  return R"({"type":")" + type + R"(","attrs":{"n":")" + std::to_string(id) + R"("},"id":)" + std::to_string(id) +
         R"(,"ack":")" + ack + "\"}";
}

}  // namespace

TEST_CASE("unixsock: ack accepted answers with the event id", "[unixsock]") {
  Instance in;
  Client c(in.sock);
  c.send_line(R"({"type":"vm.start","attrs":{"name":"vm1","host":"h1"},"id":"r1"})");
  json r = reply(c);
  CHECK(r["ok"] == true);
  CHECK(r["id"] == "r1");
  auto ev = in.host.events();
  REQUIRE(ev.size() == 1);
  CHECK(r["event"] == ev[0].id);
  CHECK(ev[0].type == "vm.start");
  CHECK(ev[0].attrs == Attrs{{"name", "vm1"}, {"host", "h1"}});
  // No id: the reply says null.
  c.send_line(R"({"type":"vm.stop"})");
  json r2 = reply(c);
  CHECK(r2["id"].is_null());
  CHECK(r2["ok"] == true);
}

TEST_CASE("unixsock: ack none publishes without a reply", "[unixsock]") {
  Instance in;
  Client c(in.sock);
  c.send_line(note("a", 1, "none"));
  c.send_line(note("b", 2, "none"));
  c.send_line(note("c", 3));
  expect_ok(c, 3);  // the first reply is the third line's
  CHECK(in.host.published() == 3);
  CHECK(c.silent());
  // Errors are answered even with ack none.
  c.send_line(R"({"type":"bad type","ack":"none","id":4})");
  expect_error(c, "invalid \"type\"", 4);
}

TEST_CASE("unixsock: ack done replies once the actions finished, with their results", "[unixsock]") {
  Instance in;
  in.host.set_hold(true);
  in.host.set_outcomes([](const Published& ev) {
    std::vector<Outcome> o(2);
    o[0].action = "virt.domain.start";
    o[0].rule = "/etc/hostlet.yaml:12";
    o[0].attrs = {{"name", ev.attrs.at(0).second}};
    o[0].data_json = R"({"state":"running"})";
    o[1].action = "sys.write";
    o[1].rule = "/etc/hostlet.yaml:20";
    o[1].ok = ev.type != "fail";
    o[1].error = "permission denied";
    return o;
  });
  Client c(in.sock);
  c.send_line(note("vm.start", 1, "done"));
  REQUIRE(in.host.wait_published(1));
  CHECK(c.silent(300ms));  // nothing until the actions answered
  in.host.complete_held();
  json r = reply(c);
  CHECK(r["id"] == 1);
  CHECK(r["ok"] == true);
  CHECK(r["event"] == in.host.events().at(0).id);
  CHECK(r["results"] == json::parse(R"([
      {"action":"virt.domain.start","rule":"/etc/hostlet.yaml:12","ok":true,"attrs":{"name":"1"},
       "data":{"state":"running"}},
      {"action":"sys.write","rule":"/etc/hostlet.yaml:20","ok":true,"attrs":{}}])"));

  c.send_line(note("fail", 2, "done"));
  REQUIRE(in.host.wait_published(2));
  in.host.complete_held();
  json f = reply(c);
  CHECK(f["ok"] == false);
  CHECK(f["results"][1]["ok"] == false);
  CHECK(f["results"][1]["error"] == "permission denied");
}

TEST_CASE("unixsock: ack done with no rule matching has empty results", "[unixsock]") {
  Instance in;
  Client c(in.sock);
  c.send_line(note("x", 5, "done"));
  json r = reply(c);
  CHECK(r["ok"] == true);
  CHECK(r["id"] == 5);
  CHECK(r["results"] == json::array());
}

TEST_CASE("unixsock: every bad line is answered and the connection stays usable, others served", "[unixsock]") {
  Instance in;
  Client bad(in.sock), good(in.sock);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "invalid JSON"},
      {"[1,2,3]", "not a JSON object"},
      {"\"just a string\"", "not a JSON object"},
      {"42", "not a JSON object"},
      {R"({"attrs":{"a":"b"}})", "missing \"type\""},
      {R"({"type":7})", "\"type\" must be a string"},
      {R"({"type":""})", "empty \"type\""},
      {R"({"type":"a b"})", "invalid \"type\""},
      {"{\"type\":\"" + std::string(300, 't') + "\"}", "invalid \"type\""},
      {R"({"type":"x","attrs":["a"]})", "\"attrs\" must be an object"},
      {R"({"type":"x","attrs":{"n":5}})", "attribute 'n' must be a string, not a number"},
      {R"({"type":"x","attrs":{"b":true}})", "attribute 'b' must be a string, not a boolean"},
      {"{\"type\":\"x\",\"attrs\":{\"u\":\"\xff\xfe\"}}", "UTF-8"},
      {"\xc3\x28", "invalid JSON"},
      {R"({"type":"x","ack":"maybe"})", "unknown \"ack\" value"},
      {R"({"type":"x","id":[1]})", "\"id\" must be a string or an integer"},
      {R"({"type":"x","id":1e999})", "number out of range"},
      {R"({"type":"x","id":1.5})", "\"id\" must be a string or an integer, not a number with a fraction"},
      {R"({"type":"x","id":18446744073709551616})", "\"id\" is out of range"},
      {"{\"type\":\"x\",\"id\":\"" + std::string(300, 'i') + "\"}", "\"id\" is too long (300 bytes > 256)"},
  };
  int n = 0;
  for (const auto& [line, expected] : cases) {
    INFO(line);
    REQUIRE(bad.send_line(line));
    REQUIRE(good.send_line(note("ok", ++n)));
    expect_ok(good, n);
    expect_error(bad, expected);
  }
  // An error after the id was read still echoes it.
  bad.send_line(R"({"id":"q","type":false})");
  expect_error(bad, "\"type\" must be a string", "q");
  // Still open and serving.
  bad.send_line(note("after", 100));
  expect_ok(bad, 100);
  bad.send_line(R"({"id":-0,"type":"ok"})");  // -0 is the integer 0
  expect_ok(bad, 0);
  CHECK(in.host.published() == cases.size() + 2);  // the good client's lines, and the last two
  CHECK(in.host.stat("rejected") == std::to_string(cases.size() + 1));
}

TEST_CASE("unixsock: a line over max_line gets an error, then the connection is closed", "[unixsock]") {
  Instance in(Config{{"max_line", "1KiB"}});
  Client other(in.sock);

  SECTION("in one piece") {
    Client c(in.sock);
    c.send_line(note("first", 1));
    c.send_line(std::string(2000, 'x'));
    c.send_line(note("never", 2));
    expect_ok(c, 1);
    expect_error(c, "max_line (1024 bytes)");
    CHECK(c.wait_closed());
  }
  SECTION("dribbled without a newline") {
    Client c(in.sock);
    for (int i = 0; i < 5; i++) {
      c.send(std::string(300, 'y'));
      std::this_thread::sleep_for(20ms);
    }
    expect_error(c, "max_line");
    CHECK(c.wait_closed());
  }
  SECTION("a line of exactly max_line is fine") {
    Client c(in.sock);
    std::string line = R"({"type":"x","id":1,"attrs":{"pad":")";
    line += std::string(1024 - line.size() - 3, 'p') + "\"}}";
    REQUIRE(line.size() == 1024);
    c.send_line(line);
    expect_ok(c, 1);
  }
  other.send_line(note("still", 9));
  expect_ok(other, 9);
}

TEST_CASE("unixsock: CRLF, blank lines, and a last line without newline at end of input", "[unixsock]") {
  Instance in;
  Client c(in.sock);
  c.send("\n\r\n  \n" + note("crlf", 1) + "\r\n");
  expect_ok(c, 1);
  c.send(note("last", 2));  // no newline, then the client stops sending
  c.shutdown_write();
  expect_ok(c, 2);
  CHECK(c.wait_closed());
  CHECK(in.host.published() == 2);
}

TEST_CASE("unixsock: a half-closed client still gets every pending reply", "[unixsock]") {
  Instance in;
  in.host.set_hold(true);
  Client c(in.sock);
  c.send_line(note("a", 1, "done"));
  c.send_line(note("b", 2));
  c.shutdown_write();
  expect_ok(c, 2);
  REQUIRE(in.host.wait_published(2));
  in.host.complete_held();
  expect_ok(c, 1);
  CHECK(c.wait_closed());
}

TEST_CASE("unixsock: 20000 pipelined lines are answered in order", "[unixsock]") {
  Instance in;
  Client c(in.sock);
  std::string batch;
  const int n = 20000;
  std::thread writer([&] {
    for (int i = 0; i < n; i++) batch += note("burst", i) + "\n";
    c.send(batch);
  });
  for (int i = 0; i < n; i++) {
    auto line = c.recv_line();
    REQUIRE(line);
    json r = json::parse(*line);
    REQUIRE(r["id"] == i);
    REQUIRE(r["ok"] == true);
  }
  writer.join();
  CHECK(in.host.published() == static_cast<size_t>(n));
}

namespace {

// What the plugin published in each loop iteration, seen by a check handle of
// the test's own on the plugin's loop (declared after the Instance, so that it
// goes first).
class PerTurn {
 public:
  explicit PerTurn(FakeHost& host) : host_(host) {
    host_.on_loop([this] {
      uv_check_init(&host_.loop_, &check_);
      check_.data = this;
      uv_check_start(&check_, [](uv_check_t* h) { static_cast<PerTurn*>(h->data)->count(); });
    });
  }
  PerTurn(const PerTurn&) = delete;
  PerTurn& operator=(const PerTurn&) = delete;
  ~PerTurn() { finish(); }
  // Stops counting; then the maxima are final. The handle's close completes
  // in the iteration that closes it, before the next on_loop command runs.
  void finish() {
    if (std::exchange(finished_, true)) return;
    host_.on_loop([this] { uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr); });
    host_.on_loop([] {});
  }
  size_t max_events = 0, max_bytes = 0, turns = 0;  // bytes: of attribute values

 private:
  void count() {
    std::lock_guard<std::mutex> l(host_.mu_);
    size_t n = host_.events_.size(), bytes = 0;
    for (size_t i = seen_; i < n; i++)
      for (const auto& kv : host_.events_[i].attrs) bytes += kv.second.size();
    max_events = std::max(max_events, n - seen_);
    max_bytes = std::max(max_bytes, bytes);
    turns += n > seen_;
    seen_ = n;
  }
  FakeHost& host_;
  uv_check_t check_{};
  size_t seen_ = 0;
  bool finished_ = false;
};

}  // namespace

TEST_CASE("unixsock: a burst is handled at most 256 lines per loop iteration, in order, none lost", "[unixsock]") {
  Instance in;
  PerTurn per_turn(in.host);
  Client c(in.sock);
  const int n = 3000;
  std::string burst;
  for (int i = 1; i <= n; i++) burst += note("b", i, i == n ? "accepted" : "none") + "\n";
  std::thread writer([&] { c.send(burst); });
  expect_ok(c, n);
  writer.join();
  per_turn.finish();
  auto ev = in.host.events();
  REQUIRE(ev.size() == static_cast<size_t>(n));
  for (int i = 0; i < n; i++) REQUIRE(ev[static_cast<size_t>(i)].attrs == Attrs{{"n", std::to_string(i + 1)}});
  CHECK(per_turn.max_events <= 256);
  CHECK(per_turn.turns >= static_cast<size_t>(n) / 256);
}

TEST_CASE("unixsock: long lines from many clients are handled about 1 MiB per loop iteration, none lost",
          "[unixsock]") {
  // One client's socket buffer holds ~200 KiB, so one iteration reads little
  // more from it; 16 clients that filled theirs while the loop was busy offer
  // ~3 MiB at once, well under the line budget (256) in 60 KiB lines. The byte
  // budget cuts that into iterations of at most 1 MiB and one line more.
  Instance in;
  PerTurn per_turn(in.host);
  const int clients = 16, per_client = 12;
  const size_t value = 60 * 1024;
  std::vector<std::unique_ptr<Client>> cs;
  for (int k = 0; k < clients; k++) {
    cs.push_back(std::make_unique<Client>(in.sock));
    cs.back()->send_line(note("hello", k));
    expect_ok(*cs.back(), k);
  }
  std::atomic<bool> busy{false};
  std::thread blocker([&] {
    in.host.on_loop([&] {
      busy = true;
      std::this_thread::sleep_for(500ms);  // the loop is busy: the clients fill their buffers
    });
  });
  while (!busy) std::this_thread::sleep_for(1ms);
  std::vector<std::thread> writers;
  for (int k = 0; k < clients; k++) {
    writers.emplace_back([&, k] {
      std::string burst;
      for (int i = 1; i <= per_client; i++)
        burst += R"({"type":"long","attrs":{"k":")" + std::to_string(k) + R"(","v":")" +
                 std::string(value, static_cast<char>('a' + i % 26)) + R"("},"id":)" + std::to_string(i) +
                 (i == per_client ? "" : R"(,"ack":"none")") + "}\n";
      cs[static_cast<size_t>(k)]->send(burst);
    });
  }
  blocker.join();
  for (auto& w : writers) w.join();
  for (auto& c : cs) expect_ok(*c, per_client);
  per_turn.finish();
  auto ev = in.host.events();
  REQUIRE(ev.size() == static_cast<size_t>(clients * (per_client + 1)));
  std::map<std::string, int> next;  // per client, in order
  for (const auto& e : ev) {
    if (e.type != "long") continue;
    int i = ++next[e.attrs.at(0).second];
    REQUIRE(e.attrs.at(1).second.size() == value);
    REQUIRE(e.attrs.at(1).second[0] == 'a' + i % 26);
  }
  CHECK(next.size() == static_cast<size_t>(clients));
  CHECK(per_turn.max_bytes > value);  // several lines did meet in one iteration
  CHECK(per_turn.max_bytes <= (1u << 20) + 2 * value);
}

TEST_CASE("unixsock: with queue_wait 0 a full event queue is refused at once, then accepted again", "[unixsock]") {
  Instance in(Config{{"queue_wait", "0"}});
  in.host.set_hold(true);
  in.host.set_queue_limit(2);
  Client c(in.sock);
  c.send_line(note("a", 1, "done"));
  c.send_line(note("b", 2, "done"));
  c.send_line(note("c", 3));
  c.send_line(note("d", 4, "none"));
  expect_error(c, "event queue full", 3);
  expect_error(c, "event queue full", 4);
  in.host.complete_held();
  expect_ok(c, 1);
  expect_ok(c, 2);
  c.send_line(note("c", 5));
  expect_ok(c, 5);
  CHECK(in.host.stat("queue_full") == "2");
}

TEST_CASE("unixsock: a full event queue holds the line (not read meanwhile) until there is room", "[unixsock]") {
  Instance in(Config{{"queue_wait", "10s"}});
  in.host.set_hold(true);
  in.host.set_queue_limit(2);
  Client c(in.sock), other(in.sock);
  c.send_line(note("a", 1, "done"));
  c.send_line(note("b", 2, "done"));
  c.send_line(note("c", 3));
  c.send_line(note("d", 4, "none"));
  c.send_line(note("e", 5));
  REQUIRE(in.host.wait_published(2));
  CHECK(c.silent(300ms));  // no error: line 3 waits for room
  CHECK(in.host.published() == 2);
  in.host.set_queue_limit(0);
  in.host.complete_held();
  std::set<int> ids;  // ack done replies come when the actions finish: any order
  for (int i = 0; i < 4; i++) {
    json r = reply(c);
    CHECK(r["ok"] == true);
    ids.insert(r["id"].get<int>());
  }
  CHECK(ids == std::set<int>{1, 2, 3, 5});
  CHECK(in.host.published() == 5);
  CHECK(in.host.stat("queue_waits") == "1");
  CHECK(in.host.stat("queue_full") == "0");
  other.send_line(note("x", 6));
  expect_ok(other, 6);
}

TEST_CASE("unixsock: a line that waited queue_wait for room is refused with \"event queue full\"", "[unixsock]") {
  Instance in(Config{{"queue_wait", "300ms"}, {"idle_timeout", "200ms"}});
  in.host.set_hold(true);
  in.host.set_queue_limit(1);
  Client c(in.sock);
  c.send_line(note("a", 1, "done"));
  c.send_line(note("b", 2));
  expect_error(c, "event queue full", 2);  // and not closed as idle while it waited
  in.host.complete_held();
  expect_ok(c, 1);
  c.send_line(note("c", 3));
  expect_ok(c, 3);
  CHECK(in.host.stat("queue_full") == "1");
  CHECK(in.host.logged("event queue full for 300 ms"));
}

TEST_CASE("unixsock: at max_pending the connection is not read until replies drain", "[unixsock]") {
  Instance in(Config{{"max_pending", "4"}});
  in.host.set_hold(true);
  Client c(in.sock), other(in.sock);
  std::string lines;
  for (int i = 0; i < 20; i++) lines += note("p", i, "done") + "\n";
  c.send(lines);
  REQUIRE(in.host.wait_published(4));
  std::this_thread::sleep_for(200ms);
  CHECK(in.host.published() == 4);  // backpressure: the rest waits in the socket
  other.send_line(note("other", 99));
  expect_ok(other, 99);  // the loop still serves everyone else
  int got = 0;
  while (got < 20) {
    REQUIRE(eventually([&] { return in.host.held() > 0; }));
    CHECK(in.host.held() <= 5);  // 4, plus the other client's (tracked) event at first
    in.host.complete_held();
    while (c.recv_line(100ms)) got++;
  }
  CHECK(in.host.published() == 21);
}

TEST_CASE("unixsock: max_connections: one more client gets an error line and is closed", "[unixsock]") {
  Instance in(Config{{"max_connections", "2"}});
  Client a(in.sock), b(in.sock);
  a.send_line(note("a", 1));
  expect_ok(a, 1);
  b.send_line(note("b", 2));
  expect_ok(b, 2);
  Client c(in.sock);
  expect_error(c, "too many connections (max_connections 2)");
  CHECK(c.wait_closed());
  CHECK(in.host.logged("max_connections (2) reached"));
  a.close();
  REQUIRE(eventually([&] { return in.host.stat("open") == "1"; }));
  Client d(in.sock);
  d.send_line(note("d", 4));
  expect_ok(d, 4);
  b.send_line(note("b", 5));
  expect_ok(b, 5);
  CHECK(in.host.stat("refused_limit") == "1");
}

namespace {

// Connects as uid/gid 65534 in a child process, sends one line, and returns
// everything received until the server closes (or 5 s pass).
std::string exchange_as_nobody(const std::string& sock, const std::string& line) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, sock.c_str(), sock.size() + 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) _exit(3);
    // A refused client may find the connection closed already: no SIGPIPE.
    (void)send(fd, line.data(), line.size(), MSG_NOSIGNAL);
    // Half-close so that an admitted connection ends after its replies too.
    shutdown(fd, SHUT_WR);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
      if (write(p[1], buf, static_cast<size_t>(n)) < 0) _exit(5);
    _exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  return out;
}

}  // namespace

TEST_CASE("unixsock: allow_uids refuses other uids with an error line", "[unixsock]") {
  if (geteuid() != 0) { WARN("needs root to run a client as another uid"); return; }
  Instance in(Config{{"mode", "0666"}}, {{"allow_uids", {"0"}}});
  std::string got = exchange_as_nobody(in.sock, note("sneaky", 1) + "\n");
  INFO(got);
  REQUIRE(json::accept(got));
  json r = json::parse(got);
  CHECK(r["ok"] == false);
  CHECK_THAT(r["error"].get<std::string>(), Catch::Contains("uid 65534 is not allowed"));
  CHECK(in.host.published() == 0);
  CHECK(in.host.logged("refused a connection from uid 65534"));
  CHECK(in.host.stat("refused_peer") == "1");
  Client root(in.sock);
  root.send_line(note("root", 2));
  expect_ok(root, 2);
}

TEST_CASE("unixsock: allow_gids admits a peer by its gid", "[unixsock]") {
  if (geteuid() != 0) { WARN("needs root to run a client as another uid"); return; }
  Instance in(Config{{"mode", "0666"}}, {{"allow_uids", {"0"}}, {"allow_gids", {"65534"}}});
  std::string got = exchange_as_nobody(in.sock, note("ok", 1) + "\n");
  INFO(got);
  REQUIRE(json::accept(got));
  CHECK(json::parse(got)["ok"] == true);
  CHECK(in.host.published() == 1);
}

TEST_CASE("unixsock: idle clients are closed, busy ones are not", "[unixsock]") {
  Instance in(Config{{"idle_timeout", "300ms"}});
  Client silent(in.sock), half(in.sock), busy(in.sock);
  half.send(R"({"type":"x","att)");
  for (int i = 0; i < 10; i++) {
    busy.send_line(note("tick", i));
    expect_ok(busy, i);
    std::this_thread::sleep_for(100ms);
  }
  expect_error(silent, "idle for 300 ms");
  CHECK(silent.wait_closed());
  expect_error(half, "incomplete line of 16 bytes");
  CHECK(half.wait_closed());
  busy.send_line(note("still", 50));
  expect_ok(busy, 50);
  CHECK(in.host.stat("idle_closed") == "2");
}

TEST_CASE("unixsock: a connection waiting for ack done is not idle", "[unixsock]") {
  Instance in(Config{{"idle_timeout", "200ms"}});
  in.host.set_hold(true);
  Client c(in.sock);
  c.send_line(note("slow", 1, "done"));
  REQUIRE(in.host.wait_published(1));
  std::this_thread::sleep_for(700ms);
  in.host.complete_held();
  expect_ok(c, 1);
}

TEST_CASE("unixsock: a client that never reads its replies is bounded, then closed", "[unixsock]") {
  Instance in(Config{{"max_write_buffer", "4KiB"}, {"idle_timeout", "500ms"}});
  Client hog(in.sock);
  int fl = fcntl(hog.fd(), F_GETFL);
  fcntl(hog.fd(), F_SETFL, fl | O_NONBLOCK);
  // Write until the socket is full: the agent stopped reading us.
  std::string line = note("flood", 1) + "\n";
  size_t sent = 0;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  int full_rounds = 0;
  while (std::chrono::steady_clock::now() < deadline && full_rounds < 20) {
    ssize_t n = ::send(hog.fd(), line.data(), line.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      full_rounds = 0;
    } else if (n < 0 && errno == EAGAIN) {
      full_rounds++;
      std::this_thread::sleep_for(10ms);
    } else {
      break;
    }
  }
  size_t lines_sent = sent / line.size();
  INFO("sent " << lines_sent << " lines");
  CHECK(in.host.published() < lines_sent);  // reading stopped
  // Connected only now: on a loaded machine the flood can outlast the
  // 500 ms idle timeout, which would close an idle `good` for idleness.
  Client good(in.sock);
  good.send_line(note("fine", 2));
  expect_ok(good, 2);
  REQUIRE(eventually([&] { return in.host.stat("stuck_closed") == "1"; }));
  CHECK(in.host.logged("went unread"));
  CHECK(hog.wait_closed());
  good.send_line(note("fine", 3));
  expect_ok(good, 3);
}

TEST_CASE("unixsock: a client gone with acks pending is no trouble", "[unixsock]") {
  Instance in;
  in.host.set_hold(true);
  {
    Client c(in.sock);
    for (int i = 0; i < 5; i++) c.send_line(note("x", i, "done"));
    REQUIRE(in.host.wait_published(5));
  }
  // The end of input alone does not close it: a half-closed client still reads.
  std::this_thread::sleep_for(100ms);
  CHECK(in.host.stat("open") == "1");
  in.host.complete_held();  // the replies find nobody; the connection goes
  REQUIRE(eventually([&] { return in.host.stat("open") == "0"; }));
  Client d(in.sock);
  d.send_line(note("y", 9));
  expect_ok(d, 9);
}

TEST_CASE("unixsock: a stale socket file is replaced", "[unixsock]") {
  Dir dir;
  std::string path = dir / "notify.sock";
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    ::close(fd);  // the file stays, nobody listens: what a crashed agent leaves
  }
  FakeHost host(Config{{"socket", path}});
  REQUIRE(host.start() == 0);
  CHECK(host.logged("replacing a stale socket file"));
  Client c(path);
  c.send_line(note("x", 1));
  expect_ok(c, 1);
  CHECK(host.shutdown());
  struct stat st {};
  CHECK(lstat(path.c_str(), &st) != 0);  // removed at stop
}

TEST_CASE("unixsock: a live socket is an error and the live one keeps working", "[unixsock]") {
  Instance first;
  FakeHost second(Config{{"socket", first.sock}});
  CHECK(second.start() == -EADDRINUSE);
  CHECK(second.logged(first.sock + ": another process is listening"));
  CHECK(second.shutdown());
  Client c(first.sock);
  c.send_line(note("x", 1));
  expect_ok(c, 1);
}

TEST_CASE("unixsock: a file that is not a socket is left alone", "[unixsock]") {
  Dir dir;
  std::string path = dir / "notify.sock";
  std::ofstream(path) << "precious";
  FakeHost host(Config{{"socket", path}});
  CHECK(host.start() == -EEXIST);
  CHECK(host.logged("is not a socket"));
  CHECK(host.shutdown());
  std::ifstream in(path);
  std::string content;
  in >> content;
  CHECK(content == "precious");
}

TEST_CASE("unixsock: mode and group are applied to the socket file", "[unixsock]") {
  Instance in(Config{{"mode", "0640"}, {"group", "4321"}});
  struct stat st {};
  REQUIRE(stat(in.sock.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 07777) == 0640);
  if (geteuid() == 0) CHECK(st.st_gid == 4321);
}

namespace {

// In the given order (a json object would sort the names).
std::string attrs_line(const Attrs& attrs, int id) {
  std::string line = R"({"type":"limits","attrs":{)";
  for (size_t i = 0; i < attrs.size(); i++)
    line += (i ? "," : "") + json(attrs[i].first).dump() + ":" + json(attrs[i].second).dump();
  return line + "},\"id\":" + std::to_string(id) + "}";
}

Attrs numbered(size_t n) {
  Attrs a;
  for (size_t i = 0; i < n; i++) a.emplace_back("k" + std::to_string(i), "v");
  return a;
}

}  // namespace

TEST_CASE("unixsock: max_attrs, max_key and max_value: the limit passes, one more is answered", "[unixsock]") {
  Instance in({{"max_attrs", "4"}, {"max_key", "8"}, {"max_value", "16"}});
  Client c(in.sock);
  c.send_line(attrs_line(numbered(4), 1));
  expect_ok(c, 1);
  c.send_line(attrs_line(numbered(5), 2));
  expect_error(c, "too many attributes (5 > max_attrs 4)", 2);
  c.send_line(attrs_line({{std::string(8, 'k'), "v"}}, 3));
  expect_ok(c, 3);
  c.send_line(attrs_line({{std::string(9, 'k'), "v"}}, 4));
  expect_error(c, "attribute name 'kkkkkkkkk' is too long (9 bytes > max_key 8)", 4);
  c.send_line(attrs_line({{"v", std::string(16, 'x')}}, 5));
  expect_ok(c, 5);
  c.send_line(attrs_line({{"v", std::string(17, 'x')}}, 6));
  expect_error(c, "attribute 'v' is too long (17 bytes > max_value 16)", 6);
  // What passed was published whole; what was refused, not at all.
  auto ev = in.host.events();
  REQUIRE(ev.size() == 3);
  CHECK(ev[0].attrs.size() == 4);
  CHECK(ev[1].attrs == Attrs{{std::string(8, 'k'), "v"}});
  CHECK(ev[2].attrs == Attrs{{"v", std::string(16, 'x')}});
  CHECK(in.host.stat("rejected") == "3");
  c.send_line(note("after", 7));  // the connection stays usable
  expect_ok(c, 7);
}

TEST_CASE("unixsock: the default limits: 256 attributes pass, 257 do not; repeats keep first place, last value",
          "[unixsock]") {
  Instance in;
  Client c(in.sock);
  c.send_line(attrs_line(numbered(256), 1));
  expect_ok(c, 1);
  c.send_line(attrs_line(numbered(257), 2));
  expect_error(c, "too many attributes (257 > max_attrs 256)", 2);
  c.send_line(R"({"type":"dup","attrs":{"a":"1","b":"2","a":"3"},"id":3})");
  expect_ok(c, 3);
  auto ev = in.host.events();
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].attrs == numbered(256));
  CHECK(ev[1].attrs == Attrs{{"a", "3"}, {"b", "2"}});
}

TEST_CASE("unixsock: bad config fails init with a message", "[unixsock]") {
  Dir dir;
  auto fails = [&](Config c, const std::string& msg, Lists lists = {}) {
    c.emplace("socket", dir / "s.sock");
    FakeHost host(c, lists);
    CHECK(host.start() < 0);
    CHECK(host.logged(msg));
    CHECK(host.shutdown());
  };
  fails({{"mode", "0999"}}, "expected octal");
  fails({{"mode", "rw-"}}, "expected octal");
  fails({{"group", "no-such-group-hostlet"}}, "group 'no-such-group-hostlet' not found");
  fails({{"socket", dir / std::string(120, 's')}}, "path longer than 107 bytes");
  fails({}, "is not a numeric id", {{"allow_uids", {"root"}}});
  FakeHost nodir(Config{{"socket", "/nonexistent-dir-hostlet/x.sock"}});
  CHECK(nodir.start() < 0);
  CHECK(nodir.logged("/nonexistent-dir-hostlet/x.sock: bind"));
  CHECK(nodir.shutdown());
}

TEST_CASE("unixsock: stop closes clients, removes the socket file and leaves the loop clean", "[unixsock]") {
  auto in = std::make_unique<Instance>();
  Client a(in->sock), b(in->sock);
  b.send(R"({"type":"partial)");
  a.send_line(note("x", 1));
  expect_ok(a, 1);
  std::string path = in->sock;
  REQUIRE(in->host.shutdown());  // also checks uv_loop_close() == 0
  CHECK(a.wait_closed());
  CHECK(b.wait_closed());
  struct stat st {};
  CHECK(lstat(path.c_str(), &st) != 0);
  in.reset();
}

TEST_CASE("unixsock: stop waits up to drain_timeout for pending ack done replies", "[unixsock]") {
  SECTION("answered in time") {
    Instance in(Config{{"drain_timeout", "5s"}});
    in.host.set_hold(true);
    Client c(in.sock);
    c.send_line(note("x", 1, "done"));
    REQUIRE(in.host.wait_published(1));
    in.host.begin_stop();
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(in.host.stopped());
    in.host.complete_held();
    expect_ok(c, 1);
    CHECK(c.wait_closed());
    CHECK(eventually([&] { return in.host.stopped(); }));
  }
  SECTION("not answered: closed at the deadline") {
    Instance in(Config{{"drain_timeout", "300ms"}});
    in.host.set_hold(true);
    Client c(in.sock);
    c.send_line(note("x", 1, "done"));
    REQUIRE(in.host.wait_published(1));
    in.host.begin_stop();
    CHECK(c.wait_closed(5s));
    CHECK(eventually([&] { return in.host.stopped(); }, 5s));
    // shutdown() then completes the held event after stop: the callback must cope.
  }
}

TEST_CASE("unixsock: two instances on different sockets", "[unixsock]") {
  Instance one, two;
  Client a(one.sock), b(two.sock);
  a.send_line(note("one", 1));
  b.send_line(note("two", 2));
  expect_ok(a, 1);
  expect_ok(b, 2);
  CHECK(one.host.events().at(0).type == "one");
  CHECK(two.host.events().at(0).type == "two");
}

TEST_CASE("unixsock: stats count connections, notifications and replies", "[unixsock]") {
  Instance in;
  {
    Client c(in.sock);
    c.send_line(note("a", 1));
    c.send_line(note("b", 2, "none"));
    c.send_line("oops");
    expect_ok(c, 1);
    expect_error(c, "invalid JSON");
  }
  REQUIRE(eventually([&] { return in.host.stat("open") == "0"; }));
  CHECK(in.host.stat("connections") == "1");
  CHECK(in.host.stat("accepted") == "2");
  CHECK(in.host.stat("rejected") == "1");
  CHECK(in.host.stat("replies") == "2");
  CHECK(in.host.stat("socket") == in.sock);
}

TEST_CASE("unixsock: the descriptor documents config, actions and events", "[unixsock]") {
  Instance in;
  const hostlet_plugin* p = in.host.plugin_;
  CHECK(std::string(p->name) == "unixsock");
  std::set<std::string> keys;
  for (const hostlet_config_key* k = p->config; k->key; k++) {
    keys.insert(k->key);
    CHECK(k->description);
  }
  CHECK(keys == std::set<std::string>{"socket", "mode", "group", "allow_uids", "allow_gids", "max_line",
                                      "max_attrs", "max_key", "max_value", "max_connections", "max_pending",
                                      "max_write_buffer", "idle_timeout", "queue_wait", "drain_timeout"});
  CHECK(std::string(p->actions[0].name) == "stats");
  CHECK(p->events[0].type);
}
