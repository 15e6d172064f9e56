/**
 * Generates src/api/generated/ from the Matrix spec copy (../shared/matrix-spec, or $MATRIX_SPEC_DIR):
 *
 * - cs-endpoints.ts: every Client-Server endpoint (cs-endpoints.tsv, enriched from the OpenAPI files) as data, so
 *   "which endpoints exist" is a query and the router can tell "spec endpoint not implemented" (404) from "wrong
 *   method on an implemented path" (405).
 * - body-validators.js (+ .d.ts): one JSON-schema validator per JSON request body, compiled here with ajv's
 *   standalone code generation so that neither ajv nor `new Function` ships at runtime
 *   (docs/decisions/request-validation.md).
 *
 * Run: `node --import tsx/esm scripts/gen-endpoints.ts` (writes) or `... --check` (exits 1 if the committed output
 * is stale). test/api/generated.test.ts runs the same check.
 */
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import AjvModule from 'ajv';
import standaloneCodeModule from 'ajv/dist/standalone/index.js';

// ajv's modules are CommonJS with `exports.default`; under ESM interop it may arrive wrapped.
const Ajv = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as typeof AjvModule;
const standaloneCode = ((standaloneCodeModule as unknown as { default?: unknown }).default ??
  standaloneCodeModule) as typeof standaloneCodeModule;

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..');
export const outDir = join(repoRoot, 'src/api/generated');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObj = { [k: string]: Json };

interface TsvRow {
  method: string;
  path: string;
  operationId: string;
  file: string;
  requiresAuth: string;
  deprecated: boolean;
  authSchemes: string[];
  addedIn: string | null;
}

function readTsv(specDir: string): TsvRow[] {
  const lines = readFileSync(join(specDir, 'cs-endpoints.tsv'), 'utf8').split('\n').filter((l) => l.trim() !== '');
  const header = lines[0].split('\t');
  const col = (name: string): number => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`cs-endpoints.tsv: no column ${name}`);
    return i;
  };
  const [m, p, op, f, auth, dep, schemes, added] = [
    'method', 'path', 'operationId', 'file', 'requires_auth', 'deprecated', 'auth_schemes', 'added_in',
  ].map(col);
  return lines.slice(1).map((line) => {
    const c = line.split('\t');
    return {
      method: c[m],
      path: c[p],
      operationId: c[op],
      file: c[f],
      requiresAuth: c[auth],
      deprecated: c[dep] === 'yes',
      authSchemes: c[schemes] ? c[schemes].split(',') : [],
      addedIn: c[added] || null,
    };
  });
}

const yamlCache = new Map<string, JsonObj>();
function loadYaml(file: string): JsonObj {
  let doc = yamlCache.get(file);
  if (!doc) {
    doc = parseYaml(readFileSync(file, 'utf8')) as JsonObj;
    yamlCache.set(file, doc);
  }
  return doc;
}

function isObj(v: Json | undefined): v is JsonObj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function pointer(doc: Json, fragment: string): Json {
  let v: Json = doc;
  for (const raw of fragment.split('/').filter(Boolean)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (!isObj(v) || !(key in v)) throw new Error(`unresolvable JSON pointer #${fragment}`);
    v = v[key];
  }
  return v;
}

// Keywords that only document (or are OpenAPI extensions): dropped so ajv's strict mode accepts the schema and the
// generated code carries no dead text. `format` is kept out too: the spec's formats (mx-user-id, …) are custom and
// every one of them in a request body comes with a `pattern` that ajv does check.
const ANNOTATIONS = new Set(['description', 'example', 'examples', 'title', 'deprecated', 'format']);

/**
 * Resolves a schema for ajv: `#/…` pointers inside an API file are inlined; a whole definition file (`definitions/x.yaml`)
 * becomes its own schema, referenced by an absolute $id, so that ajv compiles it once and every body that uses it
 * calls the same function (the filter definitions alone appear in three bodies, four times in one). Annotations are
 * stripped. The body schemas have no cycles.
 */
class SchemaResolver {
  /** $id → resolved schema, for each definition file reached. */
  readonly definitions = new Map<string, Json>();
  constructor(private readonly dataDir: string) {}

