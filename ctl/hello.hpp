// The hello exchange hostlet-ctl starts every connection with: it asks the
// peer who it is before sending the command, so that pointing -s at another
// socket (the notification socket, say) is reported as such instead of
// sending it a request it would take for something else, and so that a ctl
// talking to an agent of another protocol version can say so.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace hostlet::ctl {

// The request, with id 0 (the command that follows uses 1).
nlohmann::json hello_request(const std::string& ctl_version);

struct Hello {
  enum Kind {
    agent,        // a hostlet agent answered; version/protocol/access are set
    older_agent,  // a hostlet agent from before the hello exchange ("unknown command 'hello'")
    refused,      // the agent refused the connection; `message` says why
    not_control,  // something else answered; `message` is what it said
  } kind = not_control;
  std::string version, access, message;
  int protocol = 0;
};

// Reads the peer's first line.
Hello read_hello(const std::string& line);

// What to tell the user about a protocol difference; empty when there is none.
std::string protocol_note(const Hello& h, int ours);

}  // namespace hostlet::ctl
