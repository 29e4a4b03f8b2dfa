/*
 * The libvirt calls of hostlet's virt.domain.list, made directly, without
 * hostlet: the baseline of the end-to-end benchmark. On one shared connection:
 * virConnectGetAllDomainStats(VIR_DOMAIN_STATS_STATE) (the one round trip),
 * then, as the plugin does, each domain's name, UUID and (unless shut off) id,
 * and the records freed. With "rpc" only the round trip and the free.
 *   virt_direct URI latency N [rpc]             one call at a time -> mean/p50/p99 us
 *   virt_direct URI throughput N THREADS [rpc]  THREADS threads share the connection -> calls/s
 * Latency is per call in a closed loop, the free included (the next call
 * waits for it); "in_hand_us" is the mean until the data is in hand, before
 * the free, and "free_us" the free's mean. hostlet answers first and frees
 * the records afterwards on a pool thread, where the free overlaps the next
 * call. Throughput includes the frees: they take the same CPUs.
 * Prints one JSON object; "domains" is how many records the last call got.
 */
#define _POSIX_C_SOURCE 200809L
#include <libvirt/libvirt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static virConnectPtr conn;
static long left, errors, domains;
static int rpc_only;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* One call; the records are left in *out for the caller to free. */
static int one_call(virDomainStatsRecordPtr **out) {
  virDomainStatsRecordPtr *recs = NULL;
  int n = virConnectGetAllDomainStats(conn, VIR_DOMAIN_STATS_STATE, &recs, 0);
  *out = recs;
  if (n < 0) return -1;
  for (int i = 0; i < n && !rpc_only; i++) {
    int state = 0;
    unsigned char uuid[VIR_UUID_BUFLEN];
    virTypedParamsGetInt(recs[i]->params, recs[i]->nparams, "state.state", &state);
    if (!virDomainGetName(recs[i]->dom) || virDomainGetUUID(recs[i]->dom, uuid) < 0) return -1;
    if (state != VIR_DOMAIN_SHUTOFF) (void)virDomainGetID(recs[i]->dom);
  }
  return n;
}

static int call_and_free(void) {
  virDomainStatsRecordPtr *recs = NULL;
  int n = one_call(&recs);
  virDomainStatsRecordListFree(recs);
  return n;
}

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&mu);
    int go = left-- > 0;
    pthread_mutex_unlock(&mu);
    if (!go) return NULL;
    int n = call_and_free();
    pthread_mutex_lock(&mu);
    if (n < 0) errors++;
    else domains = n;
    pthread_mutex_unlock(&mu);
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s URI latency N | URI throughput N THREADS\n", argv[0]);
    return 64;
  }
  long n = atol(argv[3]);
  if (n < 1) return 64;
  rpc_only = strcmp(argv[argc - 1], "rpc") == 0;
  conn = virConnectOpen(argv[1]);
  if (!conn) return 2;
  call_and_free(); /* warm up: the first call also loads the driver's state */
  if (strcmp(argv[2], "latency") == 0) {
    uint64_t *lat = calloc((size_t)n, sizeof *lat);
    if (!lat) return 1;
    double sum = 0, in_hand_sum = 0, free_sum = 0;
    for (long i = 0; i < n; i++) {
      virDomainStatsRecordPtr *recs = NULL;
      uint64_t t = now_ns();
      int r = one_call(&recs);
      uint64_t in_hand = now_ns();
      virDomainStatsRecordListFree(recs);
      uint64_t end = now_ns();
      in_hand_sum += (double)(in_hand - t);
      free_sum += (double)(end - in_hand);
      lat[i] = end - t;
      sum += (double)lat[i];
      if (r < 0) errors++;
      else domains = r;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    long p99 = n * 99 / 100 < n ? n * 99 / 100 : n - 1;
    printf("{\"n\": %ld, \"domains\": %ld, \"errors\": %ld, \"mean_us\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"in_hand_us\": %.1f, \"free_us\": %.1f}\n",
           n, domains, errors, sum / (double)n / 1e3, (double)lat[n / 2] / 1e3, (double)lat[p99] / 1e3,
           in_hand_sum / (double)n / 1e3, free_sum / (double)n / 1e3);
    free(lat);
  } else {
    int threads = argc > 4 && strcmp(argv[4], "rpc") != 0 ? atoi(argv[4]) : 4;
    if (threads < 1) return 64;
    pthread_t *ts = calloc((size_t)threads, sizeof *ts);
    if (!ts) return 1;
    left = n;
    uint64_t t0 = now_ns();
    for (int i = 0; i < threads; i++) pthread_create(&ts[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) pthread_join(ts[i], NULL);
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("{\"n\": %ld, \"domains\": %ld, \"errors\": %ld, \"ops_s\": %.1f, \"secs\": %.6f}\n", n, domains, errors,
           (double)n / secs, secs);
    free(ts);
  }
  virConnectClose(conn);
  return 0;
}
