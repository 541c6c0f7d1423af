export * from './fine-tuning-job';
// In DefaultRecipe.recipe: part of the constructs' API.
export type { Recipe } from '../../lib/recipe';
