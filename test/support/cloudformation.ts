/**
 * Checks of a packaged CloudFormation template: the dependency graph CloudFormation builds from it (every
 * Ref, Fn::GetAtt, Fn::Sub reference and DependsOn between resources) must have no cycle, and `cfn-lint`
 * (when it is on PATH) must report no error.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export interface Template {
  Resources: Record<string, { Type: string; Properties?: unknown; DependsOn?: string | string[] }>;
  Outputs?: Record<string, unknown>;
}

/** The resources `resource` depends on, as CloudFormation sees them (pseudo parameters excluded). */
export function dependenciesOf(template: Template, id: string): Set<string> {
  const resources = template.Resources;
  const deps = new Set<string>();
  const add = (name: string) => {
    if (Object.hasOwn(resources, name)) deps.add(name);
  };
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (const v of value) walk(v);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    for (const [key, v] of Object.entries(value)) {
      if (key === 'Ref' && typeof v === 'string') add(v);
      else if (key === 'Fn::GetAtt') {
        if (typeof v === 'string') add(v.split('.')[0]!);
        else if (Array.isArray(v) && typeof v[0] === 'string') add(v[0]);
        walk(v);
      } else if (key === 'Fn::Sub') {
        const [text, vars] = Array.isArray(v) ? [v[0], v[1] as Record<string, unknown> | undefined] : [v];
        if (typeof text === 'string') {
          // `${Name}` and `${Name.Attr}` reference resources; `${!Literal}` is text; a name in the variable
          // map is local to this Sub.
          for (const m of text.matchAll(/\$\{(?!!)([^}.]+)(?:\.[^}]*)?\}/g)) {
            if (!(vars && Object.hasOwn(vars, m[1]!))) add(m[1]!);
          }
        }
        walk(vars);
      } else walk(v);
    }
  };
  const resource = resources[id]!;
  walk(resource.Properties);
  const dependsOn = resource.DependsOn;
  for (const d of typeof dependsOn === 'string' ? [dependsOn] : (dependsOn ?? [])) add(d);
  return deps;
}

/** Every dependency cycle among the template's resources, each as the list of resources on it (Tarjan). */
export function dependencyCycles(template: Template): string[][] {
  const ids = Object.keys(template.Resources);
  const edges = new Map(ids.map((id) => [id, [...dependenciesOf(template, id)]]));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || edges.get(v)!.includes(v)) cycles.push(component.sort());
    }
  };
  for (const id of ids) if (!index.has(id)) visit(id);
  return cycles;
}

export interface LintFinding {
  readonly rule: string;
  readonly level: string;
  readonly message: string;
  readonly path: string;
}

export interface LintReport {
  /** False when cfn-lint is not on PATH (nothing was checked). */
  readonly ran: boolean;
  readonly errors: LintFinding[];
  readonly warnings: LintFinding[];
}

/** Runs `cfn-lint --format json` on a template file. */
export async function cfnLint(file: string): Promise<LintReport> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)('cfn-lint', ['--format', 'json', '--', file], {
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
    }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; code?: unknown };
    if (e.code === 'ENOENT') return { ran: false, errors: [], warnings: [] };
    // cfn-lint exits non-zero whenever it reports something; its findings are still on stdout.
    if (typeof e.stdout !== 'string' || !e.stdout.trim().startsWith('[')) throw err;
    stdout = e.stdout;
  }
  const findings = (
    JSON.parse(stdout) as {
      Rule: { Id: string };
      Level: string;
      Message: string;
      Location: { Path?: (string | number)[] };
    }[]
  ).map((m) => ({
    rule: m.Rule.Id,
    level: m.Level,
    message: m.Message,
    path: (m.Location.Path ?? []).join('/'),
  }));
  return {
    ran: true,
    errors: findings.filter((f) => f.level === 'Error'),
    warnings: findings.filter((f) => f.level !== 'Error'),
  };
}
