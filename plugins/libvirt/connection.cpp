#include "connection.hpp"

#include "ops.hpp"

namespace hostlet_virt {

Connection* Connection::open(const Settings& s, Listener* listener, uint64_t generation, std::string* error) {
  auto* c = new Connection(listener, generation);
  c->conn_ = s.readonly ? virConnectOpenReadOnly(s.uri.c_str()) : virConnectOpen(s.uri.c_str());
  if (!c->conn_) {
    *error = libvirt_failure("").error;
    delete c;
    return nullptr;
  }
  if (s.keepalive_interval_s > 0) {
    int r = virConnectSetKeepAlive(c->conn_, s.keepalive_interval_s, s.keepalive_count);
    c->keepalive_ = r == 0;
    virErrorPtr e = r < 0 ? virGetLastError() : nullptr;
    if (e && e->code == VIR_ERR_NO_SUPPORT) virResetLastError();  // in-process drivers: nothing to keep alive
    else if (r < 0) c->warnings_ += "keepalive off: " + libvirt_failure("").error + "; ";
    else if (r == 1) c->warnings_ += "keepalive off: the server does not support it; ";
  }
  if (virConnectRegisterCloseCallback(c->conn_, &Connection::close_cb, c, nullptr) == 0)
    c->close_registered_ = true;
  else
    c->warnings_ += "no close callback: " + libvirt_failure("").error + "; ";
  if (s.domain_events) {
    struct {
      int id;
      virConnectDomainEventGenericCallback cb;
    } const wanted[] = {
        {VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(&Connection::lifecycle_cb)},
        {VIR_DOMAIN_EVENT_ID_REBOOT, VIR_DOMAIN_EVENT_CALLBACK(&Connection::reboot_cb)},
        {VIR_DOMAIN_EVENT_ID_WATCHDOG, VIR_DOMAIN_EVENT_CALLBACK(&Connection::watchdog_cb)},
    };
    for (const auto& w : wanted) {
      int id = virConnectDomainEventRegisterAny(c->conn_, nullptr, w.id, w.cb, c, nullptr);
      if (id >= 0) c->callback_ids_.push_back(id);
      else c->warnings_ += "domain event " + std::to_string(w.id) + " not delivered: " + libvirt_failure("").error + "; ";
    }
    c->events_ = !c->callback_ids_.empty();
  }
  if (!c->warnings_.empty()) c->warnings_.resize(c->warnings_.size() - 2);
  return c;
}

void Connection::close() {
  if (!conn_) return;
  // Local deregistration happens first; the daemon round trip may fail on a dead connection.
  for (int id : callback_ids_) virConnectDomainEventDeregisterAny(conn_, id);
  callback_ids_.clear();
  if (close_registered_) virConnectUnregisterCloseCallback(conn_, &Connection::close_cb);
  close_registered_ = false;
  virConnectClose(conn_);
  conn_ = nullptr;
  virResetLastError();
}

Connection::~Connection() { close(); }

void Connection::close_cb(virConnectPtr, int reason, void* opaque) {
  auto* c = static_cast<Connection*>(opaque);
  c->listener_->on_closed(*c, reason);
}

void Connection::lifecycle_cb(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  auto* c = static_cast<Connection*>(opaque);
  c->listener_->on_lifecycle(*c, dom, event, detail);
}

void Connection::reboot_cb(virConnectPtr, virDomainPtr dom, void* opaque) {
  auto* c = static_cast<Connection*>(opaque);
  c->listener_->on_reboot(*c, dom);
}

void Connection::watchdog_cb(virConnectPtr, virDomainPtr dom, int action, void* opaque) {
  auto* c = static_cast<Connection*>(opaque);
  c->listener_->on_watchdog(*c, dom, action);
}

}  // namespace hostlet_virt
