/*
 * Raw libuv baseline: empty uv_queue_work items.
 *   offload_bench latency N            one at a time -> mean/p50/p99/max us
 *   offload_bench throughput N INFLIGHT kept in flight -> ops/s
 * Prints one JSON object. Pool size: UV_THREADPOOL_SIZE (run.sh sets 4).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
