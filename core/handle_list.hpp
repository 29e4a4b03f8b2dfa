// The libuv handles the host opens for a plugin (its timers and fd watches).
// A record is owned by its instance's list from the moment it is handed out
// until the plugin has released it *and* libuv has finished closing it,
// whichever comes last; the host may close it earlier (at the instance's
// stop) while the plugin still holds it. A list that goes while a close is
// pending hands the record to that close callback, so no handle memory is
// freed while libuv still touches it.
#pragma once

#include <uv.h>

#include <list>
#include <memory>

namespace hostlet {

// Rec provides: a libuv handle member `h`, and these fields (HandleRecBase).
template <class Rec> class HandleList;
template <class Rec> struct HandleRecBase {
  HandleList<Rec>* list = nullptr;  // null: the list is gone, the close callback frees
  typename std::list<std::unique_ptr<Rec>>::iterator it;
  bool closing = false;   // uv_close called
  bool closed = false;    // its close callback ran
  bool released = false;  // the plugin let go of it
};

template <class Rec> class HandleList {
 public:
  HandleList() = default;
  HandleList(const HandleList&) = delete;
  HandleList& operator=(const HandleList&) = delete;
  ~HandleList() {
    for (auto& rec : recs_) {
      if (rec->closed) continue;  // freed with the list
      close(rec.get());
      rec->list = nullptr;
      (void)rec.release();  // on_closed frees it
    }
  }

  // Takes a record whose handle is initialised; h.data is set to it.
  Rec* add(std::unique_ptr<Rec> rec) {
    Rec* r = rec.get();
    r->h.data = r;
    r->list = this;
    recs_.push_back(std::move(rec));
    r->it = std::prev(recs_.end());
    return r;
  }
  // Closes the handle; the record stays until released.
  void close(Rec* r) {
    if (r->closing) return;
    r->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&r->h), &HandleList::on_closed);
  }
  void close_all() {
    for (auto& rec : recs_) close(rec.get());
  }
  // The plugin let go: closed if it is not yet, freed once closed.
  void release(Rec* r) {
    if (r->released) return;
    r->released = true;
    if (r->closed) recs_.erase(r->it);
    else close(r);
  }
  bool active(const Rec* r) const { return !r->closing && !r->released; }
  auto begin() { return recs_.begin(); }
  auto end() { return recs_.end(); }

 private:
  static void on_closed(uv_handle_t* h) {
    Rec* r = static_cast<Rec*>(h->data);
    r->closed = true;
    if (!r->list) delete r;
    else if (r->released) r->list->recs_.erase(r->it);
  }
  std::list<std::unique_ptr<Rec>> recs_;
};

}  // namespace hostlet
