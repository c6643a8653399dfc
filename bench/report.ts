/**
 * Medians over rounds, ratios to nginx and to the node:http ceiling, the
 * targets of issues 4 and 6, all as one markdown document.
 */
import type { IndexScaleResult } from './index-scale.ts';
import type { LoadResult } from './load.ts';
import type { MachineInfo } from './machine.ts';
import type { Peers } from './peers.ts';
import type { ResizeColdResult, RoundResult, Sizes } from './scenarios.ts';
import type { SystemId } from './systems.ts';

export interface SystemRow {
  id: SystemId | 'sharp';
  label: string;
  notes: string[];
  /** Why the system did not run, if it did not. */
  skipped?: string;
}

export interface ReportInput {
  title: string;
  machine: MachineInfo;
  peers: Peers;
  sizes: Sizes;
  photosSource: string;
  loadTool: string;
  systems: SystemRow[];
  rounds: RoundResult[];
  rawSharp: ResizeColdResult[];
  rawSharpVersion?: string;
  /** Why the resize columns are n/a for fastimagecache, if they are. */
  resizeUnavailable?: string;
  index?: IndexScaleResult;
  indexError?: string;
  /** Detected memory-tier setting of this build, if any. */
  memoryTier?: { setting: string; bytes: number; diskRowValue?: number };
  notes: string[];
  elapsedSec: number;
}

const MB = 1e6;

export function median(values: number[]): number | undefined {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

function fmt(n: number | undefined, digits?: number): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  const d = digits ?? (Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 2);
  return n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

/** An entry count, with thousands separators. */
function n(x: number): string {
  return x.toLocaleString('en-US');
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b;
}

function fmtRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return '—';
  return r >= 100 ? `${fmt(r, 0)}×` : `${fmt(r, 2)}×`;
}

/** Median, with the spread when rounds disagree (e.g. "1" or "1 (1–3)"). */
function fmtCount(values: number[]): string {
  if (values.length === 0) return '—';
  const m = median(values);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo === hi ? fmt(m, 0) : `${fmt(m, 0)} (${lo}–${hi})`;
}

interface Figures {
  hotRps?: number;
  hotP50?: number;
  hotP99?: number;
  hotMBps?: number;
  stampedeGets: number[];
  stampedeHeads: number[];
  stampedeLastByte?: number;
  stampedeAbandoned: number;
  stampedeOk: number[];
  mixedRps?: number;
  mixedP99?: number;
  resizeColdPerSec?: number;
  resizeColdFailed: number;
  resizeWarmRps?: number;
  hotRssTotal?: number;
  hotRssMaxProcess?: number;
  missRssMaxProcess?: number;
  errors: string[];
  non2xx: number;
}

function figuresOf(rounds: RoundResult[]): Figures {
  const loads = (pick: (r: RoundResult) => LoadResult | undefined) => rounds.map(pick).filter((x): x is LoadResult => !!x);
  const hot = loads((r) => r.hot);
  const mixed = loads((r) => r.mixed);
  const warm = loads((r) => r.resizeWarm);
  const stampede = rounds.map((r) => r.stampede).filter((s) => s !== undefined);
  const cold = rounds.map((r) => r.resizeCold).filter((c) => c !== undefined);
  const max = (xs: Array<number | undefined>) => {
    const v = xs.filter((x): x is number => x !== undefined);
    return v.length ? Math.max(...v) : undefined;
  };
  return {
    hotRps: median(hot.map((l) => l.rps)),
    hotP50: median(hot.map((l) => l.p50Ms)),
    hotP99: median(hot.map((l) => l.p99Ms)),
    hotMBps: median(hot.map((l) => l.mbPerSec)),
    stampedeGets: stampede.map((s) => s.originGets),
    stampedeHeads: stampede.map((s) => s.originHeads),
    stampedeLastByte: median(stampede.map((s) => s.lastByteMs)),
    stampedeAbandoned: stampede.reduce((a, s) => a + s.abandoned, 0),
    stampedeOk: stampede.map((s) => s.ok),
    mixedRps: median(mixed.map((l) => l.rps)),
    mixedP99: median(mixed.map((l) => l.p99Ms)),
    resizeColdPerSec: median(cold.map((c) => c.perSec)),
    resizeColdFailed: cold.reduce((a, c) => a + c.failed, 0),
    resizeWarmRps: median(warm.map((l) => l.rps)),
    hotRssTotal: max(rounds.map((r) => r.hotRss?.totalBytes)),
    hotRssMaxProcess: max(rounds.map((r) => r.hotRss?.maxProcessBytes)),
    missRssMaxProcess: max(rounds.map((r) => r.missRss?.maxProcessBytes)),
    errors: rounds.flatMap((r) => r.errors.map((e) => `round ${r.round}: ${e}`)),
    non2xx: [...hot, ...mixed, ...warm].reduce((a, l) => a + l.non2xx + l.errors, 0),
  };
}

