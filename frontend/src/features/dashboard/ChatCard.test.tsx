import { screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { ChatCard } from './ChatCard';
import { at, renderLive } from './testing';

const interaction = (id: number, kernel: number) => ({
  id,
  model: 'qig-constellation:latest',
  kernel,
  phi: 0.3,
  kappa: 7,
  regime: 'linear',
  completion_tokens: 12,
  created_at: at(id),
});

describe('ChatCard', () => {
  it('links to the chat and shows the latest answers, live', () => {
    const { send } = renderLive(<ChatCard />);
    expect(screen.getByRole('link', { name: 'Open chat' })).toHaveAttribute('href', '/chat');
    send('interactions', { kind: 'interactions.history', interactions: [] });
    expect(screen.getByText(/No one has chatted yet/)).toBeInTheDocument();

    send('interactions', {
      kind: 'interactions.history',
      interactions: [interaction(2, 40), interaction(1, 7)],
    });
    send('interactions', { event: 'interaction.created', ...interaction(3, 99) });
    const items = within(screen.getByTestId('latest-answers')).getAllByRole('listitem');
    expect(items.map((li) => li.textContent)).toEqual([
      expect.stringContaining('kernel 99'),
      expect.stringContaining('kernel 40'),
      expect.stringContaining('kernel 7'),
    ]);
  });
});
