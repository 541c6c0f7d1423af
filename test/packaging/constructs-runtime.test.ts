import { builtinModules } from 'node:module';
import * as path from 'node:path';
import { build, Plugin } from 'esbuild';

const ROOT = path.join(__dirname, '..', '..');

/**
 * The packages that an entry point loads at run time, from every file it imports, with each file
 * that imports them: `constructs/index.ts` (the jsii API) and `lib/index.ts` (the package's `main`,
 * which the jsii runtime loads for Python users too).
 */
async function runtimePackages(entry: string): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  // Every bare specifier (a package or a builtin) is external and recorded; relative imports are followed.
  const recordPackages: Plugin = {
    name: 'record-packages',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, (args) => {
        const name = args.path.startsWith('@') ? args.path.split('/').slice(0, 2).join('/') : args.path.split('/')[0];
        found.set(name, [...(found.get(name) ?? []), path.relative(ROOT, args.importer)]);
        return { path: args.path, external: true };
      });
    },
  };
  // esbuild drops type-only imports, as tsc does: what remains is what `require` loads.
  await build({ entryPoints: [path.join(ROOT, entry)], bundle: true, platform: 'node', write: false, logLevel: 'silent', plugins: [recordPackages] });
  return found;
}

describe.each(['constructs/index.ts', 'lib/index.ts'])('%s at run time', (entry) => {
  test('loads only the peer dependencies, the bundled zod and Node builtins', async () => {
    // GIVEN the packages a consumer has: the peers, what the package bundles, Node's own modules
    const allowed = new Set(['aws-cdk-lib', 'constructs', 'cdk-nag', 'zod', ...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    // WHEN
    const packages = await runtimePackages(entry);
    // THEN esbuild is only required lazily, when a handler has no bundle built beside it (a source checkout)
    expect(packages.get('esbuild')).toEqual(['lib/bundle.ts', 'lib/bundle.ts']);
    const unexpected = [...packages].filter(([name]) => !allowed.has(name) && name !== 'esbuild');
    expect(unexpected).toEqual([]);
  });
});
