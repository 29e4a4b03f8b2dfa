// The plugin's actions as plain functions over a virConnectPtr: a validation
// step that runs on the loop (no libvirt call, no blocking) and a run step
// that makes the blocking libvirt calls on a pool thread. Kept apart from the
// plugin so that tests drive them against a real libvirt without an agent.
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "event_bridge.hpp"

#include <hostlet/plugin.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hostlet_virt {

// The call's attributes, copied on the loop thread (the host's are not thread-safe).
using Args = std::map<std::string, std::string, std::less<>>;

// What an action answers.
struct Outcome {
  bool ok = true;
  hostlet::Attrs attrs;
  std::string data_json;  // empty: no data
  std::string error;      // when !ok
  int code = 0;           // libvirt's error code when the error came from libvirt
  // What the answer was made from and is no longer needed once it is sent,
  // but costs time to free: released on a pool thread after the reply
  // (Virt::submit), off the caller's wait. 1000 domain records of
  // domain.list take ~1.1 ms to free (libvirt formats each domain's UUID for
  // its debug log twice on the way), about a quarter of the whole call.
  std::shared_ptr<void> release_after_reply;

  static Outcome failure(std::string message, int code = 0) {
    Outcome o;
    o.ok = false;
    o.error = std::move(message);
    o.code = code;
    return o;
  }
};

struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using DomainPtr = std::unique_ptr<virDomain, DomainFree>;

// A counted reference to a connection. Dropping the last reference of a
// remote connection talks to the daemon: on the loop thread the bridge does
// it on a thread of its own (hostlet_virt_conn_unref).
class ConnRef {
 public:
  ConnRef() = default;
  explicit ConnRef(virConnectPtr c) : c_(c) {
    if (c_) virConnectRef(c_);
  }
  ConnRef(ConnRef&& o) noexcept : c_(o.c_) { o.c_ = nullptr; }
  ConnRef& operator=(ConnRef&& o) noexcept {
    if (this != &o) {
      reset();
      c_ = o.c_;
      o.c_ = nullptr;
    }
    return *this;
  }
  ConnRef(const ConnRef&) = delete;
  ConnRef& operator=(const ConnRef&) = delete;
  ~ConnRef() { reset(); }
  void reset() {
    if (c_) hostlet_virt_conn_unref(c_);
    c_ = nullptr;
  }
  virConnectPtr get() const { return c_; }

 private:
  virConnectPtr c_ = nullptr;
};

// This thread's last libvirt error as an Outcome: "message (libvirt error N)".
// virGetLastError() is thread-local: call it on the thread that failed.
Outcome libvirt_failure(std::string_view what);

// "true/yes/on/1" and "false/no/off/0".
bool parse_bool(std::string_view text, bool* out);
// "running,paused" -> VIR_CONNECT_LIST_DOMAINS_* flags (0 for "all"). Empty string on success.
std::string parse_state_filter(std::string_view text, unsigned* flags);
// "state,cpu-total" -> VIR_DOMAIN_STATS_* (0 for "all" or empty). Empty string on success.
std::string parse_stats_groups(std::string_view text, unsigned* groups);

// One domain's statistics as libvirt returned them (typed values).
struct DomainStats {
  std::string name, uuid;
  nlohmann::json params = nlohmann::json::object();
};
struct StatsResult {
  bool ok = true;
  Outcome failure;  // when !ok
  std::vector<DomainStats> domains;
};
// virConnectGetAllDomainStats (or virDomainListGetStats for one domain). Pool thread.
StatsResult collect_stats(virConnectPtr conn, unsigned groups, unsigned flags, virDomainPtr only = nullptr);
// A typed value as an event attribute's text.
std::string param_text(const nlohmann::json& v);

// One action.
struct Op {
  const char* verb;         // without the instance prefix
  const char* args;         // for `hostlet-ctl plugins --describe`
  const char* description;
  std::array<const char*, 6> keys;  // attributes it reads (unused slots nullptr)
  std::string (*validate)(const Args&);           // loop thread; "" = fine
  Outcome (*run)(virConnectPtr, const Args&);     // pool thread
};
std::span<const Op> ops();

}  // namespace hostlet_virt
