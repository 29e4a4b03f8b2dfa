/*
 * The senders of bench/handover_bench.py, in C so that the client's own
 * scheduling does not hide the agent's pause: THREADS threads, each on its
 * own connection to SOCKET, send one `ack: done` line at a time and wait for
 * its answer (ids in order), until SIGTERM. Every wait longer than
 * MIN_US microseconds is printed as "T0 T1" (CLOCK_MONOTONIC seconds, the
 * clock of Python's time.perf_counter) on stdout at exit, then a line
 * "total N errors E".
 *
 *   handover_client SOCKET THREADS MIN_US
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOW 100000

static const char *sock_path;
static long min_us;
static volatile sig_atomic_t stop_flag;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double slow[MAX_SLOW][2];
static long n_slow, total, errors;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *sender(void *arg) {
  long k = (long)arg, i, n_ok = 0, n_err = 0;
  struct sockaddr_un a;
  char line[128], buf[4096];
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    exit(1);
  }
  for (i = 0; !stop_flag; i++) {
    size_t got = 0;
    long id = k * 100000000L + i, echoed = -1;
    int len = snprintf(line, sizeof line, "{\"type\":\"t.x\",\"ack\":\"done\",\"id\":%ld}\n", id);
    double t0 = now(), t1;
    if (write(fd, line, (size_t)len) != len) break;
    while (got == 0 || buf[got - 1] != '\n') {
      ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
      if (n <= 0) {
        if (n < 0 && errno == EINTR && !stop_flag) continue;
        goto out;
      }
      got += (size_t)n;
    }
    t1 = now();
    buf[got] = 0;
    if (sscanf(buf, "{\"id\":%ld", &echoed) != 1 || echoed != id) n_err++;
    else n_ok++;
    if ((t1 - t0) * 1e6 > (double)min_us) {
      pthread_mutex_lock(&mu);
      if (n_slow < MAX_SLOW) {
        slow[n_slow][0] = t0;
        slow[n_slow][1] = t1;
        n_slow++;
      }
      pthread_mutex_unlock(&mu);
    }
  }
out:
  pthread_mutex_lock(&mu);
  total += n_ok;
  errors += n_err + (stop_flag ? 0 : 1);  /* a connection lost before the stop */
  pthread_mutex_unlock(&mu);
  close(fd);
  return NULL;
}

static void on_term(int sig) {
  (void)sig;
  stop_flag = 1;
}

int main(int argc, char **argv) {
  long threads, i;
  pthread_t t[256];
  struct sigaction sa;
  if (argc != 4) {
    fprintf(stderr, "usage: handover_client SOCKET THREADS MIN_US\n");
    return 2;
  }
  sock_path = argv[1];
  threads = atol(argv[2]);
  min_us = atol(argv[3]);
  if (threads < 1 || threads > 256) return 2;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;  /* no SA_RESTART: a blocked read returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  for (i = 0; i < threads; i++) pthread_create(&t[i], NULL, sender, (void *)i);
  fprintf(stderr, "ready\n");
  for (i = 0; i < threads; i++) {
    pthread_kill(t[i], 0);
  }
  while (!stop_flag) pause();
  for (i = 0; i < threads; i++) pthread_kill(t[i], SIGTERM);
  for (i = 0; i < threads; i++) pthread_join(t[i], NULL);
  for (i = 0; i < n_slow; i++) printf("%.9f %.9f\n", slow[i][0], slow[i][1]);
  printf("total %ld errors %ld\n", total, errors);
  return 0;
}
