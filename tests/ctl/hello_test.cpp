// hostlet-ctl's reading of the hello exchange (ctl/hello.cpp).
#include <catch2/catch.hpp>

#include "hello.hpp"

using hostlet::ctl::Hello;
using hostlet::ctl::protocol_note;
using hostlet::ctl::read_hello;

TEST_CASE("ctl hello: an agent, an older agent, a refusal and another server are told apart") {
  Hello a = read_hello(R"({"id":0,"ok":true,"server":"hostlet","version":"0.9.0","protocol":1,"access":"read"})");
  CHECK(a.kind == Hello::agent);
  CHECK(a.version == "0.9.0");
  CHECK(a.protocol == 1);
  CHECK(a.access == "read");
  CHECK(protocol_note(a, 1).empty());
  CHECK(protocol_note(a, 2) == "the agent 0.9.0 speaks control protocol 1, this hostlet-ctl 2; newer options may be refused");
  Hello old = read_hello(R"J({"id":0,"ok":false,"error":"unknown command 'hello' (status, plugins)"})J");
  CHECK(old.kind == Hello::older_agent);
  CHECK(protocol_note(old, 1) == "the agent predates hostlet-ctl's protocol 1; newer options may be refused");
  Hello refused = read_hello(R"({"ok":false,"error":"uid 7 (gid 7) may not use this control socket"})");
  CHECK(refused.kind == Hello::refused);
  CHECK(refused.message == "uid 7 (gid 7) may not use this control socket");
  // The notification socket answers with our id and an error of its own.
  Hello notify = read_hello(R"({"id":0,"ok":false,"error":"missing \"type\""})");
  CHECK(notify.kind == Hello::not_control);
  CHECK(notify.message == R"({"id":0,"ok":false,"error":"missing \"type\""})");
  CHECK(read_hello("SSH-2.0-OpenSSH_9.2").kind == Hello::not_control);
  CHECK(read_hello(R"({"id":0,"ok":true})").kind == Hello::not_control);  // ok, but not from hostlet
  // Another server's JSON of other types is another server, never a throw.
  Hello odd = read_hello(R"({"id":0,"ok":"yes","server":"hostlet"})");
  CHECK(odd.kind == Hello::not_control);
  CHECK(odd.message == R"({"id":0,"ok":"yes","server":"hostlet"})");
  CHECK(read_hello(R"({"id":"0","ok":true,"server":7,"protocol":"1"})").kind == Hello::not_control);
}
