import { describe, expect, it } from 'vitest';
import { ago, appendCapped, bytes, duration, fixed, parseTime } from './format';

describe('format helpers', () => {
  it('parses Python ISO times with microseconds', () => {
    expect(parseTime('2025-01-01T12:00:00.123456+00:00')).toBe(Date.UTC(2025, 0, 1, 12, 0, 0, 123));
    expect(parseTime('not a time')).toBeNull();
    expect(parseTime(null)).toBeNull();
  });

  it('formats numbers, bytes, durations and ages', () => {
    expect(fixed(0.12345, 3)).toBe('0.123');
    expect(fixed(null)).toBe('—');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(bytes(3 * 1024 ** 3)).toBe('3.0 GiB');
    expect(duration(75)).toBe('1 min 15 s');
    expect(duration(3720)).toBe('1 h 02 min');
    const now = Date.UTC(2025, 0, 1, 12, 0, 0);
    expect(ago('2025-01-01T11:59:30Z', now)).toBe('30 s ago');
    expect(ago('2025-01-01T11:00:00Z', now)).toBe('60 min ago');
    expect(ago(null, now)).toBe('never');
  });

  it('keeps only the newest items', () => {
    expect(appendCapped([1, 2, 3], 4, 3)).toEqual([2, 3, 4]);
    expect(appendCapped([1], 2, 3)).toEqual([1, 2]);
  });
});
