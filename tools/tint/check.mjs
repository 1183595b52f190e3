#!/usr/bin/env node
// Compiles WGSL compute modules with Dawn/Tint (Chrome's WebGPU implementation)
// through the `webgpu` npm package's dawn.node, on Dawn's null backend: Tint parses,
// resolves and validates each module (including the uniformity analysis), and Dawn
// validates the compute pipeline with its override constants. No GPU is needed.
//
//   npm ci --prefix tools/tint            # once: installs the pinned `webgpu`
//   node tools/tint/check.mjs DIR         # DIR holds manifest.json
//
// manifest.json:
//   {"modules": [
//     {"name": "conv2d_fwd[tiled] f32 MODE=2", "file": "0001.wgsl", "entry_point": "main",
//      "constants": {"MODE": 2, "KH": 3, "RELU": 1}, "features": ["shader-f16", "subgroups"]}
//   ]}
// `file` is relative to DIR; `constants` are GPUProgrammableStage.constants (numbers;
// bool overrides as 0/1); `features` are the WebGPU feature names the module needs.
//
// Modules are grouped by feature set and each group gets a fresh device that has
// exactly those features (so a module using `enable f16;` without "shader-f16" in
// its features fails, as it would in a browser), with the adapter's limits.
//
// Tint requires `enable subgroups;` before subgroup builtins, which naga (wgpu)
// rejects, so for a module whose features include "subgroups" and whose source has
// no such directive, `enable subgroups; ` is put in front of its first line (columns
// on line 1 are reported as in the file). --no-subgroups-enable turns that off.
//
// Output: one `FAIL` line per failing module (name, file:line:col, Tint's message),
// the offending source line under it, and `tint: N modules compiled, F failed`.
// Exit status: 0 all compiled, 1 some failed, 2 usage or setup error.
//
// Options:
//   --verbose              print an `ok` line per module as well
//   --warnings             print Tint's warnings and notes for modules that compiled
//                          (warnings are counted in the summary either way)
//   --no-subgroups-enable  do not add `enable subgroups;` (see above)
//   --backend=NAME         Dawn backend (default null). Others (vulkan, ...) would also
//                          run Tint's backend writer and a driver; Dawn refused Mesa
//                          22.3's lavapipe ("shaderUniform*ArrayDynamicIndexing
//                          required"), so only null is known to work without a GPU.

