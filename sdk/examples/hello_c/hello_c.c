/* hello_c: the smallest hostlet plugin, in plain C99 against <hostlet/plugin.h>
 * (the C ABI itself; no C++ anywhere). A config schema and one action,
 * answered on the loop thread; see ../hello for offloading and timers.
 *
 * Example configuration:
 *   plugins:
 *     - name: hi
 *       plugin: /path/to/hello_c.so      # or `hello_c` when installed in plugindir
 *       config: {greeting: "hi"}
 *
 * Then:
 *   hostlet-ctl call hi.greet name=world       # ok, text=hi, world!
 */
#include <hostlet/plugin.h>

#include <stdio.h>
#include <stdlib.h>

/* What init allocates and destroy frees; the host never looks inside. */
typedef struct hello_state {
  hostlet_host *host;
  const hostlet_host_api *api;
  const char *greeting; /* owned by the host, valid until destroy */
} hello_state;

/* Loop thread. Answers `call` exactly once; a non-zero return would mean "not accepted". */
static int greet(void *arg, hostlet_call *call, const hostlet_attr *attrs, size_t n_attrs) {
  hello_state *s = arg;
  const char *name = s->api->call_attr(call, "name");
  char text[256];
  (void)attrs;
  (void)n_attrs;
  if (!name) {
    s->api->call_reply_error(call, "missing attribute 'name'");
    return 0;
  }
  snprintf(text, sizeof text, "%s, %s!", s->greeting, name);
  {
    hostlet_attr out[1];
    out[0].key = "text";
    out[0].value = text; /* copied by the host */
    s->api->call_reply_ok(call, out, 1, NULL);
  }
  return 0; /* answered: accepted */
}

static int init(hostlet_host *host, const hostlet_host_api *api, void **state) {
  hello_state *s = calloc(1, sizeof *s);
  int r;
  if (!s) return -ENOMEM;
  s->host = host;
  s->api = api;
  r = api->config_string(host, "greeting", &s->greeting);
  if (r == 0) r = api->register_action(host, "greet", greet, s);
  if (r != 0) {
    api->set_error(host, "hello_c: %s", hostlet_strerror(r)); /* since 1.1: shown by --check */
    free(s);
    return r;
  }
  *state = s;
  return 0;
}

static int start(void *state) { return state ? 0 : -EINVAL; }
/* Nothing of its own to close: says stopped at once. */
static void stop(void *state) {
  hello_state *s = state;
  s->api->stopped(s->host);
}
static void destroy(void *state) { free(state); }

static const hostlet_config_key config[] = {
    {"greeting", HOSTLET_CONFIG_STRING, "hello", "what greet says before the name", 1, 64, 0},
    {NULL, HOSTLET_CONFIG_STRING, NULL, NULL, 0, 0, 0},
};
static const hostlet_action_info actions[] = {
    {"greet", "name", "answers text=\"<greeting>, <name>!\""},
    {NULL, NULL, NULL},
};

static const hostlet_plugin plugin = {
    HOSTLET_PLUGIN_HEADER,
    .name = "hello_c",
    .version = "1.0",
    .description = "example plugin in C: greets",
    .config = config,
    .actions = actions,
    .events = NULL,
    .init = init,
    .start = start,
    .stop = stop,
    .destroy = destroy,
};

HOSTLET_PLUGIN_ENTRY { return &plugin; }
