/*
 * Notification ingest client for the unixsock protocol (NDJSON).
 *   notify_client SOCKET CONNECTIONS EVENTS_PER_CONNECTION ACK(none|accepted|done) [MODE [TYPE]]
 * MODE is pipeline (the default), latency or for=SECS; TYPE the events' type
 * (default bench.event).
 * Each connection has a writer thread (pipelines every line) and a reader.
 * ack none: the last line of each connection asks ack accepted (id "end");
 * its reply means the server has taken every earlier line of that connection.
 * ack accepted/done: every line is answered; the reader counts the replies.
 * latency: no pipelining; each connection sends one line (ack accepted or
 * done) and waits for its reply; adds p50_us/p99_us of those round trips.
 * for=SECS (ack none only): each connection sends for SECS seconds instead of
 * a count (EVENTS_PER_CONNECTION is then ignored): a steady load for as long
 * as something else is measured.
 * Prints one JSON object: events, secs, events_s, errors.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *sock_path;
static long per_conn;
static int ack_none, latency_mode;
static double for_secs; /* > 0: send for this long instead of per_conn lines */
static const char *ack_name;
static const char *ev_type = "bench.event";
static uint64_t *lats; /* latency mode: per_conn entries per connection */

struct conn {
  int fd;
  int index;
  pthread_t writer, reader;
  long errors;
  long sent;
};

static void *pingpong_main(void *arg) {
  struct conn *c = arg;
  char line[256];
  /* Large enough for the 111 KB domain list in one or two reads, as a real
   * client would read it (a 4 KiB buffer made it ~28 reads per reply). */
  size_t cap = (size_t)1 << 20;
  char *buf = malloc(cap);
  if (!buf) exit(1);
  for (long i = 0; i < per_conn; i++) {
    int len = snprintf(line, sizeof line, "{\"type\":\"%s\",\"attrs\":{\"i\":\"%ld\"},\"id\":%ld,\"ack\":\"%s\"}\n",
                       ev_type, i, i, ack_name);
    uint64_t t = now_ns();
    if (write(c->fd, line, (size_t)len) != len) {
      perror("write");
      exit(1);
    }
    size_t got = 0;
    int failed = 0; /* "ok":false seen in a part of the reply already dropped */
    for (;;) {
      ssize_t r = read(c->fd, buf + got, cap - 1 - got);
      if (r <= 0) {
        fprintf(stderr, "reader: connection closed\n");
        exit(1);
      }
      got += (size_t)r;
      if (buf[got - 1] == '\n') break;
      if (got >= cap - 1) {
        buf[got] = 0;
        failed |= strstr(buf, "\"ok\":false") != NULL;
        got = 0;
      }
    }
    lats[(size_t)c->index * (size_t)per_conn + (size_t)i] = now_ns() - t;
    buf[got] = 0;
    if (failed || strstr(buf, "\"ok\":false")) c->errors++;
  }
  c->sent = per_conn;
  free(buf);
  return NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void *writer_main(void *arg) {
  struct conn *c = arg;
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap + 512);
  if (!buf) exit(1);
  uint64_t until = for_secs > 0 ? now_ns() + (uint64_t)(for_secs * 1e9) : 0;
  for (long i = 0; for_secs > 0 || i < per_conn; i++) {
    /* in for= mode, the time is checked once per buffer: the line after is the last */
    int last = for_secs > 0 ? (len == 0 && i > 0 && now_ns() >= until) : i == per_conn - 1;
    c->sent = i + 1;
    const char *ack = ack_none ? (last ? "accepted" : "none") : ack_name;
    len += (size_t)sprintf(buf + len, "{\"type\":\"%s\",\"attrs\":{\"i\":\"%ld\"},\"id\":\"%s\",\"ack\":\"%s\"}\n",
                           ev_type, i, last ? "end" : "e", ack);
    if (len >= cap || last) {
      size_t off = 0;
      while (off < len) {
        ssize_t w = write(c->fd, buf + off, len - off);
        if (w <= 0) {
          perror("write");
          exit(1);
        }
        off += (size_t)w;
      }
      len = 0;
    }
    if (last) break;
  }
  free(buf);
  return NULL;
}

