import { EVAL_JOB_REPORT, HOSTILE_REASONING, MemoryS3, runJudgeOnEvalJob } from '../../../test/support/judged-report';
import { expectValidRequests } from '../../../test/support/api-model';
import type { Judgement } from './judge-answers';
import { escapeHtml, JUDGE_BEGIN, JUDGE_END, MAX_JUDGED_ITEMS_SHOWN, orderedItems, withJudgeSection } from './judge-report';

/** What is between the judge markers of a page. */
function sectionOf(page: string): string {
  return page.slice(page.indexOf(JUDGE_BEGIN) + JUDGE_BEGIN.length, page.indexOf(JUDGE_END));
}

describe('the judge section of report.html', () => {
  test("the judge's last invocation rewrites the eval job's report.html with the figures and the reasoning, escaped", async () => {
    // GIVEN the eval job's report.html and generations.jsonl (the real Python test's output), and the real plan
    // WHEN the real JudgeAnswers handler judges every item
    const { s3, plan, progress, reportKey } = await runJudgeOnEvalJob();
    // THEN
    expect(reportKey).toBe(plan.generations.key.replace(/generations\.jsonl$/, 'report.html'));
    expect(reportKey).toMatch(/^eval-reports\/chats-lora-[0-9a-f]{12}\/.+\/output\/model\/report\.html$/);
    const put = s3.puts.find((p) => p.Key === reportKey)!;
    expect(put).toEqual({ Bucket: plan.generations.bucket, Key: reportKey, ContentType: 'text/html; charset=utf-8' });
    expectValidRequests(s3.puts.map((params) => ({ service: 's3', operation: 'PutObject', params })));
    const page = s3.objects.get(`${plan.generations.bucket}/${reportKey}`)!;
    const summary = JSON.parse(s3.objects.get(`${plan.output.bucket}/${plan.output.prefix}judge.json`)!);
    // cat prompts (3 rows) are losses, dog prompts (3 rows) wins, the other 54 ties
    expect(progress.result).toMatchObject({ items: 60, wins: 3, ties: 54, losses: 3, winRate: 0.05 });
    const section = sectionOf(page);
    expect(section).toMatch(
      /<th>tuned wins<\/th><th>ties<\/th><th>tuned loses<\/th><th>errors<\/th><th>win rate \(wins \/ judged\)<\/th><\/tr><\/thead><tbody><tr><td class="n good">3<\/td><td class="n ">54<\/td><td class="n bad">3<\/td><td class="n ">0<\/td><td class="n ">0.05<\/td>/,
    );
    // the pointwise means as judge.json has them: bread prompts score base 4, tuned 1; the rest 3 and 3
    const fluency = summary.pointwise.fluency;
    expect(fluency.base.mean).toBeCloseTo((57 * 3 + 3 * 4) / 60);
    expect(fluency.tuned.mean).toBeCloseTo((57 * 3 + 3 * 1) / 60);
    expect(section).toContain(
      `<td>fluency</td><td class="n ">${Number(fluency.base.mean.toPrecision(4))}</td><td class="n bad">${Number(fluency.tuned.mean.toPrecision(4))}</td><td class="n ">1</td><td class="n ">0.95</td><td class="n">60 / 60</td>`,
    );
    // the reasoning, escaped: no element from the judge's text
    expect(section).toContain(escapeHtml(HOSTILE_REASONING));
    expect(section).not.toContain('<script');
    expect(section).not.toContain('<img');
    // worst for the tuned model first: the three losses (cat), ties by pointwise change (bread first), wins (dog) last
    const shown = [...section.matchAll(/data-item="(\d+)"/g)].map((m) => Number(m[1]));
    expect(shown).toHaveLength(MAX_JUDGED_ITEMS_SHOWN);
    expect(section).toContain(`${MAX_JUDGED_ITEMS_SHOWN} of 60 items`);
    const generations = s3.objects.get(`${plan.generations.bucket}/${plan.generations.key}`)!.trim().split('\n').map((l) => JSON.parse(l));
    const content = (index: number) => generations.find((g) => g.index === index).prompt[0].content as string;
    expect(shown.slice(0, 3).map(content).every((c) => /: cat\b/.test(c))).toBe(true);
    expect(shown.slice(3, 6).map(content).every((c) => /: bread\b/.test(c))).toBe(true);
    expect(shown.map(content).some((c) => /: dog\b/.test(c))).toBe(false); // the wins come last, past the 50 shown
    expect(section).not.toContain('closer to');
    // everything outside the markers is the eval job's page, byte for byte
    expect(page.slice(0, page.indexOf(JUDGE_BEGIN))).toBe(EVAL_JOB_REPORT.slice(0, EVAL_JOB_REPORT.indexOf(JUDGE_BEGIN)));
    expect(page.slice(page.indexOf(JUDGE_END))).toBe(EVAL_JOB_REPORT.slice(EVAL_JOB_REPORT.indexOf(JUDGE_END)));
    expect(EVAL_JOB_REPORT).toContain('judge: not run yet / not configured');
    expect(page).not.toContain('judge: not run yet / not configured');
  });

  test('judging again (a retried invocation) gives the same page: the markers stay', async () => {
    const first = await runJudgeOnEvalJob();
    const once = first.s3.objects.get(`${first.plan.generations.bucket}/${first.reportKey}`)!;
    const again = await runJudgeOnEvalJob(first.s3, first.plan);
    expect(again.s3.objects.get(`${first.plan.generations.bucket}/${first.reportKey}`)).toBe(once);
    expect(once.split(JUDGE_BEGIN)).toHaveLength(2);
  });

  test('a report without the markers (an older trainer) is left as it is, and the judge still succeeds', async () => {
    const s3 = new MemoryS3();
    const first = await runJudgeOnEvalJob();
    const old = EVAL_JOB_REPORT.replace(JUDGE_BEGIN, '').replace(JUDGE_END, '');
    s3.objects.set(`${first.plan.generations.bucket}/${first.reportKey}`, old);
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      const { progress } = await runJudgeOnEvalJob(s3, first.plan);
      expect(progress.done).toBe(true);
      expect(s3.objects.get(`${first.plan.generations.bucket}/${first.reportKey}`)).toBe(old);
      expect(s3.puts.some((p) => p.Key === first.reportKey)).toBe(false);
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/report\.html: report\.html has no <!-- tuneyard:judge --> .* section \(written by an older trainer\); left as it is/));
    } finally {
      warn.mockRestore();
    }
  });

  test('a marker inside model text cannot end the section early: it is escaped', () => {
    const page = `<main>${JUDGE_BEGIN}<section id="judge">x</section>${JUDGE_END}</main>`;
    const section = `<p>${escapeHtml(`${JUDGE_END}<script>x()</script>`)}</p>`;
    const rewritten = withJudgeSection(page, section);
    expect(rewritten).toEqual({ page: `<main>${JUDGE_BEGIN}<p>&lt;!-- /tuneyard:judge --&gt;&lt;script&gt;x()&lt;/script&gt;</p>${JUDGE_END}</main>` });
    expect(withJudgeSection(`${page}${page}`, section)).toEqual({ problem: 'report.html has more than one judge section' });
  });

  test('escapes as Python html.escape(quote=True) does', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;');
  });

  test('orders items losses, ties, errors, then wins', () => {
    const pair = (index: number, a: string | null, b: string | null): Judgement[] =>
      [a, b].map((verdict, i) => ({ index, kind: 'pairwise', order: i ? 'tuned-base' : 'base-tuned', raw: '', reasoning: '', verdict, error: verdict === null ? 'bad' : null }) as Judgement);
    const judgements = [...pair(0, 'tuned', 'tuned'), ...pair(1, null, 'tuned'), ...pair(2, 'base', 'tuned'), ...pair(3, 'base', 'base')];
    expect(orderedItems(judgements).map((i) => [i.index, i.outcome])).toEqual([
      [3, 'loss'],
      [2, 'tie'],
      [1, 'error'],
      [0, 'win'],
    ]);
  });
});
