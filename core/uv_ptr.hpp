// One owner for every libuv handle the core allocates: a UvPtr closes its
// handle when it goes, and the close callback frees the memory (libuv touches
// a closing handle until then). The pattern of plugins/libvirt/event_bridge.cpp.
#pragma once

#include <uv.h>

#include <memory>
#include <utility>

namespace hostlet {

struct UvCloser {
  template <class T> void operator()(T* h) const {
    // Only the UvPtr closes its handle: nobody else calls uv_close on it.
    uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* closed) { delete reinterpret_cast<T*>(closed); });
  }
};
template <class T> using UvPtr = std::unique_ptr<T, UvCloser>;

// A new handle of type T, initialised with `init(loop, h, args...)` (uv_timer_init,
// uv_idle_init, ...). `data` is set on it. Null when init fails.
template <class T, class Init, class... Args>
UvPtr<T> make_uv(uv_loop_t* loop, void* data, Init init, Args&&... args) {
  auto* h = new T{};
  if (init(loop, h, std::forward<Args>(args)...) != 0) {
    delete h;  // never initialised: nothing for libuv to close
    return nullptr;
  }
  h->data = data;
  return UvPtr<T>(h);
}

}  // namespace hostlet
