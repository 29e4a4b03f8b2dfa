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
// the next attach; the last release() therefore first waits for the
// connection closes started here (below).
//
// Sinks and closes. Whatever libvirt keeps a pointer to must outlive the
// plugin too: the callbacks registered on a connection (close, domain events)
// are this library's functions, forwarding to the plugin through a "sink"
// that the plugin detaches synchronously. Closing a connection (deregistering
// those callbacks, dropping the last reference) talks to the daemon, so it
// runs on a short-lived thread of this library, never on the loop and never
// in plugin code: the plugin's stop need not wait for a daemon that hangs.
#pragma once

#include <stddef.h>

#include <libvirt/libvirt.h>
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
 * The last one waits for the closes still running (see below; at most 2 s,
 * then it goes on: a close can block for as long as a hung daemon and
 * keepalive allow), runs pending free callbacks, applies pending changes, and
 * closes every uv handle of the bridge; `done(arg)` (may be NULL) then runs
 * on the loop once all of them are closed. When other references remain,
 * done(arg) runs on the loop soon. Either way never inside release(), and
 * always from this library's code: a plugin may call api->stopped() from
 * `done` and be unloaded right after.
 */
HOSTLET_VIRT_EVENTS_API void hostlet_virt_events_release(void (*done)(void *arg), void *arg);

/**
 * Forgets the done callbacks of pending releases whose arg is `arg`. Loop
 * thread. For a plugin destroyed before its release completed.
 */
HOSTLET_VIRT_EVENTS_API void hostlet_virt_events_cancel_done(void *arg);

/** Callbacks a sink forwards to. */
typedef struct hostlet_virt_sink_ops {
  /* Domain events: loop thread (libvirt dispatches them from its event loop). */
  void (*lifecycle)(void *arg, virDomainPtr dom, int event, int detail);
  void (*reboot)(void *arg, virDomainPtr dom);
  void (*watchdog)(void *arg, virDomainPtr dom, int action);
  /* The connection closed (virConnectCloseReason). Any thread: a pool thread
   * when keepalive expires during a call, the loop on EOF. */
  void (*closed)(void *arg, int reason);
} hostlet_virt_sink_ops;

typedef struct hostlet_virt_sink hostlet_virt_sink;

/** What hostlet_virt_sink_register() registered. */
#define HOSTLET_VIRT_SINK_CLOSE 0x1u
#define HOSTLET_VIRT_SINK_LIFECYCLE 0x2u
#define HOSTLET_VIRT_SINK_REBOOT 0x4u
#define HOSTLET_VIRT_SINK_WATCHDOG 0x8u

/**
 * A sink forwarding to ops(arg). `ops` and `arg` stay the caller's and must
 * be valid until hostlet_virt_sink_detach() (or _close) returns. Any thread.
 * \return the sink, or NULL when out of memory.
 */
HOSTLET_VIRT_EVENTS_API hostlet_virt_sink *hostlet_virt_sink_new(const hostlet_virt_sink_ops *ops, void *arg);

/**
 * Registers the sink on `conn`: the close callback and, when domain_events is
 * non-zero, the lifecycle, reboot and watchdog events. It talks to the daemon:
 * call it on a pool thread. Failures are described in err (may be NULL).
 * \return the HOSTLET_VIRT_SINK_* bits that were registered.
 */
HOSTLET_VIRT_EVENTS_API unsigned hostlet_virt_sink_register(hostlet_virt_sink *sink, virConnectPtr conn,
                                                            int domain_events, char *err, size_t errlen);

/**
 * Stops forwarding: once it returns, no ops function runs or will run. Any
 * thread; it waits for a callback running on another thread (one that runs
 * on the calling thread, i.e. detach from inside a callback, is not waited for).
 */
HOSTLET_VIRT_EVENTS_API void hostlet_virt_sink_detach(hostlet_virt_sink *sink);

/**
 * Detaches the sink, then on a thread of this library deregisters it from
 * `conn` and drops the caller's reference to `conn` (may be NULL); the sink
 * is freed afterwards. Takes ownership of both. Any thread.
 */
HOSTLET_VIRT_EVENTS_API void hostlet_virt_sink_close(hostlet_virt_sink *sink, virConnectPtr conn);

/**
 * Drops one reference to conn (virConnectClose). On the loop thread it
 * happens on a worker thread of this library (one for all such drops): the
 * last reference of a remote connection talks to the daemon. Elsewhere it
 * happens right here. Any thread.
 */
HOSTLET_VIRT_EVENTS_API void hostlet_virt_conn_unref(virConnectPtr conn);

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
  size_t closes_running; /* sink closes and unrefs not finished yet */
  size_t sinks;          /* sinks not freed yet */
} hostlet_virt_events_info;

/** Fills *out. Thread-safe. */
HOSTLET_VIRT_EVENTS_API void hostlet_virt_events_get_info(hostlet_virt_events_info *out);

#ifdef __cplusplus
}
#endif
