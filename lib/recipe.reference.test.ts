/**
 * The README's recipe reference is generated from the trainer's config schema and RECIPE_FIELDS
 * (scripts/recipe-reference.ts): it fails when the README's table differs from what the script writes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSchema, renderReadme, renderTable } from '../scripts/recipe-reference';
import { RECIPE_FIELDS } from './recipe';

const ROOT = path.resolve(__dirname, '..');
const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

describe('the recipe reference in README.md', () => {
  test('is what scripts/recipe-reference.ts generates from config.schema.json', () => {
    const generated = renderReadme(readme).split('\n');
    const actual = readme.split('\n');
    const line = generated.findIndex((text, i) => text !== actual[i]);
    if (line >= 0) {
      throw new Error(`README.md:${line + 1} differs from config.schema.json; run npx tsx scripts/recipe-reference.ts\n  README:    ${actual[line]}\n  generated: ${generated[line]}`);
    }
    expect(generated.length).toBe(actual.length);
  });

  test('has a row for every recipe field, with its trainer key, default and methods', () => {
    const table = renderTable(readSchema().properties);
    for (const [field, spec] of Object.entries(RECIPE_FIELDS)) expect(table).toContain(`| \`${field}\` | \`${spec.key}\` |`);
    expect(table).toContain('| `dpoLabelSmoothing` | `dpo_label_smoothing` | number ≥ 0, < 0.5 | `0` | dpo |');
    expect(table).toContain('| `maxSteps` | `max_steps` | whole number ≥ 1 | unset | all |');
    expect(table).toContain('| `optim` | `optim` | `adamw_torch_fused`, `adamw_torch`, `adamw_8bit`, `paged_adamw_8bit`, `paged_adamw_32bit`, `adafactor` | `"adamw_torch_fused"` | all |');
  });

  test('fails when a recipe field names a trainer key the schema does not have', () => {
    const { properties } = readSchema();
    const { max_steps: _dropped, ...rest } = properties;
    expect(() => renderTable(rest)).toThrow('recipe field maxSteps: trainer key max_steps is not in config.schema.json');
  });
});
