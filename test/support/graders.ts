/**
 * A python grader of more than 2,500 characters (a hyperparameter's limit): it scores how many of the reference's
 * characters the answer has, in order. PlanRun writes it to graders.json;
 * the trainer's tests run it from there (test_graders_channel.py).
 */
export const LONG_PYTHON_GRADER = {
  type: 'python',
  name: 'overlap',
  source: [
    'def grade(sample, item):',
    '    """The share of the reference\'s characters that the answer has, in order (a longest common subsequence).',
    ...Array.from({ length: 40 }, (_, i) => `    Line ${i + 1} of the description, long enough to make this grader exceed the hyperparameter limit.`),
    '    """',
    "    answer, reference = sample['output_text'], item['reference']",
    '    if not reference:',
    '        return 0.0',
    '    previous = [0] * (len(reference) + 1)',
    '    for a in answer:',
    '        current = [0]',
    '        for j, r in enumerate(reference):',
    '            current.append(previous[j] + 1 if a == r else max(previous[j + 1], current[j]))',
    '        previous = current',
    '    return previous[-1] / len(reference)',
    '',
  ].join('\n'),
};
