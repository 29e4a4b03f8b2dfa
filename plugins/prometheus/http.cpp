#include "http.hpp"

#include <zlib.h>

#include <algorithm>
#include <vector>

namespace hostlet::prometheus {
namespace {

constexpr size_t kMaxMethod = 16;

bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

bool is_field_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits s at each `sep`, calling fn(trimmed item) for the non-empty items.
template <class F> void for_each_item(std::string_view s, char sep, F&& fn) {
  while (!s.empty()) {
    size_t p = s.find(sep);
    std::string_view item = trim(s.substr(0, p));
    if (!item.empty()) fn(item);
    if (p == std::string_view::npos) break;
    s.remove_prefix(p + 1);
  }
}

// The q parameter of a list item's parameters ("; q=0.5"): 1 when absent,
// -1 when malformed (the item is then ignored). RFC 9110 12.4.2: "0" or
// "1" with up to three decimals.
double q_value(std::string_view params) {
  double q = 1;
  bool bad = false;
  for_each_item(params, ';', [&](std::string_view p) {
    size_t eq = p.find('=');
    if (eq == std::string_view::npos || !iequals(trim(p.substr(0, eq)), "q")) return;
    std::string_view v = trim(p.substr(eq + 1));
    if (v.empty() || (v[0] != '0' && v[0] != '1') || v.size() > 5 || (v.size() > 1 && v[1] != '.')) {
      bad = true;
      return;
    }
    double frac = 0, scale = 0.1;
    for (size_t i = 2; i < v.size(); i++) {
      if (v[i] < '0' || v[i] > '9') {
        bad = true;
        return;
      }
      frac += (v[i] - '0') * scale;
      scale /= 10;
    }
    q = (v[0] - '0') + frac;
    if (q > 1) bad = true;
  });
  return bad ? -1 : q;
}

// Splits "type; params" into its first part and the rest.
std::pair<std::string_view, std::string_view> split_params(std::string_view item) {
  size_t semi = item.find(';');
  if (semi == std::string_view::npos) return {trim(item), {}};
  return {trim(item.substr(0, semi)), item.substr(semi + 1)};
}

// A line of the header block: [begin, end) without its line end.
struct Lines {
  std::string_view block;
  size_t pos = 0;
  // Next line; false at the block's end. A bare CR inside a line makes `bad` true.
  bool next(std::string_view& line, bool& bad) {
    if (pos >= block.size()) return false;
    size_t nl = block.find('\n', pos);
    if (nl == std::string_view::npos) nl = block.size();
    line = block.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos) bad = true;
    return true;
  }
};

ParseResult fail(int status, std::string reason) {
  ParseResult r;
  r.state = ParseResult::error;
  r.status = status;
  r.reason = std::move(reason);
  return r;
}

bool visible_ascii(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// The request target: origin-form, or absolute-form with its authority dropped.
bool parse_target(std::string_view target, std::string& path) {
  if (!visible_ascii(target)) return false;
  if (target.size() > 7 && iequals(target.substr(0, 7), "http://")) {
    size_t slash = target.find('/', 7);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (target[0] != '/') return false;
  path = std::string(target.substr(0, target.find('?')));
  return true;
}

// Version "HTTP/1.1"; returns 0 ok, or the status of the error.
int parse_version(std::string_view v, int& minor) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' ||
      v[7] > '9')
    return 400;
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return 505;
  minor = v[7] - '0';
  return 0;
}

// Header values Request keeps, joined with "," as RFC 9110 5.3 allows.
void join(std::string& to, std::string_view value) {
  if (!to.empty()) to += ',';
  to += value;
}

}  // namespace

size_t header_end(std::string_view in, size_t& from) {
  // The block ends at the first "\n\n" or "\n\r\n" past any leading empty lines.
  size_t start = 0;
  while (start < in.size() && (in[start] == '\r' || in[start] == '\n')) start++;
  size_t i = std::max(from, start);
  for (; i < in.size(); i++) {
    if (in[i] != '\n' || i == start) continue;
    if (i + 1 < in.size() && in[i + 1] == '\n') return i + 2;
    if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') return i + 3;
    if (i + 2 >= in.size()) break;  // the rest may still complete it
  }
  from = std::max(start, i);
  return std::string_view::npos;
}

