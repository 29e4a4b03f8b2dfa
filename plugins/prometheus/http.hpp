// The smallest strict HTTP/1.x request parser that a metrics endpoint needs:
// pure code over a byte buffer, no I/O, so that tests and the fuzzer drive it.
//
// Why not Debian's libhttp-parser-dev (2.9.4): upstream stopped maintaining
// it in 2020 (its successor, llhttp, is not packaged in Debian 12), it ships
// no pkg-config file, it is lenient where a server facing scrapers should be
// strict (it accepts obs-fold, bare CR and spaces before the colon unless
// built otherwise), and a GET/HEAD endpoint uses a sliver of it: the request
// line and four headers, no body. What is accepted here (RFC 9112):
//
//   request-line  METHOD SP request-target SP HTTP/1.0|HTTP/1.1, METHOD a
//                 token of at most 16 bytes (case-sensitive: "get" is not
//                 GET), the target an origin-form ("/path?query") or
//                 absolute-form ("http://host/path") of visible ASCII;
//                 leading empty lines are skipped.
//   header lines  token ":" OWS value OWS; values of visible ASCII, space,
//                 tab and obs-text (0x80-0xff). No whitespace before the colon,
//                 no obs-fold, no NUL/CR/control bytes in a value.
//   line ends     CRLF, or a bare LF (RFC 9112 2.2 allows it); a bare CR is an error.
//   framing       no body: Content-Length other than 0 or any
//                 Transfer-Encoding is refused (400), so nothing is left
//                 unread between pipelined requests.
//   HTTP/1.1      exactly one Host header (RFC 9112 3.2).
//
// Errors carry the status to answer: 400 malformed, 431 header block over
// max_header_bytes or more than max_headers lines, 505 an HTTP version other
// than 1.0 and 1.1. The caller answers an error and closes the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hostlet::prometheus {

struct ParseLimits {
  size_t max_header_bytes = 8192;  // request line and headers, with their line ends
  size_t max_headers = 100;
};

enum class Method { get, head, other };

struct Request {
  Method method = Method::other;
  std::string method_text;
  std::string path;  // without the query
  int minor = 1;     // HTTP/1.<minor>
  bool keep_alive = true;
  std::string accept;           // the Accept values, joined with ","
  std::string accept_encoding;  // the Accept-Encoding values, joined with ","
};

struct ParseResult {
  enum State { incomplete, done, error };
  State state = incomplete;
  size_t consumed = 0;  // when done: bytes of this request (the next one starts there)
  int status = 0;       // when error: 400, 431 or 505
  std::string reason;   // when error: a short, printable explanation
  Request request;
};

// Where the header block of the request at the start of `in` ends (just past
// its empty line), or npos while incomplete. `from` is where the previous
// call on a growing buffer stopped looking, so that a client sending a byte
// at a time costs linear time in all.
size_t header_end(std::string_view in, size_t& from);

// Parses the request at the start of `in`. `scan_from` (may be NULL) is
// header_end's position over a growing buffer; reset it to 0 after a request
// is taken off the buffer.
ParseResult parse_request(std::string_view in, const ParseLimits& limits, size_t* scan_from = nullptr);

// Content negotiation. Both take a header value (several joined with ","),
// honour q-values (q=0 means "not acceptable") and ignore malformed items.
// OpenMetrics when application/openmetrics-text is acceptable with a q at
// least that of the best text/plain, text/* or */* range (Prometheus sends
// it with q=1 and text/plain with q=0.5).
bool wants_openmetrics(std::string_view accept);
// gzip (or x-gzip) acceptable with q > 0, or "*" with q > 0 and gzip not named.
bool accepts_gzip(std::string_view accept_encoding);

// "Not Found" for 404; "Unknown" for a code not used here.
const char* status_text(int code);

// Compresses `in` into a gzip member (zlib, level 1: metrics text compresses
// about 10:1 at level 1 too, at a third of level 6's time on the loop).
// Returns false (out unspecified) on a zlib error.
bool gzip(std::string_view in, std::string& out);

}  // namespace hostlet::prometheus
