/*
 * Fixture: the fd store (keep_fd / take_fd, ABI 1.1). Built twice:
 *   fdkeep_v1: start() takes back the pipe "r"/"w" and the state "gen=N"
 *              its predecessor left (N+1 from then on); stop() leaves them
 *              (a new pipe holding one byte 'x' the first time).
 *   fdkeep_v2 (-DNO_TAKE): takes nothing and keeps nothing, so what v1 left
 *              is for the host to close and count.
 *   action check: reads the byte from "r" and writes it back into "w";
 *                 answers {gen, has_fd, byte}.
 */
#define _GNU_SOURCE /* pipe2 */
#include <hostlet/plugin.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct state {
  hostlet_host *host;
  const hostlet_host_api *api;
  int r, w;
  unsigned gen;
} state;

static const hostlet_config_key config[] = {{.key = NULL}};

static int act_check(void *arg, hostlet_call *call, const hostlet_attr *a, size_t n) {
  state *st = arg;
  char gen[16], byte[2] = {0, 0};
  hostlet_attr out[] = {{"gen", gen}, {"has_fd", st->r >= 0 ? "true" : "false"}, {"byte", byte}};
  (void)a;
  (void)n;
  snprintf(gen, sizeof gen, "%u", st->gen);
  if (st->r >= 0 && read(st->r, byte, 1) == 1 && write(st->w, byte, 1) != 1) byte[0] = '?';
  return st->api->call_reply_ok(call, out, 3, NULL);
}

static int init(hostlet_host *h, const hostlet_host_api *api, void **out) {
  state *st = calloc(1, sizeof *st);
  if (!st) return -ENOMEM;
  st->host = h;
  st->api = api;
  st->r = st->w = -1;
  if (api->register_action(h, "check", act_check, st) != 0) {
    free(st);
    return -EINVAL;
  }
  *out = st;
  return 0;
}

static int start(void *s) {
#ifndef NO_TAKE
  state *st = s;
  char buf[32] = {0};
  size_t len = 0;
  int r = st->api->take_fd(st->host, "r", buf, sizeof buf - 1, &len);
  if (r >= 0) {
    st->r = r;
    st->w = st->api->take_fd(st->host, "w", NULL, 0, NULL);
    if (sscanf(buf, "gen=%u", &st->gen) == 1) st->gen++;
  }
#else
  (void)s;
#endif
  return 0;
}

static void stop(void *s) {
  state *st = s;
#ifndef NO_TAKE
  char text[32];
  int n;
  if (st->r < 0) {
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0) {
      st->r = p[0];
      st->w = p[1];
      if (write(st->w, "x", 1) != 1) st->api->log(st->host, HOSTLET_LOG_ERROR, "pipe write failed");
    }
  }
  n = snprintf(text, sizeof text, "gen=%u", st->gen);
  if (st->r >= 0 && st->api->keep_fd(st->host, "r", st->r, text, (size_t)n) == 0) st->r = -1;
  if (st->w >= 0 && st->api->keep_fd(st->host, "w", st->w, NULL, 0) == 0) st->w = -1;
#endif
  if (st->r >= 0) close(st->r);
  if (st->w >= 0) close(st->w);
  st->r = st->w = -1;
  st->api->stopped(st->host);
}
static void destroy(void *s) { free(s); }

static const hostlet_plugin desc = {
  HOSTLET_PLUGIN_HEADER,
  .name = "fdkeep", .version = FIXTURE_VERSION, .description = "fixture: the fd store",
  .config = config, .init = init, .start = start, .stop = stop, .destroy = destroy,
};
HOSTLET_PLUGIN_ENTRY { return &desc; }