ParseResult parse_request(std::string_view in, const ParseLimits& limits, size_t* scan_from) {
  size_t from_here = 0;
  size_t& from = scan_from ? *scan_from : from_here;
  size_t end = header_end(in, from);
  size_t start = 0;
  while (start < in.size() && (in[start] == '\r' || in[start] == '\n')) start++;
  if (end == std::string_view::npos) {
    if (in.size() > limits.max_header_bytes)  // leading empty lines count too: they are buffered
      return fail(431, "request header block over " + std::to_string(limits.max_header_bytes) + " bytes");
    // Garbage (a TLS hello, a binary protocol) is refused at once rather than at read_timeout.
    std::string_view method = in.substr(start, kMaxMethod + 1);
    method = method.substr(0, method.find(' '));
    if (method.size() > kMaxMethod || !std::all_of(method.begin(), method.end(), [](char c) {
          return is_tchar(static_cast<unsigned char>(c));
        }))
      return fail(400, "malformed method");
    return ParseResult{};
  }
  if (end - start > limits.max_header_bytes)
    return fail(431, "request header block over " + std::to_string(limits.max_header_bytes) + " bytes");

  ParseResult r;
  Request& req = r.request;
  Lines lines{in.substr(start, end - start)};
  std::string_view line;
  bool bad_cr = false;
  lines.next(line, bad_cr);
  if (bad_cr) return fail(400, "bare CR in the request line");
  // METHOD SP target SP version, single spaces.
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return fail(400, "malformed request line");
  std::string_view method = line.substr(0, sp1);
  if (!is_token(method) || method.size() > kMaxMethod) return fail(400, "malformed method");
  if (!parse_target(line.substr(sp1 + 1, sp2 - sp1 - 1), req.path)) return fail(400, "malformed request target");
  if (int st = parse_version(line.substr(sp2 + 1), req.minor); st != 0)
    return fail(st, st == 505 ? "HTTP version not supported" : "malformed HTTP version");
  req.method_text = std::string(method);
  req.method = method == "GET" ? Method::get : method == "HEAD" ? Method::head : Method::other;

  size_t n_headers = 0, n_host = 0;
  bool conn_close = false, conn_keep = false;
  while (lines.next(line, bad_cr)) {
    if (bad_cr) return fail(400, "bare CR in a header line");
    if (line.empty()) break;  // the end of the block
    if (++n_headers > limits.max_headers)
      return fail(431, "more than " + std::to_string(limits.max_headers) + " header lines");
    if (line[0] == ' ' || line[0] == '\t') return fail(400, "obsolete line folding");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return fail(400, "malformed header line");
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (!std::all_of(value.begin(), value.end(), [](char c) { return is_field_value_char(static_cast<unsigned char>(c)); }))
      return fail(400, "control character in a header value");
    if (iequals(name, "host")) {
      n_host++;
    } else if (iequals(name, "connection")) {
      for_each_item(value, ',', [&](std::string_view t) {
        if (iequals(t, "close")) conn_close = true;
        if (iequals(t, "keep-alive")) conn_keep = true;
      });
    } else if (iequals(name, "accept")) {
      join(req.accept, value);
    } else if (iequals(name, "accept-encoding")) {
      join(req.accept_encoding, value);
    } else if (iequals(name, "content-length")) {
      if (value.empty() || !std::all_of(value.begin(), value.end(), [](char c) { return c == '0'; }))
        return fail(400, "a request body is not accepted here");
    } else if (iequals(name, "transfer-encoding")) {
      return fail(400, "a request body is not accepted here");
    }
  }
  if (req.minor == 1 && n_host != 1) return fail(400, n_host ? "more than one Host header" : "no Host header");
  req.keep_alive = req.minor == 1 ? !conn_close : conn_keep && !conn_close;
  r.state = ParseResult::done;
  r.consumed = end;
  return r;
}

bool wants_openmetrics(std::string_view accept) {
  double q_om = 0, q_text = 0;
  for_each_item(accept, ',', [&](std::string_view item) {
    auto [type, params] = split_params(item);
    double q = q_value(params);
    if (q < 0) return;
    if (iequals(type, "application/openmetrics-text")) q_om = std::max(q_om, q);
    else if (iequals(type, "text/plain") || iequals(type, "text/*") || type == "*/*") q_text = std::max(q_text, q);
  });
  return q_om > 0 && q_om >= q_text;
}

bool accepts_gzip(std::string_view accept_encoding) {
  double q_gzip = -1, q_any = -1;
  for_each_item(accept_encoding, ',', [&](std::string_view item) {
    auto [coding, params] = split_params(item);
    double q = q_value(params);
    if (q < 0) return;
    if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) q_gzip = std::max(q_gzip, q);
    else if (coding == "*") q_any = std::max(q_any, q);
  });
  return q_gzip >= 0 ? q_gzip > 0 : q_any > 0;
}

const char* status_text(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

bool gzip(std::string_view in, std::string& out) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out.resize(deflateBound(&z, in.size()) + 32);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int r = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return r == Z_STREAM_END;
}

}  // namespace hostlet::prometheus
