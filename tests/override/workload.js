// tests/override/workload.js - a Node.js workload under the preload: V8's
// heap and its helper threads, four worker threads that each build and
// serialise objects, zlib and crypto (OpenSSL) in C. Deterministic output.
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
const crypto = require('crypto');
const zlib = require('zlib');

function work(seed) {
    const m = new Map();
    for (let i = 0; i < 60000; i++)
        m.set('k' + ((i * 7919) % (50021 + 1000 * seed)), { i, v: [i, 'x'.repeat(i % 37)] });
    let sum = 0;
    for (const [k, o] of m) sum += o.i + o.v[1].length + k.length;
    const text = JSON.stringify([...m.values()].slice(0, 2000));
    const packed = zlib.gzipSync(Buffer.from(text));
    const back = zlib.gunzipSync(packed).toString();
    return { seed, sum, size: back.length,
             hash: crypto.createHash('sha256').update(back).digest('hex').slice(0, 16) };
}

if (isMainThread) {
    const results = [];
    let left = 4;
    for (let t = 0; t < 4; t++) {
        const w = new Worker(__filename, { workerData: t });
        w.on('message', (r) => {
            results.push(r);
            if (--left === 0) {
                results.sort((a, b) => a.seed - b.seed);
                for (const r of results) console.log(JSON.stringify(r));
                console.log(JSON.stringify(work(99)));
            }
        });
        w.on('error', (e) => { console.error(e); process.exitCode = 1; });
    }
} else {
    parentPort.postMessage(work(workerData));
}
