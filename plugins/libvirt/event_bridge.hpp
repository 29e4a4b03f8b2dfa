// libvirt's event loop on libuv: the library hostlet-virt-events.
//
// libvirt needs an event-loop implementation for keepalive and for domain
// events. virEventRegisterImpl() installs one once per process, it can never
// be removed, and libvirt keeps calling its functions for the life of the
// process. This code therefore lives in its own small library linked with
// -z nodelete, so it stays mapped when the plugin that loaded it is dlclosed
// and loaded again (plugin reload).
//
// One agent process = one loop: the bridge is attached to one uv loop at a
// time. It is reference-counted by the plugin instances that use it: the
// first acquire() attaches it (and, the first time ever, registers it with
// libvirt), the last release() detaches it by closing every uv handle it
// owns, so uv_loop_close() can return 0 at agent shutdown. A later acquire()
// attaches it again, to the same loop or to another one.
//
// Threads: libvirt calls the bridge from any thread, re-entrantly from inside
// its own callbacks too. Records live under one mutex; a change made off the
// loop thread is applied on the loop after a uv_async_send; libvirt's
// callbacks run on the loop thread with the mutex released; libvirt's free
// callbacks are deferred to the loop (libvirt may hold its own locks when it
// removes a handle). Each watched fd is dup()ed and the duplicate is polled:
// libvirt may close its fd right after removeHandle, and libuv forbids two
// polls on one fd. uv_poll_init() sets O_NONBLOCK on the (shared) file
// description; libvirt's sockets are non-blocking already. Timeouts: 0 is a
// uv_idle (runs every iteration), >0 a repeating uv_timer restarted by every
// update, -1 stopped.
//
// While detached, libvirt may still add, update and remove records (a
// connection that outlives every instance): they are kept and polled again on
// the next attach. Free callbacks of records removed while detached run at
// the next attach; the plugin avoids this by closing its connections before
// its last release().
#pragma once

#include <stddef.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define HOSTLET_VIRT_EVENTS_API __attribute__((visibility("default")))
#else
#define HOSTLET_VIRT_EVENTS_API
#endif

/**
 * Takes a reference on the bridge for `loop`. Call it on the loop's thread,
 * before the first virConnectOpen*() that should use events or keepalive;
 * that thread becomes the bridge's loop thread. The first call in the process
 * registers the bridge with virEventRegisterImpl() and silences libvirt's
 * default error printer (virSetErrorFunc; errors are reported by the plugin).
 * \return 0; -EBUSY attached to another loop (one process, one loop);
 *         -EINVAL loop is NULL; a negative uv error from uv_async_init.
 */
HOSTLET_VIRT_EVENTS_API int hostlet_virt_events_acquire(uv_loop_t *loop);

/**
 * Drops a reference taken by hostlet_virt_events_acquire(). Loop thread.
 * The last one runs pending free callbacks, applies pending changes, and
 * closes every uv handle of the bridge; `done(arg)` (may be NULL) then runs
 * on the loop once all of them are closed. When other references remain,
 * done(arg) runs on the loop soon. Either way never inside release(), and
 * always from this library's code: a plugin may call api->stopped() from
 * `done` and be unloaded right after.
 */
HOSTLET_VIRT_EVENTS_API void hostlet_virt_events_release(void (*done)(void *arg), void *arg);

/** A snapshot of the bridge's state, for tests and diagnostics. */
typedef struct hostlet_virt_events_info {
  int registered;        /* virEventRegisterImpl() was called */
  int attached;          /* a loop is attached */
  int refs;              /* acquire() minus release() */
  size_t handles;        /* live handle records (added, not removed) */
  size_t timeouts;       /* live timeout records */
  size_t pending_frees;  /* free callbacks waiting for the loop */
  size_t open_uv_handles;/* uv handles created and not yet closed */
  unsigned long long dispatched; /* libvirt callbacks invoked so far */
} hostlet_virt_events_info;

/** Fills *out. Thread-safe. */
HOSTLET_VIRT_EVENTS_API void hostlet_virt_events_get_info(hostlet_virt_events_info *out);

#ifdef __cplusplus
}
#endif
