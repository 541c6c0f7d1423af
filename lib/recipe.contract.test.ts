import * as fs from 'node:fs';
import * as path from 'node:path';
import { DISTRIBUTIONS, LR_SCHEDULERS, METHODS, ATTN_IMPLEMENTATIONS, BASE_MODEL_KEY, OVERLONG_ROWS, parseRecipe, RECIPE_FIELDS, RecipeSchema, renderHyperParameters, TRAINER_ONLY } from './recipe';

/**
 * The cross-language contract: the TypeScript recipe renderer against the trainer's config schema
 * (training-images/trainer/config.schema.json, generated from the pydantic model) and the shared
 * fixture test/fixtures/contracts/hyperparameters.json, which the trainer's tests parse too.
 */
const ROOT = path.join(__dirname, '..');
const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'training-images/trainer/config.schema.json'), 'utf8'));
const fixture = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/contracts/hyperparameters.json'), 'utf8'));
const properties: Record<
  string,
  { default?: unknown; enum?: string[]; type?: string; 'x-tuneyard-methods'?: string[]; 'x-tuneyard-default-by-method'?: Record<string, number> }
> = schema.properties;

describe('recipe ↔ trainer config contract', () => {
  test('every key the renderer can emit is a property of the trainer schema, and every schema property is rendered', () => {
    // what the trainer runs but the plane does not plan yet (TRAINER_ONLY) is the whole difference
    const emitted = [BASE_MODEL_KEY, ...Object.values(RECIPE_FIELDS).map((f) => f.key)].sort();
    expect([...emitted, ...TRAINER_ONLY.keys].sort()).toEqual(Object.keys(properties).sort());
    for (const key of TRAINER_ONLY.keys) expect(emitted).not.toContain(key);
    expect(schema.additionalProperties).toBe(false);
  });

  test('enum values match (method, scheduler, distribution, attention, overlong rows)', () => {
    expect([...METHODS, ...TRAINER_ONLY.methods]).toEqual(properties.method.enum);
    expect([...LR_SCHEDULERS]).toEqual(properties.lr_scheduler_type.enum);
    expect([...DISTRIBUTIONS]).toEqual(properties.distribution.enum);
    expect([...ATTN_IMPLEMENTATIONS]).toEqual(properties.attn_implementation.enum);
    expect([...OVERLONG_ROWS]).toEqual(properties.overlong_rows.enum);
  });

  test('defaults and method restrictions match the trainer', () => {
    for (const [field, spec] of Object.entries(RECIPE_FIELDS)) {
      const property = properties[spec.key];
      // a default the renderer leaves to the trainer is JSON null in the schema
      expect({ field, default: spec.default ?? null }).toEqual({ field, default: property.default });
      const trainerMethods = property['x-tuneyard-methods']?.filter((m) => !(TRAINER_ONLY.methods as readonly string[]).includes(m));
      expect({ field, methods: spec.methods ? [...spec.methods] : undefined }).toEqual({ field, methods: trainerMethods });
    }
  });

  test('an unset learningRate is not rendered: the trainer takes its default for what is trained, as documented here', () => {
    const byMethod = Object.fromEntries(
      Object.entries(properties.learning_rate['x-tuneyard-default-by-method']!).filter(([m]) => !(TRAINER_ONLY.methods as readonly string[]).includes(m)),
    );
    const trained = { lora: { method: 'lora' }, qlora: { method: 'qlora' }, sft: { method: 'sft' }, 'dpo-lora': { method: 'dpo', useLora: true }, 'dpo-full': { method: 'dpo', useLora: false }, 'reward-lora': { method: 'reward', useLora: true }, 'reward-full': { method: 'reward', useLora: false } } as const;
    expect(Object.keys(byMethod).sort()).toEqual(Object.keys(trained).sort());
    for (const recipe of Object.values(trained)) {
      expect(renderHyperParameters(parseRecipe(recipe), { baseModel: 'm' })).not.toHaveProperty('learning_rate');
    }
    expect(renderHyperParameters(parseRecipe({ method: 'sft', learningRate: 3e-6 }), { baseModel: 'm' }).learning_rate).toBe('0.000003');
    const described = (RecipeSchema.shape.learningRate as { description?: string }).description ?? '';
    for (const rate of Object.values(byMethod)) expect(described).toContain(rate.toExponential());
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