static void *reader_main(void *arg) {
  struct conn *c = arg;
  char buf[65536];
  long lines = 0, want = ack_none ? -1 : per_conn;
  int done = 0;
  char prev[8] = {0};
  while (!done) {
    ssize_t r = read(c->fd, buf, sizeof buf);
    if (r <= 0) {
      fprintf(stderr, "reader: connection closed after %ld replies\n", lines);
      exit(1);
    }
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] == '\n') {
        lines++;
        if (want > 0 && lines == want) done = 1;
      }
    }
    /* errors and the end marker (cheap scans; replies are short) */
    buf[r < (ssize_t)sizeof buf ? r : r - 1] = 0;
    for (char *p = buf; (p = strstr(p, "\"ok\":false")); p++) c->errors++;
    if (ack_none && strstr(buf, "\"end\"")) done = 1;
    (void)prev;
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s SOCKET CONNECTIONS EVENTS_PER_CONNECTION none|accepted\n", argv[0]);
    return 64;
  }
  sock_path = argv[1];
  int nconn = atoi(argv[2]);
  per_conn = atol(argv[3]);
  ack_name = argv[4];
  ack_none = strcmp(ack_name, "none") == 0;
  latency_mode = argc > 5 && strcmp(argv[5], "latency") == 0;
  if (argc > 5 && strncmp(argv[5], "for=", 4) == 0) for_secs = atof(argv[5] + 4);
  if (argc > 5 && !latency_mode && for_secs <= 0 && strcmp(argv[5], "pipeline") != 0) return 64;
  if (argc > 6 && strlen(argv[6]) < 64) ev_type = argv[6];
  if (nconn < 1 || per_conn < 1 || (latency_mode && ack_none) || (for_secs > 0 && !ack_none)) return 64;
  if (latency_mode && !(lats = calloc((size_t)nconn * (size_t)per_conn, sizeof *lats))) return 1;
  struct conn *cs = calloc((size_t)nconn, sizeof *cs);
  if (!cs) return 1;
  for (int i = 0; i < nconn; i++) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    cs[i].index = i;
    cs[i].fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (cs[i].fd < 0 || connect(cs[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
      perror("connect");
      return 2;
    }
  }
  uint64_t t0 = now_ns();
  for (int i = 0; i < nconn; i++) {
    if (latency_mode) {
      pthread_create(&cs[i].writer, NULL, pingpong_main, &cs[i]);
    } else {
      pthread_create(&cs[i].reader, NULL, reader_main, &cs[i]);
      pthread_create(&cs[i].writer, NULL, writer_main, &cs[i]);
    }
  }
  long errors = 0;
  for (int i = 0; i < nconn; i++) {
    pthread_join(cs[i].writer, NULL);
    if (!latency_mode) pthread_join(cs[i].reader, NULL);
    errors += cs[i].errors;
    close(cs[i].fd);
  }
  uint64_t total = now_ns() - t0;
  long events = 0;
  for (int i = 0; i < nconn; i++) events += cs[i].sent;
  printf("{\"events\": %ld, \"secs\": %.6f, \"events_s\": %.1f, \"errors\": %ld", events,
         (double)total / 1e9, (double)events * 1e9 / (double)total, errors);
  if (latency_mode) {
    size_t m = (size_t)events;
    double sum = 0;
    for (size_t i = 0; i < m; i++) sum += (double)lats[i];
    qsort(lats, m, sizeof *lats, cmp_u64);
    size_t p99 = m * 99 / 100 < m ? m * 99 / 100 : m - 1;
    printf(", \"mean_us\": %.3f, \"p50_us\": %.3f, \"p99_us\": %.3f", sum / (double)m / 1e3,
           (double)lats[m / 2] / 1e3, (double)lats[p99] / 1e3);
    free(lats);
  }
  printf("}\n");
  free(cs);
  return 0;
}
