/** The training methods, as in the trainer's config (`method`). One list for the recipe, the dataset rules and the CLI. */
export const METHODS = ['sft', 'lora', 'qlora', 'dpo'] as const;
export type Method = (typeof METHODS)[number];
