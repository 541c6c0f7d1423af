/**
 * The training methods, as in the trainer's config (`method`). `reward` trains a reward model (the base with a scalar
 * score head) on the same preference pairs as `dpo`. One list for the recipe, the dataset rules and the CLI. */
export const METHODS = ['sft', 'lora', 'qlora', 'dpo', 'reward', 'grpo'] as const;
export type Method = (typeof METHODS)[number];
