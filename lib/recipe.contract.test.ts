import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { pythonEnv } from '../test/support/api-model';
import { DISTRIBUTIONS, LR_SCHEDULERS, METHODS, ATTN_IMPLEMENTATIONS, BASE_MODEL_KEY, GRADERS_KEY, GRPO_LENGTH_GUARDS, OVERLONG_ROWS, REWARD_MODEL_KEY, parseRecipe, RECIPE_FIELDS, RecipeSchema, renderHyperParameters } from './recipe';

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
    // base_model and reward_model come from the run; graders travel as the graders channel (graders.json), never rendered
    const emitted = [BASE_MODEL_KEY, REWARD_MODEL_KEY, GRADERS_KEY, ...Object.values(RECIPE_FIELDS).map((f) => f.key)].sort();
    expect(emitted).toEqual(Object.keys(properties).sort());
    expect(schema.additionalProperties).toBe(false);
  });

  test('enum values match (method, scheduler, distribution, attention, overlong rows)', () => {
    expect([...METHODS]).toEqual(properties.method.enum);
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
      expect({ field, methods: spec.methods ? [...spec.methods] : undefined }).toEqual({ field, methods: property['x-tuneyard-methods'] });
    }
  });

  test('an unset learningRate is not rendered: the trainer takes its default for what is trained, as documented here', () => {
    const byMethod = properties.learning_rate['x-tuneyard-default-by-method']!;
    const trained = { lora: { method: 'lora' }, qlora: { method: 'qlora' }, sft: { method: 'sft' }, 'dpo-lora': { method: 'dpo', useLora: true }, 'dpo-full': { method: 'dpo', useLora: false }, 'reward-lora': { method: 'reward', useLora: true }, 'reward-full': { method: 'reward', useLora: false }, grpo: { method: 'grpo' }, rloo: { method: 'rloo' } } as const;
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

  test('reward_model and graders: the reward model is rendered from the run for grpo and rloo only, as the trainer reads it; graders never are (they are the graders channel)', () => {
    expect(properties[REWARD_MODEL_KEY]['x-tuneyard-methods']).toEqual(['grpo', 'rloo']);
    const grpo = renderHyperParameters(parseRecipe({ method: 'grpo', rewardWeights: { exact: 1, reward_model: 0.5 } }), { baseModel: 'm', rewardModel: 's3://b/models/rm/' });
    expect(grpo[REWARD_MODEL_KEY]).toBe('s3://b/models/rm/');
    expect(JSON.parse(grpo.reward_weights)).toEqual({ exact: 1, reward_model: 0.5 });
    expect(grpo).not.toHaveProperty(GRADERS_KEY);
    const rloo = renderHyperParameters(parseRecipe({ method: 'rloo' }), { baseModel: 'm', rewardModel: 's3://b/models/rm/' });
    expect(rloo).toMatchObject({
      base_model: 'm', reward_model: 's3://b/models/rm/', method: 'rloo', lora_r: '16', lora_target_modules: 'all-linear',
      rloo_num_generations: '4', rloo_max_completion_length: '256', rloo_temperature: '1', rloo_beta: '0.05', rloo_epsilon: '0.2',
    });
    for (const key of ['merge', 'use_lora', 'reward_weights', 'grpo_num_generations', 'packing', GRADERS_KEY]) expect(rloo).not.toHaveProperty(key);
    expect(() => renderHyperParameters(parseRecipe({ method: 'lora' }), { baseModel: 'm', rewardModel: 's3://b/rm/' })).toThrow(/methods grpo and rloo only.*remove rewardModel/);
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

  test('the trainer\'s rloo combination rules (config.py _rloo_problems) hold in the recipe', () => {
    const problems = (recipe: object) => RecipeSchema.safeParse(recipe).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(problems({ method: 'rloo' })).toEqual([]);
    expect(problems({ method: 'rloo', batchSize: 3, gradientAccumulation: 2, rlooNumGenerations: 4 })).toEqual([
      expect.stringMatching(/^rlooNumGenerations: batchSize x gradientAccumulation \(6\) must be a multiple of rlooNumGenerations \(4\).*change batchSize, gradientAccumulation or rlooNumGenerations$/),
    ]);
    // the default 4 x 4 = 16 holds whole groups of rloo's 4 completions, not of grpo's default 8 with batchSize 2
    expect(problems({ method: 'rloo', batchSize: 1, gradientAccumulation: 4 })).toEqual([]);
    expect(problems({ method: 'grpo', batchSize: 1, gradientAccumulation: 4 })).toEqual([expect.stringMatching(/^grpoNumGenerations: /)]);
    expect(problems({ method: 'rloo', distribution: 'deepspeed' })).toEqual([expect.stringMatching(/^distribution: method "rloo" runs with distribution "none" or "ddp" \(got "deepspeed"\)/)]);
    expect(problems({ method: 'rloo', overlongRows: 'truncate' })).toEqual([expect.stringMatching(/^overlongRows: method "rloo" drops prompts/)]);
    expect(problems({ method: 'rloo', earlyStoppingPatience: 2 })).toEqual([expect.stringMatching(/^earlyStoppingPatience: .*method "rloo" does not compute/)]);
    expect(problems({ method: 'rloo', maxLength: 256 })).toEqual([expect.stringMatching(/^rlooMaxCompletionLength: rlooMaxCompletionLength \(256\) leaves no room for a prompt within maxLength \(256\)/)]);
    expect(problems({ method: 'rloo', merge: true })).toEqual([expect.stringMatching(/^merge: merge applies to method lora or qlora or dpo only/)]);
    expect(problems({ method: 'rloo', useLora: false })).toEqual([expect.stringMatching(/^useLora: useLora applies to method dpo or reward only/)]);
    expect(problems({ method: 'rloo', grpoNumGenerations: 4 })).toEqual([expect.stringMatching(/^grpoNumGenerations: grpoNumGenerations applies to method grpo only/)]);
    expect(problems({ method: 'rloo', rewardWeights: { reward_model: 1 } })).toEqual([expect.stringMatching(/^rewardWeights: rewardWeights applies to method grpo only/)]);
    expect(problems({ method: 'grpo', rlooBeta: 0.1 })).toEqual([expect.stringMatching(/^rlooBeta: rlooBeta applies to method rloo only/)]);
    expect(problems({ method: 'rloo', rlooNumGenerations: 1, rlooEpsilon: 0, rlooBeta: -1, rlooTemperature: 0 })).toEqual([
      'rlooNumGenerations: must be at least 2 (each completion\'s baseline is the mean reward of the others)',
      'rlooTemperature: must be above 0 (e.g. 1)',
      'rlooBeta: must be 0 (no KL penalty) or more, e.g. 0.05',
      'rlooEpsilon: must be above 0 (PPO\'s clip range, e.g. 0.2)',
    ]);
  });
  test('grpoFormatRegex reaches the trainer as written: one with a line break (a SageMaker value takes none) or in double quotes (the trainer JSON-decodes a quoted value) is rendered JSON-quoted', () => {
    const patterns = [
      '<answer>.*</answer>', // as it is
      '"[A-D]"', // a quoted letter: raw, the trainer would read [A-D]
      '"yes"|"no"',
      '(?x)\n<think> .*? </think>  # reasoning first\n\\s* <answer> \\d+ </answer>\n', // verbose: its line breaks end the comments
      '<answer>\r\n.*\u2028\u2029\u0085</answer>',
    ];
    const rendered = patterns.map((grpoFormatRegex) => renderHyperParameters(parseRecipe({ method: 'grpo', grpoFormatRegex }), { baseModel: 'm' }));
    expect(rendered[0].grpo_format_regex).toBe('<answer>.*</answer>');
    for (const hyperParameters of rendered) expect(hyperParameters.grpo_format_regex).toMatch(/^[^\n\r\u0085\u2028\u2029]*$/u); // Java's .* (HyperParameterValue)
    const script = [
      'import json, sys',
      'from tuneyard_trainer.config import from_hyperparameters',
      'print(json.dumps([from_hyperparameters(h).grpo_format_regex for h in json.load(sys.stdin)]))',
    ].join('\n');
    const python = spawnSync(path.join(pythonEnv(), 'bin', 'python'), ['-c', script], {
      input: JSON.stringify(rendered),
      encoding: 'utf8',
      cwd: path.join(ROOT, 'training-images', 'trainer'),
    });
    expect(python.stderr).toBe('');
    expect(JSON.parse(python.stdout)).toEqual(patterns);
  });
});
