// sdk_conformance.mjs - the official S2 TypeScript SDK (@s2-dev/streamstore)
// against s2-local, pointed at it with S2_ACCOUNT_ENDPOINT/S2_BASIN_ENDPOINT:
// basins and streams, appends (string and bytes records), unary reads,
// check-tail, and read sessions over SSE (bounded, following, bytes).
//
// Environment: S2LOCAL_BIN (the s2-local executable), S2_SDK_DIR (the
// directory holding node_modules/@s2-dev/streamstore). Exits 77 (skip)
// when the SDK is not installed, 1 on any mismatch. Talks to 127.0.0.1 only.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const sdkDir = process.env.S2_SDK_DIR ?? "";
const entry = path.join(sdkDir, "node_modules/@s2-dev/streamstore/dist/esm/index.js");
if (!fs.existsSync(entry)) {
    console.log(`skip: @s2-dev/streamstore is not installed under ${sdkDir || "(S2_SDK_DIR unset)"}`);
    process.exit(77);
}
const sdk = await import(pathToFileURL(entry).href);
const { S2, S2Environment, AppendInput, AppendRecord, RangeNotSatisfiableError } = sdk;

const BASIN = "sdk-conformance";
const STREAM = "orders/sdk test";
let failures = 0;

function check(cond, what) {
    if (cond) {
        console.log(`ok - ${what}`);
    } else {
        failures++;
        console.log(`not ok - ${what}`);
    }
}

function fail(what, err) {
    failures++;
    console.log(`not ok - ${what}: ${err?.stack ?? err}`);
}

// One group of checks; an exception fails the group, not the ones after.
async function step(what, fn) {
    try {
        await fn();
    } catch (e) {
        fail(what, e);
    }
}