/** A target's verdict from its test (undefined: nothing to judge). */
function verdict(ok: boolean | undefined): string {
  return ok === undefined ? 'n/a' : ok ? 'met' : '**not met**';
}

/** The start-up target's row: measured at 1M, extrapolated from a growth above the restart noise, or not decided. */
export function startUpTarget(idx: IndexScaleResult | undefined, indexError?: string): [string, string] {
  if (!idx) return [`not measured${indexError ? `: ${indexError}` : ''}`, 'n/a'];
  const over = `${fmt(idx.full.firstHitMs, 0)} ms over ${n(idx.entries)} entries`;
  const small = `${fmt(idx.small.firstHitMs, 0)} ms over ${n(idx.smallEntries)} (restart noise ${fmt(idx.firstHitNoiseMs, 0)} ms)`;
  if (idx.measuredAt1M) return [`**${over}, measured**; ${small}`, `${verdict(idx.full.firstHitMs <= 1000)} (measured)`];
  const measured = `${over}, ${small} → **≈ ${fmt(idx.firstHitAt1MEstimateMs, 0)} ms at 1M, extrapolated linearly, not measured**`;
  if (idx.growthMeasurable) return [measured, `${verdict(idx.firstHitAt1MEstimateMs <= 1000)} (extrapolated)`];
  // A difference within the restart noise, extrapolated, is the noise extrapolated: decide only if the noise cannot
  // change the verdict (as the index memory row does). The bound adds the noise to the growth before extrapolating.
  const perEntryMs = (ms: number) => ms / (idx.entries - idx.smallEntries);
  const growth = Math.max(0, idx.full.firstHitMs - idx.small.firstHitMs);
  const upperAt1M = idx.small.firstHitMs + perEntryMs(growth + idx.firstHitNoiseMs) * (1_000_000 - idx.smallEntries);
  return [
    `${measured} (no growth with entries measurable at ${n(idx.entries)}; with the noise added, up to ${fmt(upperAt1M, 0)} ms)`,
    idx.full.firstHitMs > 1000
      ? '**not met** (over 1 s already)'
      : upperAt1M <= 1000
        ? 'met (extrapolated, noise included)'
        : 'within noise: measure with `--index-entries 1000000`',
  ];
}

