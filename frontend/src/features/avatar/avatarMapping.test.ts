import { describe, expect, it } from 'vitest';
import {
  avatarLook,
  breathPeriod,
  BUSY_PERIOD_S,
  FASTEST_PERIOD_S,
  IDLE_PERIOD_S,
  type AvatarInput,
} from './avatarMapping';

const base: AvatarInput = {
  connected: true,
  regime: 'geometric',
  phi: 0.6,
  runningJobs: 0,
  tokensPerS: null,
  lastJobFailed: false,
};

describe('avatarLook', () => {
  it('takes the regime’s colour and an expression for it', () => {
    expect(avatarLook({ ...base, regime: 'linear' })).toMatchObject({
      colour: '#7cc0ff',
      expression: 'calm',
    });
    expect(avatarLook(base)).toMatchObject({ colour: '#5bd46a', expression: 'content' });
    expect(avatarLook({ ...base, regime: 'breakdown', phi: 0.9 })).toMatchObject({
      colour: '#ff8a80',
      expression: 'strained',
    });
    expect(avatarLook({ ...base, regime: null, phi: null })).toMatchObject({
      colour: '#a3b1bf',
      expression: 'neutral',
      glow: 0,
    });
  });

  it('glows and grows with Φ', () => {
    const low = avatarLook({ ...base, phi: 0.1 });
    const high = avatarLook({ ...base, phi: 0.9 });
    expect(high.glow).toBeGreaterThan(low.glow);
    expect(high.scale).toBeGreaterThan(low.scale);
    expect(avatarLook({ ...base, phi: 0 }).scale).toBeCloseTo(0.9);
    expect(avatarLook({ ...base, phi: 1 }).scale).toBeCloseTo(1.1);
    expect(avatarLook({ ...base, phi: 7 }).glow).toBe(1);
  });

  it('looks worried after a failed job, whatever the regime', () => {
    expect(avatarLook({ ...base, lastJobFailed: true })).toMatchObject({ expression: 'worried' });
    expect(avatarLook({ ...base, lastJobFailed: true }).description).toMatch(/the last job failed/);
  });

  it('sleeps, grey and still, while disconnected', () => {
    expect(avatarLook({ ...base, connected: false, runningJobs: 2 })).toMatchObject({
      expression: 'asleep',
      colour: '#a3b1bf',
      periodS: null,
      glow: 0,
    });
  });

  it('says what it shows', () => {
    expect(avatarLook({ ...base, runningJobs: 1, tokensPerS: 1234.4 }).description).toBe(
      'Content: geometric regime, Φ 0.60; 1 job running at 1234 tokens/s.',
    );
  });
});

describe('breathPeriod', () => {
  it('breathes slowly when idle and faster with more throughput, within bounds', () => {
    expect(breathPeriod(0, 5000)).toBe(IDLE_PERIOD_S);
    expect(breathPeriod(1, null)).toBe(BUSY_PERIOD_S);
    const slow = breathPeriod(1, 50);
    const fast = breathPeriod(1, 5000);
    expect(fast).toBeLessThan(slow);
    expect(slow).toBeLessThanOrEqual(BUSY_PERIOD_S);
    expect(breathPeriod(1, 1e12)).toBe(FASTEST_PERIOD_S);
  });
});
