// One libvirt connection with the plugin's callbacks on it. Opened and closed
// on pool threads (both block: they talk to the daemon); its callbacks reach a
// Listener, on the loop thread except on_closed.
#pragma once

#include <libvirt/libvirt.h>

#include <cstdint>
#include <string>
#include <vector>

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
  // Deregisters every callback and drops the connection. Pool thread. After
  // it returns no callback of this object runs again.
  void close();
  ~Connection();

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  virConnectPtr get() const { return conn_; }
  uint64_t generation() const { return gen_; }
  bool keepalive() const { return keepalive_; }
  bool events() const { return events_; }
  // Why keepalive or events are off ("" when on or not asked for).
  const std::string& warnings() const { return warnings_; }

 private:
  Connection(Listener* l, uint64_t gen) : listener_(l), gen_(gen) {}
  static void close_cb(virConnectPtr, int reason, void* opaque);
  static void lifecycle_cb(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque);
  static void reboot_cb(virConnectPtr, virDomainPtr dom, void* opaque);
  static void watchdog_cb(virConnectPtr, virDomainPtr dom, int action, void* opaque);

  Listener* listener_;
  uint64_t gen_;
  virConnectPtr conn_ = nullptr;
  std::vector<int> callback_ids_;
  bool close_registered_ = false;
  bool keepalive_ = false;
  bool events_ = false;
  std::string warnings_;
};

}  // namespace hostlet_virt
