/**
 * The README's construct reference is generated from the constructs' docstrings
 * (scripts/construct-reference.ts): these tests fail when the README's tables differ from what the
 * script writes, when a construct the package exports has no entry or no example, and they check that
 * the script refuses what it cannot document.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSources, renderReadme } from '../scripts/construct-reference';

const ROOT = path.resolve(__dirname, '..');
const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('the construct reference in README.md', () => {
  test('is what scripts/construct-reference.ts generates from the docstrings', () => {
    // WHEN
    const generated = renderReadme(readme);
    // THEN the first line that differs, with the fix
    const actual = readme.split('\n');
    const expected = generated.split('\n');
    const line = expected.findIndex((text, i) => text !== actual[i]);
    if (line >= 0 || expected.length !== actual.length) {
      const at = line >= 0 ? line : Math.min(expected.length, actual.length);
      throw new Error(
        `README.md:${at + 1} differs from the docstrings; run npx tsx scripts/construct-reference.ts\n` +
          `  README:    ${actual[at] ?? '(end of file)'}\n  generated: ${expected[at] ?? '(end of file)'}`,
      );
    }
  });

  test('documents every class the package exports from constructs/, and only those', () => {
    const documented = [...readme.matchAll(/^<!-- construct-reference: (.+?) -->$/gm)].flatMap((m) => m[1].split(', '));
    const entry = require('../lib') as Record<string, unknown>;
    expect(documented.filter((name) => typeof entry[name] !== 'function')).toEqual([]);
    expect([...readSources().classes.keys()].filter((name) => !documented.includes(name))).toEqual([]);
  });

  test('has an example after each entry', () => {
    const section = readme.slice(readme.indexOf('\n## Construct reference\n'));
    const entries = section.split(/^<!-- construct-reference: /m).slice(1);
    const withoutExample = entries.filter((entry) => !/<!-- \/construct-reference -->[\s\S]*?^```ts$/m.test(entry)).map((entry) => entry.split(' -->')[0]);
    expect(withoutExample).toEqual([]);
  });
});

describe('scripts/construct-reference.ts', () => {
  const roots: string[] = [];
  afterAll(() => roots.forEach((root) => fs.rmSync(root, { recursive: true, force: true })));
  /** A repository with one construct file, for the script to read. */
  function sourcesWith(code: string) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'construct-reference-'));
    roots.push(root);
    fs.mkdirSync(path.join(root, 'constructs', 'widget'), { recursive: true });
    fs.writeFileSync(path.join(root, 'constructs', 'widget', 'widget.ts'), code);
    return readSources(root);
  }
  const block = '<!-- construct-reference: Widget -->\n<!-- /construct-reference -->';
  const widget = (props: string) => `
    /** Props of a Widget. */
    export interface WidgetProps {
      ${props}
    }
    /** A widget: it does one thing. */
    export class Widget extends Construct {
      /** The size. */
      public readonly size: number;
      constructor(scope: Construct, id: string, props: WidgetProps = {}) { super(scope, id); }
      /** Lets a principal use the widget. */
      public grantUse(grantee: iam.IGrantable): iam.Grant { return undefined as never; }
      private helper(): void {}
    }`;

  test('renders the purpose, the props with their defaults, the attributes and the methods worth knowing', () => {
    // GIVEN
    const sources = sourcesWith(
      widget(`
      /**
       * How many parts.
       *
       * @default 3 - enough for most
       */
      readonly parts?: number;
      /**
       * The kind, \`a\` or \`b\`.
       *
       * @default - {@link Widget} picks one
       */
      readonly kind?: 'a' | 'b';`),
    );
    // WHEN
    const rendered = renderReadme(`# Readme\n\n${block}\n`, sources);
    // THEN
    expect(rendered).toBe(
      [
        '# Readme',
        '',
        '<!-- construct-reference: Widget -->',
        '',
        '### Widget',
        '',
        'A widget: it does one thing.',
        '',
        '`new Widget(scope: Construct, id: string, props?: WidgetProps)`',
        '',
        '| prop | type | default | what it does |',
        '| --- | --- | --- | --- |',
        '| `parts` | `number` | `3` - enough for most | How many parts. |',
        "| `kind` | `'a' \\| 'b'` | `Widget` picks one | The kind, `a` or `b`. |",
        '',
        'Attributes: `size`.',
        '',
        'Methods:',
        '',
        '- `grantUse(grantee: iam.IGrantable)`: Lets a principal use the widget.',
        '',
        '<!-- /construct-reference -->',
        '',
      ].join('\n'),
    );
  });

  test('fails when an optional prop has no @default', () => {
    const sources = sourcesWith(widget('/** How many parts. */\n readonly parts?: number;'));
    expect(() => renderReadme(block, sources)).toThrow(/WidgetProps.parts is optional and has no @default/);
  });

  test('fails when an exported class has no entry', () => {
    const sources = sourcesWith(widget(''));
    expect(() => renderReadme('# Readme\n', sources)).toThrow(/README.md documents no Widget/);
  });

  test('fails when an entry names a class that constructs/ does not export', () => {
    const sources = sourcesWith(widget(''));
    expect(() => renderReadme(`${block}\n<!-- construct-reference: Gadget -->\n<!-- /construct-reference -->`, sources)).toThrow(/names Gadget/);
  });
});
