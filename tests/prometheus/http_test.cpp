// Unit tests of plugins/prometheus/http.cpp (the request parser and content
// negotiation) and address.cpp (the listen items).
#include <catch2/catch.hpp>

#include <zlib.h>

#include <string>

#include "address.hpp"
#include "http.hpp"

using namespace hostlet::prometheus;

namespace {

ParseResult parse(const std::string& in, ParseLimits limits = {}) { return parse_request(in, limits); }

int status_of(const std::string& in, ParseLimits limits = {}) {
  ParseResult r = parse(in, limits);
  INFO(in);
  REQUIRE(r.state == ParseResult::error);
  return r.status;
}

std::string gunzip(const std::string& in) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
  std::string out(in.size() * 20 + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(inflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

}  // namespace

TEST_CASE("http: a GET with headers is parsed, its query dropped") {
  ParseResult r = parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\nAccept-Encoding: gzip\r\n\r\nGET");
  REQUIRE(r.state == ParseResult::done);
  CHECK(r.request.method == Method::get);
  CHECK(r.request.path == "/metrics");
  CHECK(r.request.minor == 1);
  CHECK(r.request.keep_alive);
  CHECK(r.request.accept == "text/plain");
  CHECK(r.request.accept_encoding == "gzip");
  CHECK(r.consumed == std::string("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\nAccept-Encoding: gzip\r\n\r\n").size());
}

TEST_CASE("http: an incomplete request waits for more") {
  CHECK(parse("GET /metrics HTTP/1.1\r\nHost: a\r\n").state == ParseResult::incomplete);
  CHECK(parse("").state == ParseResult::incomplete);
  CHECK(parse("\r\n\r\n").state == ParseResult::incomplete);
}

TEST_CASE("http: bare LF line ends and leading empty lines are accepted") {
  ParseResult r = parse("\r\nHEAD /health HTTP/1.0\nConnection: keep-alive\n\n");
  REQUIRE(r.state == ParseResult::done);
  CHECK(r.request.method == Method::head);
  CHECK(r.request.minor == 0);
  CHECK(r.request.keep_alive);
}

TEST_CASE("http: keep-alive follows the version and Connection") {
  CHECK_FALSE(parse("GET / HTTP/1.0\r\n\r\n").request.keep_alive);
  CHECK_FALSE(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").request.keep_alive);
  CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Keep-Alive\r\n\r\n").request.keep_alive);
}

TEST_CASE("http: an absolute-form target keeps only its path") {
  CHECK(parse("GET http://h:1/metrics HTTP/1.1\r\nHost: h\r\n\r\n").request.path == "/metrics");
  CHECK(parse("GET http://h:1 HTTP/1.1\r\nHost: h\r\n\r\n").request.path == "/");
}

TEST_CASE("http: other methods parse as other, for a 405") {
  ParseResult r = parse("POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(r.state == ParseResult::done);
  CHECK(r.request.method == Method::other);
  CHECK(r.request.method_text == "POST");
  CHECK(parse("get / HTTP/1.1\r\nHost: a\r\n\r\n").request.method == Method::other);
}

TEST_CASE("http: malformed requests are 400") {
  for (const char* bad : {"garbage\r\n\r\n", "GET\r\n\r\n", "GET /\r\n\r\n", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
                          "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
                          "GET metrics HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.x\r\nHost: a\r\n\r\n",
                          "GET / http/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost : a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
                          "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                          "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", "AVERYLONGMETHODNAMEX / HTTP/1.1\r\nHost: a\r\n\r\n"})
    CHECK(status_of(bad) == 400);
}

TEST_CASE("http: a request line that cannot become a method is refused before it ends") {
  CHECK(status_of(std::string("\x16\x03\x01\x00", 4)) == 400);
  CHECK(status_of("AVERYLONGMETHODNAMEX") == 400);
  CHECK(parse("GE").state == ParseResult::incomplete);
  CHECK(parse("GET /metr").state == ParseResult::incomplete);
}

TEST_CASE("http: versions other than 1.0 and 1.1 are 505") {
  CHECK(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == 505);
  CHECK(status_of("GET / HTTP/1.2\r\nHost: a\r\n\r\n") == 505);
  CHECK(status_of("GET / HTTP/0.9\r\n\r\n") == 505);
}

TEST_CASE("http: a header block over max_header_bytes is 431, complete or not") {
  ParseLimits small;
  small.max_header_bytes = 256;
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(300, 'x') + "\r\n\r\n";
  CHECK(status_of(big, small) == 431);
  CHECK(status_of(big.substr(0, 280), small) == 431);
  CHECK(status_of(std::string(300, '\n'), small) == 431);
  small.max_headers = 2;
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", small) == 431);
}

TEST_CASE("http: header_end finds the block's end across growing input") {
  const std::string req = "GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
  size_t from = 0;
  for (size_t n = 1; n < req.size() - 4; n++) CHECK(header_end(std::string_view(req).substr(0, n), from) == std::string_view::npos);
  CHECK(header_end(req, from) == req.size() - 4);
}

TEST_CASE("negotiation: OpenMetrics when Accept prefers it") {
  CHECK(wants_openmetrics("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                          "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));  // what Prometheus 2.42 sends
  CHECK(wants_openmetrics("application/openmetrics-text"));
  CHECK_FALSE(wants_openmetrics(""));
  CHECK_FALSE(wants_openmetrics("*/*"));
  CHECK_FALSE(wants_openmetrics("text/plain"));
  CHECK_FALSE(wants_openmetrics("application/openmetrics-text;q=0"));
  CHECK_FALSE(wants_openmetrics("application/openmetrics-text;q=0.5, text/plain"));
  CHECK_FALSE(wants_openmetrics("application/openmetrics-text;q=bogus"));
}

TEST_CASE("negotiation: gzip when Accept-Encoding allows it") {
  CHECK(accepts_gzip("gzip"));
  CHECK(accepts_gzip("deflate, GZIP;q=0.5"));
  CHECK(accepts_gzip("x-gzip"));
  CHECK(accepts_gzip("*"));
  CHECK_FALSE(accepts_gzip(""));
  CHECK_FALSE(accepts_gzip("identity"));
  CHECK_FALSE(accepts_gzip("gzip;q=0"));
  CHECK_FALSE(accepts_gzip("gzip;q=0.000, *"));
  CHECK_FALSE(accepts_gzip("*;q=0"));
}

TEST_CASE("gzip: the output inflates back to the input") {
  std::string text;
  for (int i = 0; i < 2000; i++) text += "hostlet_metric{n=\"" + std::to_string(i) + "\"} 1\n";
  std::string z;
  REQUIRE(gzip(text, z));
  CHECK(z.size() < text.size() / 4);
  CHECK(gunzip(z) == text);
}

TEST_CASE("listen: addresses and paths") {
  ListenAddress a;
  std::string err;
  REQUIRE(parse_listen_address("127.0.0.1:9750", a, err));
  CHECK((a.kind == ListenAddress::ipv4 && a.host == "127.0.0.1" && a.port == 9750));
  REQUIRE(parse_listen_address("[::1]:0", a, err));
  CHECK((a.kind == ListenAddress::ipv6 && a.host == "::1" && a.port == 0));
  REQUIRE(parse_listen_address("/run/hostlet/metrics.sock", a, err));
  CHECK(a.kind == ListenAddress::unix_path);
  for (const char* bad : {"", "localhost:9750", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:x", "[::1]", "::1:80",
                          "relative.sock", "[1.2.3.4]:80"})
    CHECK_FALSE(parse_listen_address(bad, a, err));
  CHECK_FALSE(parse_listen_address("/" + std::string(200, 'a'), a, err));
}
