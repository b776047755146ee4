import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { Sparkline, sparkDomain, sparkPath } from './Sparkline';

describe('sparkDomain', () => {
  it('uses the given bounds', () => {
    expect(sparkDomain([0.2, 0.3], [], 0, 1)).toEqual([0, 1]);
  });

  it('widens the data range to a nearby threshold but not to a far one', () => {
    const [lo, hi] = sparkDomain(
      [10, 14],
      [
        { name: 'TACKING', value: 20 },
        { name: 'FRACTURE', value: 70 },
      ],
    );
    expect(lo).toBeLessThan(10);
    expect(hi).toBeGreaterThanOrEqual(20);
    expect(hi).toBeLessThan(70);
  });

  it('pads a flat series so it has height', () => {
    const [lo, hi] = sparkDomain([5, 5]);
    expect(lo).toBeLessThan(5);
    expect(hi).toBeGreaterThan(5);
  });
});

describe('sparkPath', () => {
  it('places points by time and breaks the line at a missing value', () => {
    const path = sparkPath(
      [
        { t: 0, v: 0 },
        { t: 10, v: null },
        { t: 20, v: 1 },
        { t: 40, v: 0.5 },
      ],
      [0, 1],
      40,
    );
    expect(path).toBe('M0.0 40.0M150.0 0.0L300.0 20.0');
  });
});

describe('Sparkline', () => {
  it('draws the thresholds inside the domain and names them', () => {
    render(
      <Sparkline
        points={[
          { t: 0, v: 0.2 },
          { t: 1, v: 0.5 },
        ]}
        label="Φ"
        min={0}
        max={1}
        thresholds={[
          { name: 'geometric', value: 0.45 },
          { name: 'outside', value: 3 },
        ]}
      />,
    );
    expect(screen.getByRole('img', { name: 'Φ: 2 points, latest 0.5' })).toBeInTheDocument();
    expect(screen.getByText('geometric 0.45')).toBeInTheDocument();
    expect(screen.queryByText(/outside/)).toBeNull();
  });
});
