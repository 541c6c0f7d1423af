import { DPO_LOSS_TYPES, OPTIMIZERS, parseRecipe, renderHyperParameters } from './recipe';

const render = (recipe: object) => renderHyperParameters(parseRecipe(recipe), { baseModel: 'm' });

describe('recipe validation', () => {
  test('accepts every new option where it applies, and renders it under the trainer key', () => {
    // GIVEN / WHEN
    const sft = render({
      method: 'qlora',
      maxSteps: 500,
      weightDecay: 0.01,
      maxGradNorm: 0.3,
      optim: 'paged_adamw_8bit',
      neftuneNoiseAlpha: 5,
      useDora: true,
      useRslora: true,
      loraModulesToSave: ['embed_tokens', 'lm_head'],
      chatTemplate: 'chatml',
      torchCompile: true,
      useLigerKernel: true,
      distribution: 'fsdp',
    });
    const dpo = render({ method: 'dpo', dpoLossType: 'robust', dpoLabelSmoothing: 0.1, rpoAlpha: 1, precomputeRefLogProbs: true, dpoBeta: 0.2 });

    // THEN
    expect(sft).toMatchObject({
      max_steps: '500',
      weight_decay: '0.01',
      max_grad_norm: '0.3',
      optim: 'paged_adamw_8bit',
      neftune_noise_alpha: '5',
      use_dora: 'true',
      use_rslora: 'true',
      lora_modules_to_save: 'embed_tokens,lm_head',
      chat_template: 'chatml',
      torch_compile: 'true',
      use_liger_kernel: 'true',
      distribution: 'fsdp',
    });
    expect(dpo).toMatchObject({ dpo_loss_type: 'robust', dpo_label_smoothing: '0.1', rpo_alpha: '1', precompute_ref_log_probs: 'true', dpo_beta: '0.2' });
    for (const optim of OPTIMIZERS) expect(render({ method: 'lora', optim }).optim).toBe(optim);
    for (const dpoLossType of DPO_LOSS_TYPES.filter((t) => t !== 'exo_pair')) expect(render({ method: 'dpo', dpoLossType }).dpo_loss_type).toBe(dpoLossType);
    expect(render({ method: 'dpo', dpoLossType: 'exo_pair', dpoLabelSmoothing: 0.001 }).dpo_label_smoothing).toBe('0.001');
  });

  test('options that default to off are not rendered unless set; the others render their defaults', () => {
    const rendered = render({ method: 'lora' });
    for (const key of ['max_steps', 'neftune_noise_alpha', 'lora_modules_to_save', 'chat_template', 'rpo_alpha']) expect(rendered).not.toHaveProperty(key);
    expect(rendered).toMatchObject({ weight_decay: '0', max_grad_norm: '1', optim: 'adamw_torch_fused', use_dora: 'false', use_rslora: 'false', torch_compile: 'false', use_liger_kernel: 'false' });
    expect(rendered).not.toHaveProperty('dpo_loss_type');
  });

  test.each([
    [{ method: 'dpo', neftuneNoiseAlpha: 5 }, /recipe\.neftuneNoiseAlpha: neftuneNoiseAlpha applies to method sft or lora or qlora only and has no effect with method "dpo"; remove it/],
    [{ method: 'sft', useDora: true }, /recipe\.useDora: useDora applies to method lora or qlora or dpo or reward or grpo or rloo only/],
    [{ method: 'dpo', useLora: false, useRslora: true }, /recipe\.useRslora: useRslora needs an adapter, but method dpo with useLora false trains all weights/],
    [{ method: 'dpo', useLora: false, loraModulesToSave: ['lm_head'] }, /recipe\.loraModulesToSave: loraModulesToSave needs an adapter/],
    [{ method: 'lora', dpoLossType: 'ipo' }, /recipe\.dpoLossType: dpoLossType applies to method dpo only/],
    [{ method: 'lora', rpoAlpha: 1 }, /recipe\.rpoAlpha: rpoAlpha applies to method dpo only/],
    [{ method: 'sft', precomputeRefLogProbs: true }, /recipe\.precomputeRefLogProbs: precomputeRefLogProbs applies to method dpo only/],
    [{ method: 'dpo', dpoLossType: 'ipo', dpoLabelSmoothing: 0.1 }, /recipe\.dpoLabelSmoothing: dpoLabelSmoothing has no effect with dpoLossType "ipo" \(TRL reads it in robust, exo_pair, aot, aot_unpaired only\); set dpoLossType "robust"/],
    [{ method: 'dpo', dpoLabelSmoothing: 0.1 }, /dpoLabelSmoothing has no effect with dpoLossType "sigmoid"/],
    [{ method: 'dpo', dpoLossType: 'exo_pair' }, /recipe\.dpoLabelSmoothing: dpoLossType "exo_pair" needs dpoLabelSmoothing above 0/],
    [{ method: 'dpo', dpoLossType: 'robust', dpoLabelSmoothing: 0.5 }, /recipe\.dpoLabelSmoothing: must be from 0 to below 0\.5/],
    [{ method: 'qlora', distribution: 'deepspeed' }, /recipe\.distribution: method "qlora" with distribution "deepspeed" is not supported; use distribution "fsdp"/],
    [{ method: 'lora', maxSteps: 0 }, /recipe\.maxSteps: must be at least 1/],
    [{ method: 'lora', weightDecay: -0.1 }, /recipe\.weightDecay: must be 0 \(off\) or more/],
    [{ method: 'lora', maxGradNorm: -1 }, /recipe\.maxGradNorm: must be 0 \(no clipping\) or more/],
    [{ method: 'lora', optim: 'lion' }, /recipe\.optim: /],
    [{ method: 'lora', chatTemplate: 'llama3' }, /recipe\.chatTemplate: /],
    [{ method: 'lora', loraModulesToSave: [] }, /recipe\.loraModulesToSave: must name at least one module/],
  ])('fails for %j, naming the field and the fix', (recipe, message) => {
    expect(() => parseRecipe(recipe)).toThrow(message);
  });

  test('reward: LoRA (the score head trained whole beside it) or all weights, the adapter fields and merge as for dpo', () => {
    expect(renderHyperParameters(parseRecipe({ method: 'reward' }), { baseModel: 'm' })).toMatchObject({ method: 'reward', use_lora: 'true', lora_r: '16' });
    expect(renderHyperParameters(parseRecipe({ method: 'reward', useLora: false }), { baseModel: 'm' })).toMatchObject({ method: 'reward', use_lora: 'false' });
    // no learning rate rendered: the trainer's default for a reward model (reward-lora 1e-4, reward-full 1e-5)
    expect(renderHyperParameters(parseRecipe({ method: 'reward' }), { baseModel: 'm' })).not.toHaveProperty('learning_rate');
    expect(() => parseRecipe({ method: 'reward', useLora: false, loraR: 8 })).toThrow(/recipe\.loraR: loraR needs an adapter, but method reward with useLora false trains all weights/);
    // a reward run always writes its model merged: merge is not a reward field
    expect(() => parseRecipe({ method: 'reward', merge: true })).toThrow(/recipe\.merge: merge applies to method lora or qlora or dpo only and has no effect with method "reward"/);
    expect(() => parseRecipe({ method: 'reward', dpoBeta: 0.2 })).toThrow(/recipe\.dpoBeta: dpoBeta applies to method dpo only/);
    expect(() => parseRecipe({ method: 'reward', packing: true })).toThrow(/recipe\.packing: packing applies to method sft or lora or qlora only/);
  });

  test('rloo: a LoRA adapter (the LoRA fields apply, merge does not), its own rloo fields with the trainer\'s defaults, no grpo or grader fields', () => {
    const rendered = renderHyperParameters(parseRecipe({ method: 'rloo', loraR: 8, useDora: true }), { baseModel: 'm', rewardModel: 's3://b/artifacts/rm/out/model/full/' });
    expect(rendered).toMatchObject({ method: 'rloo', lora_r: '8', use_dora: 'true', rloo_num_generations: '4', rloo_beta: '0.05', reward_model: 's3://b/artifacts/rm/out/model/full/' });
    expect(rendered).not.toHaveProperty('learning_rate'); // the trainer's rloo default, 1e-5
    expect(() => parseRecipe({ method: 'rloo', merge: true })).toThrow(/recipe\.merge: merge applies to method lora or qlora or dpo only and has no effect with method "rloo"; remove it/);
    expect(() => parseRecipe({ method: 'rloo', grpoBeta: 0.1 })).toThrow(/recipe\.grpoBeta: grpoBeta applies to method grpo only and has no effect with method "rloo"/);
    expect(() => parseRecipe({ method: 'rloo', rlooNumGenerations: 2.5 })).toThrow(/recipe\.rlooNumGenerations: must be a whole number \(completions per prompt\)/);
    expect(() => parseRecipe({ method: 'rloo', rlooMaxCompletionLength: 0 })).toThrow(/recipe\.rlooMaxCompletionLength: must be at least 1 \(new tokens per completion\)/);
    expect(() => parseRecipe({ method: 'rloo', batchSize: 1, gradientAccumulation: 6 })).toThrow(/recipe\.rlooNumGenerations: batchSize x gradientAccumulation \(6\) must be a multiple of rlooNumGenerations \(4\)/);
  });

  test('grpoFormatRegex is compiled as Python compiles it: an invalid pattern is refused at synth with Python\'s error and position, Python-only syntax is accepted', () => {
    expect(() => parseRecipe({ method: 'grpo', grpoFormatRegex: '<answer>(\\d+</answer>' })).toThrow(
      /recipe\.grpoFormatRegex: grpoFormatRegex is not a Python regular expression \(missing \), unterminated subpattern at position 8.*\); fix the pattern/,
    );
    expect(() => parseRecipe({ method: 'grpo', grpoFormatRegex: '(?P<a>x)(?P=b)' })).toThrow(/recipe\.grpoFormatRegex: .*unknown group name 'b'/);
    expect(() => parseRecipe({ method: 'grpo', grpoFormatRegex: '*answer' })).toThrow(/recipe\.grpoFormatRegex: .*nothing to repeat at position 0/);
    // named groups and back-references, inline flags, \A / \Z, atomic groups and possessive quantifiers: Python's, not JavaScript's
    for (const pattern of ['(?P<answer>\\d+)(?P=answer)', '(?i)answer: .*', '\\A<think>.*</think>\\Z', '(?>a+)b', 'x*+y', '(?#a comment)z']) {
      expect(parseRecipe({ method: 'grpo', grpoFormatRegex: pattern }).grpoFormatRegex).toBe(pattern);
    }
  });

  test('FSDP-QLoRA is accepted (the 4-bit weights are sharded)', () => {
    expect(parseRecipe({ method: 'qlora', distribution: 'fsdp' }).distribution).toBe('fsdp');
  });

  test.each([
    ['lora_r', 'loraR'],
    ['learning_rate', 'learningRate'],
    ['num_train_epochs', 'epochs'],
    ['max_grad_norm', 'maxGradNorm'],
    ['neftune_noise_alpha', 'neftuneNoiseAlpha'],
    ['loraRank', 'loraR'],
    ['learningrate', 'learningRate'],
    ['weightDecy', 'weightDecay'],
  ])('an unknown field %s says: did you mean %s', (key, field) => {
    expect(() => parseRecipe({ method: 'lora', [key]: 1 })).toThrow(`recipe.(top level): unknown field "${key}"; did you mean "${field}"?`);
  });

  test('an unknown field nothing is near lists the fields', () => {
    expect(() => parseRecipe({ method: 'lora', colour: 'red' })).toThrow(/unknown field "colour"; the fields are method, useLora, loraR, .*distribution, rewardWeights, .*grpoFormatRegex, rlooNumGenerations, .*rlooEpsilon$/m);
  });

  test('many unknown fields are listed in part, the valid fields once', () => {
    const keys = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`field${i}${'k'.repeat(1000)}`, i]));
    let message = '';
    try {
      parseRecipe({ method: 'lora', lora_r: 8, ...keys });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^invalid recipe:\n {2}- recipe\.\(top level\): unknown field "lora_r"; did you mean "loraR"\?; unknown field "field0k{54}\.\.\. \(1006 characters\)"; .* and 981 more unknown fields; the fields are method, /);
    expect(message.match(/the fields are/g)).toHaveLength(1);
    expect(message.length).toBeLessThan(4096);
  });
});
