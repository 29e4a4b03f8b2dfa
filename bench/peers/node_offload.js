// Node peer: empty work on libuv's pool through fs.access on an existing path.
// usage: UV_THREADPOOL_SIZE=4 node node_offload.js latency N | throughput N INFLIGHT
'use strict';
const fs = require('fs');
const [mode, nArg, infArg] = process.argv.slice(2);
const n = parseInt(nArg, 10);
const inflight = mode === 'latency' ? 1 : parseInt(infArg || '1', 10);
const path = '/';
const now = () => process.hrtime.bigint();
if (mode === 'latency') {
  const lat = new Array(n);
  let i = 0;
  let t = now();
  const next = () => {
    t = now();
    fs.access(path, (err) => {
      if (err) throw err;
      lat[i++] = Number(now() - t);
      if (i < n) next();
      else {
        lat.sort((a, b) => a - b);
        const sum = lat.reduce((a, b) => a + b, 0);
        console.log(JSON.stringify({ n, mean_us: sum / n / 1e3, p50_us: lat[n >> 1] / 1e3,
          p99_us: lat[Math.min(n - 1, Math.floor(n * 99 / 100))] / 1e3, max_us: lat[n - 1] / 1e3 }));
      }
    });
  };
  next();
} else {
  let submitted = 0, completed = 0;
  const t0 = now();
  const cb = (err) => {
    if (err) throw err;
    completed++;
    if (submitted < n) { submitted++; fs.access(path, cb); }
    else if (completed === n) {
      const secs = Number(now() - t0) / 1e9;
      console.log(JSON.stringify({ n, ops_s: n / secs, secs }));
    }
  };
  for (let k = 0; k < Math.min(inflight, n); k++) { submitted++; fs.access(path, cb); }
}
