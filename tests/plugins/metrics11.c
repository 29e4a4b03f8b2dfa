/*
 * Fixture: the ABI 1.1 entries through the raw C table -- collect and
 * refresh in the descriptor, set_error, set_health, metric_*,
 * metrics_refreshed and publish_id.
 *   config fail_init: non-empty -> init fails with that message (set_error)
 *   config refresh: none | fast (an offload, then metrics_refreshed) | hang
 *          (refresh starts and only the action `release` ends it)
 *   config bad_metric: also writes a family with an invalid name
 *   action health (health=ok|degraded|failed, reason)
 *   action refuse (why): returns -EPERM with "refused: <why>" (set_error)
 *   action release: ends a hanging refresh
 *   action publish (type): publish_id; answers id
 * collect writes fixture_refreshes_total (refreshes completed),
 * fixture_value{kind="config"} (config value) and fixture_refreshing (0/1).
 */
#include <hostlet/plugin.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct state {
  hostlet_host *host;
  const hostlet_host_api *api;
  const char *refresh_mode;
  double value;
  int bad_metric;
  int refreshing;
  unsigned refreshes;
} state;

static const hostlet_config_key config[] = {
  {.key = "fail_init", .type = HOSTLET_CONFIG_STRING, .default_value = "", .description = "init's error"},
  {.key = "refresh", .type = HOSTLET_CONFIG_STRING, .default_value = "none", .description = "none, fast or hang"},
  {.key = "value", .type = HOSTLET_CONFIG_DOUBLE, .default_value = "1.5", .description = "fixture_value"},
  {.key = "bad_metric", .type = HOSTLET_CONFIG_BOOL, .default_value = "false", .description = "write a bad family"},
  {.key = NULL},
};

static void refresh_work(void *arg) { (void)arg; }
static void refresh_done(void *arg, int status) {
  state *st = arg;
  (void)status;
  st->refreshing = 0;
  st->refreshes++;
  st->api->metrics_refreshed(st->host);
}

static int refresh(void *s) {
  state *st = s;
  if (st->refresh_mode[0] == 'n') return 0;
  st->refreshing = 1;
  if (st->refresh_mode[0] == 'h') return 1;
  if (st->api->offload(st->host, NULL, refresh_work, refresh_done, st, NULL) != 0) {
    st->refreshing = 0;
    return 0;
  }
  return 1;
}

static void collect(void *s, hostlet_metrics *m) {
  state *st = s;
  const hostlet_host_api *api = st->api;
  hostlet_attr kind[] = {{"kind", "config"}};
  api->metric_family(m, "fixture_refreshes_total", HOSTLET_METRIC_COUNTER, "Refreshes completed.", NULL);
  api->metric_sample(m, NULL, 0, st->refreshes);
  api->metric_family(m, "fixture_value", HOSTLET_METRIC_GAUGE, "The configured value.", NULL);
  api->metric_sample(m, kind, 1, st->value);
  api->metric_family(m, "fixture_refreshing", HOSTLET_METRIC_GAUGE, "1 while a refresh runs.", NULL);
  api->metric_sample(m, NULL, 0, st->refreshing);
  if (st->bad_metric) {
    api->metric_family(m, "fixture bad", HOSTLET_METRIC_GAUGE, "refused", NULL);
    api->metric_sample(m, NULL, 0, 1);
  }
}

static int act_health(void *arg, hostlet_call *call, const hostlet_attr *a, size_t n) {
  state *st = arg;
  const char *h = st->api->call_attr(call, "health");
  const char *why = st->api->call_attr(call, "reason");
  hostlet_health v = HOSTLET_HEALTH_OK;
  (void)a;
  (void)n;
  if (h && h[0] == 'd') v = HOSTLET_HEALTH_DEGRADED;
  else if (h && h[0] == 'f') v = HOSTLET_HEALTH_FAILED;
  st->api->set_health(st->host, v, why);
  return st->api->call_reply_ok(call, NULL, 0, NULL);
}
static int act_refuse(void *arg, hostlet_call *call, const hostlet_attr *a, size_t n) {
  state *st = arg;
  const char *why = st->api->call_attr(call, "why");
  (void)a;
  (void)n;
  st->api->set_error(st->host, "refused: %s", why ? why : "no reason");
  return -EPERM;
}
static int act_release(void *arg, hostlet_call *call, const hostlet_attr *a, size_t n) {
  state *st = arg;
  (void)a;
  (void)n;
  if (st->refreshing) {
    st->refreshing = 0;
    st->refreshes++;
    st->api->metrics_refreshed(st->host);
  }
  return st->api->call_reply_ok(call, NULL, 0, NULL);
}
static int act_publish(void *arg, hostlet_call *call, const hostlet_attr *a, size_t n) {
  state *st = arg;
  const char *type = st->api->call_attr(call, "type");
  uint64_t id = 0;
  char text[32];
  hostlet_attr out[] = {{"id", text}};
  int r;
  (void)a;
  (void)n;
  r = st->api->publish_id(st->host, type ? type : "fixture.published", NULL, 0, &id);
  if (r != 0) return r;
  snprintf(text, sizeof text, "%llu", (unsigned long long)id);
  return st->api->call_reply_ok(call, out, 1, NULL);
}

static int init(hostlet_host *h, const hostlet_host_api *api, void **out) {
  state *st;
  const char *fail = "";
  api->config_string(h, "fail_init", &fail);
  if (fail[0]) {
    api->set_error(h, "%s", fail);
    return -EINVAL;
  }
  st = calloc(1, sizeof *st);
  if (!st) return -ENOMEM;
  st->host = h;
  st->api = api;
  api->config_string(h, "refresh", &st->refresh_mode);
  api->config_double(h, "value", &st->value);
  api->config_bool(h, "bad_metric", &st->bad_metric);
  if (api->register_action(h, "health", act_health, st) || api->register_action(h, "refuse", act_refuse, st) ||
      api->register_action(h, "release", act_release, st) || api->register_action(h, "publish", act_publish, st)) {
    free(st);
    return -EINVAL;
  }
  *out = st;
  return 0;
}
static int start(void *s) { (void)s; return 0; }
static void stop(void *s) {
  state *st = s;
  st->api->stopped(st->host);
}
static void destroy(void *s) { free(s); }

static const hostlet_plugin desc = {
  HOSTLET_PLUGIN_HEADER,
  .name = "metrics11", .version = "1.1", .description = "fixture: the ABI 1.1 entries",
  .config = config, .init = init, .start = start, .stop = stop, .destroy = destroy,
  .collect = collect, .refresh = refresh,
};
HOSTLET_PLUGIN_ENTRY { return &desc; }
