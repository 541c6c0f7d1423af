/**
 * The training methods, as in the trainer's config (`method`). `reward` trains a reward model (the base with a scalar
 * score head) on the same preference pairs as `dpo`. One list for the recipe, the dataset rules and the CLI. */
export const METHODS = ['sft', 'lora', 'qlora', 'dpo', 'reward', 'grpo', 'rloo'] as const;
export type Method = (typeof METHODS)[number];

/**
 * The online RL methods: each samples completions of prompt-only rows and trains a LoRA adapter on their rewards,
 * with a KL penalty to the base (the adapter disabled). `grpo` is rewarded by the run's graders and/or a registered
 * reward model, `rloo` (RLHF: TRL's RLOOTrainer, which stands in for PPO) by a registered reward model. They never
 * merge, compute no eval loss, and run with distribution none or ddp.
 */
export const ONLINE_RL_METHODS = ['grpo', 'rloo'] as const satisfies readonly Method[];
export type OnlineRlMethod = (typeof ONLINE_RL_METHODS)[number];

/** Whether a method is one of the {@link ONLINE_RL_METHODS}. */
export function isOnlineRl(method: string): method is OnlineRlMethod {
  return (ONLINE_RL_METHODS as readonly string[]).includes(method);
}
