import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The eval.json the real trainer wrote (training-images/trainer/tests/test_evaluate.py keeps these
 * fixtures current), with a probe or without one.
 */
export function trainerReport(probe: boolean): any {
  return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'contracts', probe ? 'eval-report-probe.json' : 'eval-report.json'), 'utf8'));
}

/**
 * The trainer's report with the tuned model's losses moved, its derived figures recomputed the way the
 * trainer computes them (evaluate.py): a report the trainer could have written for another model.
 */
export function movedReport(probe: boolean, tuned: { evalLossRatio?: number; forgettingIncrease?: number }): any {
  const report = trainerReport(probe);
  if (tuned.evalLossRatio !== undefined) {
    report.tuned.eval_loss = report.base.eval_loss * tuned.evalLossRatio;
    report.tuned.eval_perplexity = Math.exp(report.tuned.eval_loss);
  }
  if (tuned.forgettingIncrease !== undefined) report.tuned.probe_loss = report.base.probe_loss + tuned.forgettingIncrease;
  report.eval_loss_ratio = report.tuned.eval_loss / report.base.eval_loss;
  report.forgetting_increase = probe ? report.tuned.probe_loss - report.base.probe_loss : null;
  return report;
}

