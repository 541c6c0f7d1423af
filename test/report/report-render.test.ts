/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * report.html in headless Chromium: the page the eval job wrote (test/fixtures/contracts/eval-job/report.html,
 * rendered by training-images/trainer/tuneyard_trainer/report.py from the real eval job's output in
 * training-images/trainer/tests/test_report.py, with a <script> and an <img onerror> put in the first tuned answer).
 *
 * Chromium comes from npm (@sparticuz/chromium: a Chromium build inside the package, unpacked to /tmp on first use;
 * puppeteer-core drives it), so a clean clone gets it from `npm ci`. The page is opened from a file with every
 * network request refused: a self-contained report needs none. A screenshot of the top of the page is written to
 * $TUNEYARD_REPORT_SCREENSHOT (default: the OS temp folder) for people to look at.
 *
 * The second page is the one the pipeline's JudgeAnswers Lambda leaves after the judge: its real handler run on the
 * same report.html and generations.jsonl (test/support/judged-report.ts); its judge section's screenshot goes to
 * $TUNEYARD_JUDGED_REPORT_SCREENSHOT.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import chromium from '@sparticuz/chromium';
import puppeteer, { Browser, Page } from 'puppeteer-core';
import { judgedReport } from '../support/judged-report';

const REPORT = path.join(__dirname, '..', 'fixtures', 'contracts', 'eval-job', 'report.html');
const SECTIONS = ['summary', 'curves', 'graders', 'benchmarks', 'judge', 'samples'];
const SCREENSHOT = process.env.TUNEYARD_REPORT_SCREENSHOT ?? path.join(os.tmpdir(), 'tuneyard-report.png');

let browser: Browser;
let page: Page;
const consoleErrors: string[] = [];
const pageErrors: string[] = [];
const requests: string[] = [];

beforeAll(async () => {
  browser = await puppeteer.launch({ executablePath: await chromium.executablePath(), args: chromium.args, headless: true });
  page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 });
  await page.setRequestInterception(true);
  page.on('request', (request) => {
    const url = request.url();
    if (url === `file://${REPORT}`) return void request.continue();
    requests.push(url);
    return void request.abort();
  });
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => void pageErrors.push(String(error)));
  await page.goto(`file://${REPORT}`, { waitUntil: 'load' });
  // the top of the page: summary, curves, graders, benchmarks, judge and the first samples (the whole page is ~11,000 px)
  await page.screenshot({ path: SCREENSHOT as `${string}.png`, clip: { x: 0, y: 0, width: 1200, height: 2400 } });
}, 120_000);

afterAll(async () => {
  await browser?.close();
});

describe('report.html in a browser', () => {
  test('renders without console errors, page errors or any network request', () => {
    expect(consoleErrors).toEqual([]);
    expect(pageErrors).toEqual([]);
    expect(requests).toEqual([]);
    expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
  });

  test('every section is there, in order, and takes up room on the page', async () => {
    const boxes = await page.$$eval('section', (sections) =>
      sections.map((s) => ({ id: s.id, width: s.getBoundingClientRect().width, height: s.getBoundingClientRect().height })),
    );
    expect(boxes.map((b) => b.id)).toEqual(SECTIONS);
    for (const box of boxes) {
      expect(box.width).toBeGreaterThan(300);
      expect(box.height).toBeGreaterThan(40);
    }
  });

  test('the loss chart draws both curves and each grader histogram draws bars for base and tuned', async () => {
    const curves = await page.$$eval('#curves svg path.series', (paths) =>
      paths.map((p) => ({ series: p.getAttribute('data-series'), length: (p as SVGPathElement).getTotalLength() })),
    );
    expect(curves.map((c) => c.series)).toEqual(['train loss', 'eval loss']);
    for (const curve of curves) expect(curve.length).toBeGreaterThan(50);
    const bars = await page.$$eval('#graders svg path.bars', (paths) =>
      paths.map((p) => ({ series: p.getAttribute('data-series'), area: p.getBoundingClientRect().width * p.getBoundingClientRect().height })),
    );
    expect(bars.map((b) => b.series)).toEqual(['base', 'tuned', 'base', 'tuned']); // graders exact and fuzzy
    for (const bar of bars) expect(bar.area).toBeGreaterThan(0);
  });

  test('the benchmark table and the judge placeholder (between the markers JudgeAnswers replaces) are shown', async () => {
    expect(fs.readFileSync(REPORT, 'utf8')).toMatch(/<!-- tuneyard:judge --><section id="judge">.*?<\/section><!-- \/tuneyard:judge -->/);
    const benchmarks = await page.$eval('#benchmarks', (s) => (s as HTMLElement).innerText);
    expect(benchmarks).toMatch(/translate\s+6\s+6\s/);
    const judge = await page.$eval('#judge', (s) => (s as HTMLElement).innerText);
    expect(judge).toContain('judge: not run yet / not configured');
  });

  test('the <script> in an answer did not run: it is shown as text, and the page has no script or img element', async () => {
    const state = await page.evaluate(() => ({
      pwned: (window as unknown as { pwned?: number }).pwned ?? null,
      title: document.title,
      elements: document.querySelectorAll('script, img, iframe, object').length,
      shown: [...document.querySelectorAll('#samples pre')].some((pre) => pre.textContent!.startsWith('<script>document.title="pwned"')),
    }));
    expect(state).toEqual({ pwned: null, title: 'Tuneyard evaluation', elements: 0, shown: true });
  });
});

