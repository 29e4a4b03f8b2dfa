/*
 * Fixture: a plugin built against the frozen ABI 1.0 header
 * (tests/sdk/abi-1.0), never against the current one: it must keep loading,
 * working and reloading under a 1.1 host. It uses one entry of each group
 * of the 1.0 table: config, offload, timer, publish, register_action.
 *   action greet (name): offloaded; answers text="<greeting>, <name>" and abi=1.0
 *   event abi10.tick every `tick` (count=N), from start on
 */
#include <hostlet/plugin.h>
#include <stdio.h>
#include <stdlib.h>

#if HOSTLET_ABI_MINOR != 0
#error "abi10.c must be built against the frozen 1.0 header"
#endif

typedef struct state {
  hostlet_host *host;
  const hostlet_host_api *api;
  const char *greeting;
  int64_t tick_ms;
  hostlet_timer *timer;
  unsigned ticks;
} state;

typedef struct job {
  state *st;
  hostlet_call *call;
  char text[256];
  char name[128];
} job;

static const hostlet_config_key config[] = {
  {.key = "greeting", .type = HOSTLET_CONFIG_STRING, .default_value = "hello", .description = "the greeting"},
  {.key = "tick", .type = HOSTLET_CONFIG_DURATION, .default_value = "0", .description = "abi10.tick period; 0: none"},
  {.key = NULL},
};

static void work(void *arg) {
  job *j = arg;
  snprintf(j->text, sizeof j->text, "%s, %s", j->st->greeting, j->name);
}
static void done(void *arg, int status) {
  job *j = arg;
  if (status != 0) {
    j->st->api->call_reply_error(j->call, hostlet_strerror(status));
  } else {
    hostlet_attr out[] = {{"text", j->text}, {"abi", "1.0"}};
    j->st->api->call_reply_ok(j->call, out, 2, NULL);
  }
  free(j);
}
static int greet(void *arg, hostlet_call *call, const hostlet_attr *attrs, size_t n) {
  state *st = arg;
  const char *name = st->api->call_attr(call, "name");
  job *j;
  int r;
  (void)attrs;
  (void)n;
  j = calloc(1, sizeof *j);
  if (!j) return -ENOMEM;
  j->st = st;
  j->call = call;
  snprintf(j->name, sizeof j->name, "%s", name ? name : "world");
  r = st->api->offload(st->host, NULL, work, done, j, NULL);
  if (r != 0) free(j);
  return r;
}
static void on_tick(void *arg) {
  state *st = arg;
  char count[32];
  hostlet_attr a[] = {{"count", count}};
  snprintf(count, sizeof count, "%u", ++st->ticks);
  st->api->publish(st->host, "abi10.tick", a, 1);
}

static int init(hostlet_host *h, const hostlet_host_api *api, void **out) {
  state *st = calloc(1, sizeof *st);
  int r;
  if (!st) return -ENOMEM;
  st->host = h;
  st->api = api;
  api->config_string(h, "greeting", &st->greeting);
  api->config_int(h, "tick", &st->tick_ms);
  r = api->register_action(h, "greet", greet, st);
  if (r != 0) {
    free(st);
    return r;
  }
  *out = st;
  return 0;
}
static int start(void *s) {
  state *st = s;
  if (st->tick_ms <= 0) return 0;
  return st->api->timer_start(st->host, (uint64_t)st->tick_ms, (uint64_t)st->tick_ms, on_tick, st, &st->timer);
}
static void stop(void *s) {
  state *st = s;
  st->api->stopped(st->host);
}
static void destroy(void *s) { free(s); }

static const hostlet_plugin desc = {
  HOSTLET_PLUGIN_HEADER,
  .name = "abi10", .version = "1.0", .description = "fixture: built against the frozen ABI 1.0 header",
  .config = config, .init = init, .start = start, .stop = stop, .destroy = destroy,
};
HOSTLET_PLUGIN_ENTRY { return &desc; }
