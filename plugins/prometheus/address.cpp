#include "address.hpp"

#include <arpa/inet.h>
#include <sys/un.h>

namespace hostlet::prometheus {
namespace {

bool parse_port(const std::string& s, int& port) {
  if (s.empty() || s.size() > 5) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > 65535) return false;
  port = v;
  return true;
}

}  // namespace

bool parse_listen_address(const std::string& text, ListenAddress& out, std::string& error) {
  out = ListenAddress{};
  if (!text.empty() && text[0] == '/') {
    if (text.size() >= sizeof(sockaddr_un::sun_path)) {
      error = "'" + text + "': a Unix socket path has at most " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
              " bytes";
      return false;
    }
    out.kind = ListenAddress::unix_path;
    out.path = text;
    return true;
  }
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find("]:");
    if (close == std::string::npos) {
      error = "'" + text + "': expected [V6]:PORT";
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    in6_addr a6{};
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
      error = "'" + text + "': '" + host + "' is not an IPv6 address";
      return false;
    }
    out.kind = ListenAddress::ipv6;
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      error = "'" + text + "': expected HOST:PORT, [V6]:PORT or an absolute socket path";
      return false;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    in_addr a4{};
    if (inet_pton(AF_INET, host.c_str(), &a4) != 1) {
      error = "'" + text + "': '" + host + "' is not an IPv4 address (names are not resolved; IPv6 goes in brackets)";
      return false;
    }
    out.kind = ListenAddress::ipv4;
  }
  if (!parse_port(port, out.port)) {
    error = "'" + text + "': '" + port + "' is not a port (0 to 65535)";
    return false;
  }
  out.host = host;
  return true;
}

}  // namespace hostlet::prometheus
