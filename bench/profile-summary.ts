/**
 * Summarises V8 .cpuprofile files (from `npm run bench -- --only http --cpu-prof`): the functions with the most
 * self time and the most total (inclusive) time, as a share of the sampled time.
 *
 *   node --import tsx/esm bench/profile-summary.ts bench/profiles/*.cpuprofile [--top 40] [--filter src/]
 *        [--callers decodeValue]
 *
 * --filter keeps only rows whose location contains the text (e.g. `src/` for Hearth's own functions).
 * --callers lists, for functions whose label contains the text, the time under each chain of Hearth functions
 * (files under src/) that called them: which code path pays for them.
 * --bundle FILE (a profile of an esbuild bundle, e.g. dist/send-profile.mjs): also self time per source file, from
 * the bundle's `// src/…` section comments; time in native code (no script: the GC, syscalls such as `writev`,
 * classic-level's binding) is put under the file of the JavaScript that called it, as "native in <file>".
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { relative } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '40' },
    filter: { type: 'string' },
    callers: { type: 'string' },
    bundle: { type: 'string' },
  },
});
const TOP = Number(opts.top);

function label(f: CallFrame): string {
  const url = f.url.startsWith('file://') ? relative(process.cwd(), new URL(f.url).pathname) : f.url;
  return `${f.functionName || '(anonymous)'} ${url ? `${url}:${f.lineNumber + 1}` : ''}`.trim();
}

/** Source file per line of an esbuild bundle (its `// src/x.ts` section comments), or undefined without --bundle. */
const bundleSections = ((): { name: string; starts: number[]; files: string[] } | undefined => {
  if (opts.bundle === undefined) return undefined;
  const starts: number[] = [];
  const files: string[] = [];
  readFileSync(opts.bundle, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      const m = /^\/\/ ((?:src|bench|node_modules)\/\S+)/.exec(line);
      if (m) {
        starts.push(i + 1);
        files.push(m[1]);
      }
    });
  return { name: basename(opts.bundle), starts, files };
})();

/** The source file of a frame in the bundle (1-based line), by binary search over the section starts. */
function sourceOf(f: CallFrame): string | undefined {
  if (!bundleSections || !f.url.endsWith(bundleSections.name)) return undefined;
  const { starts, files } = bundleSections;
  const line = f.lineNumber + 1;
  let lo = 0;
  let hi = starts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid] <= line) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found < 0 ? '(bundle prelude)' : files[found];
}

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Time of each sample: the delta to the next sample (V8's convention: delta i precedes sample i).
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + dt);
  }
  const totalUs = p.endTime - p.startTime;
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const callers = new Map<string, number>();
  const byFile = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const l = label(n.callFrame);
    self.set(l, (self.get(l) ?? 0) + us);
    if (bundleSections) {
      let where = sourceOf(n.callFrame) ?? (n.callFrame.url ? n.callFrame.url.replace(/^.*node_modules\//, '') : undefined);
      if (where === undefined) {
        // Native: the GC, (idle), (program), or a C++ function called from JavaScript — named after its caller.
        const up = parent.get(id);
        const caller = up === undefined ? undefined : byId.get(up)!.callFrame;
        const callerFile = caller ? (sourceOf(caller) ?? caller.url.replace(/^.*node_modules\//, '')) : '';
        where = callerFile ? `native ${n.callFrame.functionName || '(anonymous)'} in ${callerFile}` : n.callFrame.functionName;
      }
      byFile.set(where, (byFile.get(where) ?? 0) + us);
    }
    // Inclusive time: count each distinct function once per stack (recursion must not double count).
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cl = label(byId.get(cur)!.callFrame);
      if (seen.has(cl)) continue;
      seen.add(cl);
      total.set(cl, (total.get(cl) ?? 0) + us);
    }
    if (opts.callers !== undefined) {
      // The innermost frame matching --callers, then the chain of src/ frames above it (innermost first).
      let cur: number | undefined = id;
      while (cur !== undefined && !label(byId.get(cur)!.callFrame).includes(opts.callers)) cur = parent.get(cur);
      if (cur !== undefined) {
        const chain = [label(byId.get(cur)!.callFrame)];
        for (let up = parent.get(cur); up !== undefined && chain.length < 7; up = parent.get(up)) {
          const f = byId.get(up)!.callFrame;
          if (f.url.includes('/src/')) chain.push(label(f).replace(/ src\/.*$/, ''));
        }
        const key = chain.join(' ← ');
        callers.set(key, (callers.get(key) ?? 0) + us);
      }
    }
  }
  const idle = self.get('(idle)') ?? 0;
  const busy = totalUs - idle;
  const show = (title: string, m: Map<string, number>) => {
    console.log(`\n${title}`);
    const rows = [...m].filter(([l]) => !opts.filter || l.includes(opts.filter)).sort((a, b) => b[1] - a[1]).slice(0, TOP);
    for (const [l, us] of rows) console.log(`${(us / 1000).toFixed(0).padStart(8)} ms ${((us / busy) * 100).toFixed(1).padStart(5)} %  ${l}`);
  };
  console.log(`${file}: ${(totalUs / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (not idle)`);
  show('self time', self);
  if (bundleSections) show('self time by source file', byFile);
  show('total time', total);
  if (opts.callers !== undefined) show(`callers of ${opts.callers}`, callers);
}
