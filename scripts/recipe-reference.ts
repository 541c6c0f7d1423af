// The README's recipe reference, generated from the trainer's config schema
// (training-images/trainer/config.schema.json, itself generated from config.py) and the recipe's field table
// (RECIPE_FIELDS in lib/recipe.ts): one row per recipe field with its trainer key, its values, its default, the
// methods it applies to and what it does. The README marks the generated block:
//
//   <!-- recipe-reference -->
//   ...generated...
//   <!-- /recipe-reference -->
//
//   npx tsx scripts/recipe-reference.ts           rewrites the block in README.md
//   npx tsx scripts/recipe-reference.ts --check   exits 1 when README.md differs from what it would write
//
// lib/recipe.reference.test.ts runs the check.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RECIPE_FIELDS } from '../lib/recipe';
import { writeReadmeSection } from './readme-section';

const ROOT = path.resolve(__dirname, '..');
const BLOCK = /^<!-- recipe-reference -->\n[\s\S]*?^<!-- \/recipe-reference -->$/m;

interface Property {
  readonly type?: string;
  readonly enum?: readonly string[];
  readonly anyOf?: readonly Property[];
  readonly default?: unknown;
  readonly description?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly minLength?: number;
  readonly 'x-tuneyard-methods'?: readonly string[];
  readonly 'x-tuneyard-default-by-method'?: Record<string, number>;
}

export function readSchema(root = ROOT): { properties: Record<string, Property> } {
  return JSON.parse(fs.readFileSync(path.join(root, 'training-images/trainer/config.schema.json'), 'utf8'));
}

/** The values a property takes, in words: the enum, or the type with its bounds. */
function values(property: Property): string {
  if (property.anyOf) return property.anyOf.map((p) => (p.type === 'null' ? '' : values(p))).filter(Boolean).join(' or ');
  if (property.enum) return property.enum.map((v) => `\`${v}\``).join(', ');
  const bounds = [
    property.minimum !== undefined ? `≥ ${property.minimum}` : '',
    property.exclusiveMinimum !== undefined ? `> ${property.exclusiveMinimum}` : '',
    property.maximum !== undefined ? `≤ ${property.maximum}` : '',
    property.exclusiveMaximum !== undefined ? `< ${property.exclusiveMaximum}` : '',
  ].filter(Boolean);
  const type = property.type === 'integer' ? 'whole number' : property.type ?? 'any';
  return bounds.length ? `${type} ${bounds.join(', ')}` : type;
}

function defaultText(property: Property): string {
  const byMethod = property['x-tuneyard-default-by-method'];
  if (byMethod) return `by what is trained: ${Object.entries(byMethod).map(([k, v]) => `${k} ${v.toExponential()}`).join(', ')}`;
  if (property.default === null || property.default === undefined) return 'unset';
  return `\`${JSON.stringify(property.default)}\``;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The generated table. Throws when a recipe field's trainer key is not in the schema (they must not drift). */
export function renderTable(properties: Record<string, Property>): string {
  const rows = Object.entries(RECIPE_FIELDS).map(([field, spec]) => {
    const property = properties[spec.key];
    if (!property) throw new Error(`recipe field ${field}: trainer key ${spec.key} is not in config.schema.json`);
    const methods = property['x-tuneyard-methods']?.join(', ') ?? 'all';
    const list = field === 'targetModules' || field === 'loraModulesToSave' ? ' (a list in the recipe; comma-separated for the trainer)' : '';
    return `| \`${field}\` | \`${spec.key}\` | ${cell(values(property) + list)} | ${cell(defaultText(property))} | ${methods} | ${cell(property.description ?? '')} |`;
  });
  return [
    '| Recipe field | Trainer key | Values | Default | Methods | What it does |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

/** The README with the generated block rewritten. Throws when the README has no block. */
export function renderReadme(readme: string, properties = readSchema().properties): string {
  if (!BLOCK.test(readme)) throw new Error('README.md has no <!-- recipe-reference --> ... <!-- /recipe-reference --> block');
  return readme.replace(BLOCK, () => `<!-- recipe-reference -->\n${renderTable(properties)}\n<!-- /recipe-reference -->`);
}

if (require.main === module) {
  writeReadmeSection('recipe reference', 'config.schema.json', 'recipe-reference.ts', (readme) => renderReadme(readme));
}