  idOf(file: string): string {
    const rel = file.slice(this.dataDir.length + 1).replace(/\\/g, '/');
    return `https://hearth.invalid/spec/${rel}`;
  }

  resolve(node: Json, file: string, stack: string[] = []): Json {
    if (Array.isArray(node)) return node.map((n) => this.resolve(n, file, stack));
    if (!isObj(node)) return node;
    if (typeof node.$ref === 'string') {
      const [rel, fragment = ''] = node.$ref.split('#');
      const target = rel ? resolve(dirname(file), rel) : file;
      const key = `${target}#${fragment}`;
      if (stack.includes(key)) throw new Error(`$ref cycle at ${key}`);
      const others = Object.keys(node).filter((k) => k !== '$ref' && !ANNOTATIONS.has(k) && !k.startsWith('x-'));
      if (others.length > 0) throw new Error(`$ref with sibling keywords ${others.join(',')} in ${file}`);
      if (rel && fragment === '') {
        const id = this.idOf(target);
        if (!this.definitions.has(id)) {
          this.definitions.set(id, null); // placeholder while resolving, so a cycle would show up above
          const schema = this.resolve(loadYaml(target), target, [...stack, key]);
          this.definitions.set(id, { $id: id, ...(schema as JsonObj) });
        }
        return { $ref: id };
      }
      return this.resolve(pointer(loadYaml(target), fragment), target, [...stack, key]);
    }
    const out: JsonObj = {};
    for (const [k, v] of Object.entries(node)) {
      if (ANNOTATIONS.has(k) || k.startsWith('x-')) continue;
      if (k === 'properties' || k === 'patternProperties') {
        if (!isObj(v)) throw new Error(`${k} is not an object in ${file}`);
        out[k] = Object.fromEntries(Object.entries(v).map(([name, s]) => [name, this.resolve(s, file, stack)]));
      } else if (k === 'enum' || k === 'const' || k === 'required') {
        out[k] = v;
      } else {
        out[k] = this.resolve(v, file, stack);
      }
    }
    return out;
  }
}

type BodyKind = 'json' | 'binary' | 'none';

interface OperationInfo {
  body: BodyKind;
  schema: Json | null;
  rateLimited: boolean;
}

/** Reads one operation's request body and whether the spec lists a 429 response for it. */
function operationInfo(specDir: string, row: TsvRow, resolver: SchemaResolver): OperationInfo {
  const file = join(specDir, row.file);
  const doc = loadYaml(file);
  const paths = doc.paths;
  if (!isObj(paths)) throw new Error(`${row.file}: no paths`);
  for (const ops of Object.values(paths)) {
    if (!isObj(ops)) continue;
    const op = ops[row.method.toLowerCase()];
    if (!isObj(op) || op.operationId !== row.operationId) continue;
    const responses = isObj(op.responses) ? op.responses : {};
    const rateLimited = '429' in responses;
    let rb = op.requestBody;
    if (isObj(rb) && typeof rb.$ref === 'string') rb = pointer(doc, rb.$ref.split('#')[1] ?? '');
    if (!isObj(rb)) return { body: 'none', schema: null, rateLimited };
    const content = isObj(rb.content) ? rb.content : {};
    const json = content['application/json'];
    if (isObj(json) && json.schema !== undefined) {
      return { body: 'json', schema: resolver.resolve(json.schema, file), rateLimited };
    }
    return { body: 'binary', schema: null, rateLimited };
  }
  throw new Error(`${row.file}: operation ${row.operationId} not found`);
}

function specAuth(row: TsvRow): 'accessToken' | 'optionalAccessToken' | 'none' {
  if (row.requiresAuth === 'yes') return 'accessToken';
  // getRoomSummary declares `signedRequest` (a spec quirk); its text says servers MAY allow unauthenticated access.
  if (row.requiresAuth === 'optional') return 'optionalAccessToken';
  return 'none';
}

/**
 * Whether the endpoint also has a legacy `/r0/` form: v1.1 renamed every r0 Client-Server (and media) endpoint to v3;
 * endpoints first specified in v1.1 or later, and everything under /v1/, never had one.
 */
