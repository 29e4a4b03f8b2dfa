// End-to-end tests of the control socket against hostile input, through the
// real agent binary over its real socket: what each bad line is answered,
// and that the agent stays up and answers the next request.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "e2e.hpp"
#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;

namespace {

// One request line sent, its one reply line parsed.
json ask(LineClient& c, const std::string& line) {
  REQUIRE(c.send_line(line));
  auto reply = c.recv_line();
  REQUIRE(reply);
  json j = json::parse(*reply, nullptr, false);
  REQUIRE(j.is_object());
  return j;
}

// The error a request is answered with (the test fails on an ok reply).
std::string error_of(LineClient& c, const std::string& line) {
  json r = ask(c, line);
  REQUIRE(r["ok"] == false);
  return r["error"].get<std::string>();
}

void still_serving(Agent& a, LineClient& c) {
  CHECK(a.process().running());
  CHECK(ask(c, R"({"id":"after","cmd":"status"})")["ok"] == true);
}

}  // namespace

TEST_CASE("control: a request nested 20000 deep is refused unparsed and the agent answers the next one") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  std::string deep = R"({"cmd":"status","id":)" + std::string(20000, '[') + std::string(20000, ']') + "}";
  json r = ask(c, deep);
  CHECK(r["ok"] == false);
  CHECK(r["id"].is_null());
  CHECK(r["error"] == "request nests deeper than 16 levels");
  still_serving(a, c);
  // 16 levels is the limit; brackets inside strings do not count
  std::string at_limit = R"({"cmd":"status","x":)" + std::string(15, '[') + std::string(15, ']') + "}";
  CHECK(ask(c, at_limit)["ok"] == true);
  std::string over = R"({"cmd":"status","x":)" + std::string(16, '[') + std::string(16, ']') + "}";
  CHECK(error_of(c, over) == "request nests deeper than 16 levels");
  CHECK(ask(c, R"({"cmd":"status","x":"[[[[[[[[[[[[[[[[[[[[\"[[[["})")["ok"] == true);
}

TEST_CASE("control: an id is a string or an integer and is echoed; any other id is refused") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  CHECK(ask(c, R"({"id":7,"cmd":"status"})")["id"] == 7);
  CHECK(ask(c, R"({"id":-7,"cmd":"status"})")["id"] == -7);
  CHECK(ask(c, R"({"id":18446744073709551615,"cmd":"status"})")["id"] == 18446744073709551615ull);
  CHECK(ask(c, R"({"id":"req-1","cmd":"status"})")["id"] == "req-1");
  json none = ask(c, R"({"id":null,"cmd":"status"})");
  CHECK(none["ok"] == true);
  CHECK(none["id"].is_null());
  for (const char* id : {"1.5", "true", "[1]", R"({"a":1})", "1e3"}) {
    INFO("id " << id);
    json r = ask(c, std::string(R"({"cmd":"status","id":)") + id + "}");
    CHECK(r["ok"] == false);
    CHECK(r["id"].is_null());
    CHECK(r["error"] == "'id' must be a string or an integer");
  }
  CHECK(error_of(c, R"({"cmd":"status","id":"a\u0000b"})") == "'id' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"status","id":1e999})") == "invalid JSON: a number is out of range");
  still_serving(a, c);
}

TEST_CASE("control: a string holding \\u0000 is refused, not cut at the NUL") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  // echo answers its attributes: before the check it answered name=d/value
  json cut = ask(c, R"({"id":1,"cmd":"call","action":"w.echo","attrs":{"name":"d/value\u0000/../../x"}})");
  CHECK(cut["ok"] == false);
  CHECK(cut["id"] == 1);
  CHECK(cut["error"] == "attribute 'name' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo","attrs":{"na\u0000me":"x"}})") ==
        "an attribute name contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo","attrs":{"":"x"}})") == "attribute names must not be empty");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo\u0000.x"})") == "'action' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"notify","type":"t","source":"c\u0000tl"})") ==
        "'source' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"notify","type":"t\u0000"})") == "'type' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"events","type":"*\u0000"})") == "'type' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"describe","name":"w\u0000"})") == "'name' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"reload","name":"w\u0000"})") == "'name' contains a NUL character (\\u0000)");
  CHECK(error_of(c, R"({"cmd":"call","action":7})") == "'action' must be a string, not a number");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo","attrs":{"a":null}})") ==
        "attribute 'a' must be a string, not null");
  CHECK(error_of(c, R"({"cmd":"call","action":"w.echo","attrs":["a"]})") ==
        "'attrs' must be an object of strings, not an array");
  // the same attribute without the NUL is answered
  json ok = ask(c, R"({"cmd":"call","action":"w.echo","attrs":{"name":"d/value/../../x"}})");
  CHECK(ok["attrs"]["name"] == "d/value/../../x");
}

TEST_CASE("control: a raw NUL byte or text after the request makes the line an error, nothing is run") {
  TempDir dir;
  Agent a(dir, base_config());
  REQUIRE(a.start());
  LineClient c(a.control_socket());
  using namespace std::string_literals;
  CHECK(error_of(c, "{\"cmd\":\"status\"}\0garbage"s) == "request contains a NUL byte at byte 17");
  CHECK(error_of(c, "{\"cmd\":\"sta\0tus\"}"s) == "request contains a NUL byte at byte 12");
  CHECK(error_of(c, R"({"cmd":"status"} garbage)") == "invalid JSON: text after the request object at byte 18");
  CHECK(error_of(c, R"({"cmd":"status"}{"cmd":"status"})") ==
        "invalid JSON: text after the request object at byte 17");
  // a notify with trailing text publishes nothing
  CHECK(error_of(c, R"({"cmd":"notify","type":"t.x","ack":"accepted"}])") ==
        "invalid JSON: text after the request object at byte 47");
  CHECK(error_of(c, "{not json") == "invalid JSON at byte 3");
  CHECK(error_of(c, "{\"cmd\":\"status\",\"x\":\"\xff\"}") == "invalid JSON: a string is not valid UTF-8 at byte 22");
  json stats = ask(c, R"({"cmd":"stats"})");
  CHECK(stats["data"]["bus"]["published"] == 0);
  still_serving(a, c);
}

namespace {

// Resident set of a process in KiB (VmRSS), 0 when unreadable.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return 0;
}

}  // namespace

TEST_CASE("control: a client that pipelines requests and never reads is paused, others stay served, nothing is lost") {
  TempDir dir;
  Agent a(dir, base_config("", "", ", control_max_write_buffer: 64KiB"));
  REQUIRE(a.start());
  long rss_before = rss_kib(a.process().pid());

  // The flood: status requests written without reading a reply, until the
  // socket takes no more (the agent stopped reading) or 150 000 are sent.
  LineClient flood(a.control_socket());
  int fl = fcntl(flood.fd(), F_GETFL);
  REQUIRE(fcntl(flood.fd(), F_SETFL, fl | O_NONBLOCK) == 0);
  const std::string req = "{\"cmd\":\"status\"}\n";
  std::string pending;
  long sent = 0;
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int stalls = 0;
  while (sent < 150000 && stalls < 50 && std::chrono::steady_clock::now() < give_up) {
    if (pending.empty()) {
      for (int i = 0; i < 256; i++) pending += req;
    }
    ssize_t n = ::send(flood.fd(), pending.data(), pending.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<long>(std::count(pending.begin(), pending.begin() + n, '\n'));
      pending.erase(0, static_cast<size_t>(n));
      stalls = 0;
    } else {
      REQUIRE(errno == EAGAIN);
      stalls++;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  INFO("sent " << sent << " requests before the agent stopped reading");
  CHECK(sent < 150000);  // it did stop reading

  // Another client is answered while the flood is paused.
  LineClient probe(a.control_socket());
  json st = ask(probe, R"({"id":"probe","cmd":"stats"})");
  REQUIRE(st["ok"] == true);
  CHECK(st["data"]["control"]["backpressure_pauses"].get<long>() > 0);
  long rss_paused = rss_kib(a.process().pid());
  INFO("RSS before " << rss_before << " KiB, paused " << rss_paused << " KiB");
  CHECK(rss_paused - rss_before < 64 * 1024);  // was 536 MB with no bound

  // The flood client now reads: every complete request it sent is answered.
  REQUIRE(fcntl(flood.fd(), F_SETFL, fl) == 0);
  long answered = 0;
  while (answered < sent) {
    auto line = flood.recv_line(std::chrono::seconds(30));
    if (!line) break;
    json r = json::parse(*line, nullptr, false);
    REQUIRE(r.is_object());
    REQUIRE(r["ok"] == true);
    answered++;
  }
  CHECK(answered == sent);
  still_serving(a, probe);
}

TEST_CASE("control: an idle client is closed after control_idle_timeout with a line saying why; a stream is not") {
  TempDir dir;
  Agent a(dir, base_config("", "", ", control_idle_timeout: 1s"));
  REQUIRE(a.start());
  LineClient idle(a.control_socket());
  LineClient stream(a.control_socket());
  REQUIRE(ask(stream, R"({"id":1,"cmd":"events","type":"nothing.*"})")["ok"] == true);
  auto line = idle.recv_line(std::chrono::seconds(20));
  REQUIRE(line);
  json r = json::parse(*line);
  CHECK(r["ok"] == false);
  CHECK(r["error"] == "idle for 1.0s (agent.control_idle_timeout); closing");
  CHECK(idle.wait_closed(std::chrono::seconds(10)));
  // The streaming connection outlived it and still answers.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(ask(stream, R"({"id":2,"cmd":"status"})")["ok"] == true);
  LineClient probe(a.control_socket());
  CHECK(ask(probe, R"({"id":3,"cmd":"stats"})")["data"]["control"]["idle_closed"].get<long>() >= 1);
}

namespace {

// hostlet-ctl ARGS run as uid/gid `id` (setpriv), against the agent's socket.
Run ctl_as(Agent& a, unsigned id, std::vector<std::string> args) {
  std::vector<std::string> argv = {"setpriv", "--reuid=" + std::to_string(id), "--regid=" + std::to_string(id),
                                   "--clear-groups", env_path("HOSTLET_CTL"), "-s", a.control_socket()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

}  // namespace

TEST_CASE("control: read and admin levels by peer uid; others are refused at connect; root is admin") {
  if (geteuid() != 0) {
    WARN("needs root to run hostlet-ctl as other uids");
    return;
  }
  TempDir dir;
  // 65534 (nobody) may read, 65533 may act, anyone else is refused. The socket's group is 65534.
  Agent a(dir, base_config("", "",
                           ", control_mode: \"0666\", control_group: \"65534\", control_read_uids: [65534], "
                           "control_admin_uids: [65533]"));
  REQUIRE(a.start());
  struct stat st {};
  REQUIRE(stat(a.control_socket().c_str(), &st) == 0);
  CHECK(st.st_gid == 65534u);
  Run status = ctl_as(a, 65534, {"status"});
  INFO(status.err);
  CHECK(status.exit_code == 0);
  Run call = ctl_as(a, 65534, {"call", "w.echo", "a=1"});
  CHECK(call.exit_code == 1);
  CHECK(call.err ==
        "error: 'call' needs the admin level; uid 65534 (gid 65534) has read (agent.control_admin_uids, "
        "control_admin_gids)\n");
  Run reload = ctl_as(a, 65534, {"reload"});
  CHECK(reload.exit_code == 1);
  CHECK_THAT(reload.err, Catch::Contains("'reload' needs the admin level"));
  Run admin = ctl_as(a, 65533, {"call", "w.echo", "a=1"});
  INFO(admin.err);
  CHECK(admin.exit_code == 0);
  Run stranger = ctl_as(a, 65532, {"status"});
  CHECK(stranger.exit_code != 0);
  CHECK_THAT(stranger.err, Catch::Contains("uid 65532 (gid 65532) may not use this control socket"));
  CHECK(a.log().find("control socket: refused a connection from uid 65532 gid 65532") != std::string::npos);
  CHECK(a.ctl({"call", "w.echo", "a=1"}).exit_code == 0);  // root
  json s = ctl_json(a, {"stats"});
  CHECK(s["data"]["control"]["refused"] == 1);
}

TEST_CASE("control: without access lists whoever can open the socket may do everything") {
  if (geteuid() != 0) {
    WARN("needs root to run hostlet-ctl as another uid");
    return;
  }
  TempDir dir;
  Agent a(dir, base_config("", "", ", control_mode: \"0666\""));
  REQUIRE(a.start());
  Run call = ctl_as(a, 65534, {"call", "w.echo", "a=1"});
  INFO(call.err);
  CHECK(call.exit_code == 0);
}