import { readFileSync, existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const SETUP_HINT = 'run npm ci --prefix tools/tint';
const SUBGROUPS_PREFIX = 'enable subgroups; ';

function usage(msg) {
  if (msg) console.error(`tint: ${msg}`);
  console.error('usage: node tools/tint/check.mjs [--verbose] [--warnings] [--no-subgroups-enable] [--backend=null] DIR');
  process.exit(2);
}

function setupError(msg) {
  console.error(`tint: ${msg}`);
  process.exit(2);
}

// A closed pipe (`... | head`) ends the run quietly instead of with a stack trace.
process.stdout.on('error', (e) => process.exit(e.code === 'EPIPE' ? (process.exitCode ?? 1) : 2));

// ---- arguments ------------------------------------------------------------------
const opts = { verbose: false, warnings: false, injectSubgroups: true, backend: 'null' };
const positional = [];
for (const arg of process.argv.slice(2)) {
  if (arg === '--verbose' || arg === '-v') opts.verbose = true;
  else if (arg === '--warnings') opts.warnings = true;
  else if (arg === '--no-subgroups-enable') opts.injectSubgroups = false;
  else if (arg.startsWith('--backend=')) opts.backend = arg.slice('--backend='.length);
  else if (arg === '--help' || arg === '-h') usage();
  else if (arg.startsWith('-')) usage(`unknown option ${arg}`);
  else positional.push(arg);
}
if (positional.length !== 1) usage('expected exactly one DIR');
const dir = resolve(positional[0]);

// ---- manifest -------------------------------------------------------------------
const manifestPath = join(dir, 'manifest.json');
if (!existsSync(manifestPath)) setupError(`no manifest: ${manifestPath} does not exist`);
let manifest;
try {
  manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
} catch (e) {
  setupError(`cannot read ${manifestPath}: ${e.message}`);
}
if (!manifest || !Array.isArray(manifest.modules)) {
  setupError(`${manifestPath}: expected {"modules": [...]}`);
}
const modules = manifest.modules.map((m, i) => {
  const where = `${manifestPath}: modules[${i}]`;
  if (!m || typeof m !== 'object') setupError(`${where}: not an object`);
  if (typeof m.file !== 'string' || !m.file) setupError(`${where}: "file" must be a non-empty string`);
  const features = m.features ?? [];
  if (!Array.isArray(features) || features.some((f) => typeof f !== 'string')) {
    setupError(`${where}: "features" must be an array of strings`);
  }
  const constants = m.constants ?? {};
  if (typeof constants !== 'object' || Array.isArray(constants) || constants === null) {
    setupError(`${where}: "constants" must be an object`);
  }
  for (const [k, v] of Object.entries(constants)) {
    if (typeof v !== 'number' && typeof v !== 'boolean') {
      setupError(`${where}: constant ${k} must be a number (bools as 0/1), got ${JSON.stringify(v)}`);
    }
  }
  return {
    name: typeof m.name === 'string' ? m.name : m.file,
    file: m.file,
    entryPoint: typeof m.entry_point === 'string' ? m.entry_point : 'main',
    constants: Object.fromEntries(Object.entries(constants).map(([k, v]) => [k, Number(v)])),
    features: [...new Set(features)].sort(),
  };
});

// ---- dawn.node ------------------------------------------------------------------
let webgpu;
try {
  webgpu = await import('webgpu');
} catch (e) {
  setupError(`cannot load the \`webgpu\` package from ${here}/node_modules (${e.code ?? e.message}): ${SETUP_HINT}`);
}
let pkgVersion = '?';
try {
  pkgVersion = JSON.parse(readFileSync(join(here, 'node_modules', 'webgpu', 'package.json'), 'utf8')).version;
} catch {}
Object.assign(globalThis, webgpu.globals);
const gpu = webgpu.create([`backend=${opts.backend}`]);
const adapter = await gpu.requestAdapter();
if (!adapter) setupError(`Dawn found no adapter for backend=${opts.backend}`);
{
  const i = adapter.info;
  const show = (s) => JSON.stringify(s ?? '');
  console.log(
    `tint: webgpu ${pkgVersion} (dawn.node), backend=${opts.backend}, adapter vendor=${show(i.vendor)} ` +
      `architecture=${show(i.architecture)} device=${show(i.device)} description=${show(i.description)}`,
  );
}
const adapterFeatures = new Set(adapter.features);
const adapterLimits = {};
for (const k in adapter.limits) {
  if (typeof adapter.limits[k] === 'number') adapterLimits[k] = adapter.limits[k];
}

// ---- reporting ------------------------------------------------------------------
let failed = 0;
let compiled = 0;
let warnings = 0;

function sourceSnippet(src, line, col, length) {
  const text = src.split('\n')[line - 1];
  if (text === undefined) return [];
  const caret = ' '.repeat(Math.max(0, col - 1)) + '^'.repeat(Math.max(1, Math.min(length || 1, text.length - col + 1)));
  return [`    ${text.replace(/\t/g, ' ')}`, `    ${caret}`];
}

// Dawn's error text: drop the " - While calling ..." context and blank lines, and map
// line-1 columns back when `enable subgroups; ` was put in front.
function cleanDawnMessage(msg, shift, file) {
  let lines = String(msg)
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^\s*- While /.test(l));
  lines = lines.map((l) =>
    l
      // Dawn shares identical modules, so the label may be another module's name.
      .replace(/\[ShaderModule "[^"]*"\]/g, `[ShaderModule ${file}]`)
      .replace(/""([^"]*)""/g, '"$1"'),
  );
  if (shift) {
    lines = lines.map((l) => l.replace(/:1:(\d+)(?= (error|warning|note|info))/g, (_, c) => `:1:${Math.max(1, Number(c) - shift)}`));
  }
  return lines;
}

function fail(mod, headline, extra = []) {
  failed++;
  console.log(`FAIL ${mod.name} [${mod.file}]: ${headline}`);
  for (const l of extra) console.log(l);
}

// ---- checking -------------------------------------------------------------------
async function withScopes(device, fn) {
  device.pushErrorScope('internal');
  device.pushErrorScope('validation');
  device.pushErrorScope('out-of-memory');
  let thrown = null;
  let value;
  try {
    value = await fn();
  } catch (e) {
    thrown = e;
  }
  const errors = [];
  for (let n = 0; n < 3; n++) {
    const e = await device.popErrorScope();
    if (e) errors.push(e.message);
  }
  if (thrown) errors.unshift(`${thrown.name ?? 'Error'}: ${thrown.message}`);
  return { value, errors };
}

async function checkModule(device, mod) {
  const path = join(dir, mod.file);
  let src;
  try {
    src = readFileSync(path, 'utf8');
  } catch (e) {
    fail(mod, `cannot read ${path}: ${e.code ?? e.message}`);
    return;
  }
  let code = src;
  let shift = 0;
  if (
    opts.injectSubgroups &&
    mod.features.includes('subgroups') &&
    !/^\s*enable\s[^;]*\bsubgroups\b[^;]*;/m.test(src)
  ) {
    code = SUBGROUPS_PREFIX + src;
    shift = SUBGROUPS_PREFIX.length;
  }

  // 1. The shader module: Tint's parse, resolve, uniformity analysis.
  const { value: shader, errors: moduleErrors } = await withScopes(device, async () => {
    const m = device.createShaderModule({ code, label: mod.name });
    return { m, info: await m.getCompilationInfo() };
  });
  // Tint's messages in order; an error's explaining notes (e.g. the uniformity
  // analysis' "control flow depends on possibly non-uniform value") follow it.
  const messages = (shader?.info?.messages ?? []).map((msg) => {
    const line = msg.lineNum;
    let col = msg.linePos;
    if (shift && line === 1) col = col <= shift ? 1 : col - shift; // col 1: the added enable
    const where = line ? `${mod.file}:${line}:${col}` : mod.file;
    return {
      type: msg.type,
      text: `${where}: ${msg.type}: ${msg.message.split('\n').join(' / ')}`,
      snippet: line ? sourceSnippet(src, line, col, msg.length) : [],
    };
  });
  const firstError = messages.find((m) => m.type === 'error');
  if (firstError) {
    const extra = [...firstError.snippet];
    for (const m of messages) {
      if (m !== firstError) extra.push(`  ${m.text}`, ...m.snippet);
    }
    fail(mod, firstError.text, extra);
    return;
  }
  for (const m of messages) {
    if (m.type === 'warning') warnings++;
    if (opts.warnings) {
      console.log(`${m.type} ${mod.name} [${mod.file}]: ${m.text}`);
      for (const l of m.snippet) console.log(l);
    }
  }
  if (moduleErrors.length) {
    // An error Dawn raised without a compilation message (should not happen).
    const lines = cleanDawnMessage(moduleErrors.join('\n'), shift, mod.file);
    fail(mod, lines[0] ?? 'shader module error', lines.slice(1).map((l) => `    ${l}`));
    return;
  }

  // 2. The pipeline: override constants applied, workgroup size / storage limits,
  // the auto layout against the device's binding limits.
  const { errors: pipelineErrors } = await withScopes(device, async () =>
    device.createComputePipeline({
      label: mod.name,
      layout: 'auto',
      compute: { module: shader.m, entryPoint: mod.entryPoint, constants: mod.constants },
    }),
  );
  if (pipelineErrors.length) {
    const lines = cleanDawnMessage(pipelineErrors.join('\n'), shift, mod.file);
    // Dawn prefixes Tint's own ":L:C error: ..." with the source name; show the file.
    const head = (lines[0] ?? 'pipeline error').replace(/^(?:[^\s:]*):(\d+):(\d+) /, `${mod.file}:$1:$2: `);
    fail(mod, `createComputePipeline: ${head}`, lines.slice(1).map((l) => `    ${l}`));
    return;
  }
  return true;
}

// One device per feature set, requested with exactly those features and the
// adapter's limits (as the engine requests them).
const groups = new Map();
for (const mod of modules) {
  const key = mod.features.join(',');
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(mod);
}
for (const [key, mods] of groups) {
  const features = key ? key.split(',') : [];
  const missing = features.filter((f) => !adapterFeatures.has(f));
  if (missing.length) {
    for (const mod of mods) {
      fail(mod, `the ${opts.backend} adapter lacks feature(s) ${missing.join(', ')} (it has: ${[...adapterFeatures].sort().join(', ')})`);
    }
    continue;
  }
  // A WebGPU adapter hands out one device; each group gets its own adapter.
  let device;
  try {
    const groupAdapter = await gpu.requestAdapter();
    if (!groupAdapter) throw new Error(`no adapter for backend=${opts.backend}`);
    device = await groupAdapter.requestDevice({ requiredFeatures: features, requiredLimits: adapterLimits });
  } catch (e) {
    for (const mod of mods) fail(mod, `requestDevice(features: [${features.join(', ')}]) failed: ${e.message}`);
    continue;
  }
  const uncaptured = [];
  device.onuncapturederror = (ev) => uncaptured.push(ev.error?.message ?? String(ev));
  for (const mod of mods) {
    uncaptured.length = 0;
    const ok = await checkModule(device, mod);
    if (!ok) {
      // reported already
    } else if (uncaptured.length) {
      fail(mod, `uncaptured device error: ${cleanDawnMessage(uncaptured.join('\n'), 0, mod.file).join(' / ')}`);
    } else if (ok) {
      compiled++;
      if (opts.verbose) console.log(`ok   ${mod.name} [${mod.file}]`);
    }
  }
  device.destroy();
}

const warnText = warnings ? `, ${warnings} warning${warnings === 1 ? '' : 's'}${opts.warnings ? '' : ' (--warnings shows them)'}` : '';
console.log(`tint: ${compiled} modules compiled, ${failed} failed${warnText}`);
// dawn.node keeps the process alive while `gpu` is referenced; exit explicitly.
process.exit(failed ? 1 : 0);