function hasR0(row: TsvRow): boolean {
  const v3 = row.path.startsWith('/_matrix/client/v3/') || row.path.startsWith('/_matrix/media/v3/');
  return v3 && row.addedIn === null;
}

function q(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

const HEADER = (what: string) =>
  `// Generated by scripts/gen-endpoints.ts from shared/matrix-spec (${what}). Do not edit: re-run the script.\n`;

export interface Generated {
  files: Map<string, string>;
  endpointCount: number;
  validatorCount: number;
}

export function generate(specDir: string): Generated {
  yamlCache.clear();
  const rows = readTsv(specDir);
  const resolver = new SchemaResolver(join(specDir, 'data'));
  const infos = rows.map((r) => operationInfo(specDir, r, resolver));
  const ids = new Set<string>();
  for (const r of rows) {
    if (ids.has(r.operationId)) throw new Error(`duplicate operationId ${r.operationId}`);
    ids.add(r.operationId);
  }

  // --- the endpoint table
  const lines: string[] = [];
  lines.push(HEADER('cs-endpoints.tsv and data/api/client-server/*.yaml'));
  lines.push(`import type { SpecEndpoint } from '../endpoint.js';`);
  lines.push('');
  lines.push('/** Every Client-Server operationId in the spec. */');
  lines.push(`export type CsOperationId =\n${rows.map((r) => `  | ${q(r.operationId)}`).join('\n')};`);
  lines.push('');
  lines.push(`/** All ${rows.length} Client-Server endpoints of the spec, in cs-endpoints.tsv order. */`);
  lines.push('export const CS_ENDPOINTS: readonly SpecEndpoint<CsOperationId>[] = [');
  rows.forEach((r, i) => {
    const info = infos[i];
    const fields = [
      `method: ${q(r.method)}`,
      `path: ${q(r.path)}`,
      `operationId: ${q(r.operationId)}`,
      `auth: ${q(specAuth(r))}`,
      r.authSchemes.some((s) => s.startsWith('appservice')) ? 'appserviceOnly: true' : null,
      `r0: ${hasR0(r)}`,
      `body: ${q(info.body)}`,
      `rateLimited: ${info.rateLimited}`,
      r.deprecated ? 'deprecated: true' : null,
      r.addedIn ? `addedIn: ${q(r.addedIn)}` : null,
    ].filter((x) => x !== null);
    lines.push(`  { ${fields.join(', ')} },`);
  });
  lines.push('];');
  const table = lines.join('\n') + '\n';

  // --- the validators
  const ajv = new Ajv({
    strict: true,
    strictTypes: false, // the spec nests `type` inside allOf branches; that is fine, not a mistake
    allErrors: false, // the first error is all the response names
    messages: false, // messages are built from keyword + params in src/api/request.ts
    validateFormats: false,
    unicodeRegExp: true,
    inlineRefs: false, // call each definition's function instead of pasting it into every body that uses it
    code: { source: true, esm: true, optimize: true, lines: false },
  });
  for (const schema of resolver.definitions.values()) ajv.addSchema(schema as object);
  const exportsMap: Record<string, string> = {};
  rows.forEach((r, i) => {
    const schema = infos[i].schema;
    if (schema === null) return;
    ajv.addSchema(schema as object, r.operationId);
    exportsMap[r.operationId] = r.operationId;
  });
  let code = standaloneCode(ajv, exportsMap);
  // ajv reaches for two helpers by require(); ship our own tiny equivalents instead of a runtime dependency on ajv.
  code = rewriteRuntimeRequires(code);
  const validators = HEADER('request-body schemas, compiled by ajv standalone') + '/* eslint-disable */\n' + code + '\n';

  const names = Object.keys(exportsMap);
  const dts =
    HEADER('declarations for body-validators.js') +
    `import type { BodyValidator } from '../request.js';\n\n` +
    names.map((n) => `export declare const ${n}: BodyValidator;`).join('\n') +
    '\n';

  const files = new Map<string, string>([
    ['cs-endpoints.ts', table],
    ['body-validators.js', validators],
    ['body-validators.d.ts', dts],
  ]);
  return { files, endpointCount: rows.length, validatorCount: names.length };
}

// Our own equivalents of the two ajv runtime helpers standalone code may require (string length in code points, and
// deep equality for enum/const/uniqueItems over objects), pasted in only when used: no runtime dependency on ajv.
const RUNTIME_HELPERS: Record<string, string> = {
  ucs2length: `function ucs2length(s) { let n = 0; for (const _ of s) n++; return n; }`,
  equal: `function equal(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return a !== a && b !== b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (!Object.prototype.hasOwnProperty.call(b, k) || !equal(a[k], b[k])) return false;
  return true;
}`,
};

/** Replaces `require("ajv/dist/runtime/…")` with our helpers; drops ajv's sourceURL comments; fails on other requires. */
export function rewriteRuntimeRequires(code: string): string {
  const helpers = new Set<string>();
  let out = code.replace(
    /const (\w+) = require\("ajv\/dist\/runtime\/(\w+)"\)\.default;?/g,
    (_m, local: string, helper: string) => {
      if (!(helper in RUNTIME_HELPERS)) throw new Error(`unexpected ajv runtime helper ${helper}`);
      helpers.add(helper);
      return `const ${local} = ${helper};`;
    },
  );
  out = out.replace(/\/\*# sourceURL="[^"]*" \*\/;?/g, '');
  if (/require\(/.test(out)) throw new Error('standalone code still contains require()');
  return [...helpers].map((h) => RUNTIME_HELPERS[h]).join('\n') + (helpers.size ? '\n' : '') + out;
}

/**
 * The whole-body request examples the spec gives (`schema.example`, `example`, `examples.*.value` of each JSON request
 * body), by operationId: test/api/generated.test.ts checks that every one passes its validator.
 */
export function requestBodyExamples(specDir: string): { operationId: string; example: Json }[] {
  const out: { operationId: string; example: Json }[] = [];
  for (const row of readTsv(specDir)) {
    const doc = loadYaml(join(specDir, row.file));
    for (const ops of Object.values(isObj(doc.paths) ? doc.paths : {})) {
      if (!isObj(ops)) continue;
      const op = ops[row.method.toLowerCase()];
      if (!isObj(op) || op.operationId !== row.operationId || !isObj(op.requestBody)) continue;
      const content = isObj(op.requestBody.content) ? op.requestBody.content : {};
      const json = content['application/json'];
      if (!isObj(json)) continue;
      const found: Json[] = [];
      if (isObj(json.schema) && json.schema.example !== undefined) found.push(json.schema.example);
      if (json.example !== undefined) found.push(json.example);
      if (isObj(json.examples)) {
        for (const ex of Object.values(json.examples)) if (isObj(ex) && ex.value !== undefined) found.push(ex.value);
      }
      for (const example of found) out.push({ operationId: row.operationId, example });
    }
  }
  return out;
}

/** $MATRIX_SPEC_DIR, else the workspace's spec copy beside the checkout (also when the checkout is a clone elsewhere). */
export function defaultSpecDir(): string {
  if (process.env.MATRIX_SPEC_DIR) return process.env.MATRIX_SPEC_DIR;
  const candidates = [resolve(repoRoot, '../shared/matrix-spec'), '/work/shared/matrix-spec'];
  return candidates.find((d) => existsSync(join(d, 'cs-endpoints.tsv'))) ?? candidates[0]!;
}

function main(): void {
  const check = process.argv.includes('--check');
  const specDir = defaultSpecDir();
  if (!existsSync(join(specDir, 'cs-endpoints.tsv'))) throw new Error(`no spec at ${specDir} (set MATRIX_SPEC_DIR)`);
  const gen = generate(specDir);
  let stale = false;
  mkdirSync(outDir, { recursive: true });
  for (const [name, text] of gen.files) {
    const path = join(outDir, name);
    const old = existsSync(path) ? readFileSync(path, 'utf8') : null;
    if (old === text) continue;
    stale = true;
    if (check) console.error(`stale: src/api/generated/${name}`);
    else writeFileSync(path, text);
  }
  console.log(`${gen.endpointCount} endpoints, ${gen.validatorCount} body validators${check && stale ? ' (stale)' : ''}`);
  if (check && stale) process.exit(1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) main();
