// Fuzz target: what the mqtt plugin reads from the broker and from its own
// config (plugins/mqtt/wire.hpp, outbox.hpp). A request payload comes from
// anyone who may publish on a call topic: whatever it holds, parse_request
// returns a request or an error without crashing, and the answer built from
// either (answer_ok with the request's id and attrs echoed, answer_error with
// the message) is valid JSON that reads back with the same id. The same
// bytes as a topic, a broker address, a publish entry and a serialized
// outbox are refused or read without crashing; an outbox that deserializes
// serializes back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "outbox.hpp"
#include "wire.hpp"

using nlohmann::json;
namespace mq = hostlet::mqtt;
using hostlet::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  std::string err, reply_to;
  std::optional<mq::Request> r = mq::parse_request(in, &err, &reply_to);
  if (r) {
    std::vector<mq::Attr> attrs = r->attrs;
    std::string a = mq::answer_ok(r->id_json, "hostlet/h", attrs, "");
    json j = json::parse(a, nullptr, false);
    check(!j.is_discarded() && j.is_object());
    check(j.value("ok", false) == true);
    if (!r->id_json.empty()) check(j["id"] == json::parse(r->id_json));
    check(j["attrs"].size() <= attrs.size());
  } else {
    check(!err.empty());
    std::string a = mq::answer_error("", "hostlet/h", err);
    json j = json::parse(a, nullptr, false);
    check(!j.is_discarded() && j.is_object() && j["error"] == err);
  }

  (void)mq::action_of_topic(in);
  (void)mq::topic_problem(in);
  (void)mq::valid_level(in);
  (void)mq::glob_problem(in);
  std::string e2;
  if (auto b = mq::parse_broker(in, &e2)) check(b->unix_socket() ? !b->host.empty() : b->port > 0 && b->port < 65536);
  else check(!e2.empty());
  std::string e3;
  if (!mq::parse_publish_rule(std::string(in), &e3)) check(!e3.empty());

  std::vector<mq::Message> msgs;
  if (mq::deserialize(in, msgs)) check(mq::serialize(msgs) == in);
  return 0;
}
