import type { InputHTMLAttributes } from 'react';

type Props = Omit<InputHTMLAttributes<HTMLInputElement>, 'value' | 'onChange' | 'type'> & {
  value: string;
  onValue: (value: string) => void;
};

/** A job priority: a whole number from −100 to 100 (higher runs first), as the server takes. */
export function PriorityInput({ value, onValue, ...rest }: Props) {
  return (
    <input
      {...rest}
      className="field__input"
      type="number"
      min={-100}
      max={100}
      step={1}
      value={value}
      onChange={(event) => onValue(event.target.value)}
    />
  );
}
