// sdk_read.mjs - the S2 TypeScript SDK (@s2-dev/streamstore) as a peer:
// read `total` records of one stream straight from s2-local, `count` per
// read call, and print one JSON line {records, bytes, seconds, envelopes}.
//
// Environment: S2_SDK_DIR (the directory holding node_modules),
// S2_ACCOUNT_ENDPOINT / S2_BASIN_ENDPOINT (s2-local's URL), S2_BASIN,
// S2_STREAM, BENCH_TOTAL (default 100000), BENCH_COUNT (default 1000),
// BENCH_SECONDS (a bound on the walk, default 60).
import path from "node:path";
import { pathToFileURL } from "node:url";

const sdkDir = process.env.S2_SDK_DIR;
const entry = path.join(sdkDir, "node_modules/@s2-dev/streamstore/dist/esm/index.js");
const { S2 } = await import(pathToFileURL(entry).href);

const total = Number(process.env.BENCH_TOTAL ?? 100000);
const count = Number(process.env.BENCH_COUNT ?? 1000);
const bound = Number(process.env.BENCH_SECONDS ?? 60) * 1000;

const s2 = new S2({
    accessToken: process.env.S2_ACCESS_TOKEN ?? "local",
    endpoints: {
        account: process.env.S2_ACCOUNT_ENDPOINT,
        basin: process.env.S2_BASIN_ENDPOINT,
    },
    retry: { maxAttempts: 1 },
});
const stream = s2.basin(process.env.S2_BASIN).stream(process.env.S2_STREAM);

let records = 0, bytes = 0, envelopes = 0, seq = 0;
const t0 = performance.now();
while (records < total && performance.now() - t0 < bound) {
    const batch = await stream.read({
        start: { from: { seqNum: seq } },
        stop: { limits: { count: Math.min(count, total - records) } },
    });
    if (batch.records.length === 0)
        break;
    for (const r of batch.records) {
        bytes += Buffer.byteLength(r.body);
        // A reader of the archive decodes each envelope, as the route does.
        if (JSON.parse(r.body).seq !== undefined)
            envelopes++;
    }
    records += batch.records.length;
    seq = batch.records[batch.records.length - 1].seqNum + 1;
}
const seconds = (performance.now() - t0) / 1000;
await s2.close?.();
console.log(JSON.stringify({ records, bytes, seconds, envelopes }));
