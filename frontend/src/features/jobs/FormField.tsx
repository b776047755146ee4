import { useId, type ReactNode } from 'react';

export interface ControlProps {
  id: string;
  'aria-describedby'?: string;
  'aria-invalid'?: true;
}

interface Props {
  label: ReactNode;
  /** A hint under the control, read out with it. */
  help?: ReactNode;
  /** What is wrong with the value; shown under the control, which is marked invalid. */
  error?: string | null;
  children: (control: ControlProps) => ReactNode;
}

/** A labelled form control whose help and error are tied to it (aria-describedby). */
export function FormField({ label, help, error, children }: Props) {
  const id = useId();
  const described = [help ? `${id}-help` : null, error ? `${id}-error` : null].filter(Boolean).join(' ');
  return (
    <div className="field">
      <label className="field__label" htmlFor={id}>
        {label}
      </label>
      {children({
        id,
        ...(described ? { 'aria-describedby': described } : {}),
        ...(error ? { 'aria-invalid': true as const } : {}),
      })}
      {help && (
        <span className="muted" id={`${id}-help`}>
          {help}
        </span>
      )}
      {error && (
        <span className="field__error" id={`${id}-error`} role="alert">
          {error}
        </span>
      )}
    </div>
  );
}