describe('report.html after the judge, in a browser', () => {
  // the page the real JudgeAnswers handler leaves (scripted Bedrock judge) on the eval job's report.html and
  // generations.jsonl; one judge reasoning carries a <script> and an <img onerror>
  const JUDGED = path.join(os.tmpdir(), `tuneyard-report-judged-${process.pid}.html`);
  const JUDGED_SCREENSHOT = process.env.TUNEYARD_JUDGED_REPORT_SCREENSHOT ?? path.join(os.tmpdir(), 'tuneyard-report-judged.png');
  let judged: Page;
  const errors: string[] = [];
  const judgedRequests: string[] = [];

  beforeAll(async () => {
    fs.writeFileSync(JUDGED, await judgedReport());
    judged = await browser.newPage();
    await judged.setViewport({ width: 1200, height: 900 });
    await judged.setRequestInterception(true);
    judged.on('request', (request) => {
      if (request.url() === `file://${JUDGED}`) return void request.continue();
      judgedRequests.push(request.url());
      return void request.abort();
    });
    judged.on('console', (message) => void (message.type() === 'error' && errors.push(message.text())));
    judged.on('pageerror', (error) => void errors.push(String(error)));
    await judged.goto(`file://${JUDGED}`, { waitUntil: 'load' });
    const top = await judged.$eval('#judge', (s) => s.getBoundingClientRect().top + window.scrollY);
    await judged.screenshot({ path: JUDGED_SCREENSHOT as `${string}.png`, clip: { x: 0, y: top - 10, width: 1200, height: 1400 } });
  }, 120_000);

  afterAll(() => fs.rmSync(JUDGED, { force: true }));

  test('renders with every section, no errors and no request; the judge section shows the figures and the judgements', async () => {
    expect(errors).toEqual([]);
    expect(judgedRequests).toEqual([]);
    expect(await judged.$$eval('section', (s) => s.map((x) => x.id))).toEqual(SECTIONS);
    const judge = await judged.$eval('#judge', (s) => (s as HTMLElement).innerText);
    expect(judge).not.toContain('not run yet');
    expect(judge).toMatch(/tuned wins\s+ties\s+tuned loses\s+errors\s+win rate \(wins \/ judged\)\s+3\s+54\s+3\s+0\s+0\.05/);
    expect(judge).toMatch(/fluency\s+3\.05\s+2\.9\s+1\s+0\.95\s+60 \/ 60\s+0/);
    expect(await judged.$$eval('#judge .judged', (items) => items.length)).toBe(50);
    const box = await judged.$eval('#judge', (s) => s.getBoundingClientRect().height);
    expect(box).toBeGreaterThan(1000);
  });

  test("the <script> in the judge's reasoning did not run: it is shown as text", async () => {
    const state = await judged.evaluate(() => ({
      pwned: (window as unknown as { pwned?: number }).pwned ?? null,
      elements: document.querySelectorAll('script, img, iframe, object').length,
      shown: [...document.querySelectorAll('#judge pre')].filter((pre) => pre.textContent!.startsWith('<script>window.pwned=3</script><img src=x')).length,
    }));
    expect(state).toEqual({ pwned: null, elements: 0, shown: 6 }); // the three cat items, both orders
  });
});
