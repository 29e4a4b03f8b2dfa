/*
 * hostlet plugin ABI, version 1.1 (1.0 plus the entries marked "since 1.1").
 *
 * A plugin is a shared object that exports exactly one symbol,
 * `hostlet_plugin_entry` (see HOSTLET_PLUGIN_ENTRY), returning a pointer to a
 * constant descriptor. The agent (the "host") never links plugins against
 * itself: every host service reaches the plugin as a function table
 * (hostlet_host_api) passed to init.
 *
 * Conventions, valid for every declaration below:
 * - Names carry the prefix hostlet_ / HOSTLET_.
 * - Functions returning int return 0 on success and a negative errno value on
 *   failure; hostlet_strerror() turns such a value into text.
 * - Strings are NUL-terminated UTF-8. Unless a comment says otherwise, the
 *   caller keeps ownership of every pointer it passes, and the callee copies
 *   what it needs to keep; pointers handed to a callback are valid only for
 *   the duration of that callback.
 * - "Loop thread" is the single thread that runs the agent's event loop.
 *   Every plugin callback runs on the loop thread, except an offloaded work
 *   function, which runs on a pool thread. Host API functions may be called
 *   from the loop thread only, except those marked "Thread-safe".
 * - Signals: the host ignores SIGPIPE, so a write to a socket or pipe whose
 *   peer is gone fails with EPIPE instead of killing the agent (libvirt's
 *   client, for one, writes its socket with write(2)). Plugins leave signal
 *   dispositions alone.
 * - Liveness: nothing calls into an instance after its destroy. Every callback
 *   the host owes an instance -- an answer to call_action, the completion of
 *   publish_tracked, a post, a timer, a watch, an event -- is checked against
 *   the instance (and its generation: a reloaded instance is a new one) before
 *   it runs. Timers, watches and subscriptions stop at the instance's stop. An
 *   answer or a tracked completion still owed when destroy comes is delivered
 *   just before destroy, as an error ("instance 'NAME' is being destroyed";
 *   a tracked event with no outcomes), so that "exactly once" holds and the
 *   plugin can free what it attached to it; the real answer, should it come
 *   later, is dropped. A post still queued at destroy is dropped (its cb never
 *   runs: free its arg in destroy if it owns memory).
 * - Compatibility: the host loads a plugin when the majors are equal and the
 *   host's minor is >= the plugin's. Structs that carry a leading size field
 *   only grow at their end; a reader checks the size before touching a field
 *   added in a later minor version.
 *
 * This header is C99 and self-contained; it compiles alone as C and as C++.
 */
#ifndef HOSTLET_PLUGIN_H
#define HOSTLET_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <errno.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HOSTLET_ABI_MAJOR 1
#define HOSTLET_ABI_MINOR 1

/** The name of the one symbol a plugin exports. */
#define HOSTLET_PLUGIN_ENTRY_SYMBOL "hostlet_plugin_entry"

#if defined(__GNUC__)
#define HOSTLET_EXPORT __attribute__((visibility("default")))
#define HOSTLET_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HOSTLET_EXPORT
#define HOSTLET_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------------ */
/* Opaque handles. All are owned by the host; a plugin never frees them.     */

/** One plugin instance as the host sees it; valid from init until destroy returns. */
typedef struct hostlet_host hostlet_host;
/** A timer started with timer_start; valid until timer_stop, or until destroy
 * returns. After the instance's stop the host has closed it (it no longer
 * fires), but calling timer_stop on it until destroy is still allowed. */
typedef struct hostlet_timer hostlet_timer;
/** A file-descriptor watch; valid until watch_close, or until destroy returns
 * (closed by the host at stop, like a timer). */
typedef struct hostlet_watch hostlet_watch;
/** An event subscription; valid until unsubscribe, or until destroy returns
 * (no longer delivering after stop, like a timer). */
typedef struct hostlet_sub hostlet_sub;
/** An action call awaiting its answer; valid until it is answered. */
typedef struct hostlet_call hostlet_call;
/** An offloaded work item; valid until its done callback has returned. */
typedef struct hostlet_work hostlet_work;

/* ------------------------------------------------------------------------ */
/* Errors and levels.                                                        */

/**
 * Text for a value returned by any hostlet function (negative errno).
 * \return a static string; never NULL.
 */
static inline const char *hostlet_strerror(int err) {
  if (err == 0) return "ok";
  if (err == -ECANCELED) return "cancelled before it started";
  if (err == -ETIMEDOUT) return "deadline passed";
  if (err == -ESHUTDOWN) return "instance is shutting down";
  if (err == -EAGAIN) return "queue full, try again later";
  return strerror(err < 0 ? -err : err);
}

/* ------------------------------------------------------------------------ */
/* Event types.                                                              */

