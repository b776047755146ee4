import type { ReactNode } from 'react';
import './dashboard.css';

interface Props {
  /** The panel's heading; also its accessible name. */
  title: string;
  /** A stable id for the heading (aria-labelledby). */
  id: string;
  /** Shown at the right of the heading (a link, a count, a filter). */
  aside?: ReactNode;
  className?: string;
  children: ReactNode;
}

/** One card of the dashboard: a labelled region with a heading. */
export function Panel({ title, id, aside, className, children }: Props) {
  return (
    <section className={`card dash-panel ${className ?? ''}`} aria-labelledby={`${id}-title`} data-panel={id}>
      <div className="dash-panel__head">
        <h2 id={`${id}-title`}>{title}</h2>
        {aside}
      </div>
      {children}
    </section>
  );
}

/** What a panel says until its data arrives, or when there is honestly none. */
export function EmptyState({ children }: { children: ReactNode }) {
  return (
    <p className="dash-empty" role="status">
      {children}
    </p>
  );
}
