import * as fs from 'node:fs';
import * as path from 'node:path';
import { DISTRIBUTIONS, LR_SCHEDULERS, METHODS, ATTN_IMPLEMENTATIONS, BASE_MODEL_KEY, parseRecipe, RECIPE_FIELDS, renderHyperParameters } from './recipe';

/**
 * The cross-language contract: the TypeScript recipe renderer against the trainer's config schema
 * (training-images/trainer/config.schema.json, generated from the pydantic model) and the shared
 * fixture test/fixtures/contracts/hyperparameters.json, which the trainer's tests parse too.
 */
const ROOT = path.join(__dirname, '..');
const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'training-images/trainer/config.schema.json'), 'utf8'));
const fixture = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/contracts/hyperparameters.json'), 'utf8'));
const properties: Record<string, { default?: unknown; enum?: string[]; type?: string; 'x-tuneyard-methods'?: string[] }> = schema.properties;

describe('recipe ↔ trainer config contract', () => {
  test('every key the renderer can emit is a property of the trainer schema, and every schema property is rendered', () => {
    const emitted = [BASE_MODEL_KEY, ...Object.values(RECIPE_FIELDS).map((f) => f.key)].sort();
    expect(emitted).toEqual(Object.keys(properties).sort());
    expect(schema.additionalProperties).toBe(false);
  });

  test('enum values match (method, scheduler, distribution, attention)', () => {
    expect([...METHODS]).toEqual(properties.method.enum);
    expect([...LR_SCHEDULERS]).toEqual(properties.lr_scheduler_type.enum);
    expect([...DISTRIBUTIONS]).toEqual(properties.distribution.enum);
    expect([...ATTN_IMPLEMENTATIONS]).toEqual(properties.attn_implementation.enum);
  });

  test('defaults and method restrictions match the trainer', () => {
    for (const [field, spec] of Object.entries(RECIPE_FIELDS)) {
      const property = properties[spec.key];
      expect({ field, default: spec.default }).toEqual({ field, default: property.default });
      expect({ field, methods: spec.methods ? [...spec.methods] : undefined }).toEqual({ field, methods: property['x-tuneyard-methods'] });
    }
  });

  test('renders exactly the committed fixture for each case', () => {
    expect(fixture.cases.length).toBeGreaterThanOrEqual(3);
    for (const c of fixture.cases) {
      const rendered = renderHyperParameters(parseRecipe(c.recipe), { baseModel: c.baseModel });
      expect({ name: c.name, hyperParameters: rendered }).toEqual({ name: c.name, hyperParameters: c.hyperParameters });
      for (const value of Object.values(rendered)) expect(typeof value).toBe('string');
    }
  });

  test('the fixture sets every recipe field in at least one case', () => {
    const set = new Set(fixture.cases.flatMap((c: { recipe: object }) => Object.keys(c.recipe)));
    expect([...set].sort()).toEqual(Object.keys(RECIPE_FIELDS).sort());
  });
});
