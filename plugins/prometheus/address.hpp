// The `listen` items: "HOST:PORT" (an IPv4 address), "[V6]:PORT" (an IPv6
// address) or an absolute Unix socket path. Addresses are numeric: a name
// would need a resolver call, which blocks. Port 0 asks the kernel for a free
// port (the plugin logs which one it got).
#pragma once

#include <string>

namespace hostlet::prometheus {

struct ListenAddress {
  enum Kind { ipv4, ipv6, unix_path };
  Kind kind = ipv4;
  std::string host;  // ipv4 / ipv6: the address without brackets
  int port = 0;
  std::string path;  // unix_path
};

// Parses one item; on failure returns false with `error` saying why.
bool parse_listen_address(const std::string& text, ListenAddress& out, std::string& error);

}  // namespace hostlet::prometheus
