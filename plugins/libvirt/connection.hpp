// One libvirt connection with the plugin's callbacks on it. Opened on a pool
// thread (it talks to the daemon). Its callbacks reach a Listener through a
// sink of the event bridge, so that libvirt never holds a pointer into the
// plugin: destroying the Connection detaches them at once, and the close
// itself (deregistration, last reference) runs on a thread of the bridge.
#pragma once

#include "event_bridge.hpp"

#include <libvirt/libvirt.h>

#include <cstdint>
#include <string>

namespace hostlet_virt {

class Connection;

class Listener {
 public:
  virtual ~Listener() = default;
  // Domain events; loop thread (libvirt dispatches them from its event loop, i.e. the bridge).
  virtual void on_lifecycle(Connection& c, virDomainPtr dom, int event, int detail) = 0;
  virtual void on_reboot(Connection& c, virDomainPtr dom) = 0;
  virtual void on_watchdog(Connection& c, virDomainPtr dom, int action) = 0;
  // The connection closed (virConnectCloseReason). Any thread: a pool thread
  // when keepalive expires during a call, the loop on EOF. Never for test:///.
  virtual void on_closed(Connection& c, int reason) = 0;
};

struct Settings {
  std::string uri;
  bool readonly = false;
  int keepalive_interval_s = 5;  // <= 0: keepalive off
  unsigned keepalive_count = 3;
  bool domain_events = true;
};

class Connection {
 public:
  // Opens `s.uri`, sets keepalive, registers the close callback and the
  // domain event callbacks. Pool thread. nullptr with *error on failure.
  static Connection* open(const Settings& s, Listener* listener, uint64_t generation, std::string* error);
  // Detaches the callbacks (none runs after this returns) and hands the
  // connection to the bridge to close. Any thread; never blocks on the daemon.
  ~Connection();

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  virConnectPtr get() const { return conn_; }
  uint64_t generation() const { return gen_; }
  bool keepalive() const { return keepalive_; }
  bool events() const { return events_; }
  // Why keepalive, the close callback or events are off ("" when all is well).
  const std::string& warnings() const { return warnings_; }

 private:
  Connection(Listener* l, uint64_t gen) : listener_(l), gen_(gen) {}
  static void lifecycle_cb(void* self, virDomainPtr dom, int event, int detail);
  static void reboot_cb(void* self, virDomainPtr dom);
  static void watchdog_cb(void* self, virDomainPtr dom, int action);
  static void closed_cb(void* self, int reason);
  static const hostlet_virt_sink_ops kSinkOps;

  Listener* listener_;
  uint64_t gen_;
  virConnectPtr conn_ = nullptr;
  hostlet_virt_sink* sink_ = nullptr;
  bool keepalive_ = false;
  bool events_ = false;
  std::string warnings_;
};

}  // namespace hostlet_virt
