import { useContext, useEffect, useState } from 'react';
import { AuthContext } from '../auth/useAuth';
import { ago, fixed } from '../dashboard/format';
import { listVersions, rollbackKernel } from './kernelsApi';
import type { KernelVersion } from './types';

/** `+1.2 %` for a relative change, or an em dash when it was not measured. */
export function percent(change: number | null | undefined): string {
  if (typeof change !== 'number' || !Number.isFinite(change)) return '—';
  return `${change >= 0 ? '+' : '−'}${Math.abs(change * 100).toFixed(1)} %`;
}

interface Props {
  index: number;
  /** Changes when the kernel's served version changes live: the list is read again. */
  revision: string;
}

/**
 * A kernel's published adapter versions (the last 5 are kept), newest first, with each one's
 * held-out figures and routing radius; staff can roll back to the version before the one served.
 */
export function KernelVersions({ index, revision }: Props) {
  const session = useContext(AuthContext);
  const staff = session?.status === 'signed-in' && session.user.is_staff;
  const [versions, setVersions] = useState<KernelVersion[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    let live = true;
    listVersions(index)
      .then((rows) => {
        if (!live) return;
        setVersions(rows);
        setError(null);
      })
      .catch((failure: unknown) => {
        if (live) setError(`Could not read the versions: ${(failure as Error).message}`);
      });
    return () => {
      live = false;
    };
  }, [index, revision]);

  const serving = versions?.findIndex((v) => v.current) ?? -1;
  const canRollBack = staff && versions !== null && serving >= 0 && serving < versions.length - 1;

  async function rollback() {
    const target = versions?.[serving + 1];
    if (!target) return;
    const ok = window.confirm(
      `Roll kernel ${index} back to the version published ${ago(target.published_at)}? It serves at once, with that version's anchor and routing radius.`,
    );
    if (!ok) return;
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      const result = await rollbackKernel(index);
      setVersions(result.versions);
      setNotice(`Rolled back: kernel ${index} now serves ${result.version}.`);
    } catch (failure) {
      setError(`Rollback failed: ${(failure as Error).message}`);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="kversions" data-testid="kernel-versions" aria-label={`Kernel ${index} versions`}>
      <h4>Versions</h4>
      {versions === null && !error && <p className="muted dash-small">Loading the versions…</p>}
      {versions?.length === 0 && <p className="muted dash-small">No published version on disk.</p>}
      {versions && versions.length > 0 && (
        <ol className="kversions__list">
          {versions.map((v) => (
            <li
              key={v.version}
              className={`kversions__item${v.current ? ' kversions__item--current' : ''}`}
              data-testid="kernel-version"
              aria-current={v.current ? 'true' : undefined}
              title={v.version}
            >
              <span className="kversions__when">
                {ago(v.published_at)}
                {v.job !== null && ` · job #${v.job}`}
                {v.current && <strong className="kversions__serving"> serving</strong>}
              </span>
              {v.heldout ? (
                <span className="kversions__figures">
                  held-out {fixed(v.heldout.own_before, 3)} → {fixed(v.heldout.own_after, 3)} · general{' '}
                  {percent(v.heldout.general_change)} · r {fixed(v.radius, 3)}
                </span>
              ) : (
                <span className="kversions__figures muted">
                  no held-out figures (published before the gate)
                </span>
              )}
            </li>
          ))}
        </ol>
      )}
      {canRollBack && (
        <button type="button" className="button" disabled={busy} onClick={() => void rollback()}>
          {busy ? 'Rolling back…' : 'Roll back to the previous version'}
        </button>
      )}
      {notice && (
        <p className="dash-small" role="status">
          {notice}
        </p>
      )}
      {error && (
        <p className="kversions__error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
