#!/usr/bin/env python3
"""report.py - turns the JSON figures of tests/bench/run (one file per
measurement in the directory given) into one Markdown table on stdout.
A measurement whose file is missing (peer not installed) shows as n/a."""
import json
import os
import sys
from statistics import median

R = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(R, name + ".json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def rate(d, key="records"):
    if not d or not d.get("seconds"):
        return None
    return d[key] / d["seconds"]


def mbps(d):
    if not d or not d.get("seconds"):
        return None
    return d["bytes"] / d["seconds"] / 1e6


def n(x, unit=""):
    if x is None:
        return "n/a"
    if x >= 100:
        s = f"{x:,.0f}"
    elif x >= 10:
        s = f"{x:.1f}"
    else:
        s = f"{x:.2f}"
    return s + unit


def ratio(a, b):
    return a / b if a is not None and b else None


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def rounds(prefix):
    """(number, figures) of prefix-1, prefix-2... up to the first missing."""
    i = 1
    while (d := load(f"{prefix}-{i}")) is not None:
        yield i, d
        i += 1


def cpu_split(d):
    """(user, kernel) CPU µs per request of the measured server in round d."""
    if not d or not d.get("requests") or "agent_user_s" not in d:
        return None
    return tuple(d[k] / d["requests"] * 1e6 for k in ("agent_user_s", "agent_sys_s"))


def best(prefix, key="records"):
    """The round of prefix-1, prefix-2... with the highest key/seconds, and
    its number; (None, 0) when there is none."""
    top, top_i = None, 0
    for i, d in rounds(prefix):
        if d.get("seconds") and (top is None or d[key] / d["seconds"] > top[key] / top["seconds"]):
            top, top_i = d, i
    return top, top_i


meta = load("meta") or {}
rows = []


def row(num, what, ours, peer, rt, target, met):
    rows.append(f"| {num} | {what} | {ours} | {peer} | {rt} | {target} | {verdict(met)} |")


# 1. Publish.
(ng, _), (ag, ag_i) = best("pub-nginx", "requests"), best("pub-agent", "requests")
arc = load(f"pub-archive-{ag_i}")
ag_ok = None
if ag:
    ag_ok = ag["requests"] - ag["status_errors"]
acc = ag_ok / ag["seconds"] if ag else None
ng_rate = rate(ng, "requests")
r = ratio(acc, ng_rate)
errs = f", {ag['status_errors']} non-2xx, {ag['socket_errors']} socket errors" if ag else ""
row("1", f"Publish `POST /telemetry/events`, {meta.get('event_bytes')}-byte event, wrk 1 thread "
    f"× {meta.get('pub_conns')} keep-alive connections, {meta.get('pub_seconds')} s",
    f"{n(acc)} events/s accepted (p50 {n(ag and ag['latency_p50_us'] / 1000)} ms{errs})",
    f"nginx `return 200` (same request, fixed reply): {n(ng_rate)} req/s", n(r, "×"), "≥ 0.6× nginx",
    None if r is None else r >= 0.6)
(hl, _) = best("pub-health", "requests")
if hl:
    hr = rate(hl, "requests")
    row("1", "… the host's floor on the same agents: `GET /health` (no plugin work), same wrk settings",
        f"{n(hr)} req/s; publish is {n(ratio(acc, hr), '×')} of it", "", n(ratio(hr, ng_rate), "×"),
        "", None)

# Where the time goes, in the rounds shown above: the user-space part is the
# server's own code (for the agent: libevent's evhttp, the host, the plugin).
splits = [(name, cpu_split(d)) for name, d in
          (("nginx", ng), ("agent publish", ag), ("agent `GET /health`", hl))]
if all(c for _, c in splits):
    row("1", "… server CPU time per request in those rounds (user space + kernel)",
        "; ".join(f"{name}: {u:.1f} + {k:.1f} µs" for name, (u, k) in splits[1:]),
        f"nginx: {splits[0][1][0]:.1f} + {splits[0][1][1]:.1f} µs", "", "", None)
if ag and arc:
    admitted = arc["seq_after"] - arc["seq_before"]
    archived = max(0, arc["tail"] - arc["seq_before"])
    archived_rate = archived / (ag["seconds"] + arc["drain_seconds"])
    row("1", "… archived in the same round: envelopes in the embedded s2-local once the archive "
        "caught up, over the wrk time plus the catch-up",
        f"{n(archived_rate)} events/s archived ({archived:,} of {admitted:,} admitted; "
        f"caught up {arc['drain_seconds']} s after wrk stopped)", "", "", "all accepted archived",
        arc["tail"] == arc["seq_after"])
chk, chs = load("check"), load("check-seq")
if chk and chs:
    ok = chk["records"] == chs["seq"] == chs["tail"] and chk["mismatches"] == 0
    row("1", "… archive check: whole stream read back from s2-local, body seq = position + 1",
        f"{'OK' if ok else 'FAILED'}: {chk['records']:,} records read, agent seq {chs['seq']:,}, "
        f"tail {chs['tail']:,}, {chk['mismatches']} out of place", "", "", "every accepted event archived", ok)
ip, ipa = load("inproc-off"), load("inproc-archive")
if ip:
    row("1", "Publish in process: shared publish service, no HTTP, archive off",
        f"{n(ip['admitted'] / ip['publish_seconds'])} events/s ({ip['admitted']:,} events)",
        "", "", "", None)
if ipa:
    arch = ipa["appended"] / ipa["archive_seconds"] if ipa["appended"] > 0 else None
    row("1", "Publish in process with the embedded archive (publish loop, then flush)",
        f"{n(ipa['admitted'] / ipa['publish_seconds'])} events/s published; "
        f"{n(arch)} events/s archived end to end ({ipa['appended']:,} appended, "
        f"{ipa['refused']} refused)", "", "", "", None if ipa['appended'] < 0 else
        ipa["appended"] == ipa["admitted"])

# 2. Archive read.
(wk, _), (sdk, _), cu = best("walk"), best("walk-sdk"), load("walk-curl")
r = ratio(rate(wk), rate(sdk))
if wk:
    row("2", f"Archive walk: {wk['records']:,} envelopes via `GET /telemetry/events?limit=1000` "
        f"({wk['requests']} pages, parsed; {wk['gaps']} seq gaps)",
        f"{n(rate(wk))} events/s, {n(mbps(wk))} MB/s",
        f"S2 TypeScript SDK `read` count 1000 on s2-local (parsed): {n(rate(sdk))} events/s, "
        f"{n(mbps(sdk))} MB/s", n(r, "×"), "≥ 2× the SDK", None if r is None else r >= 2)
if cu:
    row("2", "… peer: curl reading s2-local directly, one keep-alive connection, count=1000",
        "", f"{n(rate(cu))} records/s, {n(mbps(cu))} MB/s", n(ratio(rate(wk), rate(cu)), "×"),
        "", None)

# 3. s2-local and Redis.
for b in (1, 50, 1000):
    (s, _), (rd, _) = best(f"s2-append-{b}"), best(f"redis-xadd-{b}")
    r = ratio(rate(s), rate(rd))
    row("3", f"s2-local append, batches of {b} × {meta.get('body_bytes')} B, fsync none "
        f"(write(2) before ack)",
        f"{n(rate(s))} records/s, {n(mbps(s))} MB/s" if s else "n/a",
        f"Redis XADD × {b} pipelined, appendonly yes, appendfsync no: "
        f"{n(rate(rd))} records/s, {n(mbps(rd))} MB/s", n(r, "×"), "≥ 0.5× Redis",
        None if r is None else r >= 0.5)
(s, _), (rd, _) = best("s2-read"), best("redis-xrange")
r = ratio(rate(s), rate(rd))
row("3", f"s2-local read, count=1000 ({s['records']:,} records)" if s else "s2-local read",
    f"{n(rate(s))} records/s, {n(mbps(s))} MB/s" if s else "n/a",
    f"Redis XRANGE COUNT 1000: {n(rate(rd))} records/s, {n(mbps(rd))} MB/s", n(r, "×"),
    "≥ 0.5× Redis", None if r is None else r >= 0.5)

# 4, 5. SSE and memory.
sse, idle = load("sse"), load("rss-idle")
if sse:
    ok = sse["lost"] == 0 and sse["cpu_cores"] < 1.0
    row("4", f"SSE fan-out: {meta.get('sse_clients')} clients on `/telemetry/stream` "
        f"(+{meta.get('sse_idle')} that never read), {meta.get('sse_rate'):,} events/s "
        f"for {meta.get('sse_seconds')} s via the publish service",
        f"{n(sse['delivered_rate'])} events/s delivered ({n(sse['publish_rate'])} published/s); "
        f"{sse['lost']} lost by live clients ({sse['clients_lost']} of "
        f"{meta.get('sse_clients')} clients missed any; {sse['clients_complete']} reached the last event), "
        f"{sse['disorder']} out of order; agent CPU {sse['cpu_cores']:.2f} cores",
        "", "", "no loss, < 1 core", ok)
if idle:
    row("5", "Agent RSS, idle (telemetry plugin, embedded archive)",
        f"{idle['rss_kib'] / 1024:.1f} MiB ({idle['anon_kib'] / 1024:.1f} MiB private anonymous, "
        f"{idle['file_kib'] / 1024:.1f} MiB mapped library files)",
        "", "", "≤ 8 MiB RSS", idle["rss_kib"] <= 8 * 1024)
if sse:
    row("5", "Agent RSS, peak under item 4 (with the clients that never read)",
        f"{sse['rss_max_kib'] / 1024:.1f} MiB (from {sse['rss_start_kib'] / 1024:.1f} MiB)",
        "", "", "", None)

# 6. api_call, head to head: (x, y) req/s per run, x the agent with
# telemetry on (the first of two telemetry-off agents for aa).
secs, conns = meta.get("h2h_seconds", "?"), meta.get("pub_conns", "?")
for pair, label, target in (
        ("health", "api_call overhead head to head, `GET /health` (side-effect free: the observer "
         f"only, no event): an agent with telemetry on and one with it off on the same core at the "
         f"same time, a wrk each (1 thread × {conns} connections)", ""),
        ("onoff", "api_call overhead head to head, `POST /fixture/echo` (operation PostEcho: an "
         "api_call event published and archived in the embedded archive), the same way", "≤ 5%"),
        ("noarch", "… the same with the archive off (the event built and put on the live stream "
         "only): what archiving adds is the difference", ""),
        ("s2", "… the same archiving over HTTP, as with an S2 account (a standalone s2-local on "
         "the load generators' core stands in for S2)", ""),
        ("aa", "… control: two agents with telemetry off, the same way (A/A): what the method "
         "reads when there is no difference", "")):
    runs, cpu = [], []
    for i, x in rounds(f"h2h-{pair}-x"):
        y = load(f"h2h-{pair}-y-{i}")
        if y and x.get("seconds") and y.get("seconds"):
            runs.append((x["requests"] / x["seconds"], y["requests"] / y["seconds"]))
            # CPU per request: what each agent paid, however the core was
            # shared between them.
            if x.get("agent_cpu_s") and y.get("agent_cpu_s") and x["requests"] and y["requests"]:
                cpu.append((x["agent_cpu_s"] / x["requests"]) / (y["agent_cpu_s"] / y["requests"]))
    if not runs:
        continue
    ovs = [(1 - x / y) * 100 for x, y in runs]
    ov = median(ovs)
    arch = ""
    got = [d for _, d in rounds(f"h2h-{pair}-archive")]
    if got:
        seq, tail = sum(d["seq"] for d in got), sum(min(d["tail"], d["seq"]) for d in got)
        arch = (f"; {tail:,} of {seq:,} events archived: "
                f"{'all archived' if tail == seq else 'NOT all archived'}")
    ours, peer = ("first", "second") if pair == "aa" else ("telemetry on", "telemetry off")
    row("6", f"{label}; median of {len(runs)} runs of {secs} s",
        f"{ours}: {n(median([x for x, _ in runs]))} req/s{arch}",
        f"{peer}: {n(median([y for _, y in runs]))} req/s",
        f"{ov:+.1f}% overhead (runs: {', '.join(f'{o:+.1f}%' for o in ovs)})"
        + (f"; agent CPU per request {(median(cpu) - 1) * 100:+.1f}% (median)" if cpu else ""),
        target, ov <= 5 if target else None)

cg = {k: load(f"cg-{k}") for k in ("on", "off", "noarch")}
if all(v and v.get("requests") and v.get("instructions") for v in cg.values()):
    ipr = {k: v["instructions"] / v["requests"] for k, v in cg.items()}
    row("6", "… instructions per request of `POST /fixture/echo` (callgrind, user space: "
        "the kernel's share is not counted), unaffected by other load on the machine",
        f"telemetry on: {n(ipr['on'])}; archive off: {n(ipr['noarch'])}",
        f"telemetry off: {n(ipr['off'])}",
        f"{(ipr['on'] / ipr['off'] - 1) * 100:+.1f}% (archive off "
        f"{(ipr['noarch'] / ipr['off'] - 1) * 100:+.1f}%)", "", None)

print(f"# Benchmark {meta.get('mode', '')} run, {meta.get('date', '')}")
print()
print(f"- CPU: {meta.get('cpu')} ({meta.get('cores')} cores); kernel {meta.get('kernel')}")
print(f"- Build: {meta.get('buildtype', 'release')} (`{meta.get('build')}`), commit {meta.get('commit')}")
print("- Everything on 127.0.0.1, each figure side by side with its peer in the same run; "
      "MB = 10^6 bytes. The machine may be shared: compare ratios, not absolute figures.")
if meta.get("pinned"):
    print("- Items 1, 2, 3 and 6: the servers (agents, nginx, s2-local, Redis) on core 1, "
          "the load generators on core 0.")
print()
print("| # | Measurement | Ours | Peer | Ratio | Target | |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for line in rows:
    print(line)
