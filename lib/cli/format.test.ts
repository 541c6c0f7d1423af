import { usd } from './format';

describe('usd', () => {
  test('cents, with a cost too small to round to a cent shown as under one, and nothing as $0.00', () => {
    expect(usd(12.345)).toBe('$12.35');
    expect(usd(0.004)).toBe('<$0.01');
    expect(usd(0.005)).toBe('$0.01');
    expect(usd(0)).toBe('$0.00');
    expect(usd(undefined)).toBe('n/a');
  });
});