// Bound every await: a hang is a failure, not a stuck test.
function within(ms, promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// --- s2-local on a free port -----------------------------------------------
const server = spawn(process.env.S2LOCAL_BIN, ["--port", "0"], {
    stdio: ["ignore", "ignore", "pipe"],
});
let serverLog = "";
const exited = new Promise((resolve) => server.on("exit", (code, sig) => resolve(code ?? sig)));
const port = await within(
    10000,
    new Promise((resolve, reject) => {
        server.stderr.on("data", (chunk) => {
            serverLog += chunk;
            const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(serverLog);
            if (m)
                resolve(Number(m[1]));
        });
        server.on("error", reject);
        server.on("exit", () => reject(new Error(`s2-local exited: ${serverLog}`)));
    }),
    "s2-local start",
);
const endpoint = `http://127.0.0.1:${port}`;
process.env.S2_ACCOUNT_ENDPOINT = endpoint;
process.env.S2_BASIN_ENDPOINT = endpoint;
process.env.S2_ACCESS_TOKEN = "ignored";

const s2 = new S2({ ...S2Environment.parse(), retry: { maxAttempts: 1 } });
const basin = s2.basin(BASIN);
// Node picks the s2s transport (HTTP/2) for sessions by default; s2-local
// speaks HTTP/1.1, so sessions here use the SDK's fetch transport (SSE).
const stream = basin.stream(STREAM, { forceTransport: "fetch" });
const dec = new TextDecoder();

const binary = new Uint8Array([0, 1, 2, 0xfe, 0xff, 0x0a]);
const total = 4 + 2500;

await step("basins and streams", async () => {
    const b = await within(5000, s2.basins.ensure({ basin: BASIN }), "basins.ensure");
    check(b !== undefined, "basins.ensure");
    const created = await within(5000, basin.streams.create({ stream: STREAM }), "streams.create");
    check(created?.name === STREAM, `streams.create returns the name (${created?.name})`);
    const ensured = await within(5000, basin.streams.ensure({ stream: STREAM }), "streams.ensure");
    check(ensured !== undefined, "streams.ensure on an existing stream");
    const list = await within(5000, basin.streams.list({ prefix: "orders/" }), "streams.list");
    check(list.streams.some((s) => s.name === STREAM), "streams.list finds the stream");
});

await step("append string records (JSON)", async () => {
    const ack = await within(
        5000,
        stream.append(
            AppendInput.create([
                AppendRecord.string({ body: "hello", headers: [["type", "greeting"]] }),
                AppendRecord.string({ body: "héllo \u2603 \"quoted\"\n" }),
            ]),
        ),
        "append",
    );
    check(ack.start.seqNum === 0 && ack.end.seqNum === 2, `append ack 0..2 (${ack.start.seqNum}..${ack.end.seqNum})`);
    check(ack.tail.seqNum === 2, "append ack tail");
});

await step("append a bytes record (protobuf)", async () => {
    const ack = await within(
        5000,
        stream.append(AppendInput.create([AppendRecord.bytes({ body: binary, headers: [[new Uint8Array([0x6b]), new Uint8Array([0, 0xff])]] }), AppendRecord.string({ body: "mixed" })])),
        "append bytes",
    );
    check(ack.start.seqNum === 2 && ack.end.seqNum === 4, `bytes append ack 2..4 (${ack.start.seqNum}..${ack.end.seqNum})`);
});

await step("append many", async () => {
    for (let from = 4; from < total; from += 1000) {
        const n = Math.min(1000, total - from);
        const recs = [];
        for (let i = 0; i < n; i++)
            recs.push(AppendRecord.string({ body: `record ${from + i}` }));
        const a = await within(5000, stream.append(AppendInput.create(recs)), "append batch");
        check(a.start.seqNum === from, `append batch at ${from} (${a.start.seqNum})`);
    }
});

await step("unary read (JSON)", async () => {
    const r = await within(
        5000,
        stream.read({ start: { from: { seqNum: 0 } }, stop: { limits: { count: 2 } } }),
        "read",
    );
    check(r.records.length === 2, `unary read: 2 records (${r.records.length})`);
    check(r.records[0]?.body === "hello", "unary read: body");
    check(
        JSON.stringify(r.records[0]?.headers) === JSON.stringify([["type", "greeting"]]),
        `unary read: headers ${JSON.stringify(r.records[0]?.headers)}`,
    );
    check(r.records[1]?.body === "héllo \u2603 \"quoted\"\n", "unary read: UTF-8 and escapes");
    const all = await within(5000, stream.read({ start: { from: { seqNum: 0 } } }), "read capped");
    check(all.records.length === 1000, `unary read is capped at 1000 (${all.records.length})`);
});

await step("unary read as bytes (protobuf)", async () => {
    const r = await within(
        5000,
        stream.read({ start: { from: { seqNum: 2 } }, stop: { limits: { count: 1 } } }, { as: "bytes" }),
        "read bytes",
    );
    check(
        r.records.length === 1 && Buffer.from(r.records[0].body).equals(Buffer.from(binary)),
        "unary read as bytes: the binary body round-trips",
    );
});

await step("check-tail and 416", async () => {
    const tail = await within(5000, stream.checkTail(), "checkTail");
    check(tail.tail.seqNum === total, `checkTail ${tail.tail.seqNum} == ${total}`);
    try {
        await within(5000, stream.read({ start: { from: { seqNum: total } } }), "read at tail");
        check(false, "read at the tail is RangeNotSatisfiable");
    } catch (e) {
        check(
            e instanceof RangeNotSatisfiableError && e.tail?.seqNum === total,
            `read at the tail is RangeNotSatisfiable (${e?.name} ${e?.status})`,
        );
    }
    try {
        await within(5000, stream.read({ start: { from: { seqNum: total } } }, { as: "bytes" }), "read bytes at tail");
        check(false, "protobuf read at the tail is RangeNotSatisfiable");
    } catch (e) {
        check(
            e instanceof RangeNotSatisfiableError && e.tail?.seqNum === total,
            `protobuf read at the tail is RangeNotSatisfiable (${e?.name} ${e?.status})`,
        );
    }
});

// Every record of a session until it ends by itself.
async function drain(session, ms, what) {
    const got = [];
    await within(
        ms,
        (async () => {
            for await (const r of session)
                got.push(r);
        })(),
        what,
    );
    return got;
}

await step("bounded read session (SSE)", async () => {
    const session = await within(
        5000,
        stream.readSession({ start: { from: { seqNum: 0 } }, stop: { limits: { count: total } } }),
        "readSession",
    );
    const got = await drain(session, 20000, "bounded session");
    check(got.length === total, `bounded session: ${got.length} of ${total} records, then it ended`);
    let inOrder = true;
    for (let i = 0; i < got.length; i++) {
        if (got[i].seqNum !== i || (i >= 4 && got[i].body !== `record ${i}`))
            inOrder = false;
    }
    check(inOrder, "bounded session: seq_nums and bodies in order");
    check(got[0]?.body === "hello" && got[0]?.headers?.[0]?.[1] === "greeting", "bounded session: first record");
});

await step("read session as bytes (SSE, base64)", async () => {
    const session = await within(
        5000,
        stream.readSession({ start: { from: { seqNum: 0 } }, stop: { limits: { count: 4 } } }, { as: "bytes" }),
        "readSession bytes",
    );
    const got = await drain(session, 10000, "bytes session");
    check(got.length === 4, `bytes session: 4 records (${got.length})`);
    check(got[0] && dec.decode(got[0].headers[0][0]) === "type", "bytes session: header name");
    check(got[1] && dec.decode(got[1].body) === "héllo \u2603 \"quoted\"\n", "bytes session: UTF-8 body");
});

await step("read session of a binary record", async () => {
    const session = await within(
        5000,
        stream.readSession({ start: { from: { seqNum: 2 } }, stop: { limits: { count: 1 } } }, { as: "bytes" }),
        "readSession binary",
    );
    const got = await drain(session, 10000, "binary session");
    check(got.length === 1 && Buffer.from(got[0].body).equals(Buffer.from(binary)), "binary session: body");
    check(got[0] && Buffer.from(got[0].headers[0][1]).equals(Buffer.from([0, 0xff])), "binary session: header value");
});

await step("following read session (SSE)", async () => {
    const session = await within(
        5000,
        stream.readSession({ start: { from: { seqNum: total - 2 } } }),
        "readSession follow",
    );
    const got = [];
    const it = session[Symbol.asyncIterator]();
    for (let i = 0; i < 2; i++)
        got.push((await within(10000, it.next(), "follow catch-up")).value);
    await within(
        5000,
        stream.append(AppendInput.create([AppendRecord.string({ body: "late 1" }), AppendRecord.string({ body: "late 2" })])),
        "append while following",
    );
    for (let i = 0; i < 2; i++)
        got.push((await within(10000, it.next(), "follow new records")).value);
    check(
        got.map((r) => r?.seqNum).join(",") === [total - 2, total - 1, total, total + 1].join(","),
        `following session seq_nums ${got.map((r) => r?.seqNum).join(",")}`,
    );
    check(got[3]?.body === "late 2", "following session: appended body");
    await within(5000, it.return(), "cancel the session");
});

await step("read session bounded by wait", async () => {
    const session = await within(
        5000,
        stream.readSession({ start: { from: { tailOffset: 1 } }, stop: { waitSecs: 1 } }),
        "readSession tailOffset",
    );
    const got = await drain(session, 10000, "wait-bounded session");
    check(got.length === 1 && got[0].body === "late 2", `tail_offset=1 wait=1: the last record, then the end (${got.length})`);
    const after = await within(5000, stream.checkTail(), "checkTail after");
    check(after.tail.seqNum === total + 2, `checkTail after follow ${after.tail.seqNum}`);
});

await step("append session (fetch transport)", async () => {
    const session = await within(5000, stream.appendSession(), "appendSession");
    const tickets = [];
    for (let i = 0; i < 3; i++)
        tickets.push(await within(5000, session.submit(AppendInput.create([AppendRecord.string({ body: `session ${i}` })])), "submit"));
    const acks = [];
    for (const t of tickets)
        acks.push(await within(5000, t.ack(), "ack"));
    check(
        acks.map((a) => a.start.seqNum).join(",") === [total + 2, total + 3, total + 4].join(","),
        `append session acks in order (${acks.map((a) => a.start.seqNum).join(",")})`,
    );
    await within(5000, session.close(), "close the append session");
    const r = await within(
        5000,
        stream.read({ start: { from: { seqNum: total + 4 } }, stop: { limits: { count: 1 } } }),
        "read back",
    );
    check(r.records[0]?.body === "session 2", "append session: read back");
});

try {
    await s2.close?.();
} catch {}
server.kill("SIGTERM");
const code = await within(10000, exited, "s2-local exit").catch((e) => e.message);
check(code === 0, `s2-local exits 0 on SIGTERM (${code})`);
check(!/runtime error:|Sanitizer/.test(serverLog), "no sanitizer report from s2-local");
if (failures > 0)
    console.log(`s2-local log:\n${serverLog}`);
console.log(failures === 0 ? "all SDK checks passed" : `${failures} SDK check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
