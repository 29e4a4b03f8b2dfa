#include "connection.hpp"

#include "ops.hpp"

namespace hostlet_virt {

const hostlet_virt_sink_ops Connection::kSinkOps = {
    &Connection::lifecycle_cb,
    &Connection::reboot_cb,
    &Connection::watchdog_cb,
    &Connection::closed_cb,
};

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
  c->sink_ = hostlet_virt_sink_new(&kSinkOps, c);
  if (!c->sink_) {
    *error = "out of memory";
    delete c;
    return nullptr;
  }
  char err[1024];
  unsigned got = hostlet_virt_sink_register(c->sink_, c->conn_, s.domain_events, err, sizeof err);
  c->events_ = (got & HOSTLET_VIRT_SINK_LIFECYCLE) != 0;
  if (err[0]) c->warnings_ += std::string(err) + "; ";
  if (!c->warnings_.empty()) c->warnings_.resize(c->warnings_.size() - 2);
  return c;
}

Connection::~Connection() {
  if (sink_) hostlet_virt_sink_close(sink_, conn_);  // detaches now, closes on a bridge thread
  else if (conn_) hostlet_virt_conn_unref(conn_);
}

void Connection::lifecycle_cb(void* self, virDomainPtr dom, int event, int detail) {
  auto* c = static_cast<Connection*>(self);
  c->listener_->on_lifecycle(*c, dom, event, detail);
}

void Connection::reboot_cb(void* self, virDomainPtr dom) {
  auto* c = static_cast<Connection*>(self);
  c->listener_->on_reboot(*c, dom);
}

void Connection::watchdog_cb(void* self, virDomainPtr dom, int action) {
  auto* c = static_cast<Connection*>(self);
  c->listener_->on_watchdog(*c, dom, action);
}

void Connection::closed_cb(void* self, int reason) {
  auto* c = static_cast<Connection*>(self);
  c->listener_->on_closed(*c, reason);
}

}  // namespace hostlet_virt