/*
 * Naming, the convention every shipped plugin follows:
 * - An event's source is the publishing instance's name, so its type does
 *   not repeat the plugin's or the instance's name: it says what happened,
 *   lowercase and dotted from the general to the particular,
 *   "<object>.<what happened>" ("domain.lifecycle", "connection.lost"), or
 *   one word when the plugin has one kind of object ("changed", "tick").
 *   Subscribers, rules and `hostlet-ctl events --type` match the type; rules
 *   match the source apart (`on: {source: virt, type: domain.*}`).
 * - A plugin that passes on types it does not choose (uevent's kernel
 *   ACTIONs, unixsock's client types) keeps them as they come, and puts its
 *   own events under a prefix those cannot take ("uevent.overflow").
 * - An action is "<instance>.<verb>": the plugin registers the verb,
 *   lowercase and dotted the same way ("domain.start", "read"); the host
 *   adds the instance name.
 */

/** The longest event type, in bytes. */
#define HOSTLET_EVENT_TYPE_MAX 256

/**
 * The event-type grammar, the one rule the host, the control socket and the
 * shipped plugins apply: 1 to HOSTLET_EVENT_TYPE_MAX bytes of ASCII letters,
 * digits and `.` `_` `-` `:`, e.g. "domain.lifecycle" or "libvirt.hook.qemu.prepare".
 * publish() refuses any other type with -EINVAL. Callable from any thread.
 * `type` (may be NULL) holds `n` bytes, not necessarily NUL-terminated.
 * \return 1 when it is valid, else 0.
 */
