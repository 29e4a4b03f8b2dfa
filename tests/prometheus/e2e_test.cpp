// End-to-end: the real agent with a prometheus instance on a Unix socket and
// a loopback TCP port (port 0, read back from its log), raw HTTP clients,
// promtool and a real Prometheus server, every process stopped by pid.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zlib.h>

#include <map>
#include <optional>
#include <regex>
#include <thread>

#include "support.hpp"

using namespace hostlet::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// A blocking HTTP/1.x client over one connection: raw bytes out, responses
// framed by Content-Length (every answer of the plugin has one).
class HttpClient {
 public:
  static HttpClient unix_socket(const std::string& path) {
    HttpClient c;
    c.fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    REQUIRE(connect(c.fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    return c;
  }
  static HttpClient tcp(int port) {
    HttpClient c = try_tcp(port);
    REQUIRE(c.fd_ >= 0);
    return c;
  }
  // fd() is -1 when nothing listens yet.
  static HttpClient try_tcp(int port) {
    HttpClient c;
    c.fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c.fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      ::close(c.fd_);
      c.fd_ = -1;
    }
    return c;
  }
  HttpClient() = default;
  HttpClient(HttpClient&& o) noexcept : fd_(std::exchange(o.fd_, -1)), buf_(std::move(o.buf_)) {}
  ~HttpClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // The next response (no body read for HEAD), or nullopt on timeout or close.
  std::optional<Response> read(bool head = false, std::chrono::milliseconds timeout = 15s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline)) return std::nullopt;
    Response r;
    std::string head_text = buf_.substr(0, end);
    std::smatch m;
    if (!std::regex_search(head_text, m, std::regex("^HTTP/1\\.1 (\\d{3}) "))) return std::nullopt;
    r.status = std::stoi(m[1]);
    size_t pos = head_text.find("\r\n");
    while (pos != std::string::npos && pos < head_text.size()) {
      size_t next = head_text.find("\r\n", pos + 2);
      std::string line = head_text.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& ch : name) ch = static_cast<char>(tolower(ch));
        r.headers[name] = line.substr(colon + 2);
      }
      pos = next;
    }
    buf_.erase(0, end + 4);
    size_t len = head ? 0 : std::stoul(r.header("content-length").empty() ? "0" : r.header("content-length"));
    while (buf_.size() < len)
      if (!fill(deadline)) return std::nullopt;
    r.body = buf_.substr(0, len);
    buf_.erase(0, len);
    return r;
  }
  // True when the server closed (EOF or reset) within the timeout; input is dropped.
  bool wait_closed(std::chrono::milliseconds timeout = 15s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      char b[4096];
      ssize_t n = recv(fd_, b, sizeof b, 0);
      if (n <= 0) return true;
    }
  }
  int fd() const { return fd_; }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline) {
    pollfd p{fd_, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char b[65536];
    ssize_t n = recv(fd_, b, sizeof b, 0);
    if (n <= 0) return false;
    buf_.append(b, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buf_;
};

std::string plugin() { return env_path("HOSTLET_BUILD_ROOT") + "/plugins/prometheus/prometheus.so"; }

// The agent with instance "metrics" on @DIR@/http.sock and 127.0.0.1:0, plus `extra` config.
struct Fixture {
  TempDir dir;
  std::unique_ptr<Agent> agent;
  int port = 0;
  explicit Fixture(const std::string& extra = "") {
    std::string config = "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
                         "plugins:\n"
                         "  - {name: metrics, plugin: " + plugin() +
                         ", config: {listen: [\"@DIR@/http.sock\", \"127.0.0.1:0\"]" + extra + "}}\n";
    agent = std::make_unique<Agent>(dir, config);
    REQUIRE(agent->start());
    REQUIRE(wait_until([&] {
      std::string log = agent->log();  // the match must not outlive it
      std::smatch m;
      if (!std::regex_search(log, m, std::regex("listening on http://127\\.0\\.0\\.1:(\\d+)"))) return false;
      port = std::stoi(m[1]);
      return true;
    }));
    REQUIRE(wait_until([&] { return agent->log().find("] ready:") != std::string::npos; }));
  }
  ~Fixture() {
    if (agent) {
      auto st = agent->stop();
      CHECK(st);
    }
  }
  HttpClient unix_client() { return HttpClient::unix_socket(dir / "http.sock"); }
  json stats() {
    Run r = agent->ctl({"--json", "call", "metrics.stats"});
    INFO(r.err << r.out);
    REQUIRE(json::accept(r.out));
    return json::parse(r.out)["attrs"];
  }
  // The agent still answers HTTP and its control socket.
  void check_unaffected() {
    HttpClient c = unix_client();
    REQUIRE(c.send("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 404);
    Run st = agent->ctl({"status"});
    INFO(st.err);
    CHECK(st.exit_code == 0);
    CHECK(agent->process().running());
  }
};

const std::string kGet = "GET /metrics HTTP/1.1\r\nHost: x\r\n";

std::string gunzip(const std::string& in) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
  std::string out;
  char buf[65536];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int r;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    r = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  } while (r == Z_OK);
  inflateEnd(&z);
  REQUIRE(r == Z_STREAM_END);
  return out;
}

// promtool check metrics over `text`. Exit 1 is a parse error; exit 3 is
// lint only ("no help text", counter naming). The text format must be lint
// clean. OpenMetrics is read by promtool 2.42 with the 0.0.4 parser, which
// sees a family "foo" (TYPE line without _total) whose samples are
// "foo_total" and reports them as help-less: there only parse errors fail.
void promtool_check(TempDir& dir, const std::string& text, bool openmetrics) {
  std::string file = dir.write(openmetrics ? "scrape.om" : "scrape.prom", text);
  Run r = run({"/bin/sh", "-c", "promtool check metrics < '" + file + "'"});
  INFO("promtool exit " << r.exit_code << "\nstdout: " << r.out << "\nstderr: " << r.err);
  if (openmetrics) CHECK((r.exit_code == 0 || r.exit_code == 3));
  else CHECK(r.exit_code == 0);
}

}  // namespace

TEST_CASE("prometheus: other paths are 404 on a kept connection, other methods 405 with Allow, then closed") {
  Fixture f;
  HttpClient c = f.unix_client();
  for (int i = 0; i < 2; i++) {
    REQUIRE(c.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->header("connection") == "keep-alive");
  }
  REQUIRE(c.send("DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read();
  REQUIRE(r);
  CHECK(r->status == 405);
  CHECK(r->header("allow") == "GET, HEAD");
  CHECK(c.wait_closed());
  f.check_unaffected();
}

TEST_CASE("prometheus: garbage, bad versions and oversized headers get 400, 505 and 431, over TCP too") {
  Fixture f(", max_header_bytes: 1KiB");
  struct Case {
    std::string request;
    int status;
  };
  const Case cases[] = {
      {std::string("\x16\x03\x01\x02\x00\x31", 6), 400},  // a TLS hello starts so: no need to wait for more
      {"garbage\r\n\r\n", 400},
      {"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"GET /metrics HTTP/1.1\r\n\r\n", 400},  // no Host
      {kGet + "X-Big: " + std::string(2000, 'a') + "\r\n\r\n", 431},
      {kGet + std::string(3000, 'b'), 431},  // never ends
  };
  for (const Case& cs : cases) {
    for (bool tcp : {false, true}) {
      HttpClient c = tcp ? HttpClient::tcp(f.port) : f.unix_client();
      REQUIRE(c.send(cs.request));
      auto r = c.read();
      INFO(cs.request.substr(0, 40) << (tcp ? " over tcp" : " over unix"));
      REQUIRE(r);
      CHECK(r->status == cs.status);
      CHECK(r->header("connection") == "close");
      CHECK(c.wait_closed());
    }
  }
  json s = f.stats();
  CHECK(s["requests_431"] == "4");
  f.check_unaffected();
}

TEST_CASE("prometheus: pipelined requests are answered in order; HTTP/1.0 closes unless keep-alive") {
  Fixture f;
  HttpClient c = f.unix_client();
  REQUIRE(c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto a = c.read();
  auto b = c.read(true);
  auto h = c.read();
  auto last = c.read();
  REQUIRE((a && b && h && last));
  CHECK((a->status == 404 && !a->body.empty()));
  CHECK((b->status == 404 && b->header("content-length") == a->header("content-length")));
  CHECK(h->header("content-type") == "application/json");
  CHECK((last->status == 404 && last->header("connection") == "close"));
  CHECK(c.wait_closed());

  HttpClient old = f.unix_client();
  REQUIRE(old.send("GET /a HTTP/1.0\r\n\r\n"));
  auto r = old.read();
  REQUIRE(r);
  CHECK(r->header("connection") == "close");
  CHECK(old.wait_closed());
  HttpClient kept = f.unix_client();
  for (int i = 0; i < 2; i++) {
    REQUIRE(kept.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    r = kept.read();
    REQUIRE(r);
    CHECK(r->header("connection") == "keep-alive");
  }
  // More pipelined requests than max_pipeline (16) in one write: all answered.
  std::string many;
  for (int i = 0; i < 100; i++) many += "GET /n" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(kept.send(many));
  int answered = 0;
  for (int i = 0; i < 100; i++)
    if (auto x = kept.read(); x && x->status == 404) answered++;
  CHECK(answered == 100);
}

TEST_CASE("prometheus: a slowloris client gets 408 and is closed at read_timeout; others are served meanwhile") {
  Fixture f(", read_timeout: 2s");
  HttpClient slow = HttpClient::tcp(f.port);
  const std::string request = kGet + "X-Slow: " + std::string(40, 's') + "\r\n\r\n";
  std::optional<Response> r;
  size_t sent = 0;
  for (; sent < request.size() && !r; sent++) {
    if (!slow.send(request.substr(sent, 1))) break;
    f.check_unaffected();
    r = slow.read(false, 1s);  // a byte per second
  }
  INFO("sent " << sent << " of " << request.size() << " bytes");
  REQUIRE(r);
  CHECK(r->status == 408);
  CHECK(sent < request.size());
  CHECK(slow.wait_closed());
  CHECK(f.stats()["read_timeouts"] == "1");
  f.check_unaffected();
}

TEST_CASE("prometheus: 1000 connections: the limit holds with 503s, the agent answers HTTP and control") {
  Fixture f(", max_connections: 16, read_timeout: 30s");
  std::vector<HttpClient> held;
  for (int i = 0; i < 16; i++) {  // admitted: each answered once, kept open
    held.push_back(HttpClient::tcp(f.port));
    REQUIRE(held.back().send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = held.back().read();
    REQUIRE(r);
    CHECK(r->status == 404);
  }
  std::vector<HttpClient> extra;
  for (int i = 0; i < 984; i++) extra.push_back(HttpClient::tcp(f.port));
  int refused = 0;
  for (HttpClient& c : extra) {
    auto r = c.read();
    if (r && r->status == 503) refused++;
  }
  CHECK(refused == 984);
  Run st = f.agent->ctl({"status"});
  CHECK(st.exit_code == 0);
  CHECK(f.stats()["refused"] == "984");
  CHECK(f.stats()["open"] == "16");
  for (HttpClient& c : held) {  // the admitted ones are still served
    REQUIRE(c.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = c.read();
    REQUIRE(r);
    CHECK(r->status == 404);
  }
  held.clear();
  extra.clear();
  REQUIRE(wait_until([&] { return f.stats()["open"] == "0"; }));
  f.check_unaffected();
}

TEST_CASE("prometheus: /health is 200 with the agent's JSON") {
  Fixture f;
  HttpClient c = f.unix_client();
  REQUIRE(c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read();
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == 200);
  CHECK(r->header("content-type") == "application/json");
  REQUIRE(json::accept(r->body));
  json j = json::parse(r->body);
  CHECK(j["status"] == "ok");
  CHECK(j["instances"].contains("metrics"));
}

// GET /metrics with `headers` (each ending in CRLF) on c; the test fails without an answer.
Response get_metrics(HttpClient& c, const std::string& headers = "") {
  REQUIRE(c.send(kGet + headers + "\r\n"));
  auto r = c.read();
  REQUIRE(r);
  CHECK(r->status == 200);
  return *r;
}

TEST_CASE("prometheus: /metrics in text, OpenMetrics and gzip passes promtool") {
  Fixture f;
  HttpClient c = HttpClient::tcp(f.port);
  Response text = get_metrics(c);
  CHECK(text.header("content-type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK_THAT(text.body, Catch::Contains("hostlet_build_info"));
  CHECK_THAT(text.body, Catch::Contains("hostlet_http_requests_total"));
  promtool_check(f.dir, text.body, false);

  Response om = get_metrics(c, "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n");
  CHECK(om.header("content-type") == "application/openmetrics-text; version=1.0.0; charset=utf-8");
  CHECK_THAT(om.body, Catch::EndsWith("# EOF\n"));
  promtool_check(f.dir, om.body, true);

  Response z = get_metrics(c, "Accept-Encoding: gzip\r\n");
  CHECK(z.header("content-encoding") == "gzip");
  std::string plain = gunzip(z.body);
  CHECK_THAT(plain, Catch::Contains("hostlet_build_info"));
  promtool_check(f.dir, plain, false);

  Response zom = get_metrics(c, "Accept: application/openmetrics-text\r\nAccept-Encoding: deflate, gzip\r\n");
  CHECK(zom.header("content-encoding") == "gzip");
  CHECK_THAT(gunzip(zom.body), Catch::EndsWith("# EOF\n"));

  CHECK(get_metrics(c, "Accept-Encoding: gzip;q=0\r\n").header("content-encoding").empty());

  REQUIRE(c.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto head = c.read(true);
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK_FALSE(head->header("content-length").empty());
}

TEST_CASE("prometheus: clients that leave during a scrape, and a stop with scrapes in flight, harm nothing") {
  Fixture f;
  for (int i = 0; i < 50; i++) {  // asked and gone before the answer
    HttpClient c = f.unix_client();
    REQUIRE(c.send(kGet + "\r\n"));
  }
  std::vector<HttpClient> waiting;
  for (int i = 0; i < 10; i++) {
    waiting.push_back(f.unix_client());
    REQUIRE(waiting.back().send(kGet + "\r\n" + kGet + "\r\n"));  // two each, pipelined
  }
  for (HttpClient& c : waiting) {
    for (int i = 0; i < 2; i++) {
      auto r = c.read();
      REQUIRE(r);
      CHECK(r->status == 200);
    }
  }
  f.check_unaffected();
  for (HttpClient& c : waiting) REQUIRE(c.send(kGet + "\r\n"));
  auto st = f.agent->stop();
  f.agent.reset();
  REQUIRE(st);
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 0);
}

TEST_CASE("prometheus: a real Prometheus server scrapes the agent") {
  Fixture f;
  // A free port for Prometheus' own listener: bind port 0, read it, release it.
  int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  REQUIRE(bind(probe, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(getsockname(probe, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  int prom_port = ntohs(sa.sin_port);
  ::close(probe);
  std::string config = f.dir.write("prometheus.yml",
                                   "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
                                   "scrape_configs:\n"
                                   "  - job_name: hostlet\n"
                                   "    static_configs: [{targets: ['127.0.0.1:" + std::to_string(f.port) + "']}]\n");
  Process prom({"/usr/bin/prometheus", "--config.file=" + config, "--storage.tsdb.path=" + f.dir / "tsdb",
                "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)});
  auto query = [&](const std::string& q) -> json {
    {
      HttpClient c = HttpClient::try_tcp(prom_port);
      if (c.fd() < 0 || !c.send("GET /api/v1/query?query=" + q + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
        return {};
      std::string all;
      char b[65536];
      ssize_t n;
      while ((n = recv(c.fd(), b, sizeof b, 0)) > 0) all.append(b, static_cast<size_t>(n));
      size_t body = all.find("\r\n\r\n");
      if (body == std::string::npos || !json::accept(all.substr(body + 4))) return {};
      return json::parse(all.substr(body + 4));
    }
  };
  auto has = [&](const std::string& q) {
    json j = query(q);
    return j.is_object() && j["status"] == "success" && !j["data"]["result"].empty();
  };
  INFO(prom.err());
  CHECK(wait_until([&] { return has("hostlet_build_info"); }, 60s));
  CHECK(wait_until([&] { return has("hostlet_lane_submitted_total"); }, 30s));
  CHECK(wait_until([&] { return has("up%7Bjob%3D%22hostlet%22%7D%3D%3D1"); }, 30s));
  auto st = prom.stop();
  CHECK(st);
}

TEST_CASE("prometheus: a reload of the instance serves the same Unix socket again") {
  Fixture f;
  HttpClient before = f.unix_client();
  get_metrics(before);
  Run r = f.agent->ctl({"reload", "metrics"});
  INFO(r.out << r.err << f.agent->log());
  REQUIRE(r.exit_code == 0);
  CHECK(before.wait_closed());  // the old instance closed its connections
  HttpClient after = f.unix_client();
  Response m = get_metrics(after);
  CHECK_THAT(m.body, Catch::Contains("hostlet_http_requests_total"));
  f.check_unaffected();
}

TEST_CASE("prometheus: hostlet --check names a bad listen item") {
  TempDir dir;
  std::string file = dir.write("h.yaml", "agent: {control_socket: \"" + dir / "c.sock" + "\"}\nplugins:\n"
                                         "  - {name: metrics, plugin: " + plugin() +
                                         ", config: {listen: [\"localhost:9750\"]}}\n");
  Run r = run({env_path("HOSTLET_BIN"), "--check", "-c", file});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out + r.err, Catch::Contains("h.yaml:3:5: instance 'metrics'") &&
                                Catch::Contains("'localhost' is not an IPv4 address"));
}
