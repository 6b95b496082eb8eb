// npm run bench:peers: the hardware ceilings (1 and N threads) and every peer library on the GEMM target
// shapes (targetShapes), in one table. GFLOP/s from the median call; for x @ W^T also the weight
// bytes per second of the fastest peer (the decode-speed figure to hold against the read bandwidth).
//   --threads N    peer threads (default: all CPUs)      --time-ms MS  budget per shape and peer (300)
//   --quick        small shapes, short timing (CI smoke)  --peers a,b   only these peers
//   --json FILE    also write everything measured as JSON
//   --strict       exit 1 when a peer or ceiling has no figure (CI: after set-up, all must run)
// The npm script runs bench/peers/setup.sh first and holds the machine's exclusive bench lock.
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { type Ceilings, measureCeilings, PEER_NAMES, type PeerResult, type PeerShape, peerStatus, runPeers, targetShapes } from './index.js';
import { printTable } from '../timing.js';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string' },
    'time-ms': { type: 'string' },
    quick: { type: 'boolean', default: false },
    peers: { type: 'string' },
    json: { type: 'string' },
    strict: { type: 'boolean', default: false },
  },
});
const threads = Number(args.threads ?? availableParallelism());
const timeMs = Number(args['time-ms'] ?? (args.quick ? 20 : 300));
const peers = args.peers ? args.peers.split(',') : [...PEER_NAMES];
if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`--threads must be a positive integer, got ${args.threads}`);
if (!(timeMs > 0)) throw new RangeError(`--time-ms must be positive, got ${args['time-ms']}`);
for (const p of peers) if (!(PEER_NAMES as readonly string[]).includes(p)) throw new RangeError(`--peers: unknown peer '${p}' (known: ${PEER_NAMES.join(', ')})`);

const figuresRight = (column: number) => column >= 2; // labels left

const fixed = (v: number | undefined, digits = 1) => (v === undefined ? '-' : Number.isFinite(v) ? v.toFixed(digits) : 'n/a');

function shapeLabel(s: PeerShape): string {
  return s.transB ? `M=${s.m} x W ${s.n}x${s.k}^T` : s.m === s.n && s.n === s.k ? `square ${s.m}` : `${s.m}x${s.n}x${s.k}`;
}

const dtypeLabel = (s: PeerShape) => (s.outDtype && s.outDtype !== s.dtype ? `${s.dtype}->${s.outDtype}` : s.dtype);

// ---- what is set up
const status = peerStatus().filter((s) => peers.includes(s.peer));
console.log('peers:');
for (const s of status) console.log(`  ${s.peer.padEnd(18)} ${s.available ? '' : '(not available) '}${s.detail}`);

// ---- ceilings
const ceilings: Ceilings[] = [];
for (const t of [...new Set([1, threads])]) ceilings.push(await measureCeilings(t, args.quick ? { readMiB: 256 } : {}));
console.log(`\nceilings on ${ceilings[0].cpu ?? 'this CPU'} (${ceilings[0].features ?? '?'}), GFLOP/s and GB/s, best of 5 runs (read: of 10):`);
printTable([
  ['threads', 'f32 FMA', 'AVX-512 FMA', 'AVX2 FMA', 'AVX512-BF16', 'AMX-BF16', 'read GB/s', 'read median'],
  ...ceilings.map((c) => [
    String(c.threads),
    fixed(c.fmaF32Gflops),
    fixed(c.avx512FmaF32Gflops),
    fixed(c.avx2FmaF32Gflops),
    fixed(c.avx512Bf16Gflops),
    c.amxBf16Gflops === undefined ? 'n/a' : fixed(c.amxBf16Gflops),
    fixed(c.readGBps),
    fixed(c.readMedianGBps),
  ]),
], figuresRight);
for (const c of ceilings) if (c.note) console.log(`  ${c.threads} threads: ${c.note}`);
if (ceilings[0].amxNote) console.log(`  AMX-BF16: ${ceilings[0].amxNote}`);

// ---- peers
const shapes = targetShapes({ quick: args.quick });
const started = Date.now();
const results = await runPeers(shapes, { threads, timeMs, peers });
const key = (s: PeerShape) => `${s.m}x${s.n}x${s.k}:${s.transB}:${s.dtype}:${s.outDtype ?? s.dtype}`;
const byShape = new Map<string, PeerResult[]>();
for (const r of results) byShape.set(key(r.shape), [...(byShape.get(key(r.shape)) ?? []), r]);

console.log(`\npeers on ${threads} threads, GFLOP/s of the median call (${timeMs} ms per shape and peer, ${((Date.now() - started) / 1000).toFixed(0)} s in all):`);
const rows: string[][] = [['shape', 'dtype', ...peers, 'best', 'best ms', 'W GB/s']];
for (const s of shapes) {
  const rs = byShape.get(key(s)) ?? [];
  const timed = rs.filter((r) => Number.isFinite(r.medianMs));
  const best = timed.reduce<PeerResult | undefined>((b, r) => (b === undefined || r.medianMs < b.medianMs ? r : b), undefined);
  const weightGBps = best && s.transB ? (s.n * s.k * (s.dtype === 'bf16' ? 2 : 4)) / (best.medianMs * 1e6) : undefined;
  rows.push([
    shapeLabel(s),
    dtypeLabel(s),
    ...peers.map((p) => {
      const r = rs.find((x) => x.peer === p);
      return r === undefined ? '-' : fixed(r.gflops);
    }),
    best?.peer ?? '-',
    best ? best.medianMs.toFixed(3) : '-',
    fixed(weightGBps),
  ]);
}
printTable(rows, figuresRight);
console.log("  '-': the peer has no such GEMM (numpy and BLIS 0.9: no bf16; without AVX-512 the forced AVX-512 peers none, oneDNN no bf16); n/a: see the notes");

const notes = new Map<string, string[]>();
for (const r of results) {
  if (Number.isFinite(r.medianMs) || !r.note) continue;
  notes.set(r.note, [...(notes.get(r.note) ?? []), `${r.peer} ${shapeLabel(r.shape)} ${dtypeLabel(r.shape)}`]);
}
for (const [note, where] of notes) console.log(`  n/a ${where.length > 3 ? `${where.length} shapes of ${where[0].split(' ')[0]}` : where.join('; ')}: ${note}`);
console.log('what each peer ran:');
for (const p of peers) {
  const impls = [...new Set(results.filter((r) => r.peer === p && r.impl).map((r) => `${r.impl} (${r.shape.dtype})`))];
  if (impls.length > 0) console.log(`  ${p.padEnd(18)} ${impls.join('; ')}`);
}

if (args.json) {
  writeFileSync(args.json, `${JSON.stringify({ threads, timeMs, status, ceilings, results }, null, 2)}\n`);
  console.log(`wrote ${args.json}`);
}

const missingFigures = results.filter((r) => !Number.isFinite(r.medianMs)).length + ceilings.filter((c) => c.note).length;
if (args.strict && missingFigures > 0) {
  console.error(`--strict: ${missingFigures} figures missing (see the notes above)`);
  process.exitCode = 1;
}
