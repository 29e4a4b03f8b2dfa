// Fuzz target: the prometheus plugin's HTTP request parser
// (plugins/prometheus/http.cpp), with the default limits and tight ones.
//
// Besides crashes and hangs it checks what http.hpp promises: a parsed
// request consumed some bytes of the input and no more, its method is a
// token of at most 16 bytes (GET and HEAD recognized, anything else
// "other"), its path starts with '/' and is visible ASCII without '?', its
// version is 1.0 or 1.1; an error is 400, 431 or 505 with a printable reason;
// an incomplete input is within max_header_bytes. Parsing the input as it
// grows a byte at a time (header_end's saved position, as a connection does)
// ends in the same state as parsing it whole. The negotiation functions run
// over the input as a header value.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "address.hpp"
#include "fuzz_support.hpp"
#include "http.hpp"

namespace {

using hostlet::fuzz::check;
namespace prom = hostlet::prometheus;

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

void check_result(std::string_view in, const prom::ParseLimits& limits, const prom::ParseResult& r) {
  switch (r.state) {
    case prom::ParseResult::done: {
      const prom::Request& q = r.request;
      check(r.consumed > 0 && r.consumed <= in.size());
      check(!q.method_text.empty() && q.method_text.size() <= 16);
      check((q.method == prom::Method::get) == (q.method_text == "GET"));
      check((q.method == prom::Method::head) == (q.method_text == "HEAD"));
      check(!q.path.empty() && q.path[0] == '/' && q.path.find('?') == std::string::npos);
      check(std::all_of(q.path.begin(), q.path.end(), [](char c) { return c > 0x20 && c < 0x7f; }));
      check(q.minor == 0 || q.minor == 1);
      break;
    }
    case prom::ParseResult::error:
      check(r.status == 400 || r.status == 431 || r.status == 505);
      check(!r.reason.empty() && printable(r.reason));
      break;
    case prom::ParseResult::incomplete: check(in.size() <= limits.max_header_bytes); break;
  }
}

void check_parse(std::string_view in, const prom::ParseLimits& limits) {
  const prom::ParseResult whole = prom::parse_request(in, limits);
  check_result(in, limits, whole);
  // Growing a byte at a time: incomplete until the state whole parsing reaches at some prefix.
  size_t from = 0;
  prom::ParseResult grown;
  for (size_t n = 1; n <= in.size(); n++) {
    grown = prom::parse_request(in.substr(0, n), limits, &from);
    if (grown.state != prom::ParseResult::incomplete) break;
  }
  if (whole.state == prom::ParseResult::done) {
    check(grown.state == prom::ParseResult::done || grown.state == prom::ParseResult::error);
    if (grown.state == prom::ParseResult::done) check(grown.consumed == whole.consumed);
  }
  if (whole.state == prom::ParseResult::incomplete) check(grown.state == prom::ParseResult::incomplete);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  prom::ParseLimits tight;
  tight.max_header_bytes = 64;
  tight.max_headers = 2;
  check_parse(in, prom::ParseLimits{});
  check_parse(in, tight);
  (void)prom::wants_openmetrics(in);
  (void)prom::accepts_gzip(in);
  prom::ListenAddress a;
  std::string err;
  if (prom::parse_listen_address(std::string(in), a, err)) check(a.port >= 0 && a.port <= 65535);
  else check(!err.empty());
  return 0;
}
