/*
 * Raw libuv baseline: empty uv_queue_work items.
 *   offload_bench latency N            one at a time -> mean/p50/p99/max us
 *   offload_bench throughput N INFLIGHT kept in flight -> ops/s
 *   offload_bench lag SECS WORK_MS INFLIGHT
 *       INFLIGHT blocking items (a WORK_MS sleep each) kept in flight for SECS
 *       while a 1 ms repeating timer measures its lateness, like the bench
 *       plugin's probe: p50/p99/max_ms (interval minus period) and
 *       due_p50/p99/max_ms (tick minus libuv's due time), ops_s
 * Prints one JSON object. Pool size: UV_THREADPOOL_SIZE (run.sh sets 4).
 */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uv_loop_t *loop;
static uint64_t n_total, submitted, completed, t_submit;
static uint64_t *lat;
static int latency_mode;

static void work_cb(uv_work_t *req) { (void)req; }
static void after_cb(uv_work_t *req, int status);

/* lag mode */
static unsigned work_us;
static uint64_t lag_until, prev_ns, due_ms, n_ticks;
static uint64_t *gaps, *lates;
static size_t ticks_cap;

static void sleep_cb(uv_work_t *req) {
  (void)req;
  usleep(work_us);
}

static void lag_after_cb(uv_work_t *req, int status) {
  (void)status;
  completed++;
  if (uv_hrtime() < lag_until) {
    if (uv_queue_work(loop, req, sleep_cb, lag_after_cb) != 0) exit(1);
    submitted++;
  }
}

static void tick_cb(uv_timer_t *t) {
  uint64_t now = uv_hrtime(), due = due_ms * 1000000ull;
  if (n_ticks < ticks_cap) {
    gaps[n_ticks] = now - prev_ns > 1000000ull ? now - prev_ns - 1000000ull : 0;
    lates[n_ticks] = now > due ? now - due : 0;
    n_ticks++;
  }
  prev_ns = now;
  due_ms = uv_now(loop) + 1;
  if (now >= lag_until) uv_timer_stop(t);
}

static void print_quantiles(const char *prefix, uint64_t *v, uint64_t n);

static void submit(uv_work_t *req) {
  if (latency_mode) t_submit = now_ns(); /* throughput mode reads no clock per item, like the bench plugin */
  if (uv_queue_work(loop, req, work_cb, after_cb) != 0) {
    fprintf(stderr, "uv_queue_work failed\n");
    exit(1);
  }
  submitted++;
}

static void after_cb(uv_work_t *req, int status) {
  (void)status;
  if (latency_mode) lat[completed] = now_ns() - t_submit;
  completed++;
  if (submitted < n_total) submit(req);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s latency N | throughput N INFLIGHT\n", argv[0]);
    return 64;
  }
  if (strcmp(argv[1], "lag") == 0) {
    if (argc < 5) return 64;
    double secs = atof(argv[2]);
    work_us = (unsigned)(atof(argv[3]) * 1000);
    uint64_t inflight = strtoull(argv[4], NULL, 10);
    loop = uv_default_loop();
    ticks_cap = (size_t)(secs * 1000) + 1000;
    uv_work_t *reqs = calloc(inflight ? inflight : 1, sizeof *reqs);
    gaps = calloc(ticks_cap, sizeof *gaps);
    lates = calloc(ticks_cap, sizeof *lates);
    if (!reqs || !gaps || !lates) return 1;
    uint64_t t0 = uv_hrtime();
    lag_until = t0 + (uint64_t)(secs * 1e9);
    for (uint64_t i = 0; i < inflight; i++) {
      if (uv_queue_work(loop, &reqs[i], sleep_cb, lag_after_cb) != 0) return 1;
      submitted++;
    }
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    uv_update_time(loop);
    due_ms = uv_now(loop) + 1;
    prev_ns = due_ms * 1000000ull - 1000000ull;
    uv_timer_start(&timer, tick_cb, 1, 1);
    uv_run(loop, UV_RUN_DEFAULT);
    double total = (double)(uv_hrtime() - t0) / 1e9;
    printf("{\"ticks\": %llu, ", (unsigned long long)n_ticks);
    print_quantiles("", gaps, n_ticks);
    print_quantiles("due_", lates, n_ticks);
    printf("\"ops_s\": %.1f}\n", (double)completed / total);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
  }
  latency_mode = strcmp(argv[1], "latency") == 0;
  n_total = strtoull(argv[2], NULL, 10);
  uint64_t inflight = latency_mode ? 1 : (argc > 3 ? strtoull(argv[3], NULL, 10) : 1);
  if (n_total == 0 || inflight == 0) return 64;
  if (inflight > n_total) inflight = n_total;
  loop = uv_default_loop();
  uv_work_t *reqs = calloc(inflight, sizeof *reqs);
  lat = latency_mode ? calloc(n_total, sizeof *lat) : NULL;
  if (!reqs || (latency_mode && !lat)) return 1;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < inflight; i++) submit(&reqs[i]);
  uv_run(loop, UV_RUN_DEFAULT);
  uint64_t total = now_ns() - t0;
  if (latency_mode) {
    double sum = 0;
    for (uint64_t i = 0; i < completed; i++) sum += (double)lat[i];
    qsort(lat, completed, sizeof *lat, cmp_u64);
    uint64_t p99 = completed * 99 / 100;
    if (p99 >= completed) p99 = completed - 1;
    printf("{\"n\": %llu, \"mean_us\": %.3f, \"p50_us\": %.3f, \"p99_us\": %.3f, \"max_us\": %.3f}\n",
           (unsigned long long)completed, sum / (double)completed / 1e3, (double)lat[completed / 2] / 1e3,
           (double)lat[p99] / 1e3, (double)lat[completed - 1] / 1e3);
  } else {
    printf("{\"n\": %llu, \"ops_s\": %.1f, \"secs\": %.6f}\n", (unsigned long long)completed,
           (double)completed * 1e9 / (double)total, (double)total / 1e9);
  }
  free(reqs);
  free(lat);
  uv_loop_close(loop);
  return 0;
}

static void print_quantiles(const char *prefix, uint64_t *v, uint64_t n) {
  qsort(v, n, sizeof *v, cmp_u64);
  uint64_t p99 = n * 99 / 100 < n ? n * 99 / 100 : n - 1;
  printf("\"%sp50_ms\": %.3f, \"%sp99_ms\": %.3f, \"%smax_ms\": %.3f, ", prefix, n ? (double)v[n / 2] / 1e6 : 0.0,
         prefix, n ? (double)v[p99] / 1e6 : 0.0, prefix, n ? (double)v[n - 1] / 1e6 : 0.0);
}
