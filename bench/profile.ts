/**
 * Reading a V8 .cpuprofile (from `node --cpu-prof`): self time per function,
 * the top of which shows where the hit path spends its time.
 */
import { readFileSync } from 'node:fs';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  name: string;
  where: string;
  selfMs: number;
  percent: number;
}

/** `file:///work/main/dist/cache/x.js` → `dist/cache/x.js`; node internals keep their `node:` name. */
function shortUrl(url: string, repoRoot: string): string {
  if (!url) return '';
  const plain = url.replace(/^file:\/\//, '');
  if (plain.startsWith(`${repoRoot}/`)) return plain.slice(repoRoot.length + 1);
  const nm = plain.lastIndexOf('/node_modules/');
  if (nm >= 0) return plain.slice(nm + 1);
  return plain;
}

/**
 * Self time per function (name + location), largest first, as a share of
 * the busy time: `(idle)` (waiting for the network) is left out of the
 * percentages and reported on its own.
 */
export function topSelfTime(
  file: string,
  repoRoot: string,
  limit = 25,
): { total: SelfTime[]; byFile: SelfTime[]; busyMs: number; idleMs: number } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  if (samples.length > 0) {
    // Sample i's duration is the gap to the next sample.
    for (let i = 0; i < samples.length; i++) {
      const id = samples[i] as number;
      const dt = deltas[i + 1] ?? 0;
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
    }
  } else {
    const perHit = (profile.endTime - profile.startTime) / Math.max(1, profile.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0));
    for (const n of profile.nodes) selfUs.set(n.id, (n.hitCount ?? 0) * perHit);
  }
  let idleUs = 0;
  for (const [id, us] of selfUs) if (byId.get(id)?.callFrame.functionName === '(idle)') idleUs += us;
  const busyUs = [...selfUs.values()].reduce((a, b) => a + b, 0) - idleUs || 1;

  const byFunction = new Map<string, SelfTime>();
  const byFileMap = new Map<string, SelfTime>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === '(idle)') continue;
    const cf = node.callFrame;
    const url = shortUrl(cf.url, repoRoot);
    const name = cf.functionName || (url ? '(anonymous)' : cf.url || '(anonymous)');
    const where = url ? `${url}:${cf.lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    const f = byFunction.get(key) ?? { name, where, selfMs: 0, percent: 0 };
    f.selfMs += us / 1000;
    byFunction.set(key, f);
    const fileKey = url || name; // (program), (garbage collector), (idle) have no file
    const g = byFileMap.get(fileKey) ?? { name: fileKey, where: '', selfMs: 0, percent: 0 };
    g.selfMs += us / 1000;
    byFileMap.set(fileKey, g);
  }
  const finish = (m: Map<string, SelfTime>) =>
    [...m.values()]
      .map((s) => ({ ...s, percent: (s.selfMs * 1000 * 100) / busyUs }))
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, limit);
  return { total: finish(byFunction), byFile: finish(byFileMap), busyMs: busyUs / 1000, idleMs: idleUs / 1000 };
}

export function formatSelfTime(rows: SelfTime[]): string {
  return rows
    .map((r) => `${r.percent.toFixed(1).padStart(5)} %  ${r.selfMs.toFixed(0).padStart(7)} ms  ${r.name}${r.where ? `  ${r.where}` : ''}`)
    .join('\n');
}
