/* Fixture: init rejects its config with -EINVAL and says why. */
#include <hostlet/plugin.h>

static const hostlet_config_key config[] = {
  {.key = "reason", .type = HOSTLET_CONFIG_STRING, .default_value = "always", .description = "logged"},
  {.key = NULL},
};
static int init(hostlet_host *h, const hostlet_host_api *api, void **state) {
  const char *why = "";
  api->config_string(h, "reason", &why);
  api->log(h, HOSTLET_LOG_ERROR, "refusing to start: %s", why);
  (void)state;
  return -EINVAL;
}
static int start(void *s) { (void)s; return 0; }
static void stop(void *s) { (void)s; }
static void destroy(void *s) { (void)s; }

static const hostlet_plugin desc = {
  HOSTLET_PLUGIN_HEADER,
  .name = "init_fails", .version = "1", .description = "fixture: init fails",
  .config = config, .init = init, .start = start, .stop = stop, .destroy = destroy,
};
HOSTLET_PLUGIN_ENTRY { return &desc; }
