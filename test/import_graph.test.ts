// The TypeScript modules import each other without a circle (type-only imports aside: they vanish at run
// time). Call validation (problem.ts) and backend resolution (backend.ts) sit below the public API and
// tuned dispatch, so neither needs the other.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from './tuner_helpers.js';

const SRC = join(ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

// The modules `file` loads at run time: its imports and re-exports that are not type-only.
function runtimeImports(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
  const out: string[] = [];
  for (const st of sf.statements) {
    let spec: ts.Expression | undefined;
    if (ts.isImportDeclaration(st)) {
      const clause = st.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : undefined;
      const typeOnly = clause?.isTypeOnly || (clause && !clause.name && named && named.length > 0 && named.every((n) => n.isTypeOnly));
      if (!typeOnly) spec = st.moduleSpecifier;
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier) {
      const named = st.exportClause && ts.isNamedExports(st.exportClause) ? st.exportClause.elements : undefined;
      if (!st.isTypeOnly && !(named && named.length > 0 && named.every((n) => n.isTypeOnly))) spec = st.moduleSpecifier;
    }
    if (spec && ts.isStringLiteral(spec) && spec.text.startsWith('.')) {
      out.push(resolve(dirname(file), spec.text.replace(/\.js$/, '.ts')));
    }
  }
  return out;
}

describe('module graph', () => {
  it('src/ has no import cycle', () => {
    const graph = new Map(sources(SRC).map((f) => [f, runtimeImports(f)]));
    const cycles: string[] = [];
    const state = new Map<string, 'active' | 'done'>();
    const visit = (f: string, path: string[]) => {
      state.set(f, 'active');
      for (const d of graph.get(f) ?? []) {
        if (state.get(d) === 'active') cycles.push([...path.slice(path.indexOf(d)), d].map((x) => relative(ROOT, x)).join(' -> '));
        else if (!state.has(d)) visit(d, [...path, d]);
      }
      state.set(f, 'done');
    };
    for (const f of graph.keys()) if (!state.has(f)) visit(f, [f]);
    expect(cycles).toEqual([]);
    // The seam: the public API and dispatch both use problem validation / backend resolution, not each other.
    const rel = (f: string) => (graph.get(join(SRC, f)) ?? []).map((x) => relative(SRC, x));
    expect(rel('tuner/dispatch.ts')).not.toContain('matmul.ts');
    expect(rel('tuner/dispatch.ts')).toContain('backend.ts');
    expect(rel('matmul.ts')).toContain('problem.ts');
  });
});
