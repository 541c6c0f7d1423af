import * as fs from 'node:fs';
import * as path from 'node:path';
import { DISTRIBUTIONS, LR_SCHEDULERS, METHODS, ATTN_IMPLEMENTATIONS, BASE_MODEL_KEY, GRADERS_KEY, GRPO_LENGTH_GUARDS, OVERLONG_ROWS, REWARD_MODEL_KEY, parseRecipe, RECIPE_FIELDS, RecipeSchema, renderHyperParameters, TRAINER_ONLY } from './recipe';

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
    // base_model and reward_model come from the run; graders travel as the graders channel (graders.json), never rendered
    const emitted = [BASE_MODEL_KEY, REWARD_MODEL_KEY, GRADERS_KEY, ...Object.values(RECIPE_FIELDS).map((f) => f.key)].sort();
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
    expect([...GRPO_LENGTH_GUARDS]).toEqual(properties.grpo_length_guard.enum);
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
    const trained = { lora: { method: 'lora' }, qlora: { method: 'qlora' }, sft: { method: 'sft' }, 'dpo-lora': { method: 'dpo', useLora: true }, 'dpo-full': { method: 'dpo', useLora: false }, 'reward-lora': { method: 'reward', useLora: true }, 'reward-full': { method: 'reward', useLora: false }, grpo: { method: 'grpo' } } as const;
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
      const rendered = renderHyperParameters(parseRecipe(c.recipe), { baseModel: c.baseModel, rewardModel: c.rewardModel });
      expect({ name: c.name, hyperParameters: rendered }).toEqual({ name: c.name, hyperParameters: c.hyperParameters });
      for (const value of Object.values(rendered)) expect(typeof value).toBe('string');
    }
  });

  test('the fixture sets every recipe field in at least one case', () => {
    const set = new Set(fixture.cases.flatMap((c: { recipe: object }) => Object.keys(c.recipe)));
    expect([...set].sort()).toEqual(Object.keys(RECIPE_FIELDS).sort());
  });

  test('reward_model and graders: the reward model is rendered from the run for grpo only; graders never are (they are the graders channel)', () => {
    const grpo = renderHyperParameters(parseRecipe({ method: 'grpo', rewardWeights: { exact: 1, reward_model: 0.5 } }), { baseModel: 'm', rewardModel: 's3://b/models/rm/' });
    expect(grpo[REWARD_MODEL_KEY]).toBe('s3://b/models/rm/');
    expect(JSON.parse(grpo.reward_weights)).toEqual({ exact: 1, reward_model: 0.5 });
    expect(grpo).not.toHaveProperty(GRADERS_KEY);
    expect(() => renderHyperParameters(parseRecipe({ method: 'lora' }), { baseModel: 'm', rewardModel: 's3://b/rm/' })).toThrow(/method "grpo" only.*remove rewardModel/);
  });

  test('the trainer\'s grpo combination rules hold in the recipe', () => {
    const problems = (recipe: object) => RecipeSchema.safeParse(recipe).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(problems({ method: 'grpo' })).toEqual([]);
    expect(problems({ method: 'grpo', batchSize: 3, gradientAccumulation: 1, grpoNumGenerations: 2 })).toEqual([expect.stringMatching(/^grpoNumGenerations: batchSize x gradientAccumulation \(3\) must be a multiple of grpoNumGenerations \(2\)/)]);
    expect(problems({ method: 'grpo', grpoLengthGuard: 'mask', grpoLengthPenalty: 2 })).toEqual([expect.stringMatching(/^grpoLengthPenalty: .*grpoLengthGuard "mask"/)]);
    expect(problems({ method: 'grpo', distribution: 'fsdp' })).toEqual([expect.stringMatching(/^distribution: .*"none" or "ddp"/)]);
    expect(problems({ method: 'grpo', overlongRows: 'truncate' })).toEqual([expect.stringMatching(/^overlongRows: /)]);
    expect(problems({ method: 'grpo', earlyStoppingPatience: 2 })).toEqual([expect.stringMatching(/^earlyStoppingPatience: /)]);
    expect(problems({ method: 'grpo', maxLength: 256 })).toEqual([expect.stringMatching(/^grpoMaxCompletionLength: .*no room for a prompt/)]);
    expect(problems({ method: 'grpo', merge: true })).toEqual([expect.stringMatching(/^merge: merge applies to method lora or qlora or dpo only/)]);
    expect(problems({ method: 'lora', grpoBeta: 0.1 })).toEqual([expect.stringMatching(/^grpoBeta: grpoBeta applies to method grpo only/)]);
  });
});
