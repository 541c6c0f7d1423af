/**
 * Every ```ts example of the README's construct reference, as a user copies it: type-checked against
 * the package entry (`'tuneyard'` is lib/index.ts), then synthesized and run through the four
 * compliance packs. An example is the body of a Stack constructor (`this` is the stack) with its
 * imports first; the test wraps it in a Stack class and builds that in a test app (fixed account and
 * region, no bundling).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { complianceFindings, TEST_ENV, testApp } from './support/app';

const ROOT = path.resolve(__dirname, '..');
const SECTION = '## Construct reference';
/** The virtual folder the wrapped examples are compiled in (never written): imports resolve from the repository. */
const EXAMPLES_DIR = path.join(ROOT, 'test', 'readme-examples');

interface Example {
  /** The README line of the example's first line of code. */
  readonly line: number;
  /** The example wrapped in a Stack class named `Example`. */
  readonly module: string;
  /** README line of each line of `module` (undefined for the wrapper's own lines). */
  readonly lines: ReadonlyArray<number | undefined>;
  readonly fileName: string;
}

/** The ```ts blocks of the construct reference, with their README line numbers. */
function readmeExamples(readme: string): Example[] {
  const start = readme.indexOf(`\n${SECTION}\n`);
  if (start < 0) throw new Error(`README.md has no "${SECTION}" section`);
  const end = readme.slice(start + SECTION.length + 2).search(/^## /m);
  const section = end < 0 ? readme.slice(start) : readme.slice(start, start + SECTION.length + 2 + end);
  return [...section.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => {
    // The fence's line, plus one.
    const line = readme.slice(0, start + match.index).split('\n').length + 1;
    return wrap(match[1], line);
  });
}

/** The example's imports, then a Stack class whose constructor runs the rest. */
function wrap(code: string, line: number): Example {
  const source = ts.createSourceFile('example.ts', code, ts.ScriptTarget.ES2022, true);
  const imports = source.statements.filter(ts.isImportDeclaration);
  const firstOther = source.statements.find((s) => !ts.isImportDeclaration(s));
  if (firstOther && imports.some((i) => i.pos > firstOther.pos)) {
    throw new Error(`README.md:${line}: put the example's imports before its code`);
  }
  const codeLines = code.replace(/\n$/, '').split('\n');
  const importLineCount = imports.length === 0 ? 0 : source.getLineAndCharacterOfPosition(imports[imports.length - 1].end).line + 1;
  const wrapperOpen = [
    "import { Stack as ExampleStack, StackProps as ExampleStackProps } from 'aws-cdk-lib';",
    "import { Construct as ExampleScope } from 'constructs';",
    'export class Example extends ExampleStack {',
    '  constructor(scope: ExampleScope, id: string, props?: ExampleStackProps) {',
    '    super(scope, id, props);',
  ];
  const moduleLines = [...codeLines.slice(0, importLineCount), ...wrapperOpen, ...codeLines.slice(importLineCount), '  }', '}'];
  const lines = [
    ...codeLines.slice(0, importLineCount).map((_, i) => line + i),
    ...wrapperOpen.map(() => undefined),
    ...codeLines.slice(importLineCount).map((_, i) => line + importLineCount + i),
    undefined,
    undefined,
  ];
  return { line, module: moduleLines.join('\n'), lines, fileName: path.join(EXAMPLES_DIR, `readme-line-${line}.ts`) };
}

/** Diagnostics of every example, in one program: "README.md:<line>:<column>: <message>". */
function typeCheck(examples: Example[]): string[] {
  const config = ts.getParsedCommandLineOfConfigFile(path.join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
  if (!config) throw new Error('cannot read tsconfig.json');
  const options: ts.CompilerOptions = {
    ...config.options,
    noEmit: true,
    // An example may create a construct it does not use again.
    noUnusedLocals: false,
    noUnusedParameters: false,
    types: ['node'],
    // No baseUrl: with one, 'constructs' would resolve to the repository's constructs/ folder.
    paths: { tuneyard: [path.join(ROOT, 'lib', 'index.ts')] },
  };
  const byName = new Map(examples.map((e) => [e.fileName, e]));
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (file) => byName.has(file) || fileExists(file);
  host.readFile = (file) => byName.get(file)?.module ?? readFile(file);
  host.getSourceFile = (file, language, ...rest) => {
    const example = byName.get(file);
    return example ? ts.createSourceFile(file, example.module, language, true) : getSourceFile(file, language, ...rest);
  };
  const program = ts.createProgram([...byName.keys()], options, host);
  const diagnostics = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
  for (const file of byName.keys()) {
    const source = program.getSourceFile(file)!;
    diagnostics.push(...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source));
  }
  return diagnostics.map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n    ');
    const example = d.file && byName.get(d.file.fileName);
    if (!example || d.start === undefined) return `${d.file?.fileName ?? 'tsconfig'}: ${message}`;
    const at = d.file!.getLineAndCharacterOfPosition(d.start);
    return `README.md:${example.lines[at.line] ?? example.line}:${at.character + 1}: ${message}`;
  });
}

/** Runs the wrapped example as CommonJS, with `'tuneyard'` resolved to the repository's lib/index.ts. */
function load(example: Example): new (scope: unknown, id: string, props: unknown) => import('aws-cdk-lib').Stack {
  const js = ts.transpileModule(example.module, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    fileName: example.fileName,
  }).outputText;
  const module = { exports: {} as Record<string, unknown> };
  const requireFromExample = (specifier: string): unknown => (specifier === 'tuneyard' ? require('../lib') : require(specifier));
  new Function('require', 'module', 'exports', js)(requireFromExample, module, module.exports);
  return module.exports.Example as never;
}

const examples = readmeExamples(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));

describe('the construct reference examples in README.md', () => {
  test('every example type-checks against the package entry', () => {
    expect(typeCheck(examples)).toEqual([]);
  });

  test.each(examples.map((e) => [e.line, e] as const))('the example at README.md:%i synthesizes and passes the four compliance packs', (_line, example) => {
    // GIVEN
    const app = testApp();
    // WHEN
    const stack = new (load(example))(app, 'Example', { env: TEST_ENV });
    // THEN it synthesizes (Annotations.fromStack synthesizes the app, running every validation) without errors
    expect(Annotations.fromStack(stack).findError('*', Match.anyValue())).toEqual([]);
    expect(complianceFindings(stack)).toEqual([]);
  });
});