export function renderReport(input: ReportInput): string {
  const bySystem = new Map<string, Figures>();
  for (const s of input.systems) bySystem.set(s.id, figuresOf(input.rounds.filter((r) => r.system === s.id)));
  const fic = bySystem.get('fastimagecache');
  const nginx = bySystem.get('nginx');
  const node = bySystem.get('node');
  const ipx = bySystem.get('ipx');
  const sharpPerSec = median(input.rawSharp.map((r) => r.perSec));
  const m = input.machine;
  const out: string[] = [];

  out.push(`# ${input.title}`, '');
  out.push(
    `${m.date} · ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB · ${m.os} · Node ${m.node} · ` +
      `fastimagecache ${m.fastimagecache} · load average at start ${m.loadAverageAtStart}`,
    '',
  );
  out.push(
    `Median of ${input.sizes.rounds} interleaved round${input.sizes.rounds > 1 ? 's' : ''}; ` +
      `${input.sizes.connections} connections; load from ${input.loadTool} in its own process; ` +
      `hot set ${input.sizes.hotUrls} URLs; photos: ${input.photosSource}. Ratios are ratios of medians. ` +
      `Whole run: ${fmt(input.elapsedSec, 0)} s.`,
    '',
  );

  const header = [
    'system',
    'hot req/s',
    '× nginx',
    '× node',
    'hot p50 ms',
    'hot p99 ms',
    'hot MB/s',
    `stampede (${input.sizes.stampedeClients}) origin GETs`,
    'stampede last byte ms',
    'mixed req/s',
    'mixed p99 ms',
    'resize cold img/s',
    'resize warm req/s',
    'peak RSS hot MB (all procs)',
    'peak RSS misses MB (largest proc)',
  ];
  out.push(`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
  for (const s of input.systems) {
    if (s.id === 'sharp') {
      const cells = [s.label, ...Array<string>(10).fill('—'), fmt(sharpPerSec), '—', '—', '—'];
      out.push(`| ${cells.join(' | ')} |`);
      continue;
    }
    if (s.skipped) {
      out.push(`| ${s.label} | not run: ${s.skipped} |${' |'.repeat(header.length - 2)}`);
      continue;
    }
    const f = bySystem.get(s.id) as Figures;
    const isProxy = s.id !== 'node';
    const noCache = s.id === 'ipx' ? 'n/a (no cache)' : '—';
    const resizeNa = s.id === 'fastimagecache' && input.resizeUnavailable ? `n/a (${input.resizeUnavailable})` : '—';
    const cells = [
      s.label,
      fmt(f.hotRps, 0),
      fmtRatio(ratio(f.hotRps, nginx?.hotRps)),
      fmtRatio(ratio(f.hotRps, node?.hotRps)),
      fmt(f.hotP50),
      fmt(f.hotP99),
      fmt(f.hotMBps, 0),
      isProxy ? fmtCount(f.stampedeGets) : '—',
      f.stampedeAbandoned > 0 ? `> ${fmt(f.stampedeLastByte, 0)}` : fmt(f.stampedeLastByte, 0),
      f.mixedRps === undefined ? noCache : fmt(f.mixedRps, 0),
      f.mixedP99 === undefined ? noCache : fmt(f.mixedP99),
      f.resizeColdPerSec !== undefined ? fmt(f.resizeColdPerSec) : resizeNa,
      f.resizeWarmRps !== undefined ? fmt(f.resizeWarmRps, 0) : resizeNa,
      fmt(f.hotRssTotal === undefined ? undefined : f.hotRssTotal / MB, 0),
      fmt(f.missRssMaxProcess === undefined ? undefined : f.missRssMaxProcess / MB, 0),
    ];
    out.push(`| ${cells.join(' | ')} |`);
  }
  out.push('');

  // Targets.
  const targets: Array<[string, string, string]> = [];
  const hotVsNginx = ratio(fic?.hotRps, nginx?.hotRps);
  targets.push([
    'hot hits ≥ 0.6 × nginx req/s (stretch 0.8 ×)',
    fmtRatio(hotVsNginx),
    hotVsNginx === undefined ? 'n/a' : hotVsNginx >= 0.8 ? 'met (stretch too)' : verdict(hotVsNginx >= 0.6),
  ]);
  const hotVsNode = ratio(fic?.hotRps, node?.hotRps);
  targets.push(['hot hits ≥ 0.8 × node:http ceiling', fmtRatio(hotVsNode), verdict(hotVsNode === undefined ? undefined : hotVsNode >= 0.8)]);
  const p99Ratio = ratio(fic?.hotP99, nginx?.hotP99);
  targets.push([
    'hot p99 ≤ 2 × nginx p99',
    `${fmt(fic?.hotP99)} ms vs ${fmt(nginx?.hotP99)} ms (${fmtRatio(p99Ratio)})`,
    verdict(p99Ratio === undefined ? undefined : p99Ratio <= 2),
  ]);
  const disk = bySystem.get('fastimagecache-disk');
  const diskRatio = ratio(disk?.hotRps, nginx?.hotRps);
  targets.push([
    'hits from disk (memory tier too small) ≥ 0.35 × nginx',
    disk ? fmtRatio(diskRatio) : 'not run (this build has no memory-tier setting the bench recognises)',
    verdict(diskRatio === undefined ? undefined : diskRatio >= 0.35),
  ]);
  const gets = fic?.stampedeGets ?? [];
  targets.push([
    `cold stampede: exactly 1 origin request (${input.sizes.stampedeClients} clients)`,
    gets.length ? `${gets.join(', ')} per round (nginx: ${(nginx?.stampedeGets ?? []).join(', ') || '—'}; ipx: ${(ipx?.stampedeGets ?? []).join(', ') || '—'})` : '—',
    verdict(gets.length ? gets.every((g) => g === 1) : undefined),
  ]);
  const repeatHot = ratio(fic?.hotRps, ipx?.hotRps);
  const repeatResize = ratio(fic?.resizeWarmRps, ipx?.resizeWarmRps);
  targets.push([
    'repeated requests ≥ 100 × ipx (original image)',
    fmtRatio(repeatHot),
    verdict(repeatHot === undefined ? undefined : repeatHot >= 100),
  ]);
  targets.push([
    'repeated requests ≥ 100 × ipx (300-px WebP, warm)',
    input.resizeUnavailable ? `n/a (${input.resizeUnavailable})` : fmtRatio(repeatResize),
    verdict(repeatResize === undefined ? undefined : repeatResize >= 100),
  ]);
  const coldVsSharp = ratio(fic?.resizeColdPerSec, sharpPerSec);
  targets.push([
    'cold resize ≥ 0.85 × raw sharp (same images, same concurrency)',
    input.resizeUnavailable ? `n/a (${input.resizeUnavailable})` : `${fmt(fic?.resizeColdPerSec)} vs ${fmt(sharpPerSec)} img/s (${fmtRatio(coldVsSharp)})`,
    verdict(coldVsSharp === undefined ? undefined : coldVsSharp >= 0.85),
  ]);
  const coldVsCeiling = ratio(fic?.resizeColdPerSec, node?.resizeColdPerSec);
  targets.push([
    'cold resize × the Node resize ceiling (fetch + the same sharp call, nothing else; same workers)',
    input.resizeUnavailable
      ? `n/a (${input.resizeUnavailable})`
      : node?.resizeColdPerSec === undefined
        ? 'not measured (the node:http ceiling did not resize in this run)'
        : `${fmt(fic?.resizeColdPerSec)} vs ${fmt(node.resizeColdPerSec)} img/s (${fmtRatio(coldVsCeiling)}); ` +
          `the ceiling itself: ${fmtRatio(ratio(node.resizeColdPerSec, sharpPerSec))} raw sharp`,
    '— (no target)',
  ]);
  const idx = input.index;
  targets.push(['start-up: first hit within 1 s of a restart over 1,000,000 entries', ...startUpTarget(idx, input.indexError)]);
  targets.push([
    'index memory < 300 bytes per entry',
    idx
      ? `${fmt(idx.bytesPerEntryPerProcess, 0)} ± ${fmt(idx.bytesPerEntryNoise, 0)} B/entry (Δ RSS of the primary, which holds the index, ${n(idx.entries)} vs ${n(idx.smallEntries)} entries)`
      : '—',
    idx
      ? idx.bytesPerEntryPerProcess + idx.bytesPerEntryNoise < 300
        ? 'met'
        : idx.bytesPerEntryPerProcess - idx.bytesPerEntryNoise >= 300
          ? '**not met**'
          : 'within noise: rerun with more entries'
      : 'n/a',
  ]);
  const tier = input.memoryTier;
  const missPeak = fic?.missRssMaxProcess;
  targets.push([
    'peak RSS per worker ≤ memory tier + 150 MB during misses',
    `${fmt(missPeak === undefined ? undefined : missPeak / MB, 0)} MB largest process${tier ? ` (memory tier ${tier.setting} = ${fmt(tier.bytes / MB, 0)} MB)` : ' (memory tier size unknown to the bench)'}`,
    tier && missPeak !== undefined ? verdict(missPeak <= tier.bytes + 150 * MB) : 'n/a',
  ]);
  out.push('## Targets (issues 4 and 6)', '', '| target | measured | verdict |', '|---|---|---|');
  for (const [t, v, ok] of targets) out.push(`| ${t} | ${v} | ${ok} |`);
  out.push('');

  if (idx) {
    const mb = (b: number) => fmt(b / MB, 0);
    out.push('## fastimagecache over a large cache directory', '');
    out.push(
      `Filled with ${n(idx.entries)} entries${idx.entries < idx.requestedEntries ? ` (of the ${n(idx.requestedEntries)} asked for: the fill's time bound of ${fmt(idx.populateBoundSec, 0)} s cut it short)` : ''} (tiny PNGs: ${idx.writtenDirectly ? `${n(idx.entries - idx.writtenDirectly)} requested through the server, ${n(idx.writtenDirectly)} written by the build's storage layer in the same format` : 'requested through the server'}) in ${fmt(idx.populateSec, 0)} s ` +
        `(${fmt(idx.entries / idx.populateSec, 0)} entries/s), and a second directory with ${n(idx.smallEntries)}. ` +
        `Restarted over each, alternately, ${input.sizes.indexRestarts} times (medians; the origin refuses the tiny URLs meanwhile, so only a real hit answers 200):`,
      '',
      '| cache dir | first hit after start, ms | RSS all processes, MB | RSS largest process, MB | RSS primary (index), MB |',
      '|---|---:|---:|---:|---:|',
      `| ${n(idx.smallEntries)} entries | ${fmt(idx.small.firstHitMs, 0)} | ${mb(idx.small.totalBytes)} | ${mb(idx.small.maxProcessBytes)} | ${mb(idx.small.primaryBytes)} |`,
      `| ${n(idx.entries)} entries${idx.measuredAt1M ? ' (**measured**)' : ''} | ${fmt(idx.full.firstHitMs, 0)} | ${mb(idx.full.totalBytes)} | ${mb(idx.full.maxProcessBytes)} | ${mb(idx.full.primaryBytes)} |`,
    );
    if (!idx.measuredAt1M) {
      out.push(
        `| 1,000,000 entries (**extrapolated linearly, not measured**) | ${fmt(idx.firstHitAt1MEstimateMs, 0)} | — | — | ${mb(idx.small.primaryBytes + idx.bytesPerEntryPerProcess * 1e6)} |`,
      );
    }
    out.push('');
    if (idx.notes.length) out.push(`Notes: ${idx.notes.join('; ')}.`, '');
  }

  // Per-round figures, to show the spread.
  out.push('## Rounds (hot req/s, then resize warm req/s)', '');
  const ids = input.systems.filter((s) => s.id !== 'sharp' && !s.skipped);
  out.push(`| round | ${ids.map((s) => s.label).join(' | ')} |`, `|---|${ids.map(() => '---:').join('|')}|`);
  for (let r = 1; r <= input.sizes.rounds; r++) {
    const cells = ids.map((s) => {
      const rr = input.rounds.find((x) => x.system === s.id && x.round === r);
      const warm = rr?.resizeWarm ? ` / ${fmt(rr.resizeWarm.rps, 0)}` : '';
      return `${fmt(rr?.hot?.rps, 0)}${warm}`;
    });
    out.push(`| ${r} | ${cells.join(' | ')} |`);
  }
  out.push('');

  out.push('## Software', '');
  const p = input.peers;
  out.push(
    `- nginx: ${p.nginx.version ?? `missing (${p.nginx.missing ?? ''})`}`,
    `- Varnish: ${p.varnish.version ?? `missing (${p.varnish.missing ?? ''})`}`,
    `- ipx: ${p.ipx.version ?? `missing (${p.ipx.missing ?? ''})`}`,
    `- load: ${p.wrk.version ?? 'wrk not installed'}; autocannon ${m.autocannon}`,
    `- sharp (fastimagecache and the raw-sharp reference): ${input.rawSharpVersion ?? m.sharp}`,
    '',
  );

  const notes = [...input.notes];
  const limited = bySystem.get('fastimagecache-limited');
  const limitedRatio = ratio(limited?.hotRps, fic?.hotRps);
  if (limitedRatio !== undefined) {
    notes.push(`With the rate limit counting every request (on by default; the main row turns it off), hot hits ran at ${fmtRatio(limitedRatio)} the main row`);
  }
  for (const s of input.systems) {
    for (const n of s.notes) notes.push(`${s.label}: ${n}`);
    const f = bySystem.get(s.id);
    if (f) {
      for (const e of f.errors) notes.push(`${s.label}: ${e}`);
      if (f.non2xx > 0) notes.push(`${s.label}: ${f.non2xx} load requests failed or were not 2xx`);
      if (f.resizeColdFailed > 0) notes.push(`${s.label}: ${f.resizeColdFailed} cold resize requests failed`);
      if (f.stampedeAbandoned > 0) notes.push(`${s.label}: ${f.stampedeAbandoned} stampede clients were still waiting at the ${input.sizes.stampedeCapSec} s deadline`);
      const okCounts = f.stampedeOk.filter((ok) => ok < input.sizes.stampedeClients);
      if (okCounts.length) notes.push(`${s.label}: stampede answered only ${okCounts.join(', ')} of ${input.sizes.stampedeClients} with 200`);
      const heads = f.stampedeHeads.filter((h) => h > 0);
      if (heads.length) notes.push(`${s.label}: the stampede also sent ${heads.join(', ')} HEAD requests to the origin`);
    }
  }
  if (notes.length) {
    out.push('## Notes', '', ...notes.map((n) => `- ${n}`), '');
  }
  return out.join('\n');
}
