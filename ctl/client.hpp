// hostlet-ctl's side of the control socket: one blocking connection that
// sends a request line and reads reply lines.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace hostlet::ctl {

class Client {
 public:
  Client() = default;
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects to the Unix socket at `path`; false with `err` (strerror text).
  bool open(const std::string& path, std::string& err);
  // Sends `request` as one line; false when the agent closed the connection.
  bool send(const nlohmann::json& request);
  // The next line, without its '\n'; false on EOF, an error, a signal or
  // after timeout_ms (< 0: no timeout).
  bool line(std::string& out, int timeout_ms);
  // True once the agent closed its side (the last line() saw EOF).
  bool closed() const { return eof_; }
  // Tells the agent that no more requests come (shutdown SHUT_WR): it sends
  // what it still owes, then closes.
  void finish_sending();

 private:
  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace hostlet::ctl