static inline int hostlet_event_type_valid_n(const char *type, size_t n) {
  size_t i;
  if (!type || n == 0 || n > HOSTLET_EVENT_TYPE_MAX) return 0;
  for (i = 0; i < n; i++) {
    char c = type[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-' || c == ':'))
      return 0;
  }
  return 1;
}
/** The same for a NUL-terminated string. */
static inline int hostlet_event_type_valid(const char *type) {
  size_t n = 0;
  if (!type) return 0;
  while (n <= HOSTLET_EVENT_TYPE_MAX && type[n]) n++;
  return hostlet_event_type_valid_n(type, n);
}

typedef enum hostlet_log_level {
  HOSTLET_LOG_ERROR = 0,
  HOSTLET_LOG_WARN = 1,
  HOSTLET_LOG_INFO = 2,
  HOSTLET_LOG_DEBUG = 3
} hostlet_log_level;

/* ------------------------------------------------------------------------ */
/* Attributes and events.                                                    */

/** A string key/value pair. Both pointers are owned by whoever built the array. */
typedef struct hostlet_attr {
  const char *key;
  const char *value;
} hostlet_attr;

/**
 * An event as delivered to a subscriber. Owned by the host; every pointer is
 * valid only during the callback that receives it.
 */
typedef struct hostlet_event {
  uint64_t id;                 /* unique per agent run, increasing */
  uint64_t timestamp_ns;       /* CLOCK_REALTIME at publication */
  const char *source;          /* instance name of the publisher ("hostlet" for the core) */
  const char *type;            /* dotted type, e.g. "domain.lifecycle" */
  const hostlet_attr *attrs;   /* n_attrs entries */
  size_t n_attrs;
} hostlet_event;

/* ------------------------------------------------------------------------ */
/* Config schema. The host validates the instance's YAML `config:` mapping   */
/* against this table before init; unknown keys, wrong types and values out */
/* of range are reported as FILE:LINE:COLUMN errors and init is not called.  */

typedef enum hostlet_config_type {
  HOSTLET_CONFIG_STRING = 1,      /* any scalar, read as text */
  HOSTLET_CONFIG_INT = 2,         /* 64-bit signed integer */
  HOSTLET_CONFIG_BOOL = 3,        /* true/false */
  HOSTLET_CONFIG_DOUBLE = 4,
  HOSTLET_CONFIG_DURATION = 5,    /* "250ms", "5s", "2m", "1h" or a plain number of ms; read as int ms */
  HOSTLET_CONFIG_SIZE = 6,        /* "64KiB", "1MiB", "2GiB" or a plain number of bytes; read as int */
  HOSTLET_CONFIG_STRING_LIST = 7, /* a YAML sequence of scalars (a single scalar is a list of one) */
  HOSTLET_CONFIG_INT_LIST = 8,    /* a YAML sequence of integers (a single integer is a list of one) */
  /* since 1.1 */
  /** A YAML sequence of flat mappings of scalars (a single mapping is a list of
   *  one), e.g. `[{source: notify, type: "vm.*", qos: 1}]`. config_list_size and
   *  config_list_string read it: item i as a JSON object whose values are
   *  strings, keys in the file's order ({"source":"notify","type":"vm.*","qos":"1"}). */
  HOSTLET_CONFIG_MAP_LIST = 9,
  HOSTLET_CONFIG_MAP = 10         /* a YAML mapping with names of the user's choice; see below */
} hostlet_config_type;

/*
 * Maps (since 1.1). A MAP key "K" holds a mapping whose keys the user names
 * (not containing '.'); the schema describes its values with keys below it,
 * a '*' segment standing for each name:
 *   "K.*"   (any scalar or list type): a map of values, e.g. env: {HOME: /root};
 *   "K.*.x" (any type, MAP included):  a map of mappings, each with the keys x...
 * The host validates each value (unknown keys with a suggestion, types,
 * bounds, required keys and defaults per entry) and the getters read it under
 * its concrete dotted name: config_string(host, "commands.backup.cwd", ...).
 * config_map_size / config_map_key list a map's names in document order.
 */

/** The key is required: the host reports its absence and never calls init. */
#define HOSTLET_CONFIG_REQUIRED 0x1u

/**
 * One config key. Tables end with an entry whose key is NULL.
 * `default_value` is the YAML text used when the key is absent (NULL: no
 * default; the getter then returns -ENOENT). `min`/`max` bound INT, DURATION,
 * SIZE and INT_LIST values when min < max, and the length of STRING values
 * when the type is STRING and min < max.
 */
typedef struct hostlet_config_key {
  const char *key;
  hostlet_config_type type;
  const char *default_value;
  const char *description;
  int64_t min;
  int64_t max;
  uint32_t flags;
} hostlet_config_key;

/** An action the plugin registers, for documentation (`hostlet-ctl plugins --describe`). Ends with name NULL. */
typedef struct hostlet_action_info {
  const char *name;        /* verb without the instance prefix, e.g. "domain.start" */
  const char *args;        /* human-readable argument list, e.g. "name|uuid" */
  const char *description;
} hostlet_action_info;

/** An event type the plugin publishes, for documentation. Ends with type NULL. */
typedef struct hostlet_event_info {
  const char *type;
  const char *attrs;       /* human-readable attribute list */
  const char *description;
} hostlet_event_info;

/* ------------------------------------------------------------------------ */
/* Callback types. Each runs on the loop thread unless stated otherwise.     */

/** Offloaded work. Runs on a pool thread; it must not call the host API except thread-safe entries. */
typedef void (*hostlet_work_fn)(void *arg);
/**
 * Completion of offloaded work. Runs on the loop thread exactly once per
 * accepted offload, with status:
 *   0            work ran to completion;
 *   -ECANCELED   offload_cancel() removed it before it started;
 *   -ETIMEDOUT   its deadline passed. If work had started it may still be
 *                running: the options' `late` callback (if any) receives arg on
 *                the loop once it ends. If it never started it never will, and
 *                `late` runs right after done returns. Either way, with a
 *                `late`, arg is last touched by late: free it there;
 *   -ESHUTDOWN   the instance is stopping and the work never started.
 * These are the lane's statuses: how the work itself went, it reports through
 * arg (the C++ wrapper does: an exception thrown by the work reaches done as
 * the code of a hostlet::Error, else -EIO, with its message; see plugin.hpp).
 * A lane whose queue is full refuses the offload itself (-EAGAIN from
 * offload(), done never runs).
 */
typedef void (*hostlet_done_fn)(void *arg, int status);
/** Late completion of work whose done already reported -ETIMEDOUT. Loop thread. */
typedef void (*hostlet_late_fn)(void *arg);
typedef void (*hostlet_timer_fn)(void *arg);
/** `events` is a mask of HOSTLET_WATCH_* that are ready (HOSTLET_WATCH_ERROR on poll error). */
typedef void (*hostlet_watch_fn)(void *arg, int fd, unsigned events);
typedef void (*hostlet_event_fn)(void *arg, const hostlet_event *event);
/** Runs a posted function on the loop thread. */
typedef void (*hostlet_post_fn)(void *arg);
/**
 * Handles a call to one of the plugin's actions. The plugin answers `call`
 * exactly once, now or later, with call_reply_ok or call_reply_error. A
 * non-zero return means "not accepted": the host answers the caller with that
 * error and the plugin must not answer `call`. -EAGAIN means "busy, try
 * again": the host keeps the call and calls the handler again with it
 * (ahead of later calls) once one of the instance's offloads has finished
 * and its lane has room, until the caller's wait (agent.action_wait) passes;
 * only then is the caller answered with an error. A call to an instance
 * whose lane is full waits the same way before the handler sees it, so a
 * handler that offloads one item per call never needs to return -EAGAIN.
 */
typedef int (*hostlet_action_fn)(void *arg, hostlet_call *call, const hostlet_attr *attrs,
                                 size_t n_attrs);

/** An action's answer, as seen by a caller of call_action. Owned by the host. */
typedef struct hostlet_result {
  int ok;                      /* 1: ok, 0: error */
  const char *error;           /* when !ok: the message; else NULL */
  const hostlet_attr *attrs;   /* when ok */
  size_t n_attrs;
  /**
   * When ok: a JSON text, or NULL. The host checked it when the action
   * answered (call_reply_ok): it is exactly one valid JSON value, on one line
   * (raw line breaks, which valid JSON holds only as whitespace between
   * tokens, were replaced with spaces). A plugin may pass it on as is.
   */
  const char *data_json;
} hostlet_result;
typedef void (*hostlet_result_fn)(void *arg, const hostlet_result *result);

/** What one action started by a rule for an event answered. Owned by the host. */
typedef struct hostlet_outcome {
  const char *action;          /* full action name, e.g. "virt.domain.start" */
  const char *rule;            /* the rule, as "FILE:LINE" */
  hostlet_result result;
} hostlet_outcome;
/**
 * Completion of a tracked event (publish_tracked): runs on the loop thread
 * once every action that rules started for the event has answered (n = 0
 * when no rule matched). `outcomes` is valid only during the callback.
 */
typedef void (*hostlet_event_done_fn)(void *arg, uint64_t event_id, const hostlet_outcome *outcomes,
                                      size_t n_outcomes);

/* Watch event bits. */
#define HOSTLET_WATCH_READABLE 0x1u
#define HOSTLET_WATCH_WRITABLE 0x2u
#define HOSTLET_WATCH_PRIORITY 0x4u /* POLLPRI: sysfs_notify, out-of-band data */
#define HOSTLET_WATCH_ERROR 0x8u    /* only ever reported, never requested */

/** Options for offload(); NULL means all defaults. */
typedef struct hostlet_offload_opts {
  size_t struct_size;      /* sizeof(hostlet_offload_opts) */
  uint64_t timeout_ms;     /* 0: the instance's default (`offload_timeout`, 0 = none) */
  hostlet_late_fn late;    /* after a -ETIMEDOUT done: receives arg once work can no longer touch it; may be NULL */
} hostlet_offload_opts;

/* ------------------------------------------------------------------------ */
/* Health and metrics (since 1.1).                                           */

/** What an instance says of itself (set_health); "ok" until it says otherwise. */
typedef enum hostlet_health {
  HOSTLET_HEALTH_OK = 0,       /* doing its job */
  HOSTLET_HEALTH_DEGRADED = 1, /* running, but part of its job cannot be done (e.g. its peer is unreachable) */
  HOSTLET_HEALTH_FAILED = 2    /* running, but cannot do its job at all */
} hostlet_health;

/**
 * The metrics writer handed to a plugin's collect (opaque, owned by the
 * host, valid during that call only). A family is opened with metric_family
 * and its samples follow with metric_sample / metric_histogram; the next
 * metric_family closes it.
 */
typedef struct hostlet_metrics hostlet_metrics;

typedef enum hostlet_metric_type {
  HOSTLET_METRIC_COUNTER = 1,   /* the family name ends in "_total" */
  HOSTLET_METRIC_GAUGE = 2,
  HOSTLET_METRIC_HISTOGRAM = 3  /* samples only through metric_histogram */
} hostlet_metric_type;

/** Exposition formats of metrics_scrape. */
typedef enum hostlet_metrics_format {
  HOSTLET_METRICS_TEXT = 0,        /* Prometheus text format 0.0.4 */
  HOSTLET_METRICS_OPENMETRICS = 1  /* OpenMetrics 1.0.0 text, ends with "# EOF" */
} hostlet_metrics_format;

/** Options for metrics_scrape; NULL means all defaults. */
typedef struct hostlet_scrape_opts {
  size_t struct_size;             /* sizeof(hostlet_scrape_opts) */
  hostlet_metrics_format format;
  /** How long to wait for instances whose refresh() started a collection
   *  (0: do not wait); after it their collect serves the data they have. */
  uint64_t timeout_ms;
} hostlet_scrape_opts;

/**
 * The exposition text of a scrape: `text` holds `len` bytes (NUL-terminated
 * too), valid during the callback only. `text` is NULL (len 0) when the
 * scraping instance is destroyed before the scrape is over.
 */
typedef void (*hostlet_scrape_fn)(void *arg, const char *text, size_t len);
/** The agent's health: healthy 1 or 0 and a one-line JSON object, valid during the callback only. */
typedef void (*hostlet_health_fn)(void *arg, int healthy, const char *json);

/* ------------------------------------------------------------------------ */
/* The host function table.                                                  */

/**
 * Host services for one instance. The table is owned by the host and valid
 * for the life of the process. It starts with its size and only grows at the
 * end: a plugin built against a later minor checks `struct_size` (or the
 * entry for NULL) before using an entry added after 1.0.
 */
typedef struct hostlet_host_api {
  size_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;

  /* --- identity and logging --- */

  /** The instance name (the YAML `name`). Owned by the host, valid until destroy. Thread-safe. */
  const char *(*instance_name)(hostlet_host *host);
  /** Writes one log line "LEVEL [instance] message". Thread-safe. */
  void (*log)(hostlet_host *host, hostlet_log_level level, const char *fmt, ...) HOSTLET_PRINTF(3, 4);
  /** log() with a va_list. Thread-safe. */
  void (*logv)(hostlet_host *host, hostlet_log_level level, const char *fmt, va_list ap);
  /** Monotonic time in nanoseconds. Thread-safe. */
  uint64_t (*now_ns)(hostlet_host *host);

  /* --- config (values after defaults; valid from init to destroy) --- */

  /**
   * \return 0 and *out (owned by the host) ; -ENOENT key absent without default;
   *         -EINVAL key not declared with a compatible type.
   */
  int (*config_string)(hostlet_host *host, const char *key, const char **out);
  /** INT, DURATION (ms) and SIZE (bytes) keys. Errors as config_string. */
  int (*config_int)(hostlet_host *host, const char *key, int64_t *out);
  int (*config_bool)(hostlet_host *host, const char *key, int *out);
  int (*config_double)(hostlet_host *host, const char *key, double *out);
  /** Number of items of a STRING_LIST, INT_LIST or MAP_LIST key (0 when absent). -EINVAL: not a list key. */
  int (*config_list_size)(hostlet_host *host, const char *key, size_t *out);
  /** Item i of a list key, as text (INT_LIST items too; a MAP_LIST item as JSON). -ERANGE: i out of range. */
  int (*config_list_string)(hostlet_host *host, const char *key, size_t i, const char **out);

  /* --- offload --- */

  /**
   * Runs work(arg) on a pool thread through the instance's lane, then
   * done(arg, status) on the loop thread exactly once (see hostlet_done_fn).
   * `out` (may be NULL) receives a handle for offload_cancel, valid until done runs.
   * \return 0 accepted (done will run); -EAGAIN lane queue full (done will not run);
   *         -ESHUTDOWN instance stopping (done will not run); -EINVAL bad arguments.
   */
  int (*offload)(hostlet_host *host, const hostlet_offload_opts *opts, hostlet_work_fn work,
                 hostlet_done_fn done, void *arg, hostlet_work **out);
  /**
   * Cancels work that has not started: its done then runs with -ECANCELED.
   * \return 0 cancelled; -EBUSY already running or finished.
   */
  int (*offload_cancel)(hostlet_work *work);

  /* --- timers and fd watches (handles closed by the host at the latest when stop completes) --- */

  /**
   * Calls cb(arg) after timeout_ms, then every repeat_ms if repeat_ms > 0.
   * \return 0 and *out; -ENOMEM; -ESHUTDOWN instance stopping.
   */
  int (*timer_start)(hostlet_host *host, uint64_t timeout_ms, uint64_t repeat_ms,
                     hostlet_timer_fn cb, void *arg, hostlet_timer **out);
  /** Stops and frees the timer; the callback will not run again. Safe inside the callback. */
  void (*timer_stop)(hostlet_timer *timer);
  /**
   * Calls cb when fd has any of `events` (HOSTLET_WATCH_*). The plugin keeps
   * ownership of fd and closes it only after watch_close. One watch per fd.
   * \return 0 and *out; -EEXIST fd already watched; -EBADF fd not open;
   *         -EPERM fd cannot be polled (a regular file); -ENOMEM;
   *         -ESHUTDOWN instance stopping; -EINVAL host, cb or out NULL.
   */
  int (*watch_fd)(hostlet_host *host, int fd, unsigned events, hostlet_watch_fn cb, void *arg,
                  hostlet_watch **out);
  /** Changes the event mask; 0 pauses the watch. \return 0 or -EINVAL. */
  int (*watch_update)(hostlet_watch *watch, unsigned events);
  /** Stops and frees the watch; the callback will not run again. Safe inside the callback. */
  void (*watch_close)(hostlet_watch *watch);
  /**
   * Runs cb(arg) on the loop thread soon. Thread-safe: the way for a pool
   * thread or a library's own thread to hand something to the loop. Allowed
   * until destroy returns (`host` is freed after it); cb runs also while the
   * instance stops, and is dropped if the instance is destroyed first.
   * \return 0; -EINVAL host or cb NULL.
   */
  int (*post)(hostlet_host *host, hostlet_post_fn cb, void *arg);

  /* --- events --- */

  /**
   * Publishes an event with source = this instance. The host copies type and attrs.
   * \return 0 queued; -EAGAIN event queue full (the event is counted as dropped);
   *         -EINVAL type not valid (hostlet_event_type_valid), an attribute key empty or NULL.
   */
  int (*publish)(hostlet_host *host, const char *type, const hostlet_attr *attrs, size_t n_attrs);
  /**
   * publish() that also reports when the event's consequences are over:
   * done(arg, id, outcomes, n) runs exactly once, on the loop thread, after
   * the event was dispatched and every action a rule started for it answered
   * (or, with n = 0, just before the instance's destroy if that comes first).
   * *id_out (may be NULL) receives the event id.
   * \return 0 queued (done will run); -EAGAIN queue full (done will not run); -EINVAL.
   */
  int (*publish_tracked)(hostlet_host *host, const char *type, const hostlet_attr *attrs,
                         size_t n_attrs, hostlet_event_done_fn done, void *arg, uint64_t *id_out);
  /**
   * Subscribes cb to events whose type matches `type_glob` (fnmatch syntax;
   * an exact type is the fast path). \return 0 and *out; -EINVAL bad pattern.
   */
  int (*subscribe)(hostlet_host *host, const char *type_glob, hostlet_event_fn cb, void *arg,
                   hostlet_sub **out);
  void (*unsubscribe)(hostlet_sub *sub);

  /* --- actions --- */

  /**
   * Registers the action "<instance>.<verb>". Allowed from init on.
   * \return 0; -EEXIST name taken; -EINVAL empty or invalid verb.
   */
  int (*register_action)(hostlet_host *host, const char *verb, hostlet_action_fn fn, void *arg);
  /** Value of attribute `key` of the call, or NULL. Owned by the host, valid until the call is answered. */
  const char *(*call_attr)(hostlet_call *call, const char *key);
  /**
   * Answers a call with success: attrs are copied; data_json (may be NULL)
   * must be a JSON text and is copied (with raw line breaks blanked, see
   * hostlet_result). Frees `call`.
   * \return 0; -EINVAL data_json is not valid JSON (the caller then gets an error).
   */
  int (*call_reply_ok)(hostlet_call *call, const hostlet_attr *attrs, size_t n_attrs,
                       const char *data_json);
  /** Answers a call with an error message (copied). Frees `call`. \return 0. */
  int (*call_reply_error)(hostlet_call *call, const char *message);
  /**
   * Calls any registered action by full name; cb(arg, result) runs on the loop
   * thread exactly once, never before call_action returns (or, with an
   * error result, just before the caller's destroy if that comes first).
   * \return 0 (cb will run); -ENOENT no such action; -ENOMEM; -EINVAL
   *         (cb will not run).
   */
  int (*call_action)(hostlet_host *host, const char *action, const hostlet_attr *attrs,
                     size_t n_attrs, hostlet_result_fn cb, void *arg);

  /* --- lifecycle --- */

  /** Tells the host that an asynchronous stop has finished. Call once per stop. */
  void (*stopped)(hostlet_host *host);

  /* --- direct loop access --- */

  /**
   * The agent's libuv loop (a uv_loop_t*), for plugins that link libuv
   * themselves, e.g. to serve a socket with uv_pipe_t. Such a plugin closes
   * its own handles in stop and calls stopped() from the last close callback.
   * Loop thread only; may return NULL if the host is not libuv-based.
   */
  void *(*uv_loop)(hostlet_host *host);

  /* --- since 1.1: error messages, event ids --- */

  /**
   * Sets the message for the error the running callback is about to return:
   * init's (shown verbatim by `hostlet --check`, the reload reply and
   * `status` as the last result) or an action handler's non-zero return
   * (the caller's error message). Formatted like log(). The host clears it
   * when the callback returns; a message set with nothing failing is
   * ignored. Loop thread.
   */
  void (*set_error)(hostlet_host *host, const char *fmt, ...) HOSTLET_PRINTF(2, 3);
  /** publish() that also gives the event's id in *id_out (may be NULL). Returns as publish. */
  int (*publish_id)(hostlet_host *host, const char *type, const hostlet_attr *attrs, size_t n_attrs,
                    uint64_t *id_out);

  /* --- since 1.1: health --- */

  /**
   * Reports the instance's health, with a short reason (may be NULL for
   * none). `hostlet-ctl status`, the hostlet_instance_health metric and
   * the agent's health show it; a change publishes the event
   * "instance.health" from source "hostlet" (attrs instance, health,
   * previous, reason). An instance starts as ok; a reload starts the new
   * instance as ok. \return 0; -EINVAL bad health value.
   */
  int (*set_health)(hostlet_host *host, hostlet_health health, const char *reason);

  /* --- since 1.1: metrics --- */

  /**
   * Opens a metric family in a collect(): `name` matches
   * [a-zA-Z_:][a-zA-Z0-9_:]* (a counter's ends in "_total", which the host
   * strips in OpenMetrics' TYPE line), `help` is one line of text (may be
   * NULL), `unit` (may be NULL or "") is a suffix of the name, e.g.
   * "bytes" for "..._bytes_total". The host prefixes nothing.
   * Families are per scrape, not per instance: when another writer (a
   * second instance of the plugin) has opened the same family, the samples
   * join it, and the exposition lists it once.
   * \return 0; -EINVAL bad name, type or unit; -EEXIST the family was
   *         already written in this scrape with another type (its samples
   *         are then refused).
   */
  int (*metric_family)(hostlet_metrics *m, const char *name, hostlet_metric_type type, const char *help,
                       const char *unit);
  /**
   * One sample of the open counter or gauge family. Label names match
   * [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__"; label values are any
   * UTF-8 and escaped by the host. \return 0; -EINVAL bad label name, no
   * open family or a histogram family; -EEXIST same label set twice.
   */
  int (*metric_sample)(hostlet_metrics *m, const hostlet_attr *labels, size_t n_labels, double value);
  /**
   * One histogram of the open histogram family: `n_buckets` increasing
   * upper bounds (without +Inf) and the cumulative count of each, the sum
   * and the total count (the +Inf bucket). \return 0; -EINVAL as
   * metric_sample, bounds not increasing or counts decreasing; -EEXIST.
   */
  int (*metric_histogram)(hostlet_metrics *m, const hostlet_attr *labels, size_t n_labels,
                          const double *upper_bounds, const uint64_t *cumulative_counts, size_t n_buckets,
                          double sum, uint64_t count);
  /** Ends the collection a refresh() returning 1 started (see hostlet_plugin.refresh). */
  void (*metrics_refreshed)(hostlet_host *host);
  /**
   * For a plugin that serves metrics (e.g. over HTTP): asks every running
   * instance that has refresh() to refresh, waits for them up to the
   * timeout, then renders the agent's own metrics and every running
   * instance's collect() into one exposition. Scrapes that overlap share
   * the refreshes in flight. cb(arg, text, len) runs exactly once on the
   * loop thread, never before metrics_scrape returns (text NULL if this
   * instance is destroyed first). \return 0 (cb will run); -EINVAL.
   */
  int (*metrics_scrape)(hostlet_host *host, const hostlet_scrape_opts *opts, hostlet_scrape_fn cb, void *arg);
  /**
   * The agent's health, now, synchronously: healthy (1) while the loop's
   * lateness over the last 10 s stays under max_lag_ms and every instance
   * runs and reports no "failed" health; cb gets it and a JSON object
   * {"status":"ok"|"unhealthy","loop_lag_ms":N,"instances":{NAME:{"state":..,"health":..,"reason":..}}}
   * before health returns. \return 0; -EINVAL.
   */
  int (*agent_health)(hostlet_host *host, uint64_t max_lag_ms, hostlet_health_fn cb, void *arg);

  /* --- since 1.1: the fd store (reload and socket activation) --- */

  /**
   * Leaves `fd` with the host under `name` (1 to 64 of [A-Za-z0-9_.-]) for
   * the next instance of this name: the new version of a reload (by
   * `hostlet-ctl reload`, SIGHUP or `watch: true` alike), or the old
   * version started again when the new one fails to start (so a new
   * version that cannot use what it took should keep it again in its stop,
   * or leave it untaken). A socket owner keeps its listening socket and
   * each connection whose state it can write down (buffered input, what
   * the client is owed: finish writing replies first), and reads the peer
   * credentials again after taking a connection; unixsock does so
   * (plugins/unixsock/plugin.cpp). `state` (len bytes,
   * copied, at most 1 MiB; NULL when len is 0) travels with it: start it
   * with a version number of its layout, so that a newer plugin reads an
   * older one's state (and an older one refuses a newer). Call it from
   * stop(), before closing the handle that owned fd: give the host a dup()
   * of it (libuv closes the handle's own fd). The host owns fd once this
   * returns 0: what the successor does not take by the end of the reload is
   * closed and counted (hostlet_fdstore_closed_total).
   * \return 0; -ESHUTDOWN no successor will start (agent stopping,
   *         instance removed): close and clean up as always; -EEXIST name
   *         already kept; -EINVAL; -E2BIG state too large; -EMFILE too many.
   * Loop thread.
   */
  int (*keep_fd)(hostlet_host *host, const char *name, int fd, const void *state, size_t len);
  /**
   * Takes back the fd the previous instance of this name kept under `name`,
   * or one the service manager passed (systemd socket activation: a socket
   * with FileDescriptorName=<instance>.<name>, or =<instance> alone). The
   * state is copied into buf (cap bytes); *len_out (may be NULL) gets its
   * size (0 for an activated socket). Call it from start().
   * \return the fd (>= 0, now the caller's); -ENOENT nothing to take (bind
   *         your own); -ENOBUFS the state needs *len_out bytes (the fd stays
   *         in the store: call again with room); -EINVAL. Loop thread.
   */
  int (*take_fd)(hostlet_host *host, const char *name, void *buf, size_t cap, size_t *len_out);

  /* --- since 1.1: maps in the config (HOSTLET_CONFIG_MAP) --- */

  /**
   * Number of names in a MAP key's mapping, e.g. key "commands" or
   * "commands.backup.env" (0 when absent). \return 0; -EINVAL not a MAP key.
   */
  int (*config_map_size)(hostlet_host *host, const char *key, size_t *out);
  /**
   * Name i of a MAP key, in document order; *out is owned by the host, valid
   * until destroy. \return 0; -ERANGE i out of range; -EINVAL not a MAP key.
   */
  int (*config_map_key)(hostlet_host *host, const char *key, size_t i, const char **out);

  /* later additions of 1.1 and later minors append here */
} hostlet_host_api;

/* ------------------------------------------------------------------------ */
/* The plugin descriptor.                                                    */

/**
 * What the plugin's entry returns. Constant, owned by the plugin, valid while
 * the plugin is loaded.
 *
 * Lifecycle, every call on the loop thread:
 *   init(host, api, &state)  validate what the schema cannot, allocate. No I/O yet.
 *                            Non-zero: the host logs it, calls nothing else and unloads.
 *   start(state)             open sockets, subscribe, start timers. Non-zero: the
 *                            host calls stop, then destroy.
 *   stop(state)              release; asynchronous: the plugin calls api->stopped(host)
 *                            once everything it opened itself is closed (possibly from
 *                            inside stop). The host closes the timers, watches and
 *                            subscriptions it handed out, and reports queued work as
 *                            -ESHUTDOWN.
 *   destroy(state)           free the state. Answers still owed arrive just before it
 *                            (see "Liveness" above); no callback of the plugin runs
 *                            after it.
 */
typedef struct hostlet_plugin {
  /* Versions this plugin was built against; set with HOSTLET_PLUGIN_HEADER. */
  uint32_t abi_major;
  uint32_t abi_minor;
  size_t struct_size;

  const char *name;          /* plugin name, e.g. "unixsock" */
  const char *version;       /* free-form version string */
  const char *description;

  const hostlet_config_key *config;     /* ends with key NULL; may be NULL */
  const hostlet_action_info *actions;   /* ends with name NULL; may be NULL */
  const hostlet_event_info *events;     /* ends with type NULL; may be NULL */

  int (*init)(hostlet_host *host, const hostlet_host_api *api, void **state);
  int (*start)(void *state);
  void (*stop)(void *state);
  void (*destroy)(void *state);

  /* --- since 1.1 (the host reads them only when struct_size covers them) --- */

  /**
   * Writes the instance's metrics with the writer entries of the host API
   * (metric_family, metric_sample, metric_histogram), from data it already
   * has: it must not block or wait. May be NULL. Loop thread, while started.
   */
  void (*collect)(void *state, hostlet_metrics *out);
  /**
   * Before a scrape: 0 when the data collect would write is fresh enough
   * (the plugin's own rule, e.g. a max age), 1 when the plugin has started
   * to collect fresher data and will call api->metrics_refreshed(host) when
   * it has (the host calls refresh again only after that). May be NULL.
   */
  int (*refresh)(void *state);
} hostlet_plugin;

/** Fills the version fields of a hostlet_plugin initializer. */
#define HOSTLET_PLUGIN_HEADER \
  .abi_major = HOSTLET_ABI_MAJOR, .abi_minor = HOSTLET_ABI_MINOR, .struct_size = sizeof(hostlet_plugin)

/** The type of the entry symbol. */
typedef const hostlet_plugin *(*hostlet_plugin_entry_fn)(void);

/** The entry symbol each plugin defines (declared here so C++ plugins get C linkage). */
HOSTLET_EXPORT const hostlet_plugin *hostlet_plugin_entry(void);

/**
 * Declares the entry symbol; follow with a body returning the descriptor:
 *   HOSTLET_PLUGIN_ENTRY { return &my_plugin; }
 */
#define HOSTLET_PLUGIN_ENTRY HOSTLET_EXPORT const hostlet_plugin *hostlet_plugin_entry(void)

#ifdef __cplusplus
}
#endif
#endif /* HOSTLET_PLUGIN_H */
