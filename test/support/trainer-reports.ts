import * as fs from 'node:fs';
import * as path from 'node:path';

function fixture(name: string): any {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'contracts', name), 'utf8'));
}

/**
 * The eval.json the real trainer wrote (training-images/trainer/tests/test_evaluate.py keeps these
 * fixtures current), with a probe or without one.
 */
export function trainerReport(probe: boolean): any {
  return fixture(probe ? 'eval-report-probe.json' : 'eval-report.json');
}

/** The eval.json the real trainer wrote for a DPO run (LoRA adapter), with its preference figures on held-out pairs. */
export function dpoTrainerReport(): any {
  return fixture('eval-report-dpo.json');
}

/**
 * The eval.json the real trainer wrote with graders and benchmarks: `graders` (exact, fuzzy) on generated answers
 * and two multiple-choice benchmarks (translate-a, translate-b); or, with `graderErrors`, the report of a run whose
 * grader `label` errored on every row and whose `rubric` (score_model) did not run, beside a working `exact`.
 */
export function gradedTrainerReport(graderErrors = false): any {
  return fixture(graderErrors ? 'eval-report-grader-errors.json' : 'eval-report-benchmarks.json');
}

/**
 * The trainer's graded report (gradedTrainerReport) as the evaluation of a grpo run rewarded by those graders writes it:
 * with the `reward` block evaluate.py adds, each source's mean the grader's (no grader errored on a row, and there is no
 * format guard: the trainer's rule then gives the grader's mean), each side's mean their weighted sum.
 */
export function gradedRewardReport(weights: Record<string, number>): any {
  const report = gradedTrainerReport();
  const side = (name: 'base' | 'tuned') => {
    const bySource = Object.fromEntries(Object.keys(weights).map((source) => [source, report.graders[name][source].mean as number]));
    return { mean: Object.entries(weights).reduce((sum, [source, weight]) => sum + weight * bySource[source], 0), by_source: bySource, format_misses: 0 };
  };
  const base = side('base');
  const tuned = side('tuned');
  report.reward = { sources: weights, format_regex: null, rows: report.generation.items, base, tuned, gain: tuned.mean - base.mean };
  return report;
}

/**
 * The trainer's report with the tuned model's losses moved, its derived figures recomputed the way the
 * trainer computes them (evaluate.py): a report the trainer could have written for another model.
 */
export function movedReport(probe: boolean, tuned: { evalLossRatio?: number; forgettingIncrease?: number }): any {
  return moved(trainerReport(probe), tuned);
}

/**
 * The trainer's DPO report for a model that ranks `preferred` of its held-out pairs right (and whose chosen
 * responses' loss moved by `evalLossRatio`), the derived figures recomputed as evaluate.py does.
 */
export function movedDpoReport(tuned: { preferred?: number; evalLossRatio?: number }): any {
  const report = moved(dpoTrainerReport(), tuned);
  if (tuned.preferred !== undefined) {
    report.preference.preferred = tuned.preferred;
    report.preference.accuracy = tuned.preferred / report.preference.pairs;
  }
  return report;
}

function moved(report: any, tuned: { evalLossRatio?: number; forgettingIncrease?: number }): any {
  if (tuned.evalLossRatio !== undefined) {
    report.tuned.eval_loss = report.base.eval_loss * tuned.evalLossRatio;
    report.tuned.eval_perplexity = Math.exp(report.tuned.eval_loss);
  }
  if (tuned.forgettingIncrease !== undefined) report.tuned.probe_loss = report.base.probe_loss + tuned.forgettingIncrease;
  report.eval_loss_ratio = report.tuned.eval_loss / report.base.eval_loss;
  report.forgetting_increase = report.base.probe_loss === null ? null : report.tuned.probe_loss - report.base.probe_loss;
  return report;
}

/**
 * The eval.json the real trainer wrote for a reward run (method reward, LoRA; training-images/trainer/tests/test_reward.py):
 * the reward model's pairwise accuracy on held-out pairs (`preference`, beta null) and its pairwise loss against chance.
 */
export function rewardTrainerReport(): any {
  return fixture('eval-report-reward.json');
}

/** The trainer's reward report for a reward model that ranks `preferred` of its held-out pairs right. */
export function movedRewardReport(preferred: number): any {
  const report = rewardTrainerReport();
  report.preference.preferred = preferred;
  report.preference.accuracy = preferred / report.preference.pairs;
  return report;
}

/**
 * The eval.json the real trainer wrote for an online RL run's LoRA adapter: the evaluation job PlanRun plans for the
 * grpo or rloo request of constructs/fine-tuning-pipeline/handler/read-eval-report-rl.test.ts (test/fixtures/contracts/
 * rl-eval-jobs.json), run on the toy adapter of training-images/trainer/tests/test_grpo.py or test_rloo.py: its losses
 * on the eval set's reference answers and the grader has_a on its greedy answers, base and tuned.
 */
export function rlTrainerReport(method: 'grpo' | 'rloo'): any {
  return fixture(`eval-report-${method}.json`);
}
